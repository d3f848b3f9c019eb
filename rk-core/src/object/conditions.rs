//! Status conditions: one set of helpers for every condition kind.
//!
//! Kubernetes repeats the `type/status/reason/message/lastTransitionTime`
//! shape in many types. [`StatusCondition`] abstracts it, and
//! [`set_condition`] updates a list the way upstream's
//! `meta.SetStatusCondition` does: the condition is added or replaced, and
//! `lastTransitionTime` only moves when the status changes.

use k8s_openapi::api::apps::v1::{
    DaemonSetCondition, DeploymentCondition, ReplicaSetCondition, StatefulSetCondition,
};
use k8s_openapi::api::batch::v1::JobCondition;
use k8s_openapi::api::core::v1::{NamespaceCondition, NodeCondition, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// A condition with a type, a status and a last transition time.
pub trait StatusCondition: Clone + PartialEq {
    /// The condition type (`Ready`, `Available`, ...); empty when unset.
    fn condition_type(&self) -> &str;
    /// The status (`True`, `False`, `Unknown`); empty when unset.
    fn condition_status(&self) -> &str;
    /// When the status last changed, if recorded.
    fn last_transition_time(&self) -> Option<&Time>;
    /// Records when the status last changed.
    fn set_last_transition_time(&mut self, time: Time);
}

macro_rules! optional_fields {
    ($($ty:ty),* $(,)?) => {$(
        impl StatusCondition for $ty {
            fn condition_type(&self) -> &str {
                self.type_.as_deref().unwrap_or_default()
            }
            fn condition_status(&self) -> &str {
                self.status.as_deref().unwrap_or_default()
            }
            fn last_transition_time(&self) -> Option<&Time> {
                self.last_transition_time.as_ref()
            }
            fn set_last_transition_time(&mut self, time: Time) {
                self.last_transition_time = Some(time);
            }
        }
    )*};
}

macro_rules! required_fields {
    ($($ty:ty),* $(,)?) => {$(
        impl StatusCondition for $ty {
            fn condition_type(&self) -> &str {
                &self.type_
            }
            fn condition_status(&self) -> &str {
                &self.status
            }
            fn last_transition_time(&self) -> Option<&Time> {
                self.last_transition_time.as_ref()
            }
            fn set_last_transition_time(&mut self, time: Time) {
                self.last_transition_time = Some(time);
            }
        }
    )*};
}

optional_fields!(
    DeploymentCondition,
    ReplicaSetCondition,
    DaemonSetCondition,
    StatefulSetCondition
);
required_fields!(
    PodCondition,
    NodeCondition,
    JobCondition,
    NamespaceCondition
);

/// `metav1.Condition`; its `lastTransitionTime` is required, so the Unix
/// epoch stands for "not set" (construct new conditions with it to let
/// [`set_condition`] stamp the time).
impl StatusCondition for Condition {
    fn condition_type(&self) -> &str {
        &self.type_
    }
    fn condition_status(&self) -> &str {
        &self.status
    }
    fn last_transition_time(&self) -> Option<&Time> {
        Some(&self.last_transition_time).filter(|t| t.0 != Timestamp::UNIX_EPOCH)
    }
    fn set_last_transition_time(&mut self, time: Time) {
        self.last_transition_time = time;
    }
}

/// The condition of this type, if present.
pub fn find_condition<'a, C: StatusCondition>(conditions: &'a [C], type_: &str) -> Option<&'a C> {
    conditions.iter().find(|c| c.condition_type() == type_)
}

/// Whether the condition of this type is present with status `True`.
pub fn is_condition_true<C: StatusCondition>(conditions: &[C], type_: &str) -> bool {
    find_condition(conditions, type_).is_some_and(|c| c.condition_status() == "True")
}

/// Adds `condition` or replaces the one of the same type; returns whether the
/// list changed.
///
/// `lastTransitionTime` is kept from the existing condition when the status
/// is unchanged; when the status changes (or the condition is new) it is the
/// one `condition` carries, or `now` when it carries none.
pub fn set_condition<C: StatusCondition>(
    conditions: &mut Vec<C>,
    mut condition: C,
    now: &Time,
) -> bool {
    let existing = conditions
        .iter_mut()
        .find(|c| c.condition_type() == condition.condition_type());
    match existing {
        None => {
            if condition.last_transition_time().is_none() {
                condition.set_last_transition_time(now.clone());
            }
            conditions.push(condition);
            true
        }
        Some(existing) => {
            let keep = existing
                .last_transition_time()
                .filter(|_| existing.condition_status() == condition.condition_status())
                .cloned();
            match keep {
                Some(time) => condition.set_last_transition_time(time),
                None if condition.last_transition_time().is_none() => {
                    condition.set_last_transition_time(now.clone());
                }
                None => {}
            }
            if *existing == condition {
                false
            } else {
                *existing = condition;
                true
            }
        }
    }
}

