//! The resource quota controller: keeps every ResourceQuota's
//! `status.hard` and `status.used` current, so `kubectl describe quota`
//! shows real usage. (Enforcement happens at admission in the API server.)

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, ResourceQuota};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::runtime::reflector::{self, Store, reflector};
use kube::runtime::{WatchStreamExt, watcher};
use rk_core::quantity::{Format, ParsedQuantity};
use rk_core::quota::{self, Usage};
use serde_json::json;

use crate::discovery::{self, Served};
use crate::watch::Informers;

/// Full resync period.
pub const RESYNC: Duration = Duration::from_secs(30);

/// Errors of one sync.
#[derive(Debug, thiserror::Error)]
pub enum QuotaSyncError {
    /// An API call failed.
    #[error("{0}")]
    Kube(#[from] kube::Error),
    /// A quota's quantities don't parse.
    #[error("{0}")]
    Quota(#[from] quota::QuotaError),
    /// Discovery failed.
    #[error("{0}")]
    Discovery(#[from] discovery::DiscoveryError),
}

async fn usage(
    client: &kube::Client,
    served: &[Served],
    ns: &str,
    hard: &Usage,
    pods: &Store<Pod>,
) -> Result<Usage, QuotaSyncError> {
    let mut used = Usage::new();
    let in_namespace = pods
        .state()
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(ns));
    for pod in in_namespace {
        if quota::pod_is_terminal(&pod) || pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        if let Ok(u) = quota::pod_usage(&pod) {
            for (k, q) in u {
                let e = used.entry(k).or_insert_with(ParsedQuantity::zero);
                *e += q;
            }
        }
    }
    for s in served.iter().filter(|s| s.namespaced && s.watchable) {
        if s.resource.group.is_empty() && s.resource.plural == "pods" {
            continue;
        }
        let names = quota::object_count_names(&s.resource.group, &s.resource.plural);
        if !names.iter().any(|n| hard.contains_key(n)) {
            continue;
        }
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &s.resource);
        let count = api.list_metadata(&ListParams::default()).await?.items.len() as i64;
        for n in names {
            used.insert(n, ParsedQuantity::new(count, Format::DecimalSI));
        }
    }
    // Report only what the quota limits, zero when unused.
    Ok(hard
        .keys()
        .map(|k| {
            (
                k.clone(),
                used.get(k).copied().unwrap_or_else(ParsedQuantity::zero),
            )
        })
        .collect())
}

/// Recompute the status of every quota in `ns` (pods counted from `pods`,
/// a complete cache).
pub async fn sync_namespace(
    client: &kube::Client,
    served: &[Served],
    ns: &str,
    pods: &Store<Pod>,
) -> Result<(), QuotaSyncError> {
    let api: Api<ResourceQuota> = Api::namespaced(client.clone(), ns);
    for q in api.list(&ListParams::default()).await?.items {
        let name = q.metadata.name.clone().unwrap_or_default();
        let hard_raw = q
            .spec
            .as_ref()
            .and_then(|s| s.hard.clone())
            .unwrap_or_default();
        let hard = quota::parse_usage(&hard_raw)?;
        let used = usage(client, served, ns, &hard, pods).await?;
        let used: BTreeMap<String, Quantity> = used
            .into_iter()
            .map(|(k, v)| (k, Quantity::from(v)))
            .collect();
        let current = q.status.as_ref();
        if current.and_then(|s| s.used.as_ref()) == Some(&used)
            && current.and_then(|s| s.hard.as_ref()) == Some(&hard_raw)
        {
            continue;
        }
        let patch = json!({"status": {"hard": hard_raw, "used": used}});
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    Ok(())
}

/// Run the controller with its own cache of pods: resync a namespace
/// whenever its quotas or pods change, and everything every [`RESYNC`].
pub async fn run(client: kube::Client) {
    let informers = Informers::new(&client);
    run_shared(client, informers).await
}

/// Run the controller over a controller manager's shared pod cache.
pub async fn run_shared(client: kube::Client, informers: Informers) {
    let quotas: Api<ResourceQuota> = Api::all(client.clone());
    let pod_store = informers.pods.store();
    let (quota_store, writer) = reflector::store::<ResourceQuota>();
    let q_events = reflector(
        writer,
        crate::watch::lean_watcher(quotas, watcher::Config::default()),
    )
    .default_backoff()
    .filter_map(|e| async move {
        match e {
            Ok(watcher::Event::Apply(q) | watcher::Event::InitApply(q)) => q.metadata.namespace,
            _ => None,
        }
    });
    let p_events = informers.pods.subscribe().filter_map(|e| async move {
        match e {
            Ok(watcher::Event::Apply(p) | watcher::Event::Delete(p)) => {
                p.metadata.namespace.clone()
            }
            _ => None,
        }
    });
    let mut events = futures::stream::select(q_events.boxed(), p_events.boxed());
    let mut served: Vec<Served> = Vec::new();
    let mut last_discovery = tokio::time::Instant::now() - RESYNC;
    let mut resync = tokio::time::interval(RESYNC);
    let with_quotas = || -> BTreeSet<String> {
        quota_store
            .state()
            .iter()
            .filter_map(|q| q.metadata.namespace.clone())
            .collect()
    };
    loop {
        // Only namespaces with quotas (all of them on a resync).
        let Some(namespaces) =
            crate::watch::namespaces_due(&mut events, &mut resync, with_quotas).await
        else {
            return;
        };
        if namespaces.is_empty() {
            continue;
        }
        if (last_discovery.elapsed() >= Duration::from_secs(10) || served.is_empty())
            && let Ok(s) = discovery::served(&client).await
        {
            served = s;
            last_discovery = tokio::time::Instant::now();
        }
        if !informers.pods.ready().await {
            return;
        }
        for ns in namespaces {
            if let Err(e) = sync_namespace(&client, &served, &ns, &pod_store).await {
                tracing::debug!(namespace = %ns, error = %e, "quota status sync failed");
            }
        }
    }
}
