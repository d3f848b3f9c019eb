//! `scheduled-backup`: a `Backup` runs a backup Job on a cron schedule (the
//! parser is rk's CronJob controller's, [`rk_controllers::controllers::cronjob::schedule`])
//! and keeps only the newest `successfulJobsHistoryLimit` successful and
//! `failedJobsHistoryLimit` failed Jobs.
//!
//! Each reconcile: find the latest scheduled time not yet run, create its Job
//! (named after the time, so a retry never runs it twice), delete finished
//! Jobs beyond the limits, write the status, and ask to be woken at the next
//! scheduled time.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::{Api, Client, CustomResource, Resource, ResourceExt};
use rk_controllers::controllers::cronjob::schedule::Schedule;
use rk_runtime::Store;
use rk_runtime::cache::ObjectKey;
use rk_runtime::controller::{Action, ControllerBuilder, Reconciler};
use rk_runtime::events::{EventType, Recorder};
use rk_runtime::factory::InformerOptions;
use rk_runtime::finalizer::{FinalizerEvent, finalize};
use rk_runtime::manager::Manager;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::operator::{
    OperatorConfig, ReconcileError, manager as new_manager, patch_status, publish, recorder,
    set_condition,
};

/// The finalizer the operator keeps on every `Backup`.
pub const FINALIZER: &str = "examples.rk.dev/scheduled-backup";
/// The label on a Backup's Jobs naming it.
pub const BACKUP_LABEL: &str = "examples.rk.dev/backup";
/// The annotation on a Job recording the time it was scheduled for.
pub const SCHEDULED_AT: &str = "examples.rk.dev/scheduled-at";

/// A backup that runs on a schedule.
// Each `printcolumn(...)` repeats `type_ = ...`, which clippy takes for a
// duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "examples.rk.dev",
    version = "v1",
    kind = "Backup",
    namespaced,
    status = "BackupStatus",
    printcolumn(name = "Schedule", type_ = "string", json_path = ".spec.schedule"),
    printcolumn(name = "Last", type_ = "date", json_path = ".status.lastScheduleTime")
)]
#[serde(rename_all = "camelCase")]
pub struct BackupSpec {
    /// Standard five-field cron (`*/5 * * * *`) or `@hourly`-style, in UTC.
    pub schedule: String,
    /// The backup container's image.
    pub image: String,
    /// Its command.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Its arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Successful Jobs to keep (default 3).
    #[serde(default = "three")]
    pub successful_jobs_history_limit: i32,
    /// Failed Jobs to keep (default 1).
    #[serde(default = "one")]
    pub failed_jobs_history_limit: i32,
    /// Create no new Jobs while true.
    #[serde(default)]
    pub suspend: bool,
}

fn three() -> i32 {
    3
}

fn one() -> i32 {
    1
}

/// What the operator observed.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupStatus {
    /// The latest scheduled time a Job was created for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<Time>,
    /// When the newest successful Job finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_time: Option<Time>,
    /// Names of running Jobs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub active: Vec<String>,
    /// `Ready`: the schedule is valid and the last backup did not fail.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Where a Job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// Still running.
    Active,
    /// Finished with `Complete`.
    Succeeded,
    /// Finished with `Failed`.
    Failed,
}

/// A Job's state from its conditions.
pub fn job_state(job: &Job) -> JobState {
    let conditions = job.status.as_ref().and_then(|s| s.conditions.as_ref());
    let has = |t: &str| {
        conditions.is_some_and(|cs| cs.iter().any(|c| c.type_ == t && c.status == "True"))
    };
    if has("Complete") {
        JobState::Succeeded
    } else if has("Failed") {
        JobState::Failed
    } else {
        JobState::Active
    }
}

fn finished_at(job: &Job) -> Option<Timestamp> {
    job.status
        .as_ref()
        .and_then(|s| s.completion_time.as_ref())
        .or(job.metadata.creation_timestamp.as_ref())
        .map(|t| t.0)
}

// ANCHOR: history
/// The finished Jobs to delete so that at most `limit` of `jobs` remain,
/// oldest first.
pub fn beyond_limit(mut jobs: Vec<Arc<Job>>, limit: i32) -> Vec<Arc<Job>> {
    let keep = usize::try_from(limit.max(0)).unwrap_or(0);
    if jobs.len() <= keep {
        return Vec::new();
    }
    jobs.sort_by_key(|j| (finished_at(j), j.name_any()));
    let excess = jobs.len() - keep;
    jobs.truncate(excess);
    jobs
}
// ANCHOR_END: history

