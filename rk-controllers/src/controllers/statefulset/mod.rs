//! The StatefulSet controller (in progress).
