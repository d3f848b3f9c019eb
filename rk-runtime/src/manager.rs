//! [`Manager`]: runs several controllers that share one informer factory,
//! under one leader election, with `/healthz`, `/readyz` and `/metrics` on
//! one port, until SIGTERM (or Ctrl-C).
//!
//! Informers run on every replica; controllers only on the leader.
//! Shutdown order: the controllers stop taking keys and finish what they are
//! doing, then the informers stop, then the lease is released, so the next
//! leader starts as soon as this one has really stopped.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use kube::Client;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::controller::{Controller, ControllerMetrics, Reconciler};
use crate::factory::InformerFactory;
use crate::leader::{ConfigError, LeaderElectionConfig, LeaderElector, ResourceLock};
use crate::metrics::RuntimeMetrics;
use crate::workqueue::WorkQueueMetrics;

/// Leader election for a [`Manager`].
#[derive(Clone)]
pub struct LeaderElectionSettings {
    /// This process's identity (typically the pod name).
    pub identity: String,
    /// The lock contended for.
    pub lock: Arc<dyn ResourceLock>,
    /// Timing.
    pub config: LeaderElectionConfig,
}

/// How a [`Manager`] runs.
#[derive(Clone, Default)]
pub struct ManagerConfig {
    /// Where to serve `/healthz`, `/readyz` and `/metrics` (none when `None`).
    pub bind: Option<SocketAddr>,
    /// Run controllers only while leading (always when `None`).
    pub leader_election: Option<LeaderElectionSettings>,
    /// Shut down on SIGTERM and Ctrl-C.
    pub handle_signals: bool,
}

/// Why a manager stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    /// The health/metrics port could not be bound.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The leader election timing is invalid.
    #[error(transparent)]
    LeaderElection(#[from] ConfigError),
    /// Leadership was lost; the process should exit and start over.
    #[error("leadership lost")]
    LeadershipLost,
    /// A controller or runnable failed.
    #[error("{0}")]
    Runnable(String),
}

type Runnable = Box<dyn FnOnce(CancellationToken) -> BoxFuture<'static, Result<(), String>> + Send>;

/// Runs controllers sharing one [`InformerFactory`].
pub struct Manager {
    factory: InformerFactory,
    registry: Registry,
    controller_metrics: ControllerMetrics,
    queue_metrics: WorkQueueMetrics,
    runnables: Vec<Runnable>,
    config: ManagerConfig,
    listener: Option<TcpListener>,
    shutdown: CancellationToken,
}

impl Manager {
    /// A manager whose informers use `client`.
    pub fn new(client: Client, config: ManagerConfig) -> Self {
        let mut registry = Registry::default();
        let RuntimeMetrics {
            controllers: controller_metrics,
            workqueues: queue_metrics,
            informers: informer_metrics,
        } = RuntimeMetrics::new(&mut registry);
        let factory = InformerFactory::new(client);
        factory.instrument(&informer_metrics);
        Self {
            factory,
            registry,
            controller_metrics,
            queue_metrics,
            runnables: Vec::new(),
            config,
            listener: None,
            shutdown: CancellationToken::new(),
        }
    }

    /// The shared informer factory: build controllers with it.
    pub fn factory(&self) -> &InformerFactory {
        &self.factory
    }

    /// Reconcile metrics to pass to [`crate::controller::ControllerBuilder::metrics`].
    pub fn controller_metrics(&self) -> &ControllerMetrics {
        &self.controller_metrics
    }

    /// Work queue metrics to pass to [`crate::controller::ControllerBuilder::metrics`].
    pub fn queue_metrics(&self) -> &WorkQueueMetrics {
        &self.queue_metrics
    }

    /// The registry served on `/metrics`, to add your own metrics.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// A token that shuts the manager down when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Run `controller` (while leading).
    pub fn add_controller<R: Reconciler>(&mut self, controller: Controller<R>) {
        self.runnables.push(Box::new(move |token| {
            Box::pin(async move { controller.run(token).await.map_err(|e| e.to_string()) })
        }));
    }

    /// Run any task (while leading); it must return once its token is cancelled.
    pub fn add_runnable<F, Fut>(&mut self, f: F)
    where
        F: FnOnce(CancellationToken) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
    {
        self.runnables
            .push(Box::new(move |token| Box::pin(f(token))));
    }

