//! The kubelet's HTTP port: `/healthz`, `/pods` (the pods it runs, as a
//! PodList), `/metrics` (Prometheus text), `/stats/summary` (resource
//! usage, `?node=` for one of several sim nodes; see [`super::stats`]) and
//! `/containerLogs/{namespace}/{pod}/{container}` with `follow`,
//! `tailLines`, `sinceSeconds`, `sinceTime`, `timestamps`, `previous` and
//! `limitBytes`, which the API server's `pods/log` proxies to, and
//! `/exec/{namespace}/{pod}/{container}` and `/attach/...` for `pods/exec`
//! and `pods/attach` (see [`super::exec`] and [`super::attach`]),
//! `/portForward/{namespace}/{pod}` for `pods/portforward` (see
//! [`super::port_forward`]).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use tokio::net::TcpListener;

use super::Shared;
use super::logs::{self, LogOptions};

type Body = BoxBody<Bytes, Infallible>;

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()).boxed());
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn json(value: &serde_json::Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(value.to_string())).boxed());
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

fn query(req: &Request<Incoming>) -> HashMap<String, String> {
    form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

fn truthy(v: Option<&String>) -> bool {
    matches!(v.map(String::as_str), Some("true" | "1" | ""))
}

/// Bind the kubelet's port (0 picks a free one).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serve requests until the task is dropped.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(route(req, &shared).await) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .with_upgrades()
                .await
            {
                tracing::debug!(error = %e, "kubelet connection ended");
            }
        });
    }
}

async fn route(req: Request<Incoming>, shared: &Arc<Shared>) -> Response<Body> {
    if let Some(rest) = req.uri().path().strip_prefix("/portForward/") {
        let parts: Vec<String> = rest.split('/').map(str::to_owned).collect();
        return match (req.method(), parts.as_slice()) {
            (&http::Method::GET | &http::Method::POST, [ns, pod] | [ns, pod, _]) => {
                super::port_forward::handle(req, shared, ns, pod).await
            }
            _ => text(
                StatusCode::NOT_FOUND,
                "expected GET or POST /portForward/{namespace}/{pod}\n",
            ),
        };
    }
    for kind in ["exec", "attach"] {
        let Some(rest) = req.uri().path().strip_prefix(&format!("/{kind}/")) else {
            continue;
        };
        let parts: Vec<String> = rest.split('/').map(str::to_owned).collect();
        return match (req.method(), parts.as_slice()) {
            (&http::Method::GET | &http::Method::POST, [ns, pod, container]) => {
                if kind == "exec" {
                    super::exec::handle(req, shared, ns, pod, container).await
                } else {
                    super::attach::handle(req, shared, ns, pod, container).await
                }
            }
            _ => text(
                StatusCode::NOT_FOUND,
                format!("expected GET or POST /{kind}/{{namespace}}/{{pod}}/{{container}}\n"),
            ),
        };
    }
    if req.method() != http::Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET is served\n");
    }
    let path = req.uri().path().to_owned();
    match path.as_str() {
        "/healthz" | "/livez" | "/readyz" => text(StatusCode::OK, "ok"),
        "/pods" | "/pods/" => pods(shared),
        "/stats/summary" => {
            let q = query(&req);
            match super::stats::summary(shared, q.get("node").map(String::as_str)) {
                Some(summary) => json(&summary),
                None => text(StatusCode::NOT_FOUND, "no such node on this kubelet\n"),
            }
        }
        "/metrics" => metrics(shared),
        p if p.starts_with("/containerLogs/") => {
            let parts: Vec<&str> = p["/containerLogs/".len()..].split('/').collect();
            match parts.as_slice() {
                [ns, pod, container] => {
                    container_logs(shared, ns, pod, container, &query(&req)).await
                }
                _ => text(
                    StatusCode::NOT_FOUND,
                    "expected /containerLogs/{namespace}/{pod}/{container}\n",
                ),
            }
        }
        _ => text(StatusCode::NOT_FOUND, "404 page not found\n"),
    }
}

fn pods(shared: &Shared) -> Response<Body> {
    let items: Vec<serde_json::Value> = shared
        .pod_states()
        .iter()
        .filter_map(|s| {
            let mut pod = (*s.pod()).clone();
            let carried = s.carried_status();
            pod.status = Some(s.read(|r| super::status::build(&pod, &carried, r)));
            serde_json::to_value(&pod).ok()
        })
        .collect();
    json(&serde_json::json!({
        "kind": "PodList",
        "apiVersion": "v1",
        "metadata": {},
        "items": items,
    }))
}

