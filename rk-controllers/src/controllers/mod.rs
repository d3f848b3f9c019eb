//! The controllers, one module each.

pub mod deployment;
pub mod endpoints;
pub mod garbage_collector;
pub mod namespace;
pub mod replicaset;
pub mod resource_quota;
pub mod service_account;
