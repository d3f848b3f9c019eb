//! PodTopologySpread: `DoNotSchedule` constraints filter (skew after placing
//! the pod must stay within `maxSkew`); `ScheduleAnyway` constraints score
//! (fewer matching pods in the node's domain is better).
//!
//! A pod with no constraints at all gets upstream's system default
//! constraints for scoring (`kubernetes.io/hostname` with maxSkew 3 and
//! `topology.kubernetes.io/zone` with maxSkew 5, both `ScheduleAnyway`).
//! Upstream selects the pods to spread against by the selectors of the
//! Services and controllers that select the pod; rk uses the pods sharing
//! the pod's controller (owner reference with `controller: true`), which is
//! what those selectors select for pods created by workload controllers.
//! Pods without a controller get no default spreading.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, TopologySpreadConstraint};
use rk_core::predicates::SpreadConstraint;

use crate::scheduler::cache::Snapshot;
use crate::scheduler::framework::{
    Code, CycleState, FilterPlugin, MAX_NODE_SCORE, NodeScore, Plugin, PreFilterPlugin,
    PreScorePlugin, ScorePlugin, Status,
};
use crate::scheduler::types::{NodeInfo, PodInfo};

/// The plugin's name.
pub const NAME: &str = "PodTopologySpread";
/// Reason when the skew would be exceeded.
pub const REASON_SKEW: &str = "node(s) didn't match pod topology spread constraints";
/// Reason when the node lacks a constraint's topology key.
pub const REASON_MISSING_LABEL: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";

const HOSTNAME: &str = "kubernetes.io/hostname";
const ZONE: &str = "topology.kubernetes.io/zone";
const PRE_SCORE_KEY: &str = "PodTopologySpread/score";

/// Upstream's `PodTopologySpread` plugin.
///
/// Counting matching pods per domain is the expensive part (every pod on
/// every node); the plugin remembers the counts per (namespace, selector,
/// keys) and brings them up to date from the snapshot's node changes, as
/// long as which nodes count does not depend on the incoming pod's own node
/// selector or tolerations.
#[derive(Default)]
pub struct PodTopologySpread {
    memo: std::sync::Mutex<HashMap<String, Memo>>,
}

struct Memo {
    version: u64,
    /// Per domain: matching pods and counted nodes.
    counts: HashMap<String, (i64, i64)>,
}

/// Memos kept at most (distinct selectors recently scheduled).
const MAX_MEMOS: usize = 64;

/// What pods a constraint counts.
#[derive(Clone)]
enum Matcher {
    /// The constraint's label selector (and namespace).
    Selector(SpreadConstraint),
    /// System default: pods of the same controller (and namespace).
    SameController { uid: String, namespace: String },
}

#[derive(Clone)]
struct Constraint {
    key: String,
    max_skew: i64,
    min_domains: i64,
    self_match: bool,
    matcher: Matcher,
    /// Identifies what the constraint counts, when that does not depend on
    /// the incoming pod beyond its namespace and selector (memoizable).
    memo_id: Option<String>,
}

impl Constraint {
    fn counts(&self, pod: &PodInfo) -> bool {
        match &self.matcher {
            Matcher::Selector(c) => c.counts_pod(&pod.pod),
            Matcher::SameController { uid, namespace } => {
                pod.namespace() == namespace
                    && pod.pod.metadata.deletion_timestamp.is_none()
                    && controller_uid(&pod.pod) == Some(uid.as_str())
            }
        }
    }

    fn eligible(&self, incoming: &PodInfo, node: &NodeInfo) -> bool {
        match &self.matcher {
            Matcher::Selector(c) => c.node_is_eligible(&incoming.pod, &node.node),
            Matcher::SameController { .. } => node.label(&self.key).is_some(),
        }
    }
}

fn controller_uid(pod: &Pod) -> Option<&str> {
    pod.metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true))
        .map(|o| o.uid.as_str())
}

