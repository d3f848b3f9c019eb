//! Validation and pruning of custom resources against a CRD version's
//! structural `openAPIV3Schema`, with kube-openapi's messages.

use std::collections::BTreeMap;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaProps;
use regex::Regex;
use serde_json::{Map, Value};

use super::{Cause, MAX_DEPTH, child_path, go_float, strip_unknown};
use crate::openapi;

/// Errors building a [`CrdSchema`].
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// The schema nests deeper than [`MAX_DEPTH`].
    #[error("schema at {path} is nested more than {max} levels deep")]
    TooDeep {
        /// Where the limit was reached.
        path: String,
        /// The limit.
        max: usize,
    },
    /// A `pattern` is not a valid regular expression.
    #[error("pattern {pattern:?} at {path} is not a valid regular expression: {message}")]
    Pattern {
        /// Where the pattern is.
        path: String,
        /// The pattern.
        pattern: String,
        /// The parser's complaint.
        message: String,
    },
    /// The schema could not be converted to JSON.
    #[error("schema cannot be read: {0}")]
    Json(String),
}

/// `additionalProperties`: a boolean or a schema.
#[derive(Debug, Clone)]
enum Additional {
    Allowed(bool),
    Schema(Box<Node>),
}

/// One compiled schema node.
#[derive(Debug, Clone, Default)]
struct Node {
    ty: Option<String>,
    nullable: bool,
    format: Option<String>,
    properties: BTreeMap<String, Node>,
    additional: Option<Additional>,
    items: Option<Box<Node>>,
    required: Vec<String>,
    enumeration: Option<Vec<Value>>,
    minimum: Option<f64>,
    maximum: Option<f64>,
    exclusive_minimum: bool,
    exclusive_maximum: bool,
    multiple_of: Option<f64>,
    min_length: Option<u64>,
    max_length: Option<u64>,
    pattern: Option<(String, Regex)>,
    min_items: Option<u64>,
    max_items: Option<u64>,
    unique_items: bool,
    min_properties: Option<u64>,
    max_properties: Option<u64>,
    all_of: Vec<Node>,
    any_of: Vec<Node>,
    one_of: Vec<Node>,
    not: Option<Box<Node>>,
    preserve_unknown: bool,
    int_or_string: bool,
    embedded_resource: bool,
    list_type: Option<String>,
    list_map_keys: Vec<String>,
    rules: Vec<Rule>,
}

/// One `x-kubernetes-validations` entry.
#[derive(Debug, Clone, Default)]
struct Rule {
    rule: String,
    message: Option<String>,
    message_expression: Option<String>,
    reason: Option<String>,
    field_path: Option<String>,
}

impl Rule {
    /// A transition rule compares with the old value, so it runs only on
    /// updates where the old object has one at the same place.
    fn is_transition(&self) -> bool {
        self.rule.contains("oldSelf")
    }
}

/// A CRD version's structural schema, compiled for validating and pruning
/// custom resources.
///
/// [`CrdSchema::validate`] reports what kube-apiserver's schema validation
/// reports (types, required, enum, bounds, lengths, patterns, item counts,
/// uniqueness, formats, nullable, `oneOf`/`anyOf`/`allOf`/`not`,
/// `x-kubernetes-int-or-string`, `x-kubernetes-list-type` set/map keys), with
/// upstream's field paths and messages. [`CrdSchema::prune`] drops fields the
/// schema does not specify, as upstream's pruning does.
#[derive(Debug, Clone)]
pub struct CrdSchema {
    root: Node,
}

impl CrdSchema {
    /// Compiles a CRD version's `openAPIV3Schema`.
    pub fn new(props: &JSONSchemaProps) -> Result<Self, SchemaError> {
        let value = serde_json::to_value(props).map_err(|e| SchemaError::Json(e.to_string()))?;
        Self::from_value(&value)
    }

    /// Compiles an `openAPIV3Schema` given as JSON.
    pub fn from_value(schema: &Value) -> Result<Self, SchemaError> {
        Ok(CrdSchema {
            root: compile(schema, "openAPIV3Schema", 0)?,
        })
    }

