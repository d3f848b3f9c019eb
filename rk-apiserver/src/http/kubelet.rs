//! Reaching a node's kubelet: its address (the node's `InternalIP`) and
//! port (`status.daemonEndpoints.kubeletEndpoint.Port`), and a connection
//! to it, for the subresources the kubelet serves (`pods/log`,
//! `pods/exec`).

use http::Request;
use hyper::client::conn::http1::SendRequest;
use serde_json::Value;

use crate::error::ApiError;
use crate::registry::store::{self, Target};
use crate::state::ApiState;

/// The kubelet of `node`: host and port.
pub async fn endpoint(state: &ApiState, node: &str) -> Result<(String, u16), ApiError> {
    let target = Target {
        info: state
            .resource("", "v1", "nodes")
            .ok_or_else(ApiError::no_route)?,
        namespace: None,
        name: node.to_owned(),
    };
    let (node, _) = store::get(state, &target).await?;
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or(10250);
    let addr = node["status"]["addresses"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["type"] == "InternalIP")
        .and_then(|a| a["address"].as_str())
        .unwrap_or("127.0.0.1")
        .to_owned();
    Ok((addr, port))
}

/// An HTTP/1 connection to the kubelet at `addr:port` (upgrades allowed);
/// errors are 503s naming `node`.
pub async fn connect<B>(addr: &str, port: u16, node: &str) -> Result<SendRequest<B>, ApiError>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let unavailable = |e: String| {
        ApiError::unavailable(format!("the kubelet on node {node} is unreachable: {e}"))
    };
    let stream = tokio::net::TcpStream::connect((addr, port))
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    let io = hyper_util::rt::TokioIo::new(stream);
    let (sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    Ok(sender)
}

/// The container a request names (`container`), or the pod's only one;
/// errors as upstream words them.
pub fn container_of(pod: &Value, name: &str, asked: Option<&str>) -> Result<String, ApiError> {
    let names = |key: &str| -> Vec<String> {
        pod["spec"][key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str().map(str::to_owned))
            .collect()
    };
    let containers = names("containers");
    match asked {
        Some(c) if !c.is_empty() => {
            let known = containers
                .iter()
                .chain(names("initContainers").iter())
                .chain(names("ephemeralContainers").iter())
                .any(|n| n == c);
            if known {
                Ok(c.to_owned())
            } else {
                Err(ApiError::bad_request(format!(
                    "container {c} is not valid for pod {name}"
                )))
            }
        }
        _ if containers.len() == 1 => Ok(containers[0].clone()),
        _ => Err(ApiError::bad_request(format!(
            "a container name must be specified for pod {name}, choose one of: [{}]",
            containers.join(" ")
        ))),
    }
}

/// A request to the kubelet for `uri`, with `host` set.
pub fn request<B>(
    method: http::Method,
    uri: &str,
    addr: &str,
    port: u16,
    body: B,
) -> Result<Request<B>, ApiError> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header("host", format!("{addr}:{port}"))
        .body(body)
        .map_err(|e| ApiError::internal(e.to_string()))
}
