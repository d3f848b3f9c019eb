//! The `scale`, `binding` and `eviction` subresources.

use std::str::FromStr;

use rk_core::catalogue::ResourceInfo;
use serde_json::{Value, json};

use super::store::{self, DeleteOptions, Part, Target, WriteOptions};
use crate::error::ApiError;
use crate::state::ApiState;

/// Where a kind keeps its replica counts and selector.
struct ScalePaths {
    spec_replicas: Vec<String>,
    status_replicas: Vec<String>,
    selector: Option<Vec<String>>,
}

fn path(p: &str) -> Vec<String> {
    p.trim_start_matches('.')
        .split('.')
        .map(str::to_string)
        .collect()
}

fn scale_paths(state: &ApiState, info: &ResourceInfo) -> Option<ScalePaths> {
    if let Some(cr) = state.custom_resource(info) {
        let v = cr.version(&info.version)?;
        let s = v.get("subresources")?.get("scale")?;
        return Some(ScalePaths {
            spec_replicas: path(s["specReplicasPath"].as_str()?),
            status_replicas: path(
                s["statusReplicasPath"]
                    .as_str()
                    .unwrap_or(".status.replicas"),
            ),
            selector: s["labelSelectorPath"].as_str().map(path),
        });
    }
    Some(ScalePaths {
        spec_replicas: path("spec.replicas"),
        status_replicas: path("status.replicas"),
        selector: Some(path("spec.selector")),
    })
}

fn at<'a>(v: &'a Value, p: &[String]) -> &'a Value {
    p.iter().fold(v, |acc, k| &acc[k.as_str()])
}

fn set_at(v: &mut Value, p: &[String], new: Value) {
    let mut cur = v;
    for k in p {
        if !cur.is_object() {
            *cur = json!({});
        }
        cur = &mut cur[k.as_str()];
    }
    *cur = new;
}

/// A selector value (string, `LabelSelector` or RC-style map) as a string.
fn selector_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(m) if m.contains_key("matchLabels") || m.contains_key("matchExpressions") => {
            serde_json::from_value::<
                rk_core::k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
            >(v.clone())
            .ok()
            .and_then(|ls| rk_core::labels::Selector::try_from(&ls).ok())
            .map(|s| s.to_string())
            .unwrap_or_default()
        }
        Value::Object(m) => {
            let mut pairs: Vec<String> = m
                .iter()
                .filter_map(|(k, v)| v.as_str().map(|v| format!("{k}={v}")))
                .collect();
            pairs.sort();
            pairs.join(",")
        }
        _ => String::new(),
    }
}

/// The `autoscaling/v1` `Scale` of an object.
pub fn scale_of(state: &ApiState, info: &ResourceInfo, obj: &Value) -> Result<Value, ApiError> {
    let paths = scale_paths(state, info).ok_or_else(ApiError::no_route)?;
    let meta = &obj["metadata"];
    let mut m = serde_json::Map::new();
    for f in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = meta.get(f) {
            m.insert(f.into(), v.clone());
        }
    }
    let spec_replicas = at(obj, &paths.spec_replicas).as_i64().unwrap_or(0);
    let status_replicas = at(obj, &paths.status_replicas).as_i64().unwrap_or(0);
    let mut status = json!({"replicas": status_replicas});
    if let Some(sel) = &paths.selector {
        let s = selector_string(at(obj, sel));
        if !s.is_empty() {
            status["selector"] = json!(s);
        }
    }
    Ok(json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": Value::Object(m),
        "spec": {"replicas": spec_replicas},
        "status": status,
    }))
}

/// Read the scale of an object.
pub async fn get_scale(state: &ApiState, target: &Target) -> Result<Value, ApiError> {
    let (obj, _) = store::get(state, target).await?;
    scale_of(state, &target.info, &obj)
}

/// Write a new `Scale`: sets the replica count of the object. `make` gets the
/// current scale and returns the desired one (PUT ignores it, PATCH applies a
/// patch to it).
pub async fn update_scale<F>(
    state: &ApiState,
    target: &Target,
    opts: &WriteOptions,
    mut make: F,
) -> Result<Value, ApiError>
where
    F: FnMut(&Value) -> Result<Value, ApiError>,
{
    let info = target.info.clone();
    let paths = scale_paths(state, &info).ok_or_else(ApiError::no_route)?;
    let mut precondition = None;
    let outcome = store::guaranteed_update(state, target, None, Part::Main, opts, |old| {
        let current = scale_of(state, &info, old)?;
        let wanted = make(&current)?;
        if let Some(rv) = wanted["metadata"]["resourceVersion"]
            .as_str()
            .filter(|s| !s.is_empty())
        {
            precondition = Some(rv.to_string());
            if old["metadata"]["resourceVersion"].as_str() != Some(rv) {
                return Err(ApiError::conflict(&info.group, &info.plural, &target.name));
            }
        }
        let replicas = wanted["spec"]["replicas"].as_i64().unwrap_or(0);
        if replicas < 0 {
            return Err(ApiError::invalid(
                "Scale",
                "autoscaling",
                &target.name,
                vec![crate::error::StatusCause {
                    reason: "FieldValueInvalid".into(),
                    message: format!(
                        "Invalid value: {replicas}: must be greater than or equal to 0"
                    ),
                    field: "spec.replicas".into(),
                }],
            ));
        }
        let mut new = old.clone();
        set_at(&mut new, &paths.spec_replicas, json!(replicas));
        Ok(new)
    })
    .await?;
    scale_of(state, &info, &outcome.object)
}

