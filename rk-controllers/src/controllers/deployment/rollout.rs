//! The arithmetic of a rollout, as upstream's `deployment/util` computes it:
//! resolving `maxSurge`/`maxUnavailable`, how far the new ReplicaSet may
//! grow, how far old ones may shrink, and proportional scaling.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Resolve an int-or-percent against `total`, rounding percentages up or
/// down; `None` means the default of 25%.
pub fn resolve(value: Option<&IntOrString>, total: i32, round_up: bool) -> i32 {
    match value {
        Some(IntOrString::Int(n)) => *n,
        Some(IntOrString::String(s)) => {
            let pct: i64 = s.trim_end_matches('%').parse().unwrap_or(25);
            percent(pct, total, round_up)
        }
        None => percent(25, total, round_up),
    }
}

fn percent(pct: i64, total: i32, round_up: bool) -> i32 {
    let scaled = pct * i64::from(total);
    let v = if round_up {
        (scaled + 99) / 100
    } else {
        scaled / 100
    };
    v as i32
}

/// The deployment's (maxSurge, maxUnavailable), resolved against its
/// replicas; both zero is taken as an unavailability of one, as upstream.
pub fn surge_and_unavailable(d: &Deployment) -> (i32, i32) {
    let replicas = replicas_of(d);
    let ru = d
        .spec
        .strategy
        .as_ref()
        .and_then(|s| s.rolling_update.as_ref());
    if !is_rolling(d) {
        return (0, 0);
    }
    let surge = resolve(ru.and_then(|r| r.max_surge.as_ref()), replicas, true).max(0);
    let mut unavailable =
        resolve(ru.and_then(|r| r.max_unavailable.as_ref()), replicas, false).max(0);
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    (surge, unavailable.min(replicas))
}

/// True unless the strategy is `Recreate`.
pub fn is_rolling(d: &Deployment) -> bool {
    d.spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) != Some("Recreate")
}

/// The deployment's `spec.replicas` (default 1).
pub fn replicas_of(d: &Deployment) -> i32 {
    d.spec.replicas.unwrap_or(1).max(0)
}

/// A ReplicaSet's `spec.replicas`.
pub fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.replicas.unwrap_or(0)
}

/// The pods a ReplicaSet last reported (`status.replicas`).
pub fn rs_pods(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().map(|s| s.replicas).unwrap_or(0)
}

/// A ReplicaSet's available replicas.
pub fn rs_available(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
}

/// The size the new ReplicaSet may grow to now: up to `replicas`, keeping
/// every ReplicaSet's total within `replicas + maxSurge`.
pub fn new_rs_target(d: &Deployment, new_rs: &ReplicaSet, all: &[&ReplicaSet]) -> i32 {
    let replicas = replicas_of(d);
    let current = rs_replicas(new_rs);
    if !is_rolling(d) {
        return replicas;
    }
    if current >= replicas {
        return replicas;
    }
    let (surge, _) = surge_and_unavailable(d);
    // Count what each set has as well as what it was asked for: an old set
    // just scaled down may not have deleted its pods yet, and growing the
    // new set into that room would overshoot maxSurge for a moment.
    let total: i32 = all.iter().map(|r| rs_replicas(r).max(rs_pods(r))).sum();
    let room = replicas + surge - total;
    if room <= 0 {
        return current;
    }
    current + room.min(replicas - current)
}

/// How many replicas the old ReplicaSets may lose now without going under
/// `replicas - maxUnavailable` available pods, counting the new
/// ReplicaSet's pods that are not available yet against the budget.
pub fn old_scale_down_budget(
    d: &Deployment,
    new_rs: Option<&ReplicaSet>,
    all: &[&ReplicaSet],
) -> i32 {
    let replicas = replicas_of(d);
    let (_, unavailable) = surge_and_unavailable(d);
    let min_available = replicas - unavailable;
    let total: i32 = all.iter().map(|r| rs_replicas(r)).sum();
    let new_unavailable = new_rs
        .map(|n| (rs_replicas(n) - rs_available(n)).max(0))
        .unwrap_or(0);
    (total - min_available - new_unavailable).max(0)
}

/// Of the old ReplicaSets' available pods, how many may go while
/// `replicas - maxUnavailable` stay available.
pub fn available_scale_down(d: &Deployment, all: &[&ReplicaSet]) -> i32 {
    let replicas = replicas_of(d);
    let (_, unavailable) = surge_and_unavailable(d);
    let available: i32 = all.iter().map(|r| rs_available(r)).sum();
    (available - (replicas - unavailable)).max(0)
}

/// Proportional scaling: split `to_add` (may be negative) over `sets`
/// in proportion to their current sizes; rounding leftovers go to the
/// first set (the newest, by the caller's order). Returns new sizes.
pub fn proportional(sets: &[i32], to_add: i32) -> Vec<i32> {
    let total: i64 = sets.iter().map(|s| i64::from(*s)).sum();
    if sets.is_empty() {
        return Vec::new();
    }
    let mut out: Vec<i32> = sets.to_vec();
    if total == 0 {
        out[0] = (out[0] + to_add).max(0);
        return out;
    }
    let mut given = 0;
    for (i, s) in sets.iter().enumerate() {
        let share = (i64::from(*s) * i64::from(to_add) / total) as i32;
        out[i] = (s + share).max(0);
        given += out[i] - s;
    }
    let rest = to_add - given;
    out[0] = (out[0] + rest).max(0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(
        replicas: i32,
        surge: serde_json::Value,
        unavailable: serde_json::Value,
    ) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "d"},
            "spec": {"replicas": replicas, "selector": {}, "template": {},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}}}
        }))
        .unwrap()
    }

    #[test]
    fn percentages_round_surge_up_and_unavailability_down() {
        assert_eq!(
            surge_and_unavailable(&deployment(10, json!("25%"), json!("25%"))),
            (3, 2)
        );
        assert_eq!(
            surge_and_unavailable(&deployment(1, json!("25%"), json!("25%"))),
            (1, 0)
        );
        assert_eq!(
            surge_and_unavailable(&deployment(5, json!(0), json!(0))),
            (0, 1)
        );
    }

    #[test]
    fn proportional_scaling_keeps_the_total() {
        assert_eq!(proportional(&[6, 4], 5), vec![9, 6]);
        assert_eq!(proportional(&[6, 4], -5), vec![3, 2]);
        assert_eq!(proportional(&[3, 3, 3], 1).iter().sum::<i32>(), 10);
    }
}
