//! The Deployment controller: rolls a Deployment's pod template out through
//! ReplicaSets, as upstream's `pkg/controller/deployment`.
//!
//! Each template gets its own ReplicaSet, named `<deployment>-<hash>` and
//! labelled `pod-template-hash` so sets never share pods. `RollingUpdate`
//! grows the new set within `replicas + maxSurge` pods and shrinks old ones
//! while `replicas - maxUnavailable` stay available; `Recreate` scales old
//! sets to zero and waits for their pods to go before growing the new one.
//! Revisions are recorded in `deployment.kubernetes.io/revision` (which
//! `kubectl rollout history|undo` read), old sets beyond
//! `revisionHistoryLimit` are deleted, a paused Deployment only scales, and
//! a replica change mid-rollout is spread proportionally over the sets.

pub mod rollout;
pub mod status;

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};

use crate::events::Recorder;
use crate::queue::{self, Requeue, WorkQueue};
use rollout::{is_rolling, replicas_of, rs_available, rs_replicas};
use status::Progress;

/// The label that keeps each template's pods apart.
pub const HASH_LABEL: &str = "pod-template-hash";
/// The revision annotation on Deployments and their ReplicaSets.
pub const REVISION: &str = "deployment.kubernetes.io/revision";
/// The Deployment's replicas, as recorded on its ReplicaSets.
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
/// replicas + maxSurge, as recorded on its ReplicaSets.
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";

/// Annotations of a Deployment that are not copied to its ReplicaSets.
const NOT_COPIED: &[&str] = &[
    REVISION,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "kubectl.kubernetes.io/last-applied-configuration",
    "deployment.kubernetes.io/revision-history",
];

/// Errors of one sync.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// An API call failed.
    #[error("{0}")]
    Kube(#[from] kube::Error),
    /// An object could not be built.
    #[error("building an object: {0}")]
    Build(#[from] serde_json::Error),
    /// The Deployment's selector is invalid.
    #[error("invalid selector: {0}")]
    Selector(String),
}

/// The pod-template hash of `template` with `collisions` (rk-core's,
/// upstream's algorithm).
pub fn template_hash(template: &PodTemplateSpec, collisions: Option<i32>) -> String {
    rk_core::object::pod_template_hash(template, collisions)
}

/// `template` without the hash label, for comparing templates.
fn without_hash(template: Option<&PodTemplateSpec>) -> Value {
    let mut v = serde_json::to_value(template.cloned().unwrap_or_default()).unwrap_or(Value::Null);
    if let Some(labels) = v
        .get_mut("metadata")
        .and_then(|m| m.get_mut("labels"))
        .and_then(Value::as_object_mut)
    {
        labels.remove(HASH_LABEL);
        if labels.is_empty()
            && let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut)
        {
            m.remove("labels");
        }
    }
    v
}

fn revision(rs: &ReplicaSet) -> i64 {
    rs.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REVISION))
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn key_of(ns: &str, name: &str) -> String {
    format!("{ns}/{name}")
}

fn controller_ref(
    meta: &kube::core::ObjectMeta,
) -> Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference> {
    meta.owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true))
}

/// The controller's state.
pub struct Controller {
    client: kube::Client,
    deployments: Store<Deployment>,
    sets: Store<ReplicaSet>,
    pods: Store<Pod>,
    recorder: Recorder,
}

impl Controller {
    fn deployment(&self, ns: &str, name: &str) -> Option<Arc<Deployment>> {
        self.deployments.state().into_iter().find(|d| {
            d.metadata.namespace.as_deref() == Some(ns) && d.metadata.name.as_deref() == Some(name)
        })
    }

    /// Deployments that should look at a ReplicaSet: its controller, or (for
    /// orphans) those in its namespace whose selector matches.
    fn deployments_for_set(&self, rs: &ReplicaSet) -> Vec<String> {
        let deployments = self.deployments.state();
        crate::owners::owner_keys(
            &rs.metadata,
            "Deployment",
            deployments.iter().map(|d| (&d.metadata, &d.spec.selector)),
        )
    }

