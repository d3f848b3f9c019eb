//! The StatefulSet controller: pods with stable identities and storage, as
//! upstream's `pkg/controller/statefulset`.
//!
//! The pod of ordinal `i` (from `spec.ordinals.start`) is `<set>-<i>`, with
//! its own claims `<template>-<set>-<i>` made from `volumeClaimTemplates`
//! ([`identity`]). Claims outlive their pods unless
//! `persistentVolumeClaimRetentionPolicy` says `Delete`, which is carried
//! out by owner references (to the set for `whenDeleted`, to a scaled-down
//! pod for `whenScaled`) and the garbage collector. Pods are created,
//! deleted and updated in order or in parallel ([`update`]); templates are
//! recorded as ControllerRevisions ([`history`]), pods below the rolling
//! update's partition keep the current revision.

pub mod history;
pub mod identity;
pub mod update;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use rk_core::labels::Selector;
use rk_core::object::controller_ref_for;
use serde_json::json;

use crate::controllers::daemonset::claim_pods;
use crate::events::Recorder;
use crate::queue::{self, Requeue, WorkQueue};
use history::{HistoryError, Revisions};
use identity::{claims_for, ordinal_of, pod_revision, replicas, set_name, start_ordinal};
use update::Action;

/// Errors of one sync.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// An API call failed.
    #[error("{0}")]
    Kube(#[from] kube::Error),
    /// Reading or writing ControllerRevisions failed.
    #[error("{0}")]
    History(#[from] HistoryError),
    /// The set cannot own objects (no name or uid).
    #[error("{0}")]
    Owner(#[from] rk_core::object::ObjectError),
    /// The set's selector is invalid.
    #[error("invalid selector: {0}")]
    Selector(String),
}

fn key_of(ns: &str, name: &str) -> String {
    format!("{ns}/{name}")
}

fn name_of(meta: &kube::core::ObjectMeta) -> String {
    meta.name.clone().unwrap_or_default()
}

fn is_conflict_or_gone(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404 || s.code == 409)
}

/// A plain (non-controller) owner reference, as retention policies use.
fn plain_ref(api_version: &str, kind: &str, meta: &kube::core::ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: api_version.into(),
        kind: kind.into(),
        name: name_of(meta),
        uid: meta.uid.clone().unwrap_or_default(),
        controller: None,
        block_owner_deletion: None,
    }
}

/// The controller's state.
pub struct Controller {
    client: kube::Client,
    sets: Store<StatefulSet>,
    pods: Store<Pod>,
    claims: Store<PersistentVolumeClaim>,
    revisions: Store<ControllerRevision>,
    recorder: Recorder,
}

impl Controller {
    fn event(&self, set: &StatefulSet, type_: &'static str, reason: &'static str, message: String) {
        let recorder = self.recorder.clone();
        let meta = set.metadata.clone();
        tokio::spawn(async move {
            recorder
                .record("apps/v1", "StatefulSet", &meta, type_, reason, &message)
                .await;
        });
    }

    /// Sets to sync for a pod event: its controller, or for an orphan the
    /// sets in its namespace whose selector matches it.
    fn sets_for_pod(&self, pod: &Pod) -> Vec<String> {
        let sets = self.sets.state();
        crate::owners::owner_keys(
            &pod.metadata,
            "StatefulSet",
            sets.iter().map(|s| (&s.metadata, &s.spec.selector)),
        )
    }

