//! `LIST`: from the watch cache (resourceVersion unset, `0` or
//! `NotOlderThan`), or from storage at an exact revision (continue tokens,
//! `resourceVersionMatch=Exact`). Selectors, pagination and the negotiated
//! representation.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::Response;
use rk_core::catalogue::ResourceInfo;
use serde_json::{Value, json};

use super::convert::{self, IncludeObject};
use super::response::{self, Body, Representation};
use crate::cache::CachedObject;
use crate::cache::dispatch::decode_stored;
use crate::error::ApiError;
use crate::request::Query;
use crate::state::ApiState;
use crate::storage::{ListOptions, Revision, StorageError};

/// Label and field selectors of a request, checked.
pub struct Filter {
    labels: Option<rk_core::labels::Selector>,
    fields: Option<rk_core::fields::FieldSelector>,
}

impl Filter {
    /// From the `labelSelector` and `fieldSelector` parameters.
    pub fn from_query(info: &ResourceInfo, q: &Query) -> Result<Self, ApiError> {
        let labels =
            match q.get("labelSelector") {
                Some(s) => Some(rk_core::labels::Selector::from_str(s).map_err(|e| {
                    ApiError::bad_request(format!("unable to parse requirement: {e}"))
                })?),
                None => None,
            };
        let fields = match q.get("fieldSelector") {
            Some(s) => {
                let mut sel = rk_core::fields::FieldSelector::from_str(s)
                    .map_err(|e| ApiError::bad_request(format!("invalid field selector: {e}")))?;
                if info.group == "events.k8s.io" {
                    sel = events_v1_fields(&sel);
                }
                let sel = sel
                    .for_kind(&info.kind)
                    .map_err(|e| ApiError::bad_request(e.to_string()))?;
                Some(sel)
            }
            None => None,
        };
        Ok(Self { labels, fields })
    }

    /// True if the filter has no selectors.
    pub fn is_empty(&self) -> bool {
        self.labels.is_none() && self.fields.is_none()
    }

    /// True if the object passes every selector.
    pub fn matches(&self, o: &CachedObject) -> bool {
        if let Some(l) = &self.labels
            && !l.matches(&o.labels)
        {
            return false;
        }
        if let Some(f) = &self.fields
            && !f.matches(|path| o.field(path))
        {
            return false;
        }
        true
    }
}

/// A continue token: the revision of the first page and the last key served
/// (relative to the resource prefix). Encoded as upstream does: base64 of
/// `{"v":"meta.k8s.io/v1","rv":N,"start":"..."}`.
pub fn encode_continue(rev: Revision, start: &str) -> String {
    let raw = json!({"v": "meta.k8s.io/v1", "rv": rev, "start": start});
    base64::engine::general_purpose::URL_SAFE.encode(raw.to_string())
}

fn decode_continue(token: &str) -> Result<(Revision, String), ApiError> {
    let bad = || {
        ApiError::bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        )
    };
    let raw = base64::engine::general_purpose::URL_SAFE
        .decode(token)
        .or_else(|_| base64::engine::general_purpose::STANDARD.decode(token))
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    if v["v"] != "meta.k8s.io/v1" {
        return Err(bad());
    }
    let rev = v["rv"].as_i64().filter(|r| *r > 0).ok_or_else(bad)?;
    let start = v["start"].as_str().ok_or_else(bad)?.to_string();
    if start.contains("..") || start.starts_with('/') {
        return Err(bad());
    }
    Ok((rev, start))
}

struct Page {
    items: Vec<Arc<CachedObject>>,
    revision: Revision,
    cont: Option<String>,
    remaining: Option<i64>,
}

fn key_prefix(info: &ResourceInfo, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) if info.scope.is_namespaced() => format!("{}{ns}/", info.storage_prefix()),
        _ => info.storage_prefix(),
    }
}