    /// The ReplicaSets this Deployment controls, adopting matching orphans
    /// and releasing owned sets that stopped matching.
    async fn claim_sets(&self, d: &Deployment) -> Result<Vec<ReplicaSet>, SyncError> {
        let ns = d.metadata.namespace.clone().unwrap_or_default();
        let uid = d.metadata.uid.clone().unwrap_or_default();
        let spec = d.spec.clone();
        let selector = rk_core::labels::Selector::try_from(&spec.selector)
            .map_err(|e| SyncError::Selector(e.to_string()))?;
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), &ns);
        let mut owned = Vec::new();
        for rs in self.sets.state() {
            if rs.metadata.namespace.as_deref() != Some(ns.as_str()) {
                continue;
            }
            let labels = rs.metadata.labels.clone().unwrap_or_default();
            let matches = !selector.is_empty() && selector.matches(&labels);
            let name = rs.metadata.name.clone().unwrap_or_default();
            match controller_ref(&rs.metadata) {
                Some(r) if r.uid == uid => {
                    if matches {
                        owned.push((*rs).clone());
                    } else {
                        let refs: Vec<_> = rs
                            .metadata
                            .owner_references
                            .iter()
                            .flatten()
                            .filter(|o| o.uid != uid)
                            .cloned()
                            .collect();
                        let patch = json!({"metadata": {"ownerReferences": refs, "resourceVersion": rs.metadata.resource_version}});
                        let _ = api
                            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                            .await;
                    }
                }
                None if matches
                    && d.metadata.deletion_timestamp.is_none()
                    && rs.metadata.deletion_timestamp.is_none() =>
                {
                    let mut refs = rs.metadata.owner_references.clone().unwrap_or_default();
                    refs.push(
                        rk_core::object::controller_ref_for(d)
                            .map_err(|e| SyncError::Selector(e.to_string()))?,
                    );
                    let patch = json!({"metadata": {"ownerReferences": refs, "resourceVersion": rs.metadata.resource_version}});
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
        owned.sort_by(|a, b| {
            a.metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0)
                .cmp(&b.metadata.creation_timestamp.as_ref().map(|t| t.0))
                .then(a.metadata.name.cmp(&b.metadata.name))
        });
        Ok(owned)
    }

    /// Set a ReplicaSet's replicas and the Deployment's annotations on it.
    async fn scale(
        &self,
        d: &Deployment,
        rs: &ReplicaSet,
        to: i32,
        extra: &BTreeMap<String, String>,
    ) -> Result<ReplicaSet, SyncError> {
        let from = rs_replicas(rs);
        let mut annotations = rs.metadata.annotations.clone().unwrap_or_default();
        let before = annotations.clone();
        let (surge, _) = rollout::surge_and_unavailable(d);
        annotations.insert(DESIRED_REPLICAS.into(), replicas_of(d).to_string());
        annotations.insert(MAX_REPLICAS.into(), (replicas_of(d) + surge).to_string());
        annotations.extend(extra.clone());
        let min_ready = d.spec.min_ready_seconds;
        let rs_min_ready = rs.spec.min_ready_seconds;
        if from == to
            && annotations == before
            && min_ready.unwrap_or(0) == rs_min_ready.unwrap_or(0)
        {
            return Ok(rs.clone());
        }
        let ns = rs.metadata.namespace.clone().unwrap_or_default();
        let name = rs.metadata.name.clone().unwrap_or_default();
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), &ns);
        let mut updated = rs.clone();
        updated.metadata.annotations = Some(annotations);
        updated.spec.replicas = Some(to);
        updated.spec.min_ready_seconds = min_ready;
        let out = api.replace(&name, &PostParams::default(), &updated).await?;
        if from != to {
            let verb = if to > from { "up" } else { "down" };
            self.recorder
                .record(
                    "apps/v1",
                    "Deployment",
                    &d.metadata,
                    "Normal",
                    "ScalingReplicaSet",
                    &format!("Scaled {verb} replica set {name} from {from} to {to}"),
                )
                .await;
        }
        Ok(out)
    }

    /// Create the ReplicaSet for the Deployment's current template.
    async fn create_new_set(
        &self,
        d: &Deployment,
        revision: i64,
        replicas: i32,
    ) -> Result<Result<ReplicaSet, i32>, SyncError> {
        let ns = d.metadata.namespace.clone().unwrap_or_default();
        let dname = d.metadata.name.clone().unwrap_or_default();
        let spec = d.spec.clone();
        let collisions = d.status.as_ref().and_then(|s| s.collision_count);
        let hash = template_hash(&spec.template, collisions);
        let mut template = spec.template.clone();
        let meta = template.metadata.get_or_insert_with(Default::default);
        meta.labels
            .get_or_insert_with(Default::default)
            .insert(HASH_LABEL.into(), hash.clone());
        let mut selector = serde_json::to_value(&spec.selector)?;
        selector["matchLabels"][HASH_LABEL] = json!(hash);
        let mut annotations: BTreeMap<String, String> = d
            .metadata
            .annotations
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|(k, _)| !NOT_COPIED.contains(&k.as_str()))
            .collect();
        let (surge, _) = rollout::surge_and_unavailable(d);
        annotations.insert(REVISION.into(), revision.to_string());
        annotations.insert(DESIRED_REPLICAS.into(), replicas_of(d).to_string());
        annotations.insert(MAX_REPLICAS.into(), (replicas_of(d) + surge).to_string());
        let name = format!("{dname}-{hash}");
        let body = json!({
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": name,
                "namespace": ns,
                "labels": template.metadata.as_ref().and_then(|m| m.labels.clone()),
                "annotations": annotations,
                "ownerReferences": [rk_core::object::controller_ref_for(d).map_err(|e| SyncError::Selector(e.to_string()))?],
            },
            "spec": {
                "replicas": replicas,
                "minReadySeconds": spec.min_ready_seconds,
                "selector": selector,
                "template": template,
            }
        });
        let rs: ReplicaSet = serde_json::from_value(body)?;
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), &ns);
        match api.create(&PostParams::default(), &rs).await {
            Ok(created) => {
                self.recorder
                    .record(
                        "apps/v1",
                        "Deployment",
                        &d.metadata,
                        "Normal",
                        "ScalingReplicaSet",
                        &format!("Scaled up replica set {name} from 0 to {replicas}"),
                    )
                    .await;
                Ok(Ok(created))
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {
                // A set of that name exists: ours with the same template (a
                // stale cache) is the new set; anything else is a collision.
                let existing = api.get(&name).await?;
                let ours = controller_ref(&existing.metadata)
                    .is_some_and(|r| Some(&r.uid) == d.metadata.uid.as_ref());
                if ours
                    && without_hash(existing.spec.template.as_ref())
                        == without_hash(Some(&spec.template))
                {
                    Ok(Ok(existing))
                } else {
                    Ok(Err(collisions.unwrap_or(0) + 1))
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Pods still running for the old ReplicaSets (for `Recreate`).
    fn old_pods_running(&self, old: &[&ReplicaSet]) -> bool {
        let uids: Vec<&str> = old
            .iter()
            .filter_map(|r| r.metadata.uid.as_deref())
            .collect();
        self.pods.state().iter().any(|p| {
            let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
            !matches!(phase, Some("Succeeded") | Some("Failed"))
                && controller_ref(&p.metadata).is_some_and(|r| uids.contains(&r.uid.as_str()))
        })
    }

    /// Sync the Deployment `ns/name`.
    pub async fn sync(&self, key: &str) -> Result<Requeue, SyncError> {
        let Some((ns, name)) = key.split_once('/') else {
            return Ok(None);
        };
        let Some(d) = self.deployment(ns, name) else {
            return Ok(None);
        };
        let d: Deployment = (*d).clone();
        if d.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let spec = d.spec.clone();
        if rk_core::labels::Selector::try_from(&spec.selector).is_ok_and(|s| s.is_empty()) {
            self.recorder
                .record(
                    "apps/v1",
                    "Deployment",
                    &d.metadata,
                    "Warning",
                    "SelectingAll",
                    "This deployment is selecting all pods. A non-empty selector is required.",
                )
                .await;
            return Ok(None);
        }
        let mut sets = self.claim_sets(&d).await?;
        let want = without_hash(Some(&spec.template));
        let new_idx = sets.iter().position(|rs| {
            rs.metadata.deletion_timestamp.is_none()
                && without_hash(rs.spec.template.as_ref()) == want
        });
        let mut new_rs: Option<ReplicaSet> = new_idx.map(|i| sets.remove(i));
        let mut old: Vec<ReplicaSet> = sets;
        let max_old_revision = old.iter().map(revision).max().unwrap_or(0);
        let paused = spec.paused == Some(true);
        let mut progress = Progress::Still;
        let collision_count = d.status.as_ref().and_then(|s| s.collision_count);

        // The new set: make sure its revision is the newest (a rollback reuses
        // an old set), or create it.
        if let Some(rs) = new_rs.take() {
            let mut extra = BTreeMap::new();
            if revision(&rs) <= max_old_revision {
                extra.insert(REVISION.to_string(), (max_old_revision + 1).to_string());
            }
            let keep = rs_replicas(&rs);
            new_rs = Some(self.scale(&d, &rs, keep, &extra).await?);
        } else if !paused {
            let all: Vec<&ReplicaSet> = old.iter().collect();
            let start = if is_rolling(&d) {
                let placeholder = ReplicaSet::default();
                rollout::new_rs_target(&d, &placeholder, &all)
            } else if old.iter().all(|r| rs_replicas(r) == 0) && !self.old_pods_running(&all) {
                replicas_of(&d)
            } else {
                0
            };
            match self.create_new_set(&d, max_old_revision + 1, start).await? {
                Ok(rs) => {
                    progress = Progress::Created;
                    new_rs = Some(rs);
                }
                Err(collisions) => {
                    let api: Api<Deployment> = Api::namespaced(self.client.clone(), ns);
                    api.patch_status(
                        name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"status": {"collisionCount": collisions}})),
                    )
                    .await?;
                    return Ok(None);
                }
            }
        }

        // The Deployment carries the new set's revision.
        if let Some(rs) = &new_rs {
            let rev = revision(rs).to_string();
            let current = d
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(REVISION));
            if current != Some(&rev) {
                let api: Api<Deployment> = Api::namespaced(self.client.clone(), ns);
                let patch = json!({"metadata": {"annotations": {REVISION: rev}}});
                api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
            }
        }

        let before = (
            new_rs.as_ref().map(rs_replicas),
            old.iter().map(rs_replicas).collect::<Vec<_>>(),
        );
        let active_count = new_rs
            .iter()
            .chain(old.iter())
            .filter(|r| rs_replicas(r) > 0)
            .count();
        let scaling_event = new_rs
            .iter()
            .chain(old.iter())
            .filter(|r| rs_replicas(r) > 0)
            .any(|r| {
                r.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(DESIRED_REPLICAS))
                    .is_some_and(|v| v != &replicas_of(&d).to_string())
            });
        if paused || (scaling_event && active_count > 1 && is_rolling(&d)) {
            self.scale_proportionally(&d, &mut new_rs, &mut old).await?;
        } else if is_rolling(&d) {
            self.roll(&d, &mut new_rs, &mut old).await?;
        } else {
            self.recreate(&d, &mut new_rs, &mut old).await?;
        }
        let after = (
            new_rs.as_ref().map(rs_replicas),
            old.iter().map(rs_replicas).collect::<Vec<_>>(),
        );
        if progress == Progress::Still && before != after {
            progress = Progress::Moved;
        }
        self.cleanup(&d, &old).await?;

        let all: Vec<&ReplicaSet> = new_rs.iter().chain(old.iter()).collect();
        let c = status::counts(&d, new_rs.as_ref(), &all);
        let prev = d.status.clone().unwrap_or_default();
        if progress == Progress::Still
            && (
                prev.updated_replicas.unwrap_or(0),
                prev.ready_replicas.unwrap_or(0),
                prev.available_replicas.unwrap_or(0),
            ) != (c.updated, c.ready, c.available)
        {
            progress = Progress::Moved;
        }
        let (status, recheck) = status::build(&d, new_rs.as_ref(), &all, progress, collision_count);
        let current = serde_json::to_value(&prev)?;
        let changed = [
            "observedGeneration",
            "replicas",
            "updatedReplicas",
            "readyReplicas",
            "availableReplicas",
            "unavailableReplicas",
            "conditions",
            "collisionCount",
        ]
        .iter()
        .any(|k| {
            let a = current
                .get(*k)
                .filter(|v| !v.is_null())
                .cloned()
                .unwrap_or(json!(0));
            let b = status
                .get(*k)
                .filter(|v| !v.is_null())
                .cloned()
                .unwrap_or(json!(0));
            a != b
        });
        if changed {
            let api: Api<Deployment> = Api::namespaced(self.client.clone(), ns);
            match api
                .patch_status(
                    name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": status})),
                )
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(recheck)
    }

    async fn roll(
        &self,
        d: &Deployment,
        new_rs: &mut Option<ReplicaSet>,
        old: &mut [ReplicaSet],
    ) -> Result<(), SyncError> {
        let none = BTreeMap::new();
        if let Some(n) = new_rs.as_ref() {
            let all: Vec<&ReplicaSet> = std::iter::once(n).chain(old.iter()).collect();
            let target = rollout::new_rs_target(d, n, &all);
            if target != rs_replicas(n) {
                *new_rs = Some(self.scale(d, n, target, &none).await?);
            }
        }
        // Old sets: first their pods that are not available anyway, then
        // available ones while enough stay available.
        let all: Vec<&ReplicaSet> = new_rs.iter().chain(old.iter()).collect();
        let mut budget = rollout::old_scale_down_budget(d, new_rs.as_ref(), &all);
        if budget <= 0 {
            return Ok(());
        }
        for rs in old.iter_mut() {
            if budget <= 0 {
                break;
            }
            let unhealthy = (rs_replicas(rs) - rs_available(rs)).max(0);
            let by = unhealthy.min(budget);
            if by > 0 {
                let to = rs_replicas(rs) - by;
                *rs = self.scale(d, rs, to, &none).await?;
                budget -= by;
            }
        }
        let all: Vec<&ReplicaSet> = new_rs.iter().chain(old.iter()).collect();
        let mut available_budget = rollout::available_scale_down(d, &all).min(budget);
        for rs in old.iter_mut() {
            if available_budget <= 0 {
                break;
            }
            let by = rs_replicas(rs).min(available_budget);
            if by > 0 {
                let to = rs_replicas(rs) - by;
                *rs = self.scale(d, rs, to, &none).await?;
                available_budget -= by;
            }
        }
        Ok(())
    }

    async fn recreate(
        &self,
        d: &Deployment,
        new_rs: &mut Option<ReplicaSet>,
        old: &mut [ReplicaSet],
    ) -> Result<(), SyncError> {
        let none = BTreeMap::new();
        for rs in old.iter_mut() {
            if rs_replicas(rs) != 0 {
                *rs = self.scale(d, rs, 0, &none).await?;
            }
        }
        let old_refs: Vec<&ReplicaSet> = old.iter().collect();
        if self.old_pods_running(&old_refs) {
            return Ok(());
        }
        if let Some(n) = new_rs.as_ref() {
            let want = replicas_of(d);
            if rs_replicas(n) != want {
                *new_rs = Some(self.scale(d, n, want, &none).await?);
            }
        }
        Ok(())
    }

    /// Spread a change of `spec.replicas` over the active sets (every set
    /// when paused or mid-rollout), newest first for rounding leftovers.
    async fn scale_proportionally(
        &self,
        d: &Deployment,
        new_rs: &mut Option<ReplicaSet>,
        old: &mut [ReplicaSet],
    ) -> Result<(), SyncError> {
        let none = BTreeMap::new();
        let want = replicas_of(d);
        let active_new = new_rs.as_ref().is_some_and(|n| rs_replicas(n) > 0);
        let active_old = old.iter().filter(|r| rs_replicas(r) > 0).count();
        if active_old == 0 {
            if let Some(n) = new_rs.as_ref()
                && (rs_replicas(n) != want || active_new)
            {
                *new_rs = Some(self.scale(d, n, want, &none).await?);
            }
            return Ok(());
        }
        if !active_new && active_old == 1 {
            // Only an old set runs (paused before the rollout began).
            if let Some(rs) = old.iter_mut().find(|r| rs_replicas(r) > 0) {
                *rs = self.scale(d, rs, want, &none).await?;
            }
            return Ok(());
        }
        let (surge, _) = rollout::surge_and_unavailable(d);
        let allowed = if is_rolling(d) { want + surge } else { want };
        let current: i32 = new_rs.iter().chain(old.iter()).map(rs_replicas).sum();
        let to_add = allowed - current;
        if to_add == 0 {
            // Record the new size on the sets even when no pod moves.
            if let Some(n) = new_rs.as_ref() {
                let keep = rs_replicas(n);
                *new_rs = Some(self.scale(d, n, keep, &none).await?);
            }
            for rs in old.iter_mut().filter(|r| rs_replicas(r) > 0) {
                let keep = rs_replicas(rs);
                *rs = self.scale(d, rs, keep, &none).await?;
            }
            return Ok(());
        }
        // Newest first: the new set, then old sets newest to oldest.
        let mut order: Vec<Option<usize>> = Vec::new();
        if new_rs.is_some() {
            order.push(None);
        }
        for i in (0..old.len()).rev() {
            if rs_replicas(&old[i]) > 0 {
                order.push(Some(i));
            }
        }
        let sizes: Vec<i32> = order
            .iter()
            .map(|o| match o {
                None => new_rs.as_ref().map(rs_replicas).unwrap_or(0),
                Some(i) => rs_replicas(&old[*i]),
            })
            .collect();
        let targets = rollout::proportional(&sizes, to_add);
        for (o, to) in order.into_iter().zip(targets) {
            match o {
                None => {
                    if let Some(n) = new_rs.as_ref() {
                        *new_rs = Some(self.scale(d, n, to, &none).await?);
                    }
                }
                Some(i) => {
                    let rs = old[i].clone();
                    old[i] = self.scale(d, &rs, to, &none).await?;
                }
            }
        }
        Ok(())
    }

    /// Delete old, empty sets beyond `revisionHistoryLimit`, oldest first.
    async fn cleanup(&self, d: &Deployment, old: &[ReplicaSet]) -> Result<(), SyncError> {
        let limit = d.spec.revision_history_limit.unwrap_or(10).max(0) as usize;
        let mut empty: Vec<&ReplicaSet> = old
            .iter()
            .filter(|r| {
                rs_replicas(r) == 0
                    && r.status.as_ref().map(|s| s.replicas).unwrap_or(0) == 0
                    && r.metadata.deletion_timestamp.is_none()
            })
            .collect();
        if empty.len() <= limit {
            return Ok(());
        }
        empty.sort_by_key(|r| revision(r));
        let excess = empty.len() - limit;
        for rs in empty.into_iter().take(excess) {
            let ns = rs.metadata.namespace.clone().unwrap_or_default();
            let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), &ns);
            let name = rs.metadata.name.clone().unwrap_or_default();
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

