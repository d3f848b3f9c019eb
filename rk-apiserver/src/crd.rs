//! CustomResourceDefinitions: serving a CRD's kind as soon as it is created
//! (catalogue, watch cache, OpenAPI), its `Established` status, and deleting
//! every custom resource when the CRD goes away.

use std::sync::Arc;

use rk_core::catalogue::{ResourceInfo, STANDARD_VERBS, Scope};
use serde_json::{Value, json};

use crate::cache::EventType;
use crate::registry::meta;
use crate::registry::store::{self, Target};
use crate::state::{ApiState, CustomResource};
use crate::storage::ListOptions;

/// The finalizer that holds a CRD until its objects are deleted.
pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

/// The catalogue entries (one per served version) of a CRD.
pub fn resource_infos(crd: &Value) -> Vec<ResourceInfo> {
    let spec = &crd["spec"];
    let names = &spec["names"];
    let group = spec["group"].as_str().unwrap_or("").to_string();
    let plural = names["plural"].as_str().unwrap_or("").to_string();
    let kind = names["kind"].as_str().unwrap_or("").to_string();
    if group.is_empty() || plural.is_empty() || kind.is_empty() {
        return Vec::new();
    }
    let singular = names["singular"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| kind.to_ascii_lowercase());
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect()
    };
    let scope = if spec["scope"] == "Cluster" {
        Scope::Cluster
    } else {
        Scope::Namespaced
    };
    spec["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["served"].as_bool().unwrap_or(false))
        .filter_map(|v| {
            let version = v["name"].as_str()?.to_string();
            let mut subresources = Vec::new();
            if v["subresources"].get("status").is_some() {
                subresources.push("status".to_string());
            }
            if v["subresources"].get("scale").is_some() {
                subresources.push("scale".to_string());
            }
            Some(ResourceInfo {
                group: group.clone(),
                version,
                kind: kind.clone(),
                plural: plural.clone(),
                singular: singular.clone(),
                short_names: strings(&names["shortNames"]),
                categories: strings(&names["categories"]),
                scope,
                verbs: STANDARD_VERBS.iter().map(|s| s.to_string()).collect(),
                subresources,
                stored: true,
            })
        })
        .collect()
}

fn storage_version(crd: &Value) -> String {
    crd["spec"]["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["storage"].as_bool() == Some(true))
        .and_then(|v| v["name"].as_str())
        .unwrap_or("v1")
        .to_string()
}

/// Serve a CRD's kind: add its versions to the catalogue, start its watch
/// cache and rebuild the OpenAPI documents.
pub async fn register(state: &ApiState, crd: &Value) {
    let infos = resource_infos(crd);
    let Some(first) = infos.first() else { return };
    let (group, plural) = (first.group.clone(), first.plural.clone());
    {
        let mut cat = state.catalogue.write().unwrap_or_else(|p| p.into_inner());
        cat.remove(&group, &plural);
        for info in &infos {
            if let Err(e) = cat.insert(info.clone()) {
                tracing::warn!(error = %e, "refusing CRD");
                return;
            }
        }
    }
    state
        .custom
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .insert(
            (group.clone(), plural.clone()),
            Arc::new(CustomResource::new(crd.clone(), storage_version(crd))),
        );
    if let Err(e) = state.caches.add(&first.storage_prefix(), &first.kind).await {
        tracing::error!(error = %e, "starting the watch cache of a custom resource failed");
    }
    state.rebuild_openapi();
}

/// Stop serving a CRD's kind.
pub async fn unregister(state: &ApiState, group: &str, plural: &str) {
    let prefix = state
        .catalogue()
        .iter()
        .find(|e| e.group == group && e.plural == plural)
        .map(|e| e.storage_prefix());
    state
        .catalogue
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .remove(group, plural);
    state
        .custom
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&(group.to_string(), plural.to_string()));
    if let Some(prefix) = prefix {
        state.caches.remove(&prefix).await;
    }
    state.rebuild_openapi();
}

