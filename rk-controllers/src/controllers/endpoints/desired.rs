//! What a Service's endpoints should be, computed from its pods: the part
//! the Endpoints and EndpointSlice controllers share.
//!
//! As upstream: only Services with a selector are managed; a pod takes part
//! if it has an IP and is not terminal; it is ready when its `Ready`
//! condition is true and it is not being deleted (or always, with
//! `publishNotReadyAddresses`); each Service port's `targetPort` resolves
//! to a number directly or through the pod's named container port, and pods
//! that resolve to different port sets are grouped apart.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// One resolved port of a Service on a pod.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResolvedPort {
    /// The Service port's name ("" when unnamed).
    pub name: String,
    /// The port on the pod.
    pub port: i32,
    /// TCP, UDP or SCTP.
    pub protocol: String,
    /// The Service port's appProtocol.
    pub app_protocol: Option<String>,
}

/// One pod as an endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodEndpoint {
    /// The pod's IP.
    pub ip: String,
    /// Counted as ready (ready pod, or publishNotReadyAddresses).
    pub ready: bool,
    /// The pod's own readiness, whatever publishNotReadyAddresses says.
    pub serving: bool,
    /// The pod is being deleted.
    pub terminating: bool,
    /// The pod's node.
    pub node_name: Option<String>,
    /// The pod's name.
    pub pod_name: String,
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's uid.
    pub uid: String,
}

/// Endpoints grouped by the port set they serve, ordered for stable output.
pub type Groups = BTreeMap<Vec<ResolvedPort>, Vec<PodEndpoint>>;

/// True if the controllers manage this Service's endpoints.
pub fn is_managed(svc: &Service) -> bool {
    let Some(spec) = &svc.spec else { return false };
    spec.type_.as_deref() != Some("ExternalName")
        && spec.selector.as_ref().is_some_and(|s| !s.is_empty())
}

/// True if `pod` is selected by `svc`.
pub fn selects(svc: &Service, pod: &Pod) -> bool {
    let Some(selector) = svc.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return false;
    };
    if selector.is_empty() || svc.metadata.namespace != pod.metadata.namespace {
        return false;
    }
    let labels = pod.metadata.labels.as_ref();
    selector
        .iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

fn resolve_target(pod: &Pod, target: Option<&IntOrString>, port: i32) -> Option<i32> {
    match target {
        None => Some(port),
        Some(IntOrString::Int(0)) => Some(port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            if let Ok(n) = name.parse::<i32>() {
                return Some(n);
            }
            let spec = pod.spec.as_ref()?;
            spec.containers
                .iter()
                .chain(spec.init_containers.iter().flatten())
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .map(|p| p.container_port)
        }
    }
}

/// Group `pods` (any pods; those not selected are skipped) into endpoints
/// of `svc`.
pub fn compute<'a>(svc: &Service, pods: impl IntoIterator<Item = &'a Pod>) -> Groups {
    let mut groups = Groups::new();
    let Some(spec) = &svc.spec else { return groups };
    let publish_not_ready = spec.publish_not_ready_addresses == Some(true);
    for pod in pods {
        if !selects(svc, pod) {
            continue;
        }
        let status = pod.status.as_ref();
        let phase = status.and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded") | Some("Failed")) {
            continue;
        }
        let Some(ip) = status
            .and_then(|s| s.pod_ip.clone())
            .filter(|ip| !ip.is_empty())
        else {
            continue;
        };
        let terminating = pod.metadata.deletion_timestamp.is_some();
        if terminating && !publish_not_ready {
            // Upstream keeps terminating pods only in slices, as not ready;
            // both controllers here drop them unless published.
            continue;
        }
        let serving = pod_ready(pod);
        let ready = publish_not_ready || (serving && !terminating);
        let mut ports: Vec<ResolvedPort> = Vec::new();
        for p in spec.ports.iter().flatten() {
            if let Some(port) = resolve_target(pod, p.target_port.as_ref(), p.port) {
                ports.push(ResolvedPort {
                    name: p.name.clone().unwrap_or_default(),
                    port,
                    protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    app_protocol: p.app_protocol.clone(),
                });
            }
        }
        ports.sort();
        groups.entry(ports).or_default().push(PodEndpoint {
            ip,
            ready,
            serving,
            terminating,
            node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            pod_name: pod.metadata.name.clone().unwrap_or_default(),
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
        });
    }
    for eps in groups.values_mut() {
        eps.sort_by(|a, b| a.ip.cmp(&b.ip).then(a.pod_name.cmp(&b.pod_name)));
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, ip: &str, ready: bool, port_name: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "d", "labels": {"app": "web"}, "uid": name},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "x",
                "ports": [{"name": port_name, "containerPort": 8080}]}]},
            "status": {"podIP": ip, "phase": "Running",
                "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}
        }))
        .unwrap()
    }

    fn svc(publish: bool) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "d"},
            "spec": {"selector": {"app": "web"}, "publishNotReadyAddresses": publish,
                "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}
        }))
        .unwrap()
    }

    #[test]
    fn named_target_ports_group_pods_and_readiness_is_kept() {
        let pods = [
            pod("a", "10.0.0.2", true, "http"),
            pod("b", "10.0.0.1", false, "http"),
            pod("c", "10.0.0.3", true, "other"),
        ];
        let g = compute(&svc(false), pods.iter());
        assert_eq!(g.len(), 2);
        let with_port = g.iter().find(|(k, _)| !k.is_empty()).unwrap();
        assert_eq!(with_port.0[0].port, 8080);
        let ips: Vec<_> = with_port.1.iter().map(|e| (&e.ip[..], e.ready)).collect();
        assert_eq!(ips, [("10.0.0.1", false), ("10.0.0.2", true)]);
        // The pod whose container has no `http` port serves no port.
        assert_eq!(g[&Vec::new()][0].pod_name, "c");
    }

    #[test]
    fn publish_not_ready_addresses_marks_every_pod_ready() {
        let pods = [pod("b", "10.0.0.1", false, "http")];
        let g = compute(&svc(true), pods.iter());
        assert!(g.values().next().unwrap()[0].ready);
    }
}