fn constraints(pod: &PodInfo, hard: bool) -> Result<Vec<Constraint>, Status> {
    let declared: &[TopologySpreadConstraint] = pod
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.topology_spread_constraints.as_deref())
        .unwrap_or_default();
    if declared.is_empty() {
        if hard {
            return Ok(Vec::new());
        }
        let Some(uid) = controller_uid(&pod.pod) else {
            return Ok(Vec::new());
        };
        return Ok([(HOSTNAME, 3), (ZONE, 5)]
            .into_iter()
            .map(|(key, skew)| Constraint {
                key: key.to_owned(),
                max_skew: skew,
                min_domains: 1,
                self_match: true,
                matcher: Matcher::SameController {
                    uid: uid.to_owned(),
                    namespace: pod.namespace().to_owned(),
                },
                memo_id: Some(format!("controller:{uid}")),
            })
            .collect());
    }
    let mut out = Vec::new();
    for c in declared {
        let compiled = SpreadConstraint::new(&pod.pod, c).map_err(|e| {
            Status::unresolvable(format!("invalid topology spread constraint: {e}"))
        })?;
        if compiled.do_not_schedule != hard {
            continue;
        }
        let spec = pod.pod.spec.as_ref();
        let pod_node_constraints = spec
            .and_then(|s| s.node_selector.as_ref())
            .is_some_and(|m| !m.is_empty())
            || spec
                .and_then(|s| s.affinity.as_ref())
                .and_then(|a| a.node_affinity.as_ref())
                .is_some_and(|n| {
                    n.required_during_scheduling_ignored_during_execution
                        .is_some()
                });
        let memoizable =
            !compiled.honor_node_taints && (!compiled.honor_node_affinity || !pod_node_constraints);
        let memo_id = memoizable.then(|| {
            let labels = pod.pod.metadata.labels.clone().unwrap_or_default();
            let resolved: Vec<(&String, Option<&String>)> = c
                .match_label_keys
                .iter()
                .flatten()
                .map(|k| (k, labels.get(k)))
                .collect();
            format!(
                "{}|{}|{}",
                pod.namespace(),
                serde_json::to_string(&c.label_selector).unwrap_or_default(),
                serde_json::to_string(&resolved).unwrap_or_default()
            )
        });
        out.push(Constraint {
            memo_id,
            key: compiled.topology_key.clone(),
            max_skew: i64::from(compiled.max_skew),
            min_domains: i64::from(compiled.min_domains),
            self_match: compiled.self_match(),
            matcher: Matcher::Selector(compiled),
        });
    }
    Ok(out)
}

/// PreFilter state: per constraint, matching pods per domain and the minimum.
#[derive(Clone)]
struct FilterState {
    constraints: Vec<Constraint>,
    counts: Vec<HashMap<String, i64>>,
    min: Vec<i64>,
}

impl FilterState {
    fn recompute_min(&mut self) {
        for (i, c) in self.constraints.iter().enumerate() {
            let counts = &self.counts[i];
            self.min[i] = if (counts.len() as i64) < c.min_domains {
                0
            } else {
                counts.values().copied().min().unwrap_or(0)
            };
        }
    }

    fn node_has_all_keys(&self, node: &NodeInfo) -> bool {
        self.constraints
            .iter()
            .all(|c| node.label(&c.key).is_some())
    }

    fn adjust(&mut self, incoming: &PodInfo, pod: &PodInfo, node: &NodeInfo, delta: i64) {
        if !self.node_has_all_keys(node) {
            return;
        }
        for (i, c) in self.constraints.iter().enumerate() {
            if !c.eligible(incoming, node) || !c.counts(pod) {
                continue;
            }
            if let Some(domain) = node.label(&c.key) {
                *self.counts[i].entry(domain.to_owned()).or_insert(0) += delta;
            }
        }
        self.recompute_min();
    }
}

impl Plugin for PodTopologySpread {
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

/// The matching pods `node` adds to its domain for constraint `c`, when the
/// node counts at all (it has every key in `all` and passes `c`'s policies).
fn contribution<'n>(
    all: &[Constraint],
    c: &Constraint,
    pod: &PodInfo,
    node: &'n NodeInfo,
) -> Option<(&'n str, i64)> {
    if !all.iter().all(|k| node.label(&k.key).is_some()) || !c.eligible(pod, node) {
        return None;
    }
    let domain = node.label(&c.key)?;
    Some((
        domain,
        node.pods.iter().filter(|p| c.counts(p)).count() as i64,
    ))
}

