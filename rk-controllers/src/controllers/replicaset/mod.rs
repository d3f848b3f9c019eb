//! The ReplicaSet controller: keeps `spec.replicas` pods matching the
//! selector, owned through a controller reference.
//!
//! The sync reads as upstream's (`pkg/controller/replicaset`): list the
//! namespace's pods from the cache, claim them (adopt matching orphans,
//! release owned pods that no longer match), and — once the expectations of
//! the previous sync are met, so a slow watch never causes over-creation —
//! create the missing pods in slow-start batches (1, 2, 4, ... capped at 500
//! a sync) or delete the surplus, lowest-ranked first; then write status.

pub mod expectations;
pub mod ranking;
pub mod workload;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

use expectations::Expectations;
pub use workload::ReplicaWorkload;

/// Labels of a pod that has none.
static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

/// The most pods created or deleted in one sync (upstream `BurstReplicas`).
pub const BURST_REPLICAS: usize = 500;

/// Errors of one sync.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// An API call failed.
    #[error("{0}")]
    Kube(#[from] kube::Error),
    /// The ReplicaSet's selector is invalid.
    #[error("invalid selector: {0}")]
    Selector(String),
}

fn key_of(ns: &str, name: &str) -> String {
    format!("{ns}/{name}")
}

fn controller_uid(pod: &Pod) -> Option<&str> {
    pod.metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true))
        .map(|o| o.uid.as_str())
}

fn is_active(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    pod.metadata.deletion_timestamp.is_none()
        && !matches!(phase, Some("Succeeded") | Some("Failed"))
}

/// Shared state of the controller.
pub struct Controller<K: ReplicaWorkload> {
    client: kube::Client,
    pods: Store<Pod>,
    sets: Store<K>,
    expectations: Expectations,
    queue: Mutex<(
        HashSet<String>,
        Option<tokio::sync::mpsc::UnboundedSender<String>>,
    )>,
}

impl<K: ReplicaWorkload> Controller<K> {
    fn enqueue(&self, key: String) {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        if q.0.insert(key.clone())
            && let Some(tx) = &q.1
        {
            let _ = tx.send(key);
        }
    }

