//! One scheduling decision over a snapshot: PreFilter, Filter over (a
//! rotating window of) the nodes until enough feasible ones are found, then
//! PreScore/Score/NormalizeScore and the pick of the best node.
//!
//! Pure computation: no I/O, no locks; the scheduler runs it on a snapshot.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::cache::Snapshot;
use super::framework::{Code, CycleState, Framework, NodeStatuses, Status};
use super::types::{NodeInfo, PodInfo};

/// Fewest nodes to find feasible before stopping (upstream `minFeasibleNodesToFind`).
pub const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
/// Smallest adaptive percentage (upstream `minFeasibleNodesPercentageToFind`).
pub const MIN_FEASIBLE_NODES_PERCENTAGE: i64 = 5;

/// How many feasible nodes to look for among `all` nodes: every node below
/// 100 nodes; otherwise `percentage` of them (adaptive when 0 or less:
/// `50 - all/125`, at least 5%), and never fewer than 100.
pub fn num_feasible_nodes_to_find(percentage: i32, all: usize) -> usize {
    if all < MIN_FEASIBLE_NODES_TO_FIND || percentage >= 100 {
        return all;
    }
    let mut pct = i64::from(percentage);
    if pct <= 0 {
        pct = (50 - all as i64 / 125).max(MIN_FEASIBLE_NODES_PERCENTAGE);
    }
    let n = (all as i64 * pct / 100) as usize;
    n.max(MIN_FEASIBLE_NODES_TO_FIND)
}

/// Why no node fits, per node, with upstream's message.
#[derive(Debug, Clone, Default)]
pub struct FitError {
    /// Nodes in the snapshot.
    pub num_all_nodes: usize,
    /// The rejection per node.
    pub statuses: NodeStatuses,
    /// What PostFilter (preemption) said, if it ran and failed.
    pub post_filter_message: String,
}

impl FitError {
    /// Upstream's FailedScheduling message: `0/3 nodes are available: 1
    /// Insufficient cpu, 2 node(s) had untolerated taint {k: v}.` followed by
    /// the PostFilter message (`preemption: ...`) when there is one.
    pub fn message(&self) -> String {
        if self.num_all_nodes == 0 {
            return "no nodes available to schedule pods".into();
        }
        let mut histogram: BTreeMap<&str, usize> = BTreeMap::new();
        for status in self.statuses.values() {
            for reason in &status.reasons {
                *histogram.entry(reason.as_str()).or_insert(0) += 1;
            }
        }
        let mut reasons: Vec<String> = histogram
            .into_iter()
            .map(|(reason, count)| format!("{count} {reason}"))
            .collect();
        reasons.sort();
        let mut msg = format!("0/{} nodes are available:", self.num_all_nodes);
        if !reasons.is_empty() {
            msg.push(' ');
            msg.push_str(&reasons.join(", "));
            msg.push('.');
        }
        if !self.post_filter_message.is_empty() {
            msg.push(' ');
            msg.push_str(&self.post_filter_message);
        }
        msg
    }

    /// The plugins that rejected at least one node.
    pub fn rejecting_plugins(&self) -> std::collections::HashSet<&'static str> {
        self.statuses
            .values()
            .map(|s| s.plugin)
            .filter(|p| !p.is_empty())
            .collect()
    }
}

/// Why a cycle did not produce a node.
#[derive(Debug, Clone)]
pub enum ScheduleError {
    /// No node fits.
    Fit(FitError),
    /// A plugin failed.
    Error(Status),
}

/// The chosen node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleResult {
    /// The node's name.
    pub node: String,
    /// Nodes run through Filter.
    pub evaluated: usize,
    /// Nodes that passed.
    pub feasible: usize,
}

/// The per-scheduler state of the algorithm: where the next node search
/// starts (upstream rotates it so all nodes get their turn) and a cheap
/// random source for breaking score ties.
#[derive(Debug, Clone)]
pub struct Algorithm {
    next_start: usize,
    rng: u64,
    /// The global `percentageOfNodesToScore` (0: adaptive).
    pub percentage_of_nodes_to_score: i32,
}

