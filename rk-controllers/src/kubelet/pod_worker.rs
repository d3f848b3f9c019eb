//! The pod worker: one task per pod that gives it an IP, materializes its
//! volumes, runs its init containers in order (sidecars stay running), then
//! its app containers, keeps its status written, and on deletion stops
//! everything gracefully and removes the pod from the API.

use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodSpec, PodStatus};
use kube::Api;
use kube::api::{DeleteParams, Preconditions};
use tokio::sync::{oneshot, watch};

use super::Shared;
use super::container::{AbortOnDrop, Outcome, Role, Supervisor};
use super::env::{PodNetwork, Sources};
use super::node_status::NodeCtx;
use super::runtime::{SIM_COMPLETE_AFTER, SIM_EXIT_CODE, SimBehaviour, parse_duration};
use super::status::{self, CState, ContainerRecord, PodRecord, Terminal};
use super::volumes::{self, Prepared};

/// A pod's shared state: the record its containers update, the latest API
/// object, and a counter that wakes the status writer.
///
/// The API object is kept without its status: the kubelet writes the
/// status from its record, and each of its own writes comes back through
/// the watch. Only what [`status::build`] carries over from the API's status
/// (conditions, `nominatedNodeName`) is kept, apart from the pod, so a
/// status change does not copy the pod, and the worker, its container
/// supervisors and this state share one `Arc` for the pod's life unless its
/// metadata or spec change.
pub struct PodState {
    record: Mutex<PodRecord>,
    pod: Mutex<Arc<Pod>>,
    /// The API status's parts the kubelet carries over.
    carried: Mutex<Carried>,
    /// The API status when the pod was admitted (restart counts to continue),
    /// taken by the worker when it starts (boxed: gone once taken).
    admitted: Mutex<Option<Box<PodStatus>>>,
    dirty: watch::Sender<u64>,
    /// Bumped when the pod's metadata or spec change (ephemeral containers
    /// are added to a running pod).
    changed: watch::Sender<u64>,
    /// Held while writing; the fingerprint of the status last written.
    write_lock: tokio::sync::Mutex<Option<u64>>,
    /// The pod's directory (volumes, logs).
    pub dir: PathBuf,
    /// The pod's uid.
    pub uid: String,
}

impl PodState {
    /// State for a pod that starts now.
    pub fn new(mut pod: Pod, dir: PathBuf) -> Self {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let admitted = pod.status.take();
        Self {
            record: Mutex::new(PodRecord::default()),
            carried: Mutex::new(Carried::from(admitted.as_ref())),
            admitted: Mutex::new(admitted.map(Box::new)),
            pod: Mutex::new(Arc::new(pod)),
            dirty: watch::channel(0).0,
            changed: watch::channel(0).0,
            write_lock: tokio::sync::Mutex::new(None),
            dir,
            uid,
        }
    }

    /// Change the record and wake the status writer.
    pub fn update(&self, f: impl FnOnce(&mut PodRecord)) {
        {
            let mut r = self.record.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut r);
        }
        self.dirty.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Read the record.
    pub fn read<R>(&self, f: impl FnOnce(&PodRecord) -> R) -> R {
        let r = self.record.lock().unwrap_or_else(|p| p.into_inner());
        f(&r)
    }

