//! NodeUnschedulable: a cordoned node (`spec.unschedulable`) takes only pods
//! tolerating the `node.kubernetes.io/unschedulable:NoSchedule` taint.

use k8s_openapi::api::core::v1::Taint;
use rk_core::predicates::taints::{NO_SCHEDULE, TAINT_NODE_UNSCHEDULABLE};
use rk_core::predicates::tolerations_tolerate_taint;

use crate::scheduler::framework::{CycleState, FilterPlugin, Plugin, Status};
use crate::scheduler::types::{NodeInfo, PodInfo};

/// The plugin's name.
pub const NAME: &str = "NodeUnschedulable";
/// Upstream's reason.
pub const REASON: &str = "node(s) were unschedulable";

/// Upstream's `NodeUnschedulable` Filter plugin.
#[derive(Debug, Default)]
pub struct NodeUnschedulable;

impl Plugin for NodeUnschedulable {
    fn name(&self) -> &'static str {
        NAME
    }
    fn as_filter(&self) -> Option<&dyn FilterPlugin> {
        Some(self)
    }
}

impl FilterPlugin for NodeUnschedulable {
    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        if !node.unschedulable {
            return Status::success();
        }
        let taint = Taint {
            key: TAINT_NODE_UNSCHEDULABLE.to_owned(),
            effect: NO_SCHEDULE.to_owned(),
            value: None,
            time_added: None,
        };
        if tolerations_tolerate_taint(pod.tolerations(), &taint) {
            Status::success()
        } else {
            Status::unresolvable(REASON)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::plugins::testing::{node, pod, tolerate};

    #[test]
    fn cordoned_nodes_reject_pods_without_the_toleration() {
        let mut n = node("n1", "4", "8Gi");
        let mut cordoned = (*n.node).clone();
        if let Some(spec) = cordoned.spec.as_mut() {
            spec.unschedulable = Some(true);
        }
        n.set_node(std::sync::Arc::new(cordoned));
        let p = pod("p", "100m", "1Gi");
        let s = NodeUnschedulable.filter(&CycleState::default(), &p, &n);
        assert_eq!(s, Status::unresolvable(REASON));
        let tolerant = tolerate(
            pod("q", "100m", "1Gi"),
            TAINT_NODE_UNSCHEDULABLE,
            NO_SCHEDULE,
        );
        assert!(
            NodeUnschedulable
                .filter(&CycleState::default(), &tolerant, &n)
                .is_success()
        );
    }
}