    /// Validates a custom resource (after pruning), returning every failure.
    /// `apiVersion`, `kind` and `metadata` are left to the API server.
    pub fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut out = Vec::new();
        if let Some(path) = too_deep(obj, MAX_DEPTH) {
            out.push(Cause::invalid(
                &path,
                &Value::String(String::new()),
                &format!("must not be nested more than {MAX_DEPTH} levels deep"),
            ));
            return out;
        }
        validate(&self.root, obj, "", 0, &mut out, true);
        check_rules(&self.root, obj, None, "", 0, &mut out);
        out
    }

    /// [`validate`](Self::validate) for an update from `old`: transition
    /// rules (`oldSelf`) run too, wherever `old` has a value.
    pub fn validate_update(&self, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
        let Some(old) = old else {
            return self.validate(obj);
        };
        let mut out = Vec::new();
        if too_deep(obj, MAX_DEPTH).is_some() {
            return self.validate(obj);
        }
        validate(&self.root, obj, "", 0, &mut out, true);
        check_rules(&self.root, obj, Some(old), "", 0, &mut out);
        out
    }

    /// Removes fields the schema does not specify (unless
    /// `x-kubernetes-preserve-unknown-fields: true` covers them) and returns
    /// their paths, sorted (`spec.colour`, `spec.items[0].foo`). `apiVersion`
    /// and `kind` are kept; `metadata` is pruned down to ObjectMeta's fields.
    pub fn prune(&self, obj: &mut Value) -> Vec<String> {
        let mut out = Vec::new();
        prune(&self.root, obj, "", 0, &mut out, true);
        out.sort();
        out
    }
}

fn compile(v: &Value, path: &str, depth: usize) -> Result<Node, SchemaError> {
    if depth > MAX_DEPTH {
        return Err(SchemaError::TooDeep {
            path: path.to_owned(),
            max: MAX_DEPTH,
        });
    }
    let Some(m) = v.as_object() else {
        return Ok(Node::default());
    };
    let s = |k: &str| m.get(k).and_then(Value::as_str).map(str::to_owned);
    let b = |k: &str| m.get(k).and_then(Value::as_bool).unwrap_or(false);
    let f = |k: &str| m.get(k).and_then(Value::as_f64);
    let u = |k: &str| m.get(k).and_then(Value::as_u64);
    let list = |k: &str| -> Result<Vec<Node>, SchemaError> {
        match m.get(k).and_then(Value::as_array) {
            Some(items) => items
                .iter()
                .enumerate()
                .map(|(i, n)| compile(n, &format!("{path}.{k}[{i}]"), depth + 1))
                .collect(),
            None => Ok(Vec::new()),
        }
    };
    let mut node = Node {
        ty: s("type").filter(|t| !t.is_empty()),
        nullable: b("nullable"),
        format: s("format").filter(|t| !t.is_empty()),
        required: string_list(m.get("required")),
        enumeration: m.get("enum").and_then(Value::as_array).cloned(),
        minimum: f("minimum"),
        maximum: f("maximum"),
        exclusive_minimum: b("exclusiveMinimum"),
        exclusive_maximum: b("exclusiveMaximum"),
        multiple_of: f("multipleOf"),
        min_length: u("minLength"),
        max_length: u("maxLength"),
        min_items: u("minItems"),
        max_items: u("maxItems"),
        unique_items: b("uniqueItems"),
        min_properties: u("minProperties"),
        max_properties: u("maxProperties"),
        all_of: list("allOf")?,
        any_of: list("anyOf")?,
        one_of: list("oneOf")?,
        preserve_unknown: b("x-kubernetes-preserve-unknown-fields"),
        int_or_string: b("x-kubernetes-int-or-string"),
        embedded_resource: b("x-kubernetes-embedded-resource"),
        list_type: s("x-kubernetes-list-type"),
        list_map_keys: string_list(m.get("x-kubernetes-list-map-keys")),
        rules: m
            .get("x-kubernetes-validations")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|r| {
                let text = |k: &str| r.get(k).and_then(Value::as_str).map(str::to_owned);
                Some(Rule {
                    rule: text("rule").filter(|r| !r.is_empty())?,
                    message: text("message").filter(|m| !m.is_empty()),
                    message_expression: text("messageExpression").filter(|m| !m.is_empty()),
                    reason: text("reason").filter(|m| !m.is_empty()),
                    field_path: text("fieldPath").filter(|m| !m.is_empty()),
                })
            })
            .collect(),
        ..Node::default()
    };
    if let Some(p) = s("pattern") {
        let re = Regex::new(&p).map_err(|e| SchemaError::Pattern {
            path: path.to_owned(),
            pattern: p.clone(),
            message: e.to_string(),
        })?;
        node.pattern = Some((p, re));
    }
    if let Some(Value::Object(props)) = m.get("properties") {
        for (k, pv) in props {
            let child = compile(pv, &format!("{path}.properties[{k}]"), depth + 1)?;
            node.properties.insert(k.clone(), child);
        }
    }
    node.additional = match m.get("additionalProperties") {
        Some(Value::Bool(allowed)) => Some(Additional::Allowed(*allowed)),
        Some(a @ Value::Object(_)) => Some(Additional::Schema(Box::new(compile(
            a,
            &format!("{path}.additionalProperties"),
            depth + 1,
        )?))),
        _ => None,
    };
    node.items = match m.get("items") {
        Some(i @ Value::Object(_)) => {
            Some(Box::new(compile(i, &format!("{path}.items"), depth + 1)?))
        }
        _ => None,
    };
    if let Some(n @ Value::Object(_)) = m.get("not") {
        node.not = Some(Box::new(compile(n, &format!("{path}.not"), depth + 1)?));
    }
    Ok(node)
}

