//! The DaemonSet controller: one pod per eligible node, as upstream's
//! `pkg/controller/daemon`.
//!
//! A node is eligible when it matches the template's node selector and
//! required node affinity and has no taint the pod does not tolerate
//! ([`placement`]). Pods are not bound by the controller: each gets a
//! required node affinity selecting its node by `metadata.name`, and the
//! scheduler binds it there. Pods on nodes that stop qualifying are deleted,
//! failed pods are deleted and recreated with a per-node backoff, and a new
//! template rolls out with `maxUnavailable`/`maxSurge` ([`update`]) or, with
//! `OnDelete`, as pods are deleted. Templates are recorded as
//! ControllerRevisions ([`history`]).

pub mod history;
pub mod placement;
pub mod update;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use rk_core::labels::Selector;
use rk_core::object::{controller_of, controller_ref_for, is_pod_available, is_pod_ready};
use serde_json::json;

use crate::controllers::replicaset::expectations::Expectations;
use crate::events::Recorder;
use crate::queue::{self, Requeue, WorkQueue};
use history::{HASH_LABEL, HistoryError, Owner};
use placement::{Placement, add_daemon_tolerations, pin_to_node, placement, target_node};

/// The legacy label carrying the DaemonSet generation a pod was made from.
pub const TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";

/// The first delay before a failed daemon pod is replaced again.
const FAILED_BACKOFF_START: Duration = Duration::from_secs(1);
/// The longest delay between replacing failed daemon pods on one node.
const FAILED_BACKOFF_MAX: Duration = Duration::from_secs(15 * 60);
/// The largest number of pods created by one sync.
const CREATE_BURST: usize = 250;

