//! The namespace controller: deleting a namespace deletes everything in it
//! (every namespaced kind the server serves, custom resources included),
//! reports progress in the namespace's conditions, then removes the
//! `kubernetes` finalizer so the API server can delete the namespace.
//!
//! The sync reads top to bottom as upstream's algorithm: discover the
//! namespaced kinds, delete each collection, count what remains, report,
//! and finalize when nothing is left.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

use crate::discovery::{self, Served};

/// The finalizer the namespace controller owns.
pub const FINALIZER: &str = "kubernetes";

/// How often a terminating namespace is re-checked while content remains.
pub const RECHECK: Duration = Duration::from_secs(1);

/// Errors of one sync.
#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    /// An API call failed.
    #[error("{0}")]
    Kube(#[from] kube::Error),
    /// Discovery failed.
    #[error("{0}")]
    Discovery(#[from] discovery::DiscoveryError),
}

/// What is left in a namespace being deleted.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Remaining {
    /// Objects left, by resource plural.
    pub by_resource: BTreeMap<String, usize>,
    /// Objects held by finalizers, by finalizer.
    pub by_finalizer: BTreeMap<String, usize>,
}

impl Remaining {
    fn is_empty(&self) -> bool {
        self.by_resource.is_empty()
    }
}

fn is_terminating(ns: &Namespace) -> bool {
    ns.metadata.deletion_timestamp.is_some()
        && ns
            .spec
            .as_ref()
            .and_then(|s| s.finalizers.as_ref())
            .is_some_and(|f| f.iter().any(|x| x == FINALIZER))
}

/// Delete every namespaced object in `ns` and count what is left.
async fn delete_content(
    client: &kube::Client,
    ns: &str,
    served: &[Served],
) -> Result<Remaining, NamespaceError> {
    let mut remaining = Remaining::default();
    for s in served
        .iter()
        .filter(|s| s.namespaced && s.watchable && s.deletable)
    {
        // Events go last upstream; they are harmless to delete together.
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &s.resource);
        if s.delete_collection {
            match api
                .delete_collection(&DeleteParams::background(), &ListParams::default())
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 405 => {}
                Err(e) => return Err(e.into()),
            }
        }
        let left = match api.list_metadata(&ListParams::default()).await {
            Ok(l) => l.items,
            Err(kube::Error::Api(e)) if e.code == 404 => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        for o in &left {
            if !s.delete_collection
                && o.metadata.deletion_timestamp.is_none()
                && let Some(name) = &o.metadata.name
            {
                let _ = api.delete(name, &DeleteParams::background()).await;
            }
            for f in o.metadata.finalizers.iter().flatten() {
                *remaining.by_finalizer.entry(f.clone()).or_default() += 1;
            }
        }
        if !left.is_empty() {
            remaining
                .by_resource
                .insert(s.resource.plural.clone(), left.len());
        }
    }
    Ok(remaining)
}

fn conditions(remaining: &Remaining, now: &str) -> serde_json::Value {
    let content = if remaining.by_resource.is_empty() {
        json!({"type": "NamespaceContentRemaining", "status": "False", "reason": "ContentRemoved", "message": "All content successfully removed", "lastTransitionTime": now})
    } else {
        let list: Vec<String> = remaining
            .by_resource
            .iter()
            .map(|(r, n)| format!("{r} has {n} resource instances"))
            .collect();
        json!({"type": "NamespaceContentRemaining", "status": "True", "reason": "SomeResourcesRemain",
               "message": format!("Some resources are remaining: {}", list.join(", ")), "lastTransitionTime": now})
    };
    let finalizers = if remaining.by_finalizer.is_empty() {
        json!({"type": "NamespaceFinalizersRemaining", "status": "False", "reason": "ContentHasNoFinalizers", "message": "All content-preserving finalizers finished", "lastTransitionTime": now})
    } else {
        let list: Vec<String> = remaining
            .by_finalizer
            .iter()
            .map(|(f, n)| format!("{f} in {n} resource instances"))
            .collect();
        json!({"type": "NamespaceFinalizersRemaining", "status": "True", "reason": "SomeFinalizersRemain",
               "message": format!("Some content in the namespace has finalizers remaining: {}", list.join(", ")), "lastTransitionTime": now})
    };
    json!([
        {"type": "NamespaceDeletionDiscoveryFailure", "status": "False", "reason": "ResourcesDiscovered", "message": "All resources successfully discovered", "lastTransitionTime": now},
        {"type": "NamespaceDeletionContentFailure", "status": "False", "reason": "ContentDeleted", "message": "All content successfully deleted, may be waiting on finalization", "lastTransitionTime": now},
        content,
        finalizers,
    ])
}

