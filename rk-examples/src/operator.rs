//! What every example operator shares: how it is configured, the
//! [`Manager`] it runs in (leader election on a Lease, `/healthz`, `/readyz`
//! and `/metrics`), installing its CRD, status conditions, and the error a
//! reconcile reports.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use rk_runtime::events::{EventInput, EventType, Recorder, Reporter};
use rk_runtime::finalizer::FinalizerError;
use rk_runtime::leader::{LeaderElectionConfig, LeaseLock};
use rk_runtime::manager::{LeaderElectionSettings, Manager, ManagerConfig};

/// How an operator runs.
#[derive(Debug, Clone, Default)]
pub struct OperatorConfig {
    /// Where to serve `/healthz`, `/readyz` and `/metrics` (nowhere when `None`).
    pub metrics_bind: Option<SocketAddr>,
    /// Contend for a Lease so that only one replica reconciles.
    pub leader_election: Option<LeaseSettings>,
    /// Stop on SIGTERM and Ctrl-C.
    pub handle_signals: bool,
    /// How many objects are reconciled at once (at least 1).
    pub workers: usize,
}

/// Which Lease the replicas of an operator contend for, and who this one is.
#[derive(Debug, Clone)]
pub struct LeaseSettings {
    /// The Lease's namespace.
    pub namespace: String,
    /// The Lease's name (one per operator).
    pub name: String,
    /// This replica's identity (the pod name, or host name and pid).
    pub identity: String,
}

/// Why an operator could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// Talking to the API server failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// No usable kubeconfig or in-cluster configuration.
    #[error("client configuration: {0}")]
    Config(String),
    /// The manager failed (port in use, leadership lost, a controller failed).
    #[error(transparent)]
    Manager(#[from] rk_runtime::manager::ManagerError),
    /// The CRD could not be rendered as YAML.
    #[error("rendering YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
    /// The CRD was created but never became usable.
    #[error("CRD {0} was not established in time")]
    NotEstablished(String),
}

/// Why one reconcile failed; the controller retries it with backoff.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// An API call failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The object asks for something impossible.
    #[error("invalid spec: {0}")]
    Invalid(String),
    /// A JSON (de)serialization failed.
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
}

impl From<FinalizerError<ReconcileError>> for ReconcileError {
    fn from(e: FinalizerError<ReconcileError>) -> Self {
        match e {
            FinalizerError::Patch(e) => Self::Kube(e),
            FinalizerError::Reconcile(e) => e,
            FinalizerError::Unnamed => Self::Invalid("object has no name".into()),
        }
    }
}

/// This replica's default identity: `$POD_NAME`, else host name and pid.
pub fn default_identity() -> String {
    if let Ok(pod) = std::env::var("POD_NAME")
        && !pod.is_empty()
    {
        return pod;
    }
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .unwrap_or_else(|| "localhost".into());
    format!("{host}-{}", std::process::id())
}

// ANCHOR: manager
/// A [`Manager`] for an operator: leader election on the Lease
/// `config.leader_election` names (if any), health and metrics on
/// `config.metrics_bind` (if any).
pub fn manager(client: Client, config: &OperatorConfig) -> Manager {
    let leader_election = config.leader_election.as_ref().map(|lease| {
        let lock = LeaseLock::new(client.clone(), &lease.namespace, &lease.name);
        LeaderElectionSettings {
            identity: lease.identity.clone(),
            lock: Arc::new(lock),
            config: LeaderElectionConfig::default(),
        }
    });
    Manager::new(
        client,
        ManagerConfig {
            bind: config.metrics_bind,
            leader_election,
            handle_signals: config.handle_signals,
        },
    )
}
// ANCHOR_END: manager

/// An event recorder reporting as `controller` (e.g. `examples.rk.dev/web-app`).
pub fn recorder(client: Client, controller: &str, config: &OperatorConfig) -> Arc<Recorder> {
    Arc::new(Recorder::new(
        client,
        Reporter {
            controller: controller.to_owned(),
            instance: config.leader_election.as_ref().map(|l| l.identity.clone()),
        },
    ))
}

/// Publish an event, logging (not failing) when the API server refuses it:
/// events are best effort.
pub async fn publish<K>(recorder: &Recorder, obj: &K, type_: EventType, reason: &str, note: String)
where
    K: kube::Resource<DynamicType = ()>,
{
    let input = EventInput {
        type_,
        reason: reason.to_owned(),
        action: reason.to_owned(),
        note: Some(note),
    };
    if let Err(e) = recorder.publish_for(obj, &input).await {
        tracing::warn!(reason, error = %e, "could not publish event");
    }
}

/// Create or update `crd` (server-side apply) and wait until its kind is
/// served.
pub async fn install_crd(
    client: Client,
    crd: &CustomResourceDefinition,
) -> Result<(), OperatorError> {
    let api: Api<CustomResourceDefinition> = Api::all(client);
    let name = crd.metadata.name.clone().unwrap_or_default();
    api.patch(
        &name,
        &PatchParams::apply("rk-examples").force(),
        &Patch::Apply(crd),
    )
    .await?;
    for _ in 0..100 {
        let current = api.get(&name).await?;
        let established = current
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
            });
        if established {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(OperatorError::NotEstablished(name))
}

// ANCHOR: conditions
/// Set the condition `type_` in `conditions`: its status, reason and message
/// change in place, and its `lastTransitionTime` moves only when the status
/// does. Returns whether anything changed.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: impl Into<String>,
    observed_generation: Option<i64>,
) -> bool {
    let status = if status { "True" } else { "False" }.to_owned();
    let message = message.into();
    if let Some(c) = conditions.iter_mut().find(|c| c.type_ == type_) {
        let changed = c.status != status
            || c.reason != reason
            || c.message != message
            || c.observed_generation != observed_generation;
        if c.status != status {
            c.last_transition_time = now();
        }
        c.status = status;
        c.reason = reason.to_owned();
        c.message = message;
        c.observed_generation = observed_generation;
        return changed;
    }
    conditions.push(Condition {
        type_: type_.to_owned(),
        status,
        reason: reason.to_owned(),
        message,
        observed_generation,
        last_transition_time: now(),
    });
    true
}
// ANCHOR_END: conditions

/// Whether the condition `type_` is present and `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == "True")
}

/// The current time as a Kubernetes `Time`.
pub fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// Write `status` with a merge patch on the status subresource. A merge
/// patch leaves out what it does not mention, so every field `old` has and
/// `status` leaves out (an emptied list skipped in serialization, an
/// optional field back to `None`) is sent as `null`, which removes it.
pub async fn patch_status<K, S>(
    api: &Api<K>,
    name: &str,
    old: Option<&S>,
    status: &S,
) -> Result<K, ReconcileError>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    S: serde::Serialize,
{
    let mut new = serde_json::to_value(status)?;
    if let (Some(old), serde_json::Value::Object(fields)) = (old, &mut new)
        && let serde_json::Value::Object(old_fields) = serde_json::to_value(old)?
    {
        for key in old_fields.keys() {
            fields.entry(key.clone()).or_insert(serde_json::Value::Null);
        }
    }
    let patch = serde_json::json!({ "status": new });
    Ok(api
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?)
}