async fn from_cache(
    state: &ApiState,
    info: &ResourceInfo,
    namespace: Option<&str>,
    filter: &Filter,
    limit: Option<usize>,
    min_rev: Option<Revision>,
) -> Result<Page, ApiError> {
    let cache = state.cache(info).await?;
    match min_rev {
        Some(r) => {
            if !state.caches.wait_for(r, Duration::from_secs(3)).await {
                return Err(ApiError::from_storage(
                    StorageError::FutureRevision {
                        requested: r,
                        current: state.caches.revision(),
                    },
                    &info.group,
                    &info.plural,
                    "",
                ));
            }
        }
        None => {
            let ok = state
                .caches
                .sync_with_storage(Duration::from_secs(3))
                .await
                .map_err(|e| ApiError::internal(e.to_string()))?;
            if !ok {
                return Err(ApiError::timeout(
                    "the watch cache is not caught up with storage; try again",
                ));
            }
        }
    }
    let snap = cache.snapshot(&key_prefix(info, namespace));
    tracing::debug!(
        resource = %info.plural,
        revision = snap.revision,
        objects = snap.objects.len(),
        "list from the watch cache"
    );
    let mut items = Vec::new();
    let mut cont = None;
    let mut remaining = None;
    let mut iter = snap.objects.into_iter().filter(|o| filter.matches(o));
    for o in iter.by_ref() {
        items.push(o);
        if limit.is_some_and(|l| items.len() >= l) {
            break;
        }
    }
    if limit.is_some() {
        let rest = iter.count();
        if rest > 0 {
            let last = items.last().map(|o| o.key.clone()).unwrap_or_default();
            let start = last
                .strip_prefix(&info.storage_prefix())
                .unwrap_or(&last)
                .to_string();
            cont = Some(encode_continue(snap.revision, &start));
            if filter.is_empty() {
                remaining = Some(rest as i64);
            }
        }
    }
    Ok(Page {
        items,
        revision: snap.revision,
        cont,
        remaining,
    })
}

async fn from_storage(
    state: &ApiState,
    info: &ResourceInfo,
    namespace: Option<&str>,
    filter: &Filter,
    limit: Option<usize>,
    rev: Revision,
    start_after: Option<String>,
) -> Result<Page, ApiError> {
    let prefix = key_prefix(info, namespace);
    let mut items = Vec::new();
    let mut after = start_after;
    let mut more;
    loop {
        let want = limit.map(|l| (l - items.len()).max(1));
        let res = state
            .storage
            .list(&prefix, ListOptions { revision: Some(rev), limit: want, start_after: after.clone() })
            .await
            .map_err(|e| match e {
                StorageError::Compacted { .. } => ApiError::gone(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
                ),
                other => ApiError::from_storage(other, &info.group, &info.plural, ""),
            })?;
        for kv in &res.kvs {
            after = Some(kv.key.clone());
            let Ok(v) = decode_stored(&kv.value, kv.mod_revision) else {
                continue;
            };
            let o = CachedObject::from_value(kv.key.clone(), &info.kind, &v, kv.mod_revision);
            if filter.matches(&o) {
                items.push(Arc::new(o));
            }
        }
        more = res.more;
        if !res.more || limit.is_some_and(|l| items.len() >= l) {
            break;
        }
    }
    let cont = if more {
        let last = after.unwrap_or_default();
        let start = last
            .strip_prefix(&info.storage_prefix())
            .unwrap_or(&last)
            .to_string();
        Some(encode_continue(rev, &start))
    } else {
        None
    };
    Ok(Page {
        items,
        revision: rev,
        cont,
        remaining: None,
    })
}

