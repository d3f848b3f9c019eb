//! `metrics.k8s.io/v1beta1`: NodeMetrics and PodMetrics, what `kubectl top`
//! and the HorizontalPodAutoscaler controller read. Upstream a separate
//! metrics-server scrapes every kubelet and serves them through API
//! aggregation; here the API server asks the kubelets' `/stats/summary`
//! for each request (only the nodes the answer needs) and shapes the
//! answer as metrics-server would: CPU in nanocores, memory in KiB, the
//! labels of the node or pod, and `labelSelector` honoured.

use std::collections::{BTreeMap, HashMap};

use http::{Method, Response};
use http_body_util::BodyExt;
use serde_json::{Value, json};

use super::kubelet;
use super::response::{self, Body};
use crate::error::ApiError;
use crate::registry::subresources::parse_label_selector;
use crate::request::{Query, ResourcePath};
use crate::state::ApiState;

const API_VERSION: &str = "metrics.k8s.io/v1beta1";
/// The rk kubelet samples usage every 5 s: the window of each rate.
const WINDOW: &str = "5s";
/// How long one kubelet may take to answer.
const KUBELET_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Serve a read of `nodes` or `pods` in `metrics.k8s.io`.
pub async fn serve(
    state: &ApiState,
    rp: &ResourcePath,
    query: &Query,
    method: &Method,
) -> Result<Response<Body>, ApiError> {
    if method != Method::GET {
        return Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        ));
    }
    if rp.subresource.is_some() || query.flag("watch") || rp.legacy_watch {
        return Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        ));
    }
    let selector = match query.get("labelSelector") {
        Some(s) if !s.is_empty() => Some(parse_label_selector(s)?),
        _ => None,
    };
    let matches = |object: &Value| {
        selector.as_ref().is_none_or(|sel| {
            let labels = labels_of(object);
            sel.matches(&labels)
        })
    };
    match (rp.resource.as_str(), &rp.namespace) {
        ("nodes", None) => {
            let nodes: Vec<Value> = objects(state, "", "nodes", None)
                .await?
                .into_iter()
                .filter(|n| rp.name.as_deref().is_none_or(|want| name_of(n) == want))
                .filter(|n| matches(n))
                .collect();
            let names: Vec<String> = nodes.iter().map(|n| name_of(n).to_owned()).collect();
            let summaries = summaries(state, &names).await;
            let items: Vec<Value> = nodes
                .iter()
                .filter_map(|n| {
                    let s = summaries.get(name_of(n))?;
                    node_metrics(n, &s["node"])
                })
                .collect();
            answer(rp, "NodeMetrics", "nodes", items)
        }
        ("pods", ns) => {
            let pods: Vec<Value> = objects(state, "", "pods", ns.as_deref())
                .await?
                .into_iter()
                .filter(|p| rp.name.as_deref().is_none_or(|want| name_of(p) == want))
                .filter(|p| p["status"]["phase"] == "Running")
                .filter(|p| matches(p))
                .collect();
            let mut nodes: Vec<String> = pods
                .iter()
                .filter_map(|p| p["spec"]["nodeName"].as_str().map(str::to_owned))
                .collect();
            nodes.sort();
            nodes.dedup();
            let summaries = summaries(state, &nodes).await;
            // (namespace, name, uid) -> the kubelet's entry.
            let mut usage: HashMap<(String, String, String), &Value> = HashMap::new();
            for s in summaries.values() {
                for p in s["pods"].as_array().into_iter().flatten() {
                    let r = &p["podRef"];
                    let key = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
                    usage.insert((key("namespace"), key("name"), key("uid")), p);
                }
            }
            let items: Vec<Value> = pods
                .iter()
                .filter_map(|p| {
                    let m = &p["metadata"];
                    let key = |k: &str| m[k].as_str().unwrap_or_default().to_owned();
                    let entry = usage.get(&(key("namespace"), key("name"), key("uid")))?;
                    pod_metrics(p, entry)
                })
                .collect();
            answer(rp, "PodMetrics", "pods", items)
        }
        _ => Err(ApiError::no_route()),
    }
}

/// A list, or the one object asked for (404 when it has no metrics).
fn answer(
    rp: &ResourcePath,
    kind: &str,
    plural: &str,
    mut items: Vec<Value>,
) -> Result<Response<Body>, ApiError> {
    match &rp.name {
        Some(name) => match items.pop() {
            Some(item) => Ok(response::json(200, &item)),
            None => Err(ApiError::not_found("metrics.k8s.io", plural, name)),
        },
        None => Ok(response::json(
            200,
            &json!({
                "kind": format!("{kind}List"),
                "apiVersion": API_VERSION,
                "metadata": {},
                "items": items,
            }),
        )),
    }
}

fn name_of(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or_default()
}

