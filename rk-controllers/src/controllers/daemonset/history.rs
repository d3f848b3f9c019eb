//! ControllerRevisions: the template history of DaemonSets and StatefulSets
//! (upstream's `controller/history` and each controller's
//! `constructHistory`/`cleanupHistory`).
//!
//! Each distinct pod template gets one revision named `<owner>-<hash>`,
//! labelled with the hash (`controller-revision-hash` for DaemonSets, like
//! their pods; `controller.kubernetes.io/hash` for StatefulSets),
//! holding the template as the patch `kubectl rollout undo` applies
//! (`{"spec": {"template": {..., "$patch": "replace"}}}`), and numbered:
//! returning to an older template renumbers its revision as the newest.
//! The StatefulSet controller uses this module too.

use std::collections::HashSet;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use rk_core::labels::Selector;
use rk_core::object::{ObjectError, controller_of, new_controller_ref, pod_template_hash};
use serde_json::{Value, json};

/// The label naming a pod's (and a DaemonSet revision's) template revision.
pub const HASH_LABEL: &str = "controller-revision-hash";
/// The hash label of revisions made by upstream's generic history code
/// (StatefulSet revisions).
pub const GENERIC_HASH_LABEL: &str = "controller.kubernetes.io/hash";

/// Errors while reading or writing history.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// An API call failed.
    #[error("{0}")]
    Kube(#[from] kube::Error),
    /// The owner cannot be referenced (no name or uid).
    #[error("{0}")]
    Owner(#[from] ObjectError),
    /// A revision of the wanted name holds another template: the owner's
    /// `status.collisionCount` must become `count` and the sync retried.
    #[error("hash collision on revision {name}; collision count becomes {count}")]
    Collision {
        /// The revision name that collided.
        name: String,
        /// The new collision count.
        count: i32,
    },
}

/// The object whose history is kept.
pub struct Owner<'a> {
    /// Its metadata (name, namespace, uid).
    pub meta: &'a ObjectMeta,
    /// Its kind, in group `apps/v1` (`DaemonSet`, `StatefulSet`).
    pub kind: &'static str,
    /// Its current pod template.
    pub template: &'a PodTemplateSpec,
    /// Its label selector, to adopt orphaned revisions.
    pub selector: &'a Selector,
    /// Its `status.collisionCount`.
    pub collision_count: Option<i32>,
    /// The label carrying the hash on its revisions: [`HASH_LABEL`] for
    /// DaemonSets, [`GENERIC_HASH_LABEL`] for StatefulSets.
    pub hash_label: &'static str,
}

/// The owner's revisions: the one of its current template, and the others.
#[derive(Debug, Clone)]
pub struct History {
    /// The revision of the current template.
    pub current: ControllerRevision,
    /// Every other revision, by ascending revision number.
    pub old: Vec<ControllerRevision>,
}

/// The data a revision stores for `template`.
pub fn revision_data(template: &PodTemplateSpec) -> Value {
    let mut t = serde_json::to_value(template).unwrap_or_else(|_| json!({}));
    if let Some(map) = t.as_object_mut() {
        map.insert("$patch".into(), json!("replace"));
    }
    json!({"spec": {"template": t}})
}

/// A revision's number (0 when unset).
pub fn revision_number(r: &ControllerRevision) -> i64 {
    r.revision.unwrap_or(0)
}

/// A revision's hash label, or else its name.
pub fn revision_hash(r: &ControllerRevision) -> String {
    r.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(HASH_LABEL))
        .cloned()
        .unwrap_or_else(|| r.metadata.name.clone().unwrap_or_default())
}

/// The pod template a revision stores, if it holds one.
pub fn revision_template(r: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut t = r.data.0.get("spec")?.get("template")?.clone();
    if let Some(map) = t.as_object_mut() {
        map.remove("$patch");
    }
    serde_json::from_value(t).ok()
}

fn ignore_not_found(r: Result<(), kube::Error>) -> Result<(), kube::Error> {
    match r {
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        other => other,
    }
}

