//! The scheduler: assigns pending pods to nodes, with upstream
//! kube-scheduler's queue, cache, plugin framework and default plugins.
//!
//! Start with [`run`]: give it a client and [`Options`] and it watches pods
//! and nodes and binds every pod whose `spec.schedulerName` names one of its
//! profiles (`default-scheduler` by default) and whose `spec.nodeName` is empty.
//!
//! - [`queue`]: active, backoff and unschedulable sub-queues;
//! - [`cache`]: nodes and pods, assumed pods, incremental snapshots;
//! - [`framework`]: the extension-point traits and the per-profile runner;
//! - [`algorithm`]: one decision (filter a window of nodes, score, pick);
//! - [`plugins`]: the default plugins;
//! - [`config`]: `KubeSchedulerConfiguration` files;
//! - [`metrics`]: attempts, latencies, queue sizes, plugin durations.
//!
//! ```no_run
//! # async fn demo(client: kube::Client) -> Result<(), rk_controllers::scheduler::SchedulerError> {
//! rk_controllers::scheduler::run(client, rk_controllers::scheduler::Options::default()).await
//! # }
//! ```

pub mod algorithm;
pub mod cache;
pub mod config;
mod driver;
pub mod framework;
pub mod metrics;
pub mod plugins;
pub mod queue;
pub mod types;

use std::sync::Arc;

pub use config::SchedulerConfiguration;
pub use framework::Framework;
pub use metrics::Metrics;

/// The scheduler name pods get when they name none.
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";

/// Errors that stop the scheduler.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// A background task ended unexpectedly.
    #[error("scheduler task ended: {0}")]
    TaskEnded(String),
}

/// How to run the scheduler.
#[derive(Debug, Clone)]
pub struct Options {
    /// Profiles, plugins and their arguments (default: one
    /// `default-scheduler` profile with the default plugins).
    pub config: SchedulerConfiguration,
    /// Where to record metrics (a fresh set when `None`).
    pub metrics: Option<Arc<Metrics>>,
    /// Whether to write a `Scheduled` event for every bound pod, as upstream
    /// does (on by default).
    pub record_scheduled_events: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            config: SchedulerConfiguration::default(),
            metrics: None,
            record_scheduled_events: true,
        }
    }
}

/// Runs the scheduler until a task fails. Call it from a Tokio runtime; it
/// never returns `Ok` on its own (cancel it by dropping the future).
pub async fn run(client: kube::Client, options: Options) -> Result<(), SchedulerError> {
    let handle = framework::Handle::new(Some(client.clone()));
    let metrics = options.metrics.clone().unwrap_or_default();
    let profiles: Vec<Arc<Framework>> = options
        .config
        .build(&handle)?
        .into_iter()
        .map(|mut fw| {
            fw.metrics = Some(metrics.clone());
            Arc::new(fw)
        })
        .collect();
    for fw in &profiles {
        tracing::info!(profile = %fw.scheduler_name, plugins = ?fw.describe(), "scheduler profile");
    }
    run_profiles(
        client,
        handle,
        profiles,
        options.config.percentage(),
        metrics,
        options.record_scheduled_events,
    )
    .await
}

/// Runs the scheduler with frameworks built by the caller (custom
/// plugins); `handle` is the one given to the plugins (the scheduler keeps
/// its PodDisruptionBudget list up to date).
pub async fn run_profiles(
    client: kube::Client,
    handle: framework::Handle,
    profiles: Vec<Arc<Framework>>,
    percentage_of_nodes_to_score: i32,
    metrics: Arc<Metrics>,
    record_scheduled_events: bool,
) -> Result<(), SchedulerError> {
    let scheduler = driver::Scheduler::new(
        client,
        handle,
        profiles,
        percentage_of_nodes_to_score,
        metrics,
        record_scheduled_events,
    );
    if !scheduler.has_profiles() {
        return Err(SchedulerError::Config(config::ConfigError::Invalid(
            "no profiles".into(),
        )));
    }
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(scheduler.clone().watch_pods());
    tasks.spawn(scheduler.clone().watch_nodes());
    tasks.spawn(scheduler.clone().watch_pdbs());
    tasks.spawn(scheduler.clone().housekeeping());
    tasks.spawn(scheduler.clone().scheduling_loop());
    let ended = tasks.join_next().await;
    tasks.abort_all();
    Err(SchedulerError::TaskEnded(match ended {
        Some(Err(e)) => e.to_string(),
        _ => "a watch stream closed".into(),
    }))
}
