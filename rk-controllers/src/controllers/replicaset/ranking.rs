//! Which pods go first when a ReplicaSet scales down, as upstream ranks
//! them (`controller.ActivePodsWithRanks`): unscheduled before scheduled,
//! pending before unknown before running, not ready before ready, lower
//! `controller.kubernetes.io/pod-deletion-cost` first, pods sharing a node
//! with more of their siblings first, ready for less time first, more
//! restarts first, newer first.

use std::cmp::Ordering;
use std::collections::HashMap;

use k8s_openapi::api::core::v1::Pod;

/// The annotation that lowers (or raises) a pod's deletion priority.
pub const DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

fn phase_rank(pod: &Pod) -> u8 {
    match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Pending") => 0,
        Some("Unknown") => 1,
        Some("Running") => 2,
        _ => 0,
    }
}

fn ready_since(pod: &Pod) -> Option<jiff::Timestamp> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")
        .and_then(|c| c.last_transition_time.as_ref().map(|t| t.0))
}

fn cost(pod: &Pod) -> i64 {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DELETION_COST))
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or(0)
}

fn restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| c.restart_count).max().unwrap_or(0))
        .unwrap_or(0)
}

/// Order `pods` so the ones to delete first come first. `related` are all
/// active pods of the owner (to count co-located siblings per node).
pub fn sort_for_deletion(pods: &mut [Pod], related: &[Pod]) {
    let mut per_node: HashMap<String, usize> = HashMap::new();
    for p in related {
        if let Some(n) = p.spec.as_ref().and_then(|s| s.node_name.clone()) {
            *per_node.entry(n).or_default() += 1;
        }
    }
    let node_rank = |p: &Pod| -> usize {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.as_ref())
            .and_then(|n| per_node.get(n))
            .copied()
            .unwrap_or(0)
    };
    pods.sort_by(|a, b| {
        let scheduled = |p: &Pod| {
            p.spec
                .as_ref()
                .and_then(|s| s.node_name.as_ref())
                .is_some_and(|n| !n.is_empty())
        };
        scheduled(a)
            .cmp(&scheduled(b))
            .then_with(|| phase_rank(a).cmp(&phase_rank(b)))
            .then_with(|| rk_core::object::is_pod_ready(a).cmp(&rk_core::object::is_pod_ready(b)))
            .then_with(|| cost(a).cmp(&cost(b)))
            // More siblings on the same node: delete first.
            .then_with(|| node_rank(b).cmp(&node_rank(a)))
            // Ready for less time: delete first.
            .then_with(|| match (ready_since(a), ready_since(b)) {
                (Some(x), Some(y)) => y.cmp(&x),
                _ => Ordering::Equal,
            })
            .then_with(|| restarts(b).cmp(&restarts(a)))
            // Newer: delete first.
            .then_with(|| {
                let t = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
                t(b).cmp(&t(a))
            })
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, node: Option<&str>, phase: &str, ready: bool, created: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "creationTimestamp": created},
            "spec": {"containers": [], "nodeName": node},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}
        }))
        .unwrap()
    }

    #[test]
    fn unscheduled_then_pending_then_unready_go_first() {
        let mut pods = vec![
            pod(
                "running-ready",
                Some("n1"),
                "Running",
                true,
                "2026-01-01T00:00:00Z",
            ),
            pod(
                "unscheduled",
                None,
                "Pending",
                false,
                "2026-01-01T00:00:00Z",
            ),
            pod(
                "running-unready",
                Some("n1"),
                "Running",
                false,
                "2026-01-01T00:00:00Z",
            ),
            pod(
                "pending",
                Some("n1"),
                "Pending",
                false,
                "2026-01-01T00:00:00Z",
            ),
        ];
        let all = pods.clone();
        sort_for_deletion(&mut pods, &all);
        let names: Vec<_> = pods
            .iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(
            names,
            vec!["unscheduled", "pending", "running-unready", "running-ready"]
        );
    }

    #[test]
    fn newer_pods_go_before_older_ones() {
        let mut pods = vec![
            pod("old", Some("n1"), "Running", true, "2026-01-01T00:00:00Z"),
            pod("new", Some("n2"), "Running", true, "2026-02-01T00:00:00Z"),
        ];
        let all = pods.clone();
        sort_for_deletion(&mut pods, &all);
        assert_eq!(pods[0].metadata.name.as_deref(), Some("new"));
    }
}
