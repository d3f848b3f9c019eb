//! InterPodAffinity: required pod affinity and anti-affinity (of the
//! incoming pod, and existing pods' required anti-affinity against it)
//! filter; preferred terms (both ways, plus existing pods' required
//! affinity at weight 1) score per topology domain, normalized to 0..100.
//!
//! Namespace selectors in terms are matched against namespace labels when
//! known; rk's scheduler does not watch namespaces, so a term relying only
//! on a `namespaceSelector` selects pods in its listed namespaces only.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use rk_core::predicates::AffinityTerm;

use crate::scheduler::cache::Snapshot;
use crate::scheduler::framework::{
    Code, CycleState, FilterPlugin, MAX_NODE_SCORE, NodeScore, Plugin, PreFilterPlugin,
    PreScorePlugin, ScorePlugin, Status,
};
use crate::scheduler::types::{NodeInfo, PodInfo};

/// The plugin's name.
pub const NAME: &str = "InterPodAffinity";
/// Reason: no pod matching the pod's required affinity in the node's domain.
pub const REASON_AFFINITY: &str = "node(s) didn't match pod affinity rules";
/// Reason: a pod matching the pod's required anti-affinity is in the domain.
pub const REASON_ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";
/// Reason: an existing pod's required anti-affinity rejects the pod.
pub const REASON_EXISTING_ANTI_AFFINITY: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";

const SCORE_KEY: &str = "InterPodAffinity/score";
/// Weight of existing pods' required affinity terms in scoring (upstream
/// `hardPodAffinityWeight` default).
const HARD_POD_AFFINITY_WEIGHT: i64 = 1;

/// (topology key, value) -> matching pods.
type DomainCounts = HashMap<(String, String), i64>;

/// Upstream's `InterPodAffinity` plugin.
#[derive(Debug, Default)]
pub struct InterPodAffinity;

#[derive(Clone, Default)]
struct FilterState {
    existing_anti: DomainCounts,
    affinity: DomainCounts,
    anti: DomainCounts,
    /// Whether the incoming pod matches all its own required affinity terms.
    self_affinity: bool,
}

fn matches(term: &AffinityTerm, pod: &PodInfo) -> bool {
    term.matches(&pod.pod, None)
}

fn bump(counts: &mut DomainCounts, node: &NodeInfo, key: &str, delta: i64) {
    if let Some(value) = node.label(key) {
        let e = counts
            .entry((key.to_owned(), value.to_owned()))
            .or_insert(0);
        *e += delta;
        if *e == 0 {
            counts.remove(&(key.to_owned(), value.to_owned()));
        }
    }
}

impl FilterState {
    fn account(&mut self, incoming: &PodInfo, existing: &PodInfo, node: &NodeInfo, delta: i64) {
        for t in &existing.required_anti_affinity {
            if matches(t, incoming) {
                bump(&mut self.existing_anti, node, t.topology_key(), delta);
            }
        }
        for t in &incoming.required_affinity {
            if matches(t, existing) {
                bump(&mut self.affinity, node, t.topology_key(), delta);
            }
        }
        for t in &incoming.required_anti_affinity {
            if matches(t, existing) {
                bump(&mut self.anti, node, t.topology_key(), delta);
            }
        }
    }
}

impl Plugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        NAME
    }
    fn as_pre_filter(&self) -> Option<&dyn PreFilterPlugin> {
        Some(self)
    }
    fn as_filter(&self) -> Option<&dyn FilterPlugin> {
        Some(self)
    }
    fn as_pre_score(&self) -> Option<&dyn PreScorePlugin> {
        Some(self)
    }
    fn as_score(&self) -> Option<&dyn ScorePlugin> {
        Some(self)
    }
}

impl PreFilterPlugin for InterPodAffinity {
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
    ) -> Result<Option<HashSet<String>>, Status> {
        let incoming_terms =
            !pod.required_affinity.is_empty() || !pod.required_anti_affinity.is_empty();
        let any_existing_anti = snapshot.nodes_with_required_anti_affinity() > 0;
        if !incoming_terms && !any_existing_anti {
            return Err(Status::new(Code::Skip, ""));
        }
        let mut st = FilterState {
            self_affinity: !pod.required_affinity.is_empty()
                && pod.required_affinity.iter().all(|t| matches(t, pod)),
            ..FilterState::default()
        };
        for node in snapshot.nodes() {
            if !incoming_terms && node.pods_with_required_anti_affinity == 0 {
                continue;
            }
            for existing in &node.pods {
                st.account(pod, existing, node, 1);
            }
        }
        state.write(NAME, st);
        Ok(None)
    }

    fn add_pod(&self, state: &mut CycleState, pod: &PodInfo, added: &PodInfo, node: &NodeInfo) {
        if let Some(st) = state.read::<FilterState>(NAME) {
            let mut st = st.clone();
            st.account(pod, added, node, 1);
            state.write(NAME, st);
        }
    }

    fn remove_pod(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        removed: &PodInfo,
        node: &NodeInfo,
    ) {
        if let Some(st) = state.read::<FilterState>(NAME) {
            let mut st = st.clone();
            st.account(pod, removed, node, -1);
            state.write(NAME, st);
        }
    }
}

