//! RuntimeClass admission, as upstream's `RuntimeClass` plugin does it on a
//! pod's create: a pod naming a RuntimeClass gets the class's fixed
//! overhead and its scheduling (node selector and tolerations); a class
//! that does not exist is refused, and so is an overhead the pod states
//! that the class does not give.

use std::collections::BTreeMap;

use rk_core::quantity::ParsedQuantity;
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::state::ApiState;

/// Admit a pod being created: its RuntimeClass's overhead and scheduling
/// merged in, or a 403 as upstream words it.
pub async fn admit_pod(state: &ApiState, pod: &mut Value) -> Result<(), ApiError> {
    if !pod["spec"].is_object() {
        return Ok(());
    }
    let name = pod["metadata"]["name"].as_str().unwrap_or("").to_string();
    let forbidden = |msg: String| ApiError::forbidden("", "pods", &name, &msg);
    let class = match pod["spec"]["runtimeClassName"]
        .as_str()
        .filter(|n| !n.is_empty())
    {
        None => None,
        Some(wanted) => {
            let classes = super::parsed::all(state, "node.k8s.io", "v1", "runtimeclasses").await?;
            let found = classes.into_iter().find(|c| {
                c["metadata"]["name"].as_str() == Some(wanted)
                    && c["metadata"]["deletionTimestamp"].is_null()
            });
            match found {
                Some(c) => Some(c),
                None => {
                    return Err(forbidden(format!(
                        "pod rejected: RuntimeClass \"{wanted}\" not found"
                    )));
                }
            }
        }
    };
    let class = class.as_deref();
    merge(pod, class).map_err(forbidden)
}

/// Upstream's `setOverhead`, `setScheduling` and `validateOverhead` over
/// the pod and its class (`None` when it names none).
fn merge(pod: &mut Value, class: Option<&Value>) -> Result<(), String> {
    let class_overhead = class.and_then(|c| c["overhead"]["podFixed"].as_object());
    let pod_overhead = pod["spec"]["overhead"]
        .as_object()
        .filter(|o| !o.is_empty());
    match (class_overhead, pod_overhead) {
        (Some(fixed), Some(stated)) if !same_resources(fixed, stated) => {
            return Err(
                "pod rejected: Pod's Overhead doesn't match RuntimeClass's defined Overhead".into(),
            );
        }
        (None, Some(_)) => {
            return Err(
                "pod rejected: Pod Overhead set without corresponding RuntimeClass defined Overhead"
                    .into(),
            );
        }
        _ => {}
    }
    if let Some(fixed) = class_overhead {
        pod["spec"]["overhead"] = Value::Object(fixed.clone());
    }
    let Some(scheduling) = class.map(|c| &c["scheduling"]).filter(|s| s.is_object()) else {
        return Ok(());
    };
    if let Some(selector) = scheduling["nodeSelector"].as_object() {
        let mut merged = pod["spec"]["nodeSelector"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        for (key, value) in selector {
            match merged.get(key) {
                Some(own) if own != value => {
                    return Err(format!(
                        "conflict: runtimeClass.scheduling.nodeSelector[{key}] = {}; pod.spec.nodeSelector[{key}] = {}",
                        value.as_str().unwrap_or_default(),
                        own.as_str().unwrap_or_default()
                    ));
                }
                Some(_) => {}
                None => {
                    merged.insert(key.clone(), value.clone());
                }
            }
        }
        if !merged.is_empty() {
            pod["spec"]["nodeSelector"] = Value::Object(merged);
        }
    }
    if let Some(tolerations) = scheduling["tolerations"].as_array() {
        let mut merged = pod["spec"]["tolerations"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for t in tolerations {
            if !merged.contains(t) {
                merged.push(t.clone());
            }
        }
        if !merged.is_empty() {
            pod["spec"]["tolerations"] = Value::Array(merged);
        }
    }
    Ok(())
}

/// Two resource lists equal as quantities (`1000m` is `1`).
fn same_resources(a: &Map<String, Value>, b: &Map<String, Value>) -> bool {
    let parse = |m: &Map<String, Value>| -> Option<BTreeMap<String, ParsedQuantity>> {
        m.iter()
            .map(|(k, v)| Some((k.clone(), v.as_str()?.parse().ok()?)))
            .collect()
    };
    match (parse(a), parse(b)) {
        (Some(a), Some(b)) => a == b,
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn class() -> Value {
        json!({
            "metadata": {"name": "sandbox"},
            "handler": "runsc",
            "overhead": {"podFixed": {"cpu": "250m", "memory": "64Mi"}},
            "scheduling": {
                "nodeSelector": {"sandbox": "yes"},
                "tolerations": [{"key": "sandbox", "operator": "Exists", "effect": "NoSchedule"}]
            }
        })
    }

    #[test]
    fn the_class_overhead_and_scheduling_join_the_pod() {
        let mut pod = json!({"spec": {"nodeSelector": {"zone": "a"}, "containers": []}});
        merge(&mut pod, Some(&class())).unwrap();
        assert_eq!(
            pod["spec"]["overhead"],
            json!({"cpu": "250m", "memory": "64Mi"})
        );
        assert_eq!(
            pod["spec"]["nodeSelector"],
            json!({"zone": "a", "sandbox": "yes"})
        );
        assert_eq!(pod["spec"]["tolerations"][0]["key"], "sandbox");
    }

    #[test]
    fn a_stated_overhead_must_be_the_class_overhead() {
        let mut same = json!({"spec": {"overhead": {"cpu": "0.25", "memory": "64Mi"}}});
        assert!(merge(&mut same, Some(&class())).is_ok());
        let mut other = json!({"spec": {"overhead": {"cpu": "1"}}});
        let err = merge(&mut other, Some(&class())).unwrap_err();
        assert!(
            err.contains("doesn't match RuntimeClass's defined Overhead"),
            "{err}"
        );
        let mut without = json!({"spec": {"overhead": {"cpu": "1"}}});
        let err = merge(&mut without, None).unwrap_err();
        assert!(
            err.contains("Pod Overhead set without corresponding RuntimeClass"),
            "{err}"
        );
        let mut empty = json!({"spec": {"overhead": {}}});
        assert!(merge(&mut empty, None).is_ok());
    }

    #[test]
    fn a_conflicting_node_selector_is_refused() {
        let mut pod = json!({"spec": {"nodeSelector": {"sandbox": "no"}}});
        let err = merge(&mut pod, Some(&class())).unwrap_err();
        assert_eq!(
            err,
            "conflict: runtimeClass.scheduling.nodeSelector[sandbox] = yes; pod.spec.nodeSelector[sandbox] = no"
        );
    }
}
