//! The patch engine: what a PATCH request does to an object.
//!
//! Pure logic over `serde_json::Value` (objects as the API stores them), no
//! I/O. The PATCH handler picks a [`PatchType`] from the `Content-Type`, the
//! [`PatchSchema`] of the kind, and calls one of:
//!
//! - [`apply_json_patch`]: RFC 6902 (`application/json-patch+json`),
//! - [`apply_merge_patch`]: RFC 7386 (`application/merge-patch+json`),
//! - [`apply_strategic_merge_patch`]: upstream's strategic merge patch
//!   (`application/strategic-merge-patch+json`), built-in kinds only,
//! - [`server_side_apply`]: server-side apply (`application/apply-patch+yaml`),
//!   which also maintains `metadata.managedFields`.
//!
//! Every other write that names a field manager (create, update, and the
//! three non-apply patches) records its changes with
//! [`record_update_manager`].
//!
//! ```
//! use rk_apiserver::patch::{apply_strategic_merge_patch, patch_strategy_for};
//! use serde_json::json;
//!
//! let live = json!({
//!     "apiVersion": "apps/v1", "kind": "Deployment",
//!     "metadata": {"name": "web"},
//!     "spec": {"template": {"spec": {"containers": [
//!         {"name": "web", "image": "nginx:1.25"},
//!         {"name": "log", "image": "busybox"}
//!     ]}}}
//! });
//! let patch = br#"{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"nginx:1.27"}]}}}}"#;
//! let schema = patch_strategy_for("apps/v1", "Deployment");
//! let patched = apply_strategic_merge_patch(&live, patch, &schema).unwrap();
//! let containers = &patched["spec"]["template"]["spec"]["containers"];
//! assert_eq!(containers[0]["image"], "nginx:1.27"); // merged by name
//! assert_eq!(containers[1]["name"], "log"); // kept
//! ```
//!
//! # Upstream behaviour kept
//! - Strategic merge: merge keys and strategies from the Go struct tags of
//!   the built-in types (see `schema`), `$patch: replace|delete` on maps and
//!   list elements, `$deleteFromPrimitiveList/<field>`,
//!   `$setElementOrder/<field>`, `$retainKeys`, and upstream's element order
//!   (`$setElementOrder` first, then the patch's order, then the live order;
//!   without `$setElementOrder`, elements only in the patch come before the
//!   live ones, as upstream).
//! - Server-side apply: upstream's FieldsV1 encoding, one managedFields entry
//!   per manager, operation (and, for updates, apiVersion), conflicts naming
//!   the other managers, `force`, removal of fields a manager stops applying
//!   when nobody else owns them, `before-first-apply` for objects without
//!   managedFields, and the metadata fields that are never owned.
//!
//! # Deliberate gaps
//! - No version conversion: all managers' field sets are read against the
//!   object as stored.
//! - The `subresource` of managedFields entries is kept when read but never
//!   written, and upstream's reset fields (status ignored when applying to
//!   the main resource) are not modelled: callers applying to the main
//!   resource of a kind with a status subresource should drop `status` from
//!   the applied configuration.
//! - Update managers are not capped at 10 (`ancient-changes`), and the
//!   `kubectl.kubernetes.io/last-applied-configuration` migration from
//!   client-side apply is not done.
//! - `$patch: merge` is accepted as a no-op (upstream rejects it); keys of a
//!   list element that were only directives are dropped from added values.
//! - Built-in merge rules cover the kinds listed in `schema`; fields not in
//!   its table merge as plain maps (objects) or replace (lists).
//! - Explicit `null`s in an applied configuration remove the field (the typed
//!   decoding upstream does drops them).

mod builtin;
mod fieldset;
mod managed;
mod schema;
mod strategic;
mod typed;

#[cfg(test)]
mod tests_apply;
#[cfg(test)]
mod tests_strategic;

use serde_json::Value;

pub use managed::{
    record_update_manager, record_update_manager_with_schema, server_side_apply,
    server_side_apply_to,
};
pub use schema::{PatchSchema, patch_strategy_for};
pub use strategic::apply_strategic_merge_patch;

/// How deep patches and objects may nest before they are refused (400).
pub const MAX_DEPTH: usize = 100;

/// Upstream's limit on the operations of one JSON patch.
pub const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

