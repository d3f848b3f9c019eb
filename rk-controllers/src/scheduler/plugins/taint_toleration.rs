//! TaintToleration: a node's `NoSchedule` and `NoExecute` taints must be
//! tolerated (Filter); fewer untolerated `PreferNoSchedule` taints score
//! higher (Score, normalized and reversed).

use rk_core::predicates::find_untolerated_taint;
use rk_core::predicates::taints::{NO_EXECUTE, NO_SCHEDULE, count_intolerable_prefer_no_schedule};

use super::default_normalize;
use crate::scheduler::framework::{
    CycleState, FilterPlugin, NodeScore, Plugin, ScorePlugin, Status,
};
use crate::scheduler::types::{NodeInfo, PodInfo};

/// The plugin's name.
pub const NAME: &str = "TaintToleration";

/// Upstream's `TaintToleration` plugin.
#[derive(Debug, Default)]
pub struct TaintToleration;

impl Plugin for TaintToleration {
    fn name(&self) -> &'static str {
        NAME
    }
    fn as_filter(&self) -> Option<&dyn FilterPlugin> {
        Some(self)
    }
    fn as_score(&self) -> Option<&dyn ScorePlugin> {
        Some(self)
    }
}

impl FilterPlugin for TaintToleration {
    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let taints = node.taints();
        if taints.is_empty() {
            return Status::success();
        }
        match find_untolerated_taint(taints, pod.tolerations(), &[NO_SCHEDULE, NO_EXECUTE]) {
            None => Status::success(),
            Some(t) => Status::unresolvable(format!(
                "node(s) had untolerated taint {{{}: {}}}",
                t.key,
                t.value.as_deref().unwrap_or_default()
            )),
        }
    }
}

impl ScorePlugin for TaintToleration {
    fn score(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        let taints = node.taints();
        if taints.is_empty() {
            return Ok(0);
        }
        Ok(count_intolerable_prefer_no_schedule(taints, pod.tolerations()) as i64)
    }

    fn normalize(&self, _state: &CycleState, _pod: &PodInfo, scores: &mut [NodeScore]) {
        default_normalize(scores, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::plugins::testing::{node, pod, taint, tolerate};

    #[test]
    fn untolerated_hard_taints_are_reported_in_upstream_form() {
        let n = taint(node("n1", "1", "1Gi"), "dedicated", "gpu", NO_SCHEDULE);
        let s = TaintToleration.filter(&CycleState::default(), &pod("p", "0", "0"), &n);
        assert_eq!(
            s,
            Status::unresolvable("node(s) had untolerated taint {dedicated: gpu}")
        );
        let ok = tolerate(pod("q", "0", "0"), "dedicated", NO_SCHEDULE);
        assert!(
            TaintToleration
                .filter(&CycleState::default(), &ok, &n)
                .is_success()
        );
    }

    #[test]
    fn prefer_no_schedule_taints_lower_the_score() {
        let clean = node("a", "1", "1Gi");
        let one = taint(node("b", "1", "1Gi"), "x", "", "PreferNoSchedule");
        let two = taint(
            taint(node("c", "1", "1Gi"), "x", "", "PreferNoSchedule"),
            "y",
            "",
            "PreferNoSchedule",
        );
        let p = pod("p", "0", "0");
        let state = CycleState::default();
        let mut scores: Vec<NodeScore> = [clean, one, two]
            .iter()
            .enumerate()
            .map(|(index, n)| NodeScore {
                index,
                score: TaintToleration.score(&state, &p, n).unwrap_or(-1),
            })
            .collect();
        TaintToleration.normalize(&state, &p, &mut scores);
        // raw 0,1,2 -> 100 - 100*c/2
        assert_eq!(
            scores.iter().map(|s| s.score).collect::<Vec<_>>(),
            [100, 50, 0]
        );
    }
}
