//! NodeResourcesBalancedAllocation: prefers nodes whose cpu and memory would
//! be used in equal proportion after placing the pod:
//! `score = (1 - stddev(requested_r / allocatable_r)) * 100`, over the
//! resources with allocatable capacity, fractions capped at 1, counting
//! actual requests (no non-zero defaults).

use super::node_resources_fit::{Kind, ResourceSpec, default_resources, resolve};
use crate::scheduler::framework::{CycleState, MAX_NODE_SCORE, Plugin, ScorePlugin, Status};
use crate::scheduler::types::{NodeInfo, PodInfo};

/// The plugin's name.
pub const NAME: &str = "NodeResourcesBalancedAllocation";

/// Upstream's `NodeResourcesBalancedAllocation` Score plugin.
#[derive(Debug, Clone)]
pub struct BalancedAllocation {
    resources: Vec<(Kind, i64)>,
}

impl Default for BalancedAllocation {
    fn default() -> Self {
        Self::new(default_resources())
    }
}

impl BalancedAllocation {
    /// A plugin balancing these resources.
    pub fn new(resources: Vec<ResourceSpec>) -> Self {
        Self {
            resources: resolve(&resources),
        }
    }
}

impl Plugin for BalancedAllocation {
    fn name(&self) -> &'static str {
        NAME
    }
    fn as_score(&self) -> Option<&dyn ScorePlugin> {
        Some(self)
    }
}

impl ScorePlugin for BalancedAllocation {
    fn score(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        let mut fractions = [0f64; 8];
        let mut n = 0;
        for (kind, _) in self.resources.iter().take(fractions.len()) {
            let capacity = kind.amount(&node.allocatable);
            if capacity == 0 {
                continue;
            }
            let requested = kind.amount(&node.requested) + kind.amount(&pod.requests);
            fractions[n] = (requested as f64 / capacity as f64).min(1.0);
            n += 1;
        }
        let fractions = &fractions[..n];
        let std = match fractions {
            [] | [_] => 0.0,
            [a, b] => (a - b).abs() / 2.0,
            many => {
                let mean = many.iter().sum::<f64>() / many.len() as f64;
                let var =
                    many.iter().map(|f| (f - mean) * (f - mean)).sum::<f64>() / many.len() as f64;
                var.sqrt()
            }
        };
        Ok(((1.0 - std) * MAX_NODE_SCORE as f64) as i64)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::scheduler::plugins::testing::{node, pod};

    #[test]
    fn score_is_one_minus_the_spread_of_the_fractions() {
        // node 4 cpu / 8Gi, existing 1 cpu / 1Gi, pod 1 cpu / 1Gi
        // cpu 2/4 = 0.5, mem 2/8 = 0.25 -> std 0.125 -> 87
        let mut n = node("n1", "4", "8Gi");
        n.add_pod(Arc::new(pod("a", "1", "1Gi")));
        let p = pod("p", "1", "1Gi");
        assert_eq!(
            BalancedAllocation::default().score(&CycleState::default(), &p, &n),
            Ok(87)
        );
        // perfectly balanced: cpu 2/4, mem 4/8
        let q = pod("q", "1", "3Gi");
        assert_eq!(
            BalancedAllocation::default().score(&CycleState::default(), &q, &n),
            Ok(100)
        );
    }
}
