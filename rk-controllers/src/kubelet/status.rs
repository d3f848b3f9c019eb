//! Pod status: what the pod worker records about each container, turned
//! into a `PodStatus` (phase, conditions, container statuses, IPs, start
//! time) and written through the `pods/status` subresource.

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Api;
use kube::api::{Patch, PatchParams};

use super::container::Role;
use super::runtime::{ContainerStdin, ExecTarget};

/// A container's state as the kubelet records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CState {
    /// Not running: being created, backing off, misconfigured.
    Waiting {
        /// `ContainerCreating`, `PodInitializing`, `CrashLoopBackOff`, ...
        reason: String,
        /// Details.
        message: Option<String>,
    },
    /// Running since `started_at`.
    Running {
        /// When it started.
        started_at: Timestamp,
    },
    /// Ended.
    Terminated {
        /// Exit code.
        exit_code: i32,
        /// Killing signal.
        signal: Option<i32>,
        /// `Completed`, `Error`, ...
        reason: String,
        /// Details.
        message: Option<String>,
        /// When it started.
        started_at: Option<Timestamp>,
        /// When it ended.
        finished_at: Timestamp,
        /// The runtime's id.
        id: Option<String>,
    },
}

impl CState {
    /// A waiting state.
    pub fn waiting(reason: &str, message: Option<String>) -> Self {
        CState::Waiting {
            reason: reason.to_owned(),
            message,
        }
    }

    fn to_k8s(&self) -> ContainerState {
        match self {
            CState::Waiting { reason, message } => ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some(reason.clone()),
                    message: message.clone(),
                }),
                ..ContainerState::default()
            },
            CState::Running { started_at } => ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(Time(*started_at)),
                }),
                ..ContainerState::default()
            },
            CState::Terminated {
                exit_code,
                signal,
                reason,
                message,
                started_at,
                finished_at,
                id,
            } => ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: *exit_code,
                    signal: *signal,
                    reason: Some(reason.clone()),
                    message: message.clone(),
                    started_at: started_at.map(Time),
                    finished_at: Some(Time(*finished_at)),
                    container_id: id.as_ref().map(|i| format!("rk://{i}")),
                }),
                ..ContainerState::default()
            },
        }
    }
}

/// What the kubelet knows about one container.
#[derive(Debug, Clone)]
pub struct ContainerRecord {
    /// Its name.
    pub name: String,
    /// Its image (reported as is).
    pub image: String,
    /// Current state.
    pub state: CState,
    /// The state of the previous instance.
    pub last_state: Option<CState>,
    /// Restarts so far.
    pub restart_count: i32,
    /// Passes its readiness probe (or has none and is running).
    pub ready: bool,
    /// Passed its startup probe (or has none and is running).
    pub started: bool,
    /// The current instance's runtime id.
    pub id: Option<String>,
    /// Where `kubectl exec` runs while the instance runs (the container's
    /// environment, working directory and process; not kept on sim nodes,
    /// where nothing runs).
    pub exec: Option<Arc<ExecTarget>>,
    /// The running instance's stdin (containers with `stdin: true` on the
    /// process runtime), for `kubectl attach -i`.
    pub stdin: Option<Arc<ContainerStdin>>,
}

impl ContainerRecord {
    /// A container not started yet.
    pub fn new(name: &str, image: &str, reason: &str) -> Self {
        Self {
            name: name.to_owned(),
            image: image.to_owned(),
            state: CState::waiting(reason, None),
            last_state: None,
            restart_count: 0,
            ready: false,
            started: false,
            id: None,
            exec: None,
            stdin: None,
        }
    }

    fn to_k8s(&self) -> ContainerStatus {
        ContainerStatus {
            name: self.name.clone(),
            image: self.image.clone(),
            image_id: String::new(),
            container_id: self.id.as_ref().map(|i| format!("rk://{i}")),
            ready: self.ready,
            started: Some(self.started),
            restart_count: self.restart_count,
            state: Some(self.state.to_k8s()),
            last_state: Some(
                self.last_state
                    .as_ref()
                    .map(CState::to_k8s)
                    .unwrap_or_default(),
            ),
            ..ContainerStatus::default()
        }
    }
}

