//! The watcher and informer recover from network failures and from 410 Gone.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::{Proxy, create_config_map, eventually};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Api;
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use rk_apiserver::TestServer;
use rk_runtime::backoff::Backoff;
use rk_runtime::cache::ObjectKey;
use rk_runtime::informer::{HandlerFn, Informer, InformerConfig, InformerEvent};
use rk_runtime::watcher::WatcherConfig;

fn fast_config() -> InformerConfig {
    InformerConfig {
        watcher: WatcherConfig {
            backoff: Backoff::new(Duration::from_millis(20), Duration::from_millis(200)),
            // No bookmarks: the forced 410 below must not be dodged by one.
            bookmarks: false,
            ..WatcherConfig::default()
        },
        resync: None,
    }
}

fn names(store: &rk_runtime::cache::Store<ConfigMap>) -> Vec<String> {
    let mut names: Vec<String> = store.keys().into_iter().map(|k| k.name).collect();
    names.sort();
    names
}

type Log = Arc<Mutex<Vec<String>>>;

fn recording_informer(client: kube::Client) -> (Arc<Informer<ConfigMap>>, Log) {
    let informer = Informer::new(
        Api::<ConfigMap>::namespaced(client, "default"),
        fast_config(),
    );
    let log: Log = Arc::default();
    let sink = log.clone();
    informer.add_handler(Arc::new(HandlerFn(move |e: InformerEvent<ConfigMap>| {
        let line = match e {
            InformerEvent::Added(o) => format!("add {}", ObjectKey::of(&*o).name),
            InformerEvent::Updated { new, .. } => format!("update {}", ObjectKey::of(&*new).name),
            InformerEvent::Deleted(o) => format!("delete {}", ObjectKey::of(&*o).name),
        };
        sink.lock().unwrap().push(line);
    })));
    (informer, log)
}

#[tokio::test]
async fn informer_resumes_after_dropped_connection_without_relisting() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let proxy = Proxy::start(&server.url()).await;
    let direct = server.client();
    create_config_map(&direct, "a", "x").await;

    let (informer, log) = recording_informer(proxy.client());
    informer.start();
    assert!(tokio::time::timeout(Duration::from_secs(10), informer.wait_for_sync()).await?);
    assert_eq!(names(&informer.store()), ["a"]);

    // The network fails; changes happen meanwhile.
    proxy.cut_and_close();
    create_config_map(&direct, "b", "x").await;
    Api::<ConfigMap>::namespaced(direct.clone(), "default")
        .delete("a", &DeleteParams::default())
        .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.open();

    let store = informer.store();
    assert!(
        eventually(Duration::from_secs(10), || {
            let store = store.clone();
            async move { names(&store) == ["b"] }
        })
        .await,
        "store caught up after reconnecting: {:?}",
        names(&store)
    );
    assert_eq!(
        informer.list_count(),
        1,
        "resumed from its resourceVersion, no relist"
    );
    let log = log.lock().unwrap().clone();
    assert!(
        log.contains(&"add b".to_owned()) && log.contains(&"delete a".to_owned()),
        "{log:?}"
    );
    informer.stop();
    Ok(())
}