fn string_list(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// The path of the first place `value` nests deeper than `max`, found
/// without recursion.
fn too_deep(value: &Value, max: usize) -> Option<String> {
    let mut stack: Vec<(&Value, usize)> = vec![(value, 0)];
    while let Some((v, d)) = stack.pop() {
        if d > max {
            return Some(String::new());
        }
        match v {
            Value::Object(m) => stack.extend(m.values().map(|c| (c, d + 1))),
            Value::Array(a) => stack.extend(a.iter().map(|c| (c, d + 1))),
            _ => {}
        }
    }
    None
}

/// The JSON type name kube-openapi reports for a value.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn is_integer(v: &Value) -> bool {
    match v {
        Value::Number(n) => !n.is_f64() || n.as_f64().is_some_and(|f| f.fract() == 0.0),
        _ => false,
    }
}

fn type_matches(ty: &str, v: &Value) -> bool {
    match ty {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "integer" => is_integer(v),
        "number" => v.is_number(),
        _ => true,
    }
}

/// kube-openapi's `<name> in body ...` prefix.
fn in_body(path: &str) -> String {
    format!("{path} in body")
}

fn type_error(path: &str, expected: &str, actual: &str) -> Cause {
    let actual_value = Value::String(actual.to_owned());
    Cause::type_invalid(
        path,
        &actual_value,
        &format!(
            "{} must be of type {expected}: {}",
            in_body(path),
            super::quote(actual)
        ),
    )
}

fn num_string(f: f64) -> String {
    go_float(f)
}

fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