    /// The latest pod object, without its status (shared: the worker, its
    /// containers and the status writer read the same copy).
    pub fn pod(&self) -> Arc<Pod> {
        self.pod.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The parts of the API's latest status the kubelet carries over.
    pub fn carried_status(&self) -> PodStatus {
        let carried = self.carried.lock().unwrap_or_else(|p| p.into_inner());
        PodStatus {
            conditions: carried.conditions.clone(),
            nominated_node_name: carried.nominated_node_name.clone(),
            ..PodStatus::default()
        }
    }

    /// The API status the pod had when it was admitted (once).
    pub fn take_admitted_status(&self) -> Option<Box<PodStatus>> {
        self.admitted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Record a newer pod object from the API. The shared pod is replaced
    /// only when its metadata (beyond `resourceVersion`) or spec changed.
    pub fn set_pod(&self, mut pod: Pod) {
        let status = pod.status.take();
        *self.carried.lock().unwrap_or_else(|p| p.into_inner()) = Carried::from(status.as_ref());
        let mut current = self.pod.lock().unwrap_or_else(|p| p.into_inner());
        let version = std::mem::replace(
            &mut pod.metadata.resource_version,
            current.metadata.resource_version.clone(),
        );
        let unchanged = pod.metadata == current.metadata && pod.spec == current.spec;
        if !unchanged {
            pod.metadata.resource_version = version;
            *current = Arc::new(pod);
            drop(current);
            self.changed.send_modify(|v| *v = v.wrapping_add(1));
        }
    }

    /// The restart count and whether the container currently runs
    /// (`None` if the pod has no such container).
    pub fn container_log_state(&self, container: &str) -> Option<(i32, bool)> {
        self.read(|r| {
            r.init
                .iter()
                .chain(r.app.iter())
                .chain(r.ephemeral.iter())
                .find(|c| c.name == container)
                .map(|c| (c.restart_count, matches!(c.state, CState::Running { .. })))
        })
    }

    /// Whether the pod's containers all finished for good.
    pub fn is_terminal(&self) -> bool {
        self.read(|r| r.terminal.is_some())
    }
}

/// What `status::build` carries over from the API's status (kept apart
/// from a whole `PodStatus`, which is 616 bytes before any field is set).
struct Carried {
    conditions: Option<Vec<k8s_openapi::api::core::v1::PodCondition>>,
    nominated_node_name: Option<String>,
}

impl From<Option<&PodStatus>> for Carried {
    fn from(status: Option<&PodStatus>) -> Self {
        Self {
            conditions: status.and_then(|s| s.conditions.clone()),
            nominated_node_name: status.and_then(|s| s.nominated_node_name.clone()),
        }
    }
}

/// Everything a container supervisor needs about its pod.
pub struct PodCtx {
    pub(crate) shared: Arc<Shared>,
    pub(crate) state: Arc<PodState>,
    pub(crate) uid: String,
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) dir: PathBuf,
    pub(crate) net: PodNetwork,
    pub(crate) volumes: Vec<Prepared>,
    pub(crate) restart_policy: String,
}

impl PodCtx {
    /// The latest pod object.
    pub fn pod(&self) -> Arc<Pod> {
        self.state.pod()
    }

    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The pod's `terminationGracePeriodSeconds` (30 s by default).
    pub fn termination_grace(&self) -> Duration {
        let secs = self
            .pod()
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30);
        Duration::from_secs(secs.max(0) as u64)
    }

    /// How sim containers of this pod behave.
    pub fn sim_behaviour(&self) -> SimBehaviour {
        let pod = self.pod();
        let annotations = pod.metadata.annotations.as_ref();
        SimBehaviour {
            complete_after: annotations
                .and_then(|a| a.get(SIM_COMPLETE_AFTER))
                .and_then(|s| parse_duration(s)),
            exit_code: annotations
                .and_then(|a| a.get(SIM_EXIT_CODE))
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0),
        }
    }
}

/// A hash of a status, ignoring transition times: the status writer keeps
/// this rather than a copy of the last status it wrote.
fn status_fingerprint(status: &PodStatus) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut s = status.clone();
    for c in s.conditions.iter_mut().flatten() {
        c.last_transition_time = None;
    }
    let mut h = std::hash::DefaultHasher::new();
    serde_json::to_vec(&s).unwrap_or_default().hash(&mut h);
    h.finish()
}

