//! The pod manager: one watch over the pods bound to the kubelet's nodes,
//! admission of new pods, a worker per admitted pod, and clean-up when a
//! pod leaves the API.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use kube::Api;
use kube::api::{DeleteParams, Preconditions};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::watch;

use super::Shared;
use super::admission;
use super::node_status::NodeCtx;
use super::pod_worker::{self, PodState};
use super::status;

struct Worker {
    state: Arc<PodState>,
    stop: watch::Sender<Option<Option<Duration>>>,
    task: tokio::task::JoinHandle<()>,
}

struct Manager {
    shared: Arc<Shared>,
    nodes: HashMap<String, Arc<NodeCtx>>,
    /// Workers by node, then by pod uid (admission looks at one node's pods;
    /// a pod's node never changes once it is bound).
    workers: HashMap<String, HashMap<String, Worker>>,
    rejected: HashSet<String>,
}

fn uid_of(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

fn phase_of(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

/// Decrements the worker count when a worker ends.
struct ActiveGuard(Arc<Shared>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active_workers.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Manager {
    /// Remove a pod from the API once the kubelet is done with it.
    fn finalize_deletion(&self, pod: &Pod) {
        let api: Api<Pod> = Api::namespaced(
            self.shared.client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or_default(),
        );
        let name = pod.metadata.name.clone().unwrap_or_default();
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        tokio::spawn(async move {
            if let Err(e) = api.delete(&name, &params).await
                && !matches!(&e, kube::Error::Api(a) if a.code == 404 || a.code == 409)
            {
                tracing::warn!(pod = %name, error = %e, "removing the pod failed");
            }
        });
    }

    fn apply(&mut self, pod: Pod) {
        let Some(node_name) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
            return;
        };
        let Some(node) = self.nodes.get(&node_name).cloned() else {
            return;
        };
        let uid = uid_of(&pod);
        let deleting = pod.metadata.deletion_timestamp.is_some();
        if let Some(w) = self.workers.get(&node_name).and_then(|on| on.get(&uid)) {
            w.state.set_pod(pod.clone());
            if deleting {
                if w.task.is_finished() {
                    self.finalize_deletion(&pod);
                } else if w.stop.borrow().is_none() {
                    let grace = pod
                        .metadata
                        .deletion_grace_period_seconds
                        .map(|s| Duration::from_secs(s.max(0) as u64));
                    let _ = w.stop.send(Some(grace));
                }
            }
            return;
        }
        if self.rejected.contains(&uid) {
            if deleting {
                self.finalize_deletion(&pod);
            }
            return;
        }
        if matches!(phase_of(&pod), "Succeeded" | "Failed") || deleting {
            // Finished before this kubelet saw it (or never started): nothing
            // to run; a deleted one is removed.
            if deleting {
                self.finalize_deletion(&pod);
            }
            return;
        }
        let admitted: Vec<Arc<Pod>> = self
            .workers
            .get(&node_name)
            .into_iter()
            .flat_map(HashMap::values)
            .filter(|w| !w.state.is_terminal())
            .map(|w| w.state.pod())
            .collect();
        let node_obj = node.node().unwrap_or_default();
        if let Err(rejection) = admission::admit(&pod, &node_obj, &admitted) {
            tracing::info!(pod = ?pod.metadata.name, reason = %rejection.reason, message = %rejection.message, "pod rejected");
            self.shared
                .metrics
                .rejections
                .fetch_add(1, Ordering::Relaxed);
            self.shared.pod_event(
                &pod,
                "Warning",
                &rejection.reason,
                rejection.message.clone(),
            );
            self.rejected.insert(uid);
            let shared = self.shared.clone();
            tokio::spawn(async move {
                let status = PodStatus {
                    phase: Some("Failed".to_owned()),
                    reason: Some(rejection.reason),
                    message: Some(rejection.message),
                    start_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                        jiff::Timestamp::now(),
                    )),
                    ..PodStatus::default()
                };
                if let Err(e) = status::write(&shared.client, &pod, &status).await {
                    tracing::warn!(error = %e, "writing a rejection failed");
                }
            });
            return;
        }
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let state = Arc::new(PodState::new(pod, self.shared.pod_dir(&uid)));
        self.shared.add_pod_state(&ns, &name, state.clone());
        let (stop, stop_rx) = watch::channel(None);
        self.shared.active_workers.fetch_add(1, Ordering::Relaxed);
        let guard = ActiveGuard(self.shared.clone());
        // One task per pod (the guard goes with it, also if it panics). The
        // worker's future is made inside the task: made outside and moved
        // in, it would take room twice in every pod's task.
        let shared = self.shared.clone();
        let worker_state = state.clone();
        let task = tokio::spawn(async move {
            let _guard = guard;
            pod_worker::run(shared, node, worker_state, stop_rx).await
        });
        self.workers
            .entry(node_name)
            .or_default()
            .insert(uid, Worker { state, stop, task });
    }

    /// Take the worker of `pod` out of the map: under its node, or under
    /// any node if the object does not say (or says another).
    fn take_worker(&mut self, pod: &Pod, uid: &str) -> Option<Worker> {
        let named = pod.spec.as_ref().and_then(|s| s.node_name.clone());
        let node = named
            .filter(|n| self.workers.get(n).is_some_and(|on| on.contains_key(uid)))
            .or_else(|| {
                self.workers
                    .iter()
                    .find(|(_, on)| on.contains_key(uid))
                    .map(|(n, _)| n.clone())
            })?;
        let on = self.workers.get_mut(&node)?;
        let worker = on.remove(uid);
        if on.is_empty() {
            self.workers.remove(&node);
        }
        worker
    }

    fn delete(&mut self, pod: &Pod) {
        let uid = uid_of(pod);
        self.rejected.remove(&uid);
        let Some(w) = self.take_worker(pod, &uid) else {
            return;
        };
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        if w.stop.borrow().is_none() {
            // Gone from the API without a graceful deletion: stop quickly.
            let _ = w.stop.send(Some(Some(Duration::from_secs(1))));
        }
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let _ = w.task.await;
            drop(w.stop);
            shared.remove_pod_state(&ns, &name, &uid);
            let dir = shared.pod_dir(&uid);
            if let Err(e) = tokio::fs::remove_dir_all(&dir).await
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::debug!(dir = %dir.display(), error = %e, "removing the pod directory failed");
            }
        });
    }
}

