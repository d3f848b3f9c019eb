//! PrioritySort: higher `spec.priority` first, then the earlier queue time.

use crate::scheduler::framework::{Plugin, QueueSortPlugin};
use crate::scheduler::queue::QueuedPodInfo;

/// The plugin's name.
pub const NAME: &str = "PrioritySort";

/// Upstream's `PrioritySort` QueueSort plugin.
#[derive(Debug, Default)]
pub struct PrioritySort;

/// Whether `a` goes before `b`: higher priority, then earlier queue time.
pub fn priority_less(a: &QueuedPodInfo, b: &QueuedPodInfo) -> bool {
    a.info.priority > b.info.priority
        || (a.info.priority == b.info.priority && a.timestamp < b.timestamp)
}

impl Plugin for PrioritySort {
    fn name(&self) -> &'static str {
        NAME
    }
    fn as_queue_sort(&self) -> Option<&dyn QueueSortPlugin> {
        Some(self)
    }
}

impl QueueSortPlugin for PrioritySort {
    fn less(&self, a: &QueuedPodInfo, b: &QueuedPodInfo) -> bool {
        priority_less(a, b)
    }
}
