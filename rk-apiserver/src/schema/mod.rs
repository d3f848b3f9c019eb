//! Schema-driven object checks: unknown fields of built-in kinds (for
//! `fieldValidation=Strict|Warn`), validation and pruning of custom resources
//! against their CRD's structural schema, and validation of CRDs themselves.
//! Field paths and messages follow upstream's wording, so a client sees the
//! same error text it would from kube-apiserver.
//!
//! ```
//! use rk_apiserver::schema::{CrdSchema, unknown_fields};
//! use serde_json::json;
//!
//! // Built-in kinds: unknown field paths (the caller words them as
//! // `unknown field "spec.foo"`).
//! let deploy = json!({"apiVersion": "apps/v1", "kind": "Deployment",
//!     "metadata": {"name": "web"}, "spec": {"foo": 1}});
//! assert_eq!(unknown_fields("apps/v1", "Deployment", &deploy), vec!["spec.foo"]);
//!
//! // Custom resources: prune, then validate.
//! let schema = CrdSchema::from_value(&json!({
//!     "type": "object",
//!     "properties": {"spec": {"type": "object", "required": ["image"],
//!         "properties": {"image": {"type": "string"}, "replicas": {"type": "integer"}}}},
//! })).unwrap();
//! let mut obj = json!({"apiVersion": "example.com/v1", "kind": "Widget",
//!     "metadata": {"name": "w"}, "spec": {"replicas": "three", "colour": "red"}});
//! assert_eq!(schema.prune(&mut obj), vec!["spec.colour"]);
//! let causes = schema.validate(&obj);
//! assert_eq!(causes[0].to_string(), "spec.image: Required value");
//! assert_eq!(causes[1].to_string(),
//!     r#"spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string""#);
//! ```

mod crd_validation;
mod structural;

use std::fmt;

use serde_json::Value;

use crate::openapi::{KindSchema, schema_for};

pub use crd_validation::{apply_crd_defaults, validate_crd};
pub use structural::{CrdSchema, SchemaError};

/// Deepest nesting of objects the checks walk; deeper input is reported (CRD
/// validation) or left alone (unknown-field detection).
pub const MAX_DEPTH: usize = 100;

/// One validation failure, shaped like upstream's `StatusCause`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cause {
    /// Upstream's cause type: `FieldValueInvalid`, `FieldValueRequired`,
    /// `FieldValueNotSupported`, `FieldValueTooLong`, `FieldValueTooMany`,
    /// `FieldValueDuplicate`, `FieldValueForbidden`, `FieldValueTypeInvalid`.
    pub reason: String,
    /// Field path, e.g. `spec.template.spec.containers[0].image`.
    pub field: String,
    /// The error body without the field, e.g. `Required value` or
    /// `Invalid value: "string": spec.replicas in body must be of type integer: "string"`.
    pub message: String,
}

impl fmt::Display for Cause {
    /// `field: message`, as upstream prints a field error.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

impl Cause {
    fn new(reason: &str, field: &str, message: String) -> Self {
        Cause {
            reason: reason.to_owned(),
            field: field.to_owned(),
            message,
        }
    }

    /// `Required value[: detail]`.
    pub fn required(field: &str, detail: &str) -> Self {
        Self::new(
            "FieldValueRequired",
            field,
            with_detail("Required value", detail),
        )
    }

    /// `Invalid value: <value>: detail`.
    pub fn invalid(field: &str, value: &Value, detail: &str) -> Self {
        let body = format!("Invalid value: {}", go_value(value));
        Self::new("FieldValueInvalid", field, with_detail(&body, detail))
    }

    /// A wrong type: `Invalid value: <value>: detail`, reason `FieldValueTypeInvalid`.
    pub fn type_invalid(field: &str, value: &Value, detail: &str) -> Self {
        let body = format!("Invalid value: {}", go_value(value));
        Self::new("FieldValueTypeInvalid", field, with_detail(&body, detail))
    }

    /// `Unsupported value: <value>: supported values: "a", "b"`.
    pub fn not_supported(field: &str, value: &Value, supported: &[String]) -> Self {
        let body = format!("Unsupported value: {}", go_value(value));
        let quoted: Vec<String> = supported.iter().map(|s| quote(s)).collect();
        let detail = if quoted.is_empty() {
            String::new()
        } else {
            format!("supported values: {}", quoted.join(", "))
        };
        Self::new("FieldValueNotSupported", field, with_detail(&body, &detail))
    }

    /// `Too long: detail`.
    pub fn too_long(field: &str, detail: &str) -> Self {
        Self::new("FieldValueTooLong", field, with_detail("Too long", detail))
    }

    /// `Too many: <actual>: detail`.
    pub fn too_many(field: &str, actual: usize, detail: &str) -> Self {
        Self::new(
            "FieldValueTooMany",
            field,
            with_detail(&format!("Too many: {actual}"), detail),
        )
    }

    /// `Duplicate value: <value>`.
    pub fn duplicate(field: &str, value: &Value) -> Self {
        Self::new(
            "FieldValueDuplicate",
            field,
            format!("Duplicate value: {}", go_value(value)),
        )
    }