/// Watch the nodes' pods and run them, until dropped.
pub async fn run(shared: Arc<Shared>, nodes: Vec<Arc<NodeCtx>>) {
    let api: Api<Pod> = Api::all(shared.client.clone());
    let selector = match nodes.as_slice() {
        [only] => format!("spec.nodeName={}", only.name),
        _ => "spec.nodeName!=".to_owned(),
    };
    let mut manager = Manager {
        shared: shared.clone(),
        nodes: nodes.iter().map(|n| (n.name.clone(), n.clone())).collect(),
        workers: HashMap::new(),
        rejected: HashSet::new(),
    };
    let mut events = crate::watch::lean_watcher(api, watcher::Config::default().fields(&selector))
        .default_backoff()
        .boxed();
    let mut seen: Option<HashSet<String>> = None;
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Init) => seen = Some(HashSet::new()),
            Ok(watcher::Event::InitApply(pod)) => {
                if let Some(seen) = seen.as_mut() {
                    seen.insert(uid_of(&pod));
                }
                manager.apply(pod);
            }
            Ok(watcher::Event::InitDone) => {
                // Pods that disappeared while the watch was down.
                let seen = seen.take().unwrap_or_default();
                let gone: Vec<Arc<Pod>> = manager
                    .workers
                    .values()
                    .flatten()
                    .filter(|(uid, _)| !seen.contains(*uid))
                    .map(|(_, w)| w.state.pod())
                    .collect();
                for pod in gone {
                    manager.delete(&pod);
                }
            }
            Ok(watcher::Event::Apply(pod)) => manager.apply(pod),
            Ok(watcher::Event::Delete(pod)) => manager.delete(&pod),
            Err(e) => tracing::debug!(error = %e, "pod watch error"),
        }
    }
}
