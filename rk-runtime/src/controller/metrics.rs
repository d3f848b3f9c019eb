//! Reconcile metrics, named as controller-runtime names them.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The `controller` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    /// The controller's name.
    pub controller: String,
}

/// The `controller` and `result` labels of `reconcile_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// The controller's name.
    pub controller: String,
    /// `success`, `error`, `requeue_after`.
    pub result: String,
}

fn reconcile_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 16))
}

/// The `controller_runtime_*` families, shared by every controller.
#[derive(Clone)]
pub struct ControllerMetrics {
    pub(crate) reconcile_total: Family<ResultLabels, Counter>,
    pub(crate) reconcile_errors: Family<ControllerLabels, Counter>,
    pub(crate) reconcile_time: Family<ControllerLabels, Histogram, fn() -> Histogram>,
    pub(crate) active_workers: Family<ControllerLabels, Gauge>,
    pub(crate) max_concurrent: Family<ControllerLabels, Gauge>,
}

impl ControllerMetrics {
    /// Create the families and register them under `controller_runtime_`.
    pub fn new(registry: &mut Registry) -> Self {
        let m = Self::unregistered();
        let r = registry.sub_registry_with_prefix("controller_runtime");
        r.register(
            "reconcile",
            "Total number of reconciliations per controller",
            m.reconcile_total.clone(),
        );
        r.register(
            "reconcile_errors",
            "Total number of reconciliation errors per controller",
            m.reconcile_errors.clone(),
        );
        r.register(
            "reconcile_time_seconds",
            "Length of time per reconciliation per controller",
            m.reconcile_time.clone(),
        );
        r.register(
            "active_workers",
            "Number of currently used workers per controller",
            m.active_workers.clone(),
        );
        r.register(
            "max_concurrent_reconciles",
            "Maximum number of concurrent reconciles per controller",
            m.max_concurrent.clone(),
        );
        m
    }

    /// Families that are counted but exported nowhere.
    pub fn unregistered() -> Self {
        Self {
            reconcile_total: Family::default(),
            reconcile_errors: Family::default(),
            reconcile_time: Family::new_with_constructor(reconcile_buckets as fn() -> Histogram),
            active_workers: Family::default(),
            max_concurrent: Family::default(),
        }
    }

    /// How many reconciles of `controller` ended with `result` so far.
    pub fn reconcile_count(&self, controller: &str, result: &str) -> u64 {
        self.reconcile_total
            .get_or_create(&ResultLabels {
                controller: controller.to_owned(),
                result: result.to_owned(),
            })
            .get()
    }

    /// Record one reconcile of `controller` that took `seconds` and ended
    /// with `result` (`success`, `error` or `requeue_after`), for loops that
    /// are not built with [`crate::controller::ControllerBuilder`].
    pub fn observe(&self, controller: &str, result: &str, seconds: f64) {
        self.reconcile_total
            .get_or_create(&ResultLabels {
                controller: controller.to_owned(),
                result: result.to_owned(),
            })
            .inc();
        let labels = ControllerLabels {
            controller: controller.to_owned(),
        };
        if result == "error" {
            self.reconcile_errors.get_or_create(&labels).inc();
        }
        self.reconcile_time.get_or_create(&labels).observe(seconds);
    }

    /// Record how many workers `controller` has, and how many are busy now.
    pub fn set_workers(&self, controller: &str, max: i64, active: i64) {
        let labels = ControllerLabels {
            controller: controller.to_owned(),
        };
        self.max_concurrent.get_or_create(&labels).set(max);
        self.active_workers.get_or_create(&labels).set(active);
    }
}
