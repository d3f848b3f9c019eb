//! DefaultPreemption (PostFilter): when no node fits, find a node where
//! deleting lower-priority pods makes room, choosing victims so that
//! PodDisruptionBudgets are violated as little as possible.
//!
//! Per candidate node (those rejected as `Unschedulable`, not
//! `UnschedulableAndUnresolvable`): remove every pod of lower priority, check
//! that the pod then fits, and add the removed pods back from the most
//! important down (PDB-protected ones first) while it still fits; those that
//! cannot come back are the victims. The node is then chosen by, in order:
//! fewest PDB violations, lowest highest-victim priority, lowest priority
//! sum, fewest victims, latest start of the highest-priority victims.
//! The scheduler sets the pod's `status.nominatedNodeName` and deletes the
//! victims; the pod is retried when they are gone.

use std::sync::Arc;

use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use rk_core::labels::Selector;

use crate::scheduler::algorithm::{FitError, unresolvable};
use crate::scheduler::cache::Snapshot;
use crate::scheduler::framework::{
    CycleState, Framework, NodeStatuses, PdbLister, Plugin, PostFilterPlugin, PostFilterResult,
    Status,
};
use crate::scheduler::types::{NodeInfo, PodInfo};

/// The plugin's name.
pub const NAME: &str = "DefaultPreemption";
/// Reason for nodes preemption cannot help.
pub const REASON_NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
/// Reason for nodes without lower-priority pods.
pub const REASON_NO_VICTIMS: &str = "No preemption victims found for incoming pod";

/// Fewest candidate nodes to look at (upstream `minCandidateNodesAbsolute`).
const MIN_CANDIDATES: usize = 100;
/// Share of nodes to look at, in percent (upstream `minCandidateNodesPercentage`).
const MIN_CANDIDATES_PERCENT: usize = 10;

/// Upstream's `DefaultPreemption` PostFilter plugin.
#[derive(Default)]
pub struct DefaultPreemption {
    pdbs: PdbLister,
}

impl DefaultPreemption {
    /// A plugin reading PodDisruptionBudgets from `pdbs`.
    pub fn new(pdbs: PdbLister) -> Self {
        Self { pdbs }
    }
}

impl Plugin for DefaultPreemption {
    fn name(&self) -> &'static str {
        NAME
    }
    fn as_post_filter(&self) -> Option<&dyn PostFilterPlugin> {
        Some(self)
    }
}

struct Budget {
    namespace: String,
    selector: Selector,
    allowed: i32,
}

fn budgets(pdbs: &PdbLister) -> Vec<Budget> {
    let map = pdbs.read().unwrap_or_else(|p| p.into_inner());
    map.values()
        .filter_map(|pdb: &Arc<PodDisruptionBudget>| {
            let spec = pdb.spec.as_ref()?;
            let selector = Selector::try_from(spec.selector.as_ref()?).ok()?;
            if selector.is_empty() {
                return None;
            }
            Some(Budget {
                namespace: pdb.metadata.namespace.clone().unwrap_or_default(),
                selector,
                allowed: pdb
                    .status
                    .as_ref()
                    .and_then(|s| s.disruptions_allowed)
                    .unwrap_or(0),
            })
        })
        .collect()
}

/// Victims on one node and how many PDB violations they cause.
struct Candidate {
    node: String,
    victims: Vec<Arc<PodInfo>>,
    pdb_violations: usize,
}

