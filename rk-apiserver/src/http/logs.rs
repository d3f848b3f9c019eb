//! `pods/log`: proxied to the kubelet of the pod's node, at the node's
//! `daemonEndpoints.kubeletEndpoint.Port` on its InternalIP.

use futures::StreamExt;
use http::Response;
use http_body_util::{BodyExt, Empty};
use serde_json::Value;

use super::resource::Call;
use super::response::Body;
use crate::error::ApiError;
use crate::registry::store::{self, Target};

/// Stream a container's log from its kubelet.
pub async fn pod_logs(call: &Call, target: &Target) -> Result<Response<Body>, ApiError> {
    let (pod, _) = store::get(&call.state, target).await?;
    let node_name = pod["spec"]["nodeName"].as_str().unwrap_or("").to_string();
    let container = super::kubelet::container_of(&pod, &target.name, call.query.get("container"))?;
    if node_name.is_empty() {
        // No node to ask yet: as upstream's log streamer without a
        // location, 204 No Content.
        return Ok(super::response::text(204, ""));
    }
    let (addr, port) = super::kubelet::endpoint(&call.state, &node_name).await?;
    let mut query = Vec::new();
    for k in [
        "follow",
        "previous",
        "timestamps",
        "tailLines",
        "sinceSeconds",
        "sinceTime",
        "limitBytes",
    ] {
        if let Some(v) = call.query.get(k) {
            query.push(format!(
                "{k}={}",
                form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>()
            ));
        }
    }
    let ns = target.namespace.clone().unwrap_or_default();
    let uri = format!(
        "/containerLogs/{ns}/{}/{container}?{}",
        target.name,
        query.join("&")
    );
    let mut sender = super::kubelet::connect(&addr, port, &node_name).await?;
    let req = super::kubelet::request(
        http::Method::GET,
        &uri,
        &addr,
        port,
        Empty::<bytes::Bytes>::new(),
    )?;
    let resp = sender.send_request(req).await.map_err(|e| {
        ApiError::unavailable(format!(
            "the kubelet on node {node_name} is unreachable: {e}"
        ))
    })?;
    let (parts, body) = resp.into_parts();
    if !parts.status.is_success() {
        let bytes = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let msg = String::from_utf8_lossy(&bytes).to_string();
        let parsed: Option<Value> = serde_json::from_str(&msg).ok();
        let message = parsed
            .as_ref()
            .and_then(|v| v["message"].as_str().map(str::to_string))
            .unwrap_or(msg);
        let mut e = ApiError::bad_request(message);
        if parts.status.as_u16() == 404 {
            e = ApiError::not_found("", "pods", &target.name);
        }
        return Err(e);
    }
    // A broken kubelet stream just ends the response body.
    let stream = body
        .into_data_stream()
        .take_while(|r| std::future::ready(r.is_ok()))
        .filter_map(|r| {
            std::future::ready(
                r.ok()
                    .map(|b| Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(b))),
            )
        });
    let body = BodyExt::boxed(http_body_util::StreamBody::new(stream));
    let mut out = Response::new(body);
    out.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    Ok(out)
}