fn validate(
    node: &Node,
    value: &Value,
    path: &str,
    depth: usize,
    out: &mut Vec<Cause>,
    root: bool,
) {
    if depth > MAX_DEPTH {
        return;
    }
    if value.is_null() {
        if node.nullable {
            return;
        }
        if node.int_or_string {
            out.push(type_error(path, "integer,string", "null"));
        } else if let Some(t) = &node.ty {
            out.push(type_error(path, t, "null"));
        }
        return;
    }
    if node.int_or_string {
        if !(is_integer(value) || value.is_string()) {
            out.push(type_error(path, "integer,string", type_name(value)));
            return;
        }
    } else if let Some(t) = &node.ty
        && !type_matches(t, value)
    {
        out.push(type_error(path, t, type_name(value)));
        return;
    }
    validate_format(node, value, path, out);
    if let Some(allowed) = &node.enumeration
        && !allowed.iter().any(|a| json_equal(a, value))
    {
        let values: Vec<String> = allowed
            .iter()
            .map(|a| match a {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect();
        out.push(Cause::not_supported(path, value, &values));
    }
    match value {
        Value::Number(n) => validate_number(node, value, n.as_f64().unwrap_or(0.0), path, out),
        Value::String(s) => validate_string(node, value, s, path, out),
        Value::Array(items) => validate_array(node, items, path, depth, out),
        Value::Object(map) => validate_object(node, map, path, depth, out, root),
        _ => {}
    }
    validate_composition(node, value, path, depth, out);
}

/// Walks the object for `x-kubernetes-validations`, with the old object's
/// value at the same place (by property, map key, or `listType: map` keys)
/// where there is one.
fn check_rules(
    node: &Node,
    value: &Value,
    old: Option<&Value>,
    path: &str,
    depth: usize,
    out: &mut Vec<Cause>,
) {
    if depth > MAX_DEPTH || value.is_null() {
        return;
    }
    validate_rules(node, value, old, path, out);
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let child = match (node.properties.get(k), &node.additional) {
                    (Some(child), _) => child,
                    (None, Some(Additional::Schema(child))) => child,
                    _ => continue,
                };
                let old_child = old.and_then(|o| o.get(k));
                check_rules(child, v, old_child, &child_path(path, k), depth + 1, out);
            }
        }
        Value::Array(items) => {
            let Some(item) = &node.items else {
                return;
            };
            let old_items = old.and_then(Value::as_array);
            for (i, v) in items.iter().enumerate() {
                let old_item = old_items.and_then(|olds| correlated(node, v, olds));
                check_rules(item, v, old_item, &format!("{path}[{i}]"), depth + 1, out);
            }
        }
        _ => {}
    }
}

/// The old element a new one corresponds to: same key fields in a
/// `listType: map` list, the same value in a `set`; none in atomic lists.
fn correlated<'a>(node: &Node, item: &Value, olds: &'a [Value]) -> Option<&'a Value> {
    match node.list_type.as_deref() {
        Some("map") if !node.list_map_keys.is_empty() => olds.iter().find(|o| {
            node.list_map_keys.iter().all(|k| {
                json_equal(
                    o.get(k).unwrap_or(&Value::Null),
                    item.get(k).unwrap_or(&Value::Null),
                )
            })
        }),
        Some("set") => olds.iter().find(|o| json_equal(o, item)),
        _ => None,
    }
}

/// `x-kubernetes-validations`: each rule (CEL, `self` the value here,
/// `oldSelf` the old object's value on an update) that evaluates to false
/// is a cause, with its `message`, `messageExpression`
/// or `failed rule: RULE`, at `fieldPath` below this field if it names one,
/// of its `reason` (`FieldValueInvalid` by default). A rule that cannot be
/// evaluated (rk's CEL lacks Kubernetes' own libraries, such as
/// `quantity()` or `isURL()`) is not held against the object; a transition
/// rule (one using `oldSelf`) runs only where there is an old value.
fn validate_rules(
    node: &Node,
    value: &Value,
    old: Option<&Value>,
    path: &str,
    out: &mut Vec<Cause>,
) {
    for rule in node
        .rules
        .iter()
        .filter(|r| old.is_some() || !r.is_transition())
    {
        match crate::cel::eval_rule(&rule.rule, value, old) {
            Ok(Value::Bool(false)) => {}
            Ok(_) => continue,
            Err(error) => {
                tracing::debug!(rule = %rule.rule, %error, "CRD validation rule not evaluated");
                continue;
            }
        }
        let message = rule
            .message_expression
            .as_deref()
            .and_then(|e| match crate::cel::eval_rule(e, value, old) {
                Ok(Value::String(m)) if !m.trim().is_empty() => Some(m),
                _ => None,
            })
            .or_else(|| rule.message.clone())
            .unwrap_or_else(|| format!("failed rule: {}", rule.rule));
        let mut field = path.to_owned();
        if let Some(extra) = &rule.field_path {
            let extra = extra.trim_start_matches('.');
            if field.is_empty() {
                field = extra.to_owned();
            } else if extra.starts_with('[') {
                field.push_str(extra);
            } else {
                field = format!("{field}.{extra}");
            }
        }
        let shown = Value::String(type_name(value).to_owned());
        let cause = match rule.reason.as_deref() {
            Some("FieldValueRequired") => Cause::new(
                "FieldValueRequired",
                &field,
                format!("Required value: {message}"),
            ),
            Some("FieldValueForbidden") => Cause::new(
                "FieldValueForbidden",
                &field,
                format!("Forbidden: {message}"),
            ),
            Some("FieldValueDuplicate") => Cause::new(
                "FieldValueDuplicate",
                &field,
                format!("Duplicate value: {shown}: {message}"),
            ),
            _ => Cause::invalid(&field, &shown, &message),
        };
        out.push(cause);
    }
}

