//! Builders for plugin unit tests.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, Node, NodeSpec, NodeStatus, Pod, PodSpec, ResourceRequirements,
    Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::scheduler::types::{NodeInfo, PodInfo};

/// A node with this allocatable cpu and memory and 110 pods.
pub fn node(name: &str, cpu: &str, memory: &str) -> NodeInfo {
    let allocatable: BTreeMap<String, Quantity> =
        [("cpu", cpu), ("memory", memory), ("pods", "110")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), Quantity(v.to_owned())))
            .collect();
    NodeInfo::new(Arc::new(Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some([("kubernetes.io/hostname".to_owned(), name.to_owned())].into()),
            ..ObjectMeta::default()
        },
        spec: Some(NodeSpec::default()),
        status: Some(NodeStatus {
            allocatable: Some(allocatable),
            ..NodeStatus::default()
        }),
    }))
}

fn edit_node(mut n: NodeInfo, f: impl FnOnce(&mut Node)) -> NodeInfo {
    let mut node = (*n.node).clone();
    f(&mut node);
    n.set_node(Arc::new(node));
    n
}

/// Adds a label to a node.
pub fn label(n: NodeInfo, key: &str, value: &str) -> NodeInfo {
    edit_node(n, |node| {
        node.metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(key.into(), value.into());
    })
}

/// Adds a taint to a node.
pub fn taint(n: NodeInfo, key: &str, value: &str, effect: &str) -> NodeInfo {
    edit_node(n, |node| {
        node.spec
            .get_or_insert_with(NodeSpec::default)
            .taints
            .get_or_insert_with(Vec::new)
            .push(Taint {
                key: key.into(),
                value: (!value.is_empty()).then(|| value.to_owned()),
                effect: effect.into(),
                time_added: None,
            });
    })
}

/// A pod in namespace `ns` requesting this cpu and memory ("0": none).
pub fn pod(name: &str, cpu: &str, memory: &str) -> PodInfo {
    let requests: BTreeMap<String, Quantity> = [("cpu", cpu), ("memory", memory)]
        .into_iter()
        .filter(|(_, v)| *v != "0")
        .map(|(k, v)| (k.to_owned(), Quantity(v.to_owned())))
        .collect();
    PodInfo::new(Arc::new(Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("ns".into()),
            uid: Some(format!("uid-{name}")),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "c".into(),
                image: Some("registry.k8s.io/pause:3.10".into()),
                resources: Some(ResourceRequirements {
                    requests: Some(requests),
                    ..ResourceRequirements::default()
                }),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        status: None,
    }))
}

/// Rebuilds the pod info after editing the pod.
pub fn edit_pod(p: PodInfo, f: impl FnOnce(&mut Pod)) -> PodInfo {
    let mut pod = (*p.pod).clone();
    f(&mut pod);
    PodInfo::new(Arc::new(pod))
}

/// Adds a label to a pod.
pub fn pod_label(p: PodInfo, key: &str, value: &str) -> PodInfo {
    edit_pod(p, |pod| {
        pod.metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(key.into(), value.into());
    })
}

/// Sets a pod's priority.
pub fn priority(p: PodInfo, value: i32) -> PodInfo {
    edit_pod(p, |pod| {
        if let Some(spec) = pod.spec.as_mut() {
            spec.priority = Some(value);
        }
    })
}

/// Adds an `Exists` toleration for `key` with `effect`.
pub fn tolerate(p: PodInfo, key: &str, effect: &str) -> PodInfo {
    edit_pod(p, |pod| {
        if let Some(spec) = pod.spec.as_mut() {
            spec.tolerations
                .get_or_insert_with(Vec::new)
                .push(Toleration {
                    key: Some(key.into()),
                    operator: Some("Exists".into()),
                    effect: Some(effect.into()),
                    ..Toleration::default()
                });
        }
    })
}

/// Adds a TCP host port to the pod's first container.
pub fn with_host_port(p: PodInfo, port: i32) -> PodInfo {
    edit_pod(p, |pod| {
        if let Some(c) = pod.spec.as_mut().and_then(|s| s.containers.first_mut()) {
            c.ports.get_or_insert_with(Vec::new).push(ContainerPort {
                container_port: port,
                host_port: Some(port),
                ..ContainerPort::default()
            });
        }
    })
}
