//! The running scheduler: watches feed the cache and the queue; one loop
//! pops pods and runs scheduling cycles on a snapshot; bindings run on
//! their own tasks so the next pod is scheduled while the last one binds;
//! failures are reported (PodScheduled=False, FailedScheduling event) off
//! the loop too.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Event, EventSource, Node, ObjectReference, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use tokio::sync::{Notify, mpsc};

use super::algorithm::{Algorithm, ScheduleError};
use super::cache::{Cache, Snapshot};
use super::framework::{CycleState, Framework, Handle, PostFilterResult};
use super::metrics::{self, Metrics};
use super::queue::{ClusterEvent, QueuedPodInfo, SchedulingQueue};
use super::types::{PodInfo, assigned_pod_info, pod_key, slim_pending};

/// How often backoff and unschedulable pods are flushed and assumed pods expired.
const FLUSH_INTERVAL: Duration = Duration::from_millis(200);
/// How many API events may wait to be written before new ones are dropped.
const EVENT_BUFFER: usize = 4096;

/// State shared by the scheduler's tasks.
pub struct Scheduler {
    pub(crate) client: kube::Client,
    pub(crate) profiles: HashMap<String, Arc<Framework>>,
    pub(crate) cache: Mutex<Cache>,
    pub(crate) queue: Mutex<SchedulingQueue>,
    pub(crate) wake: Notify,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) percentage: i32,
    handle: Handle,
    events: mpsc::Sender<Event>,
    record_scheduled_events: bool,
    pods_synced: AtomicBool,
    nodes_synced: AtomicBool,
    synced: Notify,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

