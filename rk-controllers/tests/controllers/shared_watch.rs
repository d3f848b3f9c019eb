//! `watch::SharedWatch`: one watch and cache, many subscribers, each seeing
//! what a private watch would show (a relist of the cache, then live events
//! applied to the cache before they arrive), late subscribers included.

use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher::{self, Event};
use rk_controllers::watch::SharedWatch;
use serde_json::json;

type Error = Box<dyn std::error::Error + Send + Sync>;

fn config_map(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"k": "v"}}))
        .expect("a valid ConfigMap")
}

/// The next event, skipping nothing; fails after 10 s.
async fn next<S>(events: &mut S) -> Result<Event<Arc<ConfigMap>>, Error>
where
    S: Stream<Item = Result<Event<Arc<ConfigMap>>, watcher::Error>> + Unpin,
{
    match tokio::time::timeout(Duration::from_secs(10), events.next()).await {
        Ok(Some(Ok(ev))) => Ok(ev),
        Ok(Some(Err(e))) => Err(e.into()),
        Ok(None) => Err("the subscription ended".into()),
        Err(_) => Err("no event within 10 s".into()),
    }
}

/// The names a relist carries, reading up to its `InitDone`.
async fn relist<S>(events: &mut S) -> Result<Vec<String>, Error>
where
    S: Stream<Item = Result<Event<Arc<ConfigMap>>, watcher::Error>> + Unpin,
{
    let mut names = Vec::new();
    loop {
        match next(events).await? {
            Event::Init => names.clear(),
            Event::InitApply(cm) => names.push(cm.metadata.name.clone().unwrap_or_default()),
            Event::InitDone => {
                names.sort();
                return Ok(names);
            }
            other => return Err(format!("unexpected event before InitDone: {other:?}").into()),
        }
    }
}

fn name_of(ev: &Event<Arc<ConfigMap>>) -> Option<&str> {
    match ev {
        Event::Apply(cm) | Event::Delete(cm) => cm.metadata.name.as_deref(),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_share_one_cache_and_see_every_event() -> Result<(), Error> {
    let server = crate::support::test_server().await?;
    let api: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    api.create(&PostParams::default(), &config_map("before"))
        .await?;

    let shared = SharedWatch::new(api.clone(), watcher::Config::default());
    let store = shared.store();
    let mut first = Box::pin(shared.subscribe());
    let mut second = Box::pin(shared.subscribe());
    assert_eq!(relist(&mut first).await?, ["before"]);
    assert_eq!(relist(&mut second).await?, ["before"]);
    assert!(store.wait_until_ready().await.is_ok());

    // A live change reaches both, after the shared cache has it.
    api.create(&PostParams::default(), &config_map("live"))
        .await?;
    for events in [&mut first, &mut second] {
        let ev = next(events).await?;
        assert!(matches!(ev, Event::Apply(_)), "{ev:?}");
        assert_eq!(name_of(&ev), Some("live"));
        assert!(
            store
                .get(&ObjectRef::new("live").within("default"))
                .is_some(),
            "the cache has the object before its event arrives"
        );
    }

    // A late subscriber starts from a relist of the cache.
    let mut late = Box::pin(shared.subscribe());
    assert_eq!(relist(&mut late).await?, ["before", "live"]);

    // Deletions, and a subscriber that went away does not stop the others.
    drop(second);
    api.delete("before", &DeleteParams::default()).await?;
    for events in [&mut first, &mut late] {
        let ev = next(events).await?;
        assert!(matches!(ev, Event::Delete(_)), "{ev:?}");
        assert_eq!(name_of(&ev), Some("before"));
    }
    assert!(
        store
            .get(&ObjectRef::new("before").within("default"))
            .is_none()
    );
    assert_eq!(store.state().len(), 1);
    Ok(())
}
