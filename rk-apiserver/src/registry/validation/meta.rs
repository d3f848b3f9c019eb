//! `metadata` validation: names, namespaces, labels, annotations.

use rk_core::catalogue::ResourceInfo;
use rk_core::labels::validation as names;
use serde_json::Value;

use super::{Cause, invalid, required};

/// Kinds whose names must be DNS-1123 labels rather than subdomains.
fn label_named(info: &ResourceInfo) -> bool {
    info.group.is_empty()
        && matches!(
            info.kind.as_str(),
            "Namespace" | "Service" | "ReplicationController"
        )
}

/// Kinds whose names are only checked for path safety (RBAC, events...).
fn path_segment_named(info: &ResourceInfo) -> bool {
    matches!(
        (info.group.as_str(), info.kind.as_str()),
        ("rbac.authorization.k8s.io", _) | ("", "Event") | ("events.k8s.io", "Event")
    ) || info.kind == "CustomResourceDefinition"
}

/// Validate `metadata`.
pub fn object_meta(info: &ResourceInfo, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut out = Vec::new();
    let meta = &obj["metadata"];
    match meta["name"].as_str() {
        None | Some("") => out.push(required("metadata.name")),
        Some(name) => {
            let problems = if path_segment_named(info) {
                if name == "." || name == ".." || name.contains('/') || name.contains('%') {
                    vec![format!("may not contain '/' or '%' or be '.' or '..'")]
                } else {
                    Vec::new()
                }
            } else if label_named(info) {
                names::validate_dns1123_label(name)
            } else {
                names::validate_dns1123_subdomain(name)
            };
            for p in problems {
                out.push(invalid("metadata.name", &Value::String(name.into()), &p));
            }
        }
    }
    if info.scope.is_namespaced() && meta["namespace"].as_str().is_none_or(str::is_empty) {
        out.push(required("metadata.namespace"));
    }
    if let Some(old) = old
        && old["metadata"]["deletionTimestamp"].is_string()
    {
        let before = crate::registry::meta::finalizers(old);
        let mut added: Vec<String> = crate::registry::meta::finalizers(obj)
            .into_iter()
            .filter(|f| !before.contains(f))
            .collect();
        added.sort();
        added.dedup();
        if !added.is_empty() {
            let listed = added
                .iter()
                .map(|f| format!("{f:?}"))
                .collect::<Vec<_>>()
                .join(", ");
            out.push(super::forbidden(
                "metadata.finalizers",
                &format!(
                    "no new finalizers can be added if the object is being deleted, found new finalizers []string{{{listed}}}"
                ),
            ));
        }
    }
    if let Some(labels) = meta["labels"].as_object() {
        for (k, v) in labels {
            for p in names::validate_label_key(k) {
                out.push(invalid("metadata.labels", &Value::String(k.clone()), &p));
            }
            match v.as_str() {
                Some(v) => {
                    for p in names::validate_label_value(v) {
                        out.push(invalid("metadata.labels", &Value::String(v.into()), &p));
                    }
                }
                None => out.push(invalid("metadata.labels", v, "must be a string")),
            }
        }
    }
    if let Some(ann) = meta["annotations"].as_object() {
        let mut total = 0;
        for (k, v) in ann {
            for p in names::validate_qualified_name(k) {
                out.push(invalid(
                    "metadata.annotations",
                    &Value::String(k.clone()),
                    &p,
                ));
            }
            total += k.len() + v.as_str().map(str::len).unwrap_or(0);
        }
        if total > 256 * 1024 {
            out.push(super::Cause {
                reason: super::CauseType::TooLong,
                field: "metadata.annotations".into(),
                message: "must have at most 262144 bytes".into(),
                value: None,
            });
        }
    }
    if let Some(old) = old
        && old["metadata"]["name"] != meta["name"]
    {
        out.push(invalid(
            "metadata.name",
            &meta["name"],
            "field is immutable",
        ));
    }
    out
}