#[tokio::test]
async fn informer_relists_after_410_gone_and_reports_what_changed() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let proxy = Proxy::start(&server.url()).await;
    let direct = server.client();
    create_config_map(&direct, "a", "x").await;
    create_config_map(&direct, "keep", "x").await;

    let (informer, log) = recording_informer(proxy.client());
    informer.start();
    assert!(tokio::time::timeout(Duration::from_secs(10), informer.wait_for_sync()).await?);
    assert_eq!(names(&informer.store()), ["a", "keep"]);

    proxy.cut_and_close();
    Api::<ConfigMap>::namespaced(direct.clone(), "default")
        .delete("a", &DeleteParams::default())
        .await?;
    create_config_map(&direct, "b", "x").await;
    // Move the revision on, then drop the ConfigMap watch cache: the cache
    // rebuilt on the next request starts after the informer's
    // resourceVersion, so resuming from it answers 410 Gone.
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some("bump".into()),
            namespace: Some("default".into()),
            ..ObjectMeta::default()
        },
        ..Secret::default()
    };
    Api::<Secret>::namespaced(direct.clone(), "default")
        .create(&PostParams::default(), &secret)
        .await?;
    let state = server.state();
    let info = state
        .resource("", "v1", "configmaps")
        .expect("configmaps are served");
    state.caches.remove(&info.storage_prefix()).await;
    proxy.open();

    let store = informer.store();
    assert!(
        eventually(Duration::from_secs(10), || {
            let store = store.clone();
            async move { names(&store) == ["b", "keep"] }
        })
        .await,
        "store replaced by the relist: {:?}",
        names(&store)
    );
    assert!(informer.list_count() >= 2, "410 Gone made it list again");
    let log = log.lock().unwrap().clone();
    assert!(
        log.contains(&"delete a".to_owned()),
        "relist reports the deletion it missed: {log:?}"
    );
    assert!(log.contains(&"add b".to_owned()), "{log:?}");
    informer.stop();
    Ok(())
}

#[tokio::test]
async fn label_selected_informer_sees_only_matching_objects() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client();
    create_config_map(&client, "in", "x").await;
    create_config_map(&client, "out", "y").await;
    let config = InformerConfig {
        watcher: fast_config().watcher.labels("bucket=x"),
        resync: None,
    };
    let informer = Informer::new(
        Api::<ConfigMap>::namespaced(client.clone(), "default"),
        config,
    );
    informer.start();
    assert!(informer.wait_for_sync().await);
    create_config_map(&client, "in2", "x").await;
    create_config_map(&client, "out2", "y").await;
    let store = informer.store();
    assert!(
        eventually(Duration::from_secs(5), || {
            let store = store.clone();
            async move { names(&store) == ["in", "in2"] }
        })
        .await,
        "{:?}",
        names(&store)
    );
    informer.stop();
    Ok(())
}

#[tokio::test]
async fn streaming_list_fills_the_cache_then_keeps_watching() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client();
    for name in ["s1", "s2", "s3"] {
        create_config_map(&client, name, "x").await;
    }
    let config = InformerConfig {
        watcher: WatcherConfig {
            initial_list: rk_runtime::watcher::InitialList::Streaming,
            ..fast_config().watcher
        },
        resync: None,
    };
    let informer = Informer::new(
        Api::<ConfigMap>::namespaced(client.clone(), "default"),
        config,
    );
    informer.start();
    assert!(tokio::time::timeout(Duration::from_secs(10), informer.wait_for_sync()).await?);
    assert_eq!(names(&informer.store()), ["s1", "s2", "s3"]);
    create_config_map(&client, "s4", "x").await;
    let store = informer.store();
    assert!(
        eventually(Duration::from_secs(5), || {
            let store = store.clone();
            async move { store.len() == 4 }
        })
        .await
    );
    assert_eq!(informer.list_count(), 1);
    informer.stop();

    // The server took the streaming list rather than making us page.
    let mut watcher = rk_runtime::watcher::Watcher::new(
        Api::<ConfigMap>::namespaced(client, "default"),
        WatcherConfig {
            initial_list: rk_runtime::watcher::InitialList::Streaming,
            ..fast_config().watcher
        },
    );
    let mut applied = 0;
    loop {
        match watcher.next().await {
            rk_runtime::watcher::Event::InitApply(_) => applied += 1,
            rk_runtime::watcher::Event::InitDone => break,
            _ => {}
        }
    }
    assert_eq!(applied, 4);
    assert!(!watcher.streaming_refused());
    assert!(watcher.resource_version().is_some());
    Ok(())
}