impl PodTopologySpread {
    /// Matching pods per domain for `all[i]`, counted over the nodes that
    /// have every key of `all`; memoized when the constraint allows.
    fn domain_counts(
        &self,
        snapshot: &Snapshot,
        pod: &PodInfo,
        all: &[Constraint],
        i: usize,
    ) -> HashMap<String, i64> {
        let c = &all[i];
        let full = || {
            let mut counts: HashMap<String, (i64, i64)> = HashMap::new();
            for node in snapshot.nodes() {
                if let Some((domain, n)) = contribution(all, c, pod, node) {
                    let e = counts.entry(domain.to_owned()).or_insert((0, 0));
                    e.0 += n;
                    e.1 += 1;
                }
            }
            counts
        };
        let pods_only = |counts: &HashMap<String, (i64, i64)>| {
            counts.iter().map(|(d, (n, _))| (d.clone(), *n)).collect()
        };
        let Some(id) = &c.memo_id else {
            return pods_only(&full());
        };
        let keys: Vec<&str> = all.iter().map(|k| k.key.as_str()).collect();
        let memo_key = format!("{id}|{}|{}", c.key, keys.join(","));
        let mut memos = self.memo.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(memo) = memos.get_mut(&memo_key)
            && let Some(changes) = snapshot.changes_since(memo.version)
        {
            for (old, new) in changes {
                for (node, sign) in [(old, -1), (new, 1)] {
                    let Some((domain, n)) =
                        node.as_deref().and_then(|o| contribution(all, c, pod, o))
                    else {
                        continue;
                    };
                    let e = memo.counts.entry(domain.to_owned()).or_insert((0, 0));
                    e.0 += sign * n;
                    e.1 += sign;
                    if e.1 <= 0 {
                        memo.counts.remove(domain);
                    }
                }
            }
            memo.version = snapshot.version();
            return pods_only(&memo.counts);
        }
        let counts = full();
        let result = pods_only(&counts);
        if memos.len() >= MAX_MEMOS {
            memos.clear();
        }
        memos.insert(
            memo_key,
            Memo {
                version: snapshot.version(),
                counts,
            },
        );
        result
    }
}

impl PreFilterPlugin for PodTopologySpread {
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
    ) -> Result<Option<HashSet<String>>, Status> {
        let constraints = constraints(pod, true)?;
        if constraints.is_empty() {
            return Err(Status::new(Code::Skip, ""));
        }
        let counts = (0..constraints.len())
            .map(|i| self.domain_counts(snapshot, pod, &constraints, i))
            .collect();
        let mut st = FilterState {
            counts,
            min: vec![0; constraints.len()],
            constraints,
        };
        st.recompute_min();
        state.write(NAME, st);
        Ok(None)
    }

    fn add_pod(&self, state: &mut CycleState, pod: &PodInfo, added: &PodInfo, node: &NodeInfo) {
        if let Some(st) = state.read::<FilterState>(NAME) {
            let mut st = st.clone();
            st.adjust(pod, added, node, 1);
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
            st.adjust(pod, removed, node, -1);
            state.write(NAME, st);
        }
    }
}

impl FilterPlugin for PodTopologySpread {
    fn filter(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(st) = state.read::<FilterState>(NAME) else {
            return Status::success();
        };
        for (i, c) in st.constraints.iter().enumerate() {
            let Some(domain) = node.label(&c.key) else {
                return Status::unresolvable(REASON_MISSING_LABEL);
            };
            let count = st.counts[i].get(domain).copied().unwrap_or(0);
            let skew = count + i64::from(c.self_match) - st.min[i];
            if skew > c.max_skew {
                return Status::unschedulable(REASON_SKEW);
            }
        }
        Status::success()
    }
}

struct ScoreState {
    constraints: Vec<Constraint>,
    /// Per constraint (not hostname): matching pods per domain.
    counts: Vec<HashMap<String, i64>>,
    weights: Vec<f64>,
    /// Indexes (in the scored node list) of nodes lacking the topology keys.
    ignored: HashSet<usize>,
}