    /// Sets that should look at a pod: its controller, or (for orphans) every
    /// set in its namespace whose selector matches it.
    fn sets_for_pod(&self, pod: &Pod) -> Vec<String> {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        if let Some(r) = pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true))
        {
            if r.kind == K::KIND {
                return vec![key_of(&ns, &r.name)];
            }
            return Vec::new();
        }
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        self.sets
            .state()
            .iter()
            .filter(|rs| rs.meta().namespace.as_deref() == Some(ns.as_str()))
            .filter(|rs| {
                rs.selector()
                    .is_ok_and(|s| !s.is_empty() && s.matches(&labels))
            })
            .filter_map(|rs| rs.meta().name.clone().map(|n| key_of(&ns, &n)))
            .collect()
    }

    async fn sync(&self, key: &str) -> Result<Option<Duration>, SyncError> {
        let Some((ns, name)) = key.split_once('/') else {
            return Ok(None);
        };
        let Some(rs) = self.sets.state().into_iter().find(|r| {
            r.meta().namespace.as_deref() == Some(ns) && r.meta().name.as_deref() == Some(name)
        }) else {
            self.expectations.forget(key);
            return Ok(None);
        };
        let uid = rs.meta().uid.clone().unwrap_or_default();
        let selector = rs.selector().map_err(SyncError::Selector)?;
        let pods_api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        // Read before the pod cache, so met expectations mean the snapshot
        // holds every pod created or deleted (see the DaemonSet controller).
        let settled = self.expectations.satisfied(key);
        let all: Vec<Arc<Pod>> = self
            .pods
            .state()
            .into_iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(ns))
            .collect();
        // Claim: adopt matching orphans, release owned pods that stopped matching.
        let mut owned: Vec<Arc<Pod>> = Vec::new();
        for p in all.iter() {
            let matches = !selector.is_empty()
                && selector.matches(p.metadata.labels.as_ref().unwrap_or(&NO_LABELS));
            let pname = p.metadata.name.clone().unwrap_or_default();
            match controller_uid(p) {
                Some(u) if u == uid => {
                    if matches {
                        owned.push(p.clone());
                    } else if p.metadata.deletion_timestamp.is_none() {
                        let refs: Vec<_> = p
                            .metadata
                            .owner_references
                            .iter()
                            .flatten()
                            .filter(|o| o.uid != uid)
                            .cloned()
                            .collect();
                        let patch = json!({"metadata": {"ownerReferences": refs, "resourceVersion": p.metadata.resource_version}});
                        let _ = pods_api
                            .patch(&pname, &PatchParams::default(), &Patch::Merge(&patch))
                            .await;
                    }
                }
                None if matches && rs.meta().deletion_timestamp.is_none() && is_active(p) => {
                    let mut refs = p.metadata.owner_references.clone().unwrap_or_default();
                    refs.push(
                        rk_core::object::controller_ref_for(rs.as_ref())
                            .map_err(|e| SyncError::Selector(e.to_string()))?,
                    );
                    let patch = json!({"metadata": {"ownerReferences": refs, "resourceVersion": p.metadata.resource_version}});
                    match pods_api
                        .patch(&pname, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                    {
                        Ok(_) => {
                            let mut adopted = (**p).clone();
                            adopted.metadata.owner_references = Some(refs);
                            owned.push(Arc::new(adopted));
                        }
                        // Gone: nothing to adopt.
                        Err(kube::Error::Api(e)) if e.code == 404 => {}
                        // As upstream's claim: a pod that could not be adopted
                        // (a conflict with a newer copy, say) fails the sync,
                        // which is retried, rather than being replaced by a
                        // new pod and adopted later as a surplus one.
                        Err(e) => return Err(e.into()),
                    }
                }
                _ => {}
            }
        }
        let active: Vec<Arc<Pod>> = owned.iter().filter(|p| is_active(p)).cloned().collect();
        let want = rs.replicas() as usize;
        let mut failure: Option<String> = None;
        if settled && rs.meta().deletion_timestamp.is_none() {
            if active.len() < want {
                let missing = (want - active.len()).min(BURST_REPLICAS);
                self.expectations.expect_creations(key, missing);
                let template = rs.template();
                let owner = rk_core::object::controller_ref_for(rs.as_ref())
                    .map_err(|e| SyncError::Selector(e.to_string()))?;
                let mut created = 0;
                let mut batch = 1;
                'batches: while created < missing {
                    let n = batch.min(missing - created);
                    let mut tasks = Vec::new();
                    for _ in 0..n {
                        let mut pod = Pod {
                            metadata: template.metadata.clone().unwrap_or_default(),
                            spec: template.spec.clone(),
                            status: None,
                        };
                        pod.metadata.name = None;
                        pod.metadata.generate_name = Some(format!("{name}-"));
                        pod.metadata.namespace = Some(ns.to_string());
                        pod.metadata.owner_references = Some(vec![owner.clone()]);
                        let api = pods_api.clone();
                        tasks.push(async move { api.create(&PostParams::default(), &pod).await });
                    }
                    let results = futures::future::join_all(tasks).await;
                    for r in results {
                        match r {
                            Ok(_) => created += 1,
                            Err(e) => {
                                failure = Some(e.to_string());
                                // Skipped creations will never be observed.
                                self.expectations
                                    .creation_observed_n(key, missing - created);
                                break 'batches;
                            }
                        }
                    }
                    batch *= 2;
                }
            } else if active.len() > want {
                let surplus = (active.len() - want).min(BURST_REPLICAS);
                // Only a scale-down pays for full copies (the ranking owns them).
                let active: Vec<Pod> = active.iter().map(|p| (**p).clone()).collect();
                let mut victims = active.clone();
                ranking::sort_for_deletion(&mut victims, &active);
                victims.truncate(surplus);
                self.expectations.expect_deletions(key, surplus);
                for v in victims {
                    let pname = v.metadata.name.clone().unwrap_or_default();
                    if let Err(e) = pods_api.delete(&pname, &DeleteParams::default()).await {
                        self.expectations.deletion_observed(key);
                        if !matches!(&e, kube::Error::Api(s) if s.code == 404) {
                            failure = Some(e.to_string());
                        }
                    }
                }
            }
        }
        self.write_status(&rs, &owned, failure).await?;
        // Ready pods become available after minReadySeconds: look again then.
        let min_ready = rs.min_ready_seconds();
        let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now());
        let waiting = owned.iter().any(|p| {
            is_active(p)
                && rk_core::object::is_pod_ready(p)
                && !rk_core::object::is_pod_available(p, min_ready, &now)
        });
        Ok((min_ready > 0 && waiting).then(|| Duration::from_secs(min_ready.max(1) as u64)))
    }

    async fn write_status(
        &self,
        rs: &K,
        owned: &[Arc<Pod>],
        failure: Option<String>,
    ) -> Result<(), SyncError> {
        let ns = rs.meta().namespace.clone().unwrap_or_default();
        let name = rs.meta().name.clone().unwrap_or_default();
        let template_labels: BTreeMap<String, String> = rs
            .template()
            .metadata
            .and_then(|m| m.labels)
            .unwrap_or_default();
        let active: Vec<&Pod> = owned
            .iter()
            .map(|p| p.as_ref())
            .filter(|p| is_active(p))
            .collect();
        let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now());
        let min_ready = rs.min_ready_seconds();
        let fully_labeled = active
            .iter()
            .filter(|p| {
                let l = p.metadata.labels.as_ref().unwrap_or(&NO_LABELS);
                template_labels.iter().all(|(k, v)| l.get(k) == Some(v))
            })
            .count();
        let ready = active
            .iter()
            .filter(|p| rk_core::object::is_pod_ready(p))
            .count();
        let available = active
            .iter()
            .filter(|p| rk_core::object::is_pod_available(p, min_ready, &now))
            .count();
        let mut conditions: Vec<serde_json::Value> = Vec::new();
        if let Some(msg) = failure {
            conditions.push(json!({"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": msg,
                                   "lastTransitionTime": now.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()}));
        }
        let status = json!({
            "replicas": active.len(),
            "fullyLabeledReplicas": fully_labeled,
            "readyReplicas": ready,
            "availableReplicas": available,
            "observedGeneration": rs.meta().generation,
            "conditions": if conditions.is_empty() { serde_json::Value::Null } else { json!(conditions) },
        });
        let current = rs.status_json();
        let unchanged = [
            "replicas",
            "fullyLabeledReplicas",
            "readyReplicas",
            "availableReplicas",
            "observedGeneration",
        ]
        .iter()
        .all(|k| current.get(*k).unwrap_or(&json!(0)) == status.get(*k).unwrap_or(&json!(0)))
            && conditions.is_empty()
            && current.get("conditions").is_none_or(|c| c.is_null());
        if unchanged {
            return Ok(());
        }
        let api: Api<K> = Api::namespaced(self.client.clone(), &ns);
        match api
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(&json!({"status": status})),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// Run the ReplicaSet controller with `workers` concurrent syncs.
pub async fn run(client: kube::Client, workers: usize) {
    run_for::<k8s_openapi::api::apps::v1::ReplicaSet>(client, workers).await
}