#[tokio::test]
async fn metadata_informer_caches_only_metadata() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let mut cm = crate::common::config_map("meta", "x");
    cm.data = Some([("big".to_owned(), "x".repeat(10_000))].into());
    api.create(&PostParams::default(), &cm).await?;

    let factory = rk_runtime::factory::InformerFactory::new(client);
    let informer = factory.metadata_informer::<ConfigMap>(
        &rk_runtime::factory::InformerOptions::all().namespace("default"),
    );
    factory.start();
    assert!(factory.wait_for_cache_sync().await);
    let cached = informer
        .store()
        .get(&ObjectKey::namespaced("default", "meta"))
        .expect("cached");
    assert_eq!(
        cached
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("bucket"))
            .map(String::as_str),
        Some("x")
    );
    factory.shutdown();
    Ok(())
}

#[tokio::test]
async fn late_handlers_get_the_cache_as_adds_and_resync_reannounces() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client();
    create_config_map(&client, "r1", "x").await;
    let config = InformerConfig {
        resync: Some(Duration::from_millis(200)),
        ..fast_config()
    };
    let informer = Informer::new(Api::<ConfigMap>::namespaced(client, "default"), config);
    informer.start();
    assert!(informer.wait_for_sync().await);

    let log: Log = Arc::default();
    let sink = log.clone();
    informer.add_handler(Arc::new(HandlerFn(move |e: InformerEvent<ConfigMap>| {
        let line = match e {
            InformerEvent::Added(o) => format!("add {}", ObjectKey::of(&*o).name),
            InformerEvent::Updated { old, new } => {
                assert!(
                    Arc::ptr_eq(&old, &new),
                    "a resync passes the same object twice"
                );
                format!("resync {}", ObjectKey::of(&*new).name)
            }
            InformerEvent::Deleted(o) => format!("delete {}", ObjectKey::of(&*o).name),
        };
        sink.lock().unwrap().push(line);
    })));
    assert_eq!(
        log.lock().unwrap().first().map(String::as_str),
        Some("add r1")
    );
    let resynced = eventually(Duration::from_secs(3), || {
        let log = log.clone();
        async move {
            log.lock()
                .unwrap()
                .iter()
                .filter(|l| *l == "resync r1")
                .count()
                >= 2
        }
    })
    .await;
    assert!(resynced, "{:?}", log.lock().unwrap());
    informer.stop();
    Ok(())
}

#[tokio::test]
async fn subscribers_get_adds_updates_with_old_and_new_and_deletes() -> anyhow::Result<()> {
    use futures::StreamExt;
    let server = TestServer::start().await?;
    let client = server.client();
    let informer = Informer::new(
        Api::<ConfigMap>::namespaced(client.clone(), "default"),
        fast_config(),
    );
    let mut first = Box::pin(informer.subscribe());
    let mut second = Box::pin(informer.subscribe());
    informer.start();
    assert!(informer.wait_for_sync().await);

    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    create_config_map(&api.clone().into_client(), "s", "x").await;
    let relabel = serde_json::json!({"metadata": {"labels": {"bucket": "y"}}});
    api.patch(
        "s",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&relabel),
    )
    .await?;
    api.delete("s", &DeleteParams::default()).await?;

    for stream in [&mut first, &mut second] {
        let mut events = Vec::new();
        while events.len() < 3 {
            let e = tokio::time::timeout(Duration::from_secs(5), stream.next())
                .await?
                .expect("stream open");
            events.push(e);
        }
        assert!(
            matches!(&events[0], InformerEvent::Added(o) if o.metadata.name.as_deref() == Some("s"))
        );
        match &events[1] {
            InformerEvent::Updated { old, new } => {
                assert_eq!(old.metadata.labels.as_ref().unwrap()["bucket"], "x");
                assert_eq!(new.metadata.labels.as_ref().unwrap()["bucket"], "y");
            }
            other => panic!("expected an update, got {other:?}"),
        }
        assert!(matches!(&events[2], InformerEvent::Deleted(_)));
    }
    informer.stop();
    Ok(())
}
