//! Where a DaemonSet's pods belong: which nodes should run one, the
//! tolerations every daemon pod gets, and the node affinity that pins a pod
//! to its node so the scheduler binds it there (upstream's
//! `NodeShouldRunDaemonPod`, `AddOrUpdateDaemonPodTolerations` and
//! `ReplaceDaemonSetPodNodeNameNodeAffinity`).

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodSpec, Toleration,
};
use rk_core::predicates::taints::{NO_EXECUTE, NO_SCHEDULE};
use rk_core::predicates::{find_untolerated_taint, pod_matches_node_selector_and_affinity};

/// The field a daemon pod's node affinity selects its node by.
pub const NODE_NAME_FIELD: &str = "metadata.name";

/// The tolerations every daemon pod gets, as `(key, effect)`: daemons keep
/// running on nodes that are not ready or unreachable, and are placed on
/// nodes under pressure and on cordoned nodes.
const DAEMON_TOLERATIONS: &[(&str, &str)] = &[
    ("node.kubernetes.io/not-ready", NO_EXECUTE),
    ("node.kubernetes.io/unreachable", NO_EXECUTE),
    ("node.kubernetes.io/disk-pressure", NO_SCHEDULE),
    ("node.kubernetes.io/memory-pressure", NO_SCHEDULE),
    ("node.kubernetes.io/pid-pressure", NO_SCHEDULE),
    ("node.kubernetes.io/unschedulable", NO_SCHEDULE),
];

/// The extra toleration of host-network daemon pods.
const NETWORK_UNAVAILABLE: (&str, &str) = ("node.kubernetes.io/network-unavailable", NO_SCHEDULE);

/// Add `toleration` to `spec`, replacing one with the same key, operator,
/// value and effect (which may differ in `tolerationSeconds`).
fn add_or_update_toleration(spec: &mut PodSpec, toleration: Toleration) {
    let list = spec.tolerations.get_or_insert_with(Vec::new);
    let same = |t: &Toleration| {
        t.key == toleration.key
            && t.effect == toleration.effect
            && t.operator.as_deref().unwrap_or("Equal")
                == toleration.operator.as_deref().unwrap_or("Equal")
            && t.value.as_deref().unwrap_or_default()
                == toleration.value.as_deref().unwrap_or_default()
    };
    match list.iter_mut().find(|t| same(t)) {
        Some(existing) => *existing = toleration,
        None => list.push(toleration),
    }
}

/// Give a daemon pod's spec upstream's automatic tolerations.
pub fn add_daemon_tolerations(spec: &mut PodSpec) {
    let host_network = spec.host_network == Some(true);
    let extra = host_network.then_some(NETWORK_UNAVAILABLE);
    for (key, effect) in DAEMON_TOLERATIONS.iter().copied().chain(extra) {
        add_or_update_toleration(
            spec,
            Toleration {
                key: Some(key.to_string()),
                operator: Some("Exists".to_string()),
                effect: Some(effect.to_string()),
                ..Toleration::default()
            },
        );
    }
}

/// `affinity` with its required node affinity replaced by a single term
/// selecting the node `node` by name (other affinity is kept).
pub fn pin_to_node(affinity: Option<Affinity>, node: &str) -> Affinity {
    let term = NodeSelectorTerm {
        match_expressions: None,
        match_fields: Some(vec![NodeSelectorRequirement {
            key: NODE_NAME_FIELD.to_string(),
            operator: "In".to_string(),
            values: Some(vec![node.to_string()]),
        }]),
    };
    let mut affinity = affinity.unwrap_or_default();
    let node_affinity = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    let required = node_affinity
        .required_during_scheduling_ignored_during_execution
        .get_or_insert_with(NodeSelector::default);
    required.node_selector_terms = vec![term];
    affinity
}

/// The node a daemon pod is meant for: its `spec.nodeName` once bound,
/// otherwise the node its `metadata.name` affinity term names.
pub fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(n) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        return Some(n.to_string());
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find(|r| r.key == NODE_NAME_FIELD && r.operator == "In")
        .and_then(|r| r.values.as_ref())
        .filter(|v| v.len() == 1)
        .and_then(|v| v.first().cloned())
}

