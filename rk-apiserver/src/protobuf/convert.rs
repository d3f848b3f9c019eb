//! From a parsed prost tree to the object's JSON, walking the kind's
//! OpenAPI schema to restore JSON field names and the special encodings
//! (times, int-or-string, quantities, raw extensions, bytes).

use base64::Engine as _;
use serde_json::{Map, Value, json};

use super::debug_tree::Node;
use crate::openapi::KindSchema;

/// prost's (heck's) snake_case of a JSON field name: `clusterIP` ->
/// `cluster_ip`, `externalIPs` -> `external_i_ps`, `hostPID` -> `host_pid`.
pub fn snake(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut words: Vec<String> = Vec::new();
    let mut cur = String::new();
    for i in 0..chars.len() {
        let c = chars[i];
        if !c.is_alphanumeric() {
            if !cur.is_empty() {
                words.push(std::mem::take(&mut cur));
            }
            continue;
        }
        let prev = if i > 0 { Some(chars[i - 1]) } else { None };
        let next = chars.get(i + 1).copied();
        let boundary = match prev {
            Some(p) if c.is_uppercase() => {
                p.is_lowercase()
                    || p.is_ascii_digit()
                    || (p.is_uppercase() && next.is_some_and(|n| n.is_lowercase()))
            }
            _ => false,
        };
        if boundary && !cur.is_empty() {
            words.push(std::mem::take(&mut cur));
        }
        cur.extend(c.to_lowercase());
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words.join("_")
}

fn ref_name(schema: &Value) -> Option<&str> {
    let r = schema.get("$ref").and_then(Value::as_str).or_else(|| {
        schema
            .get("allOf")?
            .as_array()?
            .first()?
            .get("$ref")?
            .as_str()
    })?;
    r.rsplit('/').next()
}

fn field<'a>(fields: &'a [(String, Node)], name: &str) -> Option<&'a Node> {
    fields.iter().find(|(n, _)| n == name).map(|(_, v)| v)
}

fn num(n: Option<&Node>) -> i64 {
    match n {
        Some(Node::Num(s)) => s.parse().unwrap_or(0),
        _ => 0,
    }
}