/// Bind a pod to a node (`pods/binding`).
pub async fn bind(
    state: &ApiState,
    target: &Target,
    binding: &Value,
    dry_run: bool,
) -> Result<(), ApiError> {
    let node = binding["target"]["name"].as_str().unwrap_or("").to_string();
    if node.is_empty() {
        return Err(ApiError::invalid(
            "Binding",
            "",
            &target.name,
            vec![crate::error::StatusCause {
                reason: "FieldValueRequired".into(),
                message: "Required value".into(),
                field: "target.name".into(),
            }],
        ));
    }
    let info = target.info.clone();
    let name = target.name.clone();
    store::raw_update(state, target, dry_run, |pod| {
        if pod["metadata"]["deletionTimestamp"].is_string() {
            return Err(ApiError::conflict_msg(&info.group, &info.plural, &name, "pod is being deleted, cannot be assigned to a host"));
        }
        if let Some(existing) = pod["spec"]["nodeName"].as_str().filter(|s| !s.is_empty()) {
            return Err(ApiError::conflict_msg(&info.group, &info.plural, &name, &format!(
                "pod {name} is already assigned to node \"{existing}\""
            )));
        }
        let mut pod = pod.clone();
        pod["spec"]["nodeName"] = json!(node);
        let cond = json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": super::meta::now()});
        let conds = pod["status"]["conditions"].as_array().cloned().unwrap_or_default();
        let mut conds: Vec<Value> = conds.into_iter().filter(|c| c["type"] != "PodScheduled").collect();
        conds.push(cond);
        pod["status"]["conditions"] = Value::Array(conds);
        Ok(pod)
    })
    .await
    .map(|_| ())
}

/// Evict a pod (`pods/eviction`), honouring PodDisruptionBudgets as
/// upstream does: a pod covered by a budget is deleted only if the budget
/// allows a disruption, which the eviction takes (`disruptionsAllowed`
/// one less, the pod in `disruptedPods`, so the disruption controller does
/// not count it healthy while it goes) in the same compare-and-swap as its
/// check. A pod that is not Ready can go while the budget is healthy (or
/// always, with `unhealthyPodEvictionPolicy: AlwaysAllow`) without taking
/// a disruption.
pub async fn evict(state: &ApiState, target: &Target, eviction: &Value) -> Result<(), ApiError> {
    if let Some(name) = eviction["metadata"]["name"].as_str()
        && !name.is_empty()
        && name != target.name
    {
        return Err(ApiError::bad_request(
            "name in URL does not match name in Eviction object",
        ));
    }
    let (pod, _) = store::get(state, target).await?;
    let phase = pod["status"]["phase"].as_str().unwrap_or("");
    let terminal = phase == "Succeeded" || phase == "Failed";
    let opts = &eviction["deleteOptions"];
    let dry_run = opts["dryRun"].as_array().is_some_and(|a| !a.is_empty());
    if !terminal && pod["metadata"]["deletionTimestamp"].is_null() {
        take_disruption(state, target, &pod, dry_run).await?;
    }
    let delete = DeleteOptions {
        grace_period: opts["gracePeriodSeconds"].as_i64(),
        propagation: opts["propagationPolicy"].as_str().map(str::to_string),
        uid: opts["preconditions"]["uid"].as_str().map(str::to_string),
        resource_version: opts["preconditions"]["resourceVersion"]
            .as_str()
            .and_then(|s| s.parse().ok()),
        dry_run,
    };
    store::delete(state, target, &delete).await.map(|_| ())
}

/// The most pods a budget may hold as disrupted and not yet seen deleted.
const MAX_DISRUPTED_PODS: usize = 2000;

/// Check the pod's budget (if any) and take one disruption from it.
async fn take_disruption(
    state: &ApiState,
    target: &Target,
    pod: &Value,
    dry_run: bool,
) -> Result<(), ApiError> {
    let Some(pdb_info) = state.resource("policy", "v1", "poddisruptionbudgets") else {
        return Ok(());
    };
    let ns = target.namespace.clone().unwrap_or_default();
    let budgets = budgets_of(state, &pdb_info, &ns, pod).await?;
    let name = match budgets.as_slice() {
        [] => return Ok(()),
        [one] => one.clone(),
        _ => {
            return Err(ApiError::internal(
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
            ));
        }
    };
    let ready = pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True");
    let pdb_target = Target {
        info: pdb_info,
        namespace: Some(ns),
        name,
    };
    let pod_name = target.name.clone();
    let opts = WriteOptions {
        dry_run,
        field_manager: String::new(),
        ..WriteOptions::default()
    };
    store::guaranteed_update(state, &pdb_target, None, Part::Status, &opts, |pdb| {
        disrupt(pdb, &pod_name, ready, &super::meta::now())
    })
    .await
    .map(|_| ())
}

