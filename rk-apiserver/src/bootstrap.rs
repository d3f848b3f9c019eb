//! What the API server creates itself, as upstream's bootstrap controllers
//! do: the four system namespaces, the two system priority classes, and the
//! `default/kubernetes` Service with its Endpoints and EndpointSlice, which
//! point at this server.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde_json::{Value, json};

use crate::registry::store::{self, Target, WriteOptions};
use crate::state::ApiState;

/// The field manager of what the server writes itself.
const MANAGER: &str = "kube-apiserver";

fn options() -> WriteOptions {
    WriteOptions {
        field_manager: MANAGER.into(),
        ..Default::default()
    }
}

/// Create what every cluster has from the start: the four system namespaces
/// and the two system priority classes.
pub(crate) async fn system_objects(state: &ApiState) {
    let Some(ns_info) = state.resource("", "v1", "namespaces") else {
        return;
    };
    let opts = options();
    for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        match store::create(state, &ns_info, None, obj, &opts).await {
            Ok(_) => {}
            Err(e) if e.code == 409 => {}
            Err(e) => {
                tracing::error!(namespace = name, error = %e, "creating a system namespace failed")
            }
        }
    }
    // Upstream's two system priority classes.
    let Some(pc_info) = state.resource("scheduling.k8s.io", "v1", "priorityclasses") else {
        return;
    };
    for (name, value, description) in [
        (
            "system-node-critical",
            2_000_001_000,
            "Used for system critical pods that must not be moved from their current node.",
        ),
        (
            "system-cluster-critical",
            2_000_000_000,
            "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
        ),
    ] {
        let obj = json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
            "metadata": {"name": name}, "value": value, "description": description});
        match store::create(state, &pc_info, None, obj, &opts).await {
            Ok(_) => {}
            Err(e) if e.code == 409 => {}
            Err(e) => {
                tracing::error!(priority_class = name, error = %e, "creating a system priority class failed")
            }
        }
    }
}

/// The Service every cluster has: `default/kubernetes`, port 443 named
/// `https`, on the first address of the Service range, with an Endpoints
/// and an EndpointSlice naming this server's address and port (the bind
/// address, or 127.0.0.1 when bound to every address). Kept as it is when it
/// exists; the endpoints are rewritten when the server's address changed.
pub(crate) async fn kubernetes_service(state: &ApiState, addr: SocketAddr) {
    let ip = match addr.ip() {
        ip if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        ip => ip,
    };
    let port = addr.port();
    let first = state.service_cidr.first();
    let service = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default",
            "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"clusterIP": first.to_string(), "type": "ClusterIP", "sessionAffinity": "None",
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]},
    });
    if let Err(e) = create_if_missing(state, "", "services", service.clone()).await {
        // The first address is taken (a store from before this Service
        // existed): any other will do.
        let mut service = service;
        service["spec"]
            .as_object_mut()
            .map(|spec| spec.remove("clusterIP"));
        if let Err(e2) = create_if_missing(state, "", "services", service).await {
            tracing::error!(error = %e, retry_error = %e2, "creating the kubernetes Service failed");
        }
    }
    let address_type = if ip.is_ipv4() { "IPv4" } else { "IPv6" };
    let endpoints = json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "kubernetes", "namespace": "default",
            "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": [{"ip": ip.to_string()}],
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}],
    });
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "kubernetes", "namespace": "default",
            "labels": {"kubernetes.io/service-name": "kubernetes"}},
        "addressType": address_type,
        "endpoints": [{"addresses": [ip.to_string()], "conditions": {"ready": true}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    });
    for (group, plural, obj, field) in [
        ("", "endpoints", endpoints, "subsets"),
        ("discovery.k8s.io", "endpointslices", slice, "endpoints"),
    ] {
        if let Err(e) = create_or_point(state, group, plural, obj, field).await {
            tracing::error!(resource = plural, error = %e, "writing the kubernetes Service's endpoints failed");
        }
    }
}

/// Create `obj`; one that exists already is left alone.
async fn create_if_missing(
    state: &ApiState,
    group: &str,
    plural: &str,
    obj: Value,
) -> Result<(), crate::error::ApiError> {
    let Some(info) = state.resource(group, "v1", plural) else {
        return Ok(());
    };
    let namespace = obj["metadata"]["namespace"].as_str().map(str::to_string);
    match store::create(state, &info, namespace.as_deref(), obj, &options()).await {
        Err(e) if e.code != 409 => Err(e),
        _ => Ok(()),
    }
}

/// Create `obj`, or when it exists with another `field` (addresses and
/// ports), write this one's.
async fn create_or_point(
    state: &ApiState,
    group: &str,
    plural: &str,
    obj: Value,
    field: &str,
) -> Result<(), crate::error::ApiError> {
    let Some(info) = state.resource(group, "v1", plural) else {
        return Ok(());
    };
    let wanted = obj[field].clone();
    let ports = obj.get("ports").cloned();
    match store::create(state, &info, Some("default"), obj, &options()).await {
        Err(e) if e.code == 409 => {}
        other => return other.map(drop),
    }
    let target = Target {
        info: info.clone(),
        namespace: Some("default".into()),
        name: "kubernetes".into(),
    };
    let (current, _) = store::get(state, &target).await?;
    if current[field] == wanted && current.get("ports") == ports.as_ref() {
        return Ok(());
    }
    store::guaranteed_update(
        state,
        &target,
        None,
        store::Part::Main,
        &options(),
        |current| {
            let mut next = current.clone();
            next[field] = wanted.clone();
            if let Some(p) = &ports {
                next["ports"] = p.clone();
            }
            Ok(next)
        },
    )
    .await
    .map(drop)
}
