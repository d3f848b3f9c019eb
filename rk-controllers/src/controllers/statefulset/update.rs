//! What one StatefulSet sync does next (upstream's
//! `stateful_set_control.go`), as a pure function of the pods.
//!
//! With `OrderedReady` management the set moves one pod at a time: the pod
//! of ordinal `i` is created only when every lower ordinal is Running and
//! Ready (and available for `minReadySeconds`), pods beyond `replicas` are
//! deleted highest ordinal first, each only once the one before it is gone,
//! and nothing proceeds past a pod that is terminating or unhealthy.
//! `Parallel` management creates and deletes without waiting. A
//! `RollingUpdate` then replaces pods of an old revision from the highest
//! ordinal down to the partition, one at a time, waiting for each
//! replacement to be healthy (with `maxUnavailable`, as many at once as
//! keeps that many pods unhealthy at most); `OnDelete` leaves that to the
//! user.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use rk_core::object::{is_pod_available, is_pod_ready, pod_phase};

use super::identity::pod_revision;

/// One step of a sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Create the pod of this ordinal (and its claims).
    Create(i32),
    /// Delete this pod.
    Delete(String),
    /// Delete this failed (or finished) pod; the next sync recreates it.
    Recreate(String),
}

/// Whether the set creates and deletes pods one at a time.
pub fn is_ordered(set: &StatefulSet) -> bool {
    set.spec.pod_management_policy.as_deref() != Some("Parallel")
}

/// Whether the set only updates pods when they are deleted.
pub fn is_on_delete(set: &StatefulSet) -> bool {
    set.spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.type_.as_deref())
        == Some("OnDelete")
}

/// The rolling update's partition (0 when unset).
pub fn partition(set: &StatefulSet) -> i32 {
    set.spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.rolling_update.as_ref())
        .and_then(|r| r.partition)
        .unwrap_or(0)
        .max(0)
}

fn terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

fn finished(pod: &Pod) -> bool {
    matches!(pod_phase(pod), "Failed" | "Succeeded")
}

/// Running and Ready.
pub fn running_and_ready(pod: &Pod) -> bool {
    pod_phase(pod) == "Running" && is_pod_ready(pod)
}

/// Running, Ready for `minReadySeconds`, and not terminating.
pub fn healthy(set: &StatefulSet, pod: &Pod, now: &Time) -> bool {
    running_and_ready(pod)
        && !terminating(pod)
        && is_pod_available(pod, set.spec.min_ready_seconds.unwrap_or(0), now)
}

fn name(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap_or_default()
}

/// The next actions. `slots` holds each wanted ordinal, ascending, with its
/// pod if there is one; `condemned` the pods beyond the wanted ordinals,
/// ascending; `update_revision` the name of the current template's revision.
pub fn plan(
    set: &StatefulSet,
    slots: &[(i32, Option<&Pod>)],
    condemned: &[&Pod],
    update_revision: &str,
    now: &Time,
) -> Vec<Action> {
    let ordered = is_ordered(set);
    let mut actions = Vec::new();
    let is_healthy = |p: &Pod| healthy(set, p, now);
    for (ordinal, pod) in slots {
        match pod {
            None => {
                actions.push(Action::Create(*ordinal));
                if ordered {
                    return actions;
                }
            }
            Some(p) if finished(p) && !terminating(p) => {
                // Replaced by the next sync, once it is gone.
                actions.push(Action::Recreate(name(p)));
                if ordered {
                    return actions;
                }
            }
            Some(p) if ordered && !is_healthy(p) => return actions,
            Some(_) => {}
        }
    }
    let first_unhealthy = slots
        .iter()
        .filter_map(|(_, p)| *p)
        .chain(condemned.iter().copied())
        .find(|p| !is_healthy(p))
        .map(name);
    for pod in condemned.iter().rev() {
        if terminating(pod) {
            if ordered {
                return actions;
            }
            continue;
        }
        if ordered && !running_and_ready(pod) && first_unhealthy.as_deref() != Some(&name(pod)) {
            return actions;
        }
        actions.push(Action::Delete(name(pod)));
        if ordered {
            return actions;
        }
    }
    if is_on_delete(set) {
        return actions;
    }
    let min = usize::try_from(partition(set)).unwrap_or(0);
    if let Some(budget) = max_unavailable(set, slots.len()) {
        // With `maxUnavailable`, several pods go at once while the number
        // of unhealthy pods stays within it.
        let unavailable = slots
            .iter()
            .filter(|(_, p)| p.is_none_or(|p| !is_healthy(p)))
            .count();
        let room = budget.saturating_sub(unavailable);
        actions.extend(
            slots
                .iter()
                .enumerate()
                .rev()
                .take_while(|(index, _)| *index >= min)
                .filter_map(|(_, (_, p))| *p)
                .filter(|p| pod_revision(p) != Some(update_revision) && !terminating(p))
                .take(room)
                .map(|p| Action::Delete(name(p))),
        );
        return actions;
    }
    for (index, (_, pod)) in slots.iter().enumerate().rev() {
        if index < min {
            break;
        }
        let Some(pod) = pod else {
            return actions;
        };
        if pod_revision(pod) != Some(update_revision) && !terminating(pod) {
            actions.push(Action::Delete(name(pod)));
            return actions;
        }
        if !is_healthy(pod) {
            return actions;
        }
    }
    actions
}

