//! rk-runtime
