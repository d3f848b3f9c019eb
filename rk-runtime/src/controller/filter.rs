//! Event filters: which updates wake a controller (controller-runtime's
//! predicates). Adds and deletes always pass; filters judge updates only.

use std::sync::Arc;

use kube::api::ObjectMeta;

/// A custom update test over old and new metadata.
pub type MetaPredicate = Arc<dyn Fn(&ObjectMeta, &ObjectMeta) -> bool + Send + Sync>;

/// Decides whether an update, seen as old and new metadata, is worth a reconcile.
#[derive(Clone)]
pub enum EventFilter {
    /// `metadata.generation` changed (spec changes; status-only writes are
    /// ignored). Resyncs are ignored too, since nothing changed.
    GenerationChanged,
    /// The labels changed.
    LabelsChanged,
    /// The annotations changed.
    AnnotationsChanged,
    /// The resourceVersion changed (drops resyncs).
    ResourceVersionChanged,
    /// Any one of these filters passes.
    Any(Vec<EventFilter>),
    /// A custom test on old and new metadata.
    Custom(MetaPredicate),
}

impl std::fmt::Debug for EventFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::GenerationChanged => f.write_str("GenerationChanged"),
            Self::LabelsChanged => f.write_str("LabelsChanged"),
            Self::AnnotationsChanged => f.write_str("AnnotationsChanged"),
            Self::ResourceVersionChanged => f.write_str("ResourceVersionChanged"),
            Self::Any(v) => f.debug_tuple("Any").field(v).finish(),
            Self::Custom(_) => f.write_str("Custom"),
        }
    }
}

impl EventFilter {
    /// A custom filter from a closure over old and new metadata.
    pub fn custom(f: impl Fn(&ObjectMeta, &ObjectMeta) -> bool + Send + Sync + 'static) -> Self {
        Self::Custom(Arc::new(f))
    }

    /// Whether the update from `old` to `new` passes.
    pub fn allows_update(&self, old: &ObjectMeta, new: &ObjectMeta) -> bool {
        match self {
            Self::GenerationChanged => old.generation != new.generation,
            Self::LabelsChanged => old.labels != new.labels,
            Self::AnnotationsChanged => old.annotations != new.annotations,
            Self::ResourceVersionChanged => old.resource_version != new.resource_version,
            Self::Any(filters) => filters.iter().any(|f| f.allows_update(old, new)),
            Self::Custom(f) => f(old, new),
        }
    }
}

/// Whether every filter in `filters` lets the update through.
pub(crate) fn all_allow(filters: &[EventFilter], old: &ObjectMeta, new: &ObjectMeta) -> bool {
    filters.iter().all(|f| f.allows_update(old, new))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_filter_ignores_status_writes() {
        let old = ObjectMeta {
            generation: Some(1),
            resource_version: Some("1".into()),
            ..Default::default()
        };
        let status_write = ObjectMeta {
            resource_version: Some("2".into()),
            ..old.clone()
        };
        let spec_write = ObjectMeta {
            generation: Some(2),
            ..status_write.clone()
        };
        assert!(!EventFilter::GenerationChanged.allows_update(&old, &status_write));
        assert!(EventFilter::GenerationChanged.allows_update(&old, &spec_write));
        let either = EventFilter::Any(vec![
            EventFilter::GenerationChanged,
            EventFilter::LabelsChanged,
        ]);
        assert!(!either.allows_update(&old, &status_write));
    }
}
