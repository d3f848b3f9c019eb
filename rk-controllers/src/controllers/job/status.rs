//! Job conditions and their reasons, as upstream writes them; deciding a
//! Job's outcome from what a sync counted; and the questions other
//! controllers ask about a Job (finished? when?).

use std::collections::BTreeSet;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobSpec, JobStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::json;

/// The Job succeeded (terminal).
pub const COMPLETE: &str = "Complete";
/// The Job failed (terminal).
pub const FAILED: &str = "Failed";
/// The Job is suspended.
pub const SUSPENDED: &str = "Suspended";
/// The Job will fail once its pods are gone.
pub const FAILURE_TARGET: &str = "FailureTarget";
/// The Job will complete once its pods are gone.
pub const SUCCESS_CRITERIA_MET: &str = "SuccessCriteriaMet";

/// More pods failed than `backoffLimit` allows.
pub const BACKOFF_LIMIT_EXCEEDED: &str = "BackoffLimitExceeded";
/// The Job ran longer than `activeDeadlineSeconds`.
pub const DEADLINE_EXCEEDED: &str = "DeadlineExceeded";
/// A `FailJob` rule of `podFailurePolicy` matched.
pub const POD_FAILURE_POLICY: &str = "PodFailurePolicy";
/// More indexes failed than `maxFailedIndexes` allows.
pub const MAX_FAILED_INDEXES_EXCEEDED: &str = "MaxFailedIndexesExceeded";
/// Every index finished and some failed (`backoffLimitPerIndex`).
pub const FAILED_INDEXES: &str = "FailedIndexes";
/// `completions` pods succeeded.
pub const COMPLETIONS_REACHED: &str = "CompletionsReached";
/// A `successPolicy` rule was met.
pub const SUCCESS_POLICY: &str = "SuccessPolicy";

/// Why and how a Job ends: the condition reason and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// `true` for success, `false` for failure.
    pub success: bool,
    /// The condition reason.
    pub reason: String,
    /// The condition message.
    pub message: String,
}

impl Outcome {
    /// A failure for `reason`, with upstream's message for it.
    pub fn failure(reason: &str) -> Self {
        let message = match reason {
            BACKOFF_LIMIT_EXCEEDED => "Job has reached the specified backoff limit",
            DEADLINE_EXCEEDED => "Job was active longer than specified deadline",
            MAX_FAILED_INDEXES_EXCEEDED => {
                "Job has exceeded the specified maximal number of failed indexes"
            }
            FAILED_INDEXES => "Job has failed indexes",
            _ => "Job failed",
        };
        Self::failure_with(reason, message)
    }

    /// A failure with a custom message.
    pub fn failure_with(reason: &str, message: &str) -> Self {
        Self {
            success: false,
            reason: reason.into(),
            message: message.into(),
        }
    }

    /// A success for `reason`.
    pub fn success(reason: &str, message: &str) -> Self {
        Self {
            success: true,
            reason: reason.into(),
            message: message.into(),
        }
    }

    /// The interim condition type (`SuccessCriteriaMet` or `FailureTarget`).
    pub fn interim_type(&self) -> &'static str {
        if self.success {
            SUCCESS_CRITERIA_MET
        } else {
            FAILURE_TARGET
        }
    }

    /// The terminal condition type (`Complete` or `Failed`).
    pub fn terminal_type(&self) -> &'static str {
        if self.success { COMPLETE } else { FAILED }
    }
}

/// A condition with a fresh probe and transition time.
pub fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> JobCondition {
    JobCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// The Job's condition of `type_` if its status is `True`.
pub fn true_condition<'a>(job: &'a Job, type_: &str) -> Option<&'a JobCondition> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
}

/// The Job's terminal condition (`Complete` or `Failed`, `True`), if any.
pub fn finished_condition(job: &Job) -> Option<&JobCondition> {
    true_condition(job, COMPLETE).or_else(|| true_condition(job, FAILED))
}

/// Whether the Job has finished, successfully or not.
pub fn is_finished(job: &Job) -> bool {
    finished_condition(job).is_some()
}

/// Whether the Job completed successfully.
pub fn is_succeeded(job: &Job) -> bool {
    true_condition(job, COMPLETE).is_some()
}

