//! The arithmetic of a DaemonSet rolling update (upstream's
//! `daemonset/update.go`): resolving `maxUnavailable`/`maxSurge` against the
//! number of nodes that should run a pod, telling updated pods from old
//! ones, and choosing which old pods to delete and where to surge a new pod.
//!
//! Without surge, an old pod is deleted (and its replacement created by the
//! next sync) only while fewer than `maxUnavailable` nodes lack an available
//! daemon pod; old pods that are not available anyway go at once. With
//! surge, a new pod is started next to the old one on up to `maxSurge`
//! nodes at a time, and the old pod is deleted once the new one is
//! available.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use rk_core::object::{is_pod_available, is_pod_ready};

use super::history::HASH_LABEL;

/// Whether the DaemonSet updates its pods only when they are deleted.
pub fn is_on_delete(ds: &DaemonSet) -> bool {
    ds.spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.type_.as_deref())
        == Some("OnDelete")
}

/// Resolve an int-or-percent against `total`, rounding percentages up;
/// `None` (or a malformed percentage) resolves to `default`.
pub fn resolve(value: Option<&IntOrString>, total: i32, default: i32) -> i32 {
    match value {
        Some(IntOrString::Int(n)) => *n,
        Some(IntOrString::String(s)) => match s.trim_end_matches('%').parse::<i64>() {
            Ok(pct) => {
                let scaled = pct.saturating_mul(i64::from(total));
                i32::try_from((scaled + 99).div_euclid(100)).unwrap_or(i32::MAX)
            }
            Err(_) => default,
        },
        None => default,
    }
}

/// The DaemonSet's `(maxSurge, maxUnavailable)` for `desired` nodes; both
/// zero is taken as an unavailability of one, as upstream.
pub fn surge_and_unavailable(ds: &DaemonSet, desired: i32) -> (i32, i32) {
    let rolling = ds
        .spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.rolling_update.as_ref());
    let surge = resolve(rolling.and_then(|r| r.max_surge.as_ref()), desired, 0).max(0);
    let mut unavailable =
        resolve(rolling.and_then(|r| r.max_unavailable.as_ref()), desired, 1).max(0);
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    (surge, unavailable)
}

/// Whether the pod runs the current template (carries its hash).
pub fn is_updated(pod: &Pod, hash: &str) -> bool {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(HASH_LABEL))
        .is_some_and(|h| h == hash)
}

/// Pods ordered oldest first (by creation time, then name).
pub fn oldest_first(pods: &mut [&Pod]) {
    pods.sort_by(|a, b| {
        let at = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
        at(a)
            .cmp(&at(b))
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
}

/// The node's one updated and one old pod (either may be missing),
/// ignoring terminating pods; `None` when there are more of either, for
/// the manage step to settle first.
pub fn updated_and_old<'a>(
    pods: &[&'a Pod],
    hash: &str,
) -> Option<(Option<&'a Pod>, Option<&'a Pod>)> {
    let (mut new, mut old) = (None, None);
    for pod in pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
    {
        let slot = if is_updated(pod, hash) {
            &mut new
        } else {
            &mut old
        };
        if slot.is_some() {
            return None;
        }
        *slot = Some(*pod);
    }
    Some((new, old))
}

/// Among the running (not terminating, not finished) pods of one node,
/// those to delete. Without surge only the oldest stays; with surge the
/// oldest updated pod may run next to the oldest old pod while the old one
/// is ready and the new one is not.
pub fn surplus_on_node<'a>(running: &[&'a Pod], hash: &str, surge: bool) -> Vec<&'a Pod> {
    if running.len() <= 1 {
        return Vec::new();
    }
    let mut pods = running.to_vec();
    oldest_first(&mut pods);
    if !surge {
        return pods[1..].to_vec();
    }
    let oldest_new = pods.iter().position(|p| is_updated(p, hash));
    let oldest_old = pods.iter().position(|p| !is_updated(p, hash));
    let keep: Vec<usize> = match (oldest_new, oldest_old) {
        (Some(n), Some(o)) if !is_pod_ready(pods[n]) && is_pod_ready(pods[o]) => vec![n, o],
        (Some(n), _) => vec![n],
        (None, Some(o)) => vec![o],
        (None, None) => Vec::new(),
    };
    pods.iter()
        .enumerate()
        .filter(|(i, _)| !keep.contains(i))
        .map(|(_, p)| *p)
        .collect()
}

/// What one rolling-update step does.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Step {
    /// Names of old pods to delete.
    pub delete: Vec<String>,
    /// Nodes to start an updated pod on (surge).
    pub create_on: Vec<String>,
}

