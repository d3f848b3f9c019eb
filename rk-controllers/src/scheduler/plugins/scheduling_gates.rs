//! SchedulingGates: a pod with `spec.schedulingGates` stays out of the
//! active queue until the gates are removed.

use crate::scheduler::framework::{Code, Plugin, PreEnqueuePlugin, Status};
use crate::scheduler::types::PodInfo;

/// The plugin's name.
pub const NAME: &str = "SchedulingGates";

/// Upstream's `SchedulingGates` PreEnqueue plugin.
#[derive(Debug, Default)]
pub struct SchedulingGates;

impl Plugin for SchedulingGates {
    fn name(&self) -> &'static str {
        NAME
    }
    fn as_pre_enqueue(&self) -> Option<&dyn PreEnqueuePlugin> {
        Some(self)
    }
}

impl PreEnqueuePlugin for SchedulingGates {
    fn pre_enqueue(&self, pod: &PodInfo) -> Status {
        let gates = pod
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.scheduling_gates.as_deref())
            .unwrap_or_default();
        if gates.is_empty() {
            return Status::success();
        }
        let names: Vec<&str> = gates.iter().map(|g| g.name.as_str()).collect();
        Status::new(
            Code::Pending,
            format!("waiting for scheduling gates: [{}]", names.join(" ")),
        )
    }
}
