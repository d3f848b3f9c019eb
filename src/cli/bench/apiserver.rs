//! `rk bench apiserver`: the API server's numbers side by side in one run.
//!
//! - creates/s of pods over HTTP (64 concurrent keep-alive clients) vs raw
//!   SQLite storage writes/s with 64 concurrent writers, writing the pod as
//!   the server stores it (defaulted, with managedFields; ~1.6 KB) and, for
//!   comparison, the ~300-byte body the client sends;
//! - LIST of 10,000 pods with `resourceVersion=0` (from the watch cache);
//! - watch fan-out: 100 watchers, 10,000 events, delay from the write being
//!   sent to each watcher receiving it (an upper bound of commit-to-client);
//! - memory: idle RSS, and RSS growth per stored pod vs its JSON size.
//!
//! The server runs as a separate `rk apiserver` process (sqlite store) so its
//! memory can be read from `/proc`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use futures::StreamExt;
use http::Method;
use http_body_util::BodyExt;
use rk_apiserver::storage::Storage;

use super::http_client::Conn;
use super::raw_http::RawConn;

/// Flags.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Pods to create over HTTP (and then list).
    #[arg(long, default_value_t = 10_000)]
    pub pods: usize,
    /// Concurrent HTTP clients / storage writers.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Watchers for the fan-out test.
    #[arg(long, default_value_t = 100)]
    pub watchers: usize,
    /// Events for the fan-out test.
    #[arg(long, default_value_t = 10_000)]
    pub events: usize,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// CPU time (user + system) a process has used so far, in seconds, from
/// `/proc/PID/stat` (fields 14 and 15, in USER_HZ = 100 ticks per second).
fn cpu_seconds(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // The command name may hold spaces; the fields after it do not.
            let rest = s.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let utime: f64 = fields.get(11)?.parse().ok()?;
            let stime: f64 = fields.get(12)?.parse().ok()?;
            Some((utime + stime) / 100.0)
        })
        .unwrap_or(0.0)
}

fn pod_json(ns: &str, i: usize) -> Bytes {
    client_pod(ns, &format!("pod-{i}"), i % 16)
}

/// The pod body a client sends: a container with resource requests.
fn client_pod(ns: &str, name: &str, shard: usize) -> Bytes {
    Bytes::from(
        serde_json::json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": {"app": "bench", "shard": shard.to_string()}},
            "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}
        })
        .to_string(),
    )
}

struct Server {
    child: tokio::process::Child,
    addr: std::net::SocketAddr,
}

async fn start_server(dir: &std::path::Path) -> anyhow::Result<Server> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let exe = std::env::current_exe()?;
    let child = tokio::process::Command::new(exe)
        .arg("apiserver")
        .arg("--bind")
        .arg(addr.to_string())
        .arg("--data-dir")
        .arg(dir)
        .arg("--storage")
        .arg(format!("sqlite:{}", dir.join("state.db").display()))
        .env("RUST_LOG", "warn")
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting rk apiserver")?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(mut c) = Conn::connect(addr).await
            && let Ok((200, _)) = c.request(Method::GET, "/readyz", None).await
        {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the API server did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(Server { child, addr })
}

/// A pod as the server stores it (defaulted, with managedFields, uid and
/// timestamps), split around its name: the raw writes store the same bytes an
/// HTTP create does, not the much smaller body the client sends.
struct StoredPod {
    before_name: Vec<u8>,
    after_name: Vec<u8>,
}

impl StoredPod {
    const MARKER: &'static str = "rk-bench-name-marker";

    /// Create one pod over HTTP and keep what the server answered (the stored
    /// object, less its resourceVersion, which the store does not keep in
    /// the bytes).
    async fn from_server(addr: std::net::SocketAddr) -> anyhow::Result<Self> {
        let mut c = Conn::connect(addr).await?;
        let ns = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench-template"}})
            .to_string();
        c.request(Method::POST, "/api/v1/namespaces", Some(Bytes::from(ns)))
            .await?;
        let (code, body) = c
            .request(
                Method::POST,
                "/api/v1/namespaces/bench-template/pods",
                Some(pod_json("bench-template", 0)),
            )
            .await?;
        anyhow::ensure!(code == 201, "template create answered {code}");
        let mut pod: serde_json::Value = serde_json::from_slice(&body)?;
        let meta = pod
            .get_mut("metadata")
            .and_then(serde_json::Value::as_object_mut)
            .context("the stored pod has no metadata")?;
        meta.remove("resourceVersion");
        meta.insert("name".into(), Self::MARKER.into());
        meta.insert("namespace".into(), "raw".into());
        let text = serde_json::to_string(&pod)?;
        let (before, after) = text
            .split_once(Self::MARKER)
            .context("the marker is not in the stored pod")?;
        Ok(Self {
            before_name: before.as_bytes().to_vec(),
            after_name: after.as_bytes().to_vec(),
        })
    }