/// Run the ReplicationController controller with `workers` concurrent syncs.
pub async fn run_replication_controllers(client: kube::Client, workers: usize) {
    run_for::<k8s_openapi::api::core::v1::ReplicationController>(client, workers).await
}

/// Run the replica controller for kind `K` with `workers` concurrent syncs.
pub async fn run_for<K: ReplicaWorkload>(client: kube::Client, workers: usize) {
    let informers = crate::watch::Informers::new(&client);
    run_shared::<K>(client, workers, informers).await
}

/// Run the replica controller for kind `K` on `informers`' shared pods.
pub async fn run_shared<K: ReplicaWorkload>(
    client: kube::Client,
    workers: usize,
    informers: crate::watch::Informers,
) {
    let pod_store = informers.pods.store();
    let (rs_store, rs_writer) = reflector::store::<K>();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let ctrl = Arc::new(Controller {
        client: client.clone(),
        pods: pod_store,
        sets: rs_store,
        expectations: Expectations::default(),
        queue: Mutex::new((HashSet::new(), Some(tx))),
    });
    let c = ctrl.clone();
    let pods = informers.pods.subscribe().for_each(move |ev| {
        let c = c.clone();
        async move {
            let Ok(ev) = ev else { return };
            let (pod, deleted) = match ev {
                watcher::Event::Apply(p) | watcher::Event::InitApply(p) => (p, false),
                watcher::Event::Delete(p) => (p, true),
                _ => return,
            };
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            for key in c.sets_for_pod(&pod) {
                if controller_uid(&pod).is_some() {
                    c.expectations.creation_observed(&key, &uid);
                    if deleted || pod.metadata.deletion_timestamp.is_some() {
                        c.expectations.pod_leaving(&key, &uid, deleted);
                    }
                }
                c.enqueue(key);
            }
        }
    });
    let c = ctrl.clone();
    let sets = reflector::reflector(
        rs_writer,
        crate::watch::lean_watcher(Api::<K>::all(client.clone()), watcher::Config::default()),
    )
    .default_backoff()
    .for_each(move |ev| {
        let c = c.clone();
        async move {
            if let Ok(
                watcher::Event::Apply(rs)
                | watcher::Event::InitApply(rs)
                | watcher::Event::Delete(rs),
            ) = ev
                && let (Some(ns), Some(n)) = (rs.meta().namespace.clone(), rs.meta().name.clone())
            {
                c.enqueue(key_of(&ns, &n));
            }
        }
    });
    let semaphore = Arc::new(tokio::sync::Semaphore::new(workers.max(1)));
    let processing: Arc<Mutex<HashSet<String>>> = Default::default();
    let c = ctrl.clone();
    let work = async move {
        while let Some(key) = rx.recv().await {
            // A key is never synced by two workers at once: if it is being
            // processed, it goes back to the queue for afterwards.
            if !processing
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key.clone())
            {
                let c = c.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    c.queue
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                        .remove(&key);
                    c.enqueue(key);
                });
                continue;
            }
            c.queue
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .0
                .remove(&key);
            let Ok(permit) = semaphore.clone().acquire_owned().await else {
                return;
            };
            let c = c.clone();
            let processing = processing.clone();
            tokio::spawn(async move {
                // Nothing is synced before both caches hold a full list: a
                // sync on a half-listed pod cache would miss pods it owns
                // or could adopt, and create more.
                crate::watch::store_ready(&c.pods).await;
                crate::watch::store_ready(&c.sets).await;
                let started = std::time::Instant::now();
                let result = c.sync(&key).await;
                let outcome = match &result {
                    Ok(None) => "success",
                    Ok(Some(_)) => "requeue_after",
                    Err(_) => "error",
                };
                crate::metrics::controllers().observe(
                    &K::KIND.to_lowercase(),
                    outcome,
                    started.elapsed().as_secs_f64(),
                );
                processing
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&key);
                drop(permit);
                match result {
                    Ok(None) => {}
                    Ok(Some(after)) => {
                        tokio::time::sleep(after).await;
                        c.enqueue(key);
                    }
                    Err(e) => {
                        tracing::warn!(replicaset = %key, error = %e, "sync failed; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        c.enqueue(key);
                    }
                }
            });
        }
    };
    tokio::join!(pods, sets, work);
}