fn assigned_node(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

fn node_changed(old: &Node, new: &Node) -> bool {
    old.metadata.labels != new.metadata.labels
        || old.spec != new.spec
        || old.status.as_ref().map(|s| (&s.allocatable, &s.images))
            != new.status.as_ref().map(|s| (&s.allocatable, &s.images))
}

impl Scheduler {
    /// A scheduler over these profiles; `run` starts it.
    pub fn new(
        client: kube::Client,
        handle: Handle,
        profiles: Vec<Arc<Framework>>,
        percentage: i32,
        metrics: Arc<Metrics>,
        record_scheduled_events: bool,
    ) -> Arc<Self> {
        let (tx, rx) = mpsc::channel(EVENT_BUFFER);
        let this = Arc::new(Self {
            profiles: profiles
                .into_iter()
                .map(|p| (p.scheduler_name.clone(), p))
                .collect(),
            cache: Mutex::new(Cache::new()),
            queue: Mutex::new(SchedulingQueue::new()),
            wake: Notify::new(),
            metrics,
            percentage,
            handle,
            events: tx,
            record_scheduled_events,
            pods_synced: AtomicBool::new(false),
            nodes_synced: AtomicBool::new(false),
            synced: Notify::new(),
            client: client.clone(),
        });
        tokio::spawn(write_events(client, rx));
        this
    }

    fn profile_for(&self, pod: &PodInfo) -> Option<&Arc<Framework>> {
        self.profiles.get(pod.scheduler_name())
    }

    fn any_profile(&self) -> Option<&Arc<Framework>> {
        self.profiles.values().next()
    }

    fn move_all(&self, event: ClusterEvent) {
        let moved = lock(&self.queue).move_all(event, Instant::now());
        if moved > 0 {
            self.wake.notify_one();
        }
    }

    /// A pod was added or changed.
    pub(crate) fn on_pod(&self, pod: Pod) {
        let key = pod_key(&pod);
        if is_terminal(&pod) {
            let removed = lock(&self.cache).remove_pod(&key).is_some();
            lock(&self.queue).delete(&key);
            if removed {
                self.move_all(ClusterEvent::AssignedPodDelete);
            }
            return;
        }
        if let Some(node) = assigned_node(&pod).map(str::to_owned) {
            lock(&self.queue).delete(&key);
            let info = Arc::new(assigned_pod_info(pod));
            let event = {
                let mut cache = lock(&self.cache);
                let known = cache.node_of(&key).is_some() && !cache.is_assumed(&key);
                cache.add_or_update_pod(info, &node);
                if known {
                    ClusterEvent::AssignedPodUpdate
                } else {
                    ClusterEvent::AssignedPodAdd
                }
            };
            self.move_all(event);
            return;
        }
        if pod.metadata.deletion_timestamp.is_some() {
            lock(&self.queue).delete(&key);
            return;
        }
        let info = Arc::new(PodInfo::new(Arc::new(slim_pending(pod))));
        let Some(fw) = self.profile_for(&info) else {
            return;
        };
        if lock(&self.cache).is_assumed(&key) {
            return;
        }
        lock(&self.queue).add(fw, info, Instant::now());
        self.wake.notify_one();
    }

    /// A pod was deleted.
    pub(crate) fn on_pod_deleted(&self, key: &str) {
        let removed = lock(&self.cache).remove_pod(key).is_some();
        lock(&self.queue).delete(key);
        if removed {
            self.move_all(ClusterEvent::AssignedPodDelete);
        }
    }

    /// A node was added or changed.
    pub(crate) fn on_node(&self, node: Node, previous: Option<&Node>) {
        let event = match previous {
            None => ClusterEvent::NodeAdd,
            Some(old) if node_changed(old, &node) => ClusterEvent::NodeUpdate,
            Some(_) => return,
        };
        lock(&self.cache).add_or_update_node(Arc::new(node));
        self.move_all(event);
    }

    /// A node was deleted.
    pub(crate) fn on_node_deleted(&self, name: &str) {
        lock(&self.cache).remove_node(name);
    }

    async fn wait_for_sync(&self) {
        loop {
            let notified = self.synced.notified();
            if self.pods_synced.load(Ordering::Acquire) && self.nodes_synced.load(Ordering::Acquire)
            {
                return;
            }
            notified.await;
        }
    }

    /// The scheduling loop: pop, schedule, assume, hand off to binding.
    pub(crate) async fn scheduling_loop(self: Arc<Self>) {
        self.wait_for_sync().await;
        tracing::info!(
            nodes = lock(&self.cache).node_count(),
            "scheduler caches synced; scheduling"
        );
        let mut snapshot = Snapshot::new();
        let mut algorithm = Algorithm::new(self.percentage);
        loop {
            let notified = self.wake.notified();
            let next = {
                let mut q = lock(&self.queue);
                let popped = q.pop();
                popped.map(|p| (p, q.scheduling_cycle()))
            };
            let Some((qpi, cycle)) = next else {
                notified.await;
                continue;
            };
            self.schedule_one(qpi, cycle, &mut snapshot, &mut algorithm);
            tokio::task::yield_now().await;
        }
    }

    fn schedule_one(
        self: &Arc<Self>,
        qpi: QueuedPodInfo,
        cycle: u64,
        snapshot: &mut Snapshot,
        algorithm: &mut Algorithm,
    ) {
        let start = Instant::now();
        let Some(fw) = self.profile_for(&qpi.info).cloned() else {
            lock(&self.queue).done(&qpi.info.key);
            return;
        };
        lock(&self.cache).update_snapshot(snapshot);
        let mut state = CycleState::default();
        let pod = qpi.info.clone();
        match algorithm.schedule(&fw, &mut state, &pod, snapshot) {
            Ok(result) => {
                if let Err(e) = lock(&self.cache).assume_pod(pod.clone(), &result.node) {
                    tracing::warn!(pod = %pod.key, error = %e, "cannot assume pod");
                    self.metrics.attempt(metrics::ERROR, start.elapsed());
                    lock(&self.queue).add_backoff(qpi, Instant::now());
                    return;
                }
                let reserved = fw.run_reserve(&state, &pod, &result.node);
                let permitted = if reserved.is_success() {
                    fw.run_permit(&state, &pod, &result.node)
                } else {
                    reserved
                };
                if !permitted.is_success() {
                    fw.run_unreserve(&state, &pod, &result.node);
                    let _ = lock(&self.cache).forget_pod(&pod.key);
                    self.metrics.attempt(metrics::ERROR, start.elapsed());
                    self.report_failure(&pod, permitted.message(), None, Vec::new(), Vec::new());
                    lock(&self.queue).add_backoff(qpi, Instant::now());
                    return;
                }
                self.metrics.attempt(metrics::SCHEDULED, start.elapsed());
                let this = self.clone();
                tokio::spawn(async move { this.bind(fw, state, qpi, result.node).await });
            }
            Err(ScheduleError::Fit(mut fit)) => {
                let mut post = PostFilterResult::default();
                if !fw.post_filter.is_empty() {
                    let (result, status) =
                        fw.run_post_filter(&state, &pod, snapshot, &fit.statuses);
                    match status {
                        Some(s) => fit.post_filter_message = s.message(),
                        None => post = result,
                    }
                }
                let message = fit.message();
                tracing::debug!(pod = %pod.key, %message, "unschedulable");
                self.metrics
                    .attempt(metrics::UNSCHEDULABLE, start.elapsed());
                let mut qpi = qpi;
                qpi.rejected_by = fit.rejecting_plugins();
                let nominated = post.nominated_node.clone();
                self.report_failure(
                    &pod,
                    message,
                    nominated,
                    post.victims,
                    post.clear_nominations,
                );
                lock(&self.queue).add_unschedulable(qpi, cycle, Instant::now());
            }
            Err(ScheduleError::Error(status)) => {
                tracing::warn!(pod = %pod.key, error = %status.message(), "scheduling error");
                self.metrics.attempt(metrics::ERROR, start.elapsed());
                self.report_failure(&pod, status.message(), None, Vec::new(), Vec::new());
                lock(&self.queue).add_backoff(qpi, Instant::now());
            }
        }
    }

    async fn bind(
        self: Arc<Self>,
        fw: Arc<Framework>,
        state: CycleState,
        qpi: QueuedPodInfo,
        node: String,
    ) {
        let pod = qpi.info.clone();
        let status = fw.run_binding(&pod, &node).await;
        if status.is_success() {
            lock(&self.cache).finish_binding(&pod.key, Instant::now());
            lock(&self.queue).done(&pod.key);
            self.metrics.scheduled_e2e(qpi.initial_attempt.elapsed());
            tracing::debug!(pod = %pod.key, %node, "bound");
            if self.record_scheduled_events {
                self.record(
                    &pod,
                    "Normal",
                    "Scheduled",
                    format!("Successfully assigned {} to {node}", pod.key),
                );
            }
            return;
        }
        tracing::warn!(pod = %pod.key, %node, error = %status.message(), "binding failed");
        fw.run_unreserve(&state, &pod, &node);
        let forgot = lock(&self.cache).forget_pod(&pod.key).is_ok();
        if forgot {
            self.report_failure(&pod, status.message(), None, Vec::new(), Vec::new());
            lock(&self.queue).add_backoff(qpi, Instant::now());
            self.move_all(ClusterEvent::AssignedPodDelete);
        } else {
            lock(&self.queue).done(&pod.key);
        }
    }

    fn record(&self, pod: &PodInfo, kind: &str, reason: &str, message: String) {
        let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now());
        let name = pod.pod.metadata.name.clone().unwrap_or_default();
        let nanos = jiff::Timestamp::now().as_nanosecond();
        let event = Event {
            metadata: kube::api::ObjectMeta {
                name: Some(format!("{name}.{nanos:x}")),
                namespace: Some(pod.namespace().to_owned()),
                ..Default::default()
            },
            involved_object: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(name),
                namespace: Some(pod.namespace().to_owned()),
                uid: pod.pod.metadata.uid.clone(),
                ..ObjectReference::default()
            },
            reason: Some(reason.into()),
            message: Some(message),
            type_: Some(kind.into()),
            count: Some(1),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            source: Some(EventSource {
                component: Some(super::DEFAULT_SCHEDULER_NAME.into()),
                host: None,
            }),
            reporting_component: Some(super::DEFAULT_SCHEDULER_NAME.into()),
            reporting_instance: Some(super::DEFAULT_SCHEDULER_NAME.into()),
            action: Some("Scheduling".into()),
            ..Event::default()
        };
        if self.events.try_send(event).is_err() {
            tracing::debug!("event buffer full; dropping an event");
        }
    }

    /// Writes PodScheduled=False with the message and a FailedScheduling
    /// event; carries out a preemption (nomination, victim deletion).
    fn report_failure(
        self: &Arc<Self>,
        pod: &Arc<PodInfo>,
        message: String,
        nominated: Option<String>,
        victims: Vec<Arc<PodInfo>>,
        clear: Vec<Arc<PodInfo>>,
    ) {
        self.record(pod, "Warning", "FailedScheduling", message.clone());
        let current = pod
            .pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"));
        let same_condition = current
            .is_some_and(|c| c.status == "False" && c.message.as_deref() == Some(message.as_str()));
        let current_nomination = pod
            .pod
            .status
            .as_ref()
            .and_then(|s| s.nominated_node_name.clone());
        let nomination_changes = nominated.is_some() && nominated != current_nomination;
        if same_condition && !nomination_changes && victims.is_empty() && clear.is_empty() {
            return;
        }
        if !victims.is_empty() {
            self.metrics.victims(victims.len());
        }
        let this = self.clone();
        let pod = pod.clone();
        tokio::spawn(async move {
            let api: Api<Pod> = Api::namespaced(this.client.clone(), pod.namespace());
            let name = pod.pod.metadata.name.clone().unwrap_or_default();
            let mut status = json!({
                "conditions": [{
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": message,
                    "lastProbeTime": null,
                    "lastTransitionTime": jiff::Timestamp::now().to_string(),
                }]
            });
            if let Some(node) = &nominated {
                status["nominatedNodeName"] = json!(node);
            }
            let patch = json!({ "status": status });
            if let Err(e) = api
                .patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch))
                .await
            {
                tracing::debug!(pod = %pod.key, error = %e, "could not update the pod's status");
            }
            if let Some(node) = &nominated {
                for victim in &victims {
                    this.record(
                        victim,
                        "Normal",
                        "Preempted",
                        format!("Preempted by pod {} on node {node}", pod.uid()),
                    );
                    let vapi: Api<Pod> = Api::namespaced(this.client.clone(), victim.namespace());
                    let vname = victim.pod.metadata.name.clone().unwrap_or_default();
                    if let Err(e) = vapi.delete(&vname, &DeleteParams::default()).await {
                        tracing::warn!(victim = %victim.key, error = %e, "could not delete preemption victim");
                    }
                }
                for other in &clear {
                    let oapi: Api<Pod> = Api::namespaced(this.client.clone(), other.namespace());
                    let oname = other.pod.metadata.name.clone().unwrap_or_default();
                    let patch = json!({"status": {"nominatedNodeName": null}});
                    let _ = oapi
                        .patch_status(&oname, &PatchParams::default(), &Patch::Merge(&patch))
                        .await;
                }
            }
        });
    }

    /// Periodic work: flush backoff and stale unschedulable pods, expire
    /// assumed pods, publish queue sizes.
    pub(crate) async fn housekeeping(self: Arc<Self>) {
        let mut tick = tokio::time::interval(FLUSH_INTERVAL);
        loop {
            tick.tick().await;
            let now = Instant::now();
            let expired = lock(&self.cache).cleanup_expired(now);
            let pending = {
                let mut q = lock(&self.queue);
                q.flush(now);
                q.pending()
            };
            if !expired.is_empty() {
                self.move_all(ClusterEvent::AssignedPodDelete);
            }
            self.metrics.set_pending(pending);
            if pending.active > 0 {
                self.wake.notify_one();
            }
        }
    }

    /// Watches pods and feeds the cache and the queue.
    pub(crate) async fn watch_pods(self: Arc<Self>) {
        let api: Api<Pod> = Api::all(self.client.clone());
        let stream = crate::watch::lean_watcher(api, watcher::Config::default()).default_backoff();
        futures::pin_mut!(stream);
        let mut relist: Option<HashSet<String>> = None;
        let mut known: HashSet<String> = HashSet::new();
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::Init) => relist = Some(HashSet::new()),
                Ok(watcher::Event::InitApply(pod)) => {
                    let key = pod_key(&pod);
                    if let Some(seen) = relist.as_mut() {
                        seen.insert(key.clone());
                    }
                    known.insert(key);
                    self.on_pod(pod);
                }
                Ok(watcher::Event::InitDone) => {
                    if let Some(seen) = relist.take() {
                        let gone: Vec<String> = known.difference(&seen).cloned().collect();
                        for key in gone {
                            known.remove(&key);
                            self.on_pod_deleted(&key);
                        }
                    }
                    self.pods_synced.store(true, Ordering::Release);
                    self.synced.notify_waiters();
                }
                Ok(watcher::Event::Apply(pod)) => {
                    known.insert(pod_key(&pod));
                    self.on_pod(pod);
                }
                Ok(watcher::Event::Delete(pod)) => {
                    let key = pod_key(&pod);
                    known.remove(&key);
                    self.on_pod_deleted(&key);
                }
                Err(e) => tracing::warn!(error = %e, "pod watch failed; retrying"),
            }
        }
    }

    /// Watches nodes and feeds the cache.
    pub(crate) async fn watch_nodes(self: Arc<Self>) {
        let api: Api<Node> = Api::all(self.client.clone());
        let stream = crate::watch::lean_watcher(api, watcher::Config::default()).default_backoff();
        futures::pin_mut!(stream);
        let mut relist: Option<HashSet<String>> = None;
        let mut known: HashMap<String, Node> = HashMap::new();
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::Init) => relist = Some(HashSet::new()),
                Ok(watcher::Event::InitApply(node)) | Ok(watcher::Event::Apply(node)) => {
                    let name = node.metadata.name.clone().unwrap_or_default();
                    if let Some(seen) = relist.as_mut() {
                        seen.insert(name.clone());
                    }
                    let previous = known.insert(name, node.clone());
                    self.on_node(node, previous.as_ref());
                }
                Ok(watcher::Event::InitDone) => {
                    if let Some(seen) = relist.take() {
                        let gone: Vec<String> = known
                            .keys()
                            .filter(|k| !seen.contains(*k))
                            .cloned()
                            .collect();
                        for name in gone {
                            known.remove(&name);
                            self.on_node_deleted(&name);
                        }
                    }
                    self.nodes_synced.store(true, Ordering::Release);
                    self.synced.notify_waiters();
                }
                Ok(watcher::Event::Delete(node)) => {
                    let name = node.metadata.name.clone().unwrap_or_default();
                    known.remove(&name);
                    self.on_node_deleted(&name);
                }
                Err(e) => tracing::warn!(error = %e, "node watch failed; retrying"),
            }
        }
    }

    /// Watches PodDisruptionBudgets for preemption (quietly retrying when
    /// the server does not serve them).
    pub(crate) async fn watch_pdbs(self: Arc<Self>) {
        use k8s_openapi::api::policy::v1::PodDisruptionBudget;
        let api: Api<PodDisruptionBudget> = Api::all(self.client.clone());
        let stream = crate::watch::lean_watcher(api, watcher::Config::default()).default_backoff();
        futures::pin_mut!(stream);
        let mut fresh: Option<HashMap<String, Arc<PodDisruptionBudget>>> = None;
        while let Some(event) = stream.next().await {
            let key = |p: &PodDisruptionBudget| {
                format!(
                    "{}/{}",
                    p.metadata.namespace.as_deref().unwrap_or_default(),
                    p.metadata.name.as_deref().unwrap_or_default()
                )
            };
            let mut pdbs = self.handle.pdbs.write().unwrap_or_else(|p| p.into_inner());
            match event {
                Ok(watcher::Event::Init) => fresh = Some(HashMap::new()),
                Ok(watcher::Event::InitApply(p)) => {
                    if let Some(f) = fresh.as_mut() {
                        f.insert(key(&p), Arc::new(p));
                    }
                }
                Ok(watcher::Event::InitDone) => {
                    if let Some(f) = fresh.take() {
                        *pdbs = f;
                    }
                }
                Ok(watcher::Event::Apply(p)) => {
                    pdbs.insert(key(&p), Arc::new(p));
                }
                Ok(watcher::Event::Delete(p)) => {
                    pdbs.remove(&key(&p));
                }
                Err(e) => tracing::debug!(error = %e, "PodDisruptionBudget watch failed; retrying"),
            }
        }
    }

    /// Whether any profile is configured.
    pub(crate) fn has_profiles(&self) -> bool {
        self.any_profile().is_some()
    }
}

/// Writes events (best effort, a few at a time).
async fn write_events(client: kube::Client, rx: mpsc::Receiver<Event>) {
    let stream = tokio_stream_from(rx);
    stream
        .for_each_concurrent(4, |event| {
            let client = client.clone();
            async move {
                let ns = event.metadata.namespace.clone().unwrap_or_default();
                let api: Api<Event> = Api::namespaced(client, &ns);
                if let Err(e) = api.create(&PostParams::default(), &event).await {
                    tracing::debug!(error = %e, "could not record an event");
                }
            }
        })
        .await;
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