fn validate_format(node: &Node, value: &Value, path: &str, out: &mut Vec<Cause>) {
    let Some(format) = node.format.as_deref() else {
        return;
    };
    let ok = match value {
        Value::String(s) => match format {
            "date-time" | "datetime" => s.parse::<jiff::Timestamp>().is_ok(),
            "date" => s.parse::<jiff::civil::Date>().is_ok() && s.len() == 10,
            "byte" => {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD.decode(s).is_ok()
            }
            "uuid" => is_uuid(s),
            "ipv4" => s.parse::<std::net::Ipv4Addr>().is_ok(),
            "ipv6" => s.parse::<std::net::Ipv6Addr>().is_ok(),
            "int32" | "int64" if node.int_or_string => true,
            _ => true,
        },
        Value::Number(n) if is_integer(value) => {
            let f = n.as_f64().unwrap_or(0.0);
            match format {
                "int32" => n.as_i64().map_or(
                    !n.is_u64() && f >= f64::from(i32::MIN) && f <= f64::from(i32::MAX),
                    |i| i32::try_from(i).is_ok(),
                ),
                "int64" => n.as_i64().is_some() || (n.is_f64() && f.abs() < 9.2e18),
                _ => true,
            }
        }
        _ => true,
    };
    if !ok {
        let shown = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        out.push(Cause::type_invalid(
            path,
            value,
            &format!(
                "{} must be of type {format}: {}",
                in_body(path),
                super::quote(&shown)
            ),
        ));
    }
}

fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    let lens = [8, 4, 4, 4, 12];
    groups.len() == 5
        && groups
            .iter()
            .zip(lens)
            .all(|(g, l)| g.len() == l && g.chars().all(|c| c.is_ascii_hexdigit()))
}

fn validate_number(node: &Node, value: &Value, n: f64, path: &str, out: &mut Vec<Cause>) {
    if let Some(max) = node.maximum {
        let bad = if node.exclusive_maximum {
            n >= max
        } else {
            n > max
        };
        if bad {
            let word = if node.exclusive_maximum {
                "less than"
            } else {
                "less than or equal to"
            };
            out.push(Cause::invalid(
                path,
                value,
                &format!("{} should be {word} {}", in_body(path), num_string(max)),
            ));
        }
    }
    if let Some(min) = node.minimum {
        let bad = if node.exclusive_minimum {
            n <= min
        } else {
            n < min
        };
        if bad {
            let word = if node.exclusive_minimum {
                "greater than"
            } else {
                "greater than or equal to"
            };
            out.push(Cause::invalid(
                path,
                value,
                &format!("{} should be {word} {}", in_body(path), num_string(min)),
            ));
        }
    }
    if let Some(m) = node.multiple_of
        && m > 0.0
    {
        let q = n / m;
        if (q - q.round()).abs() > 1e-9 {
            out.push(Cause::invalid(
                path,
                value,
                &format!(
                    "{} should be a multiple of {}",
                    in_body(path),
                    num_string(m)
                ),
            ));
        }
    }
}

