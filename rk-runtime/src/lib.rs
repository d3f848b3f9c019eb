//! rk-runtime
pub mod backoff;
pub mod cache;
pub mod factory;
pub mod informer;
pub mod watcher;
pub mod workqueue;