/// The Job for the run of `backup` scheduled at `at`, controlled by it.
pub fn desired_job(backup: &Backup, at: Timestamp) -> Result<Job, ReconcileError> {
    let owner = backup
        .controller_owner_ref(&())
        .ok_or_else(|| ReconcileError::Invalid("Backup has no uid yet".into()))?;
    let name = format!("{}-{}", backup.name_any(), at.as_second() / 60);
    let labels = BTreeMap::from([(BACKUP_LABEL.to_owned(), backup.name_any())]);
    Ok(Job {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: backup.namespace(),
            labels: Some(labels.clone()),
            annotations: Some(BTreeMap::from([(SCHEDULED_AT.to_owned(), at.to_string())])),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(2),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    containers: vec![Container {
                        name: "backup".into(),
                        image: Some(backup.spec.image.clone()),
                        command: (!backup.spec.command.is_empty())
                            .then(|| backup.spec.command.clone()),
                        args: (!backup.spec.args.is_empty()).then(|| backup.spec.args.clone()),
                        ..Container::default()
                    }],
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
        status: None,
    })
}

/// The clock a [`BackupReconciler`] reads (tests move it forward).
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// Reconciles `Backup`s.
pub struct BackupReconciler {
    client: Client,
    backups: Store<Backup>,
    jobs: Store<Job>,
    recorder: Arc<Recorder>,
    clock: Clock,
}

impl Reconciler for BackupReconciler {
    type Error = ReconcileError;

    async fn reconcile(&self, key: ObjectKey) -> Result<Action, ReconcileError> {
        let Some(backup) = self.backups.get(&key) else {
            return Ok(Action::Done);
        };
        let api: Api<Backup> =
            Api::namespaced(self.client.clone(), &backup.namespace().unwrap_or_default());
        let outcome = finalize(&api, FINALIZER, (*backup).clone(), |event| async {
            match event {
                FinalizerEvent::Apply(b) => self.apply(&b).await,
                FinalizerEvent::Cleanup(b) => {
                    let note = "Backup deleted; its Jobs go with it".to_owned();
                    publish(&self.recorder, &b, EventType::Normal, "Deleting", note).await;
                    Ok(Action::Done)
                }
            }
        })
        .await;
        match outcome {
            Ok(action) => Ok(action.unwrap_or(Action::Done)),
            Err(e) => {
                let e = ReconcileError::from(e);
                publish(
                    &self.recorder,
                    &*backup,
                    EventType::Warning,
                    "ReconcileFailed",
                    e.to_string(),
                )
                .await;
                Err(e)
            }
        }
    }
}

