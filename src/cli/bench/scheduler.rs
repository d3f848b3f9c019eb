//! `rk bench scheduler`: upstream scheduler_perf's workloads against an
//! in-process rk API server, with the scheduler in the same process (so the
//! API server, its store and the scheduler share the machine's cores).
//!
//! - `SchedulingBasic`: 5,000 nodes (4 cpu, 32Gi, 110 pods), 1,000 pods
//!   already placed, 10,000 pods measured (100m cpu, 500Mi each);
//! - `TopologySpreading`: the nodes spread over zones moon-1..3, 5,000 pods
//!   placed, 5,000 measured pods with a `DoNotSchedule` zone constraint
//!   (maxSkew 5);
//! - `PreferredTopologySpreading`: the same with `ScheduleAnyway`.
//!
//! Pods are created while the scheduler runs, as scheduler_perf does; the
//! throughput is the number of pods bound in each full 1 s window, averaged
//! (scheduler_perf's `SchedulingThroughput`), and the latencies are the
//! scheduler's attempt duration and end-to-end duration (queue entry to
//! bound) percentiles.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use http::Method;
use rk_controllers::scheduler::{self, Metrics, Options};

use super::http_client::Conn;

/// Flags.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Workloads to run (comma-separated): SchedulingBasic, TopologySpreading,
    /// PreferredTopologySpreading.
    #[arg(
        long,
        default_value = "SchedulingBasic,TopologySpreading,PreferredTopologySpreading"
    )]
    pub workloads: String,
    /// Nodes.
    #[arg(long, default_value_t = 5000)]
    pub nodes: usize,
    /// Override the placed pods (default: the workload's).
    #[arg(long)]
    pub init_pods: Option<usize>,
    /// Override the measured pods (default: the workload's).
    #[arg(long)]
    pub measure_pods: Option<usize>,
    /// The store: `memory` or `sqlite` (in a temporary directory).
    #[arg(long, default_value = "sqlite")]
    pub storage: String,
    /// Concurrent pod creations.
    #[arg(long, default_value_t = 32)]
    pub clients: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Workload {
    Basic,
    Spreading,
    PreferredSpreading,
}

impl Workload {
    fn parse(s: &str) -> anyhow::Result<Self> {
        Ok(match s.trim() {
            "SchedulingBasic" => Self::Basic,
            "TopologySpreading" => Self::Spreading,
            "PreferredTopologySpreading" => Self::PreferredSpreading,
            other => anyhow::bail!("unknown workload {other:?}"),
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Basic => "SchedulingBasic",
            Self::Spreading => "TopologySpreading",
            Self::PreferredSpreading => "PreferredTopologySpreading",
        }
    }

    /// (placed, measured) pods of upstream's 5000-node workload.
    fn pods(self) -> (usize, usize) {
        match self {
            Self::Basic => (1000, 10_000),
            Self::Spreading | Self::PreferredSpreading => (5000, 5000),
        }
    }

    /// upstream's pass threshold (pods/s) on its CI machines.
    fn upstream_threshold(self) -> u32 {
        match self {
            Self::Basic => 680,
            Self::Spreading => 460,
            Self::PreferredSpreading => 340,
        }
    }
}

fn node_json(i: usize, zoned: bool) -> Bytes {
    let mut labels = serde_json::json!({"kubernetes.io/hostname": format!("scheduler-perf-{i}")});
    if zoned {
        labels["topology.kubernetes.io/zone"] = format!("moon-{}", i % 3 + 1).into();
    }
    let resources = serde_json::json!({"pods": "110", "cpu": "4", "memory": "32Gi"});
    Bytes::from(
        serde_json::json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": format!("scheduler-perf-{i}"), "labels": labels},
            "spec": {},
            "status": {
                "capacity": resources,
                "allocatable": resources,
                "conditions": [{"type": "Ready", "status": "True"}],
                "phase": "Running"
            }
        })
        .to_string(),
    )
}

fn pod_json(name: &str, spread: Option<&str>) -> Bytes {
    let mut pod = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "containers": [{
                "name": "pause",
                "image": "registry.k8s.io/pause:3.10",
                "ports": [{"containerPort": 80}],
                "resources": {
                    "limits": {"cpu": "100m", "memory": "500Mi"},
                    "requests": {"cpu": "100m", "memory": "500Mi"}
                }
            }]
        }
    });
    if let Some(when) = spread {
        pod["metadata"]["labels"] = serde_json::json!({"color": "blue"});
        pod["spec"]["topologySpreadConstraints"] = serde_json::json!([{
            "maxSkew": 5,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": when,
            "labelSelector": {"matchLabels": {"color": "blue"}}
        }]);
    }
    Bytes::from(pod.to_string())
}