fn validate_string(node: &Node, value: &Value, s: &str, path: &str, out: &mut Vec<Cause>) {
    let len = s.chars().count() as u64;
    if let Some(max) = node.max_length
        && len > max
    {
        out.push(Cause::too_long(path, "value is too long"));
    }
    if let Some(min) = node.min_length
        && len < min
    {
        out.push(Cause::invalid(
            path,
            value,
            &format!("{} should be at least {min} chars long", in_body(path)),
        ));
    }
    if let Some((pattern, re)) = &node.pattern
        && !re.is_match(s)
    {
        out.push(Cause::invalid(
            path,
            value,
            &format!("{} should match '{pattern}'", in_body(path)),
        ));
    }
}

fn validate_array(node: &Node, items: &[Value], path: &str, depth: usize, out: &mut Vec<Cause>) {
    if let Some(item_schema) = &node.items {
        for (i, v) in items.iter().enumerate() {
            validate(
                item_schema,
                v,
                &format!("{path}[{i}]"),
                depth + 1,
                out,
                false,
            );
        }
    }
    let len = items.len();
    if let Some(min) = node.min_items
        && (len as u64) < min
    {
        out.push(Cause::invalid(
            path,
            &Value::from(len),
            &format!("{} should have at least {min} items", in_body(path)),
        ));
    }
    if let Some(max) = node.max_items
        && len as u64 > max
    {
        out.push(Cause::too_many(path, len, "has too many items"));
    }
    if node.unique_items {
        let dup = items
            .iter()
            .enumerate()
            .any(|(i, a)| items[..i].iter().any(|b| json_equal(a, b)));
        if dup {
            out.push(Cause::invalid(
                path,
                &Value::String(String::new()),
                &format!("{} shouldn't contain duplicates", in_body(path)),
            ));
        }
    }
    match node.list_type.as_deref() {
        Some("set") => {
            for (i, a) in items.iter().enumerate() {
                if items[..i].iter().any(|b| json_equal(a, b)) {
                    out.push(Cause::duplicate(&format!("{path}[{i}]"), a));
                }
            }
        }
        Some("map") if !node.list_map_keys.is_empty() => {
            let key_of = |v: &Value| -> Value {
                let mut k = Map::new();
                for name in &node.list_map_keys {
                    if let Some(x) = v.get(name) {
                        k.insert(name.clone(), x.clone());
                    }
                }
                Value::Object(k)
            };
            let keys: Vec<Value> = items.iter().map(key_of).collect();
            for (i, k) in keys.iter().enumerate() {
                if keys[..i].iter().any(|b| json_equal(k, b)) {
                    out.push(Cause::duplicate(&format!("{path}[{i}]"), k));
                }
            }
        }
        _ => {}
    }
}

fn validate_object(
    node: &Node,
    map: &Map<String, Value>,
    path: &str,
    depth: usize,
    out: &mut Vec<Cause>,
    root: bool,
) {
    for r in &node.required {
        let meta_field = r == "metadata" || r == "apiVersion" || r == "kind";
        if (root || node.embedded_resource) && meta_field {
            continue;
        }
        if !map.contains_key(r) {
            out.push(Cause::required(&child_path(path, r), ""));
        }
    }
    for (k, v) in map {
        if (root || node.embedded_resource) && (k == "metadata" || k == "apiVersion" || k == "kind")
        {
            continue;
        }
        let child = child_path(path, k);
        if let Some(p) = node.properties.get(k) {
            validate(p, v, &child, depth + 1, out, false);
        } else if let Some(Additional::Schema(a)) = &node.additional {
            validate(a, v, &child, depth + 1, out, false);
        }
    }
    let count = map.len();
    if let Some(min) = node.min_properties
        && (count as u64) < min
    {
        out.push(Cause::invalid(
            path,
            &Value::from(count),
            &format!("{} should have at least {min} properties", in_body(path)),
        ));
    }
    if let Some(max) = node.max_properties
        && count as u64 > max
    {
        out.push(Cause::too_many(path, count, "has too many items"));
    }
}