/// `rollingUpdate.maxUnavailable` resolved against `replicas` (percentages
/// rounded up, at least 1); `None` when unset.
pub fn max_unavailable(set: &StatefulSet, replicas: usize) -> Option<usize> {
    let value = set
        .spec
        .update_strategy
        .as_ref()?
        .rolling_update
        .as_ref()?
        .max_unavailable
        .as_ref()?;
    let total = i32::try_from(replicas).unwrap_or(i32::MAX);
    let n = crate::controllers::daemonset::update::resolve(Some(value), total, 1).max(1);
    usize::try_from(n).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(extra: serde_json::Value) -> StatefulSet {
        let mut spec = json!({"selector": {}, "template": {}});
        if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
            s.extend(e.clone());
        }
        serde_json::from_value(json!({"metadata": {"name": "web"}, "spec": spec}))
            .unwrap_or_default()
    }

    fn pod(ordinal: i32, revision: &str, ready: bool) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": format!("web-{ordinal}"),
                "labels": {"controller-revision-hash": revision}},
            "status": {"phase": "Running", "conditions": [
                {"type": "Ready", "status": if ready { "True" } else { "False" }}]}
        }))
        .unwrap_or_default()
    }

    fn now() -> Time {
        Time(k8s_openapi::jiff::Timestamp::now())
    }

    #[test]
    fn ordered_creation_waits_for_readiness() {
        let s = set(json!({}));
        let p0 = pod(0, "r1", false);
        let slots = [(0, Some(&p0)), (1, None), (2, None)];
        assert!(plan(&s, &slots, &[], "r1", &now()).is_empty());
        let p0 = pod(0, "r1", true);
        let slots = [(0, Some(&p0)), (1, None), (2, None)];
        assert_eq!(plan(&s, &slots, &[], "r1", &now()), vec![Action::Create(1)]);
        let parallel = set(json!({"podManagementPolicy": "Parallel"}));
        assert_eq!(
            plan(&parallel, &[(0, None), (1, None)], &[], "r1", &now()),
            vec![Action::Create(0), Action::Create(1)]
        );
    }

    #[test]
    fn scale_down_takes_the_highest_ordinal_first() {
        let s = set(json!({}));
        let (p0, p1, p2) = (pod(0, "r1", true), pod(1, "r1", true), pod(2, "r1", true));
        let plan = plan(&s, &[(0, Some(&p0))], &[&p1, &p2], "r1", &now());
        assert_eq!(plan, vec![Action::Delete("web-2".into())]);
    }

    #[test]
    fn rolling_update_stops_at_the_partition() {
        let s = set(json!({"updateStrategy": {"type": "RollingUpdate",
            "rollingUpdate": {"partition": 1}}}));
        let (p0, p1, p2) = (pod(0, "r1", true), pod(1, "r1", true), pod(2, "r2", true));
        let slots = [(0, Some(&p0)), (1, Some(&p1)), (2, Some(&p2))];
        assert_eq!(
            plan(&s, &slots, &[], "r2", &now()),
            vec![Action::Delete("web-1".into())]
        );
        let p1 = pod(1, "r2", true);
        let slots = [(0, Some(&p0)), (1, Some(&p1)), (2, Some(&p2))];
        assert!(plan(&s, &slots, &[], "r2", &now()).is_empty());
    }

    #[test]
    fn max_unavailable_replaces_several_pods_at_once() {
        let s = set(json!({"podManagementPolicy": "Parallel",
            "updateStrategy": {"type": "RollingUpdate",
            "rollingUpdate": {"partition": 0, "maxUnavailable": 2}}}));
        let pods: Vec<Pod> = (0..4).map(|i| pod(i, "r1", true)).collect();
        let slots: Vec<(i32, Option<&Pod>)> =
            pods.iter().zip(0..).map(|(p, i)| (i, Some(p))).collect();
        assert_eq!(
            plan(&s, &slots, &[], "r2", &now()),
            vec![
                Action::Delete("web-3".into()),
                Action::Delete("web-2".into())
            ]
        );
        let waiting = pod(3, "r2", false);
        let mut slots = slots;
        slots[3] = (3, Some(&waiting));
        assert_eq!(
            plan(&s, &slots, &[], "r2", &now()),
            vec![Action::Delete("web-2".into())]
        );
    }
}
