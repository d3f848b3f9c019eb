//! The service account controller: every active namespace has a `default`
//! ServiceAccount; it is recreated if deleted.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

/// The account every namespace gets.
pub const DEFAULT_ACCOUNT: &str = "default";

/// Make sure `namespace` has its default account.
pub async fn ensure(client: &kube::Client, namespace: &str) -> Result<bool, kube::Error> {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    if api.get_opt(DEFAULT_ACCOUNT).await?.is_some() {
        return Ok(false);
    }
    let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": DEFAULT_ACCOUNT}}))
        .map_err(kube::Error::SerdeError)?;
    match api.create(&PostParams::default(), &sa).await {
        Ok(_) => Ok(true),
        // Created meanwhile, or the namespace is going away.
        Err(kube::Error::Api(e)) if e.code == 409 || e.code == 403 || e.code == 404 => Ok(false),
        Err(e) => Err(e),
    }
}

fn active(ns: &Namespace) -> bool {
    ns.metadata.deletion_timestamp.is_none()
}

/// Run the controller: react to namespaces appearing and to default
/// accounts being deleted.
pub async fn run(client: kube::Client) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let accounts: Api<ServiceAccount> = Api::all(client.clone());
    let ns_events = crate::watch::lean_watcher(namespaces, watcher::Config::default())
        .default_backoff()
        .filter_map(|e| async move {
            match e {
                Ok(watcher::Event::Apply(n) | watcher::Event::InitApply(n)) if active(&n) => {
                    n.metadata.name
                }
                _ => None,
            }
        });
    let sa_events = crate::watch::lean_watcher(
        accounts,
        watcher::Config::default().fields("metadata.name=default"),
    )
    .default_backoff()
    .filter_map(|e| async move {
        match e {
            Ok(watcher::Event::Delete(sa)) => sa.metadata.namespace,
            _ => None,
        }
    });
    let mut events = futures::stream::select(ns_events.boxed(), sa_events.boxed());
    while let Some(ns) = events.next().await {
        let mut delay = Duration::from_millis(100);
        for _ in 0..5 {
            match ensure(&client, &ns).await {
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(namespace = %ns, error = %e, "creating the default service account failed");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
            }
        }
    }
}