    /// Bind the health and metrics port now (to learn it before `run`).
    pub async fn bind(&mut self) -> Result<Option<SocketAddr>, ManagerError> {
        if self.listener.is_none()
            && let Some(addr) = self.config.bind
        {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| ManagerError::Bind { addr, source })?;
            self.listener = Some(listener);
        }
        Ok(self.listener.as_ref().and_then(|l| l.local_addr().ok()))
    }

    /// Run until shut down (token, SIGTERM or Ctrl-C) or leadership is lost.
    pub async fn run(mut self) -> Result<(), ManagerError> {
        self.bind().await?;
        let shutdown = self.shutdown.clone();
        if self.config.handle_signals {
            tokio::spawn(wait_for_signal(shutdown.clone()));
        }
        let elector = match &self.config.leader_election {
            Some(le) => Some(Arc::new(LeaderElector::new(
                le.identity.clone(),
                le.lock.clone(),
                le.config.clone(),
            )?)),
            None => None,
        };
        let health = Arc::new(HealthState {
            factory: self.factory.clone(),
            elector: elector.clone(),
            registry: std::mem::take(&mut self.registry),
            renew_tolerance: Duration::from_secs(2),
        });
        let http_stop = CancellationToken::new();
        let http = self
            .listener
            .take()
            .map(|l| tokio::spawn(serve(l, health.clone(), http_stop.clone())));

        // Caches fill on every replica, leader or not (as controller-runtime
        // does), so a new leader starts with warm caches.
        self.factory.start();

        // Leader election runs on its own token, cancelled last.
        let election_stop = CancellationToken::new();
        let lost = CancellationToken::new();
        let election = elector.clone().map(|elector| {
            let stop = election_stop.clone();
            let lost = lost.clone();
            tokio::spawn(async move {
                if elector.run(stop).await.is_err() {
                    lost.cancel();
                }
            })
        });
        if let Some(elector) = &elector {
            let mut leading = elector.leading();
            tokio::select! {
                _ = leading.wait_for(|l| *l) => {}
                _ = shutdown.cancelled() => {}
                _ = lost.cancelled() => {}
            }
        }

        let mut result = Ok(());
        if !shutdown.is_cancelled() && !lost.is_cancelled() {
            let run_stop = CancellationToken::new();
            let mut tasks = tokio::task::JoinSet::new();
            for runnable in self.runnables.drain(..) {
                tasks.spawn(runnable(run_stop.clone()));
            }
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = lost.cancelled() => {
                        result = Err(ManagerError::LeadershipLost);
                        break;
                    }
                    done = tasks.join_next() => match done {
                        None => break,
                        Some(Ok(Ok(()))) => {}
                        Some(Ok(Err(e))) => {
                            result = Err(ManagerError::Runnable(e));
                            break;
                        }
                        Some(Err(e)) => {
                            result = Err(ManagerError::Runnable(e.to_string()));
                            break;
                        }
                    },
                }
            }
            tracing::info!("stopping controllers");
            run_stop.cancel();
            while tasks.join_next().await.is_some() {}
        }
        self.factory.shutdown();
        election_stop.cancel();
        if let Some(task) = election {
            let _ = task.await;
        }
        http_stop.cancel();
        if let Some(task) = http {
            let _ = task.await;
        }
        tracing::info!("manager stopped");
        result
    }
}

async fn wait_for_signal(shutdown: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
                    _ = tokio::signal::ctrl_c() => tracing::info!("interrupt: shutting down"),
                    _ = shutdown.cancelled() => return,
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the manager");
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = shutdown.cancelled() => return,
                }
            }
        }
    }
    #[cfg(not(unix))]
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = shutdown.cancelled() => return,
    }
    shutdown.cancel();
}

struct HealthState {
    factory: InformerFactory,
    elector: Option<Arc<LeaderElector>>,
    registry: Registry,
    renew_tolerance: Duration,
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}

fn route<B>(state: &HealthState, request: &Request<B>) -> Response<Full<Bytes>> {
    match request.uri().path() {
        "/healthz" | "/livez" => match state
            .elector
            .as_ref()
            .map(|e| e.check_health(state.renew_tolerance))
        {
            Some(Err(e)) => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("leaderElection: {e}\n"),
            ),
            _ => text(StatusCode::OK, "ok".to_owned()),
        },
        "/readyz" => {
            let unsynced = state.factory.unsynced();
            if unsynced.is_empty() {
                text(StatusCode::OK, "ok".to_owned())
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("informers not synced: {}\n", unsynced.join(", ")),
                )
            }
        }
        "/metrics" => {
            let mut body = String::new();
            match prometheus_client::encoding::text::encode(&mut body, &state.registry) {
                Ok(()) => {
                    let mut r = text(StatusCode::OK, body);
                    if let Ok(v) = http::HeaderValue::from_str(
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    ) {
                        r.headers_mut().insert(http::header::CONTENT_TYPE, v);
                    }
                    r
                }
                Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            }
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n".to_owned()),
    }
}

async fn serve(listener: TcpListener, state: Arc<HealthState>, stop: CancellationToken) {
    loop {
        let (stream, _) = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a health connection failed");
                    continue;
                }
            },
        };
        let state = state.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                    let state = state.clone();
                    async move { Ok::<_, Infallible>(route(&state, &request)) }
                });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                r = connection => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "health connection ended with an error");
                    }
                }
                _ = stop.cancelled() => {}
            }
        });
    }
}
