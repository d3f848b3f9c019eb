//! rk-runtime
pub mod backoff;
pub mod cache;
pub mod controller;
pub mod factory;
pub mod informer;
pub mod leader;
pub mod watcher;
pub mod workqueue;
