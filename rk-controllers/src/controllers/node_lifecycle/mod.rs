//! The node lifecycle controller: notices kubelets that stopped reporting
//! and taints their nodes; [`eviction`] then evicts the pods that do not
//! tolerate the taints.
//!
//! As upstream: a node's heartbeat is its Lease in `kube-node-lease` (or its
//! `Ready` condition's `lastHeartbeatTime`), timed by this controller's own
//! clock when it sees either change, so clock skew between machines does not
//! matter. After the grace period (40 s by default) the node's conditions
//! become `Unknown` (`NodeStatusUnknown`, "Kubelet stopped posting node
//! status.") and its pods are marked not ready. Every node carries the taints
//! its `Ready` condition implies: `node.kubernetes.io/not-ready` when False,
//! `node.kubernetes.io/unreachable` when Unknown, each with both `NoSchedule`
//! and `NoExecute` effects, and `node.kubernetes.io/unschedulable:NoSchedule`
//! when cordoned.

pub mod eviction;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod, Taint};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};

/// The namespace of node heartbeats.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// Taint of a node whose Ready condition is False.
pub const NOT_READY_TAINT: &str = "node.kubernetes.io/not-ready";
/// Taint of a node whose Ready condition is Unknown.
pub const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";
/// Taint of a cordoned node.
pub const UNSCHEDULABLE_TAINT: &str = "node.kubernetes.io/unschedulable";

/// Timings of the controller.
#[derive(Clone, Debug)]
pub struct Options {
    /// How long a node may go without a heartbeat before it is Unknown
    /// (upstream `--node-monitor-grace-period`, 40 s).
    pub grace_period: Duration,
    /// How often nodes are checked (upstream `--node-monitor-period`, 5 s).
    pub monitor_period: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            grace_period: Duration::from_secs(40),
            monitor_period: Duration::from_secs(5),
        }
    }
}

/// The last heartbeat seen of a node, and when this controller saw it.
#[derive(Clone, Debug)]
struct Probe {
    lease_renew: Option<String>,
    ready_heartbeat: Option<String>,
    observed: Instant,
}

fn stamp() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn ready_status(node: &Node) -> Option<String> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.clone())
}

/// The taints `node` should carry for its condition, keeping every other
/// taint (and the time an existing one was added).
pub fn desired_taints(node: &Node) -> Vec<Taint> {
    let managed = [NOT_READY_TAINT, UNREACHABLE_TAINT, UNSCHEDULABLE_TAINT];
    let current: Vec<Taint> = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let mut out: Vec<Taint> = current
        .iter()
        .filter(|t| !managed.contains(&t.key.as_str()))
        .cloned()
        .collect();
    let mut want: Vec<(&str, &str)> = Vec::new();
    match ready_status(node).as_deref() {
        Some("False") => {
            want.push((NOT_READY_TAINT, "NoSchedule"));
            want.push((NOT_READY_TAINT, "NoExecute"));
        }
        Some("Unknown") => {
            want.push((UNREACHABLE_TAINT, "NoSchedule"));
            want.push((UNREACHABLE_TAINT, "NoExecute"));
        }
        _ => {}
    }
    if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        want.push((UNSCHEDULABLE_TAINT, "NoSchedule"));
    }
    for (key, effect) in want {
        let existing = current
            .iter()
            .find(|t| t.key == key && t.effect == effect)
            .cloned();
        out.push(existing.unwrap_or_else(|| Taint {
            key: key.to_string(),
            effect: effect.to_string(),
            value: None,
            time_added: (effect == "NoExecute").then(|| {
                k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now())
            }),
        }));
    }
    out
}

/// The controller.
pub struct Controller {
    client: kube::Client,
    nodes: Store<Node>,
    leases: Store<Lease>,
    probes: Mutex<HashMap<String, Probe>>,
    options: Options,
}

/// Errors of one pass.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// An API call failed.
    #[error("{0}")]
    Kube(#[from] kube::Error),
}

impl Controller {
    /// Update the heartbeat record of `node`; returns how long ago its last
    /// heartbeat was seen.
    fn heartbeat_age(&self, node: &Node) -> Duration {
        let name = node.metadata.name.clone().unwrap_or_default();
        let lease_renew = self
            .leases
            .state()
            .into_iter()
            .find(|l| l.metadata.name.as_deref() == Some(name.as_str()))
            .and_then(|l| {
                l.spec
                    .as_ref()?
                    .renew_time
                    .as_ref()
                    .map(|t| t.0.to_string())
            });
        let ready_heartbeat = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
            .and_then(|c| c.last_heartbeat_time.as_ref().map(|t| t.0.to_string()));
        let mut probes = self.probes.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let probe = probes.entry(name).or_insert_with(|| Probe {
            lease_renew: lease_renew.clone(),
            ready_heartbeat: ready_heartbeat.clone(),
            observed: now,
        });
        if probe.lease_renew != lease_renew || probe.ready_heartbeat != ready_heartbeat {
            probe.lease_renew = lease_renew;
            probe.ready_heartbeat = ready_heartbeat;
            probe.observed = now;
        }
        now.duration_since(probe.observed)
    }

