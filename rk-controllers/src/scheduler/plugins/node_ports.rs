//! NodePorts: the host ports a pod wants must be free on the node.

use crate::scheduler::framework::{CycleState, FilterPlugin, Plugin, Status};
use crate::scheduler::types::{NodeInfo, PodInfo};

/// The plugin's name.
pub const NAME: &str = "NodePorts";
/// Upstream's reason.
pub const REASON: &str = "node(s) didn't have free ports for the requested pod ports";

/// Upstream's `NodePorts` Filter plugin.
#[derive(Debug, Default)]
pub struct NodePorts;

impl Plugin for NodePorts {
    fn name(&self) -> &'static str {
        NAME
    }
    fn as_filter(&self) -> Option<&dyn FilterPlugin> {
        Some(self)
    }
}

impl FilterPlugin for NodePorts {
    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        if pod.host_ports.iter().any(|p| node.used_ports.conflicts(p)) {
            Status::unschedulable(REASON)
        } else {
            Status::success()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::scheduler::plugins::testing::{node, pod, with_host_port};

    #[test]
    fn a_used_host_port_rejects_the_node() {
        let mut n = node("n1", "1", "1Gi");
        n.add_pod(Arc::new(with_host_port(pod("existing", "0", "0"), 8080)));
        let state = CycleState::default();
        let wants = with_host_port(pod("p", "0", "0"), 8080);
        assert_eq!(
            NodePorts.filter(&state, &wants, &n),
            Status::unschedulable(REASON)
        );
        let other = with_host_port(pod("q", "0", "0"), 8081);
        assert!(NodePorts.filter(&state, &other, &n).is_success());
    }
}