/// When the Job finished: its `completionTime`, else the transition time of
/// its terminal condition.
pub fn finish_time(job: &Job) -> Option<Timestamp> {
    let c = finished_condition(job)?;
    if c.type_ == COMPLETE
        && let Some(t) = job.status.as_ref().and_then(|s| s.completion_time.as_ref())
    {
        return Some(t.0);
    }
    c.last_transition_time.as_ref().map(|t| t.0)
}

/// The interim outcome recorded on the Job (a `SuccessCriteriaMet` or
/// `FailureTarget` condition that is `True`), if any.
pub fn recorded_outcome(job: &Job) -> Option<Outcome> {
    for (type_, success) in [(SUCCESS_CRITERIA_MET, true), (FAILURE_TARGET, false)] {
        if let Some(c) = true_condition(job, type_) {
            return Some(Outcome {
                success,
                reason: c.reason.clone().unwrap_or_default(),
                message: c.message.clone().unwrap_or_default(),
            });
        }
    }
    None
}

/// What a sync counted, for [`decide`].
#[derive(Clone, Copy)]
pub struct Progress<'a> {
    /// Pods running (not terminating).
    pub active: &'a [&'a Pod],
    /// Succeeded pods (Indexed: completed indexes), counted or not yet.
    pub succeeded: i32,
    /// Failed pods, counted or not yet.
    pub failed: i32,
    /// Completed indexes (Indexed mode).
    pub completed: &'a BTreeSet<i32>,
    /// Failed indexes (`backoffLimitPerIndex`).
    pub failed_indexes: &'a BTreeSet<i32>,
    /// When the Job started (or resumed).
    pub start: Option<Timestamp>,
}

/// Step 2: the Job's outcome, if it has one now.
///
/// Failures come first (`maxFailedIndexes` or `backoffLimit`, counting
/// container restarts under `restartPolicy: OnFailure`; then
/// `activeDeadlineSeconds`, whose remaining time goes into `requeue`), then
/// success (`successPolicy`, `completions`, or for a Job without
/// completions any success once no pod runs).
pub fn decide(
    spec: &JobSpec,
    progress: &Progress<'_>,
    now: Timestamp,
    requeue: &mut Option<Duration>,
) -> Option<Outcome> {
    let Progress {
        active,
        succeeded,
        failed,
        completed,
        failed_indexes,
        start,
    } = *progress;
    let indexed = super::is_indexed(spec);
    let completions = spec.completions;
    if indexed && spec.backoff_limit_per_index.is_some() {
        if let Some(max) = spec.max_failed_indexes
            && failed_indexes.len() as i64 > i64::from(max)
        {
            return Some(Outcome::failure(MAX_FAILED_INDEXES_EXCEEDED));
        }
    } else {
        let mut failures = i64::from(failed);
        if spec
            .template
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.as_deref())
            == Some("OnFailure")
        {
            failures += active
                .iter()
                .map(|p| i64::from(rk_core::object::pod_restart_count(p)))
                .sum::<i64>();
        }
        if failures > i64::from(spec.backoff_limit.unwrap_or(6)) {
            return Some(Outcome::failure(BACKOFF_LIMIT_EXCEEDED));
        }
    }
    if spec.suspend != Some(true)
        && let (Some(ads), Some(start)) = (spec.active_deadline_seconds, start)
    {
        let deadline = start
            .checked_add(jiff::SignedDuration::from_secs(ads))
            .unwrap_or(Timestamp::MAX);
        if now >= deadline {
            return Some(Outcome::failure(DEADLINE_EXCEEDED));
        }
        let left = Duration::try_from(deadline.duration_since(now)).unwrap_or_default();
        *requeue = super::min_requeue(*requeue, Some(left));
    }
    if indexed {
        let total = completions.unwrap_or(0);
        if let Some(rule) = success_policy_met(spec, total, completed) {
            return Some(Outcome::success(
                SUCCESS_POLICY,
                &format!("Matched rules at index {rule}"),
            ));
        }
        if completed.len() as i32 >= total {
            return Some(Outcome::success(
                COMPLETIONS_REACHED,
                "Reached expected number of succeeded pods",
            ));
        }
        if !failed_indexes.is_empty() && (completed.len() + failed_indexes.len()) as i32 >= total {
            return Some(Outcome::failure(FAILED_INDEXES));
        }
        return None;
    }
    let done = match completions {
        Some(c) => succeeded >= c,
        None => succeeded > 0 && active.is_empty(),
    };
    done.then(|| {
        Outcome::success(
            COMPLETIONS_REACHED,
            "Reached expected number of succeeded pods",
        )
    })
}

