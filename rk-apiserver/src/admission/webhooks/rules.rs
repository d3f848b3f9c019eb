//! Whether a webhook is called for a write: its rules, then its namespace
//! and object selectors (upstream's `webhook/predicates`).

use std::collections::BTreeMap;

use rk_core::k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use rk_core::labels::Selector;
use serde_json::Value;

use super::Attributes;
use crate::error::ApiError;
use crate::state::ApiState;

/// Whether `webhook` (one entry of `webhooks`) wants this write.
pub(crate) async fn matches(
    state: &ApiState,
    attrs: &Attributes<'_>,
    webhook: &Value,
    obj: Option<&Value>,
    old: Option<&Value>,
) -> Result<bool, ApiError> {
    let any_rule = webhook["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|rule| rule_matches(rule, attrs));
    if !any_rule {
        return Ok(false);
    }
    let object_labels =
        |o: Option<&Value>| labels(o.map_or(&Value::Null, |o| &o["metadata"]["labels"]));
    let object_selector = &webhook["objectSelector"];
    if !is_everything(object_selector)
        && !selects(object_selector, &object_labels(obj))
        && !selects(object_selector, &object_labels(old))
    {
        return Ok(false);
    }
    let namespace_selector = &webhook["namespaceSelector"];
    if is_everything(namespace_selector) {
        return Ok(true);
    }
    let info = attrs.info;
    if info.group.is_empty() && info.kind == "Namespace" {
        // A Namespace is selected by its own labels.
        return Ok(selects(namespace_selector, &object_labels(obj.or(old))));
    }
    let Some(ns) = attrs.namespace.filter(|_| info.scope.is_namespaced()) else {
        // Cluster-scoped objects are not in any namespace to select.
        return Ok(true);
    };
    Ok(selects(
        namespace_selector,
        &namespace_labels(state, ns).await?,
    ))
}

/// A rule (`operations`, `apiGroups`, `apiVersions`, `resources`, `scope`)
/// against the write.
pub(crate) fn rule_matches(rule: &Value, attrs: &Attributes<'_>) -> bool {
    let listed = |key: &str, want: &str| {
        rule[key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .any(|v| v == "*" || v == want)
    };
    let info = attrs.info;
    if !listed("operations", attrs.operation.as_str())
        || !listed("apiGroups", &info.group)
        || !listed("apiVersions", &info.version)
    {
        return false;
    }
    let resource_listed = rule["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .any(|entry| {
            let (resource, sub) = entry.split_once('/').unwrap_or((entry, ""));
            (resource == "*" || resource == info.plural) && (sub == "*" || sub == attrs.subresource)
        });
    if !resource_listed {
        return false;
    }
    // A policy's rules may name objects (`resourceNames`); empty is all.
    let names = rule["resourceNames"].as_array().filter(|n| !n.is_empty());
    if let Some(names) = names
        && !names.iter().any(|n| n.as_str() == Some(attrs.name))
    {
        return false;
    }
    match rule["scope"].as_str().unwrap_or("*") {
        "Cluster" => !info.scope.is_namespaced(),
        "Namespaced" => info.scope.is_namespaced(),
        _ => true,
    }
}

fn labels(value: &Value) -> BTreeMap<String, String> {
    value
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect()
}

/// An absent or empty selector selects everything.
fn is_everything(selector: &Value) -> bool {
    selector.as_object().is_none_or(|m| {
        m.values().all(|v| {
            v.is_null()
                || v.as_object().is_some_and(|o| o.is_empty())
                || v.as_array().is_some_and(|a| a.is_empty())
        })
    })
}

/// Whether `selector` (a `LabelSelector`, absent or empty for everything)
/// selects an object with `labels` (its `metadata.labels`).
pub(crate) fn selects_labels(selector: &Value, labels_value: &Value) -> bool {
    is_everything(selector) || selects(selector, &labels(labels_value))
}

/// Whether `selector` (a `LabelSelector`) selects `labels`; one that cannot
/// be read selects nothing.
fn selects(selector: &Value, labels: &BTreeMap<String, String>) -> bool {
    serde_json::from_value::<LabelSelector>(selector.clone())
        .ok()
        .and_then(|s| Selector::try_from(&s).ok())
        .is_some_and(|s| s.matches(labels))
}

/// The labels of namespace `name`, from the watch cache (none if it is not
/// there).
async fn namespace_labels(
    state: &ApiState,
    name: &str,
) -> Result<BTreeMap<String, String>, ApiError> {
    let Some(namespaces) = state.builtin.get("", "v1", "namespaces") else {
        return Ok(BTreeMap::new());
    };
    let key = namespaces.info.storage_key(None, name);
    Ok(namespaces
        .cache(&state.caches)
        .await?
        .get(&key)
        .map(|ns| ns.labels.clone())
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use rk_core::catalogue::Catalogue;
    use serde_json::json;

    use super::super::Operation;
    use super::*;

    fn attrs<'a>(
        info: &'a rk_core::catalogue::ResourceInfo,
        sub: &'a str,
        op: Operation,
    ) -> Attributes<'a> {
        Attributes {
            info,
            subresource: sub,
            operation: op,
            namespace: Some("default"),
            name: "x",
            dry_run: false,
        }
    }

    #[test]
    fn rules_match_resources_subresources_operations_and_scope() {
        let cat = Catalogue::builtin();
        let pods = cat.get("", "v1", "pods").unwrap();
        let nodes = cat.get("", "v1", "nodes").unwrap();
        let rule = |resources: Value, ops: Value, scope: &str| {
            json!({"apiGroups": [""], "apiVersions": ["v1"], "resources": resources,
                   "operations": ops, "scope": scope})
        };
        let create = attrs(&pods, "", Operation::Create);
        let status = attrs(&pods, "status", Operation::Update);
        assert!(rule_matches(
            &rule(json!(["pods"]), json!(["CREATE"]), "*"),
            &create
        ));
        assert!(!rule_matches(
            &rule(json!(["pods"]), json!(["UPDATE"]), "*"),
            &create
        ));
        assert!(!rule_matches(
            &rule(json!(["pods"]), json!(["*"]), "*"),
            &status
        ));
        assert!(rule_matches(
            &rule(json!(["pods/status"]), json!(["*"]), "*"),
            &status
        ));
        assert!(rule_matches(
            &rule(json!(["pods/*"]), json!(["*"]), "*"),
            &status
        ));
        assert!(rule_matches(
            &rule(json!(["pods/*"]), json!(["*"]), "*"),
            &create
        ));
        assert!(rule_matches(
            &rule(json!(["*/*"]), json!(["*"]), "*"),
            &status
        ));
        assert!(!rule_matches(
            &rule(json!(["*"]), json!(["*"]), "*"),
            &status
        ));
        assert!(rule_matches(
            &rule(json!(["*"]), json!(["*"]), "Namespaced"),
            &create
        ));
        assert!(!rule_matches(
            &rule(json!(["*"]), json!(["*"]), "Cluster"),
            &create
        ));
        let node = attrs(&nodes, "", Operation::Delete);
        assert!(rule_matches(
            &rule(json!(["*"]), json!(["DELETE"]), "Cluster"),
            &node
        ));
        let other_group = json!({"apiGroups": ["apps"], "apiVersions": ["*"], "resources": ["*"], "operations": ["*"]});
        assert!(!rule_matches(&other_group, &create));
    }

    #[test]
    fn selectors_select_by_labels_and_empty_ones_select_everything() {
        let mut labels = BTreeMap::new();
        labels.insert("env".to_string(), "prod".to_string());
        assert!(is_everything(&json!({})));
        assert!(is_everything(&json!({"matchLabels": {}})));
        assert!(!is_everything(&json!({"matchLabels": {"env": "prod"}})));
        assert!(selects(&json!({"matchLabels": {"env": "prod"}}), &labels));
        assert!(!selects(&json!({"matchLabels": {"env": "dev"}}), &labels));
        let not_in =
            json!({"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["prod"]}]});
        assert!(!selects(&not_in, &labels));
        assert!(selects(&not_in, &BTreeMap::new()));
    }
}