/// Removes the condition of this type; returns whether it was present.
pub fn remove_condition<C: StatusCondition>(conditions: &mut Vec<C>, type_: &str) -> bool {
    let before = conditions.len();
    conditions.retain(|c| c.condition_type() != type_);
    conditions.len() != before
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Time {
        match Timestamp::from_second(seconds) {
            Ok(t) => Time(t),
            Err(e) => panic!("{e}"),
        }
    }

    fn pod_cond(type_: &str, status: &str, reason: &str) -> PodCondition {
        PodCondition {
            type_: type_.into(),
            status: status.into(),
            reason: Some(reason.into()),
            ..PodCondition::default()
        }
    }

    #[test]
    fn new_condition_is_stamped_with_now() {
        let mut conditions = Vec::new();
        assert!(set_condition(
            &mut conditions,
            pod_cond("Ready", "True", "Up"),
            &at(100)
        ));
        assert_eq!(conditions[0].last_transition_time, Some(at(100)));
        assert!(is_condition_true(&conditions, "Ready"));
    }

    #[test]
    fn same_status_keeps_the_transition_time_but_updates_the_reason() {
        let mut conditions = Vec::new();
        set_condition(&mut conditions, pod_cond("Ready", "True", "Up"), &at(100));
        assert!(!set_condition(
            &mut conditions,
            pod_cond("Ready", "True", "Up"),
            &at(200)
        ));
        assert!(set_condition(
            &mut conditions,
            pod_cond("Ready", "True", "StillUp"),
            &at(300)
        ));
        assert_eq!(conditions[0].last_transition_time, Some(at(100)));
        assert_eq!(conditions[0].reason.as_deref(), Some("StillUp"));
    }

    #[test]
    fn status_change_bumps_the_transition_time() {
        let mut conditions = Vec::new();
        set_condition(&mut conditions, pod_cond("Ready", "True", "Up"), &at(100));
        assert!(set_condition(
            &mut conditions,
            pod_cond("Ready", "False", "Down"),
            &at(200)
        ));
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].last_transition_time, Some(at(200)));
        assert!(!is_condition_true(&conditions, "Ready"));
    }

    #[test]
    fn works_for_optional_field_conditions_like_deployments() {
        let cond = |status: &str| DeploymentCondition {
            type_: Some("Available".into()),
            status: Some(status.into()),
            ..DeploymentCondition::default()
        };
        let mut conditions = Vec::new();
        set_condition(&mut conditions, cond("False"), &at(1));
        set_condition(&mut conditions, cond("True"), &at(2));
        assert_eq!(
            find_condition(&conditions, "Available").and_then(|c| c.last_transition_time.clone()),
            Some(at(2))
        );
        assert!(remove_condition(&mut conditions, "Available"));
        assert!(!remove_condition(&mut conditions, "Available"));
    }

    #[test]
    fn metav1_condition_with_epoch_time_gets_now() {
        let cond = |status: &str| Condition {
            type_: "Synced".into(),
            status: status.into(),
            reason: "R".into(),
            message: String::new(),
            observed_generation: Some(1),
            last_transition_time: Time(Timestamp::UNIX_EPOCH),
        };
        let mut conditions = Vec::new();
        set_condition(&mut conditions, cond("True"), &at(50));
        assert!(!set_condition(&mut conditions, cond("True"), &at(60)));
        assert_eq!(conditions[0].last_transition_time, at(50));
        set_condition(&mut conditions, cond("False"), &at(70));
        assert_eq!(conditions[0].last_transition_time, at(70));
    }

    #[test]
    fn other_condition_kinds_share_the_helpers() {
        let mut nodes = vec![NodeCondition {
            type_: "Ready".into(),
            status: "True".into(),
            ..NodeCondition::default()
        }];
        assert!(is_condition_true(&nodes, "Ready"));
        let job = JobCondition {
            type_: "Complete".into(),
            status: "True".into(),
            ..JobCondition::default()
        };
        let mut jobs = Vec::new();
        assert!(set_condition(&mut jobs, job, &at(5)));
        let rs = ReplicaSetCondition {
            type_: Some("ReplicaFailure".into()),
            status: Some("True".into()),
            ..ReplicaSetCondition::default()
        };
        assert!(set_condition(&mut vec![], rs, &at(5)));
        assert!(remove_condition(&mut nodes, "Ready"));
    }
}
