//! Object keys: `namespace/name` for namespaced objects, `name` for
//! cluster-scoped ones (client-go `MetaNamespaceKeyFunc` and
//! `SplitMetaNamespaceKey`).

use std::fmt;
use std::str::FromStr;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube_core::Resource;

use super::ObjectError;

/// The key of an object: its namespace (none for cluster-scoped objects) and name.
///
/// Displays as `namespace/name` or `name`, and parses back from that form.
/// An empty namespace is the same as none.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    /// The namespace; `None` for cluster-scoped objects.
    pub namespace: Option<String>,
    /// The name.
    pub name: String,
}

impl ObjectKey {
    /// A key; an empty namespace becomes `None`.
    pub fn new(namespace: Option<&str>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.filter(|ns| !ns.is_empty()).map(str::to_owned),
            name: name.into(),
        }
    }

    /// The key of a namespaced object.
    pub fn namespaced(namespace: &str, name: impl Into<String>) -> Self {
        Self::new(Some(namespace), name)
    }

    /// The key of a cluster-scoped object.
    pub fn cluster(name: impl Into<String>) -> Self {
        Self::new(None, name)
    }

    /// The key of the object with this metadata (empty name when it has none).
    pub fn from_meta(meta: &ObjectMeta) -> Self {
        Self::new(
            meta.namespace.as_deref(),
            meta.name.clone().unwrap_or_default(),
        )
    }

    /// The key of an object.
    pub fn of<K: Resource>(obj: &K) -> Self {
        Self::from_meta(obj.meta())
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{ns}/{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

impl FromStr for ObjectKey {
    type Err = ObjectError;

    /// Parses `namespace/name` or `name`; rejects an empty name and more than one `/`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = |reason| ObjectError::InvalidKey {
            key: s.to_owned(),
            reason,
        };
        let mut parts = s.split('/');
        let (namespace, name) = match (parts.next(), parts.next(), parts.next()) {
            (Some(name), None, None) => (None, name),
            (Some(ns), Some(name), None) => (Some(ns), name),
            _ => return Err(invalid("expected `namespace/name` or `name`")),
        };
        if name.is_empty() {
            return Err(invalid("empty name"));
        }
        Ok(Self::new(namespace, name))
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{Namespace, Pod};

    use super::*;

    #[test]
    fn namespaced_keys_display_and_parse_as_namespace_slash_name() {
        let key = ObjectKey::namespaced("default", "web");
        assert_eq!(key.to_string(), "default/web");
        assert_eq!("default/web".parse(), Ok(key));
    }

    #[test]
    fn cluster_scoped_keys_are_the_bare_name() {
        let key = ObjectKey::cluster("node-1");
        assert_eq!(key.to_string(), "node-1");
        assert_eq!("node-1".parse(), Ok(key));
        assert_eq!("/node-1".parse(), Ok(ObjectKey::cluster("node-1")));
    }

    #[test]
    fn keys_come_from_object_metadata() {
        let mut pod = Pod::default();
        pod.metadata.namespace = Some("ns".into());
        pod.metadata.name = Some("p".into());
        assert_eq!(ObjectKey::of(&pod).to_string(), "ns/p");
        let mut namespace = Namespace::default();
        namespace.metadata.name = Some("ns".into());
        assert_eq!(ObjectKey::of(&namespace).to_string(), "ns");
    }

    #[test]
    fn malformed_keys_are_rejected() {
        for bad in ["a/b/c", "", "ns/", "a//b"] {
            assert!(bad.parse::<ObjectKey>().is_err(), "{bad:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn display_then_parse_round_trips(ns in proptest::option::of("[a-z0-9-]{1,20}"), name in "[a-z0-9.-]{1,30}") {
            let key = ObjectKey::new(ns.as_deref(), name);
            proptest::prop_assert_eq!(key.to_string().parse::<ObjectKey>(), Ok(key));
        }
    }
}
