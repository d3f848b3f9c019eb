//! Integration tests of the controllers, the scheduler, the kubelet and the
//! proxy against in-process API servers. One test binary (one link) for all
//! of them; `cargo test -p rk-controllers --test controllers kubelet::` runs
//! one module.

mod support;

mod autoscaler;
mod cronjob;
mod daemonset;
mod deployment;
mod disruption;
mod endpoints;
mod events;
mod housekeeping;
mod job;
mod kubelet;
mod manager_election;
mod nodes;
mod proxy;
mod replicaset;
mod scheduler;
mod scheduler_election;
mod shared_watch;
mod statefulset;
