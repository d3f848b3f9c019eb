//! Running a chosen set of controllers, selected upstream's way:
//! `--controllers=*,-garbage-collector` (all but one), `namespace` (just one).

use std::str::FromStr;

/// Every controller this crate provides, by its `--controllers` name.
pub const ALL: &[&str] = &[
    "cronjob",
    "daemonset",
    "deployment",
    "disruption",
    "endpoint",
    "endpointslice",
    "garbage-collector",
    "horizontalpodautoscaling",
    "job",
    "namespace",
    "nodeipam",
    "nodelifecycle",
    "podgc",
    "replicaset",
    "replicationcontroller",
    "resourcequota",
    "serviceaccount",
    "statefulset",
    "taint-eviction-controller",
    "ttl-after-finished",
];

/// Which controllers to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selection {
    enabled: Vec<String>,
}

/// A `--controllers` value that names an unknown controller.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown controller {0:?}; known controllers: {known}", known = ALL.join(", "))]
pub struct UnknownController(pub String);

impl FromStr for Selection {
    type Err = UnknownController;

    /// Comma-separated names; `*` means every controller, `-name` removes one.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut enabled: Vec<String> = Vec::new();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            if item == "*" {
                for c in ALL {
                    if !enabled.iter().any(|e| e == c) {
                        enabled.push(c.to_string());
                    }
                }
            } else if let Some(name) = item.strip_prefix('-') {
                if !ALL.contains(&name) {
                    return Err(UnknownController(name.to_string()));
                }
                enabled.retain(|e| e != name);
            } else {
                if !ALL.contains(&item) {
                    return Err(UnknownController(item.to_string()));
                }
                if !enabled.iter().any(|e| e == item) {
                    enabled.push(item.to_string());
                }
            }
        }
        Ok(Self { enabled })
    }
}

impl Selection {
    /// True if `name` is selected.
    pub fn contains(&self, name: &str) -> bool {
        self.enabled.iter().any(|e| e == name)
    }
}

/// Options of the controller manager.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Timings of the node lifecycle controller.
    pub node_lifecycle: crate::controllers::node_lifecycle::Options,
    /// The range node pod CIDRs come from.
    pub cluster_cidr: crate::controllers::node_ipam::ClusterCidr,
    /// Settings of the pod garbage collector.
    pub pod_gc: crate::controllers::pod_gc::Options,
}

/// Errors of the controller manager.
#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    /// A controller task failed.
    #[error("controller task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Run the selected controllers until they all stop.
pub async fn run(
    client: kube::Client,
    selection: &Selection,
    options: Options,
) -> Result<(), ManagerError> {
    // A JoinSet: dropping the manager (leadership lost) stops every controller.
    let mut tasks = tokio::task::JoinSet::new();
    // One watch and one cache of pods and of nodes for every controller.
    let informers = crate::watch::Informers::new(&client);
    if selection.contains("daemonset") {
        tasks.spawn(crate::controllers::daemonset::run_shared(
            client.clone(),
            2,
            informers.clone(),
        ));
    }
    if selection.contains("statefulset") {
        tasks.spawn(crate::controllers::statefulset::run_shared(
            client.clone(),
            2,
            informers.clone(),
        ));
    }
    if selection.contains("job") {
        tasks.spawn(crate::controllers::job::run_shared(
            client.clone(),
            5,
            crate::controllers::job::Config::default(),
            informers.clone(),
        ));
    }
    if selection.contains("cronjob") {
        tasks.spawn(crate::controllers::cronjob::run(client.clone(), 2));
    }
    if selection.contains("ttl-after-finished") {
        tasks.spawn(crate::controllers::ttl_after_finished::run(
            client.clone(),
            2,
        ));
    }
    if selection.contains("deployment") {
        tasks.spawn(crate::controllers::deployment::run_shared(
            client.clone(),
            5,
            informers.clone(),
        ));
    }
    if selection.contains("horizontalpodautoscaling") {
        tasks.spawn(crate::controllers::autoscaler::run_shared(
            client.clone(),
            crate::controllers::autoscaler::Options::default(),
            informers.clone(),
        ));
    }
    if selection.contains("disruption") {
        tasks.spawn(crate::controllers::disruption::run_shared(
            client.clone(),
            informers.clone(),
        ));
    }
    if selection.contains("endpoint") {
        tasks.spawn(crate::controllers::endpoints::legacy::run_shared(
            client.clone(),
            5,
            informers.clone(),
        ));
    }
    if selection.contains("endpointslice") {
        tasks.spawn(crate::controllers::endpoints::slices::run_shared(
            client.clone(),
            5,
            informers.clone(),
        ));
    }
    if selection.contains("garbage-collector") {
        tasks.spawn(crate::controllers::garbage_collector::run(client.clone()));
    }
    if selection.contains("namespace") {
        tasks.spawn(crate::controllers::namespace::run(client.clone()));
    }
    if selection.contains("nodeipam") {
        tasks.spawn(crate::controllers::node_ipam::run(
            client.clone(),
            options.cluster_cidr.clone(),
        ));
    }
    if selection.contains("nodelifecycle") {
        tasks.spawn(crate::controllers::node_lifecycle::run_shared(
            client.clone(),
            options.node_lifecycle.clone(),
            informers.clone(),
        ));
    }
    if selection.contains("podgc") {
        tasks.spawn(crate::controllers::pod_gc::run_shared(
            client.clone(),
            options.pod_gc.clone(),
            informers.clone(),
        ));
    }
    if selection.contains("taint-eviction-controller") {
        tasks.spawn(crate::controllers::node_lifecycle::eviction::run_shared(
            client.clone(),
            informers.clone(),
        ));
    }
    if selection.contains("replicaset") {
        tasks.spawn(crate::controllers::replicaset::run_shared::<
            k8s_openapi::api::apps::v1::ReplicaSet,
        >(client.clone(), 5, informers.clone()));
    }
    if selection.contains("replicationcontroller") {
        tasks.spawn(crate::controllers::replicaset::run_shared::<
            k8s_openapi::api::core::v1::ReplicationController,
        >(client.clone(), 5, informers.clone()));
    }
    if selection.contains("resourcequota") {
        tasks.spawn(crate::controllers::resource_quota::run_shared(
            client.clone(),
            informers.clone(),
        ));
    }
    if selection.contains("serviceaccount") {
        tasks.spawn(crate::controllers::service_account::run(client.clone()));
    }
    while let Some(r) = tasks.join_next().await {
        r?;
    }
    Ok(())
}

pub use crate::election::LeaderElection;

/// Errors of a leader-elected controller manager.
pub type ElectedError = crate::election::ElectedError<ManagerError>;

/// Run the selected controllers only while this instance holds the Lease
/// (`election`, by default `kube-system/kube-controller-manager`): wait to be
/// elected, run, and return an error if leadership is lost (so the caller
/// can exit, as kube-controller-manager does). Cancelling `shutdown` stops
/// the controllers and releases the Lease.
pub async fn run_elected(
    client: kube::Client,
    selection: &Selection,
    options: Options,
    election: LeaderElection,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<(), ElectedError> {
    crate::election::while_leading(
        client.clone(),
        election,
        shutdown,
        run(client, selection, options),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_minus_name_selects_all_but_one() {
        let s: Selection = "*,-namespace".parse().unwrap();
        assert!(s.contains("garbage-collector"));
        assert!(!s.contains("namespace"));
    }

    #[test]
    fn unknown_names_are_refused() {
        assert_eq!(
            "nope".parse::<Selection>(),
            Err(UnknownController("nope".into()))
        );
    }
}
