//! From Services and EndpointSlices to what the proxy serves: the frontend
//! addresses of each service port (clusterIP:port, and node
//! address:nodePort) and its ready backends.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::affinity::Balancer;

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The default `ClientIP` affinity timeout (3 hours, as upstream).
pub const DEFAULT_AFFINITY_TIMEOUT: Duration = Duration::from_secs(10800);

/// Counters of one service port.
#[derive(Debug, Default)]
pub struct PortMetrics {
    /// Connections (TCP) accepted.
    pub connections: AtomicU64,
    /// Connections open now.
    pub active: AtomicU64,
    /// Backend connections that failed (and were retried elsewhere).
    pub connect_errors: AtomicU64,
    /// Clients turned away because no endpoint was ready.
    pub no_endpoints: AtomicU64,
    /// Bytes from clients to backends.
    pub bytes_in: AtomicU64,
    /// Bytes from backends to clients.
    pub bytes_out: AtomicU64,
    /// Datagrams received (UDP).
    pub packets: AtomicU64,
}

/// One served service port.
#[derive(Debug, Default)]
pub struct ServicePort {
    /// `namespace/service:port` (the port's name, or its number).
    pub name: String,
    /// Picks backends.
    pub balancer: Balancer,
    /// Counters.
    pub metrics: PortMetrics,
}

/// Identifies a service port.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortKey {
    /// The service's namespace.
    pub namespace: String,
    /// The service's name.
    pub service: String,
    /// The port's name (may be empty).
    pub port_name: String,
    /// `TCP` or `UDP`.
    pub protocol: String,
}

/// What a service port should look like.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredPort {
    /// Which port.
    pub key: PortKey,
    /// The port number (for naming).
    pub port: u16,
    /// Where to listen.
    pub frontends: Vec<SocketAddr>,
    /// `ClientIP` affinity timeout, if on.
    pub affinity: Option<Duration>,
}

/// The ports a Service needs served (none for headless and ExternalName
/// services, and SCTP ports, which are not proxied).
pub fn desired_ports(svc: &Service, node_addresses: &[IpAddr]) -> Vec<DesiredPort> {
    let Some(spec) = svc.spec.as_ref() else {
        return Vec::new();
    };
    if spec.type_.as_deref() == Some("ExternalName") {
        return Vec::new();
    }
    let cluster_ips: Vec<IpAddr> = spec
        .cluster_ips
        .clone()
        .filter(|ips| !ips.is_empty())
        .or_else(|| spec.cluster_ip.clone().map(|ip| vec![ip]))
        .unwrap_or_default()
        .iter()
        .filter_map(|ip| ip.parse().ok())
        .collect();
    let node_ports = matches!(spec.type_.as_deref(), Some("NodePort" | "LoadBalancer"));
    let affinity = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        spec.session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .map_or(DEFAULT_AFFINITY_TIMEOUT, |s| {
                Duration::from_secs(s.max(1) as u64)
            })
    });
    let namespace = svc.metadata.namespace.clone().unwrap_or_default();
    let service = svc.metadata.name.clone().unwrap_or_default();
    let mut out = Vec::new();
    for p in spec.ports.iter().flatten() {
        let protocol = p.protocol.clone().unwrap_or_else(|| "TCP".to_owned());
        if protocol != "TCP" && protocol != "UDP" {
            continue;
        }
        let Ok(port) = u16::try_from(p.port) else {
            continue;
        };
        let mut frontends: Vec<SocketAddr> = cluster_ips
            .iter()
            .map(|ip| SocketAddr::new(*ip, port))
            .collect();
        if node_ports
            && let Some(np) = p
                .node_port
                .and_then(|n| u16::try_from(n).ok())
                .filter(|n| *n > 0)
        {
            frontends.extend(node_addresses.iter().map(|ip| SocketAddr::new(*ip, np)));
        }
        if frontends.is_empty() {
            continue;
        }
        out.push(DesiredPort {
            key: PortKey {
                namespace: namespace.clone(),
                service: service.clone(),
                port_name: p.name.clone().unwrap_or_default(),
                protocol,
            },
            port,
            frontends,
            affinity,
        });
    }
    out
}

