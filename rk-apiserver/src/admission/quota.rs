//! ResourceQuota admission: an object that would take a namespace past a
//! quota's hard limits is refused with 403 and upstream's message
//! (`exceeded quota: NAME, requested: pods=1, used: pods=2, limited: pods=2`).
//!
//! Usage is computed from the watch cache (synced with storage first), and
//! creates in a namespace with quotas are serialised until their write is
//! stored, so two concurrent creates cannot both take the last slot.

use std::sync::Arc;
use std::time::Duration;

use rk_core::catalogue::ResourceInfo;
use rk_core::k8s_openapi::api::core::v1::{Pod, ResourceQuota};
use rk_core::quantity::{Format, ParsedQuantity};
use rk_core::quota::{self, QuotaViolation, Usage};
use serde_json::Value;

use super::AdmissionGuard;
use crate::error::ApiError;
use crate::state::ApiState;

/// What `obj` of `info` counts against quotas.
fn delta(info: &ResourceInfo, obj: &Value) -> Result<Usage, ApiError> {
    if info.group.is_empty() && info.kind == "Pod" {
        let pod: Pod = serde_json::from_value(obj.clone())
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        return quota::pod_usage(&pod).map_err(|e| ApiError::bad_request(e.to_string()));
    }
    let one = ParsedQuantity::new(1, Format::DecimalSI);
    Ok(quota::object_count_names(&info.group, &info.plural)
        .into_iter()
        .map(|n| (n, one))
        .collect())
}

async fn objects(state: &ApiState, info: &ResourceInfo, ns: &str) -> Result<Vec<Value>, ApiError> {
    let cache = state.cache(info).await?;
    Ok(cache
        .snapshot(&format!("{}{ns}/", info.storage_prefix()))
        .objects
        .iter()
        .filter_map(|o| serde_json::from_slice(&o.bytes).ok())
        .collect())
}

/// Current usage in `ns` of the resources `hard` names.
async fn usage(state: &ApiState, ns: &str, hard: &Usage) -> Result<Usage, ApiError> {
    let mut used = Usage::new();
    let cat = state.catalogue();
    let pod_keys = hard.keys().any(|k| {
        matches!(
            k.as_str(),
            "pods" | "count/pods" | "cpu" | "memory" | "ephemeral-storage"
        ) || k.starts_with("requests.")
            || k.starts_with("limits.")
    });
    if pod_keys && let Some(info) = cat.get("", "v1", "pods") {
        for v in objects(state, &info, ns).await? {
            let Ok(pod) = serde_json::from_value::<Pod>(v) else {
                continue;
            };
            if quota::pod_is_terminal(&pod) || pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            if let Ok(u) = quota::pod_usage(&pod) {
                for (k, q) in u {
                    let e = used.entry(k).or_insert_with(ParsedQuantity::zero);
                    *e += q;
                }
            }
        }
    }
    for info in cat.iter().filter(|i| {
        i.scope.is_namespaced() && i.stored && !(i.group.is_empty() && i.plural == "pods")
    }) {
        let names = quota::object_count_names(&info.group, &info.plural);
        if !names.iter().any(|n| hard.contains_key(n)) {
            continue;
        }
        let count = objects(state, info, ns).await?.len() as i64;
        for n in names {
            used.insert(n, ParsedQuantity::new(count, Format::DecimalSI));
        }
    }
    Ok(used)
}

/// Check `obj` against every quota of its namespace.
pub async fn admit(
    state: &ApiState,
    info: &ResourceInfo,
    obj: &Value,
) -> Result<AdmissionGuard, ApiError> {
    let Some(ns) = obj["metadata"]["namespace"]
        .as_str()
        .filter(|_| info.scope.is_namespaced())
    else {
        return Ok(None);
    };
    let Some(quotas) = state.builtin.get("", "v1", "resourcequotas") else {
        return Ok(None);
    };
    let quotas: Vec<ResourceQuota> = objects(state, &quotas.info, ns)
        .await?
        .into_iter()
        .filter_map(|v| serde_json::from_value(v).ok())
        .collect();
    if quotas.is_empty() {
        return Ok(None);
    }
    let delta = delta(info, obj)?;
    let guard = Arc::clone(&state.quota_lock).lock_owned().await;
    let _ = state.caches.sync_with_storage(Duration::from_secs(2)).await;
    let name = obj["metadata"]["name"].as_str().unwrap_or("");
    for q in &quotas {
        let qname = q.metadata.name.clone().unwrap_or_default();
        let hard = q
            .spec
            .as_ref()
            .and_then(|s| s.hard.as_ref())
            .map(quota::parse_usage)
            .transpose()
            .map_err(|e| ApiError::internal(e.to_string()))?
            .unwrap_or_default();
        let constrains_delta = delta.keys().any(|k| hard.contains_key(k));
        let constrains_compute = hard.keys().any(|k| {
            k == "cpu" || k == "memory" || k.starts_with("requests.") || k.starts_with("limits.")
        });
        let pod_under_compute_quota = delta.contains_key("pods") && constrains_compute;
        if !constrains_delta && !pod_under_compute_quota {
            continue;
        }
        let used = usage(state, ns, &hard).await?;
        match quota::check(&hard, &used, &delta) {
            Ok(()) => {}
            Err(QuotaViolation::Exceeded {
                requested,
                used,
                limited,
            }) => {
                return Err(ApiError::forbidden(
                    &info.group,
                    &info.plural,
                    name,
                    &format!(
                        "exceeded quota: {qname}, requested: {requested}, used: {used}, limited: {limited}"
                    ),
                ));
            }
            Err(QuotaViolation::MustSpecify(missing)) => {
                return Err(ApiError::forbidden(
                    &info.group,
                    &info.plural,
                    name,
                    &format!("failed quota: {qname}: must specify {}", missing.join(",")),
                ));
            }
        }
    }
    Ok(Some(guard))
}
