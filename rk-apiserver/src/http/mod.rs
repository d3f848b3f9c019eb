//! The HTTP front: hyper connections, request limits, and routing to
//! discovery, health, metrics, OpenAPI and resource handlers.

pub mod convert;
pub mod discovery;
pub mod exec;
pub mod kubelet;
pub mod list;
pub mod logs;
pub mod pretty;
pub mod resource;
pub mod resource_metrics;
pub mod response;
pub mod reviews;
pub mod tokens;
pub mod watch;

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{Method, Request, Response, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::error::ApiError;
use crate::metrics::{DurationLabels, RequestLabels};
use crate::request::{Query, parse_resource_path};
use crate::state::ApiState;
use response::Body;

/// Accept connections until `shutdown` resolves.
pub async fn serve(
    state: Arc<ApiState>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let in_flight = Arc::new(Semaphore::new(state.limits.max_in_flight));
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = &mut shutdown => return,
        };
        let (stream, _) = match accepted {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let in_flight = in_flight.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                let in_flight = in_flight.clone();
                // Boxed, as are the big steps below it: unboxed, a request's
                // future nests every step it may take (webhook calls,
                // conversions), ~10 KB moved at each level. Worth ~3% of a
                // create's CPU without LTO; the fat-LTO release build
                // showed no difference (docs/benchmarks.md).
                async move {
                    Ok::<_, std::convert::Infallible>(Box::pin(handle(state, in_flight, req)).await)
                }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(e) = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
}

fn verb_of(method: &Method, is_list: bool, is_watch: bool) -> &'static str {
    match (method, is_list, is_watch) {
        (_, _, true) => "WATCH",
        (&Method::GET, true, _) => "LIST",
        (&Method::GET, false, _) => "GET",
        (&Method::POST, ..) => "POST",
        (&Method::PUT, ..) => "PUT",
        (&Method::PATCH, ..) => "PATCH",
        (&Method::DELETE, true, _) => "DELETECOLLECTION",
        (&Method::DELETE, false, _) => "DELETE",
        _ => "OTHER",
    }
}

async fn handle(
    state: Arc<ApiState>,
    in_flight: Arc<Semaphore>,
    req: Request<Incoming>,
) -> Response<Body> {
    let start = Instant::now();
    let path = req.uri().path().to_string();
    // Only copied when request logging is on.
    let logged = tracing::enabled!(tracing::Level::DEBUG)
        .then(|| (path.clone(), req.uri().query().unwrap_or("").to_string()));
    let rp = parse_resource_path(&path);
    let query = Query::parse(req.uri().query());
    let is_watch = rp.as_ref().is_some_and(|p| p.legacy_watch) || query.flag("watch");
    let is_list = rp.as_ref().is_some_and(|p| p.name.is_none());
    let pretty = !is_watch && pretty::wanted(&query, req.headers());
    let verb = verb_of(req.method(), is_list, is_watch);
    let resource = rp.as_ref().map(|p| p.resource.clone()).unwrap_or_default();
    // Watches are long-running and don't count against the in-flight limit.
    let permit = if is_watch {
        None
    } else {
        match in_flight.clone().try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) => {
                let e =
                    ApiError::too_many_requests("Too many requests, please try again later.", 1);
                return response::error(&e);
            }
        }
    };
    state.metrics.in_flight.inc();
    let timeout = state.limits.request_timeout;
    let fut = Box::pin(route(state.clone(), req, path, rp, query));
    let resp = if is_watch {
        fut.await
    } else {
        match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(ApiError::timeout(
                "request did not complete within the allowed duration",
            )),
        }
    };
    let mut resp = resp.unwrap_or_else(|e| response::error(&e));
    if pretty {
        resp = pretty::apply(resp).await;
    }
    if let Some((path, query)) = &logged {
        tracing::debug!(
            verb,
            path = %path,
            query = %query,
            code = resp.status().as_u16(),
            ms = start.elapsed().as_secs_f64() * 1000.0,
            "request"
        );
    }
    state.metrics.in_flight.dec();
    drop(permit);
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            verb: verb.into(),
            resource: resource.clone(),
            code: resp.status().as_u16().to_string(),
        })
        .inc();
    if !is_watch {
        state
            .metrics
            .durations
            .get_or_create(&DurationLabels {
                verb: verb.into(),
                resource,
            })
            .observe(start.elapsed().as_secs_f64());
    }
    resp
}

async fn read_body(state: &ApiState, body: Incoming) -> Result<Bytes, ApiError> {
    let limit = state.limits.max_body_bytes;
    match Limited::new(body, limit).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                Err(ApiError::too_large(format!(
                    "the request body is larger than the limit of {limit} bytes"
                )))
            } else {
                Err(ApiError::bad_request(format!(
                    "reading the request body failed: {e}"
                )))
            }
        }
    }
}

