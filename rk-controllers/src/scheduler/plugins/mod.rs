//! The default plugins, upstream's names and behaviour, and the registry
//! that builds them by name for a profile.

pub mod balanced_allocation;
pub mod default_binder;
pub mod default_preemption;
pub mod image_locality;
pub mod inter_pod_affinity;
pub mod node_affinity;
pub mod node_name;
pub mod node_ports;
pub mod node_resources_fit;
pub mod node_unschedulable;
pub mod pod_topology_spread;
pub mod queue_sort;
pub mod scheduling_gates;
pub mod taint_toleration;
#[cfg(test)]
pub(crate) mod testing;

use std::sync::Arc;

use super::framework::{Handle, MAX_NODE_SCORE, NodeScore, Plugin};

/// Upstream's `DefaultNormalizeScore`: scales scores so the highest is 100
/// (all 0 stays 0), then reverses them (`100 - s`) when `reverse`.
pub fn default_normalize(scores: &mut [NodeScore], reverse: bool) {
    let max = scores.iter().map(|s| s.score).max().unwrap_or(0);
    if max == 0 {
        if reverse {
            for s in scores.iter_mut() {
                s.score = MAX_NODE_SCORE;
            }
        }
        return;
    }
    for s in scores.iter_mut() {
        s.score = MAX_NODE_SCORE * s.score / max;
        if reverse {
            s.score = MAX_NODE_SCORE - s.score;
        }
    }
}

/// Builds a plugin from its name and (optional) configuration arguments.
///
/// Returns `Ok(None)` for a name rk does not know.
pub fn build(
    name: &str,
    args: Option<&serde_json::Value>,
    handle: &Handle,
) -> Result<Option<Arc<dyn Plugin>>, String> {
    fn parse<T: serde::de::DeserializeOwned + Default>(
        name: &str,
        args: Option<&serde_json::Value>,
    ) -> Result<T, String> {
        match args {
            None => Ok(T::default()),
            Some(v) => {
                serde_json::from_value(v.clone()).map_err(|e| format!("args of {name}: {e}"))
            }
        }
    }
    let plugin: Arc<dyn Plugin> = match name {
        queue_sort::NAME => Arc::new(queue_sort::PrioritySort),
        scheduling_gates::NAME => Arc::new(scheduling_gates::SchedulingGates),
        node_unschedulable::NAME => Arc::new(node_unschedulable::NodeUnschedulable),
        node_name::NAME => Arc::new(node_name::NodeName),
        taint_toleration::NAME => Arc::new(taint_toleration::TaintToleration),
        node_affinity::NAME => Arc::new(node_affinity::NodeAffinity),
        node_ports::NAME => Arc::new(node_ports::NodePorts),
        node_resources_fit::NAME => {
            let a: node_resources_fit::Args = parse(name, args)?;
            Arc::new(node_resources_fit::NodeResourcesFit::from_args(&a)?)
        }
        balanced_allocation::NAME => {
            #[derive(serde::Deserialize, Default)]
            struct A {
                #[serde(default)]
                resources: Option<Vec<node_resources_fit::ResourceSpec>>,
            }
            let a: A = parse(name, args)?;
            Arc::new(balanced_allocation::BalancedAllocation::new(
                a.resources
                    .unwrap_or_else(node_resources_fit::default_resources),
            ))
        }
        image_locality::NAME => Arc::new(image_locality::ImageLocality),
        pod_topology_spread::NAME => Arc::new(pod_topology_spread::PodTopologySpread::default()),
        inter_pod_affinity::NAME => Arc::new(inter_pod_affinity::InterPodAffinity),
        default_preemption::NAME => Arc::new(default_preemption::DefaultPreemption::new(
            handle.pdbs.clone(),
        )),
        default_binder::NAME => Arc::new(default_binder::DefaultBinder::new(handle.client.clone())),
        _ => return Ok(None),
    };
    Ok(Some(plugin))
}

/// Upstream's default plugin set, in order, with Score weights (0: the
/// plugin has no Score, or it is not scored by default).
pub const DEFAULT_PLUGINS: &[(&str, i64)] = &[
    (scheduling_gates::NAME, 0),
    (queue_sort::NAME, 0),
    (node_unschedulable::NAME, 0),
    (node_name::NAME, 0),
    (taint_toleration::NAME, 3),
    (node_affinity::NAME, 2),
    (node_ports::NAME, 0),
    (node_resources_fit::NAME, 1),
    (pod_topology_spread::NAME, 2),
    (inter_pod_affinity::NAME, 2),
    (default_preemption::NAME, 0),
    (balanced_allocation::NAME, 1),
    (image_locality::NAME, 1),
    (default_binder::NAME, 0),
];
