//! The TTL-after-finished controller: deletes a finished Job
//! `spec.ttlSecondsAfterFinished` seconds after it finished (its
//! `completionTime`, or the transition time of its `Failed` condition), with
//! background propagation so the garbage collector removes its pods, as
//! upstream's `pkg/controller/ttlafterfinished`.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, DeleteParams, Preconditions};
use kube::runtime::{WatchStreamExt, watcher};

use crate::controllers::job::status;
use crate::queue::{self, Requeue, WorkQueue};

/// Errors of one sync.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// An API call failed.
    #[error("{0}")]
    Kube(#[from] kube::Error),
}

/// When `job` expires: its finish time plus its TTL; `None` when it has
/// no TTL, has not finished, or is already being deleted.
pub fn expires_at(job: &Job) -> Option<Timestamp> {
    if job.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let ttl = job.spec.as_ref()?.ttl_seconds_after_finished?;
    let finished = status::finish_time(job)?;
    Some(
        finished
            .checked_add(jiff::SignedDuration::from_secs(i64::from(ttl.max(0))))
            .unwrap_or(Timestamp::MAX),
    )
}

/// How long until `job` expires at `now`: `Some(ZERO)` when it has.
pub fn time_left(job: &Job, now: Timestamp) -> Option<Duration> {
    let at = expires_at(job)?;
    Some(Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO))
}

/// The controller's state.
pub struct Controller {
    client: kube::Client,
}

impl Controller {
    /// A controller deleting through `client`.
    pub fn new(client: kube::Client) -> Self {
        Self { client }
    }

    /// Sync the Job `key` (`namespace/name`) as if the time were `now`:
    /// delete it if it expired, else say when to look again.
    pub async fn sync_at(&self, key: &str, now: Timestamp) -> Result<Requeue, SyncError> {
        let Some((ns, name)) = key.split_once('/') else {
            return Ok(None);
        };
        let api: Api<Job> = Api::namespaced(self.client.clone(), ns);
        // Read it fresh: the TTL may have changed since the watch saw it.
        let Some(job) = api.get_opt(name).await? else {
            return Ok(None);
        };
        match time_left(&job, now) {
            None => Ok(None),
            Some(left) if !left.is_zero() => Ok(Some(left)),
            Some(_) => {
                let params = DeleteParams {
                    propagation_policy: Some(kube::api::PropagationPolicy::Background),
                    preconditions: Some(Preconditions {
                        uid: job.metadata.uid.clone(),
                        resource_version: job.metadata.resource_version.clone(),
                    }),
                    ..DeleteParams::default()
                };
                match api.delete(name, &params).await {
                    Ok(_) => {
                        tracing::info!(job = %key, "deleted finished job after its TTL");
                        Ok(None)
                    }
                    Err(kube::Error::Api(e)) if e.code == 404 => Ok(None),
                    Err(e) => Err(e.into()),
                }
            }
        }
    }
}

/// Run the controller with `workers` concurrent syncs.
pub async fn run(client: kube::Client, workers: usize) {
    let queue = WorkQueue::new();
    let ctrl = Arc::new(Controller::new(client.clone()));
    let q = queue.clone();
    let events = crate::watch::lean_watcher(Api::<Job>::all(client), watcher::Config::default())
        .default_backoff()
        .for_each(move |ev| {
            if let Ok(watcher::Event::Apply(j) | watcher::Event::InitApply(j)) = ev
                && expires_at(&j).is_some()
                && let (Some(ns), Some(n)) = (&j.metadata.namespace, &j.metadata.name)
            {
                q.add(format!("{ns}/{n}"));
            }
            futures::future::ready(())
        });
    let work = queue::run_workers("ttl-after-finished", queue, workers, move |key| {
        let c = ctrl.clone();
        async move { c.sync_at(&key, Timestamp::now()).await }
    });
    tokio::join!(events, work);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_finished_job_expires_ttl_after_completion() {
        let job: Job = serde_json::from_value(json!({
            "spec": {"ttlSecondsAfterFinished": 30, "template": {}},
            "status": {"completionTime": "2026-01-01T00:00:00Z",
                "conditions": [{"type": "Complete", "status": "True"}]}
        }))
        .unwrap_or_default();
        let at = expires_at(&job).map(|t| t.to_string());
        assert_eq!(at.as_deref(), Some("2026-01-01T00:00:30Z"));
        let now: Timestamp = "2026-01-01T00:00:10Z"
            .parse()
            .unwrap_or(Timestamp::UNIX_EPOCH);
        assert_eq!(time_left(&job, now), Some(Duration::from_secs(20)));
        let running: Job =
            serde_json::from_value(json!({"spec": {"ttlSecondsAfterFinished": 0, "template": {}}}))
                .unwrap_or_default();
        assert_eq!(expires_at(&running), None);
    }
}
