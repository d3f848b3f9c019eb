//! How the lists and maps of a kind merge: the patch schema.
//!
//! Built-in kinds carry upstream's Go struct tags (`patchStrategy`,
//! `patchMergeKey`) for strategic merge patch, and the `+listType`,
//! `+listMapKey`, `+structType`/`+mapType=atomic` markers for server-side
//! apply, encoded in `builtin` as a small graph of Go types. Only the fields whose
//! merge behaviour differs from the default are listed; every other field is
//! a granular map (objects) or an atomic list (arrays), which is upstream's
//! default too. Custom resources use their OpenAPI v3 schema
//! (`x-kubernetes-list-type`, `x-kubernetes-list-map-keys`,
//! `x-kubernetes-map-type`).

use serde_json::Value;

use super::builtin::{self, Field, Item, ListDef, Smp, Ssa, TypeDef};

/// The merge rules for the objects of one kind.
///
/// Obtain one with [`patch_strategy_for`] (built-in kinds),
/// [`PatchSchema::from_openapi_v3`] (custom resources with a structural
/// schema) or [`PatchSchema::untyped`] (no schema at all). Cloning is cheap.
#[derive(Clone, Debug)]
pub struct PatchSchema {
    repr: Repr,
}

#[derive(Clone, Debug)]
enum Repr {
    Builtin(&'static TypeDef),
    OpenApi(std::sync::Arc<Value>),
    Untyped,
}

impl PatchSchema {
    /// A schema from a CRD version's `openAPIV3Schema`: lists merge as
    /// `x-kubernetes-list-type` says (`map` keyed by
    /// `x-kubernetes-list-map-keys`, `set`, or `atomic`, the default), maps
    /// are granular unless `x-kubernetes-map-type: atomic`. Strategic merge
    /// patch is not supported with it, as upstream refuses it for custom
    /// resources.
    pub fn from_openapi_v3(schema: &Value) -> Self {
        Self {
            repr: Repr::OpenApi(std::sync::Arc::new(schema.clone())),
        }
    }

    /// A schema that knows nothing: maps merge key by key, lists are atomic.
    /// Strategic merge patch is not supported with it.
    pub fn untyped() -> Self {
        Self {
            repr: Repr::Untyped,
        }
    }

    /// Whether a strategic merge patch may be applied with this schema: only
    /// for built-in kinds, as upstream.
    pub fn supports_strategic_merge(&self) -> bool {
        matches!(self.repr, Repr::Builtin(_))
    }

    /// The Go type at the root of a built-in kind (`Deployment`, `Pod`, ...),
    /// or `None` for a custom or untyped schema.
    pub fn builtin_type(&self) -> Option<&'static str> {
        match self.repr {
            Repr::Builtin(t) => Some(t.name),
            _ => None,
        }
    }

    pub(crate) fn root(&self) -> Node<'_> {
        match &self.repr {
            Repr::Builtin(t) => Node::Struct(t),
            Repr::OpenApi(v) => Node::OpenApi(v),
            Repr::Untyped => Node::Untyped,
        }
    }
}

/// The patch schema of a kind, from its `apiVersion` and `kind`.
///
/// Kinds of the built-in API groups (the core group, `apps`, `batch`,
/// `autoscaling`, `policy` and every `*.k8s.io` group) get upstream's
/// built-in merge rules; any other group is taken to be a custom resource and
/// gets [`PatchSchema::untyped`] (use [`PatchSchema::from_openapi_v3`] when the
/// CRD's schema is at hand).
pub fn patch_strategy_for(api_version: &str, kind: &str) -> PatchSchema {
    let group = match api_version.rsplit_once('/') {
        Some((group, _)) => group,
        None => "",
    };
    let builtin_group = matches!(
        group,
        "" | "apps" | "batch" | "autoscaling" | "policy" | "extensions"
    ) || group.ends_with(".k8s.io");
    if !builtin_group {
        return PatchSchema::untyped();
    }
    let root = builtin::root_type(group, kind);
    PatchSchema {
        repr: Repr::Builtin(root),
    }
}

// ---------------------------------------------------------------------------
// Walking a schema alongside a value.

/// The strategic-merge rule of a list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SmpList<'s> {
    /// The patch's list replaces the original one.
    Replace,
    /// Merge: elements are maps merged by this key, or scalars (key `None`)
    /// unioned.
    Merge(Option<&'s str>),
}

