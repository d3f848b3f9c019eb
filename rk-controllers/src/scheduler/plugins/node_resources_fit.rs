//! NodeResourcesFit: the node must have room for the pod's requests
//! (Filter, upstream's reasons `Insufficient cpu`, `Too many pods`, ...),
//! and nodes are scored by a strategy over the configured resources
//! (default cpu and memory, weight 1 each):
//!
//! - `LeastAllocated` (default): `(capacity - requested) * 100 / capacity`;
//! - `MostAllocated`: `requested * 100 / capacity`;
//! - `RequestedToCapacityRatio`: a piecewise-linear function of the
//!   utilization, given as `shape` points (utilization 0..100, score 0..10).
//!
//! "Requested" includes the incoming pod, with the non-zero defaults for
//! containers without cpu/memory requests (100m, 200Mi).

use rk_core::predicates::fits;
use rk_core::predicates::resources::{CPU, EPHEMERAL_STORAGE, MEMORY, Resources};
use serde::Deserialize;

use crate::scheduler::framework::{
    CycleState, FilterPlugin, MAX_NODE_SCORE, Plugin, ScorePlugin, Status,
};
use crate::scheduler::types::{NodeInfo, PodInfo};

/// The plugin's name.
pub const NAME: &str = "NodeResourcesFit";

/// A resource and its weight in the score.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ResourceSpec {
    /// The resource name.
    pub name: String,
    /// Its weight (default 1).
    #[serde(default = "one")]
    pub weight: i64,
}

fn one() -> i64 {
    1
}

/// A point of the RequestedToCapacityRatio shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct ShapePoint {
    /// Utilization, 0..100.
    pub utilization: i64,
    /// Score, 0..10.
    pub score: i64,
}

/// The scoring strategy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Strategy {
    /// Prefer the emptiest node.
    LeastAllocated,
    /// Prefer the fullest node (bin packing).
    MostAllocated,
    /// A custom utilization-to-score function.
    RequestedToCapacityRatio(Vec<ShapePoint>),
}

/// `NodeResourcesFitArgs` (the parts rk uses).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Args {
    /// The scoring strategy.
    #[serde(default)]
    pub scoring_strategy: Option<ScoringStrategyArgs>,
}

/// `scoringStrategy` of `NodeResourcesFitArgs`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScoringStrategyArgs {
    /// `LeastAllocated`, `MostAllocated` or `RequestedToCapacityRatio`.
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    /// Resources and weights.
    #[serde(default)]
    pub resources: Option<Vec<ResourceSpec>>,
    /// The shape for `RequestedToCapacityRatio`.
    #[serde(default)]
    pub requested_to_capacity_ratio: Option<ShapeArgs>,
}

/// `requestedToCapacityRatio` of the scoring strategy.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ShapeArgs {
    /// The shape points.
    #[serde(default)]
    pub shape: Vec<ShapePoint>,
}

/// Upstream's `NodeResourcesFit` plugin.
#[derive(Debug, Clone)]
pub struct NodeResourcesFit {
    strategy: Strategy,
    resources: Vec<(Kind, i64)>,
}

/// A resource name resolved once (scoring runs per node).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// `cpu`.
    Cpu,
    /// `memory`.
    Memory,
    /// `ephemeral-storage`.
    EphemeralStorage,
    /// `pods`.
    Pods,
    /// Anything else (extended resources, hugepages).
    Scalar(String),
}

impl Kind {
    /// Resolves a resource name.
    pub fn of(name: &str) -> Self {
        match name {
            CPU => Self::Cpu,
            MEMORY => Self::Memory,
            EPHEMERAL_STORAGE => Self::EphemeralStorage,
            "pods" => Self::Pods,
            other => Self::Scalar(other.to_owned()),
        }
    }

    /// The amount of this resource in `r`.
    pub fn amount(&self, r: &Resources) -> i64 {
        match self {
            Self::Cpu => r.milli_cpu,
            Self::Memory => r.memory,
            Self::EphemeralStorage => r.ephemeral_storage,
            Self::Pods => r.pods,
            Self::Scalar(name) => r.scalar.get(name).copied().unwrap_or(0),
        }
    }
}

/// Resolves resource specs to kinds and weights.
pub fn resolve(resources: &[ResourceSpec]) -> Vec<(Kind, i64)> {
    resources
        .iter()
        .map(|r| (Kind::of(&r.name), r.weight))
        .collect()
}

/// The default scored resources: cpu and memory, weight 1.
pub fn default_resources() -> Vec<ResourceSpec> {
    vec![
        ResourceSpec {
            name: CPU.into(),
            weight: 1,
        },
        ResourceSpec {
            name: MEMORY.into(),
            weight: 1,
        },
    ]
}

impl Default for NodeResourcesFit {
    fn default() -> Self {
        Self::new(Strategy::LeastAllocated, default_resources())
    }
}

impl NodeResourcesFit {
    /// A plugin with this strategy over these resources.
    pub fn new(strategy: Strategy, resources: Vec<ResourceSpec>) -> Self {
        Self {
            strategy,
            resources: resolve(&resources),
        }
    }

    /// Builds the plugin from its configuration arguments.
    pub fn from_args(args: &Args) -> Result<Self, String> {
        let Some(s) = &args.scoring_strategy else {
            return Ok(Self::default());
        };
        let resources = s.resources.clone().unwrap_or_else(default_resources);
        let strategy = match s.kind.as_deref().unwrap_or("LeastAllocated") {
            "LeastAllocated" => Strategy::LeastAllocated,
            "MostAllocated" => Strategy::MostAllocated,
            "RequestedToCapacityRatio" => {
                let shape = s
                    .requested_to_capacity_ratio
                    .as_ref()
                    .map(|r| r.shape.clone())
                    .unwrap_or_default();
                if shape.is_empty() {
                    return Err("requestedToCapacityRatio.shape must not be empty".into());
                }
                Strategy::RequestedToCapacityRatio(shape)
            }
            other => return Err(format!("unknown scoring strategy type {other:?}")),
        };
        Ok(Self::new(strategy, resources))
    }
}