    /// `Forbidden: detail`.
    pub fn forbidden(field: &str, detail: &str) -> Self {
        Self::new(
            "FieldValueForbidden",
            field,
            with_detail("Forbidden", detail),
        )
    }
}

fn with_detail(body: &str, detail: &str) -> String {
    if detail.is_empty() {
        body.to_owned()
    } else {
        format!("{body}: {detail}")
    }
}

/// A string quoted as Go's `%q` does (close enough for field errors).
fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

/// A bad value printed as upstream's field errors print it: strings quoted,
/// numbers and booleans bare, anything else as JSON.
fn go_value(value: &Value) -> String {
    match value {
        Value::String(s) => quote(s),
        Value::Null => "null".to_owned(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => go_float(f),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

/// A float as Go's `%v` prints a float64: `1.5`, `10`, `1e+21`.
fn go_float(f: f64) -> String {
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e21 {
        format!("{f:.0}")
    } else if f.abs() >= 1e21 || (f != 0.0 && f.abs() < 1e-4) {
        let s = format!("{f:e}");
        // Rust writes `1e21`; Go writes `1e+21`.
        match s.split_once('e') {
            Some((m, e)) if !e.starts_with('-') => format!("{m}e+{e}"),
            _ => s,
        }
    } else {
        f.to_string()
    }
}

/// Appends a field to a path: `spec` + `foo` -> `spec.foo`.
fn child_path(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// Unknown field paths of an object of a built-in kind, e.g. `["spec.foo",
/// "spec.template.spec.containers[0].imagePullPolice"]`, sorted. The API
/// server words each as upstream does: `unknown field "spec.foo"` (a
/// `Warning` header for `fieldValidation=Warn`; for `Strict` a 400 with
/// `strict decoding error: unknown field "spec.foo", ...`).
///
/// Maps (`additionalProperties`) are walked per value, arrays per item;
/// schemas with `x-kubernetes-preserve-unknown-fields` or without properties
/// (`RawExtension`, `FieldsV1`) accept anything, and string-like leaves
/// (`IntOrString`, `Quantity`, `Time`) have no fields. Kinds without a
/// built-in schema (custom resources) report nothing: prune them with
/// [`CrdSchema::prune`].
pub fn unknown_fields(api_version: &str, kind: &str, obj: &Value) -> Vec<String> {
    let Some(schema) = schema_for(api_version, kind) else {
        return Vec::new();
    };
    let mut walk = UnknownWalk::default();
    walk.visit(&schema, schema.root(), obj, 0);
    let mut out = walk.paths;
    out.sort();
    out
}

/// Walks `value` against a built-in schema node, removing the fields it
/// does not declare and recording their paths in `out`. `path` is
/// `value`'s path.
pub(crate) fn strip_unknown(
    schema: &KindSchema,
    node: &'static Value,
    value: &mut Value,
    path: &str,
    depth: usize,
    out: &mut Vec<String>,
) {
    let mut walk = UnknownWalk {
        path: path.to_string(),
        segments: Some(Vec::new()),
        ..Default::default()
    };
    walk.visit(schema, node, value, depth);
    for at in &walk.found {
        remove_at(value, at);
    }
    out.extend(walk.paths);
}

/// One step of a path inside a value.
#[derive(Clone, Debug)]
enum Segment {
    Key(String),
    Index(usize),
}

/// A read-only walk for fields a built-in schema does not declare.
#[derive(Default)]
struct UnknownWalk {
    /// The current value's path, grown and cut back as the walk goes, so
    /// only what is reported allocates.
    path: String,
    /// The same path as segments, kept only when the fields are to be
    /// removed afterwards.
    segments: Option<Vec<Segment>>,
    /// Reported paths, as text.
    paths: Vec<String>,
    /// Reported paths, as segments (when `segments` is kept).
    found: Vec<Vec<Segment>>,
}

impl UnknownWalk {
    fn visit(&mut self, schema: &KindSchema, node: &'static Value, value: &Value, depth: usize) {
        if depth > MAX_DEPTH {
            return;
        }
        let node = schema.resolve(node);
        if node.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
            return;
        }
        let len = self.path.len();
        match value {
            Value::Object(map) => {
                let props = node.get("properties").and_then(Value::as_object);
                let additional = node.get("additionalProperties").filter(|a| a.is_object());
                if props.is_none() && additional.is_none() {
                    return;
                }
                for (k, v) in map {
                    if len > 0 {
                        self.path.push('.');
                    }
                    self.path.push_str(k);
                    self.enter(|| Segment::Key(k.clone()));
                    match props.and_then(|p| p.get(k)).or(additional) {
                        Some(child) => self.visit(schema, child, v, depth + 1),
                        None => self.report(),
                    }
                    self.leave(len);
                }
            }
            Value::Array(items) => {
                if let Some(item_schema) = node.get("items") {
                    for (i, v) in items.iter().enumerate() {
                        use std::fmt::Write as _;
                        let _ = write!(self.path, "[{i}]");
                        self.enter(|| Segment::Index(i));
                        self.visit(schema, item_schema, v, depth + 1);
                        self.leave(len);
                    }
                }
            }
            _ => {}
        }
    }

    fn enter(&mut self, segment: impl FnOnce() -> Segment) {
        if let Some(s) = &mut self.segments {
            s.push(segment());
        }
    }

    fn leave(&mut self, len: usize) {
        self.path.truncate(len);
        if let Some(s) = &mut self.segments {
            s.pop();
        }
    }

    fn report(&mut self) {
        self.paths.push(self.path.clone());
        if let Some(s) = &self.segments {
            self.found.push(s.clone());
        }
    }
}

/// Removes what `at` names inside `value`, if it is there.
fn remove_at(value: &mut Value, at: &[Segment]) {
    match at {
        [] => {}
        [Segment::Key(k)] => {
            if let Some(m) = value.as_object_mut() {
                m.remove(k);
            }
        }
        [Segment::Index(_)] => {}
        [Segment::Key(k), rest @ ..] => {
            if let Some(child) = value.get_mut(k.as_str()) {
                remove_at(child, rest);
            }
        }
        [Segment::Index(i), rest @ ..] => {
            if let Some(child) = value.get_mut(*i) {
                remove_at(child, rest);
            }
        }
    }
}

#[cfg(test)]
mod tests;
