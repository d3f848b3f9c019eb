//! The controllers, one module each.

pub mod autoscaler;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod endpoints;
pub mod garbage_collector;
pub mod job;
pub mod namespace;
pub mod node_ipam;
pub mod node_lifecycle;
pub mod pod_gc;
pub mod replicaset;
pub mod resource_quota;
pub mod service_account;
pub mod statefulset;
pub mod ttl_after_finished;