    fn with_name(&self, name: &str) -> Bytes {
        let mut out =
            Vec::with_capacity(self.before_name.len() + name.len() + self.after_name.len());
        out.extend_from_slice(&self.before_name);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&self.after_name);
        Bytes::from(out)
    }

    fn len(&self) -> usize {
        self.before_name.len() + "pod-0-0".len() + self.after_name.len()
    }
}

/// Raw storage writes/s: `writers` tasks in this process each storing its
/// share of `total` pods straight into a fresh sqlite store, with the bytes
/// `body` makes for a name. Also returns this process's CPU per write.
async fn raw_storage_writes(
    path: std::path::PathBuf,
    writers: usize,
    total: usize,
    body: Arc<dyn Fn(&str) -> Bytes + Send + Sync>,
) -> anyhow::Result<(f64, f64)> {
    let storage: Arc<dyn Storage> =
        rk_apiserver::server::open_storage(&rk_apiserver::StorageConfig::Sqlite(path)).await?;
    let per = total / writers;
    let own_cpu = cpu_seconds(std::process::id());
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (storage, body) = (storage.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..per {
                let name = format!("pod-{w}-{i}");
                let key = format!("/registry/pods/raw/{name}");
                storage.create(&key, body(&name)).await?;
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let writes = (per * writers).max(1) as f64;
    let rate = writes / start.elapsed().as_secs_f64();
    Ok((rate, (cpu_seconds(std::process::id()) - own_cpu) / writes))
}

/// [`http_creates_on_this_thread`] on a thread of its own with a
/// single-threaded runtime: the load generator shares the machine with the
/// server, and this way it takes at most one core and no cross-thread
/// wake-ups (a multi-threaded client spent ~10% more CPU per request).
async fn http_creates(
    addr: std::net::SocketAddr,
    clients: usize,
    total: usize,
) -> anyhow::Result<(f64, Vec<f64>)> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("load-generator".into())
        .spawn(move || {
            let result = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|rt| rt.block_on(http_creates_on_this_thread(addr, clients, total)));
            let _ = tx.send(result);
        })?;
    rx.await.context("the load generator stopped")?
}