/// The status the API should have; written when it differs (ignoring
/// transition times) from the last one written.
pub async fn sync_status(shared: &Shared, state: &PodState) {
    if shared.is_shutting_down() {
        return;
    }
    let mut last = state.write_lock.lock().await;
    let pod = state.pod();
    let carried = state.carried_status();
    let status = state.read(|r| status::build(&pod, &carried, r));
    let fingerprint = status_fingerprint(&status);
    if *last == Some(fingerprint) {
        return;
    }
    match status::write(&shared.client, &pod, &status).await {
        Ok(_) => {
            shared
                .metrics
                .status_writes
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            *last = Some(fingerprint);
        }
        Err(e) => {
            tracing::warn!(pod = ?pod.metadata.name, error = %e, "writing pod status failed");
            drop(last);
            let dirty = state.dirty.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(1)).await;
                dirty.send_modify(|v| *v = v.wrapping_add(1));
            });
        }
    }
}

async fn status_loop(shared: Arc<Shared>, state: Arc<PodState>) {
    let mut rx = state.dirty.subscribe();
    loop {
        // Boxed: the API call's future is large and would otherwise sit in
        // every idle pod's task (tens of KB per pod on sim nodes).
        Box::pin(sync_status(&shared, &state)).await;
        if rx.changed().await.is_err() {
            return;
        }
    }
}

fn stopping(stop: &watch::Receiver<Option<Option<Duration>>>) -> bool {
    stop.borrow().is_some()
}

/// Sleep unless the pod is stopped meanwhile; true when stopped.
async fn pause(stop: &mut watch::Receiver<Option<Option<Duration>>>, d: Duration) -> bool {
    if stopping(stop) {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        r = stop.changed() => r.is_err() || stopping(stop),
    }
}