    async fn sync(&self, key: &str) -> Result<Requeue, SyncError> {
        let Some((ns, name)) = key.split_once('/') else {
            return Ok(None);
        };
        let Some(set) = self.sets.get(&ObjectRef::new(name).within(ns)) else {
            return Ok(None);
        };
        if set.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let selector = Selector::try_from(&set.spec.selector)
            .map_err(|e| SyncError::Selector(e.to_string()))?;
        if selector.is_empty() {
            return Ok(None);
        }
        let revisions = match history::revisions(
            &self.client,
            &set,
            &selector,
            &self.revisions.state(),
        )
        .await
        {
            Ok(r) => r,
            Err(HistoryError::Collision { count, .. }) => {
                let api: Api<StatefulSet> = Api::namespaced(self.client.clone(), ns);
                let patch = json!({"status": {"collisionCount": count}});
                api.patch_status(name, &PatchParams::default(), &Patch::Merge(patch))
                    .await?;
                return Ok(Some(Duration::from_millis(10)));
            }
            Err(e) => return Err(e.into()),
        };
        let member = |p: &Pod| ordinal_of(&set, p).is_some();
        let pods = claim_pods(
            &self.client,
            &self.pods.state(),
            &set.metadata,
            controller_ref_for(&*set)?,
            &selector,
            member,
        )
        .await?;

        let start = start_ordinal(&set);
        let end = start.saturating_add(replicas(&set));
        let by_ordinal: HashMap<i32, &Pod> = pods
            .iter()
            .filter_map(|p| ordinal_of(&set, p).map(|o| (o, p)))
            .collect();
        let slots: Vec<(i32, Option<&Pod>)> = (start..end)
            .map(|o| (o, by_ordinal.get(&o).copied()))
            .collect();
        let mut condemned: Vec<(i32, &Pod)> = pods
            .iter()
            .filter_map(|p| ordinal_of(&set, p).map(|o| (o, p)))
            .filter(|(o, _)| *o < start || *o >= end)
            .collect();
        condemned.sort_by_key(|(o, _)| *o);
        let condemned: Vec<&Pod> = condemned.into_iter().map(|(_, p)| p).collect();

        for (ordinal, pod) in slots.iter().filter_map(|(o, p)| p.map(|p| (*o, p))) {
            self.keep_identity(&set, pod, ordinal).await?;
            self.ensure_claims(&set, ordinal).await?;
            self.retain_claims(&set, pod, ordinal, false).await?;
        }
        for pod in &condemned {
            if let Some(ordinal) = ordinal_of(&set, pod) {
                self.retain_claims(&set, pod, ordinal, true).await?;
            }
        }

        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let update_name = name_of(&revisions.update.metadata);
        let mut requeue = None;
        for action in update::plan(&set, &slots, &condemned, &update_name, &now) {
            match action {
                Action::Create(ordinal) => {
                    if !self.create_pod(&set, &revisions, ordinal).await? {
                        requeue = Some(Duration::from_secs(1));
                    }
                }
                Action::Delete(pod) => self.delete_pod(&set, &pod).await?,
                Action::Recreate(pod) => {
                    self.event(
                        &set,
                        "Warning",
                        "RecreatingFailedPod",
                        format!("StatefulSet {key} is recreating failed Pod {pod}"),
                    );
                    self.delete_pod(&set, &pod).await?;
                }
            }
        }

        let live: HashSet<String> = pods
            .iter()
            .filter_map(|p| pod_revision(p).map(str::to_string))
            .collect();
        history::truncate(&self.client, &set, &revisions, &live).await?;
        let status_requeue = self.write_status(&set, &pods, &revisions, &now).await?;
        Ok(requeue.or(status_requeue))
    }

    /// Restore the pod's identity labels if they were changed.
    async fn keep_identity(
        &self,
        set: &StatefulSet,
        pod: &Pod,
        ordinal: i32,
    ) -> Result<(), SyncError> {
        let missing = identity::missing_identity_labels(set, pod, ordinal);
        if missing.is_empty() || pod.metadata.deletion_timestamp.is_some() {
            return Ok(());
        }
        let ns = set.metadata.namespace.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let patch = json!({"metadata": {"labels": missing}});
        match api
            .patch(
                &name_of(&pod.metadata),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Err(e) if !is_conflict_or_gone(&e) => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// Create the claims of `ordinal` that do not exist; false if one is
    /// being deleted (the pod must wait for it to go).
    async fn ensure_claims(&self, set: &StatefulSet, ordinal: i32) -> Result<bool, SyncError> {
        let ns = set.metadata.namespace.clone().unwrap_or_default();
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), &ns);
        let mut usable = true;
        for claim in claims_for(set, ordinal).into_values() {
            let claim_name = name_of(&claim.metadata);
            if let Some(existing) = self.claims.get(&ObjectRef::new(&claim_name).within(&ns)) {
                if existing.metadata.deletion_timestamp.is_some() {
                    usable = false;
                }
                continue;
            }
            match api.create(&PostParams::default(), &claim).await {
                Ok(_) => self.event(
                    set,
                    "Normal",
                    "SuccessfulCreate",
                    format!(
                        "create Claim {claim_name} Pod {} in StatefulSet {} success",
                        identity::pod_name(set, ordinal),
                        set_name(set)
                    ),
                ),
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => {
                    self.event(
                        set,
                        "Warning",
                        "FailedCreate",
                        format!(
                            "create Claim {claim_name} for StatefulSet {} failed error: {e}",
                            set_name(set)
                        ),
                    );
                    return Err(e.into());
                }
            }
        }
        Ok(usable)
    }

