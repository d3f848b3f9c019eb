//! The garbage collector: a graph of owner references across every kind the
//! server serves (custom resources included, discovered at run time), kept
//! current by metadata-only watches, and the three upstream behaviours:
//!
//! - **background** (and dangling references): an object whose owners are
//!   all gone is deleted; a gone owner among live ones is removed from the
//!   object's `ownerReferences`;
//! - **foreground**: an owner being deleted with the `foregroundDeletion`
//!   finalizer has its dependents deleted (in the foreground too), and loses
//!   the finalizer once none remain;
//! - **orphan**: an owner being deleted with the `orphan` finalizer has its
//!   reference removed from every dependent, then loses the finalizer.
//!
//! Owners are looked up by uid; a namespaced owner in a different namespace
//! than its dependent counts as absent, as upstream.

pub mod graph;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, PartialObjectMeta};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use tokio::sync::{Mutex, Notify};

use crate::discovery::{self, Served};
pub use graph::{Graph, Node};

/// How often discovery is refreshed to pick up new kinds (CRDs).
pub const REDISCOVER: Duration = Duration::from_secs(5);
/// How often every object is looked at, not just those that changed.
pub const FULL_PASS: Duration = Duration::from_secs(30);

fn node_from(
    s: &Served,
    resource: &Arc<ApiResource>,
    m: &PartialObjectMeta<DynamicObject>,
) -> Option<Node> {
    let meta = &m.metadata;
    Some(Node {
        resource: resource.clone(),
        namespaced: s.namespaced,
        namespace: meta.namespace.clone(),
        name: meta.name.clone()?,
        uid: meta.uid.clone()?,
        owners: meta.owner_references.clone().unwrap_or_default(),
        deleting: meta.deletion_timestamp.is_some(),
        finalizers: meta.finalizers.clone().unwrap_or_default(),
    })
}

fn api_for(client: &kube::Client, node: &Node) -> Api<DynamicObject> {
    match (&node.namespace, node.namespaced) {
        (Some(ns), true) => Api::namespaced_with(client.clone(), ns, &*node.resource),
        _ => Api::all_with(client.clone(), &*node.resource),
    }
}

async fn watch_resource(
    client: kube::Client,
    s: Served,
    graph: Arc<Mutex<Graph>>,
    dirty: Arc<Notify>,
) {
    let api: Api<PartialObjectMeta<DynamicObject>> = Api::all_with(client, &s.resource);
    // Back off on errors: a watch that fails at once (a kind going away, a
    // server restarting) must not spin and starve the runtime.
    let mut stream = crate::watch::lean_watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    // One copy of the resource's names, shared by every node of it.
    let resource = Arc::new(s.resource.clone());
    let mut fresh: Vec<Node> = Vec::new();
    while let Some(ev) = stream.next().await {
        let Ok(ev) = ev else { continue };
        let mut g = graph.lock().await;
        match ev {
            watcher::Event::Init => fresh.clear(),
            watcher::Event::InitApply(m) => fresh.extend(node_from(&s, &resource, &m)),
            watcher::Event::InitDone => {
                g.remove_resource(&s.resource);
                for n in fresh.drain(..) {
                    g.upsert(n);
                }
                g.mark_synced(&s.resource);
            }
            watcher::Event::Apply(m) => {
                if let Some(n) = node_from(&s, &resource, &m) {
                    g.upsert(n);
                }
            }
            watcher::Event::Delete(m) => {
                if let Some(uid) = &m.metadata.uid {
                    g.remove(uid);
                }
            }
        }
        drop(g);
        dirty.notify_one();
    }
}

