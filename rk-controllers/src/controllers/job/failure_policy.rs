//! `spec.podFailurePolicy`: the first rule matching a failed pod (by the
//! exit codes of its terminated containers, or by its conditions) decides
//! what the failure means for the Job.

use k8s_openapi::api::batch::v1::{PodFailurePolicy, PodFailurePolicyRule};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

/// What a matched rule does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Fail the whole Job at once; carries the condition message.
    FailJob(String),
    /// Do not count the failure towards any limit; replace the pod.
    Ignore,
    /// Count the failure as usual.
    Count,
    /// Fail the pod's index (with `backoffLimitPerIndex`).
    FailIndex,
}

fn exit_code_matches(rule: &PodFailurePolicyRule, pod: &Pod, index: usize) -> Option<String> {
    let req = rule.on_exit_codes.as_ref()?;
    let status = pod.status.as_ref()?;
    let statuses: Vec<&ContainerStatus> = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten())
        .collect();
    for cs in statuses {
        if req.container_name.as_deref().is_some_and(|n| n != cs.name) {
            continue;
        }
        let Some(code) = cs
            .state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .map(|t| t.exit_code)
        else {
            continue;
        };
        // A container that exited 0 never matches.
        if code == 0 {
            continue;
        }
        let listed = req.values.contains(&code);
        let matched = match req.operator.as_str() {
            "In" => listed,
            "NotIn" => !listed,
            _ => false,
        };
        if matched {
            let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
            let name = pod.metadata.name.as_deref().unwrap_or_default();
            return Some(format!(
                "Container {} for pod {ns}/{name} failed with exit code {code} matching {} rule at index {index}",
                cs.name, rule.action
            ));
        }
    }
    None
}

fn condition_matches(rule: &PodFailurePolicyRule, pod: &Pod, index: usize) -> Option<String> {
    let patterns = rule.on_pod_conditions.as_ref()?;
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    for pattern in patterns {
        let want = pattern.status.as_deref().unwrap_or("True");
        if conditions
            .iter()
            .any(|c| c.type_ == pattern.type_ && c.status == want)
        {
            let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
            let name = pod.metadata.name.as_deref().unwrap_or_default();
            return Some(format!(
                "Pod {ns}/{name} has condition {} matching {} rule at index {index}",
                pattern.type_, rule.action
            ));
        }
    }
    None
}

/// The action for a failed `pod` under `policy`: the first matching rule's,
/// or `None` when no rule matches (the failure counts as usual).
pub fn evaluate(policy: &PodFailurePolicy, pod: &Pod) -> Option<Action> {
    for (i, rule) in policy.rules.iter().enumerate() {
        let Some(message) =
            exit_code_matches(rule, pod, i).or_else(|| condition_matches(rule, pod, i))
        else {
            continue;
        };
        return match rule.action.as_str() {
            "FailJob" => Some(Action::FailJob(message)),
            "Ignore" => Some(Action::Ignore),
            "Count" => Some(Action::Count),
            "FailIndex" => Some(Action::FailIndex),
            // An unknown action (from a newer API) is skipped, as upstream.
            _ => continue,
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn failed_pod(code: i32, conditions: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "status": {"phase": "Failed", "conditions": conditions,
                "containerStatuses": [{"name": "main", "image": "x", "imageID": "", "ready": false,
                    "restartCount": 0, "state": {"terminated": {"exitCode": code}}}]}
        }))
        .unwrap_or_default()
    }

    fn policy(rules: serde_json::Value) -> PodFailurePolicy {
        serde_json::from_value(json!({ "rules": rules })).unwrap_or_default()
    }

    #[test]
    fn first_matching_rule_wins() {
        let p = policy(json!([
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
            {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}},
            {"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [42]}},
        ]));
        let pod = failed_pod(42, json!([]));
        assert_eq!(
            evaluate(&p, &pod),
            Some(Action::FailJob(
                "Container main for pod ns/p failed with exit code 42 matching FailJob rule at index 1"
                    .into()
            ))
        );
        assert_eq!(evaluate(&p, &failed_pod(1, json!([]))), Some(Action::Count));
        let disrupted = failed_pod(42, json!([{"type": "DisruptionTarget", "status": "True"}]));
        assert_eq!(evaluate(&p, &disrupted), Some(Action::Ignore));
    }

    #[test]
    fn exit_code_zero_and_other_containers_never_match() {
        let p = policy(json!([
            {"action": "FailJob", "onExitCodes": {"containerName": "other", "operator": "In", "values": [3]}},
            {"action": "FailIndex", "onExitCodes": {"operator": "NotIn", "values": [1]}},
        ]));
        assert_eq!(evaluate(&p, &failed_pod(0, json!([]))), None);
        assert_eq!(
            evaluate(&p, &failed_pod(3, json!([]))),
            Some(Action::FailIndex)
        );
    }
}