async fn http_creates_on_this_thread(
    addr: std::net::SocketAddr,
    clients: usize,
    total: usize,
) -> anyhow::Result<(f64, Vec<f64>)> {
    let mut c = Conn::connect(addr).await?;
    let ns =
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}})
            .to_string();
    c.request(Method::POST, "/api/v1/namespaces", Some(Bytes::from(ns)))
        .await?;
    // Every pod is created: the first `total % clients` clients make one more.
    let clients = clients.clamp(1, total.max(1));
    let (per, extra) = (total / clients, total % clients);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..clients {
        let (first, count) = (w * per + w.min(extra), per + usize::from(w < extra));
        tasks.push(tokio::spawn(async move {
            let mut conn = RawConn::connect(addr).await?;
            let mut lat = Vec::with_capacity(count);
            for i in first..first + count {
                let t = Instant::now();
                let (code, body) = conn
                    .post_json("/api/v1/namespaces/bench/pods", &pod_json("bench", i))
                    .await?;
                anyhow::ensure!(
                    code == 201,
                    "create answered {code}: {}",
                    String::from_utf8_lossy(&body)
                );
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await??);
    }
    let rate = total as f64 / start.elapsed().as_secs_f64();
    lat.sort_by(|a, b| a.total_cmp(b));
    Ok((rate, lat))
}

async fn list_latency(
    addr: std::net::SocketAddr,
    rounds: usize,
) -> anyhow::Result<(Vec<f64>, usize, usize)> {
    let mut conn = Conn::connect(addr).await?;
    let mut lat = Vec::new();
    let mut items = 0;
    let mut bytes = 0;
    for _ in 0..rounds {
        let t = Instant::now();
        let (code, body) = conn
            .request(
                Method::GET,
                "/api/v1/namespaces/bench/pods?resourceVersion=0",
                None,
            )
            .await?;
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(code == 200, "list answered {code}");
        bytes = body.len();
        let v: serde_json::Value = serde_json::from_slice(&body)?;
        items = v["items"].as_array().map(Vec::len).unwrap_or(0);
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    Ok((lat, items, bytes))
}

/// The watch cache's estimated memory and object JSON bytes, from `/metrics`.
async fn cache_memory(addr: std::net::SocketAddr) -> anyhow::Result<(f64, f64)> {
    let mut conn = Conn::connect(addr).await?;
    let (_, body) = conn.request(Method::GET, "/metrics", None).await?;
    let text = String::from_utf8_lossy(&body);
    let value = |name: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    Ok((
        value("apiserver_watch_cache_memory_bytes"),
        value("apiserver_watch_cache_object_json_bytes"),
    ))
}

/// Find `"t":"<digits>"` in a watch line: the send time in microseconds.
fn sent_micros(line: &[u8]) -> Option<u64> {
    let pat = b"\"t\":\"";
    let pos = line.windows(pat.len()).position(|w| w == pat)? + pat.len();
    let digits: Vec<u8> = line[pos..]
        .iter()
        .take_while(|c| c.is_ascii_digit())
        .copied()
        .collect();
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

async fn watch_fanout(
    addr: std::net::SocketAddr,
    watchers: usize,
    events: usize,
) -> anyhow::Result<(Vec<f64>, usize)> {
    let mut c = Conn::connect(addr).await?;
    let ns =
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "fan"}})
            .to_string();
    c.request(Method::POST, "/api/v1/namespaces", Some(Bytes::from(ns)))
        .await?;
    let (_, body) = c
        .request(Method::GET, "/api/v1/namespaces/fan/configmaps", None)
        .await?;
    let rv = serde_json::from_slice::<serde_json::Value>(&body)?["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("0")
        .to_string();
    let epoch = Instant::now();
    // 16 writers send `per` events each: watchers wait for exactly that many
    // (`events` rounded down to a multiple of 16).
    let writers = 16;
    let per = events / writers;
    let expected = per * writers;
    let mut handles = Vec::new();
    for _ in 0..watchers {
        let mut conn = Conn::connect(addr).await?;
        let mut body = conn
            .stream(&format!(
                "/api/v1/namespaces/fan/configmaps?watch=1&resourceVersion={rv}"
            ))
            .await?;
        handles.push(tokio::spawn(async move {
            let _keep = conn;
            let mut delays = Vec::with_capacity(expected);
            let mut buf: Vec<u8> = Vec::new();
            while delays.len() < expected {
                let Some(frame) = body.frame().await else {
                    break;
                };
                let Ok(frame) = frame else { break };
                let Some(data) = frame.data_ref() else {
                    continue;
                };
                buf.extend_from_slice(data);
                while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=nl).collect();
                    if let Some(sent) = sent_micros(&line) {
                        let now = epoch.elapsed().as_micros() as u64;
                        delays.push(now.saturating_sub(sent) as f64 / 1000.0);
                    }
                }
            }
            delays
        }));
    }
    let mut tasks = Vec::new();
    for w in 0..writers {
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::connect(addr).await?;
            for i in 0..per {
                let t = epoch.elapsed().as_micros().to_string();
                let cm = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("cm-{w}-{i}")}, "data": {"t": t}});
                let (code, _) = conn.request(Method::POST, "/api/v1/namespaces/fan/configmaps", Some(Bytes::from(cm.to_string()))).await?;
                anyhow::ensure!(code == 201, "create answered {code}");
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let mut all = Vec::new();
    let mut complete = 0;
    let results = futures::stream::iter(handles)
        .then(|h| async move { tokio::time::timeout(Duration::from_secs(60), h).await })
        .collect::<Vec<_>>()
        .await;
    for r in results {
        if let Ok(Ok(d)) = r {
            if d.len() >= expected {
                complete += 1;
            }
            all.extend(d);
        }
    }
    all.sort_by(|a, b| a.total_cmp(b));
    Ok((all, complete))
}

/// Runs of each raw storage measurement; the median is reported.
const RAW_ROUNDS: usize = 3;

/// The run (rate, CPU per write) with the median rate.
fn median_run(runs: &mut [(f64, f64)]) -> (f64, f64) {
    runs.sort_by(|a, b| a.0.total_cmp(&b.0));
    runs.get(runs.len() / 2).copied().unwrap_or((0.0, 0.0))
}