impl PreScorePlugin for PodTopologySpread {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        nodes: &[Arc<NodeInfo>],
        snapshot: &Snapshot,
    ) -> Status {
        let constraints = match constraints(pod, false) {
            Ok(c) => c,
            Err(s) => return s,
        };
        if constraints.is_empty() {
            return Status::new(Code::Skip, "");
        }
        let system_default = matches!(constraints[0].matcher, Matcher::SameController { .. });
        let mut ignored = HashSet::new();
        let mut domains: Vec<HashSet<String>> = vec![HashSet::new(); constraints.len()];
        for (index, node) in nodes.iter().enumerate() {
            // Upstream: with the system defaults a node only needs the labels
            // it has; with declared constraints it needs all of them.
            let has_all = constraints.iter().all(|c| node.label(&c.key).is_some());
            if !has_all && !system_default {
                ignored.insert(index);
                continue;
            }
            for (i, c) in constraints.iter().enumerate() {
                if let Some(d) = node.label(&c.key) {
                    domains[i].insert(d.to_owned());
                }
            }
        }
        let weights: Vec<f64> = domains
            .iter()
            .map(|d| ((d.len() + 2) as f64).ln())
            .collect();
        let mut counts: Vec<HashMap<String, i64>> = vec![HashMap::new(); constraints.len()];
        if system_default {
            for node in snapshot.nodes() {
                for (i, c) in constraints.iter().enumerate() {
                    if c.key == HOSTNAME {
                        continue;
                    }
                    let Some(domain) = node.label(&c.key) else {
                        continue;
                    };
                    if !domains[i].contains(domain) || !c.eligible(pod, node) {
                        continue;
                    }
                    let n = node.pods.iter().filter(|p| c.counts(p)).count() as i64;
                    *counts[i].entry(domain.to_owned()).or_insert(0) += n;
                }
            }
        } else {
            for (i, c) in constraints.iter().enumerate() {
                if c.key == HOSTNAME {
                    continue;
                }
                let mut all = self.domain_counts(snapshot, pod, &constraints, i);
                all.retain(|d, _| domains[i].contains(d));
                counts[i] = all;
            }
        }
        state.write(
            PRE_SCORE_KEY,
            ScoreState {
                constraints,
                counts,
                weights,
                ignored,
            },
        );
        Status::success()
    }
}

fn constraints_missing(st: &ScoreState, node: &NodeInfo) -> bool {
    let system_default = st
        .constraints
        .first()
        .is_some_and(|c| matches!(c.matcher, Matcher::SameController { .. }));
    !system_default && st.constraints.iter().any(|c| node.label(&c.key).is_none())
}

impl ScorePlugin for PodTopologySpread {
    fn score(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        let Some(st) = state.read::<ScoreState>(PRE_SCORE_KEY) else {
            return Ok(0);
        };
        if constraints_missing(st, node) {
            return Ok(0);
        }
        let mut score = 0f64;
        for (i, c) in st.constraints.iter().enumerate() {
            let Some(domain) = node.label(&c.key) else {
                continue;
            };
            let count = if c.key == HOSTNAME {
                node.pods.iter().filter(|p| c.counts(p)).count() as i64
            } else {
                st.counts[i].get(domain).copied().unwrap_or(0)
            };
            score += count as f64 * st.weights[i] + (c.max_skew - 1) as f64;
        }
        Ok(score.round() as i64)
    }

