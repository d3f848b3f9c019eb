//! Pod phase, readiness and availability (upstream `pkg/api/v1/pod` util).

use k8s_openapi::api::core::v1::{Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::SignedDuration;

/// The pod's phase; `Pending` when the status has none yet.
pub fn pod_phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .filter(|p| !p.is_empty())
        .unwrap_or("Pending")
}

/// The pod's condition of this type (`Ready`, `PodScheduled`, ...), if present.
pub fn pod_condition<'a>(pod: &'a Pod, type_: &str) -> Option<&'a PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

/// Whether the pod's `Ready` condition is `True`.
pub fn is_pod_ready(pod: &Pod) -> bool {
    pod_condition(pod, "Ready").is_some_and(|c| c.status == "True")
}

/// When the pod became ready: the `lastTransitionTime` of a `True` `Ready`
/// condition; `None` when not ready or not recorded.
pub fn pod_ready_since(pod: &Pod) -> Option<&Time> {
    pod_condition(pod, "Ready")
        .filter(|c| c.status == "True")
        .and_then(|c| c.last_transition_time.as_ref())
}

/// Whether the pod has finished: phase `Succeeded` or `Failed`.
pub fn is_pod_terminal(pod: &Pod) -> bool {
    matches!(pod_phase(pod), "Succeeded" | "Failed")
}

/// Whether the pod counts as active for a controller: not terminal and not
/// being deleted (upstream `controller.IsPodActive`).
pub fn is_pod_active(pod: &Pod) -> bool {
    !is_pod_terminal(pod) && pod.metadata.deletion_timestamp.is_none()
}

/// Whether the pod is available: ready, and ready for more than
/// `min_ready_seconds` before `now` (upstream `podutil.IsPodAvailable`).
/// With `min_ready_seconds <= 0` readiness suffices; otherwise a ready pod
/// with no recorded transition time is not available.
pub fn is_pod_available(pod: &Pod, min_ready_seconds: i32, now: &Time) -> bool {
    if !is_pod_ready(pod) {
        return false;
    }
    if min_ready_seconds <= 0 {
        return true;
    }
    let Some(since) = pod_ready_since(pod) else {
        return false;
    };
    since
        .0
        .checked_add(SignedDuration::from_secs(i64::from(min_ready_seconds)))
        .is_ok_and(|available_at| available_at < now.0)
}

/// Whether the pod is bound to a node (`spec.nodeName` is set).
pub fn is_pod_scheduled(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty())
}

/// Total restarts over the pod's container and init container statuses.
pub fn pod_restart_count(pod: &Pod) -> i32 {
    let Some(status) = pod.status.as_ref() else {
        return 0;
    };
    status
        .container_statuses
        .iter()
        .flatten()
        .chain(status.init_container_statuses.iter().flatten())
        .fold(0i32, |sum, s| sum.saturating_add(s.restart_count))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{ContainerStatus, PodSpec, PodStatus};
    use k8s_openapi::jiff::Timestamp;

    use super::*;

    fn at(seconds: i64) -> Time {
        match Timestamp::from_second(seconds) {
            Ok(t) => Time(t),
            Err(e) => panic!("{e}"),
        }
    }

    fn pod(phase: Option<&str>, ready: Option<(&str, i64)>) -> Pod {
        Pod {
            status: Some(PodStatus {
                phase: phase.map(str::to_owned),
                conditions: ready.map(|(status, since)| {
                    vec![PodCondition {
                        type_: "Ready".into(),
                        status: status.into(),
                        last_transition_time: Some(at(since)),
                        ..PodCondition::default()
                    }]
                }),
                ..PodStatus::default()
            }),
            ..Pod::default()
        }
    }

    #[test]
    fn missing_phase_reads_as_pending() {
        assert_eq!(pod_phase(&Pod::default()), "Pending");
        assert_eq!(pod_phase(&pod(Some("Running"), None)), "Running");
    }

    #[test]
    fn terminal_and_deleted_pods_are_not_active() {
        assert!(is_pod_active(&pod(Some("Running"), None)));
        assert!(is_pod_terminal(&pod(Some("Failed"), None)));
        assert!(!is_pod_active(&pod(Some("Succeeded"), None)));
        let mut deleting = pod(Some("Running"), None);
        deleting.metadata.deletion_timestamp = Some(at(1));
        assert!(!is_pod_active(&deleting));
        assert!(!is_pod_terminal(&deleting));
    }

    #[test]
    fn readiness_comes_from_the_ready_condition() {
        assert!(is_pod_ready(&pod(Some("Running"), Some(("True", 10)))));
        assert!(!is_pod_ready(&pod(Some("Running"), Some(("False", 10)))));
        assert!(!is_pod_ready(&pod(Some("Running"), None)));
        assert_eq!(
            pod_ready_since(&pod(Some("Running"), Some(("True", 10)))),
            Some(&at(10))
        );
        assert_eq!(
            pod_ready_since(&pod(Some("Running"), Some(("False", 10)))),
            None
        );
    }

    #[test]
    fn available_only_after_min_ready_seconds_have_passed() {
        let p = pod(Some("Running"), Some(("True", 100)));
        assert!(is_pod_available(&p, 0, &at(100)));
        assert!(!is_pod_available(&p, 10, &at(110)));
        assert!(is_pod_available(&p, 10, &at(111)));
        assert!(!is_pod_available(
            &pod(Some("Running"), Some(("False", 0))),
            0,
            &at(500)
        ));
    }

    #[test]
    fn scheduled_means_bound_to_a_node() {
        let mut p = Pod::default();
        assert!(!is_pod_scheduled(&p));
        p.spec = Some(PodSpec {
            node_name: Some("n1".into()),
            ..PodSpec::default()
        });
        assert!(is_pod_scheduled(&p));
    }

    #[test]
    fn restart_count_sums_containers_and_init_containers() {
        let status = |restarts: i32| ContainerStatus {
            restart_count: restarts,
            ..ContainerStatus::default()
        };
        let p = Pod {
            status: Some(PodStatus {
                container_statuses: Some(vec![status(2), status(3)]),
                init_container_statuses: Some(vec![status(1)]),
                ..PodStatus::default()
            }),
            ..Pod::default()
        };
        assert_eq!(pod_restart_count(&p), 6);
    }
}
