//! `rk bench cluster`: the whole cluster as `rk up` runs it, from outside —
//! each cluster is a separate `rk up` process (this binary), measured over
//! HTTP and through `/proc`:
//!
//! - time from starting `rk up --nodes 3` to all nodes Ready, and its idle RSS;
//! - pod startup latency (create to Running, seen by a watch; p50/p99) for
//!   100 pods created at 20/s on the process runtime;
//! - the same for 10,000 pods on 1,000 sim nodes (`rk up --runtime sim`),
//!   created at a steady 200/s and then as a burst (64 concurrent
//!   creates), and that process's RSS with 30,000 pods;
//! - proxy throughput and added latency: a TCP echo/sink server behind a
//!   ClusterIP Service vs the same server connected to directly.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Flags.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Pods for the process-runtime startup latency.
    #[arg(long, default_value_t = 100)]
    pub process_pods: usize,
    /// Sim nodes.
    #[arg(long, default_value_t = 1_000)]
    pub sim_nodes: usize,
    /// Pods on the sim nodes, for each of the paced and the burst runs.
    #[arg(long, default_value_t = 10_000)]
    pub sim_pods: usize,
    /// Creates per second of the paced sim run.
    #[arg(long, default_value_t = 200.0)]
    pub sim_rate: f64,
    /// Pods on the sim nodes when their RSS is read (more are created
    /// after the two runs to reach it).
    #[arg(long, default_value_t = 30_000)]
    pub sim_total: usize,
    /// Bytes pushed through the proxy (and directly) for throughput.
    #[arg(long, default_value_t = 1 << 30)]
    pub proxy_bytes: u64,
    /// Rounds of the throughput comparison: each round measures the direct
    /// connection and then the proxied one, and the medians are compared
    /// (the loopback figure alone moves by half between runs).
    #[arg(long, default_value_t = 5)]
    pub proxy_rounds: usize,
}

struct UpProcess {
    child: tokio::process::Child,
    client: kube::Client,
}

impl UpProcess {
    fn rss_mib(&self) -> f64 {
        let Some(pid) = self.child.id() else {
            return 0.0;
        };
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            })
            .unwrap_or(0.0)
            / 1024.0
    }

    async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = tokio::process::Command::new("kill")
                .args(["-INT", &pid.to_string()])
                .status()
                .await;
        }
        if tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Start `rk up` with `args`; returns once its kubeconfig answers, and the
/// time until `nodes` nodes were Ready.
async fn start_up(
    dir: &Path,
    nodes: usize,
    extra: &[&str],
) -> anyhow::Result<(UpProcess, Duration)> {
    let port = free_port()?;
    let exe = std::env::current_exe().context("finding the rk binary")?;
    let start = Instant::now();
    let child = tokio::process::Command::new(exe)
        .arg("up")
        .arg("--data-dir")
        .arg(dir)
        .args(["--port", &port.to_string(), "--nodes", &nodes.to_string()])
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting rk up")?;
    let url = format!("http://127.0.0.1:{port}");
    let client = rk_apiserver::test_server::client_for(&url).map_err(anyhow::Error::msg)?;
    let api: Api<Node> = Api::all(client.clone());
    loop {
        // Until the port is open, a list would only fail (and kube's client
        // logs every failed connect as an error).
        let listening = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok();
        if listening && let Ok(list) = api.list(&ListParams::default()).await {
            let ready = list
                .items
                .iter()
                .filter(|n| {
                    n.status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|cs| {
                            cs.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                        })
                })
                .count();
            if ready >= nodes {
                break;
            }
        }
        if start.elapsed() > Duration::from_secs(300) {
            anyhow::bail!("rk up did not get {nodes} nodes Ready within 300 s");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok((UpProcess { child, client }, start.elapsed()))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

/// Create `n` pods at `rate` per second (0: as fast as 64 clients go) and
/// return each one's create-to-Running latency in ms.
async fn pod_startup(
    client: &kube::Client,
    ns: &str,
    n: usize,
    rate: f64,
    command: &[&str],
) -> anyhow::Result<Vec<f64>> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let running: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let (s2, r2) = (sent.clone(), running.clone());
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let watch = tokio::spawn({
        let api = api.clone();
        async move {
            let mut events =
                watcher(api, watcher::Config::default().labels("bench=startup")).boxed();
            while let Some(ev) = events.next().await {
                let Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) = ev else {
                    continue;
                };
                if p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                    && let Some(name) = p.metadata.name
                {
                    let mut r = r2.lock().unwrap_or_else(|e| e.into_inner());
                    if let std::collections::hash_map::Entry::Vacant(e) = r.entry(name) {
                        e.insert(Instant::now());
                        if r.len() >= n {
                            let _ = done_tx.send(());
                        }
                    }
                }
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let limit = Arc::new(tokio::sync::Semaphore::new(64));
    let start = Instant::now();
    for i in 0..n {
        if rate > 0.0 {
            let due = start + Duration::from_secs_f64(i as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
        }
        let name = format!("startup-{i}");
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"bench": "startup"}},
            "spec": {"containers": [{"name": "c", "image": "x", "command": command,
                      "resources": {"requests": {"cpu": "1m", "memory": "1Mi"}}}],
                     "terminationGracePeriodSeconds": 0}
        }))?;
        let permit = limit.clone().acquire_owned().await?;
        let api = api.clone();
        let sent = s2.clone();
        tokio::spawn(async move {
            sent.lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(name, Instant::now());
            if let Err(e) = api.create(&PostParams::default(), &pod).await {
                tracing::warn!(error = %e, "creating a pod failed");
            }
            drop(permit);
        });
    }
    let _ = tokio::time::timeout(Duration::from_secs(300), done_rx.recv()).await;
    watch.abort();
    let sent = sent.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let running = running.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut lat: Vec<f64> = running
        .iter()
        .filter_map(|(name, at)| Some(at.duration_since(*sent.get(name)?).as_secs_f64() * 1000.0))
        .collect();
    lat.sort_by(f64::total_cmp);
    if lat.len() < n {
        tracing::warn!(
            running = lat.len(),
            wanted = n,
            "not every pod reached Running"
        );
    }
    Ok(lat)
}

