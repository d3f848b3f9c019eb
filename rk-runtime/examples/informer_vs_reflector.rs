//! Side by side, in one process: the rk informer and kube-runtime's
//! reflector over the same pods. Prints steady memory, peak memory during a
//! relist, time to sync and updates per second for each.
//!
//! `PODS=10000 cargo run --release -p rk-runtime --example informer_vs_reflector`
//!
//! The API server runs on its own runtime and threads; only allocations made
//! on the client's threads are counted.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use rk_apiserver::TestServer;
use rk_apiserver::state::ApiState;
use rk_runtime::informer::{HandlerFn, Informer, InformerConfig, InformerEvent};

thread_local! {
    static TRACKED: Cell<bool> = const { Cell::new(false) };
}
static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

struct Counting;

fn tracked() -> bool {
    TRACKED.try_with(Cell::get).unwrap_or(false)
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() && tracked() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        if tracked() {
            CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
        }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() && tracked() {
            if new_size >= layout.size() {
                let now = CURRENT.fetch_add(new_size - layout.size(), Ordering::Relaxed)
                    + (new_size - layout.size());
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                CURRENT.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn current() -> i64 {
    CURRENT.load(Ordering::Relaxed) as i64
}

fn mib(bytes: i64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

struct Server {
    client: Client,
    state: Arc<ApiState>,
    handle: tokio::runtime::Handle,
}

/// Start the server on its own runtime; the client is made on the caller's.
fn start_server() -> (String, Arc<ApiState>, tokio::runtime::Handle) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("server runtime");
        runtime.block_on(async move {
            let server = TestServer::start().await.expect("server starts");
            tx.send((
                server.url(),
                server.state().clone(),
                tokio::runtime::Handle::current(),
            ))
            .expect("send server");
            std::future::pending::<()>().await;
        });
    });
    rx.recv().expect("server started")
}

fn pod(i: usize) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": format!("pod-{i}"), "namespace": "default",
                     "labels": {"app": "bench", "shard": format!("{}", i % 16)}},
        "spec": {"containers": [{"name": "main", "image": "registry.example/app:1.0",
                 "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}],
                 "nodeName": format!("node-{}", i % 100)}
    }))
    .expect("pod")
}

/// Make every pod watch resume below the watch cache's window: 410 Gone.
async fn force_relist(server: &Server, bump: usize) {
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(format!("bump-{bump}")),
            namespace: Some("default".into()),
            ..ObjectMeta::default()
        },
        ..Secret::default()
    };
    Api::<Secret>::namespaced(server.client.clone(), "default")
        .create(&PostParams::default(), &secret)
        .await
        .expect("bump revision");
    let state = server.state.clone();
    server
        .handle
        .spawn(async move {
            if let Some(info) = state.resource("", "v1", "pods") {
                state.caches.remove(&info.storage_prefix()).await;
            }
        })
        .await
        .expect("drop pod watch cache");
}