fn validate_composition(
    node: &Node,
    value: &Value,
    path: &str,
    depth: usize,
    out: &mut Vec<Cause>,
) {
    let empty = Value::String(String::new());
    let name = super::quote(path);
    if !node.all_of.is_empty() {
        let mut errs = Vec::new();
        for s in &node.all_of {
            validate(s, value, path, depth + 1, &mut errs, false);
        }
        if !errs.is_empty() {
            out.push(Cause::invalid(
                path,
                &empty,
                &format!("{name} must validate all the schemas (allOf)"),
            ));
            out.extend(errs);
        }
    }
    if !node.any_of.is_empty() {
        let mut first_failure: Option<Vec<Cause>> = None;
        let mut ok = false;
        for s in &node.any_of {
            let mut errs = Vec::new();
            validate(s, value, path, depth + 1, &mut errs, false);
            if errs.is_empty() {
                ok = true;
                break;
            }
            first_failure.get_or_insert(errs);
        }
        if !ok {
            out.push(Cause::invalid(
                path,
                &empty,
                &format!("{name} must validate at least one schema (anyOf)"),
            ));
            out.extend(first_failure.unwrap_or_default());
        }
    }
    if !node.one_of.is_empty() {
        let mut valid = 0;
        let mut first_failure: Option<Vec<Cause>> = None;
        for s in &node.one_of {
            let mut errs = Vec::new();
            validate(s, value, path, depth + 1, &mut errs, false);
            if errs.is_empty() {
                valid += 1;
            } else {
                first_failure.get_or_insert(errs);
            }
        }
        if valid == 0 {
            out.push(Cause::invalid(
                path,
                &empty,
                &format!("{name} must validate one and only one schema (oneOf). Found none valid"),
            ));
            out.extend(first_failure.unwrap_or_default());
        } else if valid > 1 {
            out.push(Cause::invalid(
                path,
                &empty,
                &format!("{name} must validate one and only one schema (oneOf). Found {valid} valid alternatives"),
            ));
        }
    }
    if let Some(not) = &node.not {
        let mut errs = Vec::new();
        validate(not, value, path, depth + 1, &mut errs, false);
        if errs.is_empty() {
            out.push(Cause::invalid(
                path,
                &empty,
                &format!("{name} must not validate the schema (not)"),
            ));
        }
    }
}

fn prune(
    node: &Node,
    value: &mut Value,
    path: &str,
    depth: usize,
    out: &mut Vec<String>,
    root: bool,
) {
    if depth > MAX_DEPTH {
        return;
    }
    match value {
        Value::Object(map) => {
            let mut unknown = Vec::new();
            for (k, v) in map.iter_mut() {
                let child = child_path(path, k);
                if root || node.embedded_resource {
                    if k == "apiVersion" || k == "kind" {
                        continue;
                    }
                    if k == "metadata" {
                        if let Some(meta) = openapi::definition(openapi::OBJECT_META_NAME) {
                            strip_unknown(&meta, meta.root(), v, &child, depth + 1, out);
                        }
                        continue;
                    }
                }
                if let Some(p) = node.properties.get(k) {
                    prune(p, v, &child, depth + 1, out, false);
                } else if let Some(Additional::Schema(a)) = &node.additional {
                    prune(a, v, &child, depth + 1, out, false);
                } else if node.preserve_unknown
                    || matches!(node.additional, Some(Additional::Allowed(true)))
                {
                    // Kept as is.
                } else {
                    unknown.push(k.clone());
                    out.push(child);
                }
            }
            for k in unknown {
                map.remove(&k);
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = &node.items {
                for (i, v) in items.iter_mut().enumerate() {
                    prune(
                        item_schema,
                        v,
                        &format!("{path}[{i}]"),
                        depth + 1,
                        out,
                        false,
                    );
                }
            }
        }
        _ => {}
    }
}