/// Create namespace `name`.
async fn create_namespace(client: &kube::Client, name: &str) -> anyhow::Result<()> {
    let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let ns = serde_json::from_value(json!({"metadata": {"name": name}}))?;
    api.create(&PostParams::default(), &ns)
        .await
        .with_context(|| format!("creating namespace {name}"))?;
    Ok(())
}

/// An echo server on 127.0.0.1: every byte read is written back.
async fn echo_server() -> anyhow::Result<(u16, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = s.set_nodelay(true);
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    Ok((port, task))
}

/// Throughput in MiB/s pushing `bytes` to `addr` and reading them back.
async fn throughput(addr: (&str, u16), bytes: u64) -> anyhow::Result<f64> {
    let s = tokio::net::TcpStream::connect(addr).await?;
    let (mut r, mut w) = s.into_split();
    let start = Instant::now();
    let writer = tokio::spawn(async move {
        let buf = vec![7u8; 256 * 1024];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            if w.write_all(&buf[..n]).await.is_err() {
                break;
            }
            left -= n as u64;
        }
        let _ = w.shutdown().await;
    });
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = 0u64;
    while got < bytes {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        got += n as u64;
    }
    let _ = writer.await;
    Ok(got as f64 / (1024.0 * 1024.0) / start.elapsed().as_secs_f64())
}

/// Round-trip times in µs of 64-byte messages over one connection.
async fn round_trips(addr: (&str, u16), n: usize) -> anyhow::Result<Vec<f64>> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let msg = [1u8; 64];
    let mut back = [0u8; 64];
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        s.write_all(&msg).await?;
        s.read_exact(&mut back).await?;
        out.push(t.elapsed().as_secs_f64() * 1e6);
    }
    out.sort_by(f64::total_cmp);
    Ok(out)
}

/// A selector-less Service whose EndpointSlice points at 127.0.0.1:`port`.
async fn service_for(client: &kube::Client, port: u16) -> anyhow::Result<String> {
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "echo"},
        "spec": {"ports": [{"name": "tcp", "port": 9000, "targetPort": port}]}
    }))?;
    let svc = Api::<Service>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &svc)
        .await?;
    let slice: EndpointSlice = serde_json::from_value(json!({
        "metadata": {"name": "echo-1", "labels": {"kubernetes.io/service-name": "echo",
                     "endpointslice.kubernetes.io/managed-by": "rk-bench"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": true}}],
        "ports": [{"name": "tcp", "port": port, "protocol": "TCP"}]
    }))?;
    Api::<EndpointSlice>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &slice)
        .await?;
    svc.spec
        .and_then(|s| s.cluster_ip)
        .context("the Service got no cluster IP")
}

