//! A manager runs controllers under leader election and serves health,
//! readiness and metrics on one port.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::common::{create_config_map, eventually};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use rk_apiserver::TestServer;
use rk_runtime::cache::ObjectKey;
use rk_runtime::controller::{Action, ControllerBuilder, ReconcileFn};
use rk_runtime::factory::InformerOptions;
use rk_runtime::leader::{LeaderElectionConfig, LeaseLock};
use rk_runtime::manager::{LeaderElectionSettings, Manager, ManagerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, response))
}

fn counting(
    count: &Arc<AtomicUsize>,
) -> ReconcileFn<
    impl Fn(ObjectKey) -> futures::future::Ready<Result<Action, String>> + Send + Sync + 'static,
> {
    let count = count.clone();
    ReconcileFn(move |_key: ObjectKey| {
        count.fetch_add(1, Ordering::SeqCst);
        futures::future::ready(Ok(Action::Done))
    })
}

#[tokio::test]
async fn manager_runs_two_controllers_on_one_factory_and_serves_health() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client();
    create_config_map(&client, "one", "x").await;

    let mut manager = Manager::new(
        client.clone(),
        ManagerConfig {
            bind: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            leader_election: Some(LeaderElectionSettings {
                identity: "manager-0".into(),
                lock: Arc::new(LeaseLock::new(client.clone(), "default", "manager")),
                config: LeaderElectionConfig {
                    lease_duration: Duration::from_secs(2),
                    renew_deadline: Duration::from_secs(1),
                    retry_period: Duration::from_millis(200),
                    release_on_cancel: true,
                },
            }),
            handle_signals: false,
        },
    );
    let addr = manager.bind().await?.expect("bound");
    let configmaps = Arc::new(AtomicUsize::new(0));
    let secrets = Arc::new(AtomicUsize::new(0));
    let options = InformerOptions::all().namespace("default");
    let first = ControllerBuilder::<ConfigMap>::new("configmaps", manager.factory())
        .for_kind(options.clone())
        .metrics(manager.controller_metrics(), Some(manager.queue_metrics()))
        .build(counting(&configmaps));
    // The second also watches ConfigMaps: through the same informer.
    let second = ControllerBuilder::<Secret>::new("secrets", manager.factory())
        .for_kind(options.clone())
        .watches::<ConfigMap, _>(&options, |cm| vec![ObjectKey::of(cm)])
        .metrics(manager.controller_metrics(), Some(manager.queue_metrics()))
        .build(counting(&secrets));
    manager.add_controller(first);
    manager.add_controller(second);
    let shutdown = manager.shutdown_token();
    let running = tokio::spawn(manager.run());

    assert!(
        eventually(Duration::from_secs(10), || {
            let (c, s) = (configmaps.clone(), secrets.clone());
            async move { c.load(Ordering::SeqCst) >= 1 && s.load(Ordering::SeqCst) >= 1 }
        })
        .await,
        "both controllers reconciled the ConfigMap"
    );
    let (status, _) = get(addr, "/healthz").await?;
    assert_eq!(status, 200);
    let ready = eventually(Duration::from_secs(5), || async move {
        matches!(get(addr, "/readyz").await, Ok((200, _)))
    })
    .await;
    assert!(ready, "ready once informers synced");
    let (status, metrics) = get(addr, "/metrics").await?;
    assert_eq!(status, 200);
    for name in [
        "controller_runtime_reconcile_total{controller=\"configmaps\",result=\"success\"}",
        "controller_runtime_reconcile_total{controller=\"secrets\",result=\"success\"}",
        "workqueue_adds_total{name=\"configmaps\"}",
        "rk_informer_lists_total{resource=\"v1/configmaps\"} 1",
        "rk_informer_objects{resource=\"v1/configmaps\"} 1",
    ] {
        assert!(metrics.contains(name), "{name} missing from\n{metrics}");
    }
    let (status, _) = get(addr, "/nope").await?;
    assert_eq!(status, 404);

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), running).await???;
    // The lease was released on the way out.
    let lease =
        kube::Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(client, "default")
            .get("manager")
            .await?;
    let holder = lease
        .spec
        .and_then(|s| s.holder_identity)
        .unwrap_or_default();
    assert_eq!(holder, "");
    Ok(())
}

fn standby_config(client: &kube::Client, identity: &str) -> ManagerConfig {
    ManagerConfig {
        bind: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        leader_election: Some(LeaderElectionSettings {
            identity: identity.into(),
            lock: Arc::new(LeaseLock::new(client.clone(), "default", "pair")),
            config: LeaderElectionConfig {
                lease_duration: Duration::from_secs(2),
                renew_deadline: Duration::from_secs(1),
                retry_period: Duration::from_millis(200),
                release_on_cancel: true,
            },
        }),
        handle_signals: false,
    }
}

#[tokio::test]
async fn standby_manager_keeps_warm_caches_and_takes_over_on_shutdown() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client();
    create_config_map(&client, "one", "x").await;
    let options = InformerOptions::all().namespace("default");

    let mut started = Vec::new();
    for identity in ["first", "second"] {
        let mut manager = Manager::new(client.clone(), standby_config(&client, identity));
        let addr = manager.bind().await?.expect("bound");
        let count = Arc::new(AtomicUsize::new(0));
        let controller = ControllerBuilder::<ConfigMap>::new("pair", manager.factory())
            .for_kind(options.clone())
            .build(counting(&count));
        manager.add_controller(controller);
        let shutdown = manager.shutdown_token();
        let task = tokio::spawn(manager.run());
        started.push((addr, count, shutdown, task));
        // Let the first win before the second starts.
        if identity == "first" {
            let c = started[0].1.clone();
            assert!(
                eventually(Duration::from_secs(10), || {
                    let c = c.clone();
                    async move { c.load(Ordering::SeqCst) >= 1 }
                })
                .await
            );
        }
    }
    let (first_addr, first_count, first_stop, first_task) = started.remove(0);
    let (second_addr, second_count, second_stop, second_task) = started.remove(0);

    // The standby is ready (caches synced) but does not reconcile.
    let standby_ready = eventually(Duration::from_secs(5), || async move {
        matches!(get(second_addr, "/readyz").await, Ok((200, _)))
    })
    .await;
    assert!(standby_ready, "standby caches synced");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        second_count.load(Ordering::SeqCst),
        0,
        "standby does not reconcile"
    );
    assert!(first_count.load(Ordering::SeqCst) >= 1);
    assert_eq!(get(first_addr, "/healthz").await?.0, 200);

    // SIGTERM-like shutdown of the leader: the standby takes over promptly.
    let stopped = std::time::Instant::now();
    first_stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), first_task).await???;
    let took_over = eventually(Duration::from_secs(5), || {
        let c = second_count.clone();
        async move { c.load(Ordering::SeqCst) >= 1 }
    })
    .await;
    assert!(took_over, "standby reconciles after the leader stops");
    assert!(
        stopped.elapsed() < Duration::from_secs(3),
        "handover took {:?}",
        stopped.elapsed()
    );
    second_stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), second_task).await???;
    Ok(())
}
