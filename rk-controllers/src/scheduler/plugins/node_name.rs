//! NodeName: a pod naming a node in `spec.nodeName` fits only that node.
//! (The scheduler only sees pods without a node name; this matters for
//! preemption's and other components' what-if runs.)

use crate::scheduler::framework::{CycleState, FilterPlugin, Plugin, Status};
use crate::scheduler::types::{NodeInfo, PodInfo};

/// The plugin's name.
pub const NAME: &str = "NodeName";
/// Upstream's reason.
pub const REASON: &str = "node(s) didn't match the requested node name";

/// Upstream's `NodeName` Filter plugin.
#[derive(Debug, Default)]
pub struct NodeName;

impl Plugin for NodeName {
    fn name(&self) -> &'static str {
        NAME
    }
    fn as_filter(&self) -> Option<&dyn FilterPlugin> {
        Some(self)
    }
}

impl FilterPlugin for NodeName {
    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        match pod.pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
            Some(name) if !name.is_empty() && name != node.name => Status::unresolvable(REASON),
            _ => Status::success(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::scheduler::plugins::testing::{node, pod};

    #[test]
    fn only_the_named_node_fits() {
        let mut p = pod("p", "0", "0");
        if let Some(spec) = Arc::make_mut(&mut p.pod).spec.as_mut() {
            spec.node_name = Some("n2".into());
        }
        let state = CycleState::default();
        assert_eq!(
            NodeName.filter(&state, &p, &node("n1", "1", "1Gi")),
            Status::unresolvable(REASON)
        );
        assert!(
            NodeName
                .filter(&state, &p, &node("n2", "1", "1Gi"))
                .is_success()
        );
    }
}
