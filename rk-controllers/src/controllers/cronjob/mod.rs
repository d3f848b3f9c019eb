//! The CronJob controller: creates a Job for each scheduled time, as
//! upstream's `pkg/controller/cronjob` (the v2 controller).
//!
//! A sync reads the CronJob and the Jobs it controls, reconciles
//! `status.active` with them (finished and vanished Jobs leave it; a
//! success moves `lastSuccessfulTime`), and — unless the CronJob is
//! suspended or its schedule or time zone is invalid — finds the most recent
//! scheduled time since the last run (within `startingDeadlineSeconds`;
//! earlier missed times are skipped, and more than 100 of them raise a
//! `TooManyMissedTimes` warning). That time gets a Job named
//! `<cronjob>-<minutes since the epoch>` unless `concurrencyPolicy` says
//! otherwise (`Forbid` skips while a Job runs, `Replace` deletes the running
//! ones first). Finished Jobs beyond the history limits are deleted, and the
//! CronJob is looked at again at its next scheduled time.
//!
//! The clock is a parameter ([`Controller::sync_at`]), so tests drive
//! schedules without waiting for them.

pub mod schedule;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use jiff::tz::TimeZone;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, DeleteParams, ListParams, PostParams, PropagationPolicy};
use kube::runtime::{WatchStreamExt, watcher};

use crate::controllers::job::status as job_status;
use crate::events::Recorder;
use crate::queue::{self, Requeue, WorkQueue};
use schedule::Schedule;

/// The annotation on a Job with the time it was scheduled for (RFC 3339,
/// in the CronJob's time zone).
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// More missed times than this raise a `TooManyMissedTimes` warning.
pub const TOO_MANY_MISSED: u64 = 100;
/// Added to the wait for the next scheduled time, so the sync lands after it.
const NEXT_SCHEDULE_DELTA: Duration = Duration::from_millis(100);

/// Errors of one sync.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// An API call failed.
    #[error("{0}")]
    Kube(#[from] kube::Error),
    /// An object could not be built.
    #[error("building an object: {0}")]
    Build(#[from] serde_json::Error),
    /// The CronJob's owner reference could not be built.
    #[error("invalid cronjob: {0}")]
    Invalid(String),
}

/// The name of the Job for `scheduled`: `<cronjob>-<minutes since epoch>`.
pub fn job_name(cronjob: &str, scheduled: Timestamp) -> String {
    format!("{cronjob}-{}", scheduled.as_second().div_euclid(60))
}

/// `t` in RFC 3339 in `tz` (`Z` for UTC), as upstream writes the scheduled
/// timestamp annotation.
pub fn rfc3339_in(t: Timestamp, tz: &TimeZone) -> String {
    let zoned = t.to_zoned(tz.clone());
    if zoned.offset().seconds() == 0 {
        zoned.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        zoned.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
    }
}

fn job_ref(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: job.metadata.name.clone(),
        namespace: job.metadata.namespace.clone(),
        uid: job.metadata.uid.clone(),
        resource_version: job.metadata.resource_version.clone(),
        ..Default::default()
    }
}

fn start_of(job: &Job) -> Option<Timestamp> {
    job.status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .or(job.metadata.creation_timestamp.as_ref())
        .map(|t| t.0)
}

/// The controller's state.
pub struct Controller {
    client: kube::Client,
    recorder: Recorder,
}

impl Controller {
    /// A controller acting through `client`.
    pub fn new(client: kube::Client) -> Self {
        Self {
            recorder: Recorder::new(client.clone(), "cronjob-controller"),
            client,
        }
    }

    async fn event(&self, cj: &CronJob, type_: &str, reason: &str, message: &str) {
        self.recorder
            .record("batch/v1", "CronJob", &cj.metadata, type_, reason, message)
            .await;
    }

    /// Sync the CronJob `key` (`namespace/name`) at the current time.
    pub async fn sync(&self, key: &str) -> Result<Requeue, SyncError> {
        self.sync_at(key, Timestamp::now()).await
    }