/// Run a pod until it finishes for good and, if it is being deleted, until
/// it is stopped and removed from the API. `stop` carries the grace period
/// once the pod must stop (`Some(None)`: the pod's own).
pub async fn run(
    shared: Arc<Shared>,
    node: Arc<NodeCtx>,
    state: Arc<PodState>,
    mut stop: watch::Receiver<Option<Option<Duration>>>,
) {
    // The pod is shared (`Arc`), and `spec` borrows from it: an idle pod's
    // worker holds no copies.
    static NO_SPEC: LazyLock<PodSpec> = LazyLock::new(PodSpec::default);
    let pod = state.pod();
    let spec = pod.spec.as_ref().unwrap_or(&NO_SPEC);
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let sidecar =
        |c: &k8s_openapi::api::core::v1::Container| c.restart_policy.as_deref() == Some("Always");
    let host_ip = node.address.to_string();
    let previous_restarts = |list: Option<&Vec<k8s_openapi::api::core::v1::ContainerStatus>>,
                             n: &str| {
        list.into_iter()
            .flatten()
            .find(|s| s.name == n)
            .map_or(0, |s| s.restart_count)
    };
    // The admitted status is only read here (in a block of its own, it is
    // not kept in the task for the pod's life).
    {
        let admitted = state.take_admitted_status();
        state.update(|r| {
            let prev = admitted.as_deref();
            r.start_time = prev
                .and_then(|p| p.start_time.as_ref())
                .map(|t| t.0)
                .or(Some(jiff::Timestamp::now()));
            r.host_ip = host_ip.clone();
            r.init = spec
                .init_containers
                .iter()
                .flatten()
                .map(|c| {
                    let mut rec = ContainerRecord::new(
                        &c.name,
                        c.image.as_deref().unwrap_or_default(),
                        "PodInitializing",
                    );
                    rec.restart_count = previous_restarts(
                        prev.and_then(|p| p.init_container_statuses.as_ref()),
                        &c.name,
                    );
                    rec
                })
                .collect();
            let first = if r.init.is_empty() {
                "ContainerCreating"
            } else {
                "PodInitializing"
            };
            r.app = spec
                .containers
                .iter()
                .map(|c| {
                    let mut rec = ContainerRecord::new(
                        &c.name,
                        c.image.as_deref().unwrap_or_default(),
                        first,
                    );
                    rec.restart_count = previous_restarts(
                        prev.and_then(|p| p.container_statuses.as_ref()),
                        &c.name,
                    );
                    rec
                })
                .collect();
        });
    }
    let _writer = AbortOnDrop(tokio::spawn(status_loop(shared.clone(), state.clone())));

    // An address.
    let pod_ip = if spec.host_network == Some(true) {
        Some(host_ip.clone())
    } else {
        loop {
            match node.allocate_ip(&state.uid) {
                Ok(ip) => break Some(ip.to_string()),
                Err(message) => {
                    state.update(|r| r.message = Some(message));
                    if pause(&mut stop, Duration::from_secs(2)).await {
                        break None;
                    }
                }
            }
        }
    };
    state.update(|r| {
        r.pod_ip = pod_ip.clone();
        r.message = None;
    });
    let net = PodNetwork {
        pod_ip: pod_ip.clone().unwrap_or_default(),
        host_ip: host_ip.clone(),
        node_allocatable: node.allocatable(),
    };

    // Volumes.
    let mut prepared = None;
    while prepared.is_none() && !stopping(&stop) {
        let mut sources = Sources::new(shared.client.clone(), &namespace);
        match Box::pin(volumes::prepare(&state.dir, &pod, &net, &mut sources)).await {
            Ok(v) => prepared = Some(v),
            Err(message) => {
                tracing::info!(pod = %format!("{namespace}/{name}"), %message, "volume setup failed");
                state.update(|r| {
                    for c in r.init.iter_mut().chain(r.app.iter_mut()) {
                        c.state = CState::waiting("ContainerCreating", Some(message.clone()));
                    }
                });
                if pause(&mut stop, Duration::from_secs(2)).await {
                    break;
                }
            }
        }
    }

    let ctx = Arc::new(PodCtx {
        shared: shared.clone(),
        state: state.clone(),
        uid: state.uid.clone(),
        namespace: namespace.clone(),
        name: name.clone(),
        dir: state.dir.clone(),
        net,
        volumes: prepared.unwrap_or_default(),
        restart_policy: spec
            .restart_policy
            .clone()
            .unwrap_or_else(|| "Always".to_owned()),
    });

    // Sidecars get a stop signal of their own (they stop after the app
    // containers); a pod without sidecars needs none.
    let (side_stop_tx, side_stop) = if spec.init_containers.iter().flatten().any(sidecar) {
        let (tx, rx) = watch::channel::<Option<Option<Duration>>>(None);
        (Some(tx), Some(rx))
    } else {
        (None, None)
    };
    let mut sidecars = Vec::new();
    let mut failed = false;
    // `spec.activeDeadlineSeconds`, counted from the pod's start.
    let deadline = spec.active_deadline_seconds.map(|secs| {
        let started = state
            .read(|r| r.start_time)
            .unwrap_or_else(jiff::Timestamp::now);
        let elapsed = jiff::Timestamp::now()
            .duration_since(started)
            .unsigned_abs();
        tokio::time::Instant::now()
            + Duration::from_secs(secs.max(0) as u64).saturating_sub(elapsed)
    });
    let deadline_exceeded = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // The init and app containers stop when the pod does. With an active
    // deadline they also stop when it passes: a task forwards whichever
    // comes first. Without one they follow the pod's own signal, and an
    // idle pod has no task and no channel for it.
    let (app_stop_tx, app_stop, forward_stop) = match deadline {
        None => (None, stop.clone(), None),
        Some(deadline) => {
            let (app_stop_tx, app_stop) = watch::channel::<Option<Option<Duration>>>(None);
            let task = forward_stop_or_deadline(
                stop.clone(),
                app_stop_tx.clone(),
                deadline,
                deadline_exceeded.clone(),
                state.clone(),
            );
            (Some(app_stop_tx), app_stop, Some(task))
        }
    };

    // Init containers, in order.
    let mut initialized = !stopping(&stop);
    for (index, container) in spec.init_containers.iter().flatten().enumerate() {
        if !initialized {
            break;
        }
        let supervisor = Supervisor {
            pod: ctx.clone(),
            role: if sidecar(container) {
                Role::Sidecar
            } else {
                Role::Init
            },
            index,
            source: pod.clone(),
            ephemeral: None,
        };
        if let (true, Some(side_stop)) = (sidecar(container), &side_stop) {
            let (tx, rx) = oneshot::channel();
            sidecars.push(tokio::spawn(supervisor.run(side_stop.clone(), Some(tx))));
            let mut app_stop = app_stop.clone();
            tokio::select! {
                r = rx => if r.is_err() { initialized = false; },
                _ = app_stop.wait_for(Option::is_some) => initialized = false,
            }
        } else {
            // Boxed: only while init containers run, not in every pod's task.
            match Box::pin(supervisor.run(app_stop.clone(), None)).await {
                Outcome::Completed => {}
                Outcome::Failed => {
                    failed = true;
                    initialized = false;
                }
                Outcome::Stopped => initialized = false,
            }
        }
    }
    if initialized {
        state.update(|r| {
            r.initialized = true;
            for c in r.app.iter_mut() {
                if matches!(&c.state, CState::Waiting { reason, .. } if reason == "PodInitializing")
                {
                    c.state = CState::waiting("ContainerCreating", None);
                }
            }
        });
        shared
            .metrics
            .pods_started
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let apps: Vec<_> = (0..spec.containers.len())
            .map(|index| {
                let supervisor = Supervisor {
                    pod: ctx.clone(),
                    role: Role::App,
                    index,
                    source: pod.clone(),
                    ephemeral: None,
                };
                tokio::spawn(supervisor.run(app_stop.clone(), None))
            })
            .collect();
        // While the app containers run, ephemeral containers added to the
        // pod (`kubectl debug`) start as they come.
        let mut apps = futures::future::join_all(apps);
        let mut changes = state.changed.subscribe();
        let mut debuggers = Vec::new();
        let outcomes = loop {
            start_ephemeral(&ctx, &state, &app_stop, &mut debuggers);
            tokio::select! {
                outcomes = &mut apps => break outcomes,
                changed = changes.changed() => {
                    if changed.is_err() {
                        break apps.await;
                    }
                }
            }
        };
        for outcome in outcomes {
            if !matches!(outcome, Ok(Outcome::Completed)) {
                failed = true;
            }
        }
        for d in debuggers {
            let _ = d.await;
        }
    } else {
        // Containers that never ran stay waiting; the pod does not start.
        if let Some(tx) = &app_stop_tx {
            let _ = tx.send(Some(Some(Duration::ZERO)));
        }
    }
    drop(forward_stop);

    // Sidecars go last.
    let requested = (*stop.borrow()).flatten();
    if let Some(tx) = &side_stop_tx {
        let _ = tx.send(Some(requested));
    }
    for s in sidecars {
        let _ = s.await;
    }

    if shared.is_shutting_down() {
        // The kubelet is exiting: the pod is not finished, it runs again
        // when a kubelet comes back.
        node.release_ip(&state.uid);
        return;
    }

    // Stopped because of deletion: a container that exited 0 counts as success.
    if failed && !deadline_exceeded.load(std::sync::atomic::Ordering::Relaxed) {
        failed = state.read(|r| {
            r.app
                .iter()
                .any(|c| !matches!(c.state, CState::Terminated { exit_code: 0, .. }))
        });
    }
    if deadline_exceeded.load(std::sync::atomic::Ordering::Relaxed) {
        failed = true;
    }
    state.update(|r| {
        r.terminal = Some(if failed {
            Terminal::Failed
        } else {
            Terminal::Succeeded
        });
        for c in r.init.iter_mut().chain(r.app.iter_mut()) {
            c.ready = false;
        }
    });
    Box::pin(sync_status(&shared, &state)).await;
    node.release_ip(&state.uid);

    // A pod being deleted is removed once everything stopped.
    if state.pod().metadata.deletion_timestamp.is_some() {
        Box::pin(remove_from_api(&shared, &namespace, &name, &state.uid)).await;
    }
}