/// Remove `finalizer` from an object, guarded by a JSON-patch test of the
/// current list so concurrent writers are not overwritten.
async fn remove_finalizer(
    client: &kube::Client,
    node: &Node,
    finalizer: &str,
) -> Result<(), kube::Error> {
    let api = api_for(client, node);
    let current = api.get(&node.name).await?;
    let list = current.metadata.finalizers.clone().unwrap_or_default();
    let kept: Vec<String> = list
        .iter()
        .filter(|f| f.as_str() != finalizer)
        .cloned()
        .collect();
    if kept.len() == list.len() {
        return Ok(());
    }
    // The resourceVersion makes the patch a compare-and-swap.
    let patch = json!({"metadata": {"finalizers": kept, "resourceVersion": current.metadata.resource_version}});
    api.patch(&node.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

/// Remove the owner reference with `owner_uid` from `node`.
async fn remove_owner_ref(
    client: &kube::Client,
    node: &Node,
    owner_uid: &str,
) -> Result<(), kube::Error> {
    let api = api_for(client, node);
    let current = api.get(&node.name).await?;
    let refs = current
        .metadata
        .owner_references
        .clone()
        .unwrap_or_default();
    let kept: Vec<_> = refs
        .iter()
        .filter(|r| r.uid != owner_uid)
        .cloned()
        .collect();
    if kept.len() == refs.len() {
        return Ok(());
    }
    let patch = json!({"metadata": {"ownerReferences": kept, "resourceVersion": current.metadata.resource_version}});
    api.patch(&node.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

/// Ask the API server whether an owner really is gone (the graph may not
/// have listed its kind yet): gone means 404, or a different uid at that name.
async fn owner_absent(
    client: &kube::Client,
    served: &[Served],
    dependent: &Node,
    owner_uid: &str,
) -> bool {
    let Some(r) = dependent.owners.iter().find(|o| o.uid == owner_uid) else {
        return false;
    };
    let Some(s) = discovery::find(served, &r.api_version, &r.kind) else {
        // An owner of a kind the server doesn't serve can't exist.
        return true;
    };
    let api: Api<DynamicObject> = match (&dependent.namespace, s.namespaced) {
        (Some(ns), true) => Api::namespaced_with(client.clone(), ns, &s.resource),
        (None, true) => return true,
        _ => Api::all_with(client.clone(), &s.resource),
    };
    match api.get_metadata_opt(&r.name).await {
        Ok(None) => true,
        Ok(Some(m)) => m.metadata.uid.as_deref() != Some(owner_uid),
        Err(_) => false,
    }
}

async fn delete(client: &kube::Client, node: &Node, params: &DeleteParams) {
    match api_for(client, node).delete(&node.name, params).await {
        Ok(_) => {
            tracing::info!(kind = %node.resource.kind, name = %node.name, namespace = ?node.namespace, "garbage collected")
        }
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
        Err(e) => tracing::warn!(name = %node.name, error = %e, "garbage collection delete failed"),
    }
}

/// Decide and act on the current graph once. Returns true if anything was
/// done (so another pass should follow soon).
///
/// With `full`, every object is looked at; otherwise only those the graph
/// flagged since the last pass (an object that changed, its owners, and the
/// dependents of one that went or is being deleted).
pub async fn process(
    client: &kube::Client,
    served: &[Served],
    graph: &Mutex<Graph>,
    full: bool,
) -> bool {
    // (object, its dependents, (owner uid, owner present in the graph))
    type Item = (Node, Vec<Node>, Vec<(String, bool)>);
    let snapshot: Vec<Item> = {
        let mut g = graph.lock().await;
        let attention = g.take_attention();
        let chosen: Vec<&Node> = if full {
            g.nodes().collect()
        } else {
            attention.iter().filter_map(|u| g.get(u)).collect()
        };
        chosen
            .into_iter()
            .map(|n| {
                let deps = g.dependents_of(&n.uid).into_iter().cloned().collect();
                let owners = n
                    .owners
                    .iter()
                    .map(|o| (o.uid.clone(), g.owner_present(n, o)))
                    .collect();
                (n.clone(), deps, owners)
            })
            .collect()
    };
    let mut acted = false;
    for (node, dependents, owners) in snapshot {
        if node.deleting && node.has_finalizer("orphan") {
            for d in &dependents {
                if let Err(e) = remove_owner_ref(client, d, &node.uid).await {
                    tracing::warn!(error = %e, "orphaning a dependent failed");
                }
            }
            if let Err(e) = remove_finalizer(client, &node, "orphan").await {
                tracing::debug!(error = %e, "removing the orphan finalizer failed");
                graph.lock().await.attend(&node.uid);
            }
            acted = true;
            continue;
        }
        if node.deleting && node.has_finalizer("foregroundDeletion") {
            if dependents.is_empty() {
                if let Err(e) = remove_finalizer(client, &node, "foregroundDeletion").await {
                    tracing::debug!(error = %e, "removing the foregroundDeletion finalizer failed");
                }
            } else {
                for d in dependents.iter().filter(|d| !d.deleting) {
                    delete(client, d, &DeleteParams::foreground()).await;
                }
            }
            acted = true;
            continue;
        }
        if owners.is_empty() || owners.iter().all(|(_, p)| *p) {
            continue;
        }
        // Confirm with the API server before acting on an absence.
        let mut owners = owners;
        for (uid, present) in owners.iter_mut().filter(|(_, p)| !*p) {
            *present = !owner_absent(client, served, &node, uid).await;
        }
        let present = owners.iter().filter(|(_, p)| *p).count();
        if present == 0 && !node.deleting {
            // Every owner is gone: collect, propagating as the owner asked
            // (foreground if some owner is being deleted in the foreground).
            delete(client, &node, &DeleteParams::background()).await;
            acted = true;
        } else if present < owners.len() {
            for (uid, _) in owners.iter().filter(|(_, p)| !*p) {
                if let Err(e) = remove_owner_ref(client, &node, uid).await {
                    tracing::debug!(error = %e, "removing a dangling owner reference failed");
                }
            }
            acted = true;
        }
    }
    acted
}

/// Run the garbage collector: discover every kind, watch their metadata,
/// and act whenever the graph changes.
pub async fn run(client: kube::Client) {
    let graph = Arc::new(Mutex::new(Graph::default()));
    let dirty = Arc::new(Notify::new());
    let mut watching: std::collections::HashSet<(String, String)> = Default::default();
    let mut tasks = Vec::new();
    let mut last_discovery = tokio::time::Instant::now() - REDISCOVER;
    let mut served: Vec<Served> = Vec::new();
    // A full pass now and then catches what a failed call left behind.
    let mut last_full = tokio::time::Instant::now() - FULL_PASS;
    loop {
        if last_discovery.elapsed() >= REDISCOVER {
            last_discovery = tokio::time::Instant::now();
            match discovery::served(&client).await {
                Ok(found) => {
                    for s in found.iter().filter(|s| s.watchable && s.deletable) {
                        let key = (s.resource.group.clone(), s.resource.plural.clone());
                        if watching.insert(key) {
                            tasks.push(tokio::spawn(watch_resource(
                                client.clone(),
                                s.clone(),
                                graph.clone(),
                                dirty.clone(),
                            )));
                        }
                    }
                    served = found;
                }
                Err(e) => tracing::warn!(error = %e, "garbage collector: discovery failed"),
            }
        }
        let synced = graph.lock().await.is_synced(watching.iter());
        if !served.is_empty() && synced {
            let full = last_full.elapsed() >= FULL_PASS;
            if full {
                last_full = tokio::time::Instant::now();
            }
            let acted = process(&client, &served, &graph, full).await;
            if acted {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), dirty.notified()).await;
    }
}