async fn update_all(client: &Client, pods: usize, round: usize) -> Instant {
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let started = Instant::now();
    futures::stream::iter(0..pods)
        .map(|i| {
            let api = api.clone();
            async move {
                let patch =
                    serde_json::json!({"metadata": {"labels": {"round": round.to_string()}}});
                api.patch(
                    &format!("pod-{i}"),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
            }
        })
        .buffer_unordered(32)
        .try_for_each(|_| async { Ok(()) })
        .await
        .expect("updates");
    started
}

async fn wait_until(mut check: impl FnMut() -> bool) {
    while !check() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

struct Row {
    name: &'static str,
    sync: Duration,
    steady: i64,
    peak: i64,
    updates_per_sec: f64,
}

async fn bench_rk(server: &Server, pods: usize) -> Row {
    tokio::time::sleep(Duration::from_millis(500)).await;
    let base = current();
    let started = Instant::now();
    let informer = Informer::new(
        Api::<Pod>::all(server.client.clone()),
        InformerConfig::default(),
    );
    let applied = Arc::new(AtomicU64::new(0));
    let counter = applied.clone();
    informer.add_handler(Arc::new(HandlerFn(move |e: InformerEvent<Pod>| {
        if let InformerEvent::Updated { .. } = e {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    })));
    informer.start();
    informer.wait_for_sync().await;
    let sync = started.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let steady = current() - base;

    PEAK.store(CURRENT.load(Ordering::Relaxed), Ordering::Relaxed);
    force_relist(server, 1).await;
    let lists = informer.list_count();
    wait_until(|| informer.list_count() > lists && informer.store().len() == pods).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let peak = PEAK.load(Ordering::Relaxed) as i64 - base;

    let before = applied.load(Ordering::Relaxed);
    let started = update_all(&server.client, pods, 1).await;
    wait_until(|| applied.load(Ordering::Relaxed) >= before + pods as u64).await;
    let updates_per_sec = pods as f64 / started.elapsed().as_secs_f64();
    informer.stop();
    Row {
        name: "rk informer",
        sync,
        steady,
        peak,
        updates_per_sec,
    }
}

async fn bench_kube(server: &Server, pods: usize) -> Row {
    tokio::time::sleep(Duration::from_millis(500)).await;
    let base = current();
    let started = Instant::now();
    let (reader, writer) = kube::runtime::reflector::store::<Pod>();
    let inits = Arc::new(AtomicU64::new(0));
    let applies = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let stream = kube::runtime::reflector(
        writer,
        watcher::watcher(
            Api::<Pod>::all(server.client.clone()),
            watcher::Config::default(),
        ),
    );
    let task = tokio::spawn({
        let (inits, applies, stop) = (inits.clone(), applies.clone(), stop.clone());
        async move {
            futures::pin_mut!(stream);
            while let Some(event) = stream.next().await {
                match event {
                    Ok(Event::InitDone) => {
                        inits.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Event::Apply(_)) => {
                        applies.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {}
                }
                if stop.load(Ordering::Relaxed) {
                    break;
                }
            }
        }
    });
    reader.wait_until_ready().await.expect("reflector ready");
    let sync = started.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let steady = current() - base;

    PEAK.store(CURRENT.load(Ordering::Relaxed), Ordering::Relaxed);
    force_relist(server, 2).await;
    wait_until(|| inits.load(Ordering::Relaxed) >= 2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let peak = PEAK.load(Ordering::Relaxed) as i64 - base;

    let before = applies.load(Ordering::Relaxed);
    let started = update_all(&server.client, pods, 2).await;
    wait_until(|| applies.load(Ordering::Relaxed) >= before + pods as u64).await;
    let updates_per_sec = pods as f64 / started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    task.abort();
    drop(reader);
    Row {
        name: "kube-runtime reflector",
        sync,
        steady,
        peak,
        updates_per_sec,
    }
}

fn main() {
    let pods: usize = std::env::var("PODS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let (url, state, handle) = start_server();
    TRACKED.with(|t| t.set(true));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .on_thread_start(|| TRACKED.with(|t| t.set(true)))
        .build()
        .expect("client runtime");
    runtime.block_on(async {
        let server = Server {
            client: rk_apiserver::test_server::client_for(&url).expect("client"),
            state,
            handle,
        };
        let api: Api<Pod> = Api::namespaced(server.client.clone(), "default");
        futures::stream::iter(0..pods)
            .map(|i| {
                let api = api.clone();
                async move { api.create(&PostParams::default(), &pod(i)).await }
            })
            .buffer_unordered(32)
            .try_for_each(|_| async { Ok(()) })
            .await
            .expect("create pods");
        println!("{pods} pods created");
        let rows = [
            bench_rk(&server, pods).await,
            bench_kube(&server, pods).await,
        ];
        println!(
            "{:<24} {:>10} {:>12} {:>14} {:>12} {:>10}",
            "", "sync", "steady", "relist peak", "peak/steady", "updates/s"
        );
        for r in &rows {
            println!(
                "{:<24} {:>10.2?} {:>12} {:>14} {:>12.2} {:>10.0}",
                r.name,
                r.sync,
                mib(r.steady),
                mib(r.peak),
                r.peak as f64 / r.steady.max(1) as f64,
                r.updates_per_sec
            );
        }
        println!(
            "rk steady memory is {:.2}x kube-runtime's",
            rows[0].steady as f64 / rows[1].steady.max(1) as f64
        );
    });
}