    /// Sync the CronJob `key` as if the time were `now`; returns when to look
    /// again (at the next scheduled time).
    pub async fn sync_at(&self, key: &str, now: Timestamp) -> Result<Requeue, SyncError> {
        let Some((ns, name)) = key.split_once('/') else {
            return Ok(None);
        };
        let cronjobs: Api<CronJob> = Api::namespaced(self.client.clone(), ns);
        let Some(cj) = cronjobs.get_opt(name).await? else {
            return Ok(None);
        };
        let jobs_api: Api<Job> = Api::namespaced(self.client.clone(), ns);
        let uid = cj.metadata.uid.clone().unwrap_or_default();
        let jobs: Vec<Job> = jobs_api
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter(|j| rk_core::object::controller_of(&j.metadata).is_some_and(|r| r.uid == uid))
            .collect();
        let mut status = cj.status.clone().unwrap_or_default();
        let before = status.clone();
        self.reconcile_active(&cj, &jobs, &mut status).await?;

        let requeue = self.schedule(&cj, now, &jobs, &mut status).await?;
        if status != before {
            let mut updated = cj.clone();
            updated.status = Some(status);
            match cronjobs
                .replace_status(name, &PostParams::default(), &updated)
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => return Ok(None),
                Err(e) => return Err(e.into()),
            }
        }
        self.clean_history(&cj, &jobs).await;
        Ok(requeue)
    }

    /// Bring `status.active` and `lastSuccessfulTime` in line with the Jobs.
    async fn reconcile_active(
        &self,
        cj: &CronJob,
        jobs: &[Job],
        status: &mut k8s_openapi::api::batch::v1::CronJobStatus,
    ) -> Result<(), SyncError> {
        let mut active = status.active.clone().unwrap_or_default();
        for j in jobs {
            let juid = j.metadata.uid.clone();
            let listed = active.iter().any(|r| r.uid == juid);
            let finished = job_status::finished_condition(j);
            let jname = j.metadata.name.clone().unwrap_or_default();
            match (listed, finished) {
                (false, None) => {
                    // Ours but unlisted: created before a status write was lost.
                    let scheduled_by_us = j
                        .metadata
                        .annotations
                        .as_ref()
                        .is_some_and(|a| a.contains_key(SCHEDULED_TIMESTAMP));
                    if scheduled_by_us && j.metadata.deletion_timestamp.is_none() {
                        active.push(job_ref(j));
                    } else {
                        self.event(
                            cj,
                            "Warning",
                            "UnexpectedJob",
                            &format!(
                                "Saw a job that the controller did not create or forgot: {jname}"
                            ),
                        )
                        .await;
                    }
                }
                (true, Some(c)) => {
                    active.retain(|r| r.uid != juid);
                    let kind = c.type_.clone();
                    self.event(
                        cj,
                        "Normal",
                        "SawCompletedJob",
                        &format!("Saw completed job: {jname}, condition: {kind}"),
                    )
                    .await;
                }
                _ => {}
            }
            if job_status::is_succeeded(j)
                && let Some(done) = j.status.as_ref().and_then(|s| s.completion_time.clone())
                && status
                    .last_successful_time
                    .as_ref()
                    .is_none_or(|t| t.0 < done.0)
            {
                status.last_successful_time = Some(done);
            }
        }
        // Listed Jobs that no longer exist (checked with a fresh read, so a
        // lagging list never drops a running Job).
        let mut kept = Vec::new();
        for r in active {
            if jobs.iter().any(|j| j.metadata.uid == r.uid) {
                kept.push(r);
                continue;
            }
            let ns = r.namespace.clone().unwrap_or_default();
            let jname = r.name.clone().unwrap_or_default();
            let api: Api<Job> = Api::namespaced(self.client.clone(), &ns);
            match api.get_opt(&jname).await? {
                Some(j) if j.metadata.uid == r.uid && !job_status::is_finished(&j) => kept.push(r),
                _ => {
                    self.event(
                        cj,
                        "Normal",
                        "MissingJob",
                        &format!("Active job went missing: {jname}"),
                    )
                    .await;
                }
            }
        }
        status.active = (!kept.is_empty()).then_some(kept);
        Ok(())
    }

    /// Start the Job for the most recent scheduled time if it is due;
    /// returns when to look again.
    async fn schedule(
        &self,
        cj: &CronJob,
        now: Timestamp,
        jobs: &[Job],
        status: &mut k8s_openapi::api::batch::v1::CronJobStatus,
    ) -> Result<Requeue, SyncError> {
        if cj.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let spec = &cj.spec;
        let tz = match spec.time_zone.as_deref() {
            Some(name) => match TimeZone::get(name) {
                Ok(tz) => tz,
                Err(e) => {
                    self.event(
                        cj,
                        "Warning",
                        "UnknownTimeZone",
                        &format!("invalid timeZone: {name:?}: {e}"),
                    )
                    .await;
                    return Ok(None);
                }
            },
            None => TimeZone::system(),
        };
        if spec.suspend == Some(true) {
            return Ok(None);
        }
        let sched: Schedule = match spec.schedule.parse() {
            Ok(s) => s,
            Err(e) => {
                self.event(
                    cj,
                    "Warning",
                    "InvalidSchedule",
                    &format!("invalid schedule: {} : {e}", spec.schedule),
                )
                .await;
                return Ok(None);
            }
        };
        let next = sched.next_after(now, &tz).map(|n| {
            Duration::try_from(n.duration_since(now)).unwrap_or_default() + NEXT_SCHEDULE_DELTA
        });

        let mut earliest = status
            .last_schedule_time
            .as_ref()
            .or(cj.metadata.creation_timestamp.as_ref())
            .map(|t| t.0)
            .unwrap_or(now);
        if let Some(sds) = spec.starting_deadline_seconds
            && let Ok(bound) = now.checked_sub(jiff::SignedDuration::from_secs(sds))
        {
            earliest = earliest.max(bound);
        }
        let (recent, missed) = sched.most_recent(earliest, now, &tz);
        if missed > TOO_MANY_MISSED {
            self.event(
                cj,
                "Warning",
                "TooManyMissedTimes",
                &format!(
                    "too many missed start times: {missed}. Set or decrease .spec.startingDeadlineSeconds or check clock skew"
                ),
            )
            .await;
        }
        let Some(scheduled) = recent else {
            return Ok(next);
        };
        if let Some(sds) = spec.starting_deadline_seconds
            && scheduled
                .checked_add(jiff::SignedDuration::from_secs(sds))
                .is_ok_and(|late| late < now)
        {
            self.event(
                cj,
                "Warning",
                "MissSchedule",
                &format!(
                    "Missed scheduled time to start a job: {}",
                    scheduled.strftime("%a, %d %b %Y %H:%M:%S %z")
                ),
            )
            .await;
            return Ok(next);
        }
        let cj_name = cj.metadata.name.clone().unwrap_or_default();
        let name = job_name(&cj_name, scheduled);
        let mut active = status.active.clone().unwrap_or_default();
        if active
            .iter()
            .any(|r| r.name.as_deref() == Some(name.as_str()))
            || status.last_schedule_time.as_ref().map(|t| t.0) == Some(scheduled)
        {
            return Ok(next);
        }
        match spec.concurrency_policy.as_deref() {
            Some("Forbid") if !active.is_empty() => {
                self.event(
                    cj,
                    "Normal",
                    "JobAlreadyActive",
                    "Not starting job because prior execution is running and concurrency policy is Forbid",
                )
                .await;
                return Ok(next);
            }
            Some("Replace") => {
                for r in std::mem::take(&mut active) {
                    let ns = r.namespace.clone().unwrap_or_default();
                    let jname = r.name.clone().unwrap_or_default();
                    let api: Api<Job> = Api::namespaced(self.client.clone(), &ns);
                    match api.delete(&jname, &background()).await {
                        Ok(_) => {
                            self.event(
                                cj,
                                "Normal",
                                "SuccessfulDelete",
                                &format!("Deleted job {jname}"),
                            )
                            .await;
                        }
                        Err(kube::Error::Api(e)) if e.code == 404 => {}
                        Err(e) => {
                            self.event(cj, "Warning", "FailedDelete", &format!("Deleted job: {e}"))
                                .await;
                            return Err(e.into());
                        }
                    }
                }
            }
            _ => {}
        }

        let job = self.job_for(cj, &name, scheduled, &tz)?;
        let ns = cj.metadata.namespace.clone().unwrap_or_default();
        let api: Api<Job> = Api::namespaced(self.client.clone(), &ns);
        let created = match api.create(&PostParams::default(), &job).await {
            Ok(j) => {
                self.event(
                    cj,
                    "Normal",
                    "SuccessfulCreate",
                    &format!("Created job {name}"),
                )
                .await;
                j
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {
                // Created by an earlier sync whose status write was lost?
                let existing = jobs
                    .iter()
                    .find(|j| j.metadata.name.as_deref() == Some(name.as_str()))
                    .cloned();
                let existing = match existing {
                    Some(j) => j,
                    None => api.get(&name).await?,
                };
                let ours = rk_core::object::controller_of(&existing.metadata)
                    .is_some_and(|r| Some(&r.uid) == cj.metadata.uid.as_ref());
                if !ours {
                    self.event(
                        cj,
                        "Warning",
                        "FailedCreate",
                        &format!("Error creating job: a job named {name} exists and is not ours"),
                    )
                    .await;
                    status.active = (!active.is_empty()).then_some(active);
                    return Ok(next);
                }
                existing
            }
            Err(e) => {
                self.event(
                    cj,
                    "Warning",
                    "FailedCreate",
                    &format!("Error creating job: {e}"),
                )
                .await;
                status.active = (!active.is_empty()).then_some(active);
                return Err(e.into());
            }
        };
        if !job_status::is_finished(&created) {
            active.push(job_ref(&created));
        }
        status.active = (!active.is_empty()).then_some(active);
        status.last_schedule_time = Some(Time(scheduled));
        Ok(next)
    }

    /// The Job for `scheduled`, from the CronJob's template.
    fn job_for(
        &self,
        cj: &CronJob,
        name: &str,
        scheduled: Timestamp,
        tz: &TimeZone,
    ) -> Result<Job, SyncError> {
        let template = cj.spec.job_template.clone();
        let tmeta = template.metadata.unwrap_or_default();
        let mut annotations = tmeta.annotations.unwrap_or_default();
        annotations.insert(SCHEDULED_TIMESTAMP.into(), rfc3339_in(scheduled, tz));
        let owner = rk_core::object::controller_ref_for(cj)
            .map_err(|e| SyncError::Invalid(e.to_string()))?;
        Ok(Job {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: cj.metadata.namespace.clone(),
                labels: tmeta.labels,
                annotations: Some(annotations),
                owner_references: Some(vec![owner]),
                ..Default::default()
            },
            spec: template.spec,
            status: None,
        })
    }

    /// Delete finished Jobs beyond `successfulJobsHistoryLimit` and
    /// `failedJobsHistoryLimit`, oldest first.
    async fn clean_history(&self, cj: &CronJob, jobs: &[Job]) {
        let limits = [
            (cj.spec.successful_jobs_history_limit, true),
            (cj.spec.failed_jobs_history_limit, false),
        ];
        for (limit, success) in limits {
            let Some(limit) = limit else { continue };
            let mut finished: Vec<&Job> = jobs
                .iter()
                .filter(|j| j.metadata.deletion_timestamp.is_none())
                .filter(|j| job_status::is_finished(j) && job_status::is_succeeded(j) == success)
                .collect();
            let keep = limit.max(0) as usize;
            if finished.len() <= keep {
                continue;
            }
            finished.sort_by(|a, b| {
                start_of(a)
                    .cmp(&start_of(b))
                    .then(a.metadata.name.cmp(&b.metadata.name))
            });
            let excess = finished.len() - keep;
            for j in finished.into_iter().take(excess) {
                let ns = j.metadata.namespace.clone().unwrap_or_default();
                let jname = j.metadata.name.clone().unwrap_or_default();
                let api: Api<Job> = Api::namespaced(self.client.clone(), &ns);
                match api.delete(&jname, &background()).await {
                    Ok(_) => {
                        self.event(
                            cj,
                            "Normal",
                            "SuccessfulDelete",
                            &format!("Deleted job {jname}"),
                        )
                        .await;
                    }
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => {
                        tracing::warn!(job = %jname, error = %e, "deleting an old job failed");
                    }
                }
            }
        }
    }
}