fn in_domain(counts: &DomainCounts, node: &NodeInfo, key: &str) -> bool {
    node.label(key).is_some_and(|v| {
        counts
            .get(&(key.to_owned(), v.to_owned()))
            .is_some_and(|c| *c > 0)
    })
}

impl FilterPlugin for InterPodAffinity {
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(st) = state.read::<FilterState>(NAME) else {
            return Status::success();
        };
        if !pod.required_affinity.is_empty() {
            let all_present = pod.required_affinity.iter().all(|t| {
                node.label(t.topology_key()).is_some()
                    && in_domain(&st.affinity, node, t.topology_key())
            });
            // A pod matching its own terms may start a group when no pod
            // anywhere matches them yet.
            let first_of_group = st.affinity.is_empty()
                && st.self_affinity
                && pod
                    .required_affinity
                    .iter()
                    .all(|t| node.label(t.topology_key()).is_some());
            if !all_present && !first_of_group {
                return Status::unresolvable(REASON_AFFINITY);
            }
        }
        if pod
            .required_anti_affinity
            .iter()
            .any(|t| in_domain(&st.anti, node, t.topology_key()))
        {
            return Status::unschedulable(REASON_ANTI_AFFINITY);
        }
        for ((key, value), count) in &st.existing_anti {
            if *count > 0 && node.label(key) == Some(value.as_str()) {
                return Status::unschedulable(REASON_EXISTING_ANTI_AFFINITY);
            }
        }
        Status::success()
    }
}

/// topology key -> value -> score.
struct ScoreState {
    scores: HashMap<String, HashMap<String, i64>>,
}

impl ScoreState {
    fn add(&mut self, node: &NodeInfo, key: &str, weight: i64) {
        if weight == 0 {
            return;
        }
        if let Some(value) = node.label(key) {
            *self
                .scores
                .entry(key.to_owned())
                .or_default()
                .entry(value.to_owned())
                .or_insert(0) += weight;
        }
    }
}

impl PreScorePlugin for InterPodAffinity {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _nodes: &[Arc<NodeInfo>],
        snapshot: &Snapshot,
    ) -> Status {
        let incoming_preferred =
            !pod.preferred_affinity.is_empty() || !pod.preferred_anti_affinity.is_empty();
        let any_existing = snapshot.nodes_with_affinity() > 0;
        if !incoming_preferred && !any_existing {
            return Status::new(Code::Skip, "");
        }
        let mut st = ScoreState {
            scores: HashMap::new(),
        };
        for node in snapshot.nodes() {
            if !incoming_preferred && node.pods_with_affinity == 0 {
                continue;
            }
            for existing in &node.pods {
                for (w, t) in &pod.preferred_affinity {
                    if matches(t, existing) {
                        st.add(node, t.topology_key(), *w);
                    }
                }
                for (w, t) in &pod.preferred_anti_affinity {
                    if matches(t, existing) {
                        st.add(node, t.topology_key(), -*w);
                    }
                }
                if !existing.has_affinity() {
                    continue;
                }
                for t in &existing.required_affinity {
                    if matches(t, pod) {
                        st.add(node, t.topology_key(), HARD_POD_AFFINITY_WEIGHT);
                    }
                }
                for (w, t) in &existing.preferred_affinity {
                    if matches(t, pod) {
                        st.add(node, t.topology_key(), *w);
                    }
                }
                for (w, t) in &existing.preferred_anti_affinity {
                    if matches(t, pod) {
                        st.add(node, t.topology_key(), -*w);
                    }
                }
            }
        }
        if st.scores.is_empty() {
            return Status::new(Code::Skip, "");
        }
        state.write(SCORE_KEY, st);
        Status::success()
    }
}

impl ScorePlugin for InterPodAffinity {
    fn score(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        let Some(st) = state.read::<ScoreState>(SCORE_KEY) else {
            return Ok(0);
        };
        Ok(st
            .scores
            .iter()
            .filter_map(|(key, values)| values.get(node.label(key)?))
            .sum())
    }

