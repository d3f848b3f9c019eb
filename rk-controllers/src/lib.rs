//! rk-controllers
