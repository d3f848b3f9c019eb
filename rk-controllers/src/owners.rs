//! Which owners a dependent's event concerns, shared by the controllers
//! that manage pods or ReplicaSets through controller references.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use rk_core::labels::Selector;

/// The `ns/name` keys of the owners of kind `owner_kind` to sync for an event
/// on the dependent `meta`: its controller when it has one (none if that is
/// of another kind), else — an orphan that may be adopted — every candidate
/// in its namespace whose non-empty selector matches its labels.
pub fn owner_keys<'a>(
    meta: &ObjectMeta,
    owner_kind: &str,
    candidates: impl IntoIterator<Item = (&'a ObjectMeta, &'a LabelSelector)>,
) -> Vec<String> {
    let ns = meta.namespace.as_deref().unwrap_or_default();
    if let Some(r) = rk_core::object::controller_of(meta) {
        return if r.kind == owner_kind {
            vec![format!("{ns}/{}", r.name)]
        } else {
            Vec::new()
        };
    }
    let empty = Default::default();
    let labels = meta.labels.as_ref().unwrap_or(&empty);
    candidates
        .into_iter()
        .filter(|(m, _)| m.namespace.as_deref() == Some(ns))
        .filter(|(_, s)| Selector::try_from(*s).is_ok_and(|s| !s.is_empty() && s.matches(labels)))
        .filter_map(|(m, _)| m.name.as_ref().map(|n| format!("{ns}/{n}")))
        .collect()
}
