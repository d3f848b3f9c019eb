//! rk-examples
