//! The kubelet: registers Nodes, keeps their leases and status fresh, and
//! runs the pods bound to them.
//!
//! Start with [`start`] (or [`run`], which also waits for a shutdown
//! signal): one call runs one node with the `process` runtime or many sim
//! nodes sharing one pod watch, one lease task and one HTTP port.
//!
//! ```no_run
//! # async fn demo(client: kube::Client) -> Result<(), rk_controllers::kubelet::KubeletError> {
//! use rk_controllers::kubelet::{self, Config, NodeConfig};
//! let node = NodeConfig::new("node-1", kubelet::node_status::machine_capacity());
//! let kubelet = kubelet::start(client, Config::process(node, "/tmp/rk-kubelet".into())).await?;
//! println!("kubelet on port {}", kubelet.port());
//! kubelet.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! The pieces, one concept per module: [`node_status`] (registration,
//! status, pod addresses), [`lease`] (heartbeats), [`admission`], the pod
//! worker and container supervisor (restart policy, CrashLoopBackOff,
//! [`probes`], hooks, graceful termination), [`status`] (pod status),
//! [`env`](mod@env), [`eviction`] thresholds, [`volumes`], [`logs`], the HTTP server, and the [`runtime`]s.

pub mod admission;
mod attach;
mod container;
pub mod env;
pub mod eviction;
pub mod exec;
mod exec_spdy;
pub mod lease;
pub mod logs;
pub mod node_status;
mod pod_worker;
mod pods;
pub mod port_forward;
pub mod probes;
pub mod runtime;
mod server;
pub mod service_env;
pub mod spdy;
pub mod stats;
pub mod status;
pub mod volumes;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};

pub use node_status::NodeConfig;
use node_status::NodeCtx;
use pod_worker::PodState;
use runtime::Runtime;

use container::AbortOnDrop;

/// What can stop a kubelet from starting.
#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    /// Bad configuration.
    #[error("invalid kubelet configuration: {0}")]
    Config(String),
    /// The data directory or the HTTP port could not be set up.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// The API server refused or failed a request.
    #[error("registering node {node}: {source}")]
    Register {
        /// The node.
        node: String,
        /// The error.
        source: kube::Error,
    },
}

/// Which runtime runs the containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeKind {
    /// Host processes.
    Process,
    /// Nothing runs; containers start after `start_delay`.
    Sim {
        /// How long a sim container takes to start.
        start_delay: Duration,
    },
}

/// A kubelet's configuration (one node, or many sim nodes).
#[derive(Debug, Clone)]
pub struct Config {
    /// The nodes to run.
    pub nodes: Vec<NodeConfig>,
    /// The runtime.
    pub runtime: RuntimeKind,
    /// Where pod directories (volumes, logs) live.
    pub data_dir: PathBuf,
    /// The nodes' InternalIP, where the HTTP port listens.
    pub address: IpAddr,
    /// The HTTP port (0: any free port; the Node reports the real one).
    pub port: u16,
    /// How often leases are renewed (10 s).
    pub lease_renew_interval: Duration,
    /// The leases' duration (40 s).
    pub lease_duration_seconds: i32,
    /// How often the Node status (conditions, heartbeat) is written.
    pub node_status_interval: Duration,
    /// The first CrashLoopBackOff delay (10 s).
    pub backoff_initial: Duration,
    /// The largest CrashLoopBackOff delay (5 min).
    pub backoff_max: Duration,
    /// Give `process` containers their volumes at their mount paths in a
    /// private mount namespace (needs root; on by default when running as
    /// root with `unshare` installed).
    pub mount_namespaces: bool,
    /// When the node reports memory, disk and PID pressure (upstream's
    /// `--eviction-hard` defaults).
    pub eviction_hard: eviction::EvictionThresholds,
}

impl Config {
    /// One node on the `process` runtime, port 10250 on 127.0.0.1.
    pub fn process(node: NodeConfig, data_dir: PathBuf) -> Self {
        Self {
            nodes: vec![node],
            runtime: RuntimeKind::Process,
            data_dir,
            address: IpAddr::from([127, 0, 0, 1]),
            port: 10250,
            lease_renew_interval: Duration::from_secs(10),
            lease_duration_seconds: 40,
            node_status_interval: Duration::from_secs(60),
            backoff_initial: Duration::from_secs(10),
            backoff_max: Duration::from_secs(300),
            mount_namespaces: runtime::process::ProcessRuntime::can_use_mount_namespaces(),
            eviction_hard: eviction::EvictionThresholds::default(),
        }
    }

