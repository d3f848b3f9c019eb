//! The resources a cluster serves, from API discovery, as controllers that
//! work on every kind (garbage collector, namespace deletion) need them.

use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::{Discovery, Scope, verbs};

/// One served resource with what controllers need to know about it.
#[derive(Clone, Debug)]
pub struct Served {
    /// The resource (group, version, kind, plural).
    pub resource: ApiResource,
    /// True for namespaced kinds.
    pub namespaced: bool,
    /// Supports list and watch.
    pub watchable: bool,
    /// Supports `deletecollection`.
    pub delete_collection: bool,
    /// Supports `delete`.
    pub deletable: bool,
}

/// Errors from discovery.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The API server could not be asked.
    #[error("discovery failed: {0}")]
    Kube(#[from] kube::Error),
}

/// Every resource the server serves (preferred versions only).
pub async fn served(client: &kube::Client) -> Result<Vec<Served>, DiscoveryError> {
    let discovery = Discovery::new(client.clone()).run().await?;
    let mut out = Vec::new();
    for group in discovery.groups() {
        for (ar, caps) in group.recommended_resources() {
            let has = |v: &str| caps.supports_operation(v);
            out.push(Served {
                namespaced: caps.scope == Scope::Namespaced,
                watchable: has(verbs::LIST) && has(verbs::WATCH),
                delete_collection: has(verbs::DELETE_COLLECTION),
                deletable: has(verbs::DELETE),
                resource: ar,
            });
        }
    }
    Ok(out)
}

/// Find the resource of an `apiVersion` and kind.
pub fn find<'a>(served: &'a [Served], api_version: &str, kind: &str) -> Option<&'a Served> {
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    };
    let gvk = GroupVersionKind::gvk(group, version, kind);
    served
        .iter()
        .find(|s| {
            s.resource.group == gvk.group
                && s.resource.kind == gvk.kind
                && s.resource.version == gvk.version
        })
        .or_else(|| {
            served
                .iter()
                .find(|s| s.resource.group == gvk.group && s.resource.kind == gvk.kind)
        })
}
