//! Tolerations against taints.
//!
//! Upstream: `Toleration.ToleratesTaint` in `k8s.io/api/core/v1` and
//! `FindMatchingUntoleratedTaint` in `k8s.io/component-helpers/scheduling/corev1`.

use k8s_openapi::api::core::v1::{Taint, Toleration};

/// Taint effect: new pods are not scheduled unless they tolerate the taint.
pub const NO_SCHEDULE: &str = "NoSchedule";
/// Taint effect: the scheduler avoids the node if it can.
pub const PREFER_NO_SCHEDULE: &str = "PreferNoSchedule";
/// Taint effect: running pods that do not tolerate the taint are evicted.
pub const NO_EXECUTE: &str = "NoExecute";
/// Key of the taint a cordoned (`spec.unschedulable`) node carries.
pub const TAINT_NODE_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

/// Whether the toleration tolerates the taint.
///
/// - An empty `effect` matches every effect; otherwise effects must be equal.
/// - An empty `key` matches every key (validation only allows it with
///   `Exists`, which then tolerates everything); otherwise keys must be equal.
/// - `Exists` ignores the value; `Equal` (also the default for an empty
///   operator) requires equal values.
/// - `Gt` / `Lt` compare the taint's value with the toleration's, both read as
///   integers: `Gt` tolerates a taint whose value is greater. A value that is
///   not an integer tolerates nothing.
/// - Any other operator tolerates nothing.
pub fn toleration_tolerates_taint(toleration: &Toleration, taint: &Taint) -> bool {
    let effect = toleration.effect.as_deref().unwrap_or_default();
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or_default();
    if !key.is_empty() && key != taint.key {
        return false;
    }
    let toleration_value = toleration.value.as_deref().unwrap_or_default();
    let taint_value = taint.value.as_deref().unwrap_or_default();
    match toleration.operator.as_deref().unwrap_or_default() {
        "" | "Equal" => toleration_value == taint_value,
        "Exists" => true,
        op @ ("Gt" | "Lt") => match (taint_value.parse::<i64>(), toleration_value.parse::<i64>()) {
            (Ok(t), Ok(v)) if op == "Gt" => t > v,
            (Ok(t), Ok(v)) => t < v,
            _ => false,
        },
        _ => false,
    }
}

/// Whether any of the tolerations tolerates the taint.
pub fn tolerations_tolerate_taint(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations
        .iter()
        .any(|t| toleration_tolerates_taint(t, taint))
}

/// The first taint, among those whose effect is in `filter_effects`, that no
/// toleration tolerates; an empty `filter_effects` considers every taint.
///
/// The scheduler and DaemonSet controller filter on `[NO_SCHEDULE,
/// NO_EXECUTE]`; the kubelet's admission on `[NO_EXECUTE]`.
pub fn find_untolerated_taint<'a>(
    taints: &'a [Taint],
    tolerations: &[Toleration],
    filter_effects: &[&str],
) -> Option<&'a Taint> {
    taints.iter().find(|taint| {
        (filter_effects.is_empty() || filter_effects.contains(&taint.effect.as_str()))
            && !tolerations_tolerate_taint(tolerations, taint)
    })
}