impl Plugin for NodeResourcesFit {
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

impl FilterPlugin for NodeResourcesFit {
    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        // The fast path: the common resources and the pod count.
        let r = &pod.requests;
        if r.scalar.is_empty()
            && node.requested.pods < node.allocatable.pods
            && r.milli_cpu <= node.allocatable.milli_cpu - node.requested.milli_cpu
            && r.memory <= node.allocatable.memory - node.requested.memory
            && r.ephemeral_storage
                <= node.allocatable.ephemeral_storage - node.requested.ephemeral_storage
        {
            return Status::success();
        }
        let insufficient = fits(r, &node.allocatable, &node.requested);
        if insufficient.is_empty() {
            return Status::success();
        }
        Status {
            code: crate::scheduler::framework::Code::Unschedulable,
            reasons: insufficient.into_iter().map(|i| i.reason).collect(),
            plugin: "",
        }
    }
}

fn shape_score(shape: &[ShapePoint], utilization: i64) -> i64 {
    // Scores are given 0..10 and scaled to 0..100.
    let scaled = |s: i64| s * (MAX_NODE_SCORE / 10);
    let Some(first) = shape.first() else {
        return 0;
    };
    if utilization <= first.utilization {
        return scaled(first.score);
    }
    for w in shape.windows(2) {
        let (a, b) = (w[0], w[1]);
        if utilization <= b.utilization {
            let span = (b.utilization - a.utilization).max(1);
            let (sa, sb) = (scaled(a.score), scaled(b.score));
            return sa + (sb - sa) * (utilization - a.utilization) / span;
        }
    }
    shape.last().map_or(0, |l| scaled(l.score))
}

impl ScorePlugin for NodeResourcesFit {
    fn score(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        let mut total = 0i64;
        let mut weights = 0i64;
        for (kind, weight) in &self.resources {
            let capacity = kind.amount(&node.allocatable);
            let requested = match kind {
                Kind::Cpu | Kind::Memory => {
                    kind.amount(&node.nonzero_requested) + kind.amount(&pod.nonzero_requests)
                }
                other => {
                    let wanted = other.amount(&pod.requests);
                    if wanted == 0 && !matches!(other, Kind::EphemeralStorage) {
                        // Upstream ignores extended resources the pod does not request.
                        continue;
                    }
                    other.amount(&node.requested) + wanted
                }
            };
            let s = match &self.strategy {
                _ if capacity == 0 => 0,
                Strategy::LeastAllocated if requested > capacity => 0,
                Strategy::LeastAllocated => (capacity - requested) * MAX_NODE_SCORE / capacity,
                Strategy::MostAllocated => requested.min(capacity) * MAX_NODE_SCORE / capacity,
                Strategy::RequestedToCapacityRatio(shape) => {
                    shape_score(shape, requested.min(capacity) * MAX_NODE_SCORE / capacity)
                }
            };
            total += s * weight;
            weights += weight;
        }
        if weights == 0 {
            return Ok(0);
        }
        Ok(match self.strategy {
            Strategy::RequestedToCapacityRatio(_) => (total + weights / 2) / weights,
            _ => total / weights,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::scheduler::plugins::testing::{node, pod};

    #[test]
    fn insufficient_resources_are_reported_by_name() {
        let mut n = node("n1", "1", "2Gi");
        n.add_pod(Arc::new(pod("a", "800m", "1Gi")));
        let state = CycleState::default();
        let p = pod("p", "500m", "2Gi");
        let s = NodeResourcesFit::default().filter(&state, &p, &n);
        assert_eq!(s.reasons, ["Insufficient cpu", "Insufficient memory"]);
        assert!(
            NodeResourcesFit::default()
                .filter(&state, &pod("q", "200m", "1Gi"), &n)
                .is_success()
        );
    }

    #[test]
    fn least_most_and_ratio_scores_match_hand_computation() {
        // node: 4 cpu, 8Gi; existing 1 cpu, 2Gi; pod 1 cpu, 2Gi
        let mut n = node("n1", "4", "8Gi");
        n.add_pod(Arc::new(pod("a", "1", "2Gi")));
        let p = pod("p", "1", "2Gi");
        let state = CycleState::default();
        // least: cpu (4000-2000)*100/4000 = 50, mem (8-4)*100/8 = 50 -> 50
        assert_eq!(NodeResourcesFit::default().score(&state, &p, &n), Ok(50));
        let most = NodeResourcesFit::new(Strategy::MostAllocated, default_resources());
        assert_eq!(most.score(&state, &p, &n), Ok(50));
        // ratio with shape (0,0) (100,10): utilization 50 -> 50
        let ratio = NodeResourcesFit::new(
            Strategy::RequestedToCapacityRatio(vec![
                ShapePoint {
                    utilization: 0,
                    score: 0,
                },
                ShapePoint {
                    utilization: 100,
                    score: 10,
                },
            ]),
            default_resources(),
        );
        assert_eq!(ratio.score(&state, &p, &n), Ok(50));
        // uneven: pod 3 cpu -> cpu (4000-4000)=0, mem 50 -> 25
        let big = pod("b", "3", "2Gi");
        assert_eq!(NodeResourcesFit::default().score(&state, &big, &n), Ok(25));
    }
}
