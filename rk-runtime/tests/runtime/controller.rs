//! Controllers reconcile their objects and the objects they own.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{create_config_map, eventually};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::{Api, Client};
use prometheus_client::registry::Registry;
use rk_apiserver::TestServer;
use rk_runtime::cache::{ObjectKey, Store};
use rk_runtime::controller::{Action, ControllerBuilder, ControllerMetrics, Reconciler};
use rk_runtime::factory::{InformerFactory, InformerOptions};
use rk_runtime::workqueue::ItemExponentialBackoff;
use tokio_util::sync::CancellationToken;

/// For each ConfigMap, keeps a Secret `<name>-child` that it controls.
struct ChildMaker {
    client: Client,
    parents: Store<ConfigMap>,
    reconciles: Arc<AtomicUsize>,
    in_flight: Arc<Mutex<HashMap<ObjectKey, bool>>>,
    overlaps: Arc<AtomicUsize>,
}

impl Reconciler for ChildMaker {
    type Error = kube::Error;

    async fn reconcile(&self, key: ObjectKey) -> Result<Action, kube::Error> {
        if self.in_flight.lock().unwrap().insert(key.clone(), true) == Some(true) {
            self.overlaps.fetch_add(1, Ordering::SeqCst);
        }
        self.reconciles.fetch_add(1, Ordering::SeqCst);
        let result = self.ensure_child(&key).await;
        self.in_flight.lock().unwrap().insert(key, false);
        result
    }
}

impl ChildMaker {
    async fn ensure_child(&self, key: &ObjectKey) -> Result<Action, kube::Error> {
        let Some(parent) = self.parents.get(key) else {
            return Ok(Action::Done);
        };
        let namespace = key.namespace.clone().unwrap_or_default();
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &namespace);
        let name = format!("{}-child", key.name);
        if secrets.get_opt(&name).await?.is_some() {
            return Ok(Action::Done);
        }
        let child = Secret {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some(namespace),
                owner_references: Some(vec![OwnerReference {
                    api_version: "v1".into(),
                    kind: "ConfigMap".into(),
                    name: key.name.clone(),
                    uid: parent.metadata.uid.clone().unwrap_or_default(),
                    controller: Some(true),
                    block_owner_deletion: Some(true),
                }]),
                ..ObjectMeta::default()
            },
            ..Secret::default()
        };
        match secrets.create(&PostParams::default(), &child).await {
            Ok(_) => Ok(Action::Done),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Action::Done),
            Err(e) => Err(e),
        }
    }
}

#[tokio::test]
async fn controller_recreates_a_deleted_owned_object() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client();
    create_config_map(&client, "p1", "x").await;
    create_config_map(&client, "p2", "x").await;

    let mut registry = Registry::default();
    let metrics = ControllerMetrics::new(&mut registry);
    let factory = InformerFactory::new(client.clone());
    let options = InformerOptions::all().namespace("default");
    let builder = ControllerBuilder::<ConfigMap>::new("child-maker", &factory)
        .for_kind(options.clone())
        .owns::<Secret>(&options)
        .workers(3)
        .metrics(&metrics, None);
    let reconciles = Arc::new(AtomicUsize::new(0));
    let overlaps = Arc::new(AtomicUsize::new(0));
    let reconciler = ChildMaker {
        client: client.clone(),
        parents: builder.store(),
        reconciles: reconciles.clone(),
        in_flight: Arc::default(),
        overlaps: overlaps.clone(),
    };
    let controller = builder.build(reconciler);
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(controller.run(shutdown.clone()));

    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let children_exist = || {
        let secrets = secrets.clone();
        async move {
            secrets.get_opt("p1-child").await.ok().flatten().is_some()
                && secrets.get_opt("p2-child").await.ok().flatten().is_some()
        }
    };
    assert!(
        eventually(Duration::from_secs(10), children_exist).await,
        "children created"
    );

    // Deleting an owned object wakes its owner's reconcile, which recreates it.
    let before = reconciles.load(Ordering::SeqCst);
    secrets.delete("p1-child", &DeleteParams::default()).await?;
    assert!(
        eventually(Duration::from_secs(10), children_exist).await,
        "child recreated after deletion"
    );
    assert!(reconciles.load(Ordering::SeqCst) > before);
    assert_eq!(
        overlaps.load(Ordering::SeqCst),
        0,
        "one reconcile per key at a time"
    );
    assert!(metrics.reconcile_count("child-maker", "success") >= 3);

    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)?;
    for name in [
        "controller_runtime_reconcile_total{controller=\"child-maker\",result=\"success\"}",
        "controller_runtime_reconcile_time_seconds_count{controller=\"child-maker\"}",
        "controller_runtime_active_workers{controller=\"child-maker\"}",
        "controller_runtime_max_concurrent_reconciles{controller=\"child-maker\"} 3",
    ] {
        assert!(text.contains(name), "{name} missing from\n{text}");
    }

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), running).await???;
    Ok(())
}

