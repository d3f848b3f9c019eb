//! Work queue metrics, named as client-go names them (`workqueue_*`,
//! labelled by queue name).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// The `name` label of every work queue metric.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    /// The queue's name.
    pub name: String,
}

type HistogramFamily = Family<QueueLabels, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    // 1 µs to ~10 s, as client-go's buckets.
    Histogram::new(exponential_buckets(1e-6, 10.0, 8))
}

/// The metric families shared by every queue registered with one registry.
#[derive(Clone)]
pub struct WorkQueueMetrics {
    depth: Family<QueueLabels, Gauge>,
    adds: Family<QueueLabels, Counter>,
    queue_duration: HistogramFamily,
    work_duration: HistogramFamily,
    retries: Family<QueueLabels, Counter>,
    unfinished_work: Family<QueueLabels, Gauge<f64, AtomicU64>>,
    longest_running: Family<QueueLabels, Gauge<f64, AtomicU64>>,
}

impl WorkQueueMetrics {
    /// Create the families and register them in `registry` under `workqueue_`.
    pub fn new(registry: &mut Registry) -> Self {
        let m = Self {
            depth: Family::default(),
            adds: Family::default(),
            queue_duration: Family::new_with_constructor(duration_histogram as fn() -> Histogram),
            work_duration: Family::new_with_constructor(duration_histogram as fn() -> Histogram),
            retries: Family::default(),
            unfinished_work: Family::default(),
            longest_running: Family::default(),
        };
        let r = registry.sub_registry_with_prefix("workqueue");
        r.register("depth", "Current depth of the work queue", m.depth.clone());
        r.register(
            "adds",
            "Total number of adds handled by the work queue",
            m.adds.clone(),
        );
        r.register(
            "queue_duration_seconds",
            "How long in seconds an item stays in the work queue before being requested",
            m.queue_duration.clone(),
        );
        r.register(
            "work_duration_seconds",
            "How long in seconds processing an item from the work queue takes",
            m.work_duration.clone(),
        );
        r.register(
            "retries",
            "Total number of retries handled by the work queue",
            m.retries.clone(),
        );
        r.register(
            "unfinished_work_seconds",
            "How many seconds of work has been done that is in progress and hasn't been observed by work_duration",
            m.unfinished_work.clone(),
        );
        r.register(
            "longest_running_processor_seconds",
            "How many seconds has the longest running processor for the work queue been running",
            m.longest_running.clone(),
        );
        m
    }

    /// The handles for one queue.
    pub(crate) fn for_queue(&self, name: &str) -> QueueMetrics {
        let labels = QueueLabels {
            name: name.to_owned(),
        };
        QueueMetrics {
            depth: self.depth.get_or_create(&labels).clone(),
            adds: self.adds.get_or_create(&labels).clone(),
            queue_duration: self.queue_duration.get_or_create(&labels).clone(),
            work_duration: self.work_duration.get_or_create(&labels).clone(),
            retries: self.retries.get_or_create(&labels).clone(),
            unfinished_work: self.unfinished_work.get_or_create(&labels).clone(),
            longest_running: self.longest_running.get_or_create(&labels).clone(),
        }
    }
}

/// One queue's metric handles, resolved once so the hot path does no lookups.
#[derive(Clone)]
pub(crate) struct QueueMetrics {
    pub(crate) depth: Gauge,
    pub(crate) adds: Counter,
    pub(crate) queue_duration: Histogram,
    pub(crate) work_duration: Histogram,
    pub(crate) retries: Counter,
    pub(crate) unfinished_work: Gauge<f64, AtomicU64>,
    pub(crate) longest_running: Gauge<f64, AtomicU64>,
}