fn background() -> DeleteParams {
    DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    }
}

/// Run the CronJob controller with `workers` concurrent syncs.
pub async fn run(client: kube::Client, workers: usize) {
    let queue = WorkQueue::new();
    let ctrl = Arc::new(Controller::new(client.clone()));
    let q = queue.clone();
    let cronjob_events = crate::watch::lean_watcher(
        Api::<CronJob>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .for_each(move |ev| {
        if let Ok(watcher::Event::Apply(cj) | watcher::Event::InitApply(cj)) = ev
            && let (Some(ns), Some(n)) = (&cj.metadata.namespace, &cj.metadata.name)
        {
            q.add(format!("{ns}/{n}"));
        }
        futures::future::ready(())
    });
    let q = queue.clone();
    let job_events =
        crate::watch::lean_watcher(Api::<Job>::all(client), watcher::Config::default())
            .default_backoff()
            .for_each(move |ev| {
                if let Ok(
                    watcher::Event::Apply(j)
                    | watcher::Event::InitApply(j)
                    | watcher::Event::Delete(j),
                ) = ev
                    && let Some(r) = rk_core::object::controller_of(&j.metadata)
                    && r.kind == "CronJob"
                    && let Some(ns) = &j.metadata.namespace
                {
                    q.add(format!("{ns}/{}", r.name));
                }
                futures::future::ready(())
            });
    let work = queue::run_workers("cronjob", queue, workers, move |key| {
        let c = ctrl.clone();
        async move { c.sync(&key).await }
    });
    tokio::join!(cronjob_events, job_events, work);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_names_count_minutes_since_the_epoch() {
        let t: Timestamp = "2026-03-04T10:21:00Z"
            .parse()
            .unwrap_or(Timestamp::UNIX_EPOCH);
        assert_eq!(
            job_name("backup", t),
            format!("backup-{}", t.as_second() / 60)
        );
    }

    #[test]
    fn scheduled_timestamps_are_rfc3339_in_the_zone() {
        let t: Timestamp = "2026-03-04T10:21:00Z"
            .parse()
            .unwrap_or(Timestamp::UNIX_EPOCH);
        assert_eq!(rfc3339_in(t, &TimeZone::UTC), "2026-03-04T10:21:00Z");
        if let Ok(tz) = TimeZone::get("America/New_York") {
            assert_eq!(rfc3339_in(t, &tz), "2026-03-04T05:21:00-05:00");
        }
    }
}