/// A pod's terminal phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Terminal {
    /// Every container succeeded.
    Succeeded,
    /// A container failed and will not restart.
    Failed,
}

/// What the kubelet knows about one pod.
#[derive(Debug, Clone, Default)]
pub struct PodRecord {
    /// Init containers, in order.
    pub init: Vec<ContainerRecord>,
    /// App containers.
    pub app: Vec<ContainerRecord>,
    /// Ephemeral containers (`kubectl debug`), in the order they were added.
    pub ephemeral: Vec<ContainerRecord>,
    /// The pod's IP.
    pub pod_ip: Option<String>,
    /// The node's IP.
    pub host_ip: String,
    /// When the kubelet accepted the pod.
    pub start_time: Option<Timestamp>,
    /// Init containers are done.
    pub initialized: bool,
    /// Set once the pod will not run again.
    pub terminal: Option<Terminal>,
    /// Pod-level reason (`Evicted`, `OutOfcpu`, ...).
    pub reason: Option<String>,
    /// Pod-level message.
    pub message: Option<String>,
}

impl PodRecord {
    /// The records of the containers that play `role`.
    pub fn records(&self, role: Role) -> &Vec<ContainerRecord> {
        match role {
            Role::Init | Role::Sidecar => &self.init,
            Role::App => &self.app,
            Role::Ephemeral => &self.ephemeral,
        }
    }

    /// The record of container `index` among those that play `role`.
    pub fn container_mut(&mut self, role: Role, index: usize) -> Option<&mut ContainerRecord> {
        match role {
            Role::Init | Role::Sidecar => self.init.get_mut(index),
            Role::App => self.app.get_mut(index),
            Role::Ephemeral => self.ephemeral.get_mut(index),
        }
    }

    /// The phase upstream would report.
    pub fn phase(&self) -> &'static str {
        match self.terminal {
            Some(Terminal::Succeeded) => return "Succeeded",
            Some(Terminal::Failed) => return "Failed",
            None => {}
        }
        if !self.initialized {
            return "Pending";
        }
        let waiting_first = self
            .app
            .iter()
            .any(|c| matches!(c.state, CState::Waiting { .. }) && c.last_state.is_none());
        if waiting_first { "Pending" } else { "Running" }
    }
}

fn condition(type_: &str, ok: bool, reason: Option<&str>) -> PodCondition {
    PodCondition {
        type_: type_.to_owned(),
        status: if ok { "True" } else { "False" }.to_owned(),
        reason: reason.map(str::to_owned),
        ..PodCondition::default()
    }
}