/// Errors of one sync.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// An API call failed.
    #[error("{0}")]
    Kube(#[from] kube::Error),
    /// Reading or writing ControllerRevisions failed.
    #[error("{0}")]
    History(#[from] HistoryError),
    /// The DaemonSet cannot own objects (no name or uid).
    #[error("{0}")]
    Owner(#[from] rk_core::object::ObjectError),
    /// The DaemonSet's selector is invalid.
    #[error("invalid selector: {0}")]
    Selector(String),
}

fn key_of(ns: &str, name: &str) -> String {
    format!("{ns}/{name}")
}

/// The expectations key of pending deletions (creations use the plain key).
fn deletions_key(key: &str) -> String {
    format!("{key}#deletions")
}

fn name_of(meta: &ObjectMeta) -> String {
    meta.name.clone().unwrap_or_default()
}

fn ignore_not_found<T>(r: Result<T, kube::Error>) -> Result<(), kube::Error> {
    match r {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// The node fields placement depends on, to skip node updates that only
/// touch status or heartbeats.
fn node_fingerprint(node: &Node) -> String {
    let spec = node.spec.as_ref();
    serde_json::to_string(&(
        &node.metadata.labels,
        spec.and_then(|s| s.taints.as_ref()),
        spec.and_then(|s| s.unschedulable),
    ))
    .unwrap_or_default()
}

/// The pods an owner (a DaemonSet or StatefulSet, `owner_ref` pointing at
/// it) holds among `cache`: those it controls and still selects, plus
/// orphans its selector matches and `accept` takes, which it adopts;
/// controlled pods it no longer selects are released. Shared with the
/// StatefulSet controller.
pub async fn claim_pods(
    client: &kube::Client,
    cache: &[Arc<Pod>],
    owner: &ObjectMeta,
    owner_ref: OwnerReference,
    selector: &Selector,
    accept: impl Fn(&Pod) -> bool,
) -> Result<Vec<Pod>, kube::Error> {
    let ns = owner.namespace.clone().unwrap_or_default();
    let uid = owner.uid.clone().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let mut owned = Vec::new();
    for pod in cache {
        if pod.metadata.namespace.as_deref() != Some(ns.as_str()) {
            continue;
        }
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        let matches = selector.matches(&labels);
        let name = name_of(&pod.metadata);
        match controller_of(&pod.metadata) {
            Some(r) if r.uid == uid => {
                if matches {
                    owned.push((**pod).clone());
                } else {
                    let refs: Vec<_> = pod
                        .metadata
                        .owner_references
                        .iter()
                        .flatten()
                        .filter(|o| o.uid != uid)
                        .cloned()
                        .collect();
                    let patch = json!({"metadata": {"ownerReferences": refs,
                        "resourceVersion": pod.metadata.resource_version}});
                    let released = api
                        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await;
                    ignore_not_found(released)?;
                }
            }
            None if matches
                && accept(pod)
                && owner.deletion_timestamp.is_none()
                && pod.metadata.deletion_timestamp.is_none() =>
            {
                let mut refs = pod.metadata.owner_references.clone().unwrap_or_default();
                refs.push(owner_ref.clone());
                let patch = json!({"metadata": {"ownerReferences": refs,
                    "resourceVersion": pod.metadata.resource_version}});
                match api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(adopted) => owned.push(adopted),
                    Err(e) => tracing::debug!(pod = %name, error = %e, "adopting a pod failed"),
                }
            }
            _ => {}
        }
    }
    Ok(owned)
}

/// The controller's state.
pub struct Controller {
    client: kube::Client,
    sets: Store<DaemonSet>,
    pods: Store<Pod>,
    nodes: Store<Node>,
    revisions: Store<ControllerRevision>,
    recorder: Recorder,
    expectations: Expectations,
    queue: WorkQueue,
    /// Per `<ds uid>/<node>`: the current delay and when it was set.
    failed_backoff: Mutex<HashMap<String, (Duration, Instant)>>,
    node_prints: Mutex<HashMap<String, String>>,
}

impl Controller {
    fn event(&self, ds: &DaemonSet, type_: &'static str, reason: &'static str, message: String) {
        let recorder = self.recorder.clone();
        let meta = ds.metadata.clone();
        tokio::spawn(async move {
            recorder
                .record("apps/v1", "DaemonSet", &meta, type_, reason, &message)
                .await;
        });
    }

    fn enqueue_all(&self) {
        for ds in self.sets.state() {
            if let (Some(ns), Some(n)) = (&ds.metadata.namespace, &ds.metadata.name) {
                self.queue.add(key_of(ns, n));
            }
        }
    }

    /// DaemonSets to sync for a pod event: its controller, or for an orphan
    /// those in its namespace whose selector matches it.
    fn sets_for_pod(&self, pod: &Pod) -> Vec<String> {
        let sets = self.sets.state();
        crate::owners::owner_keys(
            &pod.metadata,
            "DaemonSet",
            sets.iter().map(|d| (&d.metadata, &d.spec.selector)),
        )
    }

    /// True (and the remaining delay) while replacing failed pods on this
    /// node is backing off; otherwise starts the next, longer, backoff.
    fn failed_pod_backoff(&self, ds: &DaemonSet, node: &str) -> Option<Duration> {
        let key = format!("{}/{node}", ds.metadata.uid.as_deref().unwrap_or_default());
        let mut map = self
            .failed_backoff
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        match map.get(&key).copied() {
            Some((delay, since)) if now.duration_since(since) < delay => {
                Some(delay - now.duration_since(since))
            }
            Some((delay, since)) => {
                // Long quiet periods reset the backoff.
                let next = if now.duration_since(since) > 2 * FAILED_BACKOFF_MAX {
                    FAILED_BACKOFF_START
                } else {
                    (delay * 2).min(FAILED_BACKOFF_MAX)
                };
                map.insert(key, (next, now));
                None
            }
            None => {
                map.insert(key, (FAILED_BACKOFF_START, now));
                None
            }
        }
    }

    async fn sync(&self, key: &str) -> Result<Requeue, SyncError> {
        let Some((ns, name)) = key.split_once('/') else {
            return Ok(None);
        };
        let Some(ds) = self.sets.get(&ObjectRef::new(name).within(ns)) else {
            self.expectations.forget(key);
            self.expectations.forget(&deletions_key(key));
            return Ok(None);
        };
        if ds.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let selector = Selector::try_from(&ds.spec.selector)
            .map_err(|e| SyncError::Selector(e.to_string()))?;
        if selector.is_empty() {
            self.event(
                &ds,
                "Warning",
                "SelectingAll",
                "This daemon set is selecting all pods. A non-empty selector is required.".into(),
            );
            return Ok(None);
        }
        let collision_count = ds.status.as_ref().and_then(|s| s.collision_count);
        let owner = Owner {
            meta: &ds.metadata,
            kind: "DaemonSet",
            template: &ds.spec.template,
            selector: &selector,
            collision_count,
            hash_label: HASH_LABEL,
        };
        let history = match history::construct(&self.client, &owner, &self.revisions.state()).await
        {
            Ok(h) => h,
            Err(HistoryError::Collision { count, .. }) => {
                let api: Api<DaemonSet> = Api::namespaced(self.client.clone(), ns);
                let patch = json!({"status": {"collisionCount": count}});
                api.patch_status(name, &PatchParams::default(), &Patch::Merge(patch))
                    .await?;
                return Ok(Some(Duration::from_millis(10)));
            }
            Err(e) => return Err(e.into()),
        };
        let hash = history::revision_hash(&history.current);
        // Expectations are read before the pod cache: once they are met,
        // every pod this controller created or deleted is in the snapshot
        // below. (Read after it, a pod event landing in between would meet
        // them while the snapshot still lacked the pod: a second pod on
        // its node.)
        let del_key = deletions_key(key);
        let settled = self.expectations.satisfied(key) && self.expectations.satisfied(&del_key);
        let pods = claim_pods(
            &self.client,
            &self.pods.state(),
            &ds.metadata,
            controller_ref_for(&*ds)?,
            &selector,
            |_| true,
        )
        .await?;
        let mut by_node: BTreeMap<String, Vec<&Pod>> = BTreeMap::new();
        for pod in &pods {
            if let Some(node) = target_node(pod) {
                by_node.entry(node).or_default().push(pod);
            }
        }
        let nodes = self.nodes.state();
        let placements: BTreeMap<String, Placement> = nodes
            .iter()
            .map(|n| (name_of(&n.metadata), placement(&ds, n)))
            .collect();

        let mut requeue: Option<Duration> = None;
        if settled {
            let (delete, create_on, backoff) = self.manage(&ds, &placements, &by_node, &hash);
            requeue = backoff;
            if !delete.is_empty() || !create_on.is_empty() {
                self.sync_nodes(&ds, key, &delete, &create_on, &hash)
                    .await?;
            } else if !update::is_on_delete(&ds) {
                let mut rolling = by_node.clone();
                for (node, p) in &placements {
                    if p.should_run {
                        rolling.entry(node.clone()).or_default();
                    }
                }
                let should_run = |n: &str| placements.get(n).is_some_and(|p| p.should_run);
                let now = Time(k8s_openapi::jiff::Timestamp::now());
                let step = update::rolling_step(&ds, &rolling, &should_run, &hash, &now);
                if !step.delete.is_empty() || !step.create_on.is_empty() {
                    self.sync_nodes(&ds, key, &step.delete, &step.create_on, &hash)
                        .await?;
                }
            }
        }

        let live: HashSet<String> = pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter_map(|p| p.metadata.labels.as_ref()?.get(HASH_LABEL).cloned())
            .collect();
        let limit = ds.spec.revision_history_limit.unwrap_or(10);
        history::cleanup(&self.client, &history.old, &live, limit).await?;

        let status_requeue = self.write_status(&ds, &placements, &by_node, &hash).await?;
        Ok(match (requeue, status_requeue) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }

    /// Pods to delete and nodes needing a pod: nodes that should run a pod
    /// and have none get one; failed and finished pods are deleted (failed
    /// ones with backoff); extra pods on a node go; pods on nodes that no
    /// longer qualify, or that no longer exist, go. The third value is when
    /// to look again for a node in backoff.
    fn manage(
        &self,
        ds: &DaemonSet,
        placements: &BTreeMap<String, Placement>,
        by_node: &BTreeMap<String, Vec<&Pod>>,
        hash: &str,
    ) -> (Vec<String>, Vec<String>, Option<Duration>) {
        let desired = placements.values().filter(|p| p.should_run).count();
        let surge = !update::is_on_delete(ds)
            && update::surge_and_unavailable(ds, i32::try_from(desired).unwrap_or(i32::MAX)).0 > 0;
        let mut delete = Vec::new();
        let mut create_on = Vec::new();
        let mut backoff: Option<Duration> = None;
        for (node, p) in placements {
            let pods = by_node.get(node).map(Vec::as_slice).unwrap_or_default();
            if p.should_run && pods.is_empty() {
                create_on.push(node.clone());
            } else if p.should_continue_running {
                let mut running = Vec::new();
                for pod in pods
                    .iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_none())
                {
                    match rk_core::object::pod_phase(pod) {
                        "Failed" => {
                            if let Some(wait) = self.failed_pod_backoff(ds, node) {
                                backoff = Some(backoff.map_or(wait, |b| b.min(wait)));
                                continue;
                            }
                            let pod_name = name_of(&pod.metadata);
                            self.event(
                                ds,
                                "Warning",
                                "FailedDaemonPod",
                                format!(
                                    "Found failed daemon pod {}/{pod_name} on node {node}, will try to kill it",
                                    pod.metadata.namespace.as_deref().unwrap_or_default()
                                ),
                            );
                            delete.push(pod_name);
                        }
                        "Succeeded" => delete.push(name_of(&pod.metadata)),
                        _ => running.push(*pod),
                    }
                }
                delete.extend(
                    update::surplus_on_node(&running, hash, surge)
                        .into_iter()
                        .map(|p| name_of(&p.metadata)),
                );
            } else {
                delete.extend(
                    pods.iter()
                        .filter(|p| p.metadata.deletion_timestamp.is_none())
                        .map(|p| name_of(&p.metadata)),
                );
            }
        }
        // Pods pinned to nodes that are gone (bound ones are the pod GC's).
        for (node, pods) in by_node {
            if placements.contains_key(node) {
                continue;
            }
            delete.extend(
                pods.iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_none())
                    .filter(|p| !rk_core::object::is_pod_scheduled(p))
                    .map(|p| name_of(&p.metadata)),
            );
        }
        (delete, create_on, backoff)
    }

    /// Delete `delete` and create a pod on each of `create_on`, in
    /// slow-start batches (1, 2, 4, ...), recording expectations first.
    async fn sync_nodes(
        &self,
        ds: &DaemonSet,
        key: &str,
        delete: &[String],
        create_on: &[String],
        hash: &str,
    ) -> Result<(), SyncError> {
        let ns = ds.metadata.namespace.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let create_on = &create_on[..create_on.len().min(CREATE_BURST)];
        tracing::debug!(daemonset = %key, create = create_on.len(), delete = delete.len(), "syncing nodes");
        let del_key = deletions_key(key);
        self.expectations.expect_creations(key, create_on.len());
        self.expectations.expect_deletions(&del_key, delete.len());

        let mut first_error: Option<kube::Error> = None;
        let deletions = delete.iter().map(|name| {
            let api = api.clone();
            async move { (name, api.delete(name, &DeleteParams::default()).await) }
        });
        for (name, result) in futures::future::join_all(deletions).await {
            match result {
                Ok(_) => self.event(
                    ds,
                    "Normal",
                    "SuccessfulDelete",
                    format!("Deleted pod: {name}"),
                ),
                Err(e) => {
                    self.expectations.deletion_observed(&del_key);
                    if !matches!(&e, kube::Error::Api(s) if s.code == 404) {
                        self.event(
                            ds,
                            "Warning",
                            "FailedDelete",
                            format!("Error deleting: {e}"),
                        );
                        first_error.get_or_insert(e);
                    }
                }
            }
        }

        let template = self.pod_template(ds, hash);
        let owner = controller_ref_for(ds)?;
        let mut done = 0;
        let mut batch = 1;
        while done < create_on.len() {
            let chunk = &create_on[done..(done + batch).min(create_on.len())];
            let creations = chunk.iter().map(|node| {
                let mut pod = template.clone();
                pod.metadata.owner_references = Some(vec![owner.clone()]);
                if let Some(spec) = pod.spec.as_mut() {
                    spec.affinity = Some(pin_to_node(spec.affinity.take(), node));
                }
                let api = api.clone();
                async move { (node, api.create(&PostParams::default(), &pod).await) }
            });
            let mut failed = 0;
            for (node, result) in futures::future::join_all(creations).await {
                match result {
                    Ok(p) => self.event(
                        ds,
                        "Normal",
                        "SuccessfulCreate",
                        format!("Created pod: {}", name_of(&p.metadata)),
                    ),
                    Err(e) => {
                        failed += 1;
                        tracing::warn!(daemonset = %key, node = %node, error = %e, "creating a daemon pod failed");
                        self.event(
                            ds,
                            "Warning",
                            "FailedCreate",
                            format!("Error creating: {e}"),
                        );
                        first_error.get_or_insert(e);
                    }
                }
            }
            done += chunk.len();
            if failed > 0 {
                let skipped = create_on.len() - done;
                self.expectations.creation_observed_n(key, failed + skipped);
                break;
            }
            batch *= 2;
        }
        match first_error {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    /// The pod the DaemonSet creates (before it is pinned to a node).
    fn pod_template(&self, ds: &DaemonSet, hash: &str) -> Pod {
        let template = &ds.spec.template;
        let tmeta = template.metadata.clone().unwrap_or_default();
        let mut labels = tmeta.labels.unwrap_or_default();
        labels.insert(HASH_LABEL.into(), hash.to_string());
        if let Some(g) = ds.metadata.generation {
            labels.insert(TEMPLATE_GENERATION_LABEL.into(), g.to_string());
        }
        let mut spec = template.spec.clone().unwrap_or_default();
        add_daemon_tolerations(&mut spec);
        Pod {
            metadata: ObjectMeta {
                generate_name: Some(format!("{}-", name_of(&ds.metadata))),
                namespace: ds.metadata.namespace.clone(),
                labels: Some(labels),
                annotations: tmeta.annotations,
                finalizers: tmeta.finalizers,
                ..ObjectMeta::default()
            },
            spec: Some(spec),
            status: None,
        }
    }

    /// Write the status counts; asks to look again after `minReadySeconds`
    /// while some ready pods are not yet available.
    async fn write_status(
        &self,
        ds: &DaemonSet,
        placements: &BTreeMap<String, Placement>,
        by_node: &BTreeMap<String, Vec<&Pod>>,
        hash: &str,
    ) -> Result<Requeue, SyncError> {
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let min_ready = ds.spec.min_ready_seconds.unwrap_or(0);
        let (mut desired, mut current, mut misscheduled) = (0, 0, 0);
        let (mut ready, mut available, mut updated) = (0, 0, 0);
        for (node, p) in placements {
            let mut active: Vec<&Pod> = by_node
                .get(node)
                .into_iter()
                .flatten()
                .copied()
                .filter(|p| rk_core::object::is_pod_active(p))
                .collect();
            if p.should_run {
                desired += 1;
                if active.is_empty() {
                    continue;
                }
                current += 1;
                update::oldest_first(&mut active);
                let pod = active[0];
                if is_pod_ready(pod) {
                    ready += 1;
                    if is_pod_available(pod, min_ready, &now) {
                        available += 1;
                    }
                }
                if update::is_updated(pod, hash) {
                    updated += 1;
                }
            } else if !active.is_empty() {
                misscheduled += 1;
            }
        }
        let status = json!({
            "observedGeneration": ds.metadata.generation,
            "desiredNumberScheduled": desired,
            "currentNumberScheduled": current,
            "numberMisscheduled": misscheduled,
            "numberReady": ready,
            "numberAvailable": available,
            "numberUnavailable": desired - available,
            "updatedNumberScheduled": updated,
        });
        let prev = serde_json::to_value(ds.status.clone().unwrap_or_default()).unwrap_or_default();
        let changed = status
            .as_object()
            .into_iter()
            .flatten()
            .any(|(k, v)| prev.get(k).filter(|p| !p.is_null()).unwrap_or(&json!(0)) != v);
        if changed {
            let ns = ds.metadata.namespace.clone().unwrap_or_default();
            let api: Api<DaemonSet> = Api::namespaced(self.client.clone(), &ns);
            ignore_not_found(
                api.patch_status(
                    &name_of(&ds.metadata),
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": status})),
                )
                .await,
            )?;
        }
        let requeue = (min_ready > 0 && ready != available)
            .then(|| Duration::from_secs(u64::try_from(min_ready).unwrap_or(0)));
        Ok(requeue)
    }
}

/// Run the DaemonSet controller with `workers` concurrent syncs.
pub async fn run(client: kube::Client, workers: usize) {
    let informers = crate::watch::Informers::new(&client);
    run_shared(client, workers, informers).await
}

/// Run the DaemonSet controller on `informers`' shared pods and nodes.
pub async fn run_shared(client: kube::Client, workers: usize, informers: crate::watch::Informers) {
    let (sets, ds_writer) = reflector::store::<DaemonSet>();
    let pods = informers.pods.store();
    let nodes = informers.nodes.store();
    let (revisions, rev_writer) = reflector::store::<ControllerRevision>();
    let queue = WorkQueue::new();
    let ctrl = Arc::new(Controller {
        client: client.clone(),
        sets,
        pods,
        nodes,
        revisions,
        recorder: Recorder::new(client.clone(), "daemonset-controller"),
        expectations: Expectations::default(),
        queue: queue.clone(),
        failed_backoff: Mutex::default(),
        node_prints: Mutex::default(),
    });
    let q = queue.clone();
    let ds_events = reflector::reflector(
        ds_writer,
        crate::watch::lean_watcher(
            Api::<DaemonSet>::all(client.clone()),
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
    let c = ctrl.clone();
    let pod_events = informers.pods.subscribe().for_each(move |ev| {
        let (pod, deleted) = match ev {
            Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => (p, false),
            Ok(watcher::Event::Delete(p)) => (p, true),
            _ => return futures::future::ready(()),
        };
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let controlled = controller_of(&pod.metadata).is_some();
        for key in c.sets_for_pod(&pod) {
            if controlled {
                c.expectations.creation_observed(&key, &uid);
                if deleted || pod.metadata.deletion_timestamp.is_some() {
                    c.expectations
                        .pod_leaving(&deletions_key(&key), &uid, deleted);
                }
            }
            c.queue.add(key);
        }
        futures::future::ready(())
    });
    let c = ctrl.clone();
    let node_events = informers.nodes.subscribe().for_each(move |ev| {
        let changed = {
            let mut prints = c.node_prints.lock().unwrap_or_else(|p| p.into_inner());
            match ev {
                Ok(watcher::Event::Apply(n) | watcher::Event::InitApply(n)) => {
                    let print = node_fingerprint(&n);
                    prints.insert(name_of(&n.metadata), print.clone()) != Some(print)
                }
                Ok(watcher::Event::Delete(n)) => {
                    prints.remove(&name_of(&n.metadata));
                    true
                }
                _ => false,
            }
        };
        if changed {
            c.enqueue_all();
        }
        futures::future::ready(())
    });
    let q = queue.clone();
    let rev_events = reflector::reflector(
        rev_writer,
        crate::watch::lean_watcher(
            Api::<ControllerRevision>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .for_each(move |ev| {
        if let Ok(watcher::Event::Delete(r)) = ev
            && let Some(owner) = controller_of(&r.metadata)
            && owner.kind == "DaemonSet"
        {
            q.add(key_of(
                r.metadata.namespace.as_deref().unwrap_or_default(),
                &owner.name,
            ));
        }
        futures::future::ready(())
    });
    let c = ctrl.clone();
    let work = queue::run_workers("daemonset", queue, workers, move |key| {
        let c = c.clone();
        async move {
            crate::watch::store_ready(&c.sets).await;
            crate::watch::store_ready(&c.pods).await;
            crate::watch::store_ready(&c.nodes).await;
            crate::watch::store_ready(&c.revisions).await;
            c.sync(&key).await
        }
    });
    tokio::join!(ds_events, pod_events, node_events, rev_events, work);
}