    /// `count` sim nodes named `<prefix><i>` (from 0), each with `capacity`
    /// and a pod range of its own (`127.101.0.0/16` onwards, one /24 each);
    /// the HTTP port is any free one.
    pub fn sim(
        prefix: &str,
        count: usize,
        capacity: std::collections::BTreeMap<
            String,
            k8s_openapi::apimachinery::pkg::api::resource::Quantity,
        >,
        data_dir: PathBuf,
    ) -> Self {
        let nodes = (0..count)
            .map(|i| {
                let mut n = NodeConfig::new(&format!("{prefix}{i}"), capacity.clone());
                n.pod_cidr = Some(format!("127.{}.{}.0/24", 101 + (i / 256) % 99, i % 256));
                n
            })
            .collect();
        Self {
            nodes,
            runtime: RuntimeKind::Sim {
                start_delay: Duration::ZERO,
            },
            port: 0,
            node_status_interval: Duration::from_secs(300),
            ..Self::process(NodeConfig::new("", Default::default()), data_dir)
        }
    }
}

/// Counters served on `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub(crate) nodes: AtomicU64,
    pub(crate) pods_started: AtomicU64,
    pub(crate) containers_started: AtomicU64,
    pub(crate) container_restarts: AtomicU64,
    pub(crate) probe_failures: AtomicU64,
    pub(crate) status_writes: AtomicU64,
    pub(crate) rejections: AtomicU64,
}

/// State shared by everything a kubelet runs.
pub(crate) struct Shared {
    pub(crate) client: kube::Client,
    pub(crate) runtime: Arc<dyn Runtime>,
    pub(crate) config: Config,
    pub(crate) metrics: Metrics,
    pods: Mutex<HashMap<(String, String), Arc<PodState>>>,
    shutting_down: AtomicBool,
    active_workers: AtomicUsize,
    events: Option<crate::events::Recorder>,
    pub(crate) stats: stats::Stats,
}

impl Shared {
    /// Record an Event about a pod in the background (not for sim nodes,
    /// where thousands of pods would flood the API with them).
    pub(crate) fn pod_event(
        &self,
        pod: &k8s_openapi::api::core::v1::Pod,
        type_: &str,
        reason: &str,
        message: String,
    ) {
        let Some(recorder) = self.events.clone() else {
            return;
        };
        let meta = pod.metadata.clone();
        let reason = reason.to_owned();
        let type_ = type_.to_owned();
        tokio::spawn(async move {
            recorder
                .record("v1", "Pod", &meta, &type_, &reason, &message)
                .await;
        });
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Relaxed)
    }

    pub(crate) fn pod_state(&self, ns: &str, name: &str) -> Option<Arc<PodState>> {
        self.pods
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(ns.to_owned(), name.to_owned()))
            .cloned()
    }

    pub(crate) fn pod_states(&self) -> Vec<Arc<PodState>> {
        self.pods
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    pub(crate) fn add_pod_state(&self, ns: &str, name: &str, state: Arc<PodState>) {
        self.pods
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((ns.to_owned(), name.to_owned()), state);
    }

    pub(crate) fn remove_pod_state(&self, ns: &str, name: &str, uid: &str) {
        let mut pods = self.pods.lock().unwrap_or_else(|p| p.into_inner());
        let key = (ns.to_owned(), name.to_owned());
        if pods.get(&key).is_some_and(|s| s.uid == uid) {
            pods.remove(&key);
        }
    }

    pub(crate) fn pod_dir(&self, uid: &str) -> PathBuf {
        self.config.data_dir.join("pods").join(uid)
    }
}

/// A running kubelet. Dropping it stops everything abruptly; prefer
/// [`Kubelet::shutdown`].
pub struct Kubelet {
    shared: Arc<Shared>,
    nodes: Vec<Arc<NodeCtx>>,
    port: u16,
    tasks: Vec<AbortOnDrop>,
}