    /// Point the claims of the pod of `ordinal` at their owners under the
    /// retention policy: the set when `whenDeleted` is `Delete`, the pod
    /// when it is scaled away (`condemned`) and `whenScaled` is `Delete`.
    async fn retain_claims(
        &self,
        set: &StatefulSet,
        pod: &Pod,
        ordinal: i32,
        condemned: bool,
    ) -> Result<(), SyncError> {
        let policy = set.spec.persistent_volume_claim_retention_policy.as_ref();
        let deletes = |v: Option<&String>| v.map(String::as_str) == Some("Delete");
        let when_deleted = deletes(policy.and_then(|p| p.when_deleted.as_ref()));
        let when_scaled = deletes(policy.and_then(|p| p.when_scaled.as_ref()));
        let set_uid = set.metadata.uid.clone().unwrap_or_default();
        let pod_uid = pod.metadata.uid.clone().unwrap_or_default();
        let (want_set, want_pod) = match (when_scaled, when_deleted) {
            (false, false) => (false, false),
            (false, true) => (true, false),
            (true, false) => (false, condemned),
            (true, true) => (!condemned, condemned),
        };
        let ns = set.metadata.namespace.clone().unwrap_or_default();
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), &ns);
        for claim in claims_for(set, ordinal).into_values() {
            let claim_name = name_of(&claim.metadata);
            let Some(existing) = self.claims.get(&ObjectRef::new(&claim_name).within(&ns)) else {
                continue;
            };
            let refs = existing
                .metadata
                .owner_references
                .clone()
                .unwrap_or_default();
            let mut wanted: Vec<OwnerReference> = refs
                .iter()
                .filter(|r| r.uid != set_uid && r.uid != pod_uid)
                .cloned()
                .collect();
            if want_set {
                wanted.push(plain_ref("apps/v1", "StatefulSet", &set.metadata));
            }
            if want_pod {
                wanted.push(plain_ref("v1", "Pod", &pod.metadata));
            }
            let has = |uid: &str| refs.iter().any(|r| r.uid == uid);
            if has(&set_uid) == want_set && has(&pod_uid) == want_pod {
                continue;
            }
            let patch = json!({"metadata": {"ownerReferences": wanted,
                "resourceVersion": existing.metadata.resource_version}});
            match api
                .patch(&claim_name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Err(e) if !is_conflict_or_gone(&e) => return Err(e.into()),
                _ => {}
            }
        }
        Ok(())
    }

    /// Create the pod of `ordinal` from the revision it belongs to (the
    /// current one below the partition, else the update one); false when
    /// it has to wait for a claim being deleted.
    async fn create_pod(
        &self,
        set: &StatefulSet,
        revisions: &Revisions,
        ordinal: i32,
    ) -> Result<bool, SyncError> {
        if !self.ensure_claims(set, ordinal).await? {
            return Ok(false);
        }
        let index = ordinal - start_ordinal(set);
        let below_partition = !update::is_on_delete(set) && index < update::partition(set);
        let revision = if below_partition {
            &revisions.current
        } else {
            &revisions.update
        };
        let template =
            history::revision_template(revision).unwrap_or_else(|| set.spec.template.clone());
        let pod = identity::new_pod(
            set,
            &template,
            ordinal,
            &name_of(&revision.metadata),
            controller_ref_for(set)?,
        );
        let ns = set.metadata.namespace.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let pod_name = name_of(&pod.metadata);
        match api.create(&PostParams::default(), &pod).await {
            Ok(_) => {
                tracing::debug!(statefulset = set_name(set), pod = %pod_name, "created pod");
                self.event(
                    set,
                    "Normal",
                    "SuccessfulCreate",
                    format!(
                        "create Pod {pod_name} in StatefulSet {} successful",
                        set_name(set)
                    ),
                );
                Ok(true)
            }
            // The cache had not shown it yet (or it is still terminating).
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => {
                self.event(
                    set,
                    "Warning",
                    "FailedCreate",
                    format!(
                        "create Pod {pod_name} in StatefulSet {} failed error: {e}",
                        set_name(set)
                    ),
                );
                Err(e.into())
            }
        }
    }

    async fn delete_pod(&self, set: &StatefulSet, pod: &str) -> Result<(), SyncError> {
        let ns = set.metadata.namespace.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        match api.delete(pod, &DeleteParams::default()).await {
            Ok(_) => {
                tracing::debug!(statefulset = set_name(set), pod = %pod, "deleted pod");
                self.event(
                    set,
                    "Normal",
                    "SuccessfulDelete",
                    format!(
                        "delete Pod {pod} in StatefulSet {} successful",
                        set_name(set)
                    ),
                );
                Ok(())
            }
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => {
                self.event(
                    set,
                    "Warning",
                    "FailedDelete",
                    format!(
                        "delete Pod {pod} in StatefulSet {} failed error: {e}",
                        set_name(set)
                    ),
                );
                Err(e.into())
            }
        }
    }

    /// Write the status; asks to look again after `minReadySeconds` while
    /// some ready pods are not yet available.
    async fn write_status(
        &self,
        set: &StatefulSet,
        pods: &[Pod],
        revisions: &Revisions,
        now: &Time,
    ) -> Result<Requeue, SyncError> {
        let current_name = name_of(&revisions.current.metadata);
        let update_name = name_of(&revisions.update.metadata);
        let (mut count, mut ready, mut available, mut current, mut updated) = (0, 0, 0, 0, 0);
        for pod in pods.iter().filter(|p| ordinal_of(set, p).is_some()) {
            count += 1;
            if update::running_and_ready(pod) {
                ready += 1;
                if update::healthy(set, pod, now) {
                    available += 1;
                }
            }
            if pod.metadata.deletion_timestamp.is_none() {
                let revision = pod_revision(pod);
                if revision == Some(current_name.as_str()) {
                    current += 1;
                }
                if revision == Some(update_name.as_str()) {
                    updated += 1;
                }
            }
        }
        let mut current_revision = current_name.clone();
        if !update::is_on_delete(set) && updated == count && ready == count {
            current_revision = update_name.clone();
            current = updated;
        }
        let status = json!({
            "observedGeneration": set.metadata.generation,
            "replicas": count,
            "readyReplicas": ready,
            "availableReplicas": available,
            "currentReplicas": current,
            "updatedReplicas": updated,
            "currentRevision": current_revision,
            "updateRevision": update_name,
            "collisionCount": set.status.as_ref().and_then(|s| s.collision_count).unwrap_or(0),
        });
        let prev = serde_json::to_value(set.status.clone().unwrap_or_default()).unwrap_or_default();
        let changed = status
            .as_object()
            .into_iter()
            .flatten()
            .any(|(k, v)| prev.get(k).filter(|p| !p.is_null()).unwrap_or(&json!(0)) != v);
        if changed {
            let ns = set.metadata.namespace.clone().unwrap_or_default();
            let api: Api<StatefulSet> = Api::namespaced(self.client.clone(), &ns);
            match api
                .patch_status(
                    &name_of(&set.metadata),
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": status})),
                )
                .await
            {
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
                Ok(_) => {}
            }
        }
        let min_ready = set.spec.min_ready_seconds.unwrap_or(0);
        Ok((min_ready > 0 && ready != available)
            .then(|| Duration::from_secs(u64::try_from(min_ready).unwrap_or(0))))
    }
}

