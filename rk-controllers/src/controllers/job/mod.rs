//! The Job controller: runs pods to completion, as upstream's
//! `pkg/controller/job`.
//!
//! A sync reads top to bottom as the algorithm: read the Job (fresh from the
//! API server, so counters are never stale) and the pods it controls; count
//! the pods that finished since the last sync through the finalizer-based
//! tracking protocol (record their uids in `status.uncountedTerminatedPods`,
//! remove the `batch.kubernetes.io/job-tracking` finalizer, then move them
//! into `succeeded`/`failed`); decide whether the Job has failed
//! (`podFailurePolicy`, `backoffLimit`, `backoffLimitPerIndex` and
//! `maxFailedIndexes`, `activeDeadlineSeconds`) or succeeded (`completions`,
//! `successPolicy`); then either wind it down (delete active pods, and once
//! none is left turn `FailureTarget`/`SuccessCriteriaMet` into
//! `Failed`/`Complete`), keep it suspended (no pods), or create and delete
//! pods towards `parallelism` — with exponential back-off after failures —
//! in `NonIndexed` or `Indexed` completion mode; last, write status.

pub mod backoff;
pub mod failure_policy;
pub mod indexed;
pub mod status;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{Job, JobSpec, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::Store;
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

use crate::controllers::replicaset::expectations::Expectations;
use crate::events::Recorder;
use crate::queue::{self, Requeue, WorkQueue};
use failure_policy::Action;
use status::Outcome;

/// The finalizer that keeps a finished pod until the Job counted it.
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// The label with the Job's uid that its generated selector matches.
pub const CONTROLLER_UID_LABEL: &str = "batch.kubernetes.io/controller-uid";
/// The label with the Job's name.
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";
/// The legacy spelling of [`CONTROLLER_UID_LABEL`].
pub const LEGACY_CONTROLLER_UID_LABEL: &str = "controller-uid";
/// The legacy spelling of [`JOB_NAME_LABEL`].
pub const LEGACY_JOB_NAME_LABEL: &str = "job-name";

/// The `spec.managedBy` value of Jobs this controller syncs (also when unset).
pub const MANAGED_BY_THIS: &str = "kubernetes.io/job-controller";

/// The most pods created or deleted in one sync.
const BURST: usize = 500;

/// Errors of one sync.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// An API call failed.
    #[error("{0}")]
    Kube(#[from] kube::Error),
    /// An object could not be built.
    #[error("building an object: {0}")]
    Build(#[from] serde_json::Error),
    /// The Job's selector or owner reference is invalid.
    #[error("invalid job: {0}")]
    Invalid(String),
}

/// Tunables of the controller.
#[derive(Clone, Debug)]
pub struct Config {
    /// The delay before replacing a pod after the first failure; it
    /// doubles per further failure (upstream: 10 s).
    pub backoff_base: Duration,
    /// The longest such delay (upstream: 6 minutes).
    pub backoff_max: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            backoff_base: backoff::DEFAULT_BASE,
            backoff_max: backoff::DEFAULT_MAX,
        }
    }
}

fn key_of(ns: &str, name: &str) -> String {
    format!("{ns}/{name}")
}

fn phase(pod: &Pod) -> &str {
    rk_core::object::pod_phase(pod)
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some() && !is_terminal(pod)
}

fn is_active(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none() && !is_terminal(pod)
}

fn has_tracking(pod: &Pod) -> bool {
    pod.metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == TRACKING_FINALIZER)
}