impl Kubelet {
    /// The HTTP port the kubelet serves on (what the Nodes report).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The names of the nodes it runs.
    pub fn node_names(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.name.clone()).collect()
    }

    /// Stop: leave the API alone (pods stay bound and run again when a
    /// kubelet comes back), stop every container and kill what remains.
    pub async fn shutdown(mut self) {
        self.shared.shutting_down.store(true, Ordering::Relaxed);
        // Dropping the pod manager drops every worker's stop channel, which
        // stops their containers without waiting for grace periods.
        self.tasks.clear();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while self.shared.active_workers.load(Ordering::Relaxed) > 0
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.shared.runtime.shutdown().await;
        tracing::info!(nodes = self.nodes.len(), "kubelet stopped");
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.shared.shutting_down.store(true, Ordering::Relaxed);
        self.tasks.clear();
        self.shared.runtime.kill_all_now();
    }
}

async fn with_retries<T, F, Fut>(what: &str, mut f: F) -> Result<T, kube::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    let mut delay = Duration::from_millis(100);
    let mut attempt = 0;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if attempt < 5 => {
                tracing::debug!(error = %e, what, "retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Start a kubelet: bind its port, register its nodes (and their leases),
/// then run their pods in the background until [`Kubelet::shutdown`].
pub async fn start(client: kube::Client, config: Config) -> Result<Kubelet, KubeletError> {
    if config.nodes.is_empty() {
        return Err(KubeletError::Config("no nodes to run".to_owned()));
    }
    let mut names = std::collections::HashSet::new();
    for n in &config.nodes {
        if n.name.is_empty() || !names.insert(n.name.clone()) {
            return Err(KubeletError::Config(format!(
                "node name {:?} is empty or repeated",
                n.name
            )));
        }
    }
    std::fs::create_dir_all(config.data_dir.join("pods")).map_err(|source| KubeletError::Io {
        what: format!("creating {}", config.data_dir.display()),
        source,
    })?;
    let runtime: Arc<dyn Runtime> = match &config.runtime {
        RuntimeKind::Process => Arc::new(runtime::process::ProcessRuntime::new(
            config.mount_namespaces,
        )),
        RuntimeKind::Sim { start_delay } => Arc::new(runtime::sim::SimRuntime::new(*start_delay)),
    };
    let runtime_label = match config.runtime {
        RuntimeKind::Process => "process",
        RuntimeKind::Sim { .. } => "sim",
    };
    let listener = server::bind(SocketAddr::new(config.address, config.port))
        .await
        .map_err(|source| KubeletError::Io {
            what: format!(
                "binding the kubelet port {}:{}",
                config.address, config.port
            ),
            source,
        })?;
    let port = listener
        .local_addr()
        .map(|a| a.port())
        .unwrap_or(config.port);
    let nodes: Vec<Arc<NodeCtx>> = config
        .nodes
        .iter()
        .map(|n| {
            let ctx = NodeCtx::new(n.clone(), config.address);
            Arc::new(match config.runtime {
                RuntimeKind::Process => {
                    ctx.with_pressure_checks(config.data_dir.clone(), config.eviction_hard.clone())
                }
                RuntimeKind::Sim { .. } => ctx,
            })
        })
        .collect();
    let shared = Arc::new(Shared {
        client: client.clone(),
        runtime: runtime.clone(),
        config: config.clone(),
        metrics: Metrics::default(),
        pods: Mutex::new(HashMap::new()),
        shutting_down: AtomicBool::new(false),
        active_workers: AtomicUsize::new(0),
        events: matches!(config.runtime, RuntimeKind::Process)
            .then(|| crate::events::Recorder::new(client.clone(), "kubelet")),
        stats: stats::Stats::default(),
    });
    shared
        .metrics
        .nodes
        .store(nodes.len() as u64, Ordering::Relaxed);
    let version = runtime.version();

    // Register every node and take its lease, a few at a time.
    let results: Vec<Result<(), KubeletError>> = futures::stream::iter(nodes.clone())
        .map(|node| {
            let client = client.clone();
            let version = version.clone();
            let lease_secs = config.lease_duration_seconds;
            async move {
                let register =
                    || node_status::register(&client, &node, port, &version, runtime_label);
                with_retries("register", register).await.map_err(|source| {
                    KubeletError::Register {
                        node: node.name.clone(),
                        source,
                    }
                })?;
                if let Err(e) = lease::ensure(&client, &node, lease_secs).await {
                    tracing::warn!(node = %node.name, error = %e, "taking the node lease failed");
                }
                Ok(())
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    for r in results {
        r?;
    }
    tracing::info!(nodes = nodes.len(), port, runtime = %version, "kubelet started");

    let mut tasks = vec![
        AbortOnDrop(tokio::spawn(server::serve(listener, shared.clone()))),
        AbortOnDrop(tokio::spawn(lease::run(
            client.clone(),
            nodes.clone(),
            config.lease_renew_interval,
            config.lease_duration_seconds,
        ))),
        AbortOnDrop(tokio::spawn(node_status_loop(
            shared.clone(),
            nodes.clone(),
            port,
            runtime_label,
        ))),
        AbortOnDrop(tokio::spawn(node_watch(
            shared.clone(),
            nodes.clone(),
            port,
            runtime_label,
        ))),
    ];
    tasks.push(AbortOnDrop(tokio::spawn(pods::run(
        shared.clone(),
        nodes.clone(),
    ))));
    if matches!(config.runtime, RuntimeKind::Process) {
        tasks.push(AbortOnDrop(tokio::spawn(stats::run_sampler(
            shared.clone(),
        ))));
    }
    Ok(Kubelet {
        shared,
        nodes,
        port,
        tasks,
    })
}

/// Run a kubelet until `shutdown` completes, then stop it.
pub async fn run(
    client: kube::Client,
    config: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), KubeletError> {
    let kubelet = start(client, config).await?;
    shutdown.await;
    kubelet.shutdown().await;
    Ok(())
}

/// Write every node's status each interval, spread over it.
async fn node_status_loop(
    shared: Arc<Shared>,
    nodes: Vec<Arc<NodeCtx>>,
    port: u16,
    label: &'static str,
) {
    let interval = shared.config.node_status_interval;
    let version = shared.runtime.version();
    let per_node = interval / (nodes.len().max(1) as u32);
    loop {
        for node in &nodes {
            tokio::time::sleep(per_node).await;
            match node_status::update_status(&shared.client, node, port, &version).await {
                Ok(()) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {
                    if let Err(e) =
                        node_status::register(&shared.client, node, port, &version, label).await
                    {
                        tracing::warn!(node = %node.name, error = %e, "re-registering the node failed");
                    }
                }
                Err(e) => {
                    tracing::warn!(node = %node.name, error = %e, "updating node status failed")
                }
            }
        }
    }
}

/// Keep each node's latest object, and register a node again when it is
/// deleted.
async fn node_watch(shared: Arc<Shared>, nodes: Vec<Arc<NodeCtx>>, port: u16, label: &'static str) {
    let by_name: HashMap<String, Arc<NodeCtx>> =
        nodes.iter().map(|n| (n.name.clone(), n.clone())).collect();
    let api: Api<Node> = Api::all(shared.client.clone());
    let mut wc = watcher::Config::default();
    if let [only] = nodes.as_slice() {
        wc = wc.fields(&format!("metadata.name={}", only.name));
    }
    let version = shared.runtime.version();
    let mut events = crate::watch::lean_watcher(api, wc)
        .default_backoff()
        .boxed();
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Apply(n) | watcher::Event::InitApply(n)) => {
                if let Some(ctx) = n.metadata.name.as_ref().and_then(|name| by_name.get(name)) {
                    ctx.set_node(Some(n));
                }
            }
            Ok(watcher::Event::Delete(n)) => {
                let Some(ctx) = n
                    .metadata
                    .name
                    .as_ref()
                    .and_then(|name| by_name.get(name))
                    .cloned()
                else {
                    continue;
                };
                tracing::info!(node = %ctx.name, "node deleted; registering it again");
                ctx.set_node(None);
                let shared = shared.clone();
                let version = version.clone();
                tokio::spawn(async move {
                    let register =
                        || node_status::register(&shared.client, &ctx, port, &version, label);
                    if let Err(e) = with_retries("re-register", register).await {
                        tracing::warn!(node = %ctx.name, error = %e, "re-registering the node failed");
                    }
                    let _ =
                        lease::renew(&shared.client, &ctx, shared.config.lease_duration_seconds)
                            .await;
                });
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "node watch error"),
        }
    }
}
