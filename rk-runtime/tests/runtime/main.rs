//! Integration tests of the runtime SDK against in-process API servers. One
//! test binary (one link) for all of them; `cargo test -p rk-runtime --test
//! runtime leader::` runs one module.

mod common;

mod cache;
mod controller;
mod dynamic;
mod events;
mod leader;
mod manager;
mod watcher;
mod workqueue;