fn uid_of(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

fn name_of(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap_or_default()
}

/// The Job's controller key for a pod: its controlling Job, or for an
/// orphan the Job its `job-name` label names (for adoption).
fn job_key_for_pod(pod: &Pod) -> Option<String> {
    let ns = pod.metadata.namespace.as_deref()?;
    if let Some(r) = rk_core::object::controller_of(&pod.metadata) {
        return (r.kind == "Job" && r.api_version.starts_with("batch/"))
            .then(|| key_of(ns, &r.name));
    }
    let labels = pod.metadata.labels.as_ref()?;
    labels
        .get(JOB_NAME_LABEL)
        .or_else(|| labels.get(LEGACY_JOB_NAME_LABEL))
        .map(|n| key_of(ns, n))
}

fn is_indexed(spec: &JobSpec) -> bool {
    spec.completion_mode.as_deref() == Some("Indexed")
}

/// Whether a terminating pod must reach `Failed` before it is replaced.
fn only_replace_failed(spec: &JobSpec) -> bool {
    spec.pod_replacement_policy.as_deref() == Some("Failed") || spec.pod_failure_policy.is_some()
}

/// What a sync learned about the pods that finished since the last one.
#[derive(Default)]
struct Tracking {
    /// Pods whose tracking finalizer should be removed now.
    finalize: Vec<Pod>,
    /// A `FailJob` rule matched: the message.
    fail_job: Option<String>,
}

/// The controller's state.
pub struct Controller {
    client: kube::Client,
    pods: Store<Pod>,
    expectations: Expectations,
    backoff: backoff::Records,
    /// Pod uids whose finalizer this controller removed, per Job key, until
    /// the watch shows the removal (so a lagging cache never counts twice).
    finalized: Mutex<HashMap<String, HashSet<String>>>,
    recorder: Recorder,
    config: Config,
}

impl Controller {
    fn finalized_for(&self, key: &str) -> HashSet<String> {
        self.finalized
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
            .unwrap_or_default()
    }

    fn mark_finalized(&self, key: &str, uid: String) {
        self.finalized
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key.to_string())
            .or_default()
            .insert(uid);
    }

    /// Forget removals the cache now shows (pod without finalizer, or gone).
    fn prune_finalized(&self, key: &str, pods: &[Pod]) {
        let mut map = self.finalized.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(set) = map.get_mut(key) {
            set.retain(|uid| {
                pods.iter()
                    .any(|p| p.metadata.uid.as_deref() == Some(uid.as_str()) && has_tracking(p))
            });
            if set.is_empty() {
                map.remove(key);
            }
        }
    }

    async fn event(&self, job: &Job, type_: &str, reason: &str, message: &str) {
        self.recorder
            .record("batch/v1", "Job", &job.metadata, type_, reason, message)
            .await;
    }

    /// The pods this Job controls, adopting active orphans its selector
    /// matches.
    async fn claim_pods(&self, job: &Job, spec: &JobSpec) -> Result<Vec<Pod>, SyncError> {
        let ns = job.metadata.namespace.clone().unwrap_or_default();
        let uid = job.metadata.uid.clone().unwrap_or_default();
        let selector = match spec.selector.as_ref() {
            Some(s) => Some(
                rk_core::labels::Selector::try_from(s)
                    .map_err(|e| SyncError::Invalid(e.to_string()))?,
            ),
            None => None,
        };
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let mut owned = Vec::new();
        for p in self.pods.state() {
            if p.metadata.namespace.as_deref() != Some(ns.as_str()) {
                continue;
            }
            match rk_core::object::controller_of(&p.metadata) {
                Some(r) if r.uid == uid => owned.push((*p).clone()),
                None if job.metadata.deletion_timestamp.is_none() && is_active(&p) => {
                    let labels = p.metadata.labels.clone().unwrap_or_default();
                    let Some(sel) = selector.as_ref().filter(|s| !s.is_empty()) else {
                        continue;
                    };
                    if !sel.matches(&labels) {
                        continue;
                    }
                    let mut refs = p.metadata.owner_references.clone().unwrap_or_default();
                    refs.push(
                        rk_core::object::controller_ref_for(job)
                            .map_err(|e| SyncError::Invalid(e.to_string()))?,
                    );
                    // Adopted pods are tracked like created ones.
                    let mut finalizers = p.metadata.finalizers.clone().unwrap_or_default();
                    if !finalizers.iter().any(|f| f == TRACKING_FINALIZER) {
                        finalizers.push(TRACKING_FINALIZER.to_string());
                    }
                    let patch = json!({"metadata": {"ownerReferences": refs,
                        "finalizers": finalizers,
                        "resourceVersion": p.metadata.resource_version}});
                    if let Ok(adopted) = api
                        .patch(&name_of(&p), &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                    {
                        owned.push(adopted);
                    }
                }
                _ => {}
            }
        }
        Ok(owned)
    }

    /// Remove the tracking finalizer from `pod`; true once it is gone (or
    /// the pod is).
    async fn remove_finalizer(&self, pod: &Pod) -> bool {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let name = name_of(pod);
        let mut current = pod.clone();
        for _ in 0..3 {
            let rest: Vec<String> = current
                .metadata
                .finalizers
                .iter()
                .flatten()
                .filter(|f| *f != TRACKING_FINALIZER)
                .cloned()
                .collect();
            let patch = json!({"metadata": {"finalizers": rest,
                "resourceVersion": current.metadata.resource_version}});
            match api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => return true,
                Err(kube::Error::Api(e)) if e.code == 404 => return true,
                Err(kube::Error::Api(e)) if e.code == 409 => match api.get_opt(&name).await {
                    Ok(Some(p)) if p.metadata.uid == pod.metadata.uid => {
                        if !has_tracking(&p) {
                            return true;
                        }
                        current = p;
                    }
                    Ok(_) => return true,
                    Err(e) => {
                        tracing::debug!(pod = %name, error = %e, "re-reading a pod failed");
                        return false;
                    }
                },
                Err(e) => {
                    tracing::debug!(pod = %name, error = %e, "removing the tracking finalizer failed");
                    return false;
                }
            }
        }
        false
    }

    /// Remove the tracking finalizer from every pod in `pods` that has it,
    /// concurrently; the uids where it is gone.
    async fn finalize_pods(&self, key: &str, pods: &[Pod]) -> HashSet<String> {
        let tasks = pods
            .iter()
            .filter(|p| has_tracking(p))
            .map(|p| async move { (uid_of(p), self.remove_finalizer(p).await) });
        let mut done = HashSet::new();
        for (uid, ok) in futures::future::join_all(tasks).await {
            if ok {
                self.mark_finalized(key, uid.clone());
                done.insert(uid);
            }
        }
        done
    }

    /// A Job that is gone or being deleted: its pods lose the finalizer so
    /// nothing holds them.
    async fn release_pods_of(&self, key: &str, ns: &str, name: &str) {
        let pods: Vec<Pod> = self
            .pods
            .state()
            .iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(ns) && has_tracking(p))
            .filter(|p| {
                rk_core::object::controller_of(&p.metadata)
                    .is_some_and(|r| r.kind == "Job" && r.name == name)
            })
            .map(|p| (**p).clone())
            .collect();
        self.finalize_pods(key, &pods).await;
    }

    /// Sync the Job `key` (`namespace/name`) at the current time.
    pub async fn sync(&self, key: &str) -> Result<Requeue, SyncError> {
        self.sync_at(key, Timestamp::now()).await
    }

    /// Sync the Job `key` as if the time were `now`.
    pub async fn sync_at(&self, key: &str, now: Timestamp) -> Result<Requeue, SyncError> {
        let Some((ns, name)) = key.split_once('/') else {
            return Ok(None);
        };
        let api: Api<Job> = Api::namespaced(self.client.clone(), ns);
        let Some(job) = api.get_opt(name).await? else {
            self.expectations.forget(key);
            self.backoff.forget(key);
            self.release_pods_of(key, ns, name).await;
            self.finalized
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(key);
            return Ok(None);
        };
        if job.metadata.deletion_timestamp.is_some() {
            self.release_pods_of(key, ns, name).await;
            return Ok(None);
        }
        let spec = job.spec.clone().unwrap_or_default();
        if spec
            .managed_by
            .as_deref()
            .is_some_and(|m| m != MANAGED_BY_THIS)
        {
            // Another controller owns this Job's pods and status.
            return Ok(None);
        }
        // Read before the pod cache, so met expectations mean the snapshot
        // holds every pod created or deleted (see the DaemonSet controller).
        let settled = self.expectations.satisfied(key);
        let pods = self.claim_pods(&job, &spec).await?;
        self.prune_finalized(key, &pods);
        if status::is_finished(&job) {
            // Anything still holding a finalizer is released.
            self.finalize_pods(key, &pods).await;
            return Ok(None);
        }

        let indexed = is_indexed(&spec);
        let completions = spec.completions;
        let index_limit = completions.unwrap_or(0);
        let per_index = indexed && spec.backoff_limit_per_index.is_some();
        let suspended = spec.suspend == Some(true);
        let mut st = job.status.clone().unwrap_or_default();
        let mut completed = indexed::parse_ranges(
            st.completed_indexes.as_deref().unwrap_or_default(),
            index_limit,
        );
        let mut failed_indexes = indexed::parse_ranges(
            st.failed_indexes.as_deref().unwrap_or_default(),
            index_limit,
        );
        let uncounted = st.uncounted_terminated_pods.clone().unwrap_or_default();
        let mut uncounted_ok: Vec<String> = uncounted.succeeded.clone().unwrap_or_default();
        let mut uncounted_failed: Vec<String> = uncounted.failed.clone().unwrap_or_default();
        let mut outcome = status::recorded_outcome(&job);

        // 1. Pods that finished since the last sync.
        let tracking = self.track(
            key,
            &spec,
            &pods,
            now,
            outcome.as_ref(),
            (&mut uncounted_ok, &mut uncounted_failed),
            (&mut completed, &mut failed_indexes),
        );
        if outcome.is_none()
            && let Some(msg) = &tracking.fail_job
        {
            outcome = Some(Outcome::failure_with(status::POD_FAILURE_POLICY, msg));
        }
        // Record the uids before their finalizers go (a crash in between
        // must not lose a count).
        let recorded_ok = uncounted.succeeded.clone().unwrap_or_default();
        let recorded_failed = uncounted.failed.clone().unwrap_or_default();
        let mut job = job;
        if uncounted_ok != recorded_ok || uncounted_failed != recorded_failed {
            st.uncounted_terminated_pods = Some(UncountedTerminatedPods {
                succeeded: Some(uncounted_ok.clone()),
                failed: Some(uncounted_failed.clone()),
            });
            if indexed {
                st.completed_indexes = Some(indexed::format_ranges(&completed));
            }
            if per_index {
                st.failed_indexes = Some(indexed::format_ranges(&failed_indexes));
            }
            job.status = Some(st.clone());
            job = api
                .replace_status(name, &PostParams::default(), &job)
                .await?;
        }
        self.finalize_pods(key, &tracking.finalize).await;
        let finalized_now = self.finalized_for(key);
        let still_held = |uid: &String| {
            !finalized_now.contains(uid)
                && pods
                    .iter()
                    .any(|p| p.metadata.uid.as_deref() == Some(uid.as_str()) && has_tracking(p))
        };
        let (held_ok, moved_ok): (Vec<String>, Vec<String>) =
            uncounted_ok.into_iter().partition(|u| still_held(u));
        let (held_failed, moved_failed): (Vec<String>, Vec<String>) =
            uncounted_failed.into_iter().partition(|u| still_held(u));
        let mut succeeded = st.succeeded.unwrap_or(0);
        if indexed {
            succeeded = completed.len() as i32;
        } else {
            succeeded += moved_ok.len() as i32;
        }
        let failed = st.failed.unwrap_or(0) + moved_failed.len() as i32;
        let succeeded_total = if indexed {
            succeeded
        } else {
            succeeded + held_ok.len() as i32
        };
        let failed_total = failed + held_failed.len() as i32;

        // Pods not finished yet (a terminating pod counts until it is gone,
        // so the Job ends only once all its pods did).
        let running: Vec<&Pod> = pods.iter().filter(|p| !is_terminal(p)).collect();
        let active: Vec<&Pod> = running.iter().copied().filter(|p| is_active(p)).collect();
        let terminating = running.iter().filter(|p| is_terminating(p)).count() as i32;

        // 2. Has the Job failed or succeeded?
        let mut start_time = st.start_time.clone();
        if start_time.is_none() && !suspended {
            start_time = Some(Time(now));
        }
        let mut requeue: Option<Duration> = None;
        if outcome.is_none() {
            let progress = status::Progress {
                active: &active,
                succeeded: succeeded_total,
                failed: failed_total,
                completed: &completed,
                failed_indexes: &failed_indexes,
                start: start_time.as_ref().map(|t| t.0),
            };
            outcome = status::decide(&spec, &progress, now, &mut requeue);
        }

        // 3. Act.
        let mut conditions = st.conditions.clone().unwrap_or_default();
        let mut completion_time = st.completion_time.clone();
        let had_outcome = status::recorded_outcome(&job).is_some();
        if let Some(o) = &outcome {
            status::set_condition(
                &mut conditions,
                o.interim_type(),
                &o.reason,
                &o.message,
                now,
            );
            if !active.is_empty() {
                self.delete_pods(key, &job, &active, settled).await;
            }
            let idle = running.is_empty() && held_ok.is_empty() && held_failed.is_empty();
            if idle {
                status::set_condition(
                    &mut conditions,
                    o.terminal_type(),
                    &o.reason,
                    &o.message,
                    now,
                );
                if o.success {
                    completion_time = Some(Time(now));
                    self.event(&job, "Normal", "Completed", "Job completed")
                        .await;
                } else {
                    self.event(&job, "Warning", &o.reason, &o.message).await;
                }
            } else if !had_outcome && !o.success {
                tracing::info!(job = %key, reason = %o.reason, "job failing; terminating its pods");
            }
        } else if suspended {
            if !active.is_empty() {
                self.delete_pods(key, &job, &active, settled).await;
            }
            if status::set_condition(
                &mut conditions,
                status::SUSPENDED,
                "JobSuspended",
                "Job suspended",
                now,
            ) {
                self.event(&job, "Normal", "Suspended", "Job suspended")
                    .await;
            }
        } else {
            let was_suspended = conditions
                .iter()
                .any(|c| c.type_ == status::SUSPENDED && c.status == "True");
            if was_suspended {
                status::set_condition_status(
                    &mut conditions,
                    status::SUSPENDED,
                    "False",
                    "JobResumed",
                    "Job resumed",
                    now,
                );
                // activeDeadlineSeconds counts from the resume.
                start_time = Some(Time(now));
                self.event(&job, "Normal", "Resumed", "Job resumed").await;
            }
            let wait = self
                .manage(
                    key,
                    &job,
                    &spec,
                    &pods,
                    &active,
                    terminating,
                    succeeded_total,
                    &completed,
                    &failed_indexes,
                    now,
                    settled,
                )
                .await?;
            requeue = min_requeue(requeue, wait);
        }

        // 4. Status.
        let ready = active
            .iter()
            .filter(|p| rk_core::object::is_pod_ready(p))
            .count() as i32;
        let new_status = JobStatus {
            active: Some(active.len() as i32),
            ready: Some(ready),
            terminating: Some(terminating),
            succeeded: Some(succeeded),
            failed: Some(failed),
            start_time,
            completion_time,
            completed_indexes: indexed.then(|| indexed::format_ranges(&completed)),
            failed_indexes: per_index.then(|| indexed::format_ranges(&failed_indexes)),
            uncounted_terminated_pods: Some(UncountedTerminatedPods {
                succeeded: (!held_ok.is_empty()).then_some(held_ok),
                failed: (!held_failed.is_empty()).then_some(held_failed),
            }),
            conditions: (!conditions.is_empty()).then_some(conditions),
        };
        if status::normalized(&new_status)
            != status::normalized(job.status.as_ref().unwrap_or(&JobStatus::default()))
        {
            let mut updated = job.clone();
            updated.status = Some(new_status);
            match api
                .replace_status(name, &PostParams::default(), &updated)
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => return Ok(None),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(requeue)
    }

    /// Step 1: classify the pods that finished since the last sync.
    #[allow(clippy::too_many_arguments)]
    fn track(
        &self,
        key: &str,
        spec: &JobSpec,
        pods: &[Pod],
        now: Timestamp,
        outcome: Option<&Outcome>,
        (uncounted_ok, uncounted_failed): (&mut Vec<String>, &mut Vec<String>),
        (completed, failed_indexes): (&mut BTreeSet<i32>, &mut BTreeSet<i32>),
    ) -> Tracking {
        let indexed = is_indexed(spec);
        let index_limit = spec.completions.unwrap_or(0);
        let per_index = indexed && spec.backoff_limit_per_index.is_some();
        let suspended = spec.suspend == Some(true);
        let only_failed = only_replace_failed(spec);
        let finalized = self.finalized_for(key);
        let mut out = Tracking::default();
        for pod in pods {
            let uid = uid_of(pod);
            if !has_tracking(pod) || finalized.contains(&uid) {
                continue;
            }
            if uncounted_ok.contains(&uid) || uncounted_failed.contains(&uid) {
                out.finalize.push(pod.clone());
                continue;
            }
            let index = indexed::pod_index(pod).filter(|i| *i < index_limit);
            match phase(pod) {
                "Succeeded" => {
                    if indexed && let Some(i) = index {
                        completed.insert(i);
                        self.backoff.success(&format!("{key}#{i}"));
                    }
                    uncounted_ok.push(uid);
                    self.backoff.success(key);
                    out.finalize.push(pod.clone());
                }
                "Failed" => {
                    let action = spec
                        .pod_failure_policy
                        .as_ref()
                        .and_then(|p| failure_policy::evaluate(p, pod));
                    match action {
                        Some(Action::Ignore) => {}
                        Some(Action::FailJob(msg)) => {
                            uncounted_failed.push(uid);
                            out.fail_job.get_or_insert(msg);
                        }
                        Some(Action::FailIndex) if per_index => {
                            if let Some(i) = index {
                                failed_indexes.insert(i);
                            }
                            uncounted_failed.push(uid);
                        }
                        _ => {
                            uncounted_failed.push(uid);
                            self.count_failure(key, spec, pod, index, failed_indexes, now);
                        }
                    }
                    out.finalize.push(pod.clone());
                }
                _ if pod.metadata.deletion_timestamp.is_some() => {
                    if suspended {
                        // Deleted for the suspension: not a failure.
                        out.finalize.push(pod.clone());
                    } else if let Some(o) = outcome {
                        if !o.success {
                            uncounted_failed.push(uid);
                        }
                        out.finalize.push(pod.clone());
                    } else if !only_failed {
                        // Deleted while running: a failure, replaced at once.
                        uncounted_failed.push(uid);
                        self.count_failure(key, spec, pod, index, failed_indexes, now);
                        out.finalize.push(pod.clone());
                    }
                }
                _ => {}
            }
        }
        out
    }

    /// A counted failure: back-off, and the index's own limit.
    fn count_failure(
        &self,
        key: &str,
        spec: &JobSpec,
        pod: &Pod,
        index: Option<i32>,
        failed_indexes: &mut BTreeSet<i32>,
        now: Timestamp,
    ) {
        self.backoff.failure(key, now);
        if let (Some(limit), Some(i), true) =
            (spec.backoff_limit_per_index, index, is_indexed(spec))
        {
            if indexed::index_failure_count(pod) + 1 > limit {
                failed_indexes.insert(i);
            } else {
                self.backoff.failure(&format!("{key}#{i}"), now);
            }
        }
    }

    /// Delete `victims` (recording expectations and events), if the
    /// expectations were met when the sync read its pods (`settled`).
    async fn delete_pods(&self, key: &str, job: &Job, victims: &[&Pod], settled: bool) {
        if !settled || !self.expectations.satisfied(key) {
            return;
        }
        let victims: Vec<&&Pod> = victims.iter().take(BURST).collect();
        self.expectations.expect_deletions(key, victims.len());
        for v in victims {
            let ns = v.metadata.namespace.clone().unwrap_or_default();
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
            let name = name_of(v);
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {
                    self.event(
                        job,
                        "Normal",
                        "SuccessfulDelete",
                        &format!("Deleted pod: {name}"),
                    )
                    .await;
                }
                Err(e) => {
                    self.expectations.deletion_observed(key);
                    if !matches!(&e, kube::Error::Api(s) if s.code == 404) {
                        tracing::warn!(job = %key, pod = %name, error = %e, "deleting a pod failed");
                        self.event(
                            job,
                            "Warning",
                            "FailedDelete",
                            &format!("Error deleting: {e}"),
                        )
                        .await;
                    }
                }
            }
        }
    }

    /// Step 3 for a running Job: create or delete pods towards
    /// `parallelism`. Returns when to look again (back-off).
    #[allow(clippy::too_many_arguments)]
    async fn manage(
        &self,
        key: &str,
        job: &Job,
        spec: &JobSpec,
        pods: &[Pod],
        active: &[&Pod],
        terminating: i32,
        succeeded: i32,
        completed: &BTreeSet<i32>,
        failed_indexes: &BTreeSet<i32>,
        now: Timestamp,
        settled: bool,
    ) -> Result<Option<Duration>, SyncError> {
        if !settled || !self.expectations.satisfied(key) {
            return Ok(None);
        }
        let parallelism = spec.parallelism.unwrap_or(1).max(0);
        let held = if only_replace_failed(spec) {
            terminating
        } else {
            0
        };
        if !is_indexed(spec) {
            let want = match spec.completions {
                Some(c) => parallelism.min(c - succeeded).max(0),
                None if succeeded > 0 => active.len() as i32,
                None => parallelism,
            };
            let have = active.len() as i32;
            if have > want {
                let mut victims = active.to_vec();
                victims.sort_by_key(|p| {
                    (
                        rk_core::object::is_pod_ready(p),
                        std::cmp::Reverse(p.metadata.creation_timestamp.as_ref().map(|t| t.0)),
                    )
                });
                victims.truncate((have - want) as usize);
                self.delete_pods(key, job, &victims, settled).await;
                return Ok(None);
            }
            let missing = (want - have - held).max(0) as usize;
            if missing == 0 {
                return Ok(None);
            }
            let wait =
                self.backoff
                    .remaining(key, now, self.config.backoff_base, self.config.backoff_max);
            if !wait.is_zero() {
                return Ok(Some(wait));
            }
            let plan: Vec<(Option<i32>, i32)> = vec![(None, 0); missing];
            self.create_pods(key, job, spec, plan).await?;
            return Ok(None);
        }

        // Indexed: one active pod per index, for indexes still to do.
        let completions = spec.completions.unwrap_or(0);
        let mut by_index: BTreeMap<i32, Vec<&Pod>> = BTreeMap::new();
        let mut victims: Vec<&Pod> = Vec::new();
        for p in active {
            match indexed::pod_index(p) {
                Some(i)
                    if i < completions
                        && !completed.contains(&i)
                        && !failed_indexes.contains(&i) =>
                {
                    by_index.entry(i).or_default().push(p)
                }
                _ => victims.push(p),
            }
        }
        for list in by_index.values_mut() {
            // Keep the oldest (ready first) pod of a duplicated index.
            list.sort_by_key(|p| {
                (
                    !rk_core::object::is_pod_ready(p),
                    p.metadata.creation_timestamp.as_ref().map(|t| t.0),
                )
            });
            victims.extend(list.drain(1..));
        }
        let mut running: Vec<i32> = by_index.keys().copied().collect();
        if running.len() as i32 > parallelism {
            // Too many: the highest indexes go.
            let excess = running.len() - parallelism as usize;
            for i in running.split_off(running.len() - excess) {
                if let Some(list) = by_index.get(&i) {
                    victims.extend(list.iter().copied());
                }
            }
        }
        if !victims.is_empty() {
            self.delete_pods(key, job, &victims, settled).await;
            return Ok(None);
        }
        let mut busy: BTreeSet<i32> = running.iter().copied().collect();
        if only_replace_failed(spec) {
            busy.extend(
                pods.iter()
                    .filter(|p| is_terminating(p))
                    .filter_map(indexed::pod_index),
            );
        }
        let budget = (parallelism - running.len() as i32 - held).max(0) as usize;
        let per_index = spec.backoff_limit_per_index.is_some();
        let mut wait: Option<Duration> = None;
        let mut plan = Vec::new();
        for i in indexed::pending(completions, completed, failed_indexes, &busy) {
            if plan.len() >= budget {
                break;
            }
            let record = if per_index {
                format!("{key}#{i}")
            } else {
                key.to_string()
            };
            let left = self.backoff.remaining(
                &record,
                now,
                self.config.backoff_base,
                self.config.backoff_max,
            );
            if !left.is_zero() {
                wait = min_requeue(wait, Some(left));
                continue;
            }
            plan.push((Some(i), indexed::failures_of(spec, pods, i)));
        }
        if !plan.is_empty() {
            self.create_pods(key, job, spec, plan).await?;
        }
        Ok(wait)
    }

    /// Create one pod per `(index, earlier failures of the index)` in
    /// slow-start batches (1, 2, 4, ...).
    async fn create_pods(
        &self,
        key: &str,
        job: &Job,
        spec: &JobSpec,
        plan: Vec<(Option<i32>, i32)>,
    ) -> Result<(), SyncError> {
        let plan: Vec<_> = plan.into_iter().take(BURST).collect();
        let ns = job.metadata.namespace.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let mut pods = Vec::with_capacity(plan.len());
        for (index, failures) in &plan {
            pods.push(new_pod(job, spec, *index, *failures)?);
        }
        self.expectations.expect_creations(key, pods.len());
        let total = pods.len();
        let mut created = 0;
        let mut batch = 1;
        let mut queue = pods.into_iter();
        while created < total {
            let n = batch.min(total - created);
            let tasks: Vec<_> = queue
                .by_ref()
                .take(n)
                .map(|pod| {
                    let api = api.clone();
                    async move { api.create(&PostParams::default(), &pod).await }
                })
                .collect();
            for r in futures::future::join_all(tasks).await {
                match r {
                    Ok(p) => {
                        created += 1;
                        self.event(
                            job,
                            "Normal",
                            "SuccessfulCreate",
                            &format!("Created pod: {}", name_of(&p)),
                        )
                        .await;
                    }
                    Err(e) => {
                        // The rest of the plan will never be observed.
                        self.expectations.creation_observed_n(key, total - created);
                        self.event(
                            job,
                            "Warning",
                            "FailedCreate",
                            &format!("Error creating: {e}"),
                        )
                        .await;
                        return Err(e.into());
                    }
                }
            }
            batch *= 2;
        }
        Ok(())
    }
}