/// The next rolling-update step. `nodes` maps every node with daemon pods,
/// and every node that should run one, to its pods; `should_run` says
/// whether a node should run one.
pub fn rolling_step(
    ds: &DaemonSet,
    nodes: &BTreeMap<String, Vec<&Pod>>,
    should_run: &dyn Fn(&str) -> bool,
    hash: &str,
    now: &Time,
) -> Step {
    let desired = nodes.keys().filter(|n| should_run(n)).count();
    let desired = i32::try_from(desired).unwrap_or(i32::MAX);
    let (max_surge, max_unavailable) = surge_and_unavailable(ds, desired);
    let min_ready = ds.spec.min_ready_seconds.unwrap_or(0);
    let available = |p: &Pod| is_pod_available(p, min_ready, now);
    let name = |p: &Pod| p.metadata.name.clone().unwrap_or_default();
    let mut step = Step::default();
    if max_surge == 0 {
        let mut unavailable = 0;
        let mut replace_now = Vec::new();
        let mut candidates = Vec::new();
        for pods in nodes.values() {
            let Some((new, old)) = updated_and_old(pods, hash) else {
                unavailable += 1;
                continue;
            };
            match (new, old) {
                (None, None) | (Some(_), Some(_)) => unavailable += 1,
                (Some(n), None) => {
                    if !available(n) {
                        unavailable += 1;
                    }
                }
                (None, Some(o)) => {
                    if !available(o) {
                        replace_now.push(name(o));
                    } else if unavailable < max_unavailable {
                        candidates.push(name(o));
                    }
                }
            }
        }
        let room = usize::try_from((max_unavailable - unavailable).max(0)).unwrap_or(0);
        step.delete = replace_now;
        step.delete.extend(candidates.into_iter().take(room));
        return step;
    }
    let mut surging = 0;
    let mut replace_now = Vec::new();
    let mut candidates = Vec::new();
    for (node, pods) in nodes {
        let Some((new, old)) = updated_and_old(pods, hash) else {
            surging += 1;
            continue;
        };
        match (new, old) {
            (_, None) => {}
            (None, Some(o)) => {
                if available(o) {
                    candidates.push(node.clone());
                } else if should_run(node) {
                    replace_now.push(node.clone());
                } else {
                    step.delete.push(name(o));
                }
            }
            (Some(n), Some(o)) => {
                if available(n) {
                    step.delete.push(name(o));
                } else {
                    surging += 1;
                }
            }
        }
    }
    let room = usize::try_from((max_surge - surging).max(0)).unwrap_or(0);
    step.create_on = replace_now;
    step.create_on.extend(candidates.into_iter().take(room));
    step
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ds(strategy: serde_json::Value) -> DaemonSet {
        serde_json::from_value(json!({
            "metadata": {"name": "d"},
            "spec": {"selector": {}, "template": {}, "updateStrategy": strategy}
        }))
        .unwrap_or_default()
    }

    fn pod(name: &str, hash: &str, ready: bool) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {HASH_LABEL: hash}},
            "status": {"phase": "Running", "conditions": [
                {"type": "Ready", "status": if ready { "True" } else { "False" }}]}
        }))
        .unwrap_or_default()
    }

    fn now() -> Time {
        Time(k8s_openapi::jiff::Timestamp::now())
    }

    #[test]
    fn without_surge_at_most_max_unavailable_old_pods_go() {
        let d = ds(json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 2}}));
        let pods: Vec<Pod> = (0..4).map(|i| pod(&format!("p{i}"), "old", true)).collect();
        let nodes: BTreeMap<String, Vec<&Pod>> = pods
            .iter()
            .enumerate()
            .map(|(i, p)| (format!("n{i}"), vec![p]))
            .collect();
        let step = rolling_step(&d, &nodes, &|_| true, "new", &now());
        assert_eq!(step.delete, vec!["p0", "p1"]);
        let waiting = pod("w", "new", false);
        let mut nodes = nodes;
        nodes.insert("n0".into(), vec![&waiting]);
        let step = rolling_step(&d, &nodes, &|_| true, "new", &now());
        assert_eq!(step.delete, vec!["p1"]);
    }

    #[test]
    fn with_surge_new_pods_start_beside_old_ones() {
        let d = ds(json!({"type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}));
        let (a, b) = (pod("a", "old", true), pod("b", "old", true));
        let nodes: BTreeMap<String, Vec<&Pod>> =
            [("n0".to_string(), vec![&a]), ("n1".to_string(), vec![&b])].into();
        let step = rolling_step(&d, &nodes, &|_| true, "new", &now());
        assert_eq!(step.create_on, vec!["n0"]);
        let a2 = pod("a2", "new", true);
        let nodes: BTreeMap<String, Vec<&Pod>> = [
            ("n0".to_string(), vec![&a, &a2]),
            ("n1".to_string(), vec![&b]),
        ]
        .into();
        let step = rolling_step(&d, &nodes, &|_| true, "new", &now());
        assert_eq!(step.delete, vec!["a"]);
        assert_eq!(step.create_on, vec!["n1"]);
    }

    #[test]
    fn percentages_round_up_and_zero_means_one_unavailable() {
        let d = ds(json!({"type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 0, "maxUnavailable": "10%"}}));
        assert_eq!(surge_and_unavailable(&d, 15), (0, 2));
        let d = ds(json!({"type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}}));
        assert_eq!(surge_and_unavailable(&d, 15), (0, 1));
    }
}