impl BackupReconciler {
    // ANCHOR: apply
    async fn apply(&self, backup: &Backup) -> Result<Action, ReconcileError> {
        let namespace = backup.namespace().unwrap_or_default();
        let uid = backup.uid().unwrap_or_default();
        let jobs_api: Api<Job> = Api::namespaced(self.client.clone(), &namespace);
        let mut status = backup.status.clone().unwrap_or_default();
        let generation = backup.metadata.generation;

        // 1. The schedule; a bad one waits for the user to fix it.
        let schedule = match backup.spec.schedule.parse::<Schedule>() {
            Ok(s) => s,
            Err(e) => {
                set_condition(
                    &mut status.conditions,
                    "Ready",
                    false,
                    "InvalidSchedule",
                    e.to_string(),
                    generation,
                );
                self.write_status(backup, &status).await?;
                publish(
                    &self.recorder,
                    backup,
                    EventType::Warning,
                    "InvalidSchedule",
                    e.to_string(),
                )
                .await;
                return Ok(Action::Done);
            }
        };

        // 2. What exists: our Jobs, by state.
        let ours: Vec<Arc<Job>> = self
            .jobs
            .list_namespace(&namespace)
            .into_iter()
            .filter(|j| {
                j.owner_references()
                    .iter()
                    .any(|o| o.controller == Some(true) && o.uid == uid)
            })
            .collect();
        let by_state = |state| {
            ours.iter()
                .filter(|j| job_state(j) == state)
                .cloned()
                .collect::<Vec<_>>()
        };
        let (active, succeeded, failed) = (
            by_state(JobState::Active),
            by_state(JobState::Succeeded),
            by_state(JobState::Failed),
        );

        // 3. The latest missed run, if any: create its Job.
        let now = (self.clock)();
        let earliest = status
            .last_schedule_time
            .as_ref()
            .or(backup.metadata.creation_timestamp.as_ref())
            .map_or(now, |t| t.0);
        let (missed, _) = schedule.most_recent(earliest, now, &TimeZone::UTC);
        if let Some(at) = missed
            && !backup.spec.suspend
        {
            let job = desired_job(backup, at)?;
            match jobs_api.create(&PostParams::default(), &job).await {
                Ok(job) => {
                    let note = format!("created Job {} for {at}", job.name_any());
                    publish(
                        &self.recorder,
                        backup,
                        EventType::Normal,
                        "SuccessfulCreate",
                        note,
                    )
                    .await;
                }
                Err(kube::Error::Api(s)) if s.code == 409 => {} // created before; a retry
                Err(e) => return Err(e.into()),
            }
            status.last_schedule_time = Some(Time(at));
        }

        // 4. History limits.
        let spec = &backup.spec;
        let expired = beyond_limit(succeeded.clone(), spec.successful_jobs_history_limit)
            .into_iter()
            .chain(beyond_limit(failed.clone(), spec.failed_jobs_history_limit));
        for job in expired {
            match jobs_api
                .delete(&job.name_any(), &DeleteParams::background())
                .await
            {
                Ok(_) => {
                    let note = format!("deleted finished Job {}", job.name_any());
                    publish(
                        &self.recorder,
                        backup,
                        EventType::Normal,
                        "SuccessfulDelete",
                        note,
                    )
                    .await;
                }
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }

        // 5. Status, then sleep until the next run.
        status.active = active.iter().map(|j| j.name_any()).collect();
        status.active.sort();
        status.last_successful_time = succeeded
            .iter()
            .filter_map(|j| finished_at(j))
            .max()
            .map(Time)
            .or(status.last_successful_time);
        let newest_finished = succeeded
            .iter()
            .chain(failed.iter())
            .max_by_key(|j| (finished_at(j), j.name_any()));
        let last_failed = newest_finished.is_some_and(|j| job_state(j) == JobState::Failed);
        let (reason, message) = if last_failed {
            ("BackupFailed", "the latest backup Job failed".to_owned())
        } else {
            ("Scheduled", format!("runs on {:?}", spec.schedule))
        };
        set_condition(
            &mut status.conditions,
            "Ready",
            !last_failed,
            reason,
            message,
            generation,
        );
        self.write_status(backup, &status).await?;
        Ok(match schedule.next_after(now, &TimeZone::UTC) {
            Some(next) => {
                let wait = now.duration_until(next).unsigned_abs();
                Action::RequeueAfter(wait + Duration::from_millis(100))
            }
            None => Action::Done,
        })
    }
    // ANCHOR_END: apply

    async fn write_status(
        &self,
        backup: &Backup,
        status: &BackupStatus,
    ) -> Result<(), ReconcileError> {
        if backup.status.as_ref() == Some(status) {
            return Ok(());
        }
        let api: Api<Backup> =
            Api::namespaced(self.client.clone(), &backup.namespace().unwrap_or_default());
        patch_status(&api, &backup.name_any(), backup.status.as_ref(), status).await?;
        Ok(())
    }
}

/// A [`Manager`] running the `scheduled-backup` controller under `config`.
pub fn manager(client: Client, config: &OperatorConfig) -> Manager {
    manager_with_clock(client, config, Arc::new(Timestamp::now))
}

/// As [`manager`], reading the time from `clock`.
pub fn manager_with_clock(client: Client, config: &OperatorConfig, clock: Clock) -> Manager {
    let mut manager = new_manager(client.clone(), config);
    let owned = InformerOptions::all().labels(BACKUP_LABEL);
    let builder = ControllerBuilder::<Backup>::new("scheduled-backup", manager.factory())
        .owns::<Job>(&owned)
        .workers(config.workers)
        .metrics(manager.controller_metrics(), Some(manager.queue_metrics()));
    let backups = builder.store();
    let jobs = manager.factory().informer::<Job>(&owned).store();
    let reconciler = BackupReconciler {
        recorder: recorder(client.clone(), "examples.rk.dev/scheduled-backup", config),
        client,
        backups,
        jobs,
        clock,
    };
    manager.add_controller(builder.build(reconciler));
    manager
}