/// The kind of patch a request carries, from its `Content-Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PatchType {
    /// `application/json-patch+json`: RFC 6902.
    Json,
    /// `application/merge-patch+json`: RFC 7386.
    Merge,
    /// `application/strategic-merge-patch+json`.
    StrategicMerge,
    /// `application/apply-patch+yaml`: server-side apply.
    Apply,
}

impl PatchType {
    /// The patch type of a `Content-Type` header value (parameters such as
    /// `; charset=utf-8` are ignored, case does not matter), or `None` when
    /// it is not a supported patch type (answer 415). Apply bodies in CBOR
    /// (`application/apply-patch+cbor`) are not supported.
    pub fn from_content_type(ct: &str) -> Option<PatchType> {
        let media = ct
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        match media.as_str() {
            "application/json-patch+json" => Some(PatchType::Json),
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/strategic-merge-patch+json" => Some(PatchType::StrategicMerge),
            "application/apply-patch+yaml" => Some(PatchType::Apply),
            _ => None,
        }
    }

    /// The media type, as listed in upstream's 415 answers.
    pub fn content_type(self) -> &'static str {
        match self {
            PatchType::Json => "application/json-patch+json",
            PatchType::Merge => "application/merge-patch+json",
            PatchType::StrategicMerge => "application/strategic-merge-patch+json",
            PatchType::Apply => "application/apply-patch+yaml",
        }
    }
}

/// One field that an apply would take from another manager.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldConflict {
    /// The other manager's name, e.g. `kubectl-client-side-apply`.
    pub manager: String,
    /// Upstream's cause message: `conflict with "kubectl-client-side-apply"
    /// using apps/v1`.
    pub message: String,
    /// The field path, e.g. `.spec.replicas` or
    /// `.spec.template.spec.containers[name="web"].image`.
    pub field: String,
}

/// Why a patch could not be applied. Each variant maps to the HTTP code and
/// `Status` reason upstream answers with.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The patch is malformed (400 `BadRequest`).
    #[error("{0}")]
    BadRequest(String),
    /// The patch is well formed but cannot apply to this object: a JSON
    /// patch `test` failed or a path is missing, a list of lists (422
    /// `Invalid`).
    #[error("{0}")]
    Invalid(String),
    /// An apply would change fields other managers own (409 `Conflict`).
    /// The message is upstream's: `Apply failed with 1 conflict: conflict
    /// with "kubectl-client-side-apply" using apps/v1: .spec.replicas`.
    #[error("{message}")]
    Conflict {
        /// The whole message.
        message: String,
        /// Each conflict, for the `Status` causes (type
        /// `FieldManagerConflict`).
        conflicts: Vec<FieldConflict>,
    },
    /// The patch type is not supported for this resource (415
    /// `UnsupportedMediaType`).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The patch has too many operations (413 `RequestEntityTooLarge`).
    #[error("{0}")]
    TooLarge(String),
}

impl PatchError {
    /// The HTTP status code to answer with.
    pub fn http_code(&self) -> u16 {
        match self {
            PatchError::BadRequest(_) => 400,
            PatchError::Invalid(_) => 422,
            PatchError::Conflict { .. } => 409,
            PatchError::UnsupportedMediaType(_) => 415,
            PatchError::TooLarge(_) => 413,
        }
    }

    /// The upstream `Status` reason.
    pub fn reason(&self) -> &'static str {
        match self {
            PatchError::BadRequest(_) => "BadRequest",
            PatchError::Invalid(_) => "Invalid",
            PatchError::Conflict { .. } => "Conflict",
            PatchError::UnsupportedMediaType(_) => "UnsupportedMediaType",
            PatchError::TooLarge(_) => "RequestEntityTooLarge",
        }
    }

    pub(crate) fn bad(message: impl Into<String>) -> Self {
        PatchError::BadRequest(message.into())
    }

    pub(crate) fn too_deep() -> Self {
        PatchError::BadRequest(format!(
            "patch or object nests deeper than the maximum of {MAX_DEPTH} levels"
        ))
    }
}

