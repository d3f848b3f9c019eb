//! Serving an object at the version a request names when it is stored at
//! another: the field renames of `events.k8s.io/v1` (see [`super::versions`]),
//! a new `apiVersion` for custom resources whose CRD says
//! `conversion.strategy: None`, and a `ConversionReview` sent to the CRD's
//! conversion webhook when it says `Webhook`.
//!
//! Custom resources are stored at the version that wrote them; every read
//! (get, list, watch, and the current object an update or patch starts from)
//! passes through [`to_version`], so a write always works on the object at
//! its own version. Objects already at the wanted version are never sent to
//! the webhook, and a list sends the rest in one review, as kube-apiserver
//! does. What the webhook answers is checked as upstream checks it: the same
//! number of objects, each at the desired `apiVersion` with the same kind,
//! name, namespace and uid; only labels and annotations of its metadata are
//! taken, the rest is the original's. The converted object is then pruned to
//! the schema of the version it is served at.

use std::sync::Arc;

use rk_core::catalogue::ResourceInfo;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::state::{ApiState, CustomResource};

/// How long the webhook may take, as kube-apiserver allows it.
const WEBHOOK_TIMEOUT_SECONDS: u64 = 30;
/// The largest conversion answer read: a review carries a whole list page.
const MAX_ANSWER: usize = 256 * 1024 * 1024;
/// The `ConversionReview` versions rk speaks (the same shape in both).
const REVIEW_VERSIONS: &[&str] = &["v1", "v1beta1"];

/// `objects` as `info` serves them (`info.version`). Objects already there,
/// and resources that never convert, pass through unchanged.
pub async fn to_version(
    state: &ApiState,
    info: &ResourceInfo,
    mut objects: Vec<Value>,
) -> Result<Vec<Value>, ApiError> {
    if !state.converts(info) {
        return Ok(objects);
    }
    let custom = state.custom_resource(info);
    let webhook = custom.as_deref().and_then(webhook_of);
    let Some(webhook) = webhook else {
        return Ok(objects
            .into_iter()
            .map(|o| super::versions::to_served(info, o))
            .collect());
    };
    let desired = info.api_version();
    let pending: Vec<usize> = (0..objects.len())
        .filter(|&i| objects[i].get("apiVersion").and_then(Value::as_str) != Some(&desired))
        .collect();
    if pending.is_empty() {
        return Ok(objects);
    }
    let originals: Vec<Value> = pending.iter().map(|&i| objects[i].clone()).collect();
    // Boxed: every read of a custom resource passes here, and a webhook
    // call's future is large (see `http::serve`).
    let converted = Box::pin(call_webhook(state, info, &webhook, &desired, &originals)).await?;
    let schema = custom.as_deref().and_then(|c| c.schema(&info.version));
    for (i, mut converted) in pending.into_iter().zip(converted) {
        if let Some(Ok(schema)) = &schema {
            schema.prune(&mut converted);
        }
        objects[i] = converted;
    }
    Ok(objects)
}

/// [`to_version`] of one object.
pub async fn one_to_version(
    state: &ApiState,
    info: &ResourceInfo,
    object: Value,
) -> Result<Value, ApiError> {
    let mut out = to_version(state, info, vec![object]).await?;
    out.pop()
        .ok_or_else(|| ApiError::internal("the conversion lost the object"))
}

