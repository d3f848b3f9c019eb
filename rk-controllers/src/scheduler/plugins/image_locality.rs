//! ImageLocality: prefers nodes that already have the pod's images, weighted
//! by image size and by how widely the image is spread (an image on every
//! node says little): per container, `size * nodes_with_image / all_nodes`,
//! summed, clamped to `[23 MB, 1000 MB * containers]` and scaled to 0..100.

use std::sync::Arc;

use crate::scheduler::cache::Snapshot;
use crate::scheduler::framework::{
    CycleState, MAX_NODE_SCORE, Plugin, PreScorePlugin, ScorePlugin, Status,
};
use crate::scheduler::types::{NodeInfo, PodInfo, normalize_image_name};

/// The plugin's name.
pub const NAME: &str = "ImageLocality";

const MB: i64 = 1024 * 1024;
const MIN_THRESHOLD: i64 = 23 * MB;
const MAX_CONTAINER_THRESHOLD: i64 = 1000 * MB;

/// Upstream's `ImageLocality` Score plugin.
#[derive(Debug, Default)]
pub struct ImageLocality;

struct PreScoreState {
    /// (normalized image, nodes having it) per container image.
    images: Vec<(String, usize)>,
    total_nodes: usize,
}

impl Plugin for ImageLocality {
    fn name(&self) -> &'static str {
        NAME
    }
    fn as_pre_score(&self) -> Option<&dyn PreScorePlugin> {
        Some(self)
    }
    fn as_score(&self) -> Option<&dyn ScorePlugin> {
        Some(self)
    }
}

impl PreScorePlugin for ImageLocality {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _nodes: &[Arc<NodeInfo>],
        snapshot: &Snapshot,
    ) -> Status {
        let Some(spec) = pod.pod.spec.as_ref() else {
            return Status::new(crate::scheduler::framework::Code::Skip, "");
        };
        let counts = snapshot.image_nodes();
        let images: Vec<(String, usize)> = spec
            .init_containers
            .iter()
            .flatten()
            .chain(spec.containers.iter())
            .filter_map(|c| c.image.as_deref())
            .map(|image| {
                let name = normalize_image_name(image);
                let n = counts.get(&name).copied().unwrap_or(0);
                (name, n)
            })
            .collect();
        if images.iter().all(|(_, n)| *n == 0) {
            // No node has any of the images: every node scores 0.
            return Status::new(crate::scheduler::framework::Code::Skip, "");
        }
        state.write(
            NAME,
            PreScoreState {
                images,
                total_nodes: snapshot.nodes().len().max(1),
            },
        );
        Status::success()
    }
}

impl ScorePlugin for ImageLocality {
    fn score(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        let Some(s) = state.read::<PreScoreState>(NAME) else {
            return Ok(0);
        };
        let mut sum = 0i64;
        for (image, with) in &s.images {
            if let Some(size) = node.images.get(image) {
                let spread = *with as f64 / s.total_nodes as f64;
                sum += (*size as f64 * spread) as i64;
            }
        }
        let containers = s.images.len().max(1) as i64;
        let max = MAX_CONTAINER_THRESHOLD * containers;
        let clamped = sum.clamp(MIN_THRESHOLD, max);
        Ok(MAX_NODE_SCORE * (clamped - MIN_THRESHOLD) / (max - MIN_THRESHOLD))
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{ContainerImage, NodeStatus};

    use super::*;
    use crate::scheduler::plugins::testing::{node, pod};

    fn with_image(mut n: NodeInfo, image: &str, size: i64) -> NodeInfo {
        let mut node = (*n.node).clone();
        let status = node.status.get_or_insert_with(NodeStatus::default);
        status
            .images
            .get_or_insert_with(Vec::new)
            .push(ContainerImage {
                names: Some(vec![image.into()]),
                size_bytes: Some(size),
            });
        n.set_node(Arc::new(node));
        n
    }

    #[test]
    fn a_large_image_present_on_half_the_nodes_scores_by_spread_size() {
        // pod image "registry.k8s.io/pause:3.10" (testing::pod uses it)
        let a = with_image(
            node("a", "1", "1Gi"),
            "registry.k8s.io/pause:3.10",
            500 * MB,
        );
        let b = node("b", "1", "1Gi");
        let snapshot = Snapshot::from_nodes(vec![a.clone(), b.clone()]);
        let p = pod("p", "0", "0");
        let mut state = CycleState::default();
        assert!(
            ImageLocality
                .pre_score(&mut state, &p, snapshot.nodes(), &snapshot)
                .is_success()
        );
        // 500MB * 1/2 = 250MB; (250-23)*100/(1000-23) = 23
        assert_eq!(ImageLocality.score(&state, &p, &a), Ok(23));
        assert_eq!(ImageLocality.score(&state, &p, &b), Ok(0));
    }
}