fn labels_of(object: &Value) -> BTreeMap<String, String> {
    object["metadata"]["labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// The stored objects of a core resource (from the watch cache).
async fn objects(
    state: &ApiState,
    group: &str,
    plural: &str,
    namespace: Option<&str>,
) -> Result<Vec<Value>, ApiError> {
    let info = state
        .resource(group, "v1", plural)
        .ok_or_else(ApiError::no_route)?;
    let cache = state.cache(&info).await?;
    let prefix = match namespace {
        Some(ns) => format!("{}{ns}/", info.storage_prefix()),
        None => info.storage_prefix(),
    };
    Ok(cache
        .snapshot(&prefix)
        .objects
        .iter()
        .filter_map(|o| serde_json::from_slice(&o.bytes).ok())
        .collect())
}

/// The kubelets' summaries of `nodes`, those that answered.
async fn summaries(state: &ApiState, nodes: &[String]) -> HashMap<String, Value> {
    use futures::StreamExt;
    futures::stream::iter(nodes.iter().cloned())
        .map(|node| async move {
            let summary = tokio::time::timeout(KUBELET_TIMEOUT, summary(state, &node)).await;
            match summary {
                Ok(Ok(s)) => Some((node, s)),
                Ok(Err(e)) => {
                    tracing::debug!(%node, error = %e.message, "no usage from the kubelet");
                    None
                }
                Err(_) => {
                    tracing::debug!(%node, "the kubelet did not answer for usage in time");
                    None
                }
            }
        })
        .buffer_unordered(16)
        .filter_map(|x| async move { x })
        .collect()
        .await
}

async fn summary(state: &ApiState, node: &str) -> Result<Value, ApiError> {
    let (addr, port) = kubelet::endpoint(state, node).await?;
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("node", node)
        .finish();
    let req = kubelet::request(
        Method::GET,
        &format!("/stats/summary?{query}"),
        &addr,
        port,
        http_body_util::Empty::<bytes::Bytes>::new(),
    )?;
    let mut sender = kubelet::connect(&addr, port, node).await?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| ApiError::unavailable(format!("the kubelet on node {node}: {e}")))?;
    if !resp.status().is_success() {
        return Err(ApiError::unavailable(format!(
            "the kubelet on node {node} answered {}",
            resp.status()
        )));
    }
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| ApiError::unavailable(format!("the kubelet on node {node}: {e}")))?
        .to_bytes();
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::unavailable(format!("the kubelet on node {node}: {e}")))
}

/// `{cpu, memory}` as metrics-server writes them.
fn usage(stats: &Value) -> Option<Value> {
    let cpu = stats["cpu"]["usageNanoCores"].as_u64()?;
    let memory = stats["memory"]["workingSetBytes"].as_u64()?;
    Some(json!({"cpu": format!("{cpu}n"), "memory": format!("{}Ki", memory / 1024)}))
}

fn metadata(object: &Value) -> Value {
    let m = &object["metadata"];
    let mut out = json!({
        "name": m["name"],
        "creationTimestamp": crate::registry::meta::now(),
    });
    if m["namespace"].is_string() {
        out["namespace"] = m["namespace"].clone();
    }
    if m["labels"].is_object() {
        out["labels"] = m["labels"].clone();
    }
    out
}

fn node_metrics(node: &Value, stats: &Value) -> Option<Value> {
    Some(json!({
        "kind": "NodeMetrics",
        "apiVersion": API_VERSION,
        "metadata": metadata(node),
        "timestamp": stats["cpu"]["time"],
        "window": WINDOW,
        "usage": usage(stats)?,
    }))
}

fn pod_metrics(pod: &Value, stats: &Value) -> Option<Value> {
    let containers: Vec<Value> = stats["containers"]
        .as_array()?
        .iter()
        .filter_map(|c| Some(json!({"name": c["name"], "usage": usage(c)?})))
        .collect();
    if containers.is_empty() {
        return None;
    }
    Some(json!({
        "kind": "PodMetrics",
        "apiVersion": API_VERSION,
        "metadata": metadata(pod),
        "timestamp": stats["cpu"]["time"],
        "window": WINDOW,
        "containers": containers,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_is_written_as_metrics_server_does() {
        let stats =
            json!({"cpu": {"usageNanoCores": 1_500_000}, "memory": {"workingSetBytes": 10_240}});
        assert_eq!(
            usage(&stats),
            Some(json!({"cpu": "1500000n", "memory": "10Ki"}))
        );
        assert_eq!(usage(&json!({})), None);
        let pod = json!({"metadata": {"name": "p", "namespace": "ns", "labels": {"a": "b"}}});
        let entry = json!({"cpu": {"time": "t"}, "containers": [
            {"name": "c", "cpu": {"usageNanoCores": 1}, "memory": {"workingSetBytes": 2048}}
        ]});
        let m = pod_metrics(&pod, &entry).expect("metrics");
        assert_eq!(m["metadata"]["namespace"], "ns");
        assert_eq!(m["metadata"]["labels"]["a"], "b");
        assert_eq!(m["containers"][0]["usage"]["memory"], "2Ki");
    }
}