/// Run the StatefulSet controller with `workers` concurrent syncs.
pub async fn run(client: kube::Client, workers: usize) {
    let informers = crate::watch::Informers::new(&client);
    run_shared(client, workers, informers).await
}

/// Run the StatefulSet controller on `informers`' shared pods.
pub async fn run_shared(client: kube::Client, workers: usize, informers: crate::watch::Informers) {
    let (sets, set_writer) = reflector::store::<StatefulSet>();
    let pods = informers.pods.store();
    let (claims, claim_writer) = reflector::store::<PersistentVolumeClaim>();
    let (revisions, rev_writer) = reflector::store::<ControllerRevision>();
    let queue = WorkQueue::new();
    let ctrl = Arc::new(Controller {
        client: client.clone(),
        sets,
        pods,
        claims,
        revisions,
        recorder: Recorder::new(client.clone(), "statefulset-controller"),
    });
    let q = queue.clone();
    let set_events = reflector::reflector(
        set_writer,
        crate::watch::lean_watcher(
            Api::<StatefulSet>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .for_each(move |ev| {
        if let Ok(watcher::Event::Apply(s) | watcher::Event::InitApply(s)) = ev
            && let (Some(ns), Some(n)) = (&s.metadata.namespace, &s.metadata.name)
        {
            q.add(key_of(ns, n));
        }
        futures::future::ready(())
    });
    let (q, c) = (queue.clone(), ctrl.clone());
    let pod_events = informers.pods.subscribe().for_each(move |ev| {
        if let Ok(
            watcher::Event::Apply(p) | watcher::Event::InitApply(p) | watcher::Event::Delete(p),
        ) = ev
        {
            for key in c.sets_for_pod(&p) {
                q.add(key);
            }
        }
        futures::future::ready(())
    });
    let claim_events = reflector::reflector(
        claim_writer,
        crate::watch::lean_watcher(
            Api::<PersistentVolumeClaim>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .for_each(|_| futures::future::ready(()));
    let rev_events = reflector::reflector(
        rev_writer,
        crate::watch::lean_watcher(
            Api::<ControllerRevision>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .for_each(|_| futures::future::ready(()));
    let c = ctrl.clone();
    let work = queue::run_workers("statefulset", queue, workers, move |key| {
        let c = c.clone();
        async move {
            crate::watch::store_ready(&c.sets).await;
            crate::watch::store_ready(&c.pods).await;
            crate::watch::store_ready(&c.claims).await;
            crate::watch::store_ready(&c.revisions).await;
            c.sync(&key).await
        }
    });
    tokio::join!(set_events, pod_events, claim_events, rev_events, work);
}
