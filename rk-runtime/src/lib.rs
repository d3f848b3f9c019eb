//! rk-runtime
pub mod backoff;
pub mod cache;
pub mod client_rate_limit;
pub mod controller;
pub mod events;
pub mod expectations;
pub mod factory;
pub mod finalizer;
pub mod informer;
pub mod leader;
pub mod manager;
pub mod watcher;
pub mod workqueue;