/// The owner's revisions from `all` (a cache of every revision), adopting
/// orphans its selector matches, creating the current template's revision
/// if missing, dropping duplicates of it and renumbering it as the newest.
pub async fn construct(
    client: &kube::Client,
    owner: &Owner<'_>,
    all: &[Arc<ControllerRevision>],
) -> Result<History, HistoryError> {
    let ns = owner.meta.namespace.clone().unwrap_or_default();
    let uid = owner.meta.uid.clone().unwrap_or_default();
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), &ns);
    let owner_ref = new_controller_ref(owner.meta, "apps/v1", owner.kind)?;
    let mut owned = Vec::new();
    for r in all
        .iter()
        .filter(|r| r.metadata.namespace.as_deref() == Some(ns.as_str()))
    {
        let labels = r.metadata.labels.clone().unwrap_or_default();
        match controller_of(&r.metadata) {
            Some(c) if c.uid == uid => owned.push((**r).clone()),
            None if !owner.selector.is_empty()
                && owner.selector.matches(&labels)
                && owner.meta.deletion_timestamp.is_none() =>
            {
                let mut refs = r.metadata.owner_references.clone().unwrap_or_default();
                refs.push(owner_ref.clone());
                let patch = json!({"metadata": {"ownerReferences": refs,
                    "resourceVersion": r.metadata.resource_version}});
                let name = r.metadata.name.clone().unwrap_or_default();
                if let Ok(adopted) = api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    owned.push(adopted);
                }
            }
            _ => {}
        }
    }
    let data = revision_data(owner.template);
    let (mut current, mut old): (Vec<_>, Vec<_>) =
        owned.into_iter().partition(|r| r.data.0 == data);
    old.sort_by_key(revision_number);
    let next = old.last().map(revision_number).unwrap_or(0) + 1;
    current.sort_by_key(revision_number);
    let mut cur = match current.pop() {
        Some(keep) => {
            for dup in current {
                let name = dup.metadata.name.clone().unwrap_or_default();
                ignore_not_found(
                    api.delete(&name, &DeleteParams::default())
                        .await
                        .map(|_| ()),
                )?;
            }
            keep
        }
        None => create(&api, owner, owner_ref, data, next).await?,
    };
    if revision_number(&cur) < next {
        let name = cur.metadata.name.clone().unwrap_or_default();
        let patch = json!({"revision": next, "metadata": {"resourceVersion": cur.metadata.resource_version}});
        cur = api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    Ok(History { current: cur, old })
}

/// Create the revision of the owner's template, or reuse an identical one
/// of ours that the cache has not shown yet.
async fn create(
    api: &Api<ControllerRevision>,
    owner: &Owner<'_>,
    owner_ref: k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
    data: Value,
    number: i64,
) -> Result<ControllerRevision, HistoryError> {
    let hash = pod_template_hash(owner.template, owner.collision_count);
    let name = format!("{}-{hash}", owner.meta.name.as_deref().unwrap_or_default());
    let mut labels = owner
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    labels.insert(owner.hash_label.into(), hash);
    let revision = ControllerRevision {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: owner.meta.namespace.clone(),
            labels: Some(labels),
            // The owner's annotations (`kubernetes.io/change-cause`, which
            // `kubectl rollout history` shows) go with the revision.
            annotations: owner.meta.annotations.clone(),
            owner_references: Some(vec![owner_ref]),
            ..ObjectMeta::default()
        },
        data: RawExtension(data.clone()),
        revision: Some(number),
    };
    match api.create(&PostParams::default(), &revision).await {
        Ok(r) => Ok(r),
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let existing = api.get(&name).await?;
            let ours = controller_of(&existing.metadata)
                .is_some_and(|c| Some(&c.uid) == owner.meta.uid.as_ref());
            if ours && existing.data.0 == data {
                Ok(existing)
            } else {
                Err(HistoryError::Collision {
                    name,
                    count: owner.collision_count.unwrap_or(0).saturating_add(1),
                })
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Delete the oldest of `candidates` (sorted by ascending revision) beyond
/// `limit`, sparing revisions whose hash a live pod still carries.
pub async fn cleanup(
    client: &kube::Client,
    candidates: &[ControllerRevision],
    live_hashes: &HashSet<String>,
    limit: i32,
) -> Result<(), kube::Error> {
    let limit = usize::try_from(limit.max(0)).unwrap_or(0);
    let mut excess = candidates.len().saturating_sub(limit);
    for r in candidates {
        if excess == 0 {
            break;
        }
        if live_hashes.contains(&revision_hash(r)) {
            continue;
        }
        let ns = r.metadata.namespace.clone().unwrap_or_default();
        let name = r.metadata.name.clone().unwrap_or_default();
        let api: Api<ControllerRevision> = Api::namespaced(client.clone(), &ns);
        ignore_not_found(
            api.delete(&name, &DeleteParams::default())
                .await
                .map(|_| ()),
        )?;
        excess -= 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_data_round_trips_the_template() {
        let t: PodTemplateSpec = serde_json::from_value(json!({
            "metadata": {"labels": {"a": "b"}},
            "spec": {"containers": [{"name": "c", "image": "i"}]}
        }))
        .unwrap_or_default();
        let r = ControllerRevision {
            data: RawExtension(revision_data(&t)),
            ..ControllerRevision::default()
        };
        assert_eq!(r.data.0["spec"]["template"]["$patch"], "replace");
        assert_eq!(revision_template(&r), Some(t));
    }
}
