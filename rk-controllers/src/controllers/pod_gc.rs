//! The pod garbage collector, as upstream's `podgc`: deletes terminated
//! pods beyond a threshold (oldest first; 12,500 by default), pods bound to
//! nodes that no longer exist, and pods being deleted that were never
//! scheduled (no kubelet will ever confirm their deletion).

use std::collections::HashSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams};

use crate::watch::Informers;

/// Settings of the collector.
#[derive(Clone, Debug)]
pub struct Options {
    /// Terminated pods kept before the oldest are deleted
    /// (`--terminated-pod-gc-threshold`).
    pub terminated_threshold: usize,
    /// How often a pass runs (upstream: every 20 s).
    pub period: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            terminated_threshold: 12_500,
            period: Duration::from_secs(20),
        }
    }
}

fn terminated(p: &Pod) -> bool {
    matches!(
        p.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded") | Some("Failed")
    )
}

/// What one pass deletes, by reason.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Terminated pods over the threshold.
    pub terminated: Vec<(String, String)>,
    /// Pods whose node is gone.
    pub orphaned: Vec<(String, String)>,
    /// Unscheduled pods being deleted.
    pub unscheduled_terminating: Vec<(String, String)>,
}

fn id(p: &Pod) -> (String, String) {
    (
        p.metadata.namespace.clone().unwrap_or_default(),
        p.metadata.name.clone().unwrap_or_default(),
    )
}

/// Decide what to delete among `pods` given the existing `nodes`.
pub fn plan<'a>(
    pods: impl IntoIterator<Item = &'a Pod> + Clone,
    nodes: &HashSet<String>,
    threshold: usize,
) -> Plan {
    let mut out = Plan::default();
    let mut done: Vec<&Pod> = pods
        .clone()
        .into_iter()
        .filter(|p| terminated(p) && p.metadata.deletion_timestamp.is_none())
        .collect();
    if done.len() > threshold {
        done.sort_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
        let excess = done.len() - threshold;
        out.terminated = done.into_iter().take(excess).map(id).collect();
    }
    for p in pods {
        match p.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
            Some(node) if !node.is_empty() && !nodes.contains(node) => out.orphaned.push(id(p)),
            None if p.metadata.deletion_timestamp.is_some() => {
                out.unscheduled_terminating.push(id(p))
            }
            _ => {}
        }
    }
    out
}

/// One pass over the shared caches (as upstream reads its listers): no
/// list of every pod from the API every period.
async fn pass(client: &kube::Client, options: &Options, informers: &Informers) {
    if !informers.pods.ready().await || !informers.nodes.ready().await {
        return;
    }
    let nodes: HashSet<String> = informers
        .nodes
        .store()
        .state()
        .iter()
        .filter_map(|n| n.metadata.name.clone())
        .collect();
    let pods = informers.pods.store().state();
    let plan = plan(
        pods.iter().map(|p| &**p),
        &nodes,
        options.terminated_threshold,
    );
    let force = DeleteParams {
        grace_period_seconds: Some(0),
        ..DeleteParams::default()
    };
    let all = plan
        .terminated
        .iter()
        .map(|p| {
            (
                p,
                "terminated pods over the threshold",
                DeleteParams::default(),
            )
        })
        .chain(
            plan.orphaned
                .iter()
                .map(|p| (p, "its node is gone", force.clone())),
        )
        .chain(
            plan.unscheduled_terminating
                .iter()
                .map(|p| (p, "deleted before it was scheduled", force.clone())),
        );
    for ((ns, name), why, params) in all {
        tracing::info!(pod = %format!("{ns}/{name}"), reason = why, "garbage collecting pod");
        let api: Api<Pod> = Api::namespaced(client.clone(), ns);
        match api.delete(name, &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => tracing::warn!(pod = %name, error = %e, "deleting pod failed"),
        }
    }
}

/// Run the collector with its own caches of pods and nodes: a pass every
/// `options.period`.
pub async fn run(client: kube::Client, options: Options) {
    let informers = Informers::new(&client);
    run_shared(client, options, informers).await
}

/// Run the collector over a controller manager's shared caches.
pub async fn run_shared(client: kube::Client, options: Options, informers: Informers) {
    let mut tick = tokio::time::interval(options.period);
    loop {
        tick.tick().await;
        pass(&client, &options, &informers).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, node: Option<&str>, phase: &str, created: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "d", "creationTimestamp": created},
            "spec": {"nodeName": node, "containers": []},
            "status": {"phase": phase}
        }))
        .unwrap()
    }

    #[test]
    fn oldest_terminated_over_threshold_and_orphans_go() {
        let pods = vec![
            pod("old", Some("n1"), "Succeeded", "2026-01-01T00:00:00Z"),
            pod("new", Some("n1"), "Failed", "2026-01-02T00:00:00Z"),
            pod("run", Some("n1"), "Running", "2026-01-01T00:00:00Z"),
            pod("lost", Some("gone"), "Running", "2026-01-01T00:00:00Z"),
        ];
        let nodes: HashSet<String> = ["n1".to_string()].into();
        let p = plan(&pods, &nodes, 1);
        assert_eq!(p.terminated, vec![("d".into(), "old".into())]);
        assert_eq!(p.orphaned, vec![("d".into(), "lost".into())]);
    }
}