/// The server-side-apply rule of a list.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum SsaList {
    /// Owned and replaced as a whole.
    Atomic,
    /// Elements are scalars, each owned on its own.
    Set,
    /// Elements are maps identified by these keys (with their defaults).
    Map(Vec<(String, Option<Value>)>),
}

/// A position in a schema: what the value at some path is.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Node<'s> {
    /// A built-in struct with known special fields.
    Struct(&'static TypeDef),
    /// A built-in list field.
    List(&'static ListDef),
    /// A built-in atomic struct or map.
    Atomic,
    /// A part of a built-in kind the table does not describe: objects are
    /// structs merged field by field, lists are atomic.
    Loose,
    /// No schema: objects are maps merged key by key, lists are atomic.
    Untyped,
    /// A node of an OpenAPI v3 schema.
    OpenApi(&'s Value),
}

impl<'s> Node<'s> {
    /// The node of field `key` of an object at this node.
    pub(crate) fn field(self, key: &str) -> Node<'s> {
        match self {
            Node::Struct(t) => match t.fields.iter().find(|(name, _)| *name == key) {
                Some((_, Field::Struct(t) | Field::Pointer(t))) => Node::Struct(t),
                Some((_, Field::Atomic)) => Node::Atomic,
                Some((_, Field::List(l))) => Node::List(l),
                None => Node::Loose,
            },
            Node::Loose => Node::Loose,
            Node::Atomic => Node::Atomic,
            Node::List(_) | Node::Untyped => Node::Untyped,
            Node::OpenApi(s) => {
                if let Some(p) = s.get("properties").and_then(|p| p.get(key)) {
                    return Node::OpenApi(p);
                }
                match s.get("additionalProperties") {
                    Some(a @ Value::Object(_)) => Node::OpenApi(a),
                    _ => Node::Untyped,
                }
            }
        }
    }

    /// Whether `key` names a struct field (as opposed to a key of a map
    /// whose keys are data, like `labels`): upstream's field sets record a
    /// map entry holding an object as owned by itself, a struct field not.
    pub(crate) fn is_struct_field(self, key: &str) -> bool {
        match self {
            Node::Struct(_) | Node::Loose => true,
            Node::OpenApi(s) => s.get("properties").and_then(|p| p.get(key)).is_some(),
            Node::List(_) | Node::Atomic | Node::Untyped => false,
        }
    }

    /// Whether field `key` is a Go value struct, present (possibly empty) in
    /// every object of the kind: creating it is not a change of its own.
    pub(crate) fn is_value_struct(self, key: &str) -> bool {
        match self {
            Node::Struct(t) => t
                .fields
                .iter()
                .any(|(name, f)| *name == key && matches!(f, Field::Struct(_))),
            _ => false,
        }
    }

    /// Whether an object at this node is replaced and owned as a whole.
    pub(crate) fn is_atomic_map(self) -> bool {
        match self {
            Node::Atomic => true,
            Node::OpenApi(s) => {
                s.get("x-kubernetes-map-type").and_then(Value::as_str) == Some("atomic")
            }
            _ => false,
        }
    }

    /// The strategic-merge rule of a list at this node.
    pub(crate) fn smp_list(self) -> SmpList<'s> {
        match self {
            Node::List(l) => match l.smp {
                Smp::Replace => SmpList::Replace,
                Smp::MergeKey(k) => SmpList::Merge(Some(k)),
                Smp::MergePrimitive => SmpList::Merge(None),
            },
            Node::OpenApi(s) => {
                let merge = s
                    .get("x-kubernetes-patch-strategy")
                    .and_then(Value::as_str)
                    .is_some_and(|v| v.split(',').any(|p| p == "merge"));
                if merge {
                    SmpList::Merge(
                        s.get("x-kubernetes-patch-merge-key")
                            .and_then(Value::as_str),
                    )
                } else {
                    SmpList::Replace
                }
            }
            _ => SmpList::Replace,
        }
    }

    /// The server-side-apply rule of a list at this node.
    pub(crate) fn ssa_list(self) -> SsaList {
        match self {
            Node::List(l) => match l.ssa {
                Ssa::Atomic => SsaList::Atomic,
                Ssa::Set => SsaList::Set,
                Ssa::Map(keys) => SsaList::Map(
                    keys.iter()
                        .map(|(k, d)| (k.to_string(), d.map(|d| Value::String(d.to_string()))))
                        .collect(),
                ),
            },
            Node::OpenApi(s) => match s.get("x-kubernetes-list-type").and_then(Value::as_str) {
                Some("set") => SsaList::Set,
                Some("map") => {
                    let items = s.get("items");
                    let keys = s
                        .get("x-kubernetes-list-map-keys")
                        .and_then(Value::as_array)
                        .map(|keys| {
                            keys.iter()
                                .filter_map(Value::as_str)
                                .map(|k| {
                                    let default = items
                                        .and_then(|i| i.get("properties"))
                                        .and_then(|p| p.get(k))
                                        .and_then(|p| p.get("default"))
                                        .cloned();
                                    (k.to_string(), default)
                                })
                                .collect::<Vec<_>>()
                        })
                        .unwrap_or_default();
                    if keys.is_empty() {
                        SsaList::Atomic
                    } else {
                        SsaList::Map(keys)
                    }
                }
                _ => SsaList::Atomic,
            },
            _ => SsaList::Atomic,
        }
    }

    /// The node of the items of a list at this node.
    pub(crate) fn item(self) -> Node<'s> {
        match self {
            Node::List(l) => match l.item {
                Item::Scalar => Node::Loose,
                Item::Struct(t) => Node::Struct(t),
                Item::Atomic => Node::Atomic,
            },
            Node::OpenApi(s) => match s.get("items") {
                Some(i @ Value::Object(_)) => Node::OpenApi(i),
                _ => Node::Untyped,
            },
            Node::Loose => Node::Loose,
            Node::Atomic => Node::Atomic,
            Node::Struct(_) | Node::Untyped => Node::Untyped,
        }
    }

    /// A short name for messages.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Node::Struct(t) => t.name,
            _ => "object",
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn deployment_containers_merge_by_name() {
        let schema = patch_strategy_for("apps/v1", "Deployment");
        let containers = schema
            .root()
            .field("spec")
            .field("template")
            .field("spec")
            .field("containers");
        assert_eq!(containers.smp_list(), SmpList::Merge(Some("name")));
        let ports = containers.item().field("ports");
        assert_eq!(ports.smp_list(), SmpList::Merge(Some("containerPort")));
        assert_eq!(
            ports.ssa_list(),
            SsaList::Map(vec![
                ("containerPort".into(), None),
                ("protocol".into(), Some(json!("TCP")))
            ])
        );
    }

    #[test]
    fn cronjob_reaches_pod_template_through_job_template() {
        let schema = patch_strategy_for("batch/v1", "CronJob");
        let env = schema
            .root()
            .field("spec")
            .field("jobTemplate")
            .field("spec")
            .field("template")
            .field("spec")
            .field("initContainers")
            .item()
            .field("env");
        assert_eq!(env.smp_list(), SmpList::Merge(Some("name")));
    }

    #[test]
    fn node_taints_have_no_strategy() {
        let schema = patch_strategy_for("v1", "Node");
        assert_eq!(
            schema.root().field("spec").field("taints").smp_list(),
            SmpList::Replace
        );
        assert_eq!(
            schema.root().field("spec").field("podCIDRs").smp_list(),
            SmpList::Merge(None)
        );
    }

    #[test]
    fn custom_group_is_untyped_and_refuses_smp() {
        let schema = patch_strategy_for("example.com/v1", "Widget");
        assert!(!schema.supports_strategic_merge());
        assert!(patch_strategy_for("networking.k8s.io/v1", "Ingress").supports_strategic_merge());
    }

    #[test]
    fn openapi_list_map_keys_with_defaults() {
        let schema = PatchSchema::from_openapi_v3(&json!({
            "type": "object",
            "properties": {"spec": {"type": "object", "properties": {"ports": {
                "type": "array",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["port", "protocol"],
                "items": {"type": "object", "properties": {
                    "port": {"type": "integer"},
                    "protocol": {"type": "string", "default": "TCP"}
                }}
            }}}}
        }));
        let ports = schema.root().field("spec").field("ports");
        assert_eq!(
            ports.ssa_list(),
            SsaList::Map(vec![
                ("port".into(), None),
                ("protocol".into(), Some(json!("TCP")))
            ])
        );
        assert_eq!(
            schema.root().field("spec").field("other").ssa_list(),
            SsaList::Atomic
        );
    }
}