/// Run the Deployment controller with `workers` concurrent syncs.
pub async fn run(client: kube::Client, workers: usize) {
    let informers = crate::watch::Informers::new(&client);
    run_shared(client, workers, informers).await
}

/// Run the Deployment controller on `informers`' shared pods.
pub async fn run_shared(client: kube::Client, workers: usize, informers: crate::watch::Informers) {
    let (deployments, d_writer) = reflector::store::<Deployment>();
    let (sets, rs_writer) = reflector::store::<ReplicaSet>();
    let pods = informers.pods.store();
    let queue = WorkQueue::new();
    let ctrl = Arc::new(Controller {
        client: client.clone(),
        deployments,
        sets,
        pods,
        recorder: Recorder::new(client.clone(), "deployment-controller"),
    });
    let q = queue.clone();
    let d_events = reflector::reflector(
        d_writer,
        crate::watch::lean_watcher(
            Api::<Deployment>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .for_each(move |ev| {
        if let Ok(watcher::Event::Apply(d) | watcher::Event::InitApply(d)) = ev
            && let (Some(ns), Some(n)) = (&d.metadata.namespace, &d.metadata.name)
        {
            q.add(key_of(ns, n));
        }
        futures::future::ready(())
    });
    let (q, c) = (queue.clone(), ctrl.clone());
    let rs_events = reflector::reflector(
        rs_writer,
        crate::watch::lean_watcher(
            Api::<ReplicaSet>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .for_each(move |ev| {
        if let Ok(
            watcher::Event::Apply(rs) | watcher::Event::InitApply(rs) | watcher::Event::Delete(rs),
        ) = ev
        {
            for key in c.deployments_for_set(&rs) {
                q.add(key);
            }
        }
        futures::future::ready(())
    });
    let (q, c) = (queue.clone(), ctrl.clone());
    let pod_events = informers.pods.subscribe().for_each(move |ev| {
        // Only Recreate waits on pods: a pod of an old set going away.
        if let Ok(watcher::Event::Delete(p)) = ev
            && let Some(r) = controller_ref(&p.metadata)
            && r.kind == "ReplicaSet"
        {
            let ns = p.metadata.namespace.clone().unwrap_or_default();
            if let Some(rs) = c.sets.state().into_iter().find(|s| {
                s.metadata.namespace.as_deref() == Some(ns.as_str())
                    && s.metadata.name.as_deref() == Some(r.name.as_str())
            }) {
                for key in c.deployments_for_set(&rs) {
                    q.add(key);
                }
            }
        }
        futures::future::ready(())
    });
    let c = ctrl.clone();
    let work = queue::run_workers("deployment", queue, workers, move |key| {
        let c = c.clone();
        async move {
            crate::watch::store_ready(&c.deployments).await;
            crate::watch::store_ready(&c.sets).await;
            crate::watch::store_ready(&c.pods).await;
            c.sync(&key).await
        }
    });
    tokio::join!(d_events, rs_events, pod_events, work);
}