impl Algorithm {
    /// A new algorithm state.
    pub fn new(percentage_of_nodes_to_score: i32) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9E37_79B9_7F4A_7C15);
        Self {
            next_start: 0,
            rng: seed | 1,
            percentage_of_nodes_to_score,
        }
    }

    fn random(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Finds the node for `pod`.
    pub fn schedule(
        &mut self,
        fw: &Framework,
        state: &mut CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
    ) -> Result<ScheduleResult, ScheduleError> {
        let all = snapshot.nodes();
        if all.is_empty() {
            return Err(ScheduleError::Fit(FitError::default()));
        }
        if let Some(e) = &pod.parse_error {
            return Err(ScheduleError::Error(Status::error(format!(
                "the pod's spec cannot be evaluated: {e}"
            ))));
        }
        let restrict = match fw.run_pre_filter(state, pod, snapshot) {
            Ok(r) => r,
            Err(s) if s.is_rejected() => {
                let statuses = all.iter().map(|n| (n.name.clone(), s.clone())).collect();
                return Err(ScheduleError::Fit(FitError {
                    num_all_nodes: all.len(),
                    statuses,
                    post_filter_message: String::new(),
                }));
            }
            Err(s) => return Err(ScheduleError::Error(s)),
        };

        // A nominated node (from an earlier preemption) is tried first.
        if let Some(nominated) = pod
            .pod
            .status
            .as_ref()
            .and_then(|s| s.nominated_node_name.as_deref())
            .and_then(|n| snapshot.get(n))
            && restrict
                .as_ref()
                .is_none_or(|r| r.contains(&nominated.name))
            && fw.run_filter(state, pod, nominated).is_success()
        {
            return Ok(ScheduleResult {
                node: nominated.name.clone(),
                evaluated: 1,
                feasible: 1,
            });
        }

        let mut statuses = NodeStatuses::new();
        let mut feasible: Vec<Arc<NodeInfo>> = Vec::new();
        let evaluated;
        match &restrict {
            Some(names) => {
                for name in names {
                    let Some(node) = snapshot.get(name) else {
                        continue;
                    };
                    let s = fw.run_filter(state, pod, node);
                    if s.is_success() {
                        feasible.push(node.clone());
                    } else {
                        statuses.insert(node.name.clone(), s);
                    }
                }
                evaluated = names.len();
                // Nodes outside the PreFilter result are unresolvable for this pod.
                for n in all {
                    if !names.contains(&n.name) {
                        statuses.insert(
                            n.name.clone(),
                            Status::unresolvable("node(s) didn't satisfy plugin(s) [NodeAffinity]"),
                        );
                    }
                }
            }
            None => {
                let pct = fw
                    .percentage_of_nodes_to_score
                    .unwrap_or(self.percentage_of_nodes_to_score);
                let want = num_feasible_nodes_to_find(pct, all.len());
                let n = all.len();
                let start = self.next_start % n;
                let mut processed = 0;
                for i in 0..n {
                    let node = &all[(start + i) % n];
                    processed += 1;
                    let s = fw.run_filter(state, pod, node);
                    if s.is_success() {
                        feasible.push(node.clone());
                        if feasible.len() >= want {
                            break;
                        }
                    } else {
                        statuses.insert(node.name.clone(), s);
                    }
                }
                self.next_start = (start + processed) % n;
                evaluated = processed;
            }
        }

        if feasible.is_empty() {
            return Err(ScheduleError::Fit(FitError {
                num_all_nodes: all.len(),
                statuses,
                post_filter_message: String::new(),
            }));
        }
        if feasible.len() == 1 || !fw.has_score_plugins() {
            return Ok(ScheduleResult {
                node: feasible[0].name.clone(),
                evaluated,
                feasible: feasible.len(),
            });
        }
        let totals = fw
            .run_score(state, pod, &feasible, snapshot)
            .map_err(ScheduleError::Error)?;
        let mut best = 0;
        let mut ties = 0u64;
        for (i, &score) in totals.iter().enumerate() {
            if score > totals[best] {
                best = i;
                ties = 1;
            } else if score == totals[best] {
                ties += 1;
                if self.random().is_multiple_of(ties) {
                    best = i;
                }
            }
        }
        Ok(ScheduleResult {
            node: feasible[best].name.clone(),
            evaluated,
            feasible: feasible.len(),
        })
    }
}

/// Whether a status is one preemption cannot fix.
pub fn unresolvable(s: &Status) -> bool {
    s.code == Code::UnschedulableAndUnresolvable
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adaptive_percentage_matches_upstream() {
        assert_eq!(num_feasible_nodes_to_find(0, 50), 50);
        assert_eq!(num_feasible_nodes_to_find(0, 1000), 420); // 50 - 8 = 42%
        assert_eq!(num_feasible_nodes_to_find(0, 5000), 500); // 50 - 40 = 10%
        assert_eq!(num_feasible_nodes_to_find(0, 6000), 300); // 50 - 48 = 2% -> 5%
        assert_eq!(num_feasible_nodes_to_find(0, 150), 100); // 48% = 72 -> 100
        assert_eq!(num_feasible_nodes_to_find(30, 1000), 300);
        assert_eq!(num_feasible_nodes_to_find(100, 1000), 1000);
    }

    #[test]
    fn fit_error_message_has_upstream_form() {
        let mut statuses = NodeStatuses::new();
        statuses.insert("a".into(), Status::unschedulable("Insufficient cpu"));
        statuses.insert(
            "b".into(),
            Status::unresolvable("node(s) had untolerated taint {k: v}"),
        );
        statuses.insert(
            "c".into(),
            Status::unresolvable("node(s) had untolerated taint {k: v}"),
        );
        let e = FitError {
            num_all_nodes: 3,
            statuses,
            post_filter_message:
                "preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
                    .into(),
        };
        assert_eq!(
            e.message(),
            "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint {k: v}. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
        );
    }
}