/// Creates `bodies` at `path` with `clients` concurrent connections.
async fn create_all(
    addr: std::net::SocketAddr,
    path: &str,
    bodies: Vec<Bytes>,
    clients: usize,
) -> anyhow::Result<()> {
    let bodies = Arc::new(std::sync::Mutex::new(bodies));
    let mut tasks = Vec::new();
    for _ in 0..clients.max(1) {
        let bodies = bodies.clone();
        let path = path.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::connect(addr).await?;
            loop {
                let next = bodies.lock().unwrap_or_else(|p| p.into_inner()).pop();
                let Some(body) = next else { break };
                let (code, answer) = conn.request(Method::POST, &path, Some(body)).await?;
                anyhow::ensure!(
                    code == 201,
                    "create answered {code}: {}",
                    String::from_utf8_lossy(&answer)
                );
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

async fn wait_bound(metrics: &Metrics, target: u64, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while metrics.bound() < target {
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {} of {target} pods were bound in {timeout:?}",
            metrics.bound()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

struct Outcome {
    workload: Workload,
    init: usize,
    measured: usize,
    windows: Vec<f64>,
    total_secs: f64,
    attempt: Vec<f64>,
    e2e: Vec<f64>,
}

async fn run_workload(args: &Args, workload: Workload) -> anyhow::Result<Outcome> {
    let dir = tempfile::tempdir()?;
    let storage = match args.storage.as_str() {
        "memory" => rk_apiserver::StorageConfig::Memory,
        "sqlite" => rk_apiserver::StorageConfig::Sqlite(dir.path().join("state.db")),
        other => anyhow::bail!("unknown storage {other:?} (memory or sqlite)"),
    };
    let server = rk_apiserver::server::start(rk_apiserver::server::ServerConfig {
        bind: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        storage,
        ..Default::default()
    })
    .await
    .context("starting the API server")?;
    let addr = server.addr;
    let client = rk_apiserver::test_server::client_for(&server.url())
        .map_err(|e| anyhow::anyhow!("client: {e}"))?;

    let mut conn = Conn::connect(addr).await?;
    let ns = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "sched-bench"}});
    conn.request(
        Method::POST,
        "/api/v1/namespaces",
        Some(Bytes::from(ns.to_string())),
    )
    .await?;

    let zoned = workload != Workload::Basic;
    let nodes: Vec<Bytes> = (0..args.nodes).map(|i| node_json(i, zoned)).collect();
    create_all(addr, "/api/v1/nodes", nodes, args.clients).await?;

    let metrics = Arc::new(Metrics::default());
    let options = Options {
        metrics: Some(metrics.clone()),
        ..Options::default()
    };
    let scheduler = tokio::spawn(async move {
        if let Err(e) = scheduler::run(client, options).await {
            eprintln!("scheduler stopped: {e}");
        }
    });

    let (default_init, default_measured) = workload.pods();
    let init = args.init_pods.unwrap_or(default_init);
    let measured = args.measure_pods.unwrap_or(default_measured);
    let pods_path = "/api/v1/namespaces/sched-bench/pods";
    let init_pods: Vec<Bytes> = (0..init)
        .map(|i| pod_json(&format!("init-{i}"), None))
        .collect();
    create_all(addr, pods_path, init_pods, args.clients).await?;
    wait_bound(&metrics, init as u64, Duration::from_secs(600)).await?;
    metrics.clear_samples();

    let spread = match workload {
        Workload::Basic => None,
        Workload::Spreading => Some("DoNotSchedule"),
        Workload::PreferredSpreading => Some("ScheduleAnyway"),
    };
    let measured_pods: Vec<Bytes> = (0..measured)
        .rev()
        .map(|i| pod_json(&format!("measured-{i}"), spread))
        .collect();
    let start = Instant::now();
    let creator = tokio::spawn(create_all(addr, pods_path, measured_pods, args.clients));
    let target = (init + measured) as u64;
    let mut windows = Vec::new();
    let mut last = metrics.bound();
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(1),
        Duration::from_secs(1),
    );
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        tick.tick().await;
        let now = metrics.bound();
        if now >= target {
            break;
        }
        windows.push((now - last) as f64);
        last = now;
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {} of {measured} measured pods were bound",
            now - init as u64
        );
    }
    wait_bound(&metrics, target, Duration::from_secs(60)).await?;
    let total_secs = start.elapsed().as_secs_f64();
    creator.await??;
    scheduler.abort();
    server.shutdown().await;
    let mut attempt = metrics.attempt_samples();
    let mut e2e = metrics.e2e_samples();
    attempt.sort_by(|a, b| a.total_cmp(b));
    e2e.sort_by(|a, b| a.total_cmp(b));
    Ok(Outcome {
        workload,
        init,
        measured,
        windows,
        total_secs,
        attempt,
        e2e,
    })
}

/// Run the benchmark and print the table.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let workloads = args
        .workloads
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(Workload::parse)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut outcomes = Vec::new();
    for w in workloads {
        eprintln!("rk bench scheduler: running {}", w.name());
        outcomes.push(run_workload(&args, w).await?);
    }
    println!(
        "rk bench scheduler ({} nodes, {} store, API server and scheduler in one process)",
        args.nodes, args.storage
    );
    println!();
    println!(
        "| workload | placed | measured | pods/s (avg of 1 s windows) | min / max window | overall pods/s | attempt p50 / p99 | e2e p50 / p99 | upstream threshold |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for o in &outcomes {
        let avg = if o.windows.is_empty() {
            o.measured as f64 / o.total_secs
        } else {
            o.windows.iter().sum::<f64>() / o.windows.len() as f64
        };
        let min = o.windows.iter().copied().fold(f64::INFINITY, f64::min);
        let max = o.windows.iter().copied().fold(0.0, f64::max);
        println!(
            "| {} | {} | {} | {avg:.0} | {:.0} / {max:.0} | {:.0} | {:.2} ms / {:.2} ms | {:.1} ms / {:.1} ms | {} |",
            o.workload.name(),
            o.init,
            o.measured,
            if min.is_finite() { min } else { 0.0 },
            o.measured as f64 / o.total_secs,
            percentile(&o.attempt, 0.5) * 1000.0,
            percentile(&o.attempt, 0.99) * 1000.0,
            percentile(&o.e2e, 0.5) * 1000.0,
            percentile(&o.e2e, 0.99) * 1000.0,
            o.workload.upstream_threshold(),
        );
    }
    Ok(())
}