/// Whether a node should run the daemon pod, and whether a pod already
/// there may keep running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// A new daemon pod should be created on the node.
    pub should_run: bool,
    /// An existing daemon pod may stay (no untolerated `NoExecute` taint).
    pub should_continue_running: bool,
}

/// The pod the DaemonSet would create on `node`, before it is pinned: the
/// template with the daemon tolerations and `spec.nodeName` set, as the
/// predicates see it.
pub fn candidate_pod(ds: &DaemonSet, node: &str) -> Pod {
    let template = &ds.spec.template;
    let mut spec = template.spec.clone().unwrap_or_default();
    spec.node_name = Some(node.to_string());
    add_daemon_tolerations(&mut spec);
    Pod {
        metadata: template.metadata.clone().unwrap_or_default(),
        spec: Some(spec),
        status: None,
    }
}

/// Where `ds` stands on `node`: the node must match the template's node
/// name, node selector and required node affinity, and have no taint the
/// pod does not tolerate (`NoSchedule` or `NoExecute` for new pods,
/// `NoExecute` for running ones).
pub fn placement(ds: &DaemonSet, node: &Node) -> Placement {
    let name = node.metadata.name.as_deref().unwrap_or_default();
    let pod = candidate_pod(ds, name);
    let wanted_name = ds
        .spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty());
    let fits_name = wanted_name.is_none_or(|n| n == name);
    let fits_affinity = pod_matches_node_selector_and_affinity(&pod, node);
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.clone())
        .unwrap_or_default();
    let schedulable =
        find_untolerated_taint(&taints, &tolerations, &[NO_SCHEDULE, NO_EXECUTE]).is_none();
    let executable = find_untolerated_taint(&taints, &tolerations, &[NO_EXECUTE]).is_none();
    Placement {
        should_run: fits_name && fits_affinity && schedulable,
        should_continue_running: fits_name && fits_affinity && executable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ds(spec: serde_json::Value) -> DaemonSet {
        serde_json::from_value(json!({
            "metadata": {"name": "d", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"a": "b"}},
                "template": {"metadata": {"labels": {"a": "b"}}, "spec": spec}}
        }))
        .unwrap_or_default()
    }

    fn node(labels: serde_json::Value, taints: serde_json::Value) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": "n1", "labels": labels},
            "spec": {"taints": taints}
        }))
        .unwrap_or_default()
    }

    #[test]
    fn node_selector_and_taints_decide_placement() {
        let d = ds(json!({"containers": [{"name": "c"}], "nodeSelector": {"role": "edge"}}));
        assert!(!placement(&d, &node(json!({}), json!([]))).should_run);
        assert!(placement(&d, &node(json!({"role": "edge"}), json!([]))).should_run);
        let tainted = node(
            json!({"role": "edge"}),
            json!([{"key": "k", "effect": "NoSchedule"}]),
        );
        let p = placement(&d, &tainted);
        assert!(!p.should_run && p.should_continue_running);
        let evicting = node(
            json!({"role": "edge"}),
            json!([{"key": "k", "effect": "NoExecute"}]),
        );
        assert!(!placement(&d, &evicting).should_continue_running);
    }

    #[test]
    fn daemon_pods_tolerate_cordoned_and_not_ready_nodes() {
        let d = ds(json!({"containers": [{"name": "c"}]}));
        let n = node(
            json!({}),
            json!([{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"},
                   {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}]),
        );
        assert!(placement(&d, &n).should_run);
        let net = node(
            json!({}),
            json!([{"key": "node.kubernetes.io/network-unavailable", "effect": "NoSchedule"}]),
        );
        assert!(!placement(&d, &net).should_run);
        let host = ds(json!({"containers": [{"name": "c"}], "hostNetwork": true}));
        assert!(placement(&host, &net).should_run);
    }

    #[test]
    fn pinning_replaces_required_terms_and_is_read_back() {
        let affinity: Affinity = serde_json::from_value(json!({"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["old"]}]}
        ]}}}))
        .unwrap_or_default();
        let pinned = pin_to_node(Some(affinity), "n2");
        let pod = Pod {
            spec: Some(PodSpec {
                affinity: Some(pinned),
                ..PodSpec::default()
            }),
            ..Pod::default()
        };
        assert_eq!(target_node(&pod).as_deref(), Some("n2"));
    }
}