fn start_time(p: &PodInfo) -> Option<jiff::Timestamp> {
    p.pod
        .status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .map(|t| t.0)
        .or_else(|| p.pod.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// More important first: higher priority, then earlier start.
fn more_important(a: &PodInfo, b: &PodInfo) -> std::cmp::Ordering {
    b.priority
        .cmp(&a.priority)
        .then_with(|| start_time(a).cmp(&start_time(b)))
}

fn violates(budgets: &mut [i32], all: &[Budget], pod: &PodInfo) -> bool {
    let mut violated = false;
    let labels = pod.pod.metadata.labels.clone().unwrap_or_default();
    for (i, b) in all.iter().enumerate() {
        if b.namespace == pod.namespace() && b.selector.matches(&labels) {
            budgets[i] -= 1;
            if budgets[i] < 0 {
                violated = true;
            }
        }
    }
    violated
}

fn select_victims(
    fw: &Framework,
    state: &CycleState,
    pod: &PodInfo,
    node: &NodeInfo,
    all_budgets: &[Budget],
) -> Result<Candidate, Status> {
    let mut info = node.clone();
    let mut state = state.clone();
    let mut potential: Vec<Arc<PodInfo>> = node
        .pods
        .iter()
        .filter(|p| p.priority < pod.priority)
        .cloned()
        .collect();
    if potential.is_empty() {
        return Err(Status::unresolvable(REASON_NO_VICTIMS));
    }
    for p in &potential {
        info.remove_pod(&p.key);
        fw.run_pre_filter_remove_pod(&mut state, pod, p, &info);
    }
    let fits = fw.run_filter(&state, pod, &info);
    if !fits.is_success() {
        return Err(fits);
    }
    potential.sort_by(|a, b| more_important(a, b));
    let mut remaining: Vec<i32> = all_budgets.iter().map(|b| b.allowed).collect();
    let (protected, unprotected): (Vec<_>, Vec<_>) = potential
        .into_iter()
        .partition(|p| violates(&mut remaining.clone(), all_budgets, p));
    let mut victims = Vec::new();
    let mut pdb_violations = 0;
    let mut reprieve =
        |p: Arc<PodInfo>, protected: bool, info: &mut NodeInfo, state: &mut CycleState| {
            info.add_pod(p.clone());
            fw.run_pre_filter_add_pod(state, pod, &p, info);
            if fw.run_filter(state, pod, info).is_success() {
                return;
            }
            info.remove_pod(&p.key);
            fw.run_pre_filter_remove_pod(state, pod, &p, info);
            if protected && violates(&mut remaining, all_budgets, &p) {
                pdb_violations += 1;
            }
            victims.push(p);
        };
    for p in protected {
        reprieve(p, true, &mut info, &mut state);
    }
    for p in unprotected {
        reprieve(p, false, &mut info, &mut state);
    }
    Ok(Candidate {
        node: node.name.clone(),
        victims,
        pdb_violations,
    })
}

/// Upstream's `pickOneNodeForPreemption` order.
fn best(candidates: &[Candidate]) -> Option<&Candidate> {
    let key = |c: &Candidate| {
        let highest = c
            .victims
            .iter()
            .map(|v| v.priority)
            .max()
            .unwrap_or(i32::MIN);
        let sum: i64 = c
            .victims
            .iter()
            .map(|v| i64::from(v.priority) + i64::from(i32::MAX) + 1)
            .sum();
        let latest_start_of_highest = c
            .victims
            .iter()
            .filter(|v| v.priority == highest)
            .filter_map(|v| start_time(v))
            .min();
        (
            c.pdb_violations,
            highest,
            sum,
            c.victims.len(),
            std::cmp::Reverse(latest_start_of_highest),
        )
    };
    candidates.iter().min_by_key(|c| key(c))
}

impl PostFilterPlugin for DefaultPreemption {
    fn post_filter(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
        statuses: &NodeStatuses,
        framework: &Framework,
    ) -> (PostFilterResult, Status) {
        let policy = pod
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.preemption_policy.as_deref());
        if policy == Some("Never") {
            return (
                PostFilterResult::default(),
                Status::unschedulable("preemption: not eligible due to preemptionPolicy=Never."),
            );
        }
        let all_budgets = budgets(&self.pdbs);
        let mut dry_run = NodeStatuses::new();
        let mut candidates = Vec::new();
        let n = snapshot.nodes().len();
        let wanted = (n * MIN_CANDIDATES_PERCENT / 100).max(MIN_CANDIDATES);
        for node in snapshot.nodes() {
            let status = statuses.get(&node.name);
            if status.is_none_or(unresolvable) {
                dry_run.insert(node.name.clone(), Status::unresolvable(REASON_NOT_HELPFUL));
                continue;
            }
            if candidates.len() >= wanted {
                continue;
            }
            match select_victims(framework, state, pod, node, &all_budgets) {
                Ok(c) => candidates.push(c),
                Err(s) => {
                    dry_run.insert(node.name.clone(), s);
                }
            }
        }
        match best(&candidates) {
            Some(c) => (
                PostFilterResult {
                    nominated_node: Some(c.node.clone()),
                    victims: c.victims.clone(),
                    clear_nominations: Vec::new(),
                },
                Status::success(),
            ),
            None => {
                let fit = FitError {
                    num_all_nodes: n,
                    statuses: dry_run,
                    post_filter_message: String::new(),
                };
                (
                    PostFilterResult::default(),
                    Status::unschedulable(format!("preemption: {}", fit.message())),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::plugins::node_resources_fit::NodeResourcesFit;
    use crate::scheduler::plugins::testing::{node, pod, priority};

    fn framework() -> Framework {
        Framework::new("default-scheduler").with_plugin(Arc::new(NodeResourcesFit::default()), 1)
    }

    #[test]
    fn the_node_with_the_least_important_victims_is_chosen() {
        // n1: a priority-5 pod using 900m; n2: a priority-1 pod using 900m
        let mut n1 = node("n1", "1", "8Gi");
        n1.add_pod(Arc::new(priority(pod("mid", "900m", "0"), 5)));
        let mut n2 = node("n2", "1", "8Gi");
        n2.add_pod(Arc::new(priority(pod("low", "900m", "0"), 1)));
        let snapshot = Snapshot::from_nodes(vec![n1, n2]);
        let incoming = priority(pod("vip", "500m", "0"), 100);
        let fw = framework();
        let mut statuses = NodeStatuses::new();
        for n in ["n1", "n2"] {
            statuses.insert(n.into(), Status::unschedulable("Insufficient cpu"));
        }
        let plugin = DefaultPreemption::default();
        let (result, status) =
            plugin.post_filter(&CycleState::default(), &incoming, &snapshot, &statuses, &fw);
        assert!(status.is_success(), "{status:?}");
        assert_eq!(result.nominated_node.as_deref(), Some("n2"));
        assert_eq!(
            result
                .victims
                .iter()
                .map(|v| v.key.as_str())
                .collect::<Vec<_>>(),
            ["ns/low"]
        );
    }

    #[test]
    fn victims_are_reprieved_when_the_pod_fits_without_removing_them() {
        let mut n = node("n1", "2", "8Gi");
        n.add_pod(Arc::new(priority(pod("a", "1", "0"), 1)));
        n.add_pod(Arc::new(priority(pod("b", "800m", "0"), 2)));
        let snapshot = Snapshot::from_nodes(vec![n]);
        let incoming = priority(pod("vip", "500m", "0"), 100);
        let mut statuses = NodeStatuses::new();
        statuses.insert("n1".into(), Status::unschedulable("Insufficient cpu"));
        let (result, _) = DefaultPreemption::default().post_filter(
            &CycleState::default(),
            &incoming,
            &snapshot,
            &statuses,
            &framework(),
        );
        // b (more important) comes back first; then a cannot: a is the victim
        assert_eq!(
            result
                .victims
                .iter()
                .map(|v| v.key.as_str())
                .collect::<Vec<_>>(),
            ["ns/a"]
        );
    }

    #[test]
    fn no_candidates_gives_upstreams_message() {
        let snapshot = Snapshot::from_nodes(vec![node("n1", "1", "8Gi"), node("n2", "1", "8Gi")]);
        let mut statuses = NodeStatuses::new();
        statuses.insert("n1".into(), Status::unschedulable("Insufficient cpu"));
        statuses.insert(
            "n2".into(),
            Status::unresolvable("node(s) had untolerated taint {k: v}"),
        );
        let (_, status) = DefaultPreemption::default().post_filter(
            &CycleState::default(),
            &priority(pod("p", "2", "0"), 10),
            &snapshot,
            &statuses,
            &framework(),
        );
        assert_eq!(
            status.message(),
            "preemption: 0/2 nodes are available: 1 No preemption victims found for incoming pod, 1 Preemption is not helpful for scheduling."
        );
    }
}
