//! Host ports a pod wants and conflicts with the ports used on a node.
//!
//! Upstream: the scheduler's `NodePorts` plugin and `HostPortInfo`.
//!
//! Only container ports with a `hostPort` above 0 count, from regular and init
//! containers. The protocol defaults to `TCP` and the host IP to `0.0.0.0`;
//! a port bound on `0.0.0.0` conflicts with the same port and protocol on any
//! IP, and the other way round.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Pod;

/// The host IP that binds every address.
pub const BIND_ALL_HOST_IP: &str = "0.0.0.0";
/// The protocol a port without one uses.
pub const DEFAULT_PROTOCOL: &str = "TCP";

/// One host port, with its defaults applied.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostPort {
    /// The host IP (`0.0.0.0` when unset).
    pub ip: String,
    /// The protocol (`TCP` when unset).
    pub protocol: String,
    /// The port on the host.
    pub port: i32,
}

impl HostPort {
    /// A host port, applying the defaults to an empty IP or protocol.
    pub fn new(ip: &str, protocol: &str, port: i32) -> Self {
        let or = |s: &str, default: &str| if s.is_empty() { default } else { s }.to_owned();
        Self {
            ip: or(ip, BIND_ALL_HOST_IP),
            protocol: or(protocol, DEFAULT_PROTOCOL),
            port,
        }
    }
}

/// The host ports the pod's regular and init containers ask for.
pub fn pod_host_ports(pod: &Pod) -> Vec<HostPort> {
    let Some(spec) = pod.spec.as_ref() else {
        return Vec::new();
    };
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let host_port = p.host_port.filter(|hp| *hp > 0)?;
            Some(HostPort::new(
                p.host_ip.as_deref().unwrap_or_default(),
                p.protocol.as_deref().unwrap_or_default(),
                host_port,
            ))
        })
        .collect()
}

/// The host ports in use on a node (upstream `HostPortInfo`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostPortSet {
    /// IPs bound per (protocol, port).
    by_port: BTreeMap<(String, i32), BTreeSet<String>>,
}

impl HostPortSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// The ports used by the given pods (terminal pods, `Succeeded` or
    /// `Failed`, hold no ports and are skipped).
    pub fn from_pods<'a>(pods: impl IntoIterator<Item = &'a Pod>) -> Self {
        let mut set = Self::new();
        for pod in pods {
            let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
            if matches!(phase, Some("Succeeded" | "Failed")) {
                continue;
            }
            for port in pod_host_ports(pod) {
                set.insert(port);
            }
        }
        set
    }

    /// Records a used port.
    pub fn insert(&mut self, port: HostPort) {
        self.by_port
            .entry((port.protocol, port.port))
            .or_default()
            .insert(port.ip);
    }

    /// Whether using `port` would conflict with a port in the set.
    pub fn conflicts(&self, port: &HostPort) -> bool {
        match self.by_port.get(&(port.protocol.clone(), port.port)) {
            None => false,
            Some(ips) if port.ip == BIND_ALL_HOST_IP => !ips.is_empty(),
            Some(ips) => ips.contains(&port.ip) || ips.contains(BIND_ALL_HOST_IP),
        }
    }

    /// Whether none of the pod's host ports conflicts with the set.
    pub fn fits_pod(&self, pod: &Pod) -> bool {
        pod_host_ports(pod).iter().all(|p| !self.conflicts(p))
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{Container, ContainerPort, PodSpec};

    use super::*;

    fn port(host_ip: &str, protocol: &str, host_port: i32) -> ContainerPort {
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        ContainerPort {
            container_port: 80,
            host_ip: opt(host_ip),
            host_port: Some(host_port),
            protocol: opt(protocol),
            name: None,
        }
    }

    fn pod(ports: Vec<ContainerPort>, init_ports: Vec<ContainerPort>) -> Pod {
        Pod {
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    ports: Some(ports),
                    ..Container::default()
                }],
                init_containers: Some(vec![Container {
                    name: "i".into(),
                    ports: Some(init_ports),
                    ..Container::default()
                }]),
                ..PodSpec::default()
            }),
            ..Pod::default()
        }
    }

    #[test]
    fn host_ports_apply_defaults_and_skip_ports_without_host_port() {
        let p = pod(
            vec![port("", "", 8080), port("", "", 0)],
            vec![port("10.0.0.1", "UDP", 53)],
        );
        assert_eq!(
            pod_host_ports(&p),
            [
                HostPort::new("0.0.0.0", "TCP", 8080),
                HostPort::new("10.0.0.1", "UDP", 53)
            ]
        );
    }

    #[test]
    fn bind_all_conflicts_with_any_ip_on_the_same_port_and_protocol() {
        let mut used = HostPortSet::new();
        used.insert(HostPort::new("10.0.0.1", "TCP", 80));
        assert!(used.conflicts(&HostPort::new("", "", 80)));
        assert!(!used.conflicts(&HostPort::new("", "UDP", 80)));
        assert!(!used.conflicts(&HostPort::new("10.0.0.2", "TCP", 80)));
        assert!(used.conflicts(&HostPort::new("10.0.0.1", "TCP", 80)));

        let mut all = HostPortSet::new();
        all.insert(HostPort::new("", "TCP", 80));
        assert!(all.conflicts(&HostPort::new("10.0.0.2", "TCP", 80)));
        assert!(!all.conflicts(&HostPort::new("10.0.0.2", "TCP", 81)));
    }

    #[test]
    fn pods_on_the_node_block_their_ports() {
        let existing = pod(vec![port("", "", 8080)], vec![]);
        let used = HostPortSet::from_pods([&existing]);
        assert!(!used.fits_pod(&pod(vec![port("127.0.0.1", "TCP", 8080)], vec![])));
        assert!(used.fits_pod(&pod(vec![port("", "", 8081)], vec![])));
    }
}
