//! Client-side rate limiting (client-go's `QPS` and `Burst`) as a `tower` layer.
//!
//! ```no_run
//! # fn demo(client: kube::Client) {
//! use rk_runtime::client_rate_limit::rate_limited_client;
//! // At most 20 requests a second on average, bursts of 30.
//! let client = rate_limited_client(client, 20.0, 30);
//! # }
//! ```
//!
//! Long-running watch requests take a token to start like any other request.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use http::{Request, Response};
use kube::Client;
use kube::client::Body;
use tower::{Layer, Service, ServiceBuilder};

use crate::workqueue::TokenBucket;

/// Delays requests so they go out at most `qps` a second on average, with
/// bursts of up to `burst`.
#[derive(Clone, Debug)]
pub struct RateLimitLayer {
    bucket: Arc<TokenBucket>,
}

impl RateLimitLayer {
    /// A layer with its own bucket.
    pub fn new(qps: f64, burst: u32) -> Self {
        Self {
            bucket: Arc::new(TokenBucket::new(qps, burst)),
        }
    }

    /// A layer sharing `bucket` (several clients, one budget).
    pub fn shared(bucket: Arc<TokenBucket>) -> Self {
        Self { bucket }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> RateLimit<S> {
        RateLimit {
            inner,
            bucket: self.bucket.clone(),
        }
    }
}

/// The service [`RateLimitLayer`] wraps around another.
#[derive(Clone, Debug)]
pub struct RateLimit<S> {
    inner: S,
    bucket: Arc<TokenBucket>,
}

impl<S, B> Service<Request<B>> for RateLimit<S>
where
    S: Service<Request<B>> + Clone + Send + 'static,
    S::Future: Send,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // The readied service goes into the future; a fresh clone stays here
        // (the usual tower pattern for services called after a delay).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let bucket = self.bucket.clone();
        Box::pin(async move {
            bucket.acquire().await;
            inner.call(request).await
        })
    }
}

/// A client sending every request of `client` through a [`RateLimitLayer`].
pub fn rate_limited_client(client: Client, qps: f64, burst: u32) -> Client {
    let default_namespace = client.default_namespace().to_owned();
    let service = ServiceBuilder::new()
        .layer(RateLimitLayer::new(qps, burst))
        .service(tower::service_fn(move |request: Request<Body>| {
            let client = client.clone();
            async move { client.send(request).await.map(|r: Response<Body>| r) }
        }));
    Client::new(service, default_namespace)
}