async fn route(
    state: Arc<ApiState>,
    req: Request<Incoming>,
    path: String,
    rp: Option<crate::request::ResourcePath>,
    query: Query,
) -> Result<Response<Body>, ApiError> {
    // `pods/exec`, `pods/attach` and `pods/portforward` keep the request
    // whole: it is upgraded, not read.
    if let Some(p) = &rp
        && p.group.is_empty()
        && p.resource == "pods"
        && let Some(kind @ ("exec" | "attach" | "portforward")) = p.subresource.as_deref()
        && let (Some(ns), Some(name)) = (&p.namespace, &p.name)
    {
        let target = crate::registry::store::Target {
            info: state
                .resource("", "v1", "pods")
                .ok_or_else(ApiError::no_route)?,
            namespace: Some(ns.clone()),
            name: name.clone(),
        };
        return Box::pin(exec::pod_stream(
            &state,
            req,
            &target,
            kind,
            query.get("container"),
        ))
        .await;
    }
    // `metrics.k8s.io` is computed from the kubelets, not stored.
    if let Some(p) = &rp
        && p.group == "metrics.k8s.io"
    {
        return Box::pin(resource_metrics::serve(&state, p, &query, req.method())).await;
    }
    let (parts, body) = req.into_parts();
    let accept = parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if let Some(p) = rp {
        if let Some(len) = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
            && len > state.limits.max_body_bytes
        {
            return Err(ApiError::too_large(format!(
                "the request body is larger than the limit of {} bytes",
                state.limits.max_body_bytes
            )));
        }
        let body = read_body(&state, body).await?;
        let call = resource::Call {
            state,
            method: parts.method,
            path: p,
            query,
            headers: parts.headers,
            body,
            served: None,
        };
        return Box::pin(resource::handle(call)).await;
    }
    if parts.method != Method::GET && parts.method != Method::HEAD {
        return Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        ));
    }
    let trimmed = path.trim_end_matches('/');
    let segments: Vec<&str> = trimmed.split('/').skip(1).collect();
    let cat = state.catalogue();
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1")
        .to_string();
    match segments.as_slice() {
        [] | [""] => Ok(response::json(200, &root_paths(&cat))),
        ["version"] => Ok(response::json(200, &discovery::version())),
        ["healthz" | "livez" | "readyz", ..] => Ok(response::text(200, "ok")),
        ["metrics"] => {
            let (cache_bytes, json_bytes) = state.caches.memory().await;
            let mut text = state.metrics.render();
            // Gauges computed at scrape time, ahead of the exposition's `# EOF`.
            let extra = format!(
                "# HELP apiserver_watch_cache_memory_bytes Estimated heap held by the watch caches.\n\
                 # TYPE apiserver_watch_cache_memory_bytes gauge\n\
                 apiserver_watch_cache_memory_bytes {cache_bytes}\n\
                 # HELP apiserver_watch_cache_object_json_bytes JSON bytes of the objects in the watch caches.\n\
                 # TYPE apiserver_watch_cache_object_json_bytes gauge\n\
                 apiserver_watch_cache_object_json_bytes {json_bytes}\n"
            );
            match text.rfind("# EOF") {
                Some(i) => text.insert_str(i, &extra),
                None => text.push_str(&extra),
            }
            let mut resp = response::text(200, text);
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                http::HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            Ok(resp)
        }
        ["api"] if discovery::wants_aggregated(accept.as_deref()) => {
            Ok(discovery::aggregated_response(&cat, true))
        }
        ["apis"] if discovery::wants_aggregated(accept.as_deref()) => {
            Ok(discovery::aggregated_response(&cat, false))
        }
        ["api"] => Ok(response::json(200, &discovery::core_versions(&host))),
        ["apis"] => Ok(response::json(200, &discovery::group_list(&cat))),
        ["api", version] => discovery::resource_list(&cat, "", version)
            .map(|v| response::json(200, &v))
            .ok_or_else(ApiError::no_route),
        ["apis", group] => discovery::group(&cat, group)
            .map(|v| response::json(200, &v))
            .ok_or_else(ApiError::no_route),
        ["apis", group, version] => discovery::resource_list(&cat, group, version)
            .map(|v| response::json(200, &v))
            .ok_or_else(ApiError::no_route),
        ["openapi", "v2"] => Ok(response::json_bytes(200, state.openapi().v2())),
        ["openapi", "v3"] => Ok(response::json_bytes(200, state.openapi().v3_index())),
        ["openapi", "v3", rest @ ..] => {
            let gv = rest.join("/");
            state
                .openapi()
                .v3(&gv)
                .map(|b| response::json_bytes(200, b))
                .ok_or_else(ApiError::no_route)
        }
        _ => Err(ApiError::no_route()),
    }
}

fn root_paths(cat: &rk_core::catalogue::Catalogue) -> serde_json::Value {
    let mut paths = vec![
        "/api".to_string(),
        "/api/v1".to_string(),
        "/apis".to_string(),
    ];
    for (g, versions) in cat.groups() {
        if g.is_empty() {
            continue;
        }
        paths.push(format!("/apis/{g}"));
        for v in versions {
            paths.push(format!("/apis/{g}/{v}"));
        }
    }
    paths.extend(
        [
            "/healthz",
            "/livez",
            "/metrics",
            "/openapi/v2",
            "/openapi/v3",
            "/readyz",
            "/version",
        ]
        .map(String::from),
    );
    serde_json::json!({"paths": paths})
}
