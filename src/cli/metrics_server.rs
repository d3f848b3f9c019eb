//! A small HTTP endpoint for a component's `/metrics` (Prometheus text) and
//! `/healthz`.

use std::convert::Infallible;
use std::net::SocketAddr;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};

/// Serve `render()` on `/metrics` and `ok` on `/healthz` at `addr`, in the
/// background. Returns the bound address.
pub async fn serve(addr: SocketAddr, render: fn() -> String) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the metrics address {addr}"))?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let service =
                hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| async move {
                    let (status, body) = match req.uri().path() {
                        "/metrics" => (StatusCode::OK, render()),
                        "/healthz" | "/readyz" | "/livez" => (StatusCode::OK, "ok".to_string()),
                        _ => (StatusCode::NOT_FOUND, "not found\n".to_string()),
                    };
                    let mut resp = Response::new(Full::new(Bytes::from(body)));
                    *resp.status_mut() = status;
                    resp.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static("text/plain; version=0.0.4"),
                    );
                    Ok::<_, Infallible>(resp)
                });
            tokio::spawn(async move {
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    });
    Ok(bound)
}
