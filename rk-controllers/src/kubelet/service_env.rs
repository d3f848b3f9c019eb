//! The Service environment variables the kubelet gives every container, as
//! upstream's (the Docker-links form): for each Service of the pod's
//! namespace with a cluster IP (only when the pod's `enableServiceLinks` is
//! not false) and always for `default/kubernetes`:
//!
//! ```text
//! WEB_SERVICE_HOST=127.200.0.7         WEB_PORT=tcp://127.200.0.7:80
//! WEB_SERVICE_PORT=80                  WEB_PORT_80_TCP=tcp://127.200.0.7:80
//! WEB_SERVICE_PORT_HTTP=80             WEB_PORT_80_TCP_PROTO=tcp
//!                                      WEB_PORT_80_TCP_PORT=80
//!                                      WEB_PORT_80_TCP_ADDR=127.200.0.7
//! ```
//!
//! A Service in the pod's own namespace wins over `default/kubernetes` of
//! the same name. The container's own `envFrom` and `env` come after and
//! win over these.

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::Api;
use kube::api::ListParams;

/// The variables for `services`, in order.
pub fn variables(services: &[Service]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for svc in services {
        let Some(spec) = &svc.spec else { continue };
        let Some(ip) = spec
            .cluster_ip
            .as_deref()
            .filter(|ip| !ip.is_empty() && *ip != "None")
        else {
            continue;
        };
        let name = env_name(svc.metadata.name.as_deref().unwrap_or_default());
        let ports = spec.ports.as_deref().unwrap_or_default();
        out.push((format!("{name}_SERVICE_HOST"), ip.to_string()));
        if let Some(first) = ports.first() {
            out.push((format!("{name}_SERVICE_PORT"), first.port.to_string()));
        }
        for p in ports {
            if let Some(port_name) = p.name.as_deref().filter(|n| !n.is_empty()) {
                out.push((
                    format!("{name}_SERVICE_PORT_{}", env_name(port_name)),
                    p.port.to_string(),
                ));
            }
        }
        if let Some(first) = ports.first() {
            let proto = protocol(first.protocol.as_deref());
            out.push((
                format!("{name}_PORT"),
                format!("{proto}://{}:{}", host_port_ip(ip), first.port),
            ));
        }
        for p in ports {
            let proto = protocol(p.protocol.as_deref());
            let prefix = format!("{name}_PORT_{}_{}", p.port, proto.to_ascii_uppercase());
            out.push((
                prefix.clone(),
                format!("{proto}://{}:{}", host_port_ip(ip), p.port),
            ));
            out.push((format!("{prefix}_PROTO"), proto.clone()));
            out.push((format!("{prefix}_PORT"), p.port.to_string()));
            out.push((format!("{prefix}_ADDR"), ip.to_string()));
        }
    }
    out
}

/// The Services whose variables `pod` gets: `default/kubernetes`, then
/// (with service links) those of its namespace, one per name.
pub async fn services_for(client: &kube::Client, pod: &Pod) -> Result<Vec<Service>, String> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let links = pod
        .spec
        .as_ref()
        .and_then(|s| s.enable_service_links)
        .unwrap_or(true);
    let mut services: Vec<Service> = Vec::new();
    if links {
        let api: Api<Service> = Api::namespaced(client.clone(), namespace);
        let list = api
            .list(&ListParams::default())
            .await
            .map_err(|e| format!("listing the services of namespace {namespace}: {e}"))?;
        services.extend(list.items);
    }
    let own_kubernetes = services
        .iter()
        .any(|s| s.metadata.name.as_deref() == Some("kubernetes"));
    if !own_kubernetes {
        let api: Api<Service> = Api::namespaced(client.clone(), "default");
        if let Some(master) = api
            .get_opt("kubernetes")
            .await
            .map_err(|e| format!("reading service default/kubernetes: {e}"))?
        {
            services.insert(0, master);
        }
    }
    Ok(services)
}

fn env_name(raw: &str) -> String {
    raw.to_ascii_uppercase().replace('-', "_")
}

fn protocol(p: Option<&str>) -> String {
    p.unwrap_or("TCP").to_ascii_lowercase()
}

/// An IPv6 address in a URL is bracketed.
fn host_port_ip(ip: &str) -> String {
    if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(name: &str, ip: &str, ports: serde_json::Value) -> Service {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"clusterIP": ip, "ports": ports},
        }))
        .unwrap()
    }

    #[test]
    fn every_port_gets_the_docker_links_variables() {
        let svc = service(
            "my-web",
            "127.200.0.7",
            serde_json::json!([
                {"name": "http", "port": 80, "protocol": "TCP"},
                {"name": "dns-udp", "port": 53, "protocol": "UDP"},
            ]),
        );
        let vars: std::collections::HashMap<_, _> = variables(&[svc]).into_iter().collect();
        assert_eq!(vars["MY_WEB_SERVICE_HOST"], "127.200.0.7");
        assert_eq!(vars["MY_WEB_SERVICE_PORT"], "80");
        assert_eq!(vars["MY_WEB_SERVICE_PORT_HTTP"], "80");
        assert_eq!(vars["MY_WEB_SERVICE_PORT_DNS_UDP"], "53");
        assert_eq!(vars["MY_WEB_PORT"], "tcp://127.200.0.7:80");
        assert_eq!(vars["MY_WEB_PORT_53_UDP"], "udp://127.200.0.7:53");
        assert_eq!(vars["MY_WEB_PORT_53_UDP_PROTO"], "udp");
        assert_eq!(vars["MY_WEB_PORT_53_UDP_PORT"], "53");
        assert_eq!(vars["MY_WEB_PORT_53_UDP_ADDR"], "127.200.0.7");
        assert_eq!(vars.len(), 13);
    }

    #[test]
    fn headless_services_get_none() {
        let svc = service("db", "None", serde_json::json!([{"port": 5432}]));
        assert!(variables(&[svc]).is_empty());
    }
}