/// The other served versions of a custom resource, in the CRD's order:
/// what `matchPolicy: Equivalent` of admission webhooks and policies also
/// matches. Empty for built-in kinds (rk serves one version of each).
pub fn other_served_versions(state: &ApiState, info: &ResourceInfo) -> Vec<Arc<ResourceInfo>> {
    let Some(custom) = state.custom_resource(info) else {
        return Vec::new();
    };
    custom.crd["spec"]["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["served"] == true)
        .filter_map(|v| v["name"].as_str())
        .filter(|name| *name != info.version)
        .filter_map(|name| state.resource(&info.group, name, &info.plural))
        .collect()
}

/// The CRD's webhook conversion, when its strategy is `Webhook`.
struct Webhook {
    client_config: Value,
    review_versions: Vec<String>,
}

fn webhook_of(custom: &CustomResource) -> Option<Webhook> {
    let conversion = &custom.crd["spec"]["conversion"];
    if conversion["strategy"] != "Webhook" {
        return None;
    }
    let webhook = &conversion["webhook"];
    Some(Webhook {
        client_config: webhook["clientConfig"].clone(),
        review_versions: webhook["conversionReviewVersions"]
            .as_array()
            .map(|v| {
                v.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
    })
}

/// Sends `objects` to the webhook and returns them converted to `desired`,
/// checked and with their original metadata restored.
async fn call_webhook(
    state: &ApiState,
    info: &ResourceInfo,
    webhook: &Webhook,
    desired: &str,
    objects: &[Value],
) -> Result<Vec<Value>, ApiError> {
    // Upstream names the input's group, version and kind in its errors.
    let from = objects
        .first()
        .and_then(|o| o.get("apiVersion"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let gvk = format!("{from}, Kind={}", info.kind);
    let failed =
        |e: String| ApiError::internal(format!("conversion webhook for {gvk} failed: {e}"));
    let review_version = webhook
        .review_versions
        .iter()
        .find(|v| REVIEW_VERSIONS.contains(&v.as_str()))
        .ok_or_else(|| failed("no supported conversion review versions".into()))?;
    let uid = uuid::Uuid::new_v4().to_string();
    let review = json!({
        "apiVersion": format!("apiextensions.k8s.io/{review_version}"),
        "kind": "ConversionReview",
        "request": {"uid": uid, "desiredAPIVersion": desired, "objects": objects},
    });
    let body = serde_json::to_vec(&review).map_err(|e| failed(e.to_string()))?;
    tracing::debug!(kind = %info.kind, desired, objects = objects.len(), "calling the conversion webhook");
    let answer = crate::admission::webhooks::post(
        state,
        &webhook.client_config,
        body,
        WEBHOOK_TIMEOUT_SECONDS,
        MAX_ANSWER,
    )
    .await
    .map_err(failed)?;
    let answer: Value = serde_json::from_slice(&answer).map_err(|e| failed(e.to_string()))?;
    let converted = converted_objects(&answer, review_version == "v1", &uid).map_err(failed)?;
    if converted.len() != objects.len() {
        return Err(ApiError::internal(format!(
            "conversion webhook for {gvk} returned {} objects, expected {}",
            converted.len(),
            objects.len()
        )));
    }
    let mut out = Vec::with_capacity(objects.len());
    for (index, (original, converted)) in objects.iter().zip(converted).enumerate() {
        let invalid = |e: String| {
            ApiError::internal(format!(
                "conversion webhook for {gvk} returned invalid converted object at index {index}: {e}"
            ))
        };
        let got = converted
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if got != desired {
            return Err(invalid(format!(
                "invalid groupVersion (expected {desired}, received {got})"
            )));
        }
        check_identity(original, &converted).map_err(invalid)?;
        out.push(restore_metadata(original, converted).map_err(invalid)?);
    }
    Ok(out)
}

/// The `convertedObjects` of a successful review answer.
fn converted_objects(answer: &Value, v1: bool, uid: &str) -> Result<Vec<Value>, String> {
    if v1 {
        let api_version = answer["apiVersion"].as_str().unwrap_or_default();
        let kind = answer["kind"].as_str().unwrap_or_default();
        if api_version != "apiextensions.k8s.io/v1" || kind != "ConversionReview" {
            return Err(format!(
                "expected webhook response of apiextensions.k8s.io/v1, Kind=ConversionReview, got {api_version}, Kind={kind}"
            ));
        }
    }
    let response = answer
        .get("response")
        .filter(|r| r.is_object())
        .ok_or("no response provided")?;
    if v1 {
        let got = response["uid"].as_str().unwrap_or_default();
        if got != uid {
            return Err(format!("expected response.uid={uid:?}, got {got:?}"));
        }
    }
    let result = &response["result"];
    let status = result["status"].as_str().unwrap_or_default();
    if status != "Success" {
        return Err(match result["message"].as_str() {
            Some(m) if !m.is_empty() => m.to_string(),
            _ => format!("response.result.status was '{status}', not 'Success'"),
        });
    }
    Ok(response["convertedObjects"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

/// The converted object must be the same object: kind, name, namespace and
/// uid unchanged.
fn check_identity(original: &Value, converted: &Value) -> Result<(), String> {
    let field = |o: &Value, path: &[&str]| -> String {
        let mut v = o;
        for p in path {
            v = &v[*p];
        }
        v.as_str().unwrap_or_default().to_string()
    };
    for (what, path) in [
        ("kind", &["kind"][..]),
        ("name", &["metadata", "name"][..]),
        ("namespace", &["metadata", "namespace"][..]),
        ("UID", &["metadata", "uid"][..]),
    ] {
        let (e, a) = (field(original, path), field(converted, path));
        if e != a {
            return Err(format!("must have the same {what}: {e} != {a}"));
        }
    }
    Ok(())
}

/// The original's metadata with the converted object's labels and
/// annotations (string maps; absent means none).
fn restore_metadata(original: &Value, mut converted: Value) -> Result<Value, String> {
    let Some(answered) = converted.get("metadata") else {
        return Err("missing metadata in converted object".into());
    };
    let Some(answered) = answered.as_object() else {
        return Err("invalid metadata in converted object".into());
    };
    let mut meta = original
        .get("metadata")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    for field in ["labels", "annotations"] {
        match answered.get(field) {
            None | Some(Value::Null) => {
                meta.remove(field);
            }
            Some(Value::Object(map)) => {
                if let Some((k, _)) = map.iter().find(|(_, v)| !v.is_string()) {
                    return Err(format!(
                        "metadata.{field}[{k}] must be a string in converted object"
                    ));
                }
                meta.insert(field.into(), Value::Object(map.clone()));
            }
            Some(_) => {
                return Err(format!("invalid metadata.{field} in converted object"));
            }
        }
    }
    match converted.as_object_mut() {
        Some(obj) => {
            obj.insert("metadata".into(), Value::Object(meta));
        }
        None => return Err("the converted object is not an object".into()),
    }
    Ok(converted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn original() -> Value {
        json!({"apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w", "namespace": "ns", "uid": "u1", "resourceVersion": "7",
                "labels": {"a": "1"}, "finalizers": ["keep"]},
            "spec": {"size": 3}})
    }

    #[test]
    fn only_labels_and_annotations_come_from_the_webhook() {
        let converted = json!({"apiVersion": "example.com/v2", "kind": "Widget",
            "metadata": {"name": "w", "namespace": "ns", "uid": "u1", "resourceVersion": "99",
                "labels": {"b": "2"}, "annotations": {"note": "x"}},
            "spec": {"dimensions": {"size": 3}}});
        check_identity(&original(), &converted).unwrap();
        let out = restore_metadata(&original(), converted).unwrap();
        assert_eq!(out["metadata"]["resourceVersion"], "7");
        assert_eq!(out["metadata"]["finalizers"], json!(["keep"]));
        assert_eq!(out["metadata"]["labels"], json!({"b": "2"}));
        assert_eq!(out["metadata"]["annotations"], json!({"note": "x"}));
        assert_eq!(out["spec"], json!({"dimensions": {"size": 3}}));
    }

    #[test]
    fn a_converted_object_must_be_the_same_object() {
        let mut other = original();
        other["metadata"]["uid"] = json!("u2");
        assert_eq!(
            check_identity(&original(), &other).unwrap_err(),
            "must have the same UID: u1 != u2"
        );
        let mut renamed = original();
        renamed["metadata"]["name"] = json!("x");
        assert!(check_identity(&original(), &renamed).is_err());
        let no_meta = json!({"apiVersion": "example.com/v2", "kind": "Widget"});
        assert_eq!(
            restore_metadata(&original(), no_meta).unwrap_err(),
            "missing metadata in converted object"
        );
        let bad_label = json!({"kind": "Widget", "metadata": {"labels": {"n": 1}}});
        assert!(restore_metadata(&original(), bad_label).is_err());
    }

    #[test]
    fn review_answers_are_checked() {
        let ok = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview",
            "response": {"uid": "r1", "result": {"status": "Success"}, "convertedObjects": [{}]}});
        assert_eq!(converted_objects(&ok, true, "r1").unwrap().len(), 1);
        assert_eq!(
            converted_objects(&ok, true, "r2").unwrap_err(),
            "expected response.uid=\"r2\", got \"r1\""
        );
        let failed = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview",
            "response": {"uid": "r1", "result": {"status": "Failure", "message": "cannot"}}});
        assert_eq!(
            converted_objects(&failed, true, "r1").unwrap_err(),
            "cannot"
        );
        let wrong = json!({"apiVersion": "v1", "kind": "Status"});
        assert!(
            converted_objects(&wrong, true, "r1")
                .unwrap_err()
                .starts_with("expected webhook response")
        );
        // v1beta1 answers are not held to their kind and uid.
        let beta = json!({"response": {"result": {"status": "Success"}, "convertedObjects": []}});
        assert!(converted_objects(&beta, false, "r1").unwrap().is_empty());
        assert_eq!(
            converted_objects(&json!({}), false, "r1").unwrap_err(),
            "no response provided"
        );
    }
}