fn bytes(n: &Node) -> Vec<u8> {
    match n {
        Node::List(items) => items
            .iter()
            .filter_map(|i| {
                if let Node::Num(s) = i {
                    s.parse::<u8>().ok()
                } else {
                    None
                }
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// A `Time` or `MicroTime`. Go writes the zero time as an empty message
/// (no seconds), which reads back as no time at all — JSON's `null`.
fn time(fields: &[(String, Node)], micro: bool) -> Option<Value> {
    if !matches!(field(fields, "seconds"), Some(Node::Num(_))) {
        return None;
    }
    let secs = num(field(fields, "seconds"));
    let nanos = num(field(fields, "nanos"));
    let Ok(ts) = jiff::Timestamp::new(secs, nanos as i32) else {
        return None;
    };
    Some(if micro {
        json!(ts.strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string())
    } else {
        json!(ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
    })
}

/// Whether a decoded scalar is its type's zero value.
fn is_zero(node: &Node) -> bool {
    match node {
        Node::Bool(b) => !b,
        Node::Num(n) => n.parse::<f64>().is_ok_and(|v| v == 0.0),
        _ => false,
    }
}

/// Convert `node` as described by `schema` (within `kind`'s definitions).
pub fn to_json(kind: &KindSchema, schema: &'static Value, node: &Node) -> Option<Value> {
    if matches!(node, Node::Null) {
        return None;
    }
    if let Some(name) = ref_name(schema) {
        match node {
            Node::Struct(f) if name.ends_with("meta.v1.Time") => return time(f, false),
            Node::Struct(f) if name.ends_with("meta.v1.MicroTime") => return time(f, true),
            Node::Struct(f) if name.ends_with("util.intstr.IntOrString") => {
                return Some(if num(field(f, "type")) == 1 {
                    match field(f, "str_val") {
                        Some(Node::Str(s)) => json!(s),
                        _ => json!(""),
                    }
                } else {
                    json!(num(field(f, "int_val")))
                });
            }
            Node::Struct(f) if name.ends_with("resource.Quantity") => {
                return match field(f, "string") {
                    Some(Node::Str(s)) => Some(json!(s)),
                    _ => None,
                };
            }
            Node::Struct(f)
                if name.ends_with("runtime.RawExtension") || name.ends_with("meta.v1.FieldsV1") =>
            {
                let raw = field(f, "raw").map(bytes).unwrap_or_default();
                return serde_json::from_slice(&raw).ok();
            }
            Node::Struct(f) if name.ends_with("meta.v1.Duration") => {
                return match field(f, "duration") {
                    Some(Node::Num(n)) => Some(json!(format!(
                        "{}s",
                        n.parse::<i64>().unwrap_or(0) / 1_000_000_000
                    ))),
                    _ => None,
                };
            }
            _ => {}
        }
    }
    let definition =
        ref_name(schema).or_else(|| std::ptr::eq(schema, kind.root()).then(|| kind.name()));
    let schema = kind.resolve(schema);
    match node {
        Node::Null => None,
        Node::Bool(b) => Some(json!(b)),
        Node::Num(s) => serde_json::from_str::<Value>(s).ok(),
        Node::Str(s) => Some(json!(s)),
        Node::List(items) => {
            if schema.get("format").and_then(Value::as_str) == Some("byte") {
                return Some(json!(
                    base64::engine::general_purpose::STANDARD.encode(bytes(node))
                ));
            }
            if items.is_empty() {
                return None;
            }
            let item_schema: &'static Value = schema.get("items").unwrap_or(&Value::Null);
            Some(Value::Array(
                items
                    .iter()
                    .filter_map(|i| to_json(kind, item_schema, i))
                    .collect(),
            ))
        }
        Node::Map(entries) => {
            if entries.is_empty() {
                return None;
            }
            let value_schema: &'static Value =
                schema.get("additionalProperties").unwrap_or(&Value::Null);
            let mut out = Map::new();
            for (k, v) in entries {
                let Node::Str(k) = k else { continue };
                if let Some(v) = to_json(kind, value_schema, v) {
                    out.insert(k.clone(), v);
                }
            }
            Some(Value::Object(out))
        }
        Node::Struct(fields) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let required = schema.get("required").and_then(Value::as_array);
            let unset_if_zero = definition.map_or(&[][..], super::omitempty::zero_means_unset);
            let mut out = Map::new();
            for (name, v) in fields {
                let (json_name, sub): (String, &'static Value) = match props {
                    Some(p) => match p.iter().find(|(k, _)| snake(k) == *name || *k == name) {
                        Some((k, s)) => (k.clone(), s),
                        None => continue,
                    },
                    None => (name.clone(), &Value::Null),
                };
                // Go's protobuf marshaller writes every non-pointer string, so
                // an empty one is an unset `omitempty` field, as JSON would
                // have omitted it; only a required field keeps its "".
                let is_required =
                    || required.is_some_and(|r| r.iter().any(|f| f.as_str() == Some(&json_name)));
                if matches!(v, Node::Str(s) if s.is_empty()) && !is_required() {
                    continue;
                }
                if is_zero(v) && unset_if_zero.contains(&json_name.as_str()) {
                    continue;
                }
                if let Some(v) = to_json(kind, sub, v) {
                    out.insert(json_name, v);
                }
            }
            Some(Value::Object(out))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake_case_matches_prost_field_names() {
        assert_eq!(snake("clusterIP"), "cluster_ip");
        assert_eq!(snake("externalIPs"), "external_i_ps");
        assert_eq!(snake("hostPID"), "host_pid");
        assert_eq!(snake("apiVersion"), "api_version");
        assert_eq!(snake("podCIDRs"), "pod_cid_rs");
        assert_eq!(
            snake("x-kubernetes-int-or-string"),
            "x_kubernetes_int_or_string"
        );
    }
}