/// The number of `PreferNoSchedule` taints the tolerations do not tolerate
/// (upstream's TaintToleration score counts these; fewer is better).
pub fn count_intolerable_prefer_no_schedule(taints: &[Taint], tolerations: &[Toleration]) -> usize {
    // Upstream only considers tolerations whose effect is empty or PreferNoSchedule here.
    let relevant: Vec<Toleration> = tolerations
        .iter()
        .filter(|t| matches!(t.effect.as_deref(), None | Some("" | PREFER_NO_SCHEDULE)))
        .cloned()
        .collect();
    taints
        .iter()
        .filter(|t| t.effect == PREFER_NO_SCHEDULE && !tolerations_tolerate_taint(&relevant, t))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taint(key: &str, value: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: (!value.is_empty()).then(|| value.to_owned()),
            effect: effect.into(),
            time_added: None,
        }
    }

    fn toleration(key: &str, op: &str, value: &str, effect: &str) -> Toleration {
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        Toleration {
            key: opt(key),
            operator: opt(op),
            value: opt(value),
            effect: opt(effect),
            toleration_seconds: None,
        }
    }

    #[test]
    fn exists_toleration_with_empty_key_tolerates_every_taint() {
        let t = toleration("", "Exists", "", "");
        for taint in [
            taint("a", "1", NO_SCHEDULE),
            taint("b", "", NO_EXECUTE),
            taint("c", "x", PREFER_NO_SCHEDULE),
        ] {
            assert!(toleration_tolerates_taint(&t, &taint));
        }
    }

    #[test]
    fn empty_effect_matches_every_effect_but_a_set_effect_must_be_equal() {
        let any = toleration("k", "Equal", "v", "");
        let only_no_execute = toleration("k", "Equal", "v", NO_EXECUTE);
        assert!(toleration_tolerates_taint(
            &any,
            &taint("k", "v", NO_SCHEDULE)
        ));
        assert!(toleration_tolerates_taint(
            &any,
            &taint("k", "v", NO_EXECUTE)
        ));
        assert!(!toleration_tolerates_taint(
            &only_no_execute,
            &taint("k", "v", NO_SCHEDULE)
        ));
    }

    #[test]
    fn equal_is_the_default_operator_and_compares_values() {
        assert!(toleration_tolerates_taint(
            &toleration("k", "", "v", ""),
            &taint("k", "v", NO_SCHEDULE)
        ));
        assert!(!toleration_tolerates_taint(
            &toleration("k", "", "v", ""),
            &taint("k", "w", NO_SCHEDULE)
        ));
        assert!(!toleration_tolerates_taint(
            &toleration("k", "Equal", "v", ""),
            &taint("j", "v", NO_SCHEDULE)
        ));
    }

    #[test]
    fn exists_with_a_key_ignores_the_value_but_not_the_key() {
        let t = toleration("k", "Exists", "", "");
        assert!(toleration_tolerates_taint(
            &t,
            &taint("k", "anything", NO_SCHEDULE)
        ));
        assert!(!toleration_tolerates_taint(
            &t,
            &taint("other", "", NO_SCHEDULE)
        ));
    }

    #[test]
    fn gt_and_lt_compare_integer_values() {
        let gt = toleration("sla", "Gt", "950", "");
        let lt = toleration("sla", "Lt", "950", "");
        assert!(toleration_tolerates_taint(
            &gt,
            &taint("sla", "999", NO_SCHEDULE)
        ));
        assert!(!toleration_tolerates_taint(
            &gt,
            &taint("sla", "950", NO_SCHEDULE)
        ));
        assert!(toleration_tolerates_taint(
            &lt,
            &taint("sla", "100", NO_SCHEDULE)
        ));
        assert!(!toleration_tolerates_taint(
            &lt,
            &taint("sla", "high", NO_SCHEDULE)
        ));
    }

    #[test]
    fn unknown_operator_tolerates_nothing() {
        assert!(!toleration_tolerates_taint(
            &toleration("k", "Near", "v", ""),
            &taint("k", "v", NO_SCHEDULE)
        ));
    }

    #[test]
    fn find_untolerated_taint_skips_filtered_effects_and_tolerated_taints() {
        let taints = [
            taint("soft", "", PREFER_NO_SCHEDULE),
            taint("tolerated", "", NO_SCHEDULE),
            taint("hard", "x", NO_EXECUTE),
        ];
        let tolerations = [toleration("tolerated", "Exists", "", "")];
        let found = find_untolerated_taint(&taints, &tolerations, &[NO_SCHEDULE, NO_EXECUTE]);
        assert_eq!(found.map(|t| t.key.as_str()), Some("hard"));
        assert_eq!(
            find_untolerated_taint(&taints, &tolerations, &[]).map(|t| t.key.as_str()),
            Some("soft")
        );
        assert_eq!(
            find_untolerated_taint(&taints, &tolerations, &[NO_SCHEDULE]),
            None
        );
    }

    #[test]
    fn prefer_no_schedule_count_ignores_tolerations_with_other_effects() {
        let taints = [
            taint("a", "", PREFER_NO_SCHEDULE),
            taint("b", "", PREFER_NO_SCHEDULE),
        ];
        let tolerations = [
            toleration("a", "Exists", "", ""),
            toleration("b", "Exists", "", NO_SCHEDULE),
        ];
        assert_eq!(
            count_intolerable_prefer_no_schedule(&taints, &tolerations),
            1
        );
    }
}
