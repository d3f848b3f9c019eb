//! rk
