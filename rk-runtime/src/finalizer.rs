//! Finalizer helpers: keep a finalizer on live objects, run cleanup when the
//! object is being deleted, then remove the finalizer so deletion completes.
//!
//! Every write is a merge patch carrying the object's resourceVersion as a
//! precondition, so a stale copy never overwrites someone else's finalizers.

use std::fmt::Debug;
use std::future::Future;

use kube::api::{Patch, PatchParams};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;

/// What [`finalize`] asks the caller to do.
#[derive(Debug)]
pub enum FinalizerEvent<K> {
    /// The object is live and carries the finalizer: reconcile it.
    Apply(K),
    /// The object is being deleted: clean up what it owns outside the cluster.
    Cleanup(K),
}

/// Why a finalizer step failed.
#[derive(Debug, thiserror::Error)]
pub enum FinalizerError<E: std::error::Error + 'static> {
    /// Adding or removing the finalizer failed.
    #[error("updating finalizers failed: {0}")]
    Patch(#[source] kube::Error),
    /// The caller's apply or cleanup failed; the finalizer stays.
    #[error("reconcile failed: {0}")]
    Reconcile(#[source] E),
    /// The object has no name.
    #[error("object has no name")]
    Unnamed,
}

fn has_finalizer<K: Resource>(obj: &K, finalizer: &str) -> bool {
    obj.meta()
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|x| x == finalizer))
}

async fn patch_finalizers<K>(
    api: &Api<K>,
    obj: &K,
    finalizers: Vec<String>,
) -> Result<K, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let meta = obj.meta();
    let name = meta.name.clone().unwrap_or_default();
    // A resourceVersion in a patch is a precondition: the server answers 409
    // instead of overwriting a finalizer list written since we read it.
    let patch = serde_json::json!({
        "metadata": {
            "finalizers": finalizers,
            "resourceVersion": meta.resource_version,
        }
    });
    api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
}

/// Add `finalizer` to `obj` unless present; returns the updated object.
pub async fn add_finalizer<K>(api: &Api<K>, obj: &K, finalizer: &str) -> Result<K, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    if has_finalizer(obj, finalizer) {
        return Ok(obj.clone());
    }
    let mut finalizers = obj.meta().finalizers.clone().unwrap_or_default();
    finalizers.push(finalizer.to_owned());
    patch_finalizers(api, obj, finalizers).await
}

/// Remove `finalizer` from `obj` if present; returns the updated object.
pub async fn remove_finalizer<K>(api: &Api<K>, obj: &K, finalizer: &str) -> Result<K, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    if !has_finalizer(obj, finalizer) {
        return Ok(obj.clone());
    }
    let finalizers = obj
        .meta()
        .finalizers
        .iter()
        .flatten()
        .filter(|f| *f != finalizer)
        .cloned()
        .collect();
    patch_finalizers(api, obj, finalizers).await
}

/// Drive `obj` through its finalizer:
///
/// - live without the finalizer: add it (the write triggers the next reconcile);
/// - live with it: call `reconcile(Apply)`;
/// - being deleted with it: call `reconcile(Cleanup)`, and on success remove it;
/// - being deleted without it: nothing to do.
///
/// Returns what `reconcile` returned, or `None` when it was not called.
pub async fn finalize<K, T, E, F, Fut>(
    api: &Api<K>,
    finalizer: &str,
    obj: K,
    reconcile: F,
) -> Result<Option<T>, FinalizerError<E>>
where
    K: Resource + Clone + DeserializeOwned + Debug,
    E: std::error::Error + 'static,
    F: FnOnce(FinalizerEvent<K>) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    if obj.meta().name.is_none() {
        return Err(FinalizerError::Unnamed);
    }
    let deleting = obj.meta().deletion_timestamp.is_some();
    let present = has_finalizer(&obj, finalizer);
    match (deleting, present) {
        (false, false) => {
            add_finalizer(api, &obj, finalizer)
                .await
                .map_err(FinalizerError::Patch)?;
            Ok(None)
        }
        (false, true) => reconcile(FinalizerEvent::Apply(obj))
            .await
            .map(Some)
            .map_err(FinalizerError::Reconcile),
        (true, true) => {
            let out = reconcile(FinalizerEvent::Cleanup(obj.clone()))
                .await
                .map_err(FinalizerError::Reconcile)?;
            remove_finalizer(api, &obj, finalizer)
                .await
                .map_err(FinalizerError::Patch)?;
            Ok(Some(out))
        }
        (true, false) => Ok(None),
    }
}
