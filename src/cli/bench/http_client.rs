//! A minimal keep-alive HTTP/1.1 client for benchmarks: one connection per
//! task, no pooling, so the numbers measure the server.

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;

/// One HTTP/1.1 connection.
pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
    host: String,
}

impl Conn {
    /// Connect to `host:port`.
    pub async fn connect(addr: std::net::SocketAddr) -> anyhow::Result<Self> {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .context("connecting")?;
        stream.set_nodelay(true)?;
        let (sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Self {
            sender,
            host: addr.to_string(),
        })
    }

    /// Send a request and read the whole answer.
    pub async fn request(
        &mut self,
        method: http::Method,
        path: &str,
        body: Option<Bytes>,
    ) -> anyhow::Result<(u16, Bytes)> {
        let req = http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.host)
            .header("content-type", "application/json")
            .header("accept", "application/json")
            .body(Full::new(body.unwrap_or_default()))?;
        self.sender.ready().await?;
        let resp = self.sender.send_request(req).await?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }

    /// Start a streaming GET (a watch); returns the response body.
    pub async fn stream(&mut self, path: &str) -> anyhow::Result<hyper::body::Incoming> {
        let req = http::Request::builder()
            .method(http::Method::GET)
            .uri(path)
            .header("host", &self.host)
            .header("accept", "application/json")
            .body(Full::new(Bytes::new()))?;
        self.sender.ready().await?;
        let resp = self.sender.send_request(req).await?;
        anyhow::ensure!(
            resp.status().is_success(),
            "watch failed: {}",
            resp.status()
        );
        Ok(resp.into_body())
    }
}