/// The status a served CRD reports.
fn established_status(crd: &Value) -> Value {
    let now = meta::now();
    let keep_time = |ty: &str| -> String {
        crd["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == ty && c["status"] == "True")
            .and_then(|c| c["lastTransitionTime"].as_str())
            .map(str::to_string)
            .unwrap_or_else(|| now.clone())
    };
    let mut stored: Vec<Value> = crd["status"]["storedVersions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let sv = json!(storage_version(crd));
    if !stored.contains(&sv) {
        stored.push(sv);
    }
    let mut names = crd["spec"]["names"].clone();
    if names["singular"].as_str().unwrap_or("").is_empty() {
        names["singular"] = json!(names["kind"].as_str().unwrap_or("").to_ascii_lowercase());
    }
    if names["listKind"].as_str().unwrap_or("").is_empty() {
        names["listKind"] = json!(format!("{}List", names["kind"].as_str().unwrap_or("")));
    }
    json!({
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "lastTransitionTime": keep_time("NamesAccepted"), "reason": "NoConflicts", "message": "no conflicts found"},
            {"type": "Established", "status": "True", "lastTransitionTime": keep_time("Established"), "reason": "InitialNamesAccepted", "message": "the initial names have been accepted"},
        ],
        "acceptedNames": names,
        "storedVersions": stored,
    })
}

async fn delete_all_objects(state: &ApiState, crd: &Value) -> Result<(), crate::error::ApiError> {
    let infos = resource_infos(crd);
    let Some(info) = infos.first() else {
        return Ok(());
    };
    let list = state
        .storage
        .list(&info.storage_prefix(), ListOptions::default())
        .await
        .map_err(|e| crate::error::ApiError::internal(e.to_string()))?;
    for kv in list.kvs {
        match state.storage.delete(&kv.key, None).await {
            Ok(_) | Err(crate::storage::StorageError::NotFound { .. }) => {}
            Err(e) => return Err(crate::error::ApiError::internal(e.to_string())),
        }
    }
    Ok(())
}

/// Bring a CRD's serving and status in line with the stored object.
pub async fn reconcile(state: &ApiState, crd: &Value) {
    let Some(crd_info) = state.resource("apiextensions.k8s.io", "v1", "customresourcedefinitions")
    else {
        return;
    };
    let target = Target {
        info: crd_info,
        namespace: None,
        name: meta::name(crd).to_string(),
    };
    if crd["metadata"]["deletionTimestamp"].is_string() {
        let infos = resource_infos(crd);
        if let Some(info) = infos.first() {
            unregister(state, &info.group, &info.plural).await;
        }
        if meta::finalizers(crd).iter().any(|f| f == CLEANUP_FINALIZER) {
            if let Err(e) = delete_all_objects(state, crd).await {
                tracing::error!(error = %e, "deleting custom resources failed");
                return;
            }
            let r = store::raw_update(state, &target, false, |cur| {
                let mut cur = cur.clone();
                if let Some(list) = cur
                    .pointer_mut("/metadata/finalizers")
                    .and_then(Value::as_array_mut)
                {
                    list.retain(|f| f != CLEANUP_FINALIZER);
                }
                Ok(cur)
            })
            .await;
            if let Ok(obj) = r
                && meta::finalizers(&obj).is_empty()
            {
                let _ = store::delete(state, &target, &store::DeleteOptions::default()).await;
            }
        }
        return;
    }
    register(state, crd).await;
    let status = established_status(crd);
    let has_finalizer = meta::finalizers(crd).iter().any(|f| f == CLEANUP_FINALIZER);
    if crd["status"] != status || !has_finalizer {
        let _ = store::raw_update(state, &target, false, |cur| {
            let mut cur = cur.clone();
            cur["status"] = established_status(&cur);
            meta::add_finalizer(&mut cur, CLEANUP_FINALIZER);
            Ok(cur)
        })
        .await;
    }
}

/// Watch CRDs and keep their kinds served.
pub async fn run_controller(state: Arc<ApiState>) {
    let Some(info) = state.resource("apiextensions.k8s.io", "v1", "customresourcedefinitions")
    else {
        return;
    };
    loop {
        let cache = match state.cache(&info).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "CRD controller: no cache");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
        };
        let Ok(mut w) = cache.watch(None) else {
            continue;
        };
        for ev in std::mem::take(&mut w.initial) {
            if let Ok(crd) = serde_json::from_slice::<Value>(&ev.object.bytes) {
                reconcile(&state, &crd).await;
            }
        }
        while let Some(ev) = w.live.recv().await {
            let Ok(crd) = serde_json::from_slice::<Value>(&ev.object.bytes) else {
                continue;
            };
            match ev.kind {
                EventType::Deleted => {
                    if let Some(i) = resource_infos(&crd).first() {
                        unregister(&state, &i.group, &i.plural).await;
                        let _ = delete_all_objects(&state, &crd).await;
                    }
                }
                _ => reconcile(&state, &crd).await,
            }
        }
    }
}
