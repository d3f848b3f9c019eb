//! NodeAffinity: `spec.nodeSelector` and required node affinity filter
//! (PreFilter narrows the cycle to the named nodes when a required term
//! selects `metadata.name`); preferred terms score by summed weight,
//! normalized to 0..100.

use std::collections::HashSet;

use rk_core::predicates::{pod_matches_node_selector_and_affinity, preferred_node_affinity_score};

use super::default_normalize;
use crate::scheduler::cache::Snapshot;
use crate::scheduler::framework::{
    CycleState, FilterPlugin, NodeScore, Plugin, PreFilterPlugin, ScorePlugin, Status,
};
use crate::scheduler::types::{NodeInfo, PodInfo};

/// The plugin's name.
pub const NAME: &str = "NodeAffinity";
/// Upstream's reason.
pub const REASON: &str = "node(s) didn't match Pod's node affinity/selector";

/// Upstream's `NodeAffinity` plugin.
#[derive(Debug, Default)]
pub struct NodeAffinity;

impl Plugin for NodeAffinity {
    fn name(&self) -> &'static str {
        NAME
    }
    fn as_pre_filter(&self) -> Option<&dyn PreFilterPlugin> {
        Some(self)
    }
    fn as_filter(&self) -> Option<&dyn FilterPlugin> {
        Some(self)
    }
    fn as_score(&self) -> Option<&dyn ScorePlugin> {
        Some(self)
    }
}

fn required_terms(pod: &PodInfo) -> Option<&[k8s_openapi::api::core::v1::NodeSelectorTerm]> {
    pod.pod
        .spec
        .as_ref()?
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()
        .map(|r| r.node_selector_terms.as_slice())
}

fn has_preferred(pod: &PodInfo) -> bool {
    pod.pod
        .spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .is_some_and(|p| !p.is_empty())
}

impl PreFilterPlugin for NodeAffinity {
    fn pre_filter(
        &self,
        _state: &mut CycleState,
        pod: &PodInfo,
        _snapshot: &Snapshot,
    ) -> Result<Option<HashSet<String>>, Status> {
        let selector_empty = pod
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.node_selector.as_ref())
            .is_none_or(|s| s.is_empty());
        let Some(terms) = required_terms(pod) else {
            if selector_empty {
                return Err(Status::new(crate::scheduler::framework::Code::Skip, ""));
            }
            return Ok(None);
        };
        // When every term names nodes by `metadata.name In [...]`, only those
        // nodes can match (upstream's PreFilterResult).
        let mut names = HashSet::new();
        for term in terms {
            let fields = term.match_fields.as_deref().unwrap_or_default();
            let by_name = fields
                .iter()
                .find(|f| f.key == "metadata.name" && f.operator == "In");
            match by_name {
                Some(f) => names.extend(f.values.iter().flatten().cloned()),
                None => return Ok(None),
            }
        }
        if names.is_empty() {
            return Ok(None);
        }
        Ok(Some(names))
    }
}

impl FilterPlugin for NodeAffinity {
    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        if pod_matches_node_selector_and_affinity(&pod.pod, &node.node) {
            Status::success()
        } else {
            Status::unresolvable(REASON)
        }
    }
}

impl ScorePlugin for NodeAffinity {
    fn score(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        if !has_preferred(pod) {
            return Ok(0);
        }
        Ok(preferred_node_affinity_score(&pod.pod, &node.node))
    }

    fn normalize(&self, _state: &CycleState, _pod: &PodInfo, scores: &mut [NodeScore]) {
        default_normalize(scores, false);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use k8s_openapi::api::core::v1::{
        Affinity, NodeSelectorRequirement, NodeSelectorTerm, PreferredSchedulingTerm,
    };

    use super::*;
    use crate::scheduler::plugins::testing::{label, node, pod};

    fn term(key: &str, value: &str) -> NodeSelectorTerm {
        NodeSelectorTerm {
            match_expressions: Some(vec![NodeSelectorRequirement {
                key: key.into(),
                operator: "In".into(),
                values: Some(vec![value.into()]),
            }]),
            match_fields: None,
        }
    }

    #[test]
    fn node_selector_filters_and_preferred_terms_score() {
        let ssd = label(node("a", "1", "1Gi"), "disk", "ssd");
        let hdd = label(node("b", "1", "1Gi"), "disk", "hdd");
        let mut p = pod("p", "0", "0");
        if let Some(spec) = Arc::make_mut(&mut p.pod).spec.as_mut() {
            spec.node_selector = Some([("disk".to_owned(), "ssd".to_owned())].into());
        }
        let state = CycleState::default();
        assert!(NodeAffinity.filter(&state, &p, &ssd).is_success());
        assert_eq!(
            NodeAffinity.filter(&state, &p, &hdd),
            Status::unresolvable(REASON)
        );

        let mut q = pod("q", "0", "0");
        if let Some(spec) = Arc::make_mut(&mut q.pod).spec.as_mut() {
            spec.affinity = Some(Affinity {
                node_affinity: Some(k8s_openapi::api::core::v1::NodeAffinity {
                    preferred_during_scheduling_ignored_during_execution: Some(vec![
                        PreferredSchedulingTerm {
                            weight: 30,
                            preference: term("disk", "ssd"),
                        },
                        PreferredSchedulingTerm {
                            weight: 10,
                            preference: term("disk", "hdd"),
                        },
                    ]),
                    ..Default::default()
                }),
                ..Affinity::default()
            });
        }
        let mut scores = vec![
            NodeScore {
                index: 0,
                score: NodeAffinity.score(&state, &q, &ssd).unwrap_or(-1),
            },
            NodeScore {
                index: 1,
                score: NodeAffinity.score(&state, &q, &hdd).unwrap_or(-1),
            },
        ];
        assert_eq!((scores[0].score, scores[1].score), (30, 10));
        NodeAffinity.normalize(&state, &q, &mut scores);
        // 100 * 10 / 30 = 33
        assert_eq!((scores[0].score, scores[1].score), (100, 33));
    }
}
