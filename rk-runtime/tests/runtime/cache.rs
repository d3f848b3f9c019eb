//! Indexes agree with the cached objects, even while updates race.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::common::{config_map, create_config_map, eventually};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use rk_apiserver::TestServer;
use rk_core::labels::Selector;
use rk_runtime::cache::{Store, index};
use rk_runtime::informer::{Informer, InformerConfig};

const BUCKETS: [&str; 4] = ["a", "b", "c", "d"];

/// Every object filed under a bucket has that label. Each index lookup is
/// one atomic view, so this holds even while writers race.
fn check_filed_correctly(store: &Store<ConfigMap>) -> Result<(), String> {
    for bucket in BUCKETS {
        for o in store
            .by_index("bucket", bucket)
            .map_err(|e| e.to_string())?
        {
            let label = o.metadata.labels.as_ref().and_then(|l| l.get("bucket"));
            if label.map(String::as_str) != Some(bucket) {
                return Err(format!(
                    "{:?} filed under {bucket} has label {label:?}",
                    o.metadata.name
                ));
            }
        }
    }
    Ok(())
}

/// Once writes have stopped: as above, and every object is filed exactly once.
fn check_consistent(store: &Store<ConfigMap>) -> Result<(), String> {
    let mut filed = 0;
    for bucket in BUCKETS {
        let objects = store
            .by_index("bucket", bucket)
            .map_err(|e| e.to_string())?;
        for o in &objects {
            let label = o.metadata.labels.as_ref().and_then(|l| l.get("bucket"));
            if label.map(String::as_str) != Some(bucket) {
                return Err(format!(
                    "{:?} filed under {bucket} has label {label:?}",
                    o.metadata.name
                ));
            }
        }
        filed += objects.len();
    }
    let total = store.len();
    if filed != total {
        return Err(format!("{filed} filed for {total} objects"));
    }
    Ok(())
}

#[test]
fn store_indexes_stay_consistent_under_concurrent_writers() {
    let store = Store::<ConfigMap>::new();
    store.add_index("bucket", index::by_label("bucket"));
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let store = store.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut checks = 0;
            while !stop.load(Ordering::Relaxed) {
                check_filed_correctly(&store)?;
                checks += 1;
            }
            Ok::<_, String>(checks)
        })
    };
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..5_000usize {
                    let name = format!("cm-{}", (i * 7 + w) % 64);
                    if i % 11 == 0 {
                        store.delete(&config_map(&name, "a"));
                    } else {
                        store.apply(config_map(&name, BUCKETS[(i + w) % 4]));
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.join().expect("writer");
    }
    stop.store(true, Ordering::Relaxed);
    let checks = reader.join().expect("reader");
    assert!(checks.is_ok(), "{checks:?}");
    assert!(check_consistent(&store).is_ok());
}

#[tokio::test]
async fn informer_indexes_match_the_server_after_concurrent_updates() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client();
    for i in 0..20 {
        create_config_map(&client, &format!("cm-{i}"), "a").await;
    }
    let store = Store::<ConfigMap>::new();
    store.add_index("bucket", index::by_label("bucket"));
    let informer = Informer::with_store(
        Api::<ConfigMap>::namespaced(client.clone(), "default"),
        InformerConfig::default(),
        store.clone(),
    );
    informer.start();
    assert!(informer.wait_for_sync().await);

    // Four writers relabel the same objects at once while a reader checks.
    let stop = Arc::new(AtomicBool::new(false));
    let reader = tokio::spawn({
        let store = store.clone();
        let stop = stop.clone();
        async move {
            while !stop.load(Ordering::Relaxed) {
                check_filed_correctly(&store)?;
                tokio::task::yield_now().await;
            }
            Ok::<_, String>(())
        }
    });
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..4usize {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
        writers.spawn(async move {
            for i in 0..30usize {
                let name = format!("cm-{}", (i * 3 + w) % 20);
                let bucket = BUCKETS[(i + w) % 4];
                let patch = serde_json::json!({"metadata": {"labels": {"bucket": bucket}}});
                api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
            }
            Ok::<_, kube::Error>(())
        });
    }
    while let Some(r) = writers.join_next().await {
        r??;
    }

    // Once the informer has caught up, each index bucket is what the server says.
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let expected: HashMap<String, String> = api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .map(|cm| {
            let bucket = cm
                .metadata
                .labels
                .unwrap_or_default()
                .remove("bucket")
                .unwrap_or_default();
            (cm.metadata.name.unwrap_or_default(), bucket)
        })
        .collect();
    let caught_up = eventually(Duration::from_secs(10), || {
        let store = store.clone();
        let expected = expected.clone();
        async move {
            BUCKETS.iter().all(|b| {
                let mut got: Vec<String> = store
                    .by_index("bucket", b)
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|o| o.metadata.name.clone())
                    .collect();
                got.sort();
                let mut want: Vec<String> = expected
                    .iter()
                    .filter(|(_, v)| v.as_str() == *b)
                    .map(|(k, _)| k.clone())
                    .collect();
                want.sort();
                got == want
            })
        }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    reader.await?.map_err(anyhow::Error::msg)?;
    assert!(caught_up, "indexes match the server");
    check_consistent(&store).map_err(anyhow::Error::msg)?;

    // Listers: by label selector and namespace.
    let selector: Selector = "bucket in (a,b)".parse()?;
    let selected = store.list_selected(&selector, Some("default"));
    let want = expected.values().filter(|b| *b == "a" || *b == "b").count();
    assert_eq!(selected.len(), want);
    assert_eq!(store.list_namespace("default").len(), 20);
    informer.stop();
    Ok(())
}

#[test]
fn default_transform_drops_managed_fields() {
    let store = Store::<ConfigMap>::new();
    let mut cm = config_map("x", "a");
    cm.metadata.managed_fields = Some(vec![Default::default()]);
    let stored = store.apply(cm).new;
    assert!(stored.metadata.managed_fields.is_none());
}