fn metrics(shared: &Shared) -> Response<Body> {
    let states = shared.pod_states();
    let running = states.iter().filter(|s| !s.is_terminal()).count();
    let m = &shared.metrics;
    let body = format!(
        "# HELP kubelet_running_pods Number of pods that are not finished.\n\
         # TYPE kubelet_running_pods gauge\n\
         kubelet_running_pods {running}\n\
         # HELP kubelet_nodes Number of nodes this kubelet runs.\n\
         # TYPE kubelet_nodes gauge\n\
         kubelet_nodes {}\n\
         # HELP kubelet_pods_started_total Pods whose app containers were started.\n\
         # TYPE kubelet_pods_started_total counter\n\
         kubelet_pods_started_total {}\n\
         # HELP kubelet_containers_started_total Container instances started.\n\
         # TYPE kubelet_containers_started_total counter\n\
         kubelet_containers_started_total {}\n\
         # HELP kubelet_container_restarts_total Container restarts.\n\
         # TYPE kubelet_container_restarts_total counter\n\
         kubelet_container_restarts_total {}\n\
         # HELP kubelet_probe_failures_total Liveness and startup probe failures.\n\
         # TYPE kubelet_probe_failures_total counter\n\
         kubelet_probe_failures_total {}\n\
         # HELP kubelet_pod_status_writes_total Pod status writes.\n\
         # TYPE kubelet_pod_status_writes_total counter\n\
         kubelet_pod_status_writes_total {}\n\
         # HELP kubelet_admission_rejections_total Pods rejected at admission.\n\
         # TYPE kubelet_admission_rejections_total counter\n\
         kubelet_admission_rejections_total {}\n",
        m.nodes.load(Ordering::Relaxed),
        m.pods_started.load(Ordering::Relaxed),
        m.containers_started.load(Ordering::Relaxed),
        m.container_restarts.load(Ordering::Relaxed),
        m.probe_failures.load(Ordering::Relaxed),
        m.status_writes.load(Ordering::Relaxed),
        m.rejections.load(Ordering::Relaxed),
    );
    let mut r = text(StatusCode::OK, body);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    r
}

fn bad_request(message: String) -> Response<Body> {
    let status = serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "status": "Failure",
        "message": message, "reason": "BadRequest", "code": 400,
    });
    let mut r = json(&status);
    *r.status_mut() = StatusCode::BAD_REQUEST;
    r
}

async fn container_logs(
    shared: &Arc<Shared>,
    ns: &str,
    pod: &str,
    container: &str,
    q: &HashMap<String, String>,
) -> Response<Body> {
    let Some(state) = shared.pod_state(ns, pod) else {
        return text(
            StatusCode::NOT_FOUND,
            format!("pod {ns}/{pod} is not known to this kubelet\n"),
        );
    };
    let Some((restarts, _)) = state.container_log_state(container) else {
        return bad_request(format!(
            "container \"{container}\" in pod \"{pod}\" is not valid"
        ));
    };
    let previous = truthy(q.get("previous"));
    let instance = if previous {
        if restarts == 0 {
            return bad_request(format!(
                "previous terminated container \"{container}\" in pod \"{pod}\" not found"
            ));
        }
        restarts - 1
    } else {
        restarts
    };
    let path = logs::log_path(&state.dir, container, instance);
    if !path.exists() && !shared.runtime.runs_probes() {
        // Sim containers write nothing.
        return text(StatusCode::OK, "");
    }
    if !path.exists() {
        return bad_request(format!(
            "container \"{container}\" in pod \"{pod}\" is waiting to start: ContainerCreating"
        ));
    }
    let since = q
        .get("sinceSeconds")
        .and_then(|s| s.parse::<i64>().ok())
        .and_then(|s| {
            jiff::Timestamp::now()
                .checked_sub(jiff::SignedDuration::from_secs(s))
                .ok()
        })
        .or_else(|| q.get("sinceTime").and_then(|t| t.parse().ok()));
    let options = LogOptions {
        follow: truthy(q.get("follow")) && !previous,
        tail_lines: q
            .get("tailLines")
            .and_then(|s| s.parse::<i64>().ok())
            .map(|n| n.max(0) as usize),
        since,
        timestamps: truthy(q.get("timestamps")),
        limit_bytes: q.get("limitBytes").and_then(|s| s.parse().ok()),
    };
    let (mut initial, offset) = match logs::read_log(&path, &options) {
        Ok(r) => r,
        Err(e) => return bad_request(format!("reading the log of {container}: {e}")),
    };
    if let Some(limit) = options.limit_bytes {
        truncate_bytes(&mut initial, limit);
    }
    if !options.follow {
        return text(StatusCode::OK, initial);
    }
    let sent = initial.len();
    let stream = futures::stream::unfold(
        (
            Some(initial),
            offset,
            sent,
            state,
            path,
            options,
            container.to_owned(),
            instance,
        ),
        |(first, offset, sent, state, path, options, container, instance)| async move {
            if let Some(first) = first {
                let frame = Ok::<_, Infallible>(Frame::data(Bytes::from(first)));
                return Some((
                    frame,
                    (
                        None, offset, sent, state, path, options, container, instance,
                    ),
                ));
            }
            let mut offset = offset;
            let mut last_chance = false;
            loop {
                if options.limit_bytes.is_some_and(|l| sent >= l) {
                    return None;
                }
                let mut lines = Vec::new();
                offset = logs::read_lines(&path, offset, &mut lines).unwrap_or(offset);
                let mut chunk: String = lines
                    .iter()
                    .filter_map(|l| logs::render(&logs::parse_line(l), &options))
                    .collect();
                if !chunk.is_empty() {
                    if let Some(limit) = options.limit_bytes {
                        truncate_bytes(&mut chunk, limit.saturating_sub(sent));
                    }
                    let n = chunk.len();
                    let frame = Ok(Frame::data(Bytes::from(chunk)));
                    return Some((
                        frame,
                        (
                            None,
                            offset,
                            sent + n,
                            state,
                            path,
                            options,
                            container,
                            instance,
                        ),
                    ));
                }
                // The instance is over (exited, restarted or the pod gone):
                // nothing more will be written to this file.
                if last_chance {
                    return None;
                }
                let alive = matches!(state.container_log_state(&container), Some((r, true)) if r == instance);
                // One more read after the end, for lines still in flight.
                last_chance = !alive;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        },
    );
    let mut r = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn truncate_bytes(s: &mut String, limit: usize) {
    if s.len() > limit {
        let mut cut = limit;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}