/// Fails the first `failures` reconciles of every key, recording when each ran.
struct Flaky {
    failures: usize,
    attempts: Arc<Mutex<Vec<Instant>>>,
}

impl Reconciler for Flaky {
    type Error = String;

    async fn reconcile(&self, _key: ObjectKey) -> Result<Action, String> {
        let mut attempts = self.attempts.lock().unwrap();
        attempts.push(Instant::now());
        if attempts.len() <= self.failures {
            Err(format!("attempt {} fails", attempts.len()))
        } else {
            Ok(Action::Done)
        }
    }
}

#[tokio::test]
async fn failed_reconciles_are_retried_with_growing_backoff() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client();
    create_config_map(&client, "flaky", "x").await;
    let factory = InformerFactory::new(client.clone());
    let attempts: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let controller = ControllerBuilder::<ConfigMap>::new("flaky", &factory)
        .for_kind(
            InformerOptions::all()
                .namespace("default")
                .fields("metadata.name=flaky"),
        )
        .rate_limiter(Box::new(ItemExponentialBackoff::new(
            Duration::from_millis(40),
            Duration::from_secs(5),
        )))
        .build(Flaky {
            failures: 4,
            attempts: attempts.clone(),
        });
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(controller.run(shutdown.clone()));
    let done = eventually(Duration::from_secs(10), || {
        let attempts = attempts.clone();
        async move { attempts.lock().unwrap().len() >= 5 }
    })
    .await;
    assert!(done, "retried until success");
    let attempts = attempts.lock().unwrap().clone();
    let gaps: Vec<Duration> = attempts.windows(2).map(|w| w[1] - w[0]).collect();
    for (i, gap) in gaps.iter().enumerate() {
        let nominal = Duration::from_millis(40 << i);
        assert!(
            *gap >= nominal,
            "retry {i} after {gap:?}, expected at least {nominal:?}"
        );
    }
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), running).await???;
    Ok(())
}

#[tokio::test]
async fn controllers_share_one_informer_per_kind() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let factory = InformerFactory::new(server.client());
    let options = InformerOptions::all().namespace("default");
    let a = factory.informer::<ConfigMap>(&options);
    let b = factory.informer::<ConfigMap>(&options);
    let other = factory.informer::<ConfigMap>(&InformerOptions::all());
    assert!(Arc::ptr_eq(&a, &b));
    assert!(!Arc::ptr_eq(&a, &other));
    factory.start();
    assert!(factory.wait_for_cache_sync().await);
    factory.shutdown();
    Ok(())
}

#[tokio::test]
async fn event_filter_drops_updates_it_rejects() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client();
    create_config_map(&client, "filtered", "x").await;
    let factory = InformerFactory::new(client.clone());
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    let controller = ControllerBuilder::<ConfigMap>::new("labels-only", &factory)
        .for_kind(InformerOptions::all().namespace("default"))
        .with_event_filter(rk_runtime::controller::EventFilter::LabelsChanged)
        .build(rk_runtime::controller::ReconcileFn(
            move |_key: ObjectKey| {
                counter.fetch_add(1, Ordering::SeqCst);
                futures::future::ready(Ok::<_, String>(Action::Done))
            },
        ));
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(controller.run(shutdown.clone()));
    assert!(
        eventually(Duration::from_secs(5), || {
            let seen = seen.clone();
            async move { seen.load(Ordering::SeqCst) == 1 }
        })
        .await,
        "the add is reconciled"
    );

    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let data_only = serde_json::json!({"data": {"k": "v"}});
    api.patch(
        "filtered",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&data_only),
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        seen.load(Ordering::SeqCst),
        1,
        "a data-only update is filtered out"
    );

    let relabel = serde_json::json!({"metadata": {"labels": {"bucket": "y"}}});
    api.patch(
        "filtered",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&relabel),
    )
    .await?;
    assert!(
        eventually(Duration::from_secs(5), || {
            let seen = seen.clone();
            async move { seen.load(Ordering::SeqCst) == 2 }
        })
        .await,
        "a label change passes the filter"
    );
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), running).await???;
    Ok(())
}
