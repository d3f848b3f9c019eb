//! Component schemas and catalogue entries of CustomResourceDefinitions, as
//! upstream's CRD OpenAPI builder publishes them.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, CustomResourceDefinitionVersion,
};
use rk_core::catalogue::{ResourceInfo, STANDARD_VERBS, Scope};
use serde_json::{Map, Value, json};

use super::builtin::{
    API_VERSION_DESCRIPTION, KIND_DESCRIPTION, LIST_META, LIST_META_DESCRIPTION, OBJECT_META,
    OBJECT_META_DESCRIPTION, add_gvk,
};
use super::paths::Flavor;

/// Deepest schema nesting the conversions follow; deeper nodes are kept as is.
const MAX_DEPTH: usize = 128;

/// Upstream's definition name for a custom kind: the group reversed, then
/// version and kind (`stable.example.com`, `v1`, `CronTab` ->
/// `com.example.stable.v1.CronTab`).
pub fn definition_name(group: &str, version: &str, kind: &str) -> String {
    let reversed: Vec<&str> = group.split('.').rev().collect();
    format!("{}.{version}.{kind}", reversed.join("."))
}

/// The served versions of a CRD as catalogue entries.
pub(crate) fn resource_infos(crd: &CustomResourceDefinition) -> Vec<ResourceInfo> {
    let spec = &crd.spec;
    let scope = if spec.scope == "Cluster" {
        Scope::Cluster
    } else {
        Scope::Namespaced
    };
    spec.versions
        .iter()
        .filter(|v| v.served)
        .map(|v| {
            let mut subresources = Vec::new();
            if let Some(sub) = &v.subresources {
                if sub.status.is_some() {
                    subresources.push("status".to_owned());
                }
                if sub.scale.is_some() {
                    subresources.push("scale".to_owned());
                }
            }
            ResourceInfo {
                group: spec.group.clone(),
                version: v.name.clone(),
                kind: spec.names.kind.clone(),
                plural: spec.names.plural.clone(),
                singular: spec
                    .names
                    .singular
                    .clone()
                    .unwrap_or_else(|| spec.names.kind.to_lowercase()),
                short_names: spec.names.short_names.clone().unwrap_or_default(),
                categories: spec.names.categories.clone().unwrap_or_default(),
                scope,
                verbs: STANDARD_VERBS.iter().map(|v| (*v).to_owned()).collect(),
                subresources,
                stored: true,
            }
        })
        .collect()
}

/// The version entry of a CRD, if it declares `version`.
pub(crate) fn crd_version<'a>(
    crd: &'a CustomResourceDefinition,
    version: &str,
) -> Option<&'a CustomResourceDefinitionVersion> {
    crd.spec.versions.iter().find(|v| v.name == version)
}

/// The kind and list definitions of one CRD version: `(name, schema)` pairs.
pub(crate) fn definitions(
    flavor: Flavor,
    crd: &CustomResourceDefinition,
    version: &str,
) -> Vec<(String, Value)> {
    let group = &crd.spec.group;
    let kind = &crd.spec.names.kind;
    let list_kind = crd
        .spec
        .names
        .list_kind
        .clone()
        .unwrap_or_else(|| format!("{kind}List"));
    let kind_name = definition_name(group, version, kind);
    let list_name = definition_name(group, version, &list_kind);

    let schema = crd_version(crd, version)
        .and_then(|v| v.schema.as_ref())
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .and_then(|s| serde_json::to_value(s).ok());
    let mut root = match schema {
        Some(Value::Object(map)) => map,
        _ => {
            let mut m = Map::new();
            m.insert("type".into(), "object".into());
            m.insert("x-kubernetes-preserve-unknown-fields".into(), true.into());
            m
        }
    };
    if flavor == Flavor::V2 {
        let mut value = Value::Object(std::mem::take(&mut root));
        to_v2(&mut value, 0);
        if let Value::Object(map) = value {
            root = map;
        }
    }
    root.entry("type").or_insert_with(|| "object".into());
    let props = root
        .entry("properties")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(props) = props {
        props.insert(
            "apiVersion".into(),
            json!({"type": "string", "description": API_VERSION_DESCRIPTION}),
        );
        props.insert(
            "kind".into(),
            json!({"type": "string", "description": KIND_DESCRIPTION}),
        );
        props.insert(
            "metadata".into(),
            meta_ref(flavor, OBJECT_META, OBJECT_META_DESCRIPTION),
        );
    }
    add_gvk(&mut root, group, version, kind);

    let mut list = Map::new();
    list.insert(
        "description".into(),
        format!("{list_kind} is a list of {kind}").into(),
    );
    list.insert("type".into(), "object".into());
    list.insert("required".into(), json!(["items"]));
    list.insert(
        "properties".into(),
        json!({
            "apiVersion": {"type": "string", "description": API_VERSION_DESCRIPTION},
            "items": {
                "type": "array",
                "description": format!("List of {}. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md", crd.spec.names.plural),
                "items": flavor.reference(&kind_name),
            },
            "kind": {"type": "string", "description": KIND_DESCRIPTION},
            "metadata": meta_ref(flavor, LIST_META, LIST_META_DESCRIPTION),
        }),
    );
    add_gvk(&mut list, group, version, &list_kind);
    vec![
        (kind_name, Value::Object(root)),
        (list_name, Value::Object(list)),
    ]
}

/// A described reference: `allOf` wrapped in v3 (siblings of `$ref` are
/// ignored there), plain `$ref` with siblings in v2, as upstream writes them.
pub(crate) fn meta_ref(flavor: Flavor, name: &str, description: &str) -> Value {
    match flavor {
        Flavor::V3 => json!({
            "allOf": [flavor.reference(name)],
            "default": {},
            "description": description,
        }),
        Flavor::V2 => {
            let mut r = flavor.reference(name);
            if let Value::Object(m) = &mut r {
                m.insert("description".into(), description.into());
            }
            r
        }
    }
}

/// Drops what swagger 2.0 cannot express, as upstream's v2 conversion does:
/// `nullable` (and the `type` of nullable nodes), `oneOf`/`anyOf`/`not`, and
/// the `type` of int-or-string nodes.
fn to_v2(value: &mut Value, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    let Value::Object(map) = value else {
        return;
    };
    if map.remove("nullable") == Some(Value::Bool(true)) {
        map.remove("type");
    }
    map.remove("oneOf");
    map.remove("anyOf");
    map.remove("not");
    if map.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        map.remove("type");
    }
    for key in ["properties", "patternProperties", "definitions"] {
        if let Some(Value::Object(children)) = map.get_mut(key) {
            children.values_mut().for_each(|c| to_v2(c, depth + 1));
        }
    }
    for key in ["items", "additionalProperties", "additionalItems"] {
        if let Some(child) = map.get_mut(key) {
            match child {
                Value::Array(items) => items.iter_mut().for_each(|c| to_v2(c, depth + 1)),
                other => to_v2(other, depth + 1),
            }
        }
    }
    if let Some(Value::Array(all)) = map.get_mut("allOf") {
        all.iter_mut().for_each(|c| to_v2(c, depth + 1));
    }
}