/// The names of the budgets in `ns` whose selector matches `pod` (in
/// policy/v1 an empty selector matches every pod of the namespace).
async fn budgets_of(
    state: &ApiState,
    pdb_info: &std::sync::Arc<ResourceInfo>,
    ns: &str,
    pod: &Value,
) -> Result<Vec<String>, ApiError> {
    let cache = state.cache(pdb_info).await?;
    // A consistent read, as upstream lists the budgets from storage: a
    // budget created a moment ago counts.
    let _ = state
        .caches
        .sync_with_storage(std::time::Duration::from_secs(2))
        .await;
    let labels: std::collections::BTreeMap<String, String> = pod["metadata"]["labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default();
    let mut out = Vec::new();
    for o in cache
        .snapshot(&format!("{}{ns}/", pdb_info.storage_prefix()))
        .objects
    {
        let pdb: Value = serde_json::from_slice(&o.bytes).unwrap_or(Value::Null);
        let Ok(sel) = serde_json::from_value::<
            rk_core::k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
        >(pdb["spec"]["selector"].clone()) else {
            continue;
        };
        let Ok(selector) = rk_core::labels::Selector::try_from(&sel) else {
            continue;
        };
        if selector.matches(&labels) {
            out.push(o.name.to_string());
        }
    }
    Ok(out)
}

/// Upstream's 429 for a budget that allows no disruption now (with no
/// `Retry-After` when it is 0: the budget changes when its pods do).
fn budget_refuses(message: String, retry_after: u32) -> ApiError {
    let mut e = ApiError::too_many_requests(
        "Cannot evict pod as it would violate the pod's disruption budget.",
        retry_after,
    );
    e.causes.push(crate::error::StatusCause {
        reason: "DisruptionBudget".into(),
        message,
        field: String::new(),
    });
    e
}

/// The budget after evicting `pod` (unchanged when the pod may go without
/// taking a disruption), or why it may not go.
fn disrupt(pdb: &Value, pod: &str, ready: bool, now: &str) -> Result<Value, ApiError> {
    let name = pdb["metadata"]["name"].as_str().unwrap_or_default();
    let status = &pdb["status"];
    let generation = pdb["metadata"]["generation"].as_i64().unwrap_or(0);
    let observed = status["observedGeneration"].as_i64().unwrap_or(0);
    let current = status["currentHealthy"].as_i64().unwrap_or(0);
    let desired = status["desiredHealthy"].as_i64().unwrap_or(0);
    if observed < generation {
        return Err(budget_refuses(
            format!("The disruption budget {name} is still being processed by the server."),
            10,
        ));
    }
    if !ready {
        let always = pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow";
        if always || (current >= desired && desired > 0) {
            return Ok(pdb.clone());
        }
    }
    let allowed = status["disruptionsAllowed"].as_i64().unwrap_or(0);
    if allowed < 0 {
        return Err(ApiError::forbidden(
            "policy",
            "poddisruptionbudgets",
            name,
            "pdb disruptions allowed is negative",
        ));
    }
    let disrupted = status["disruptedPods"].as_object().map_or(0, |m| m.len());
    if disrupted > MAX_DISRUPTED_PODS {
        return Err(ApiError::forbidden(
            "policy",
            "poddisruptionbudgets",
            name,
            "DisruptedPods map too big - too many evictions not confirmed by PDB controller",
        ));
    }
    if allowed == 0 {
        return Err(budget_refuses(
            format!(
                "The disruption budget {name} needs {desired} healthy pods and has {current} currently"
            ),
            0,
        ));
    }
    let mut out = pdb.clone();
    out["status"]["disruptionsAllowed"] = json!(allowed - 1);
    if !out["status"]["disruptedPods"].is_object() {
        out["status"]["disruptedPods"] = json!({});
    }
    out["status"]["disruptedPods"][pod] = json!(now);
    if allowed == 1 {
        let conditions = out["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut conditions: Vec<Value> = conditions
            .into_iter()
            .filter(|c| c["type"] != "DisruptionAllowed")
            .collect();
        conditions.push(json!({
            "type": "DisruptionAllowed",
            "status": "False",
            "reason": "InsufficientPods",
            "message": "",
            "observedGeneration": generation,
            "lastTransitionTime": now,
        }));
        out["status"]["conditions"] = json!(conditions);
    }
    Ok(out)
}

/// Parse a label selector query parameter into rk-core's selector.
pub fn parse_label_selector(s: &str) -> Result<rk_core::labels::Selector, ApiError> {
    rk_core::labels::Selector::from_str(s)
        .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))
}