/// Upstream's QoS class of a pod.
pub fn qos_class(pod: &Pod) -> &'static str {
    let containers: Vec<_> = pod
        .spec
        .iter()
        .flat_map(|s| {
            s.containers
                .iter()
                .chain(s.init_containers.iter().flatten())
        })
        .collect();
    let mut any = false;
    let mut guaranteed = true;
    for c in &containers {
        let r = c.resources.clone().unwrap_or_default();
        let requests = r.requests.unwrap_or_default();
        let limits = r.limits.unwrap_or_default();
        if !requests.is_empty() || !limits.is_empty() {
            any = true;
        }
        for res in ["cpu", "memory"] {
            match (requests.get(res), limits.get(res)) {
                (_, None) => guaranteed = false,
                (Some(req), Some(lim)) if req != lim => guaranteed = false,
                _ => {}
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// Build the pod's status from the record, keeping transition times of
/// conditions that did not change and conditions the kubelet does not own.
/// `previous` is the API's status (only its conditions and
/// `nominatedNodeName` are read).
pub fn build(pod: &Pod, previous: &PodStatus, record: &PodRecord) -> PodStatus {
    let phase = record.phase();
    let terminal = record.terminal.is_some();
    let containers_ready = !terminal
        && !record.app.is_empty()
        && record
            .app
            .iter()
            .all(|c| c.ready && matches!(c.state, CState::Running { .. }));
    let gates_ok = pod
        .spec
        .iter()
        .flat_map(|s| s.readiness_gates.iter().flatten())
        .all(|g| {
            previous
                .conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == g.condition_type && c.status == "True")
        });
    let not_ready_reason = if terminal {
        Some("PodCompleted")
    } else {
        Some("ContainersNotReady")
    };
    let mut conditions = vec![
        condition(
            "PodReadyToStartContainers",
            record.pod_ip.is_some() && !terminal,
            None,
        ),
        condition(
            "Initialized",
            record.initialized,
            (!record.initialized).then_some("ContainersNotInitialized"),
        ),
        condition(
            "Ready",
            containers_ready && gates_ok,
            (!(containers_ready && gates_ok))
                .then_some(not_ready_reason)
                .flatten(),
        ),
        condition(
            "ContainersReady",
            containers_ready,
            (!containers_ready).then_some(not_ready_reason).flatten(),
        ),
        condition("PodScheduled", true, None),
    ];
    if terminal && record.initialized {
        conditions[1].reason = Some("PodCompleted".to_owned());
    }
    let now = Time(Timestamp::now());
    let owned: Vec<String> = conditions.iter().map(|c| c.type_.clone()).collect();
    let prev_by_type: BTreeMap<&str, &PodCondition> = previous
        .conditions
        .iter()
        .flatten()
        .map(|c| (c.type_.as_str(), c))
        .collect();
    for c in &mut conditions {
        c.last_transition_time = match prev_by_type.get(c.type_.as_str()) {
            Some(p) if p.status == c.status => p.last_transition_time.clone().or(Some(now.clone())),
            _ => Some(now.clone()),
        };
    }
    for c in previous.conditions.iter().flatten() {
        if !owned.contains(&c.type_) {
            conditions.push(c.clone());
        }
    }
    let host_ip = (!record.host_ip.is_empty()).then(|| record.host_ip.clone());
    PodStatus {
        phase: Some(phase.to_owned()),
        conditions: Some(conditions),
        container_statuses: Some(record.app.iter().map(ContainerRecord::to_k8s).collect()),
        init_container_statuses: (!record.init.is_empty())
            .then(|| record.init.iter().map(ContainerRecord::to_k8s).collect()),
        // Readiness does not apply to ephemeral containers.
        ephemeral_container_statuses: (!record.ephemeral.is_empty()).then(|| {
            record
                .ephemeral
                .iter()
                .map(|c| ContainerStatus {
                    ready: false,
                    ..c.to_k8s()
                })
                .collect()
        }),
        pod_ip: record.pod_ip.clone(),
        pod_ips: record.pod_ip.clone().map(|ip| vec![PodIP { ip }]),
        host_ip: host_ip.clone(),
        host_ips: host_ip.map(|ip| vec![HostIP { ip }]),
        start_time: record.start_time.map(Time),
        qos_class: Some(qos_class(pod).to_owned()),
        reason: record.reason.clone(),
        message: record.message.clone(),
        nominated_node_name: previous.nominated_node_name.clone(),
        observed_generation: pod.metadata.generation,
        ..PodStatus::default()
    }
}

/// Write a pod's status through the `pods/status` subresource (a merge
/// patch: lists are replaced whole, so the status written is the status
/// stored). Returns `Ok(false)` when the pod is gone.
pub async fn write(
    client: &kube::Client,
    pod: &Pod,
    status: &PodStatus,
) -> Result<bool, kube::Error> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let mut patch = serde_json::json!({ "status": status });
    // Clear pod-level fields the kubelet no longer sets.
    for field in ["reason", "message"] {
        if patch["status"].get(field).is_none() {
            patch["status"][field] = serde_json::Value::Null;
        }
    }
    if let Some(uid) = &pod.metadata.uid {
        patch["metadata"] = serde_json::json!({ "uid": uid });
    }
    match api
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_follows_containers() {
        let mut r = PodRecord {
            app: vec![ContainerRecord::new("c", "img", "ContainerCreating")],
            ..PodRecord::default()
        };
        assert_eq!(r.phase(), "Pending");
        r.initialized = true;
        assert_eq!(r.phase(), "Pending");
        r.app[0].state = CState::Running {
            started_at: Timestamp::now(),
        };
        assert_eq!(r.phase(), "Running");
        r.terminal = Some(Terminal::Succeeded);
        assert_eq!(r.phase(), "Succeeded");
    }
}