/// Merges a mutating admission policy's apply configuration into `live`
/// as upstream merges it (structured merge, no field ownership): maps and
/// keyed lists merged, scalars replaced. The configuration takes `live`'s
/// `apiVersion` and kind, and may not set an atomic list, map or struct.
pub(crate) fn merge_apply_configuration(
    live: &Value,
    applied: &Value,
    schema: &PatchSchema,
) -> Result<Value, String> {
    let Value::Object(fields) = applied else {
        return Err("the apply configuration is not an object".into());
    };
    let mut applied = fields.clone();
    for key in ["apiVersion", "kind"] {
        match live.get(key) {
            Some(v) => applied.insert(key.into(), v.clone()),
            None => applied.remove(key),
        };
    }
    let applied = Value::Object(applied);
    depth_of(&applied).map_err(|e| e.to_string())?;
    let node = schema.root();
    let mut atomic = Vec::new();
    typed::atomic_paths(&applied, node, "", &mut atomic);
    if !atomic.is_empty() {
        return Err(format!(
            "invalid ApplyConfiguration: may not mutate atomic arrays, maps or structs: {}",
            atomic.join(", ")
        ));
    }
    typed::merge(Some(live), &applied, node, 0).map_err(|e| format!("failed to merge patch: {e}"))
}

/// Fails with a 400 once `depth` passes [`MAX_DEPTH`].
pub(crate) fn check_depth(depth: usize) -> Result<(), PatchError> {
    if depth > MAX_DEPTH {
        Err(PatchError::too_deep())
    } else {
        Ok(())
    }
}

/// The depth of a value (a scalar is 0), giving up past [`MAX_DEPTH`].
pub(crate) fn depth_of(value: &Value) -> Result<usize, PatchError> {
    fn walk(value: &Value, depth: usize) -> Result<usize, PatchError> {
        check_depth(depth)?;
        let children: Box<dyn Iterator<Item = &Value>> = match value {
            Value::Object(m) => Box::new(m.values()),
            Value::Array(a) => Box::new(a.iter()),
            _ => return Ok(depth),
        };
        let mut max = depth;
        for child in children {
            max = max.max(walk(child, depth + 1)?);
        }
        Ok(max)
    }
    walk(value, 0)
}

fn parse_json(bytes: &[u8], what: &str) -> Result<Value, PatchError> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| PatchError::bad(format!("error decoding {what}: {e}")))?;
    depth_of(&value)?;
    Ok(value)
}

/// Parses the body of an apply request (YAML, of which JSON is a subset)
/// into the applied configuration. It must be an object.
pub fn parse_apply_body(body: &[u8]) -> Result<Value, PatchError> {
    let value: Value = serde_yaml::from_slice(body)
        .map_err(|e| PatchError::bad(format!("error decoding YAML: {e}")))?;
    depth_of(&value)?;
    if !value.is_object() {
        return Err(PatchError::bad(
            "the applied configuration must be an object",
        ));
    }
    Ok(value)
}

/// Applies an RFC 6902 JSON patch. Malformed patches are 400, more than
/// [`MAX_JSON_PATCH_OPERATIONS`] operations 413, and a failed `test` or a
/// missing path 422, as upstream. Either every operation applies or none.
pub fn apply_json_patch(original: &Value, patch: &[u8]) -> Result<Value, PatchError> {
    let value = parse_json(patch, "JSON patch")?;
    let ops: json_patch::Patch = serde_json::from_value(value)
        .map_err(|e| PatchError::bad(format!("invalid JSON patch: {e}")))?;
    if ops.0.len() > MAX_JSON_PATCH_OPERATIONS {
        return Err(PatchError::TooLarge(format!(
            "The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, got {}",
            ops.0.len()
        )));
    }
    let mut doc = original.clone();
    json_patch::patch(&mut doc, &ops.0).map_err(|e| PatchError::Invalid(e.to_string()))?;
    Ok(doc)
}