/// Forward the pod's stop signal to its containers' (`app_stop`), or stop
/// them when the active deadline passes, whichever comes first.
/// Start the pod's ephemeral containers that have not started yet
/// (`started` holds one task per container started, in spec order).
fn start_ephemeral(
    ctx: &Arc<PodCtx>,
    state: &Arc<PodState>,
    stop: &watch::Receiver<Option<Option<Duration>>>,
    started: &mut Vec<tokio::task::JoinHandle<Outcome>>,
) {
    let pod = state.pod();
    let Some(list) = pod
        .spec
        .as_ref()
        .and_then(|s| s.ephemeral_containers.as_ref())
    else {
        return;
    };
    for (index, ec) in list.iter().enumerate().skip(started.len()) {
        // An ephemeral container has a container's fields (and a target
        // it shares a process namespace with, which the process runtime
        // does not separate anyway).
        let container: k8s_openapi::api::core::v1::Container = match serde_json::to_value(ec)
            .and_then(serde_json::from_value)
        {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(container = %ec.name, error = %e, "ephemeral container not startable");
                k8s_openapi::api::core::v1::Container {
                    name: ec.name.clone(),
                    ..Default::default()
                }
            }
        };
        state.update(|r| {
            r.ephemeral.push(ContainerRecord::new(
                &ec.name,
                ec.image.as_deref().unwrap_or_default(),
                "ContainerCreating",
            ));
        });
        let supervisor = Supervisor {
            pod: ctx.clone(),
            role: Role::Ephemeral,
            index,
            source: pod.clone(),
            ephemeral: Some(Arc::new(container)),
        };
        started.push(tokio::spawn(supervisor.run(stop.clone(), None)));
    }
}

