//! rk-apiserver
pub mod storage;
