//! Job conditions and their reasons, as upstream writes them, and the
//! questions other controllers ask about a Job (finished? when?).

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{Job, JobCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

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
}
