//! Controllers: a [`Reconciler`] driven by a work queue of [`ObjectKey`]s
//! that informers fill.
//!
//! Build one with [`ControllerBuilder`]: name the primary kind, the kinds it
//! owns (found through their controller owner reference), other kinds it
//! watches (with a mapper to primary keys), event filters and a worker count.
//! [`Controller::run`] starts the shared informers, waits for their caches,
//! then runs the workers until shutdown. Each key is reconciled by one worker
//! at a time; a failed reconcile is retried with per-key exponential backoff,
//! and a successful one resets it.

mod builder;
mod filter;
mod metrics;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

pub use builder::ControllerBuilder;
pub use filter::{EventFilter, MetaPredicate};
pub use metrics::{ControllerLabels, ControllerMetrics, ResultLabels};

use crate::cache::ObjectKey;
use crate::factory::{InformerFactory, Managed};
use crate::workqueue::WorkQueue;

/// What a reconcile asks for next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing more until the object (or something it watches) changes.
    Done,
    /// Reconcile again after this long, even if nothing changes.
    RequeueAfter(Duration),
}

/// Brings the world in line with one object, named by key.
///
/// Reconcile must be idempotent: it is called on every change, after
/// restarts, and again after errors (with per-key exponential backoff).
/// Read the object from an informer's store rather than the API server.
pub trait Reconciler: Send + Sync + 'static {
    /// What a failed reconcile reports.
    type Error: std::fmt::Display + Send + 'static;

    /// Reconcile the object named `key` (which may no longer exist).
    fn reconcile(&self, key: ObjectKey)
    -> impl Future<Output = Result<Action, Self::Error>> + Send;
}

/// A [`Reconciler`] made of an async closure.
pub struct ReconcileFn<F>(pub F);

impl<F, Fut, E> Reconciler for ReconcileFn<F>
where
    F: Fn(ObjectKey) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Action, E>> + Send,
    E: std::fmt::Display + Send + 'static,
{
    type Error = E;

    fn reconcile(&self, key: ObjectKey) -> impl Future<Output = Result<Action, E>> + Send {
        (self.0)(key)
    }
}

/// Why a controller stopped without being asked to.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// An informer stopped before its cache synced.
    #[error("controller {0}: informer caches never synced")]
    CacheSyncFailed(String),
}

/// A built controller; see [`ControllerBuilder`].
pub struct Controller<R: Reconciler> {
    name: String,
    queue: WorkQueue<ObjectKey>,
    reconciler: Arc<R>,
    workers: usize,
    factory: InformerFactory,
    /// The informers this controller reads (waited for before starting).
    informers: Vec<Arc<dyn Managed>>,
    metrics: ControllerMetrics,
}

impl<R: Reconciler> Controller<R> {
    /// The controller's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The controller's work queue (to enqueue keys by hand).
    pub fn queue(&self) -> WorkQueue<ObjectKey> {
        self.queue.clone()
    }

    /// Start the factory's informers, wait for this controller's caches, then reconcile until
    /// `shutdown` is cancelled; then stop taking keys, let running reconciles
    /// finish and return.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ControllerError> {
        let labels = ControllerLabels {
            controller: self.name.clone(),
        };
        self.metrics
            .max_concurrent
            .get_or_create(&labels)
            .set(i64::try_from(self.workers).unwrap_or(i64::MAX));
        self.factory.start();
        tracing::info!(controller = %self.name, "waiting for informer caches to sync");
        let own_caches = async {
            for informer in &self.informers {
                if !informer.wait_for_sync().await {
                    return false;
                }
            }
            true
        };
        tokio::select! {
            synced = own_caches => {
                if !synced {
                    return Err(ControllerError::CacheSyncFailed(self.name.clone()));
                }
            }
            _ = shutdown.cancelled() => {
                self.queue.shutdown();
                return Ok(());
            }
        }
        tracing::info!(controller = %self.name, workers = self.workers, "starting workers");
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..self.workers.max(1) {
            workers.spawn(worker(
                self.name.clone(),
                self.queue.clone(),
                self.reconciler.clone(),
                self.metrics.clone(),
            ));
        }
        shutdown.cancelled().await;
        tracing::info!(controller = %self.name, "shutting down; draining work queue");
        self.queue.shutdown_with_drain().await;
        while workers.join_next().await.is_some() {}
        Ok(())
    }
}

async fn worker<R: Reconciler>(
    name: String,
    queue: WorkQueue<ObjectKey>,
    reconciler: Arc<R>,
    metrics: ControllerMetrics,
) {
    let labels = ControllerLabels {
        controller: name.clone(),
    };
    let active = metrics.active_workers.get_or_create(&labels).clone();
    let time = metrics.reconcile_time.get_or_create(&labels).clone();
    let errors = metrics.reconcile_errors.get_or_create(&labels).clone();
    let result_counter = |result: &str| {
        metrics
            .reconcile_total
            .get_or_create(&ResultLabels {
                controller: name.clone(),
                result: result.to_owned(),
            })
            .inc();
    };
    while let Some(key) = queue.get().await {
        active.inc();
        let started = Instant::now();
        let outcome = reconciler.reconcile(key.clone()).await;
        time.observe(started.elapsed().as_secs_f64());
        match outcome {
            Ok(Action::Done) => {
                queue.forget(&key);
                result_counter("success");
            }
            Ok(Action::RequeueAfter(delay)) => {
                queue.forget(&key);
                queue.add_after(key.clone(), delay);
                result_counter("requeue_after");
            }
            Err(e) => {
                tracing::warn!(controller = %name, key = %key, error = %e, retries = queue.num_requeues(&key), "reconcile failed; retrying with backoff");
                errors.inc();
                result_counter("error");
                queue.add_rate_limited(key.clone());
            }
        }
        queue.done(&key);
        active.dec();
    }
}
