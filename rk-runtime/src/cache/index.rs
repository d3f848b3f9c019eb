//! Index functions for [`Store`](super::Store): each maps an object to the
//! values it is filed under (client-go's `IndexFunc`).

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use kube::Resource;

/// Maps an object to the index values it is filed under.
pub type IndexFn<K> = Arc<dyn Fn(&K) -> Vec<String> + Send + Sync>;

/// The name of the namespace index every store has.
pub const NAMESPACE_INDEX: &str = "namespace";

/// The name [`by_owner_uid`] is registered under by convention.
pub const OWNER_UID_INDEX: &str = "ownerUID";

/// The name [`pod_node_name`] is registered under by convention.
pub const POD_NODE_NAME_INDEX: &str = "spec.nodeName";

/// Files an object under its namespace (cluster-scoped objects under none).
pub fn by_namespace<K: Resource>() -> IndexFn<K> {
    Arc::new(|obj: &K| {
        obj.meta()
            .namespace
            .iter()
            .filter(|n| !n.is_empty())
            .cloned()
            .collect()
    })
}

/// Files an object under the value of its label `key` (not at all when absent).
pub fn by_label<K: Resource>(key: impl Into<String>) -> IndexFn<K> {
    let key = key.into();
    Arc::new(move |obj: &K| {
        obj.meta()
            .labels
            .as_ref()
            .and_then(|l| l.get(&key))
            .cloned()
            .into_iter()
            .collect()
    })
}

/// Files an object under the uid of each of its owners.
pub fn by_owner_uid<K: Resource>() -> IndexFn<K> {
    Arc::new(|obj: &K| {
        obj.meta()
            .owner_references
            .iter()
            .flatten()
            .map(|o| o.uid.clone())
            .collect()
    })
}

/// Files an object under the uid of its controller owner only.
pub fn by_controller_uid<K: Resource>() -> IndexFn<K> {
    Arc::new(|obj: &K| {
        obj.meta()
            .owner_references
            .iter()
            .flatten()
            .filter(|o| o.controller == Some(true))
            .map(|o| o.uid.clone())
            .collect()
    })
}

/// Files a pod under the node it is bound to (unscheduled pods under none).
pub fn pod_node_name() -> IndexFn<Pod> {
    Arc::new(|pod: &Pod| {
        pod.spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty())
            .into_iter()
            .collect()
    })
}

/// Wrap a closure as an index function.
pub fn custom<K, F>(f: F) -> IndexFn<K>
where
    F: Fn(&K) -> Vec<String> + Send + Sync + 'static,
{
    Arc::new(f)
}