/// A new pod of `job`, for `index` in Indexed mode (with `failures`
/// earlier failures of that index).
fn new_pod(job: &Job, spec: &JobSpec, index: Option<i32>, failures: i32) -> Result<Pod, SyncError> {
    let name = job.metadata.name.clone().unwrap_or_default();
    let template = spec.template.clone();
    let mut meta = template.metadata.unwrap_or_default();
    meta.name = None;
    meta.generate_name = Some(format!("{name}-"));
    meta.namespace = job.metadata.namespace.clone();
    meta.owner_references = Some(vec![
        rk_core::object::controller_ref_for(job).map_err(|e| SyncError::Invalid(e.to_string()))?,
    ]);
    meta.finalizers
        .get_or_insert_with(Vec::new)
        .push(TRACKING_FINALIZER.to_string());
    let mut pod = Pod {
        metadata: meta,
        spec: Some(template.spec.unwrap_or_default()),
        status: None,
    };
    if let Some(i) = index {
        let failures = spec.backoff_limit_per_index.is_some().then_some(failures);
        indexed::assign(&mut pod, &name, i, failures);
    }
    Ok(pod)
}

fn min_requeue(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Run the Job controller with `workers` concurrent syncs and default
/// tunables.
pub async fn run(client: kube::Client, workers: usize) {
    run_with(client, workers, Config::default()).await
}

/// Run the Job controller with `workers` concurrent syncs and `config`.
pub async fn run_with(client: kube::Client, workers: usize, config: Config) {
    let informers = crate::watch::Informers::new(&client);
    run_shared(client, workers, config, informers).await
}

/// Run the Job controller on `informers`' shared pods.
pub async fn run_shared(
    client: kube::Client,
    workers: usize,
    config: Config,
    informers: crate::watch::Informers,
) {
    let pods = informers.pods.store();
    let queue = WorkQueue::new();
    let ctrl = Arc::new(Controller {
        client: client.clone(),
        pods,
        expectations: Expectations::default(),
        backoff: backoff::Records::default(),
        finalized: Mutex::new(HashMap::new()),
        recorder: Recorder::new(client.clone(), "job-controller"),
        config,
    });
    let q = queue.clone();
    let job_events =
        crate::watch::lean_watcher(Api::<Job>::all(client.clone()), watcher::Config::default())
            .default_backoff()
            .for_each(move |ev| {
                if let Ok(
                    watcher::Event::Apply(j)
                    | watcher::Event::InitApply(j)
                    | watcher::Event::Delete(j),
                ) = ev
                    && let (Some(ns), Some(n)) = (&j.metadata.namespace, &j.metadata.name)
                {
                    q.add(key_of(ns, n));
                }
                futures::future::ready(())
            });
    let (q, c) = (queue.clone(), ctrl.clone());
    let pod_events = informers.pods.subscribe().for_each(move |ev| {
        let (pod, deleted) = match ev {
            Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => (p, false),
            Ok(watcher::Event::Delete(p)) => (p, true),
            _ => return futures::future::ready(()),
        };
        if let Some(key) = job_key_for_pod(&pod) {
            let uid = uid_of(&pod);
            if rk_core::object::controller_of(&pod.metadata).is_some() {
                c.expectations.creation_observed(&key, &uid);
                if deleted || pod.metadata.deletion_timestamp.is_some() {
                    c.expectations.pod_leaving(&key, &uid, deleted);
                }
            }
            q.add(key);
        }
        futures::future::ready(())
    });
    let c = ctrl.clone();
    let work = queue::run_workers("job", queue, workers, move |key| {
        let c = c.clone();
        async move {
            crate::watch::store_ready(&c.pods).await;
            c.sync(&key).await
        }
    });
    tokio::join!(job_events, pod_events, work);
}