/// Run the benchmark and print the table.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut server = start_server(dir.path()).await?;
    let pid = server.child.id().unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_rss = rss_kib(pid);

    let stored = Arc::new(StoredPod::from_server(server.addr).await?);
    let stored_len = stored.len();
    // Each raw figure is the median of three runs into fresh stores: one run
    // of 20,000 writes lasts about half a second, and a slow fsync or a
    // checkpoint moved single runs by 20%.
    let mut raw_runs = Vec::new();
    let mut raw_client_runs = Vec::new();
    for round in 0..RAW_ROUNDS {
        let stored = stored.clone();
        raw_runs.push(
            raw_storage_writes(
                dir.path().join(format!("raw-stored-{round}.db")),
                args.clients,
                args.pods * 2,
                Arc::new(move |name: &str| stored.with_name(name)),
            )
            .await?,
        );
        raw_client_runs.push(
            raw_storage_writes(
                dir.path().join(format!("raw-client-{round}.db")),
                args.clients,
                args.pods * 2,
                Arc::new(|name: &str| client_pod("raw", name, name.len() % 16)),
            )
            .await?,
        );
    }
    let (raw, raw_cpu) = median_run(&mut raw_runs);
    let (raw_client, _) = median_run(&mut raw_client_runs);
    let client_len = pod_json("raw", 0).len();
    let cache_before = cache_memory(server.addr).await?;
    let (server_cpu, client_cpu) = (cpu_seconds(pid), cpu_seconds(std::process::id()));
    let (http_rate, create_lat) = http_creates(server.addr, args.clients, args.pods).await?;
    let create_cpu = (cpu_seconds(pid) - server_cpu) / args.pods.max(1) as f64;
    let load_cpu = (cpu_seconds(std::process::id()) - client_cpu) / args.pods.max(1) as f64;
    let loaded_rss = rss_kib(pid);
    let cache_after = cache_memory(server.addr).await?;
    let (list_lat, items, list_bytes) = list_latency(server.addr, 50).await?;
    let (delays, complete) = watch_fanout(server.addr, args.watchers, args.events).await?;

    let json_per_pod = list_bytes as f64 / items.max(1) as f64;
    let rss_per_pod = (loaded_rss.saturating_sub(idle_rss) as f64 * 1024.0) / items.max(1) as f64;
    println!("rk bench apiserver (release build, sqlite store, server in its own process)");
    println!();
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| raw sqlite storage writes/s ({} writers, the pod as stored: {stored_len} B; median of 3) | {raw:.0} |",
        args.clients
    );
    println!(
        "| raw sqlite storage writes/s ({} writers, the client's body: {client_len} B; median of 3) | {raw_client:.0} |",
        args.clients
    );
    println!(
        "| pod creates/s over HTTP ({} clients) | {http_rate:.0} |",
        args.clients
    );
    println!(
        "| HTTP creates as share of raw storage writes: of the pod as stored / of the client's body | {:.0}% / {:.0}% |",
        http_rate / raw * 100.0,
        http_rate / raw_client * 100.0
    );
    println!(
        "| CPU per write: raw storage (writer and callers) / server per HTTP create | {:.0} µs / {:.0} µs |",
        raw_cpu * 1e6,
        create_cpu * 1e6
    );
    println!(
        "| CPU per HTTP create in the load generator ({} clients, same machine) | {:.0} µs |",
        args.clients,
        load_cpu * 1e6
    );
    println!(
        "| create latency p50 / p99 | {:.2} ms / {:.2} ms |",
        percentile(&create_lat, 0.5),
        percentile(&create_lat, 0.99)
    );
    println!(
        "| LIST {items} pods, resourceVersion=0, p50 / p99 | {:.1} ms / {:.1} ms |",
        percentile(&list_lat, 0.5),
        percentile(&list_lat, 0.99)
    );
    println!(
        "| watch fan-out: {} watchers x {} events, send-to-receive p50 / p99 | {:.1} ms / {:.1} ms ({complete}/{} watchers got every event) |",
        args.watchers,
        args.events,
        percentile(&delays, 0.5),
        percentile(&delays, 0.99),
        args.watchers
    );
    let (cache_bytes, json_bytes) = (
        cache_after.0 - cache_before.0,
        cache_after.1 - cache_before.1,
    );
    println!(
        "| watch cache memory for {items} pods vs their JSON | {:.1} MB vs {:.1} MB ({:.2}x) |",
        cache_bytes / 1e6,
        json_bytes / 1e6,
        cache_bytes / json_bytes.max(1.0)
    );
    println!("| idle server RSS | {:.1} MB |", idle_rss as f64 / 1024.0);
    println!(
        "| server RSS with {items} pods | {:.1} MB |",
        loaded_rss as f64 / 1024.0
    );
    println!(
        "| RSS growth per pod vs its JSON size | {rss_per_pod:.0} B vs {json_per_pod:.0} B ({:.2}x) |",
        rss_per_pod / json_per_pod
    );
    let _ = server.child.kill().await;
    Ok(())
}
