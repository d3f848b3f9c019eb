//! Pod admission: before running a pod, the kubelet checks that it fits the
//! node next to the pods it already runs, with the rk-core predicates and
//! upstream's rejection reasons (`OutOfcpu`, `OutOfmemory`, `OutOfpods`,
//! `NodePorts`, `NodeAffinity`, `NodeName`, `TaintToleration`).
//!
//! As upstream, only `NoExecute` taints are checked (a pod bound to a node
//! directly may ignore `NoSchedule`) and a cordoned node still runs the pods
//! it is given. The `unreachable` and `not-ready` taints are ignored: they
//! describe a kubelet that stopped reporting, so a kubelet that starts again
//! must not reject its pods because of them.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};
use rk_core::predicates::{
    HostPortSet, find_untolerated_taint, fits, node_allocatable,
    pod_matches_node_selector_and_affinity, pod_requests, requested_by_pods,
};

/// Why a pod was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The pod status reason (`OutOfcpu`, `NodePorts`, ...).
    pub reason: String,
    /// The pod status message.
    pub message: String,
}

/// Taints the node lifecycle controller sets when the kubelet is silent.
const HEALTH_TAINTS: &[&str] = &[
    "node.kubernetes.io/unreachable",
    "node.kubernetes.io/not-ready",
];

fn predicate(name: &str, desc: &str) -> Rejection {
    Rejection {
        reason: name.to_owned(),
        message: format!("Pod was rejected: Predicate {name} failed: {desc}"),
    }
}

/// Whether `pod` may run on `node` beside `admitted` (pods already running
/// there, not including `pod`).
pub fn admit(pod: &Pod, node: &Node, admitted: &[Arc<Pod>]) -> Result<(), Rejection> {
    let spec = pod.spec.clone().unwrap_or_default();
    if let Some(wanted) = spec.node_name.as_deref().filter(|n| !n.is_empty())
        && node.metadata.name.as_deref() != Some(wanted)
    {
        return Err(predicate("NodeName", rk_core::predicates::REASON_NODE_NAME));
    }
    if !pod_matches_node_selector_and_affinity(pod, node) {
        return Err(predicate(
            "NodeAffinity",
            rk_core::predicates::REASON_NODE_AFFINITY,
        ));
    }
    // The node lifecycle controller's health taints describe a kubelet that
    // stopped reporting: stale by definition while this kubelet runs.
    let taints: Vec<_> = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|t| !HEALTH_TAINTS.contains(&t.key.as_str()))
        .collect();
    let tolerations = spec.tolerations.clone().unwrap_or_default();
    if let Some(t) = find_untolerated_taint(&taints, &tolerations, &["NoExecute"]) {
        return Err(predicate(
            "TaintToleration",
            &format!(
                "node(s) had untolerated taint {{{}: {}}}",
                t.key,
                t.value.as_deref().unwrap_or_default()
            ),
        ));
    }
    if !HostPortSet::from_pods(admitted.iter().map(|p| &**p)).fits_pod(pod) {
        return Err(predicate(
            "NodePorts",
            rk_core::predicates::REASON_NODE_PORTS,
        ));
    }
    let computed = pod_requests(pod).and_then(|wanted| {
        Ok((
            wanted,
            node_allocatable(node)?,
            requested_by_pods(admitted.iter().map(|p| &**p))?,
        ))
    });
    let (wanted, allocatable, requested) = computed.map_err(|e| Rejection {
        reason: "UnexpectedAdmissionError".to_owned(),
        message: format!("Pod was rejected: invalid resource requests: {e}"),
    })?;
    if let Some(short) = fits(&wanted, &allocatable, &requested).into_iter().next() {
        return Err(Rejection {
            reason: format!("OutOf{}", short.resource_name),
            message: format!(
                "Pod was rejected: Node didn't have enough resource: {}, requested: {}, used: {}, capacity: {}",
                short.resource_name, short.requested, short.used, short.capacity
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node() -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": "n1"},
            "status": {"allocatable": {"cpu": "1", "memory": "1Gi", "pods": "2"}}
        }))
        .unwrap()
    }

    fn pod(cpu: &str, host_port: Option<i32>) -> Pod {
        let mut c = json!({"name": "c", "resources": {"requests": {"cpu": cpu}}});
        if let Some(p) = host_port {
            c["ports"] = json!([{"containerPort": 80, "hostPort": p}]);
        }
        serde_json::from_value(json!({"spec": {"nodeName": "n1", "containers": [c]}})).unwrap()
    }

    #[test]
    fn too_much_cpu_is_out_of_cpu() {
        let r = admit(&pod("800m", None), &node(), &[Arc::new(pod("500m", None))]).unwrap_err();
        assert_eq!(r.reason, "OutOfcpu");
        assert!(r.message.contains("requested: 800"), "{}", r.message);
    }

    #[test]
    fn taken_host_port_is_node_ports() {
        let r = admit(
            &pod("1m", Some(8080)),
            &node(),
            &[Arc::new(pod("1m", Some(8080)))],
        )
        .unwrap_err();
        assert_eq!(r.reason, "NodePorts");
    }

    #[test]
    fn too_many_pods_is_out_of_pods() {
        let r = admit(
            &pod("1m", None),
            &node(),
            &[Arc::new(pod("1m", None)), Arc::new(pod("1m", None))],
        )
        .unwrap_err();
        assert_eq!(r.reason, "OutOfpods");
    }

    #[test]
    fn no_execute_taints_reject_except_the_health_ones() {
        let mut n = node();
        n.spec = Some(
            serde_json::from_value(json!({"taints": [
                {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"},
            ]}))
            .unwrap(),
        );
        assert_eq!(admit(&pod("1m", None), &n, &[]), Ok(()));
        n.spec = Some(
            serde_json::from_value(json!({"taints": [
                {"key": "dedicated", "value": "db", "effect": "NoExecute"},
            ]}))
            .unwrap(),
        );
        assert_eq!(
            admit(&pod("1m", None), &n, &[]).unwrap_err().reason,
            "TaintToleration"
        );
    }

    #[test]
    fn a_fitting_pod_is_admitted() {
        assert_eq!(admit(&pod("100m", None), &node(), &[]), Ok(()));
    }
}