/// One sync of one namespace. Returns true when it was finalized.
pub async fn sync(client: &kube::Client, ns: &Namespace) -> Result<bool, NamespaceError> {
    if !is_terminating(ns) {
        return Ok(false);
    }
    let name = ns.metadata.name.clone().unwrap_or_default();
    let served = discovery::served(client).await?;
    let remaining = delete_content(client, &name, &served).await?;
    let api: Api<Namespace> = Api::all(client.clone());
    let now = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let status =
        json!({"status": {"phase": "Terminating", "conditions": conditions(&remaining, &now)}});
    if let Err(e) = api
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
        .await
    {
        tracing::debug!(namespace = %name, error = %e, "updating namespace conditions failed");
    }
    if !remaining.is_empty() {
        tracing::debug!(namespace = %name, ?remaining, "namespace content remains");
        return Ok(false);
    }
    let mut current = api.get(&name).await?;
    if let Some(spec) = current.spec.as_mut()
        && let Some(f) = spec.finalizers.as_mut()
    {
        f.retain(|x| x != FINALIZER);
    }
    let _: Namespace = api
        .replace_subresource("finalize", &name, &PostParams::default(), &current)
        .await?;
    tracing::info!(namespace = %name, "namespace emptied and finalized");
    Ok(true)
}

/// A de-duplicating queue of namespace names: a name waits at most once.
#[derive(Clone)]
struct Queue {
    queued: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    tx: tokio::sync::mpsc::UnboundedSender<String>,
}

impl Queue {
    fn add(&self, name: String) {
        let mut q = self.queued.lock().unwrap_or_else(|p| p.into_inner());
        if q.insert(name.clone()) {
            let _ = self.tx.send(name);
        }
    }

    fn done(&self, name: &str) {
        self.queued
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
    }

    fn add_after(&self, name: String, delay: Duration) {
        let q = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            q.add(name);
        });
    }
}

/// Run the namespace controller until the stream of namespaces ends.
pub async fn run(client: kube::Client) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let queue = Queue {
        queued: Default::default(),
        tx,
    };
    let watch_queue = queue.clone();
    let api: Api<Namespace> = Api::all(client.clone());
    let watch = tokio::spawn(async move {
        let mut stream = crate::watch::lean_watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        while let Some(ev) = stream.next().await {
            let Ok(ev) = ev else { continue };
            if let watcher::Event::Apply(n) | watcher::Event::InitApply(n) = ev
                && is_terminating(&n)
                && let Some(name) = n.metadata.name
            {
                watch_queue.add(name);
            }
        }
    });
    let api: Api<Namespace> = Api::all(client.clone());
    while let Some(name) = rx.recv().await {
        queue.done(&name);
        let ns = match api.get_opt(&name).await {
            Ok(Some(ns)) => ns,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(namespace = %name, error = %e, "reading namespace failed");
                queue.add_after(name, RECHECK);
                continue;
            }
        };
        match sync(&client, &ns).await {
            Ok(true) => {}
            Ok(false) if is_terminating(&ns) => queue.add_after(name, RECHECK),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(namespace = %name, error = %e, "namespace deletion failed; retrying");
                queue.add_after(name, RECHECK);
            }
        }
    }
    watch.abort();
}