    fn normalize(&self, state: &CycleState, _pod: &PodInfo, scores: &mut [NodeScore]) {
        if state.read::<ScoreState>(SCORE_KEY).is_none() {
            return;
        }
        let min = scores.iter().map(|s| s.score).min().unwrap_or(0);
        let max = scores.iter().map(|s| s.score).max().unwrap_or(0);
        let diff = max - min;
        for s in scores.iter_mut() {
            s.score = if diff > 0 {
                MAX_NODE_SCORE * (s.score - min) / diff
            } else {
                0
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{
        Affinity, PodAffinity, PodAffinityTerm, PodAntiAffinity, WeightedPodAffinityTerm,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    use super::*;
    use crate::scheduler::plugins::testing::{edit_pod, label, node, pod, pod_label};

    const ZONE: &str = "topology.kubernetes.io/zone";

    fn term(app: &str) -> PodAffinityTerm {
        PodAffinityTerm {
            label_selector: Some(LabelSelector {
                match_labels: Some([("app".to_owned(), app.to_owned())].into()),
                match_expressions: None,
            }),
            topology_key: ZONE.into(),
            ..PodAffinityTerm::default()
        }
    }

    fn with_affinity(p: PodInfo, affinity: Affinity) -> PodInfo {
        edit_pod(p, |pod| {
            if let Some(spec) = pod.spec.as_mut() {
                spec.affinity = Some(affinity);
            }
        })
    }

    /// zone a: node a1 with a `db` pod; zone b: node b1, empty.
    fn nodes() -> Vec<NodeInfo> {
        let mut a1 = label(node("a1", "4", "8Gi"), ZONE, "a");
        a1.add_pod(Arc::new(pod_label(pod("db", "0", "0"), "app", "db")));
        let b1 = label(node("b1", "4", "8Gi"), ZONE, "b");
        vec![a1, b1]
    }

    fn filter_all(p: &PodInfo, nodes: &[NodeInfo]) -> Vec<Status> {
        let snapshot = Snapshot::from_nodes(nodes.to_vec());
        let mut state = CycleState::default();
        let _ = InterPodAffinity.pre_filter(&mut state, p, &snapshot);
        nodes
            .iter()
            .map(|n| InterPodAffinity.filter(&state, p, n))
            .collect()
    }

    #[test]
    fn required_affinity_needs_a_matching_pod_in_the_domain() {
        let p = with_affinity(
            pod("web", "0", "0"),
            Affinity {
                pod_affinity: Some(PodAffinity {
                    required_during_scheduling_ignored_during_execution: Some(vec![term("db")]),
                    ..PodAffinity::default()
                }),
                ..Affinity::default()
            },
        );
        let s = filter_all(&p, &nodes());
        assert!(s[0].is_success());
        assert_eq!(s[1], Status::unresolvable(REASON_AFFINITY));
    }

    #[test]
    fn required_anti_affinity_both_ways() {
        let p = with_affinity(
            pod("web", "0", "0"),
            Affinity {
                pod_anti_affinity: Some(PodAntiAffinity {
                    required_during_scheduling_ignored_during_execution: Some(vec![term("db")]),
                    ..PodAntiAffinity::default()
                }),
                ..Affinity::default()
            },
        );
        let s = filter_all(&p, &nodes());
        assert_eq!(s[0], Status::unschedulable(REASON_ANTI_AFFINITY));
        assert!(s[1].is_success());

        // an existing pod that repels `app=web` pods from its zone
        let mut ns = nodes();
        let guard = with_affinity(
            pod("guard", "0", "0"),
            Affinity {
                pod_anti_affinity: Some(PodAntiAffinity {
                    required_during_scheduling_ignored_during_execution: Some(vec![term("web")]),
                    ..PodAntiAffinity::default()
                }),
                ..Affinity::default()
            },
        );
        ns[1].add_pod(Arc::new(guard));
        let web = pod_label(pod("web", "0", "0"), "app", "web");
        let s = filter_all(&web, &ns);
        assert!(s[0].is_success());
        assert_eq!(s[1], Status::unschedulable(REASON_EXISTING_ANTI_AFFINITY));
    }

    #[test]
    fn preferred_terms_score_by_domain() {
        let p = with_affinity(
            pod("web", "0", "0"),
            Affinity {
                pod_affinity: Some(PodAffinity {
                    preferred_during_scheduling_ignored_during_execution: Some(vec![
                        WeightedPodAffinityTerm {
                            weight: 10,
                            pod_affinity_term: term("db"),
                        },
                    ]),
                    ..PodAffinity::default()
                }),
                ..Affinity::default()
            },
        );
        let ns = nodes();
        let snapshot = Snapshot::from_nodes(ns.clone());
        let feasible: Vec<Arc<NodeInfo>> = ns.iter().cloned().map(Arc::new).collect();
        let mut state = CycleState::default();
        assert!(
            InterPodAffinity
                .pre_score(&mut state, &p, &feasible, &snapshot)
                .is_success()
        );
        let mut scores: Vec<NodeScore> = feasible
            .iter()
            .enumerate()
            .map(|(index, n)| NodeScore {
                index,
                score: InterPodAffinity.score(&state, &p, n).unwrap_or(-1),
            })
            .collect();
        assert_eq!((scores[0].score, scores[1].score), (10, 0));
        InterPodAffinity.normalize(&state, &p, &mut scores);
        assert_eq!((scores[0].score, scores[1].score), (100, 0));
    }
}
