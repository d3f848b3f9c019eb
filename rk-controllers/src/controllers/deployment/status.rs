//! A Deployment's status: replica counts summed over its ReplicaSets and the
//! `Available` and `Progressing` conditions with upstream's reasons.

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, ReplicaSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Value, json};

use super::rollout::{replicas_of, surge_and_unavailable};

/// `Progressing` reason: a new ReplicaSet was created.
pub const NEW_RS_CREATED: &str = "NewReplicaSetCreated";
/// `Progressing` reason: the new ReplicaSet already existed.
pub const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
/// `Progressing` reason: the rollout is moving.
pub const RS_UPDATED: &str = "ReplicaSetUpdated";
/// `Progressing` reason: the rollout finished.
pub const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
/// `Progressing` reason: no progress within `progressDeadlineSeconds`.
pub const DEADLINE_EXCEEDED: &str = "ProgressDeadlineExceeded";
/// `Progressing` reason: the deployment is paused.
pub const PAUSED: &str = "DeploymentPaused";
/// `Progressing` reason: the deployment was resumed.
pub const RESUMED: &str = "DeploymentResumed";

fn count(
    rs: &ReplicaSet,
    f: impl Fn(&k8s_openapi::api::apps::v1::ReplicaSetStatus) -> Option<i32>,
) -> i32 {
    rs.status.as_ref().and_then(f).unwrap_or(0)
}

fn stamp(t: &jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The counts of a status, before conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Pods of every ReplicaSet.
    pub replicas: i32,
    /// Pods of the new ReplicaSet.
    pub updated: i32,
    /// Ready pods.
    pub ready: i32,
    /// Available pods.
    pub available: i32,
    /// Pods still missing for `spec.replicas` to be available.
    pub unavailable: i32,
}

/// Sum the ReplicaSets' counts.
pub fn counts(d: &Deployment, new_rs: Option<&ReplicaSet>, all: &[&ReplicaSet]) -> Counts {
    let replicas: i32 = all.iter().map(|r| count(r, |s| Some(s.replicas))).sum();
    let available: i32 = all.iter().map(|r| count(r, |s| s.available_replicas)).sum();
    Counts {
        replicas,
        updated: new_rs.map(|r| count(r, |s| Some(s.replicas))).unwrap_or(0),
        ready: all.iter().map(|r| count(r, |s| s.ready_replicas)).sum(),
        available,
        unavailable: (replicas_of(d) - available).max(0),
    }
}

/// True when the rollout is complete: every desired pod is updated and
/// available and no old pod is left.
pub fn complete(d: &Deployment, c: &Counts) -> bool {
    let want = replicas_of(d);
    c.updated == want && c.replicas == want && c.available == want
}

fn existing<'a>(d: &'a Deployment, type_: &str) -> Option<&'a DeploymentCondition> {
    d.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_.as_deref() == Some(type_)))
}

/// Build a condition, keeping the old transition time when the status did
/// not change and the old update time when nothing changed at all.
fn condition(
    d: &Deployment,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: &jiff::Timestamp,
) -> Value {
    let old = existing(d, type_);
    let ts = |t: Option<&Time>| t.map(|t| stamp(&t.0)).unwrap_or_else(|| stamp(now));
    let same_status = old.is_some_and(|o| o.status.as_deref() == Some(status));
    let unchanged = same_status
        && old.is_some_and(|o| {
            o.reason.as_deref() == Some(reason) && o.message.as_deref() == Some(message)
        });
    json!({
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": if same_status { ts(old.and_then(|o| o.last_transition_time.as_ref())) } else { stamp(now) },
        "lastUpdateTime": if unchanged { ts(old.and_then(|o| o.last_update_time.as_ref())) } else { stamp(now) },
    })
}

/// What happened in this sync, for the `Progressing` condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// The new ReplicaSet was just created.
    Created,
    /// Some ReplicaSet was scaled, or the counts moved.
    Moved,
    /// Nothing changed.
    Still,
}