    fn normalize(&self, state: &CycleState, _pod: &PodInfo, scores: &mut [NodeScore]) {
        let Some(st) = state.read::<ScoreState>(PRE_SCORE_KEY) else {
            return;
        };
        let (mut min, mut max) = (i64::MAX, 0i64);
        for s in scores.iter().filter(|s| !st.ignored.contains(&s.index)) {
            min = min.min(s.score);
            max = max.max(s.score);
        }
        for s in scores.iter_mut() {
            if st.ignored.contains(&s.index) {
                s.score = 0;
                continue;
            }
            if max == 0 {
                s.score = MAX_NODE_SCORE;
                continue;
            }
            s.score = MAX_NODE_SCORE * (max + min - s.score) / max;
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    use super::*;
    use crate::scheduler::plugins::testing::{edit_pod, label, node, pod, pod_label};

    fn spread(p: PodInfo, when: &str, max_skew: i32) -> PodInfo {
        edit_pod(pod_label(p, "app", "web"), |pod| {
            if let Some(spec) = pod.spec.as_mut() {
                spec.topology_spread_constraints = Some(vec![TopologySpreadConstraint {
                    max_skew,
                    topology_key: ZONE.into(),
                    when_unsatisfiable: when.into(),
                    label_selector: Some(LabelSelector {
                        match_labels: Some([("app".to_owned(), "web".to_owned())].into()),
                        match_expressions: None,
                    }),
                    ..TopologySpreadConstraint::default()
                }]);
            }
        })
    }

    fn zone_nodes() -> Vec<NodeInfo> {
        // zone a: 2 web pods, zone b: 0, node c has no zone label
        let mut a = label(node("a", "4", "8Gi"), ZONE, "a");
        for i in 0..2 {
            a.add_pod(Arc::new(pod_label(
                pod(&format!("w{i}"), "0", "0"),
                "app",
                "web",
            )));
        }
        let b = label(node("b", "4", "8Gi"), ZONE, "b");
        let c = node("c", "4", "8Gi");
        vec![a, b, c]
    }

    #[test]
    fn memoized_counts_follow_snapshot_changes() {
        use crate::scheduler::cache::Cache;
        let mut cache = Cache::new();
        for n in zone_nodes() {
            cache.add_or_update_node(n.node.clone());
            for p in &n.pods {
                cache.add_or_update_pod(p.clone(), &n.name);
            }
        }
        let mut snapshot = Snapshot::new();
        cache.update_snapshot(&mut snapshot);
        let plugin = PodTopologySpread::default();
        let p = spread(pod("p", "0", "0"), "DoNotSchedule", 1);
        let mut state = CycleState::default();
        let _ = plugin.pre_filter(&mut state, &p, &snapshot);
        // two more web pods in zone b: now a=2, b=2, both fit
        for i in 0..2 {
            let web = pod_label(pod(&format!("b{i}"), "0", "0"), "app", "web");
            cache.add_or_update_pod(Arc::new(web), "b");
        }
        cache.update_snapshot(&mut snapshot);
        let mut state = CycleState::default();
        let _ = plugin.pre_filter(&mut state, &p, &snapshot);
        let nodes: Vec<Arc<NodeInfo>> = snapshot.nodes().to_vec();
        for n in nodes.iter().filter(|n| n.name != "c") {
            assert!(plugin.filter(&state, &p, n).is_success(), "{}", n.name);
        }
        let st = state.read::<FilterState>(NAME).map(|s| s.counts[0].clone());
        assert_eq!(
            st.map(|c| c.into_iter().collect::<std::collections::BTreeMap<_, _>>()),
            Some([("a".to_owned(), 2), ("b".to_owned(), 2)].into())
        );
    }

    #[test]
    fn hard_constraints_filter_by_skew_and_missing_labels() {
        let nodes = zone_nodes();
        let snapshot = Snapshot::from_nodes(nodes.clone());
        let p = spread(pod("p", "0", "0"), "DoNotSchedule", 1);
        let mut state = CycleState::default();
        assert_eq!(
            PodTopologySpread::default().pre_filter(&mut state, &p, &snapshot),
            Ok(None)
        );
        // zone a: 2 + 1 - 0 = 3 > 1; zone b: 0 + 1 - 0 = 1
        assert_eq!(
            PodTopologySpread::default().filter(&state, &p, &nodes[0]),
            Status::unschedulable(REASON_SKEW)
        );
        assert!(
            PodTopologySpread::default()
                .filter(&state, &p, &nodes[1])
                .is_success()
        );
        assert_eq!(
            PodTopologySpread::default().filter(&state, &p, &nodes[2]),
            Status::unresolvable(REASON_MISSING_LABEL)
        );
    }

    #[test]
    fn soft_constraints_score_emptier_domains_higher() {
        let nodes = zone_nodes();
        let snapshot = Snapshot::from_nodes(nodes.clone());
        let p = spread(pod("p", "0", "0"), "ScheduleAnyway", 1);
        let feasible: Vec<Arc<NodeInfo>> = nodes[..2].iter().cloned().map(Arc::new).collect();
        let mut state = CycleState::default();
        assert!(
            PodTopologySpread::default()
                .pre_score(&mut state, &p, &feasible, &snapshot)
                .is_success()
        );
        // weight ln(2 + 2) = 1.386; a: 2 * 1.386 + 0 = 2.77 -> 3; b: 0
        let raw: Vec<i64> = feasible
            .iter()
            .map(|n| {
                PodTopologySpread::default()
                    .score(&state, &p, n)
                    .unwrap_or(-1)
            })
            .collect();
        assert_eq!(raw, [3, 0]);
        let mut scores: Vec<NodeScore> = raw
            .iter()
            .enumerate()
            .map(|(index, &score)| NodeScore { index, score })
            .collect();
        PodTopologySpread::default().normalize(&state, &p, &mut scores);
        // 100 * (3 + 0 - s) / 3
        assert_eq!(scores.iter().map(|s| s.score).collect::<Vec<_>>(), [0, 100]);
    }
}