/// Serve a list request.
pub async fn list(
    state: &ApiState,
    info: &ResourceInfo,
    namespace: Option<&str>,
    q: &Query,
    repr: Representation,
) -> Result<Response<Body>, ApiError> {
    let filter = Filter::from_query(info, q)?;
    let limit = q.int("limit")?.filter(|l| *l > 0).map(|l| l as usize);
    // Upstream decodes every list option: a malformed one is a 400 even
    // where a plain list does not use it.
    q.int("timeoutSeconds")?;
    let rv = q.get("resourceVersion");
    let rv_match = q.get("resourceVersionMatch");
    let page = if let Some(token) = q.get("continue") {
        if rv.is_some_and(|r| r != "0") {
            return Err(ApiError::bad_request(
                "specifying resource version is not allowed when using continue",
            ));
        }
        let (rev, start) = decode_continue(token)?;
        let start_key = format!("{}{start}", info.storage_prefix());
        from_storage(state, info, namespace, &filter, limit, rev, Some(start_key)).await?
    } else {
        let parsed = match rv {
            None => None,
            Some(r) => Some(
                r.parse::<i64>()
                    .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {r:?}")))?,
            ),
        };
        match (rv_match, parsed) {
            (Some("Exact"), Some(r)) if r > 0 => {
                from_storage(state, info, namespace, &filter, limit, r, None).await?
            }
            (Some("Exact"), None) | (Some("NotOlderThan"), None) => {
                return Err(list_options(
                    "Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided",
                ));
            }
            (Some("Exact"), _) => {
                return Err(list_options(
                    "Forbidden: resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
                ));
            }
            (Some("NotOlderThan") | None, Some(0)) => {
                from_cache(state, info, namespace, &filter, limit, Some(0)).await?
            }
            (Some("NotOlderThan") | None, Some(r)) => {
                from_cache(state, info, namespace, &filter, limit, Some(r)).await?
            }
            (None, None) => from_cache(state, info, namespace, &filter, limit, None).await?,
            (Some(other), _) => {
                return Err(ApiError::invalid_options(
                    "ListOptions",
                    "resourceVersionMatch",
                    "FieldValueNotSupported",
                    format!(
                        "Unsupported value: {other:?}: supported values: \"Exact\", \"NotOlderThan\", \"\""
                    ),
                ));
            }
        }
    };
    let rev = page.revision.to_string();
    let bodies: Vec<Bytes> = if state.converts(info) {
        let objects: Vec<Value> = page
            .items
            .iter()
            .map(|o| serde_json::from_slice(&o.bytes).unwrap_or(Value::Null))
            .collect();
        crate::registry::conversion::to_version(state, info, objects)
            .await?
            .iter()
            .map(|v| Bytes::from(serde_json::to_vec(v).unwrap_or_default()))
            .collect()
    } else {
        page.items.iter().map(|o| o.bytes.clone()).collect()
    };
    match repr {
        Representation::Object => Ok(response::list_stream(
            &info.list_kind(),
            &info.api_version(),
            &rev,
            page.cont.as_deref(),
            page.remaining,
            bodies,
        )),
        Representation::Metadata => {
            let items: Vec<Vec<u8>> = bodies
                .iter()
                .map(|b| {
                    let v: Value = serde_json::from_slice(b).unwrap_or(Value::Null);
                    serde_json::to_vec(&response::partial_metadata(&v)).unwrap_or_default()
                })
                .collect();
            let refs: Vec<&[u8]> = items.iter().map(Vec::as_slice).collect();
            let body = response::list_body(
                "PartialObjectMetadataList",
                "meta.k8s.io/v1",
                &rev,
                page.cont.as_deref(),
                page.remaining,
                &refs,
            );
            Ok(response::json_bytes(200, Bytes::from(body)))
        }
        Representation::Table => {
            let objs: Vec<Value> = bodies
                .iter()
                .filter_map(|b| serde_json::from_slice(b).ok())
                .collect();
            let include = IncludeObject::parse(q.get("includeObject"));
            let t = convert::table(state, info, &objs, &rev, page.cont.as_deref(), include);
            Ok(response::json(200, &t))
        }
    }
}

/// An `events.k8s.io/v1` field selector in the field names of the core
/// Event it is stored as (`regarding.name` is `involvedObject.name`,
/// `reportingController` is `reportingComponent`), as upstream converts
/// field labels between the two.
fn events_v1_fields(sel: &rk_core::fields::FieldSelector) -> rk_core::fields::FieldSelector {
    rk_core::fields::FieldSelector::from_requirements(sel.requirements().iter().map(|r| {
        let field = match r.field.strip_prefix("regarding.") {
            Some(rest) => format!("involvedObject.{rest}"),
            None if r.field == "reportingController" => "reportingComponent".to_string(),
            None => r.field.clone(),
        };
        rk_core::fields::FieldRequirement { field, ..r.clone() }
    }))
}

/// A forbidden `resourceVersionMatch`, as upstream refuses it.
fn list_options(message: &str) -> ApiError {
    ApiError::invalid_options(
        "ListOptions",
        "resourceVersionMatch",
        "FieldValueForbidden",
        message.into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_token_round_trips() {
        let t = encode_continue(42, "ns/name");
        assert_eq!(decode_continue(&t).unwrap(), (42, "ns/name".to_string()));
    }

    #[test]
    fn garbage_continue_token_is_a_bad_request() {
        assert_eq!(decode_continue("!!!").unwrap_err().code, 400);
        let t = base64::engine::general_purpose::URL_SAFE
            .encode(r#"{"v":"meta.k8s.io/v1","rv":1,"start":"../x"}"#);
        assert_eq!(decode_continue(&t).unwrap_err().code, 400);
    }
}