fn forward_stop_or_deadline(
    mut stop: watch::Receiver<Option<Option<Duration>>>,
    app_stop: watch::Sender<Option<Option<Duration>>>,
    deadline: tokio::time::Instant,
    exceeded: Arc<std::sync::atomic::AtomicBool>,
    state: Arc<PodState>,
) -> AbortOnDrop {
    AbortOnDrop(tokio::spawn(async move {
        let expired = tokio::time::sleep_until(deadline);
        tokio::pin!(expired);
        loop {
            let requested = *stop.borrow_and_update();
            if let Some(g) = requested {
                let _ = app_stop.send(Some(g));
                return;
            }
            tokio::select! {
                changed = stop.changed() => if changed.is_err() {
                    let _ = app_stop.send(Some(Some(Duration::ZERO)));
                    return;
                },
                () = &mut expired => {
                    exceeded.store(true, std::sync::atomic::Ordering::Relaxed);
                    state.update(|r| {
                        r.reason = Some("DeadlineExceeded".to_owned());
                        r.message = Some(
                            "Pod was active on the node longer than the specified deadline"
                                .to_owned(),
                        );
                    });
                    let _ = app_stop.send(Some(None));
                    return;
                }
            }
        }
    }))
}

/// Delete the stopped pod from the API (grace period 0, only this uid).
async fn remove_from_api(shared: &Shared, namespace: &str, name: &str, uid: &str) {
    let api: Api<Pod> = Api::namespaced(shared.client.clone(), namespace);
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: Some(uid.to_owned()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => tracing::debug!(pod = %format!("{namespace}/{name}"), "pod removed"),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
        Err(e) => {
            tracing::warn!(pod = %format!("{namespace}/{name}"), error = %e, "removing the pod failed")
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;

    fn future_size<A, B, C, D, F: Future>(_: impl Fn(A, B, C, D) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    fn future_size3<A, B, C, F: Future>(_: impl Fn(A, B, C) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// Every running pod keeps its worker's and its containers'
    /// supervisors' futures for its whole life; on sim nodes with tens of
    /// thousands of pods their size is most of the kubelet's memory. They
    /// hold the pod by `Arc` and box what only runs briefly (init
    /// containers, volume setup, API calls, graceful stops); this guards
    /// against a large future creeping back in (13.6 KB and 8.4 KB before).
    #[test]
    fn long_lived_pod_futures_stay_small() {
        let worker = future_size(super::run);
        let supervisor = future_size3(super::super::container::Supervisor::run);
        assert!(worker <= 4096, "pod worker future is {worker} bytes");
        assert!(
            supervisor <= 4096,
            "supervisor future is {supervisor} bytes"
        );
    }
}