/// Applies an RFC 7386 JSON merge patch: objects merge recursively, `null`
/// deletes a key, anything else (lists included) replaces. The patch must be
/// an object (400 otherwise), since the result must be one.
pub fn apply_merge_patch(original: &Value, patch: &[u8]) -> Result<Value, PatchError> {
    let patch = parse_json(patch, "merge patch")?;
    if !patch.is_object() {
        return Err(PatchError::bad("a merge patch must be a JSON object"));
    }
    let mut doc = original.clone();
    json_patch::merge(&mut doc, &patch);
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web", "tier": "front"}},
            "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}]}
        })
    }

    #[test]
    fn content_types_map_to_patch_types() {
        assert_eq!(
            PatchType::from_content_type("application/json-patch+json"),
            Some(PatchType::Json)
        );
        assert_eq!(
            PatchType::from_content_type("application/merge-patch+json; charset=utf-8"),
            Some(PatchType::Merge)
        );
        assert_eq!(
            PatchType::from_content_type("Application/Strategic-Merge-Patch+JSON"),
            Some(PatchType::StrategicMerge)
        );
        assert_eq!(
            PatchType::from_content_type("application/apply-patch+yaml"),
            Some(PatchType::Apply)
        );
        assert_eq!(
            PatchType::from_content_type("application/apply-patch+cbor"),
            None
        );
        assert_eq!(PatchType::from_content_type("application/json"), None);
    }

    #[test]
    fn json_patch_replaces_and_adds() {
        let patch = br#"[{"op":"replace","path":"/spec/containers/0/image","value":"nginx:1.27"},
                         {"op":"add","path":"/metadata/labels/env","value":"prod"}]"#;
        let out = apply_json_patch(&pod(), patch).unwrap();
        assert_eq!(out["spec"]["containers"][0]["image"], "nginx:1.27");
        assert_eq!(out["metadata"]["labels"]["env"], "prod");
    }

    #[test]
    fn json_patch_failed_test_is_422() {
        let patch = br#"[{"op":"test","path":"/metadata/name","value":"other"}]"#;
        let err = apply_json_patch(&pod(), patch).unwrap_err();
        assert_eq!((err.http_code(), err.reason()), (422, "Invalid"));
    }

    #[test]
    fn json_patch_missing_path_is_422() {
        let patch = br#"[{"op":"remove","path":"/spec/nodeName"}]"#;
        assert_eq!(
            apply_json_patch(&pod(), patch).unwrap_err().http_code(),
            422
        );
    }

    #[test]
    fn malformed_json_patch_is_400() {
        let err = apply_json_patch(&pod(), br#"[{"op":"frobnicate","path":"/a"}]"#).unwrap_err();
        assert_eq!((err.http_code(), err.reason()), (400, "BadRequest"));
        assert_eq!(
            apply_json_patch(&pod(), b"{not json")
                .unwrap_err()
                .http_code(),
            400
        );
    }

    #[test]
    fn merge_patch_null_deletes_and_lists_replace() {
        let patch = br#"{"metadata":{"labels":{"tier":null}},"spec":{"containers":[{"name":"api","image":"api:2"}]}}"#;
        let out = apply_merge_patch(&pod(), patch).unwrap();
        assert_eq!(out["metadata"]["labels"], json!({"app": "web"}));
        assert_eq!(
            out["spec"]["containers"],
            json!([{"name": "api", "image": "api:2"}])
        );
    }

    #[test]
    fn merge_patch_must_be_an_object() {
        assert_eq!(
            apply_merge_patch(&pod(), b"[1,2]").unwrap_err().http_code(),
            400
        );
    }

    #[test]
    fn deeply_nested_patch_is_refused_not_overflowed() {
        let mut patch = String::new();
        for _ in 0..120 {
            patch.push_str("{\"a\":");
        }
        patch.push('1');
        for _ in 0..120 {
            patch.push('}');
        }
        assert_eq!(
            apply_merge_patch(&pod(), patch.as_bytes())
                .unwrap_err()
                .http_code(),
            400
        );
        let schema = patch_strategy_for("v1", "Pod");
        assert_eq!(
            apply_strategic_merge_patch(&pod(), patch.as_bytes(), &schema)
                .unwrap_err()
                .http_code(),
            400
        );
    }

    #[test]
    fn apply_body_parses_yaml_and_json() {
        let yaml = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  a: \"1\"\n";
        assert_eq!(parse_apply_body(yaml).unwrap()["data"]["a"], "1");
        assert_eq!(
            parse_apply_body(br#"{"apiVersion":"v1"}"#).unwrap()["apiVersion"],
            "v1"
        );
        assert_eq!(
            parse_apply_body(b"- a\n- b\n").unwrap_err().http_code(),
            400
        );
    }
}