/// A successPolicy rule met by `completed` indexes, if any.
pub fn success_policy_met(
    spec: &JobSpec,
    completions: i32,
    completed: &BTreeSet<i32>,
) -> Option<usize> {
    let policy = spec.success_policy.as_ref()?;
    policy.rules.iter().position(|rule| {
        let (pool, total) = match rule.succeeded_indexes.as_deref() {
            Some(ix) => {
                let set = super::indexed::parse_ranges(ix, completions);
                let n = set.len();
                (set.intersection(completed).count(), n)
            }
            None => (completed.len(), completions.max(0) as usize),
        };
        match rule.succeeded_count {
            Some(c) => pool >= c.max(0) as usize && c > 0,
            None => total > 0 && pool == total,
        }
    })
}

/// Set a `True` condition of `type_` (keeping its transition time when it
/// was already `True`); true if it changed.
pub fn set_condition(
    conditions: &mut Vec<JobCondition>,
    type_: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> bool {
    set_condition_status(conditions, type_, "True", reason, message, now)
}

/// Set the condition of `type_` to `status_` with `reason`; true if it
/// changed (same status and reason: unchanged).
pub fn set_condition_status(
    conditions: &mut Vec<JobCondition>,
    type_: &str,
    status_: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> bool {
    if let Some(c) = conditions.iter_mut().find(|c| c.type_ == type_) {
        if c.status == status_ && c.reason.as_deref() == Some(reason) {
            return false;
        }
        *c = condition(type_, status_, reason, message, now);
        return true;
    }
    conditions.push(condition(type_, status_, reason, message, now));
    true
}

/// A status as JSON with empty counters and lists dropped, for comparing.
pub fn normalized(s: &JobStatus) -> serde_json::Value {
    let mut v = serde_json::to_value(s).unwrap_or_default();
    if let Some(m) = v.as_object_mut() {
        m.retain(|_, v| !(v.is_null() || *v == json!(0) || *v == json!("")));
        if let Some(u) = m
            .get_mut("uncountedTerminatedPods")
            .and_then(|u| u.as_object_mut())
        {
            u.retain(|_, v| v.as_array().is_some_and(|a| !a.is_empty()));
        }
        if m.get("uncountedTerminatedPods")
            .and_then(|u| u.as_object())
            .is_some_and(|u| u.is_empty())
        {
            m.remove("uncountedTerminatedPods");
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finish_time_prefers_completion_time() {
        let job: Job = serde_json::from_value(json!({
            "status": {"completionTime": "2026-01-01T00:00:10Z",
                "conditions": [{"type": "Complete", "status": "True",
                                "lastTransitionTime": "2026-01-01T00:00:11Z"}]}
        }))
        .unwrap_or_default();
        assert!(is_finished(&job) && is_succeeded(&job));
        assert_eq!(
            finish_time(&job).map(|t| t.as_second()),
            Some(1_767_225_610)
        );
        let failed: Job = serde_json::from_value(json!({
            "status": {"conditions": [{"type": "Failed", "status": "True",
                                       "lastTransitionTime": "2026-01-01T00:00:11Z"}]}
        }))
        .unwrap_or_default();
        assert_eq!(
            finish_time(&failed).map(|t| t.as_second()),
            Some(1_767_225_611)
        );
        assert!(!is_succeeded(&failed));
    }

    fn spec(v: serde_json::Value) -> JobSpec {
        let mut base = json!({"template": {}});
        if let (Some(b), Some(e)) = (base.as_object_mut(), v.as_object()) {
            for (k, val) in e {
                b.insert(k.clone(), val.clone());
            }
        }
        serde_json::from_value(base).unwrap_or_default()
    }

    fn decide_with(
        spec: &JobSpec,
        succeeded: i32,
        failed: i32,
        completed: &[i32],
        failed_indexes: &[i32],
        start: Option<Timestamp>,
        now: Timestamp,
    ) -> (Option<Outcome>, Option<Duration>) {
        let completed: BTreeSet<i32> = completed.iter().copied().collect();
        let failed_indexes: BTreeSet<i32> = failed_indexes.iter().copied().collect();
        let progress = Progress {
            active: &[],
            succeeded,
            failed,
            completed: &completed,
            failed_indexes: &failed_indexes,
            start,
        };
        let mut requeue = None;
        let o = decide(spec, &progress, now, &mut requeue);
        (o, requeue)
    }

    fn reason(o: &(Option<Outcome>, Option<Duration>)) -> Option<&str> {
        o.0.as_ref().map(|o| o.reason.as_str())
    }

    #[test]
    fn failures_beyond_the_backoff_limit_fail_the_job() {
        let now = Timestamp::UNIX_EPOCH;
        let s = spec(json!({"backoffLimit": 2, "completions": 3}));
        assert_eq!(reason(&decide_with(&s, 0, 2, &[], &[], None, now)), None);
        assert_eq!(
            reason(&decide_with(&s, 0, 3, &[], &[], None, now)),
            Some(BACKOFF_LIMIT_EXCEEDED)
        );
        assert_eq!(
            reason(&decide_with(&s, 3, 0, &[], &[], None, now)),
            Some(COMPLETIONS_REACHED)
        );
    }

    #[test]
    fn the_deadline_fails_the_job_and_otherwise_sets_the_requeue() {
        let start = Timestamp::UNIX_EPOCH;
        let s = spec(json!({"activeDeadlineSeconds": 30, "completions": 1}));
        let early = start + jiff::SignedDuration::from_secs(10);
        let d = decide_with(&s, 0, 0, &[], &[], Some(start), early);
        assert_eq!((reason(&d), d.1), (None, Some(Duration::from_secs(20))));
        let late = start + jiff::SignedDuration::from_secs(30);
        let d = decide_with(&s, 0, 0, &[], &[], Some(start), late);
        assert_eq!(reason(&d), Some(DEADLINE_EXCEEDED));
        // A suspended Job has no running clock.
        let s = spec(json!({"activeDeadlineSeconds": 30, "completions": 1, "suspend": true}));
        assert_eq!(
            reason(&decide_with(&s, 0, 0, &[], &[], Some(start), late)),
            None
        );
    }

    #[test]
    fn indexed_jobs_finish_by_indexes_and_success_policy() {
        let now = Timestamp::UNIX_EPOCH;
        let s = spec(json!({"completions": 4, "completionMode": "Indexed",
            "successPolicy": {"rules": [{"succeededIndexes": "0-2", "succeededCount": 2}]}}));
        assert_eq!(reason(&decide_with(&s, 1, 0, &[3], &[], None, now)), None);
        let d = decide_with(&s, 2, 0, &[1, 3, 2], &[], None, now);
        assert_eq!(reason(&d), Some(SUCCESS_POLICY));
        assert_eq!(
            d.0.map(|o| o.message),
            Some("Matched rules at index 0".to_string())
        );
        let per_index = spec(json!({"completions": 3, "completionMode": "Indexed",
            "backoffLimitPerIndex": 1, "maxFailedIndexes": 1, "backoffLimit": 0}));
        // backoffLimit does not apply with per-index limits.
        assert_eq!(
            reason(&decide_with(&per_index, 0, 5, &[], &[0], None, now)),
            None
        );
        assert_eq!(
            reason(&decide_with(&per_index, 0, 5, &[], &[0, 1], None, now)),
            Some(MAX_FAILED_INDEXES_EXCEEDED)
        );
        let no_max = spec(json!({"completions": 3, "completionMode": "Indexed",
            "backoffLimitPerIndex": 1}));
        assert_eq!(
            reason(&decide_with(&no_max, 2, 1, &[1, 2], &[0], None, now)),
            Some(FAILED_INDEXES)
        );
    }

    #[test]
    fn a_job_without_completions_succeeds_once_a_pod_did_and_none_runs() {
        let now = Timestamp::UNIX_EPOCH;
        let s = spec(json!({"parallelism": 3}));
        assert_eq!(reason(&decide_with(&s, 0, 0, &[], &[], None, now)), None);
        assert_eq!(
            reason(&decide_with(&s, 1, 0, &[], &[], None, now)),
            Some(COMPLETIONS_REACHED)
        );
    }
}