/// The status a sync leaves, and the delay after which the progress
/// deadline must be checked again (when a rollout is under way).
pub fn build(
    d: &Deployment,
    new_rs: Option<&ReplicaSet>,
    all: &[&ReplicaSet],
    progress: Progress,
    collision_count: Option<i32>,
) -> (Value, Option<std::time::Duration>) {
    let now = jiff::Timestamp::now();
    let c = counts(d, new_rs, all);
    let want = replicas_of(d);
    let (_, max_unavailable) = surge_and_unavailable(d);
    let mut conditions: Vec<Value> = Vec::new();
    let available = c.available >= want - max_unavailable;
    conditions.push(if available {
        condition(
            d,
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
            &now,
        )
    } else {
        condition(
            d,
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
            &now,
        )
    });
    let paused = d.spec.paused == Some(true);
    let rs_name = new_rs
        .and_then(|r| r.metadata.name.clone())
        .unwrap_or_default();
    let old = existing(d, "Progressing");
    let mut recheck = None;
    let deadline = d.spec.progress_deadline_seconds.unwrap_or(600);
    let progressing = if paused {
        condition(
            d,
            "Progressing",
            "Unknown",
            PAUSED,
            "Deployment is paused",
            &now,
        )
    } else if old.is_some_and(|o| o.reason.as_deref() == Some(PAUSED)) {
        condition(
            d,
            "Progressing",
            "Unknown",
            RESUMED,
            "Deployment is resumed",
            &now,
        )
    } else if complete(d, &c) && new_rs.is_some() {
        condition(
            d,
            "Progressing",
            "True",
            NEW_RS_AVAILABLE,
            &format!("ReplicaSet \"{rs_name}\" has successfully progressed."),
            &now,
        )
    } else if progress == Progress::Created {
        condition(
            d,
            "Progressing",
            "True",
            NEW_RS_CREATED,
            &format!("Created new replica set \"{rs_name}\""),
            &now,
        )
    } else if progress == Progress::Moved || old.is_none() {
        let reason = if old.is_none() {
            FOUND_NEW_RS
        } else {
            RS_UPDATED
        };
        let message = if old.is_none() {
            format!("Found new replica set \"{rs_name}\"")
        } else {
            format!("ReplicaSet \"{rs_name}\" is progressing.")
        };
        // Progress always refreshes the update time.
        let mut v = condition(d, "Progressing", "True", reason, &message, &now);
        v["lastUpdateTime"] = json!(stamp(&now));
        v
    } else {
        // No progress this sync: check the deadline against the last update.
        let last = old
            .and_then(|o| o.last_update_time.as_ref())
            .map(|t| t.0)
            .unwrap_or(now);
        let elapsed = now.as_second() - last.as_second();
        let o = old.map(|o| (o.status.clone(), o.reason.clone(), o.message.clone()));
        if elapsed >= i64::from(deadline) {
            condition(
                d,
                "Progressing",
                "False",
                DEADLINE_EXCEEDED,
                &format!("ReplicaSet \"{rs_name}\" has timed out progressing."),
                &now,
            )
        } else {
            recheck = Some(std::time::Duration::from_secs(
                (i64::from(deadline) - elapsed).max(1) as u64,
            ));
            match o {
                Some((Some(s), Some(r), Some(m))) => condition(d, "Progressing", &s, &r, &m, &now),
                _ => condition(
                    d,
                    "Progressing",
                    "True",
                    RS_UPDATED,
                    &format!("ReplicaSet \"{rs_name}\" is progressing."),
                    &now,
                ),
            }
        }
    };
    conditions.push(progressing);
    let mut status = json!({
        "observedGeneration": d.metadata.generation,
        "replicas": c.replicas,
        "updatedReplicas": c.updated,
        "readyReplicas": c.ready,
        "availableReplicas": c.available,
        "unavailableReplicas": c.unavailable,
        "conditions": conditions,
    });
    if let Some(n) = collision_count {
        status["collisionCount"] = json!(n);
    }
    (status, recheck)
}
