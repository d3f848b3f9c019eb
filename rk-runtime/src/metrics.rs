//! Informer metrics (`rk_informer_*`, labelled by resource), and a bundle of
//! every rk-runtime metric family for one registry.
//!
//! Work queue and reconcile metrics live with their modules
//! ([`crate::workqueue::WorkQueueMetrics`], [`crate::controller::ControllerMetrics`]);
//! [`RuntimeMetrics`] registers all three at once.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::controller::ControllerMetrics;
use crate::workqueue::WorkQueueMetrics;

/// The `resource` label: `apiVersion/plural`, e.g. `apps/v1/deployments`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResourceLabels {
    /// The resource.
    pub resource: String,
}

/// The `resource` and `type` labels of watch event counts.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    /// The resource.
    pub resource: String,
    /// `apply` or `delete`.
    pub r#type: String,
}

/// Informer metric families.
#[derive(Clone)]
pub struct InformerMetrics {
    lists: Family<ResourceLabels, Counter>,
    events: Family<EventLabels, Counter>,
    objects: Family<ResourceLabels, Gauge>,
}

impl InformerMetrics {
    /// Create the families and register them under `rk_informer_`.
    pub fn new(registry: &mut Registry) -> Self {
        let m = Self {
            lists: Family::default(),
            events: Family::default(),
            objects: Family::default(),
        };
        let r = registry.sub_registry_with_prefix("rk_informer");
        r.register(
            "lists",
            "Full lists (initial and relists) per informer",
            m.lists.clone(),
        );
        r.register(
            "watch_events",
            "Watch events applied to informer caches",
            m.events.clone(),
        );
        r.register(
            "objects",
            "Objects in each informer's cache",
            m.objects.clone(),
        );
        m
    }

    /// One informer's handles.
    pub(crate) fn for_resource(&self, resource: &str) -> InformerHandles {
        let labels = ResourceLabels {
            resource: resource.to_owned(),
        };
        let event = |t: &str| {
            self.events
                .get_or_create(&EventLabels {
                    resource: resource.to_owned(),
                    r#type: t.to_owned(),
                })
                .clone()
        };
        InformerHandles {
            lists: self.lists.get_or_create(&labels).clone(),
            applies: event("apply"),
            deletes: event("delete"),
            objects: self.objects.get_or_create(&labels).clone(),
        }
    }
}

/// One informer's metric handles.
#[derive(Clone, Debug)]
pub(crate) struct InformerHandles {
    pub(crate) lists: Counter,
    pub(crate) applies: Counter,
    pub(crate) deletes: Counter,
    pub(crate) objects: Gauge,
}

/// Every rk-runtime metric family, registered in one registry.
#[derive(Clone)]
pub struct RuntimeMetrics {
    /// `controller_runtime_*`.
    pub controllers: ControllerMetrics,
    /// `workqueue_*`.
    pub workqueues: WorkQueueMetrics,
    /// `rk_informer_*`.
    pub informers: InformerMetrics,
}

impl RuntimeMetrics {
    /// Register every family in `registry`.
    pub fn new(registry: &mut Registry) -> Self {
        Self {
            controllers: ControllerMetrics::new(registry),
            workqueues: WorkQueueMetrics::new(registry),
            informers: InformerMetrics::new(registry),
        }
    }
}
