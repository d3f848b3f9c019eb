//! The basic node checks the kubelet's admission and the DaemonSet controller
//! run (upstream's "general predicates" plus taints and cordoning).

use k8s_openapi::api::core::v1::{Node, Pod, Taint};

use super::node_affinity::pod_matches_node_selector_and_affinity;
use super::ports::HostPortSet;
use super::resources::{fits, node_allocatable, pod_requests, requested_by_pods};
use super::taints::{
    NO_EXECUTE, NO_SCHEDULE, TAINT_NODE_UNSCHEDULABLE, find_untolerated_taint,
    tolerations_tolerate_taint,
};

/// Reason when the node is cordoned and the pod does not tolerate it.
pub const REASON_UNSCHEDULABLE: &str = "node(s) were unschedulable";
/// Reason when `spec.nodeName` names another node.
pub const REASON_NODE_NAME: &str = "node(s) didn't match the requested node name";
/// Reason when `spec.nodeSelector` or required node affinity does not match.
pub const REASON_NODE_AFFINITY: &str = "node(s) didn't match Pod's node affinity/selector";
/// Reason when a requested host port is taken.
pub const REASON_NODE_PORTS: &str = "node(s) didn't have free ports for the requested pod ports";

/// Whether `pod` can run on `node` next to `pods_on_node`, checking, in order:
/// cordoning (`spec.unschedulable`, unless the pod tolerates the
/// `node.kubernetes.io/unschedulable:NoSchedule` taint), `spec.nodeName`,
/// node selector and required affinity, `NoSchedule`/`NoExecute` taints, host
/// ports and resources.
///
/// On failure, returns every reason in upstream's wording: `node(s) were
/// unschedulable`, `node(s) didn't match the requested node name`,
/// `node(s) didn't match Pod's node affinity/selector`, `node(s) had
/// untolerated taint {key: value}`, `node(s) didn't have free ports for the
/// requested pod ports`, `Too many pods`, `Insufficient cpu`, `Insufficient
/// memory`, ... A malformed quantity in the pod or in a pod on the node is
/// reported as a reason too (`invalid resource requests: ...`).
///
/// `pods_on_node` should not contain `pod` itself; terminal pods in it are ignored.
pub fn node_fits_pod_basic(
    pod: &Pod,
    node: &Node,
    pods_on_node: &[Pod],
) -> Result<(), Vec<String>> {
    let mut reasons = Vec::new();
    let spec = pod.spec.clone().unwrap_or_default();
    let tolerations = spec.tolerations.as_deref().unwrap_or_default();
    let node_spec = node.spec.clone().unwrap_or_default();

    if node_spec.unschedulable == Some(true) {
        let cordon = Taint {
            key: TAINT_NODE_UNSCHEDULABLE.to_owned(),
            effect: NO_SCHEDULE.to_owned(),
            ..Taint::default()
        };
        if !tolerations_tolerate_taint(tolerations, &cordon) {
            reasons.push(REASON_UNSCHEDULABLE.to_owned());
        }
    }

    let wanted_node = spec.node_name.as_deref().filter(|n| !n.is_empty());
    if wanted_node.is_some_and(|wanted| node.metadata.name.as_deref() != Some(wanted)) {
        reasons.push(REASON_NODE_NAME.to_owned());
    }

    if !pod_matches_node_selector_and_affinity(pod, node) {
        reasons.push(REASON_NODE_AFFINITY.to_owned());
    }

    let taints = node_spec.taints.as_deref().unwrap_or_default();
    if let Some(taint) = find_untolerated_taint(taints, tolerations, &[NO_SCHEDULE, NO_EXECUTE]) {
        reasons.push(format!(
            "node(s) had untolerated taint {{{}: {}}}",
            taint.key,
            taint.value.as_deref().unwrap_or_default()
        ));
    }

    if !HostPortSet::from_pods(pods_on_node).fits_pod(pod) {
        reasons.push(REASON_NODE_PORTS.to_owned());
    }

    let resources = pod_requests(pod).and_then(|wanted| {
        Ok((
            wanted,
            node_allocatable(node)?,
            requested_by_pods(pods_on_node)?,
        ))
    });
    match resources {
        Ok((wanted, allocatable, requested)) => {
            reasons.extend(
                fits(&wanted, &allocatable, &requested)
                    .into_iter()
                    .map(|i| i.reason),
            );
        }
        Err(e) => reasons.push(format!("invalid resource requests: {e}")),
    }

    if reasons.is_empty() {
        Ok(())
    } else {
        Err(reasons)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::{
        Container, ContainerPort, NodeSpec, NodeStatus, PodSpec, ResourceRequirements, Toleration,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn quantities(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, Quantity>> {
        Some(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned())))
                .collect(),
        )
    }

    fn node() -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some("n1".into()),
                labels: Some(BTreeMap::from([("disk".to_owned(), "ssd".to_owned())])),
                ..ObjectMeta::default()
            },
            spec: Some(NodeSpec::default()),
            status: Some(NodeStatus {
                allocatable: quantities(&[("cpu", "1"), ("memory", "1Gi"), ("pods", "10")]),
                ..NodeStatus::default()
            }),
        }
    }

    fn pod(cpu: &str, host_port: Option<i32>) -> Pod {
        Pod {
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    resources: Some(ResourceRequirements {
                        requests: quantities(&[("cpu", cpu)]),
                        ..ResourceRequirements::default()
                    }),
                    ports: host_port.map(|hp| {
                        vec![ContainerPort {
                            container_port: 80,
                            host_port: Some(hp),
                            ..ContainerPort::default()
                        }]
                    }),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
            ..Pod::default()
        }
    }

    #[test]
    fn a_pod_that_fits_is_admitted() {
        assert_eq!(
            node_fits_pod_basic(&pod("500m", Some(80)), &node(), &[pod("500m", Some(81))]),
            Ok(())
        );
    }

    #[test]
    fn every_failing_check_contributes_its_upstream_reason() {
        let mut n = node();
        n.spec = Some(NodeSpec {
            unschedulable: Some(true),
            taints: Some(vec![Taint {
                key: "dedicated".into(),
                value: Some("infra".into()),
                effect: NO_EXECUTE.into(),
                ..Taint::default()
            }]),
            ..NodeSpec::default()
        });
        let mut p = pod("800m", Some(80));
        if let Some(spec) = p.spec.as_mut() {
            spec.node_selector = Some(BTreeMap::from([("disk".to_owned(), "hdd".to_owned())]));
            spec.node_name = Some("n2".into());
        }
        let existing = [pod("500m", Some(80))];
        assert_eq!(
            node_fits_pod_basic(&p, &n, &existing),
            Err(vec![
                REASON_UNSCHEDULABLE.to_owned(),
                REASON_NODE_NAME.to_owned(),
                REASON_NODE_AFFINITY.to_owned(),
                "node(s) had untolerated taint {dedicated: infra}".to_owned(),
                REASON_NODE_PORTS.to_owned(),
                "Insufficient cpu".to_owned(),
            ])
        );
    }

    #[test]
    fn tolerating_the_unschedulable_taint_ignores_cordoning() {
        let mut n = node();
        n.spec = Some(NodeSpec {
            unschedulable: Some(true),
            ..NodeSpec::default()
        });
        let mut p = pod("100m", None);
        if let Some(spec) = p.spec.as_mut() {
            spec.tolerations = Some(vec![Toleration {
                key: Some(TAINT_NODE_UNSCHEDULABLE.into()),
                operator: Some("Exists".into()),
                effect: Some(NO_SCHEDULE.into()),
                ..Toleration::default()
            }]);
        }
        assert_eq!(node_fits_pod_basic(&p, &n, &[]), Ok(()));
    }

    #[test]
    fn malformed_requests_are_reported_not_panicked_on() {
        let result = node_fits_pod_basic(&pod("a lot", None), &node(), &[]);
        assert!(
            matches!(result, Err(r) if r.len() == 1 && r[0].starts_with("invalid resource requests"))
        );
    }
}
