//! `rk bench controllers`: workload controller throughput against an
//! in-process rk API server on the sqlite store (controllers in the same
//! process, talking HTTP, as `rk up` runs them).
//!
//! - time from creating a ReplicaSet of N replicas to N pods existing
//!   (1,000 and 10,000 by default);
//! - a Deployment of 1,000 replicas rolling to a new template: time from
//!   the template change to every pod being updated and available, with
//!   pods made ready by the benchmark itself (no kubelet).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;

/// Flags.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// ReplicaSet sizes to time, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1_000usize, 10_000])]
    pub replicasets: Vec<usize>,
    /// Replicas of the Deployment rollout (0 skips it).
    #[arg(long, default_value_t = 1_000)]
    pub rollout: usize,
}

fn template(app: &str, image: &str) -> serde_json::Value {
    json!({"metadata": {"labels": {"app": app}},
           "spec": {"containers": [{"name": "c", "image": image,
                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}})
}

/// Count pods of `app` as they appear, until `want` exist.
async fn wait_for_pods(client: &kube::Client, ns: &str, app: &str, want: usize) {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let cfg = watcher::Config::default().labels(&format!("app={app}"));
    let mut seen = std::collections::HashSet::new();
    let mut events = watcher(api, cfg).boxed();
    while let Some(ev) = events.next().await {
        if let Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) = ev
            && let Some(n) = p.metadata.name
        {
            seen.insert(n);
            if seen.len() >= want {
                return;
            }
        }
    }
}

/// Mark every pod in `ns` Running and Ready as soon as it is seen.
fn fake_kubelet(client: kube::Client, ns: &str) -> (tokio::task::JoinHandle<()>, Arc<AtomicUsize>) {
    let api: Api<Pod> = Api::namespaced(client, ns);
    let readied = Arc::new(AtomicUsize::new(0));
    let count = readied.clone();
    let task = tokio::spawn(async move {
        let limit = Arc::new(tokio::sync::Semaphore::new(32));
        let mut events = watcher(api.clone(), watcher::Config::default()).boxed();
        while let Some(ev) = events.next().await {
            let Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) = ev else {
                continue;
            };
            let ready = p
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            if ready || p.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let Some(name) = p.metadata.name.clone() else {
                continue;
            };
            let Ok(permit) = limit.clone().acquire_owned().await else {
                return;
            };
            let api = api.clone();
            let count = count.clone();
            tokio::spawn(async move {
                let now = jiff::Timestamp::now()
                    .strftime("%Y-%m-%dT%H:%M:%SZ")
                    .to_string();
                let patch = json!({"status": {"phase": "Running", "podIP": "10.0.0.1",
                    "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}]}});
                if api
                    .patch_status(&name, &PatchParams::default(), &Patch::Merge(patch))
                    .await
                    .is_ok()
                {
                    count.fetch_add(1, Ordering::Relaxed);
                }
                drop(permit);
            });
        }
    });
    (task, readied)
}

/// Run the benchmark.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = rk_apiserver::server::start(rk_apiserver::server::ServerConfig {
        bind: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        storage: rk_apiserver::server::StorageConfig::Sqlite(dir.path().join("rk.db")),
        ..Default::default()
    })
    .await
    .context("starting the API server")?;
    let client =
        rk_apiserver::test_server::client_for(&server.url()).map_err(anyhow::Error::msg)?;
    let controllers = [
        tokio::spawn(rk_controllers::controllers::replicaset::run(
            client.clone(),
            8,
        )),
        tokio::spawn(rk_controllers::controllers::deployment::run(
            client.clone(),
            4,
        )),
    ];
    println!("rk bench controllers (release build; API server on sqlite, same process)");
    println!();
    println!("| workload | pods | time | pods/s |");
    println!("|---|---:|---:|---:|");
    for (i, n) in args.replicasets.iter().enumerate() {
        let ns = "default";
        let app = format!("rs{i}");
        let rs: ReplicaSet = serde_json::from_value(json!({
            "metadata": {"name": app},
            "spec": {"replicas": n, "selector": {"matchLabels": {"app": app}}, "template": template(&app, "pause:1")}
        }))?;
        let api: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
        let start = Instant::now();
        let waiter = tokio::spawn({
            let (client, app, n) = (client.clone(), app.clone(), *n);
            async move { wait_for_pods(&client, ns, &app, n).await }
        });
        api.create(&PostParams::default(), &rs).await?;
        waiter.await?;
        let t = start.elapsed();
        println!(
            "| ReplicaSet created → all pods created | {n} | {:.2} s | {:.0} |",
            t.as_secs_f64(),
            *n as f64 / t.as_secs_f64()
        );
    }
    if args.rollout > 0 {
        let n = args.rollout;
        let ns = "rollout";
        let nss: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
        nss.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}}))?,
        )
        .await?;
        let (kubelet, _readied) = fake_kubelet(client.clone(), ns);
        let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
        let d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "web"},
            "spec": {"replicas": n, "selector": {"matchLabels": {"app": "web"}}, "template": template("web", "v1")}
        }))?;
        api.create(&PostParams::default(), &d).await?;
        let done = |gen_at_least: i64| {
            let api = api.clone();
            async move {
                loop {
                    if let Ok(d) = api.get("web").await {
                        let s = d.status.clone().unwrap_or_default();
                        let want = Some(n as i32);
                        if s.observed_generation.unwrap_or(0) >= gen_at_least
                            && s.updated_replicas == want
                            && s.replicas == want
                            && s.available_replicas == want
                        {
                            return;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        let start = Instant::now();
        done(1).await;
        let first = start.elapsed();
        println!(
            "| Deployment created → all pods available | {n} | {:.2} s | {:.0} |",
            first.as_secs_f64(),
            n as f64 / first.as_secs_f64()
        );
        let start = Instant::now();
        let patch =
            json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "v2"}]}}}});
        let updated = api
            .patch("web", &PatchParams::default(), &Patch::Strategic(patch))
            .await?;
        done(updated.metadata.generation.unwrap_or(2)).await;
        let t = start.elapsed();
        println!(
            "| Deployment rollout (25% surge/unavailable) | {n} | {:.2} s | {:.0} |",
            t.as_secs_f64(),
            n as f64 / t.as_secs_f64()
        );
        kubelet.abort();
    }
    for c in controllers {
        c.abort();
    }
    server.shutdown().await;
    Ok(())
}
