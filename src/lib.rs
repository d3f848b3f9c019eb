//! rk: a Kubernetes control plane in Rust, library first.
//!
//! This facade re-exports the crates: [`core`] (types and pure logic),
//! [`apiserver`] (the API server and its storage), [`runtime`] (the
//! control-loop SDK) and [`controllers`] (controllers, scheduler, kubelet,
//! proxy).

pub use rk_apiserver as apiserver;
pub use rk_controllers as controllers;
pub use rk_core as core;
pub use rk_runtime as runtime;
