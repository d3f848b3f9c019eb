//! `pods/exec`, `pods/attach` and `pods/portforward`: the request (a
//! WebSocket upgrade speaking Kubernetes' channel protocol, as kubectl sends
//! it for exec and attach; for port-forward a SPDY/3.1 upgrade, or SPDY
//! tunnelled in a WebSocket) is checked against the pod, then forwarded to
//! the kubelet of the pod's node; once the kubelet switches protocols, the
//! two connections are spliced and the API server only copies bytes.

use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;

use super::kubelet;
use super::response::Body;
use crate::error::ApiError;
use crate::registry::store::{self, Target};
use crate::state::ApiState;

/// Headers that describe the hop, not the upgrade, and are not forwarded.
const HOP: [&str; 4] = [
    "host",
    "authorization",
    "content-length",
    "transfer-encoding",
];

/// Run a command in a pod's container (`kind` `exec`), attach to the
/// container (`attach`), or forward ports to the pod (`portforward`), through
/// the kubelet of the pod's node.
pub async fn pod_stream(
    state: &ApiState,
    mut req: Request<Incoming>,
    target: &Target,
    kind: &str,
    container: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    if !matches!(*req.method(), Method::GET | Method::POST) {
        return Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        ));
    }
    let (pod, _) = store::get(state, target).await?;
    let name = &target.name;
    let phase = pod["status"]["phase"].as_str().unwrap_or_default();
    if kind != "portforward" && matches!(phase, "Succeeded" | "Failed") {
        let verb = if kind == "exec" {
            "exec into"
        } else {
            "attach to"
        };
        return Err(ApiError::bad_request(format!(
            "cannot {verb} a container in a completed pod; current phase is {phase}"
        )));
    }
    let node = pod["spec"]["nodeName"].as_str().unwrap_or_default();
    if node.is_empty() {
        return Err(ApiError::bad_request(format!(
            "pod {name} does not have a host assigned"
        )));
    }
    let (addr, port) = kubelet::endpoint(state, node).await?;
    let ns = target.namespace.clone().unwrap_or_default();
    let query = req.uri().query().unwrap_or_default();
    let uri = if kind == "portforward" {
        format!("/portForward/{ns}/{name}?{}", kubelet_ports(query)?)
    } else {
        let container = kubelet::container_of(&pod, name, container)?;
        format!("/{kind}/{ns}/{name}/{container}?{query}")
    };
    let client_upgrade = hyper::upgrade::on(&mut req);
    let mut forward = kubelet::request(
        req.method().clone(),
        &uri,
        &addr,
        port,
        Empty::<bytes::Bytes>::new(),
    )?;
    for (k, v) in req.headers() {
        if !HOP.contains(&k.as_str()) {
            forward.headers_mut().append(k.clone(), v.clone());
        }
    }
    let mut sender = kubelet::connect(&addr, port, node).await?;
    let mut resp = sender.send_request(forward).await.map_err(|e| {
        ApiError::unavailable(format!("the kubelet on node {node} is unreachable: {e}"))
    })?;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        let code = resp.status().as_u16();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let message = String::from_utf8_lossy(&bytes).trim().to_owned();
        return Err(if code == 404 {
            ApiError::not_found("", "pods", name)
        } else {
            ApiError::bad_request(message)
        });
    }
    let kubelet_upgrade = hyper::upgrade::on(&mut resp);
    tokio::spawn(async move {
        let (client, kubelet) = match tokio::try_join!(client_upgrade, kubelet_upgrade) {
            Ok(both) => both,
            Err(e) => {
                tracing::debug!(error = %e, "upgrade failed");
                return;
            }
        };
        let mut client = hyper_util::rt::TokioIo::new(client);
        let mut kubelet = hyper_util::rt::TokioIo::new(kubelet);
        let _ = tokio::io::copy_bidirectional(&mut client, &mut kubelet).await;
    });
    let mut out = Response::new(Empty::<bytes::Bytes>::new().boxed());
    *out.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    for (k, v) in resp.headers() {
        out.headers_mut().append(k.clone(), v.clone());
    }
    out.headers_mut()
        .entry(http::header::CONNECTION)
        .or_insert(HeaderValue::from_static("Upgrade"));
    Ok(out)
}

/// The kubelet's query for a port-forward: each of `ports` (the
/// `PodPortForwardOptions` field, comma-separated or repeated) as a `port`
/// parameter, checked to be a port number.
fn kubelet_ports(query: &str) -> Result<String, ApiError> {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        if k != "ports" && k != "port" {
            continue;
        }
        for port in v.split(',') {
            match port.trim().parse::<u16>() {
                Ok(p) if p > 0 => {
                    out.append_pair("port", &p.to_string());
                }
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "invalid port {port:?}: ports must be numbers between 1 and 65535"
                    )));
                }
            }
        }
    }
    Ok(out.finish())
}

#[cfg(test)]
mod tests {
    use super::kubelet_ports;

    #[test]
    fn ports_become_the_kubelets_port_parameters() {
        assert_eq!(kubelet_ports("").unwrap(), "");
        assert_eq!(
            kubelet_ports("ports=8080,9090&ports=80").unwrap(),
            "port=8080&port=9090&port=80"
        );
        assert!(kubelet_ports("ports=http").is_err());
        assert!(kubelet_ports("ports=0").is_err());
        assert!(kubelet_ports("ports=70000").is_err());
    }
}