    /// Check every node once.
    pub async fn monitor(&self) -> Result<(), MonitorError> {
        let nodes = self.nodes.state();
        {
            let names: Vec<&str> = nodes
                .iter()
                .filter_map(|n| n.metadata.name.as_deref())
                .collect();
            self.probes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|k, _| names.contains(&k.as_str()));
        }
        for node in nodes {
            let name = node.metadata.name.clone().unwrap_or_default();
            let age = self.heartbeat_age(&node);
            let api: Api<Node> = Api::all(self.client.clone());
            let mut node = (*node).clone();
            if age > self.options.grace_period && ready_status(&node).as_deref() != Some("Unknown")
            {
                tracing::info!(node = %name, "node stopped posting status; marking it Unknown");
                let conditions = unknown_conditions(&node);
                match api
                    .patch_status(
                        &name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"status": {"conditions": conditions}})),
                    )
                    .await
                {
                    Ok(updated) => node = updated,
                    Err(kube::Error::Api(e)) if e.code == 404 => continue,
                    Err(e) => return Err(e.into()),
                }
                self.mark_pods_not_ready(&name).await?;
            }
            let want = desired_taints(&node);
            let have = node
                .spec
                .as_ref()
                .and_then(|s| s.taints.clone())
                .unwrap_or_default();
            if !same_taints(&want, &have) {
                let patch = json!({"metadata": {"resourceVersion": node.metadata.resource_version},
                                   "spec": {"taints": want}});
                match api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
    }

    async fn mark_pods_not_ready(&self, node: &str) -> Result<(), MonitorError> {
        let pods: Api<Pod> = Api::all(self.client.clone());
        let list = pods
            .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
            .await?;
        for pod in list.items {
            let Some(conditions) = pod.status.as_ref().and_then(|s| s.conditions.clone()) else {
                continue;
            };
            if !conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
            {
                continue;
            }
            let updated: Vec<Value> = conditions
                .iter()
                .map(|c| {
                    let mut v = serde_json::to_value(c).unwrap_or(Value::Null);
                    if c.type_ == "Ready" {
                        v["status"] = json!("False");
                        v["lastTransitionTime"] = json!(stamp());
                        v["reason"] = json!("NodeNotReady");
                        v["message"] = json!("Node is not ready");
                    }
                    v
                })
                .collect();
            let ns = pod.metadata.namespace.clone().unwrap_or_default();
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
            let name = pod.metadata.name.clone().unwrap_or_default();
            let _ = api
                .patch_status(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": {"conditions": updated}})),
                )
                .await;
        }
        Ok(())
    }
}

fn same_taints(a: &[Taint], b: &[Taint]) -> bool {
    let key = |t: &Taint| (t.key.clone(), t.effect.clone(), t.value.clone());
    let mut x: Vec<_> = a.iter().map(key).collect();
    let mut y: Vec<_> = b.iter().map(key).collect();
    x.sort();
    y.sort();
    x == y
}

/// The node's conditions with the kubelet-owned ones made Unknown.
fn unknown_conditions(node: &Node) -> Vec<Value> {
    let kinds = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];
    let now = stamp();
    let current = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let mut out: Vec<Value> = Vec::new();
    for c in &current {
        let mut v = serde_json::to_value(c).unwrap_or(Value::Null);
        if kinds.contains(&c.type_.as_str()) {
            v["status"] = json!("Unknown");
            v["reason"] = json!("NodeStatusUnknown");
            v["message"] = json!("Kubelet stopped posting node status.");
            v["lastTransitionTime"] = json!(now);
        }
        out.push(v);
    }
    if !current.iter().any(|c| c.type_ == "Ready") {
        out.push(
            json!({"type": "Ready", "status": "Unknown", "reason": "NodeStatusNeverUpdated",
                        "message": "Kubelet never posted node status.", "lastTransitionTime": now,
                        "lastHeartbeatTime": now}),
        );
    }
    out
}

/// Run the node lifecycle controller.
pub async fn run(client: kube::Client, options: Options) {
    let informers = crate::watch::Informers::new(&client);
    run_shared(client, options, informers).await
}

/// Run the node lifecycle controller on `informers`' shared nodes.
pub async fn run_shared(
    client: kube::Client,
    options: Options,
    informers: crate::watch::Informers,
) {
    let nodes = informers.nodes.store();
    let (leases, lease_writer) = reflector::store::<Lease>();
    let node_watch = informers
        .nodes
        .subscribe()
        .for_each(|_| futures::future::ready(()));
    let lease_watch = reflector::reflector(
        lease_writer,
        crate::watch::lean_watcher(
            Api::<Lease>::namespaced(client.clone(), LEASE_NAMESPACE),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .for_each(|_| futures::future::ready(()));
    let ctrl = Arc::new(Controller {
        client,
        nodes,
        leases,
        probes: Mutex::default(),
        options: options.clone(),
    });
    let c = ctrl.clone();
    let monitor = async move {
        crate::watch::store_ready(&c.nodes).await;
        crate::watch::store_ready(&c.leases).await;
        let mut tick = tokio::time::interval(options.monitor_period);
        loop {
            tick.tick().await;
            if let Err(e) = c.monitor().await {
                tracing::warn!(error = %e, "node monitoring pass failed");
            }
        }
    };
    tokio::join!(node_watch, lease_watch, monitor);
}