/// The ready backends of a service port from the service's EndpointSlices:
/// endpoints whose `ready` condition is true (or unset), on the slice port
/// with the same name and protocol. When no endpoint is ready, serving
/// endpoints that are terminating are used, as upstream does.
pub fn backends<'a>(
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
    key: &PortKey,
) -> Vec<SocketAddr> {
    let mut ready = Vec::new();
    let mut terminating = Vec::new();
    for slice in slices {
        if !matches!(slice.address_type.as_str(), "IPv4" | "IPv6") {
            continue;
        }
        let Some(port) = slice.ports.iter().flatten().find(|p| {
            p.name.clone().unwrap_or_default() == key.port_name
                && p.protocol.clone().unwrap_or_else(|| "TCP".to_owned()) == key.protocol
        }) else {
            continue;
        };
        let Some(number) = port.port.and_then(|n| u16::try_from(n).ok()) else {
            continue;
        };
        for ep in slice.endpoints.iter().flatten() {
            let conditions = ep.conditions.clone().unwrap_or_default();
            let target = if conditions.ready != Some(false) {
                &mut ready
            } else if conditions.serving == Some(true) && conditions.terminating == Some(true) {
                &mut terminating
            } else {
                continue;
            };
            for addr in &ep.addresses {
                if let Ok(ip) = addr.parse::<IpAddr>() {
                    let sa = SocketAddr::new(ip, number);
                    if !target.contains(&sa) {
                        target.push(sa);
                    }
                }
            }
        }
    }
    let mut chosen = if ready.is_empty() { terminating } else { ready };
    chosen.sort();
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(spec: serde_json::Value) -> Service {
        serde_json::from_value(
            json!({"metadata": {"name": "web", "namespace": "ns"}, "spec": spec}),
        )
        .unwrap()
    }

    #[test]
    fn cluster_ip_and_node_ports_become_frontends() {
        let svc = service(json!({
            "type": "NodePort", "clusterIP": "127.200.0.5",
            "ports": [{"name": "http", "port": 80, "nodePort": 30080}, {"name": "dns", "port": 53, "protocol": "UDP"}],
        }));
        let ports = desired_ports(&svc, &[IpAddr::from([127, 0, 0, 1])]);
        assert_eq!(ports.len(), 2);
        assert_eq!(
            ports[0].frontends,
            vec![
                "127.200.0.5:80".parse().unwrap(),
                "127.0.0.1:30080".parse().unwrap()
            ]
        );
        assert_eq!(ports[1].key.protocol, "UDP");
    }

    #[test]
    fn headless_services_are_not_proxied() {
        let svc = service(json!({"clusterIP": "None", "ports": [{"port": 80}]}));
        assert!(desired_ports(&svc, &[]).is_empty());
    }

    #[test]
    fn only_ready_endpoints_on_the_named_port_are_backends() {
        let slice: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": "web-abc", "labels": {SERVICE_NAME_LABEL: "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [
                {"addresses": ["127.100.0.2"], "conditions": {"ready": true}},
                {"addresses": ["127.100.0.3"], "conditions": {"ready": false}},
                {"addresses": ["127.100.0.4"]},
            ],
        }))
        .unwrap();
        let key = PortKey {
            namespace: "ns".into(),
            service: "web".into(),
            port_name: "http".into(),
            protocol: "TCP".into(),
        };
        assert_eq!(
            backends([&slice], &key),
            vec![
                "127.100.0.2:8080".parse().unwrap(),
                "127.100.0.4:8080".parse().unwrap()
            ]
        );
        let other = PortKey {
            port_name: "metrics".into(),
            ..key
        };
        assert!(backends([&slice], &other).is_empty());
    }
}