/// Run the benchmark.
pub async fn run(args: Args) -> anyhow::Result<()> {
    println!("rk bench cluster (release build; each cluster is its own `rk up` process)");
    println!();
    let dir = tempfile::tempdir()?;
    let (up, ready) = start_up(&dir.path().join("three"), 3, &[]).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle = up.rss_mib();
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| `rk up --nodes 3`: start to 3 nodes Ready | {:.2} s |",
        ready.as_secs_f64()
    );
    println!("| `rk up --nodes 3`: idle RSS | {idle:.1} MiB |");

    let lat = pod_startup(
        &up.client,
        "default",
        args.process_pods,
        20.0,
        &["sleep", "3600"],
    )
    .await?;
    println!(
        "| pod startup, process runtime, {} pods at 20/s: p50 / p99 | {:.0} ms / {:.0} ms ({} Running) |",
        args.process_pods,
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat.len()
    );

    let (echo_port, echo) = echo_server().await?;
    let cluster_ip = service_for(&up.client, echo_port).await?;
    let via = (cluster_ip.as_str(), 9000u16);
    let direct = ("127.0.0.1", echo_port);
    let mut proxied_ok = false;
    for _ in 0..100 {
        if round_trips(via, 1).await.is_ok() {
            proxied_ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if proxied_ok {
        let (mut ds, mut ps) = (Vec::new(), Vec::new());
        for _ in 0..args.proxy_rounds.max(1) {
            ds.push(throughput(direct, args.proxy_bytes).await?);
            ps.push(throughput(via, args.proxy_bytes).await?);
        }
        let ratios: Vec<String> = ds
            .iter()
            .zip(&ps)
            .map(|(d, p)| format!("{:.0}%", 100.0 * p / d))
            .collect();
        ds.sort_by(f64::total_cmp);
        ps.sort_by(f64::total_cmp);
        let (d, p) = (percentile(&ds, 0.5), percentile(&ps, 0.5));
        let rd = round_trips(direct, 10_000).await?;
        let rp = round_trips(via, 10_000).await?;
        println!(
            "| proxy throughput vs direct loopback (echo, both ways), median of {} rounds | {p:.0} MiB/s vs {d:.0} MiB/s ({:.0}%; per round {}) |",
            ds.len(),
            100.0 * p / d,
            ratios.join(", ")
        );
        println!(
            "| proxy added round-trip latency, 64 B, p50 / p99 | {:.0} µs / {:.0} µs (direct {:.0} / {:.0} µs) |",
            percentile(&rp, 0.5) - percentile(&rd, 0.5),
            percentile(&rp, 0.99) - percentile(&rd, 0.99),
            percentile(&rd, 0.5),
            percentile(&rd, 0.99)
        );
    } else {
        println!("| proxy | the Service never answered |");
    }
    echo.abort();
    up.stop().await;

    if args.sim_nodes > 0 && args.sim_pods > 0 {
        let (sim, ready) = start_up(
            &dir.path().join("sim"),
            args.sim_nodes,
            &["--runtime", "sim"],
        )
        .await?;
        println!(
            "| `rk up --nodes {} --runtime sim`: start to all nodes Ready | {:.2} s |",
            args.sim_nodes,
            ready.as_secs_f64()
        );
        let lat = pod_startup(
            &sim.client,
            "default",
            args.sim_pods,
            args.sim_rate,
            &["sleep", "3600"],
        )
        .await?;
        println!(
            "| pod startup, {} pods on {} sim nodes at {}/s: p50 / p99 | {:.0} ms / {:.0} ms ({} Running) |",
            args.sim_pods,
            args.sim_nodes,
            args.sim_rate,
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
            lat.len()
        );
        create_namespace(&sim.client, "burst").await?;
        let lat = pod_startup(&sim.client, "burst", args.sim_pods, 0.0, &["sleep", "3600"]).await?;
        println!(
            "| pod startup, {} more pods on {} sim nodes as a burst (64 concurrent creates): p50 / p99 | {:.0} ms / {:.0} ms ({} Running) |",
            args.sim_pods,
            args.sim_nodes,
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
            lat.len()
        );
        let mut total = 2 * args.sim_pods;
        if args.sim_total > total {
            create_namespace(&sim.client, "fill").await?;
            let more = args.sim_total - total;
            total += pod_startup(&sim.client, "fill", more, 0.0, &["sleep", "3600"])
                .await?
                .len();
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
        println!(
            "| RSS of that `rk up` with {total} pods Running on {} sim nodes | {:.0} MiB |",
            args.sim_nodes,
            sim.rss_mib()
        );
        sim.stop().await;
    }
    Ok(())
}
