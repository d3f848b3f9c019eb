//! The state every request handler shares.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use rk_core::catalogue::{Catalogue, ResourceInfo};
use serde_json::Value;

use crate::cache::{CacheSet, WatchCache};
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::storage::Storage;

/// What the API server knows about one custom resource (from its CRD), with
/// what each version needs per request worked out once when the CRD is
/// served: its compiled schema, its merge rules and its printer columns.
/// Handlers share it through an [`Arc`]; a changed CRD replaces it whole.
#[derive(Debug)]
pub struct CustomResource {
    /// The CRD object as stored.
    pub crd: Value,
    /// The storage version.
    pub storage_version: String,
    versions: HashMap<String, CompiledVersion>,
}

/// One version of a CRD, prepared for requests.
#[derive(Debug)]
struct CompiledVersion {
    /// The compiled `openAPIV3Schema`, its compile error, or `None` without one.
    schema: Option<Result<crate::schema::CrdSchema, String>>,
    /// How lists and maps of this version merge in patches and apply.
    patch: crate::patch::PatchSchema,
    /// `additionalPrinterColumns`, when the version declares them.
    columns: Option<Vec<PrinterColumn>>,
}

type PrinterColumn = rk_core::k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceColumnDefinition;

impl CustomResource {
    /// Prepares the versions of `crd` (a stored CustomResourceDefinition).
    pub fn new(crd: Value, storage_version: String) -> Self {
        let versions = crd["spec"]["versions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| Some((v["name"].as_str()?.to_string(), CompiledVersion::new(v))))
            .collect();
        Self {
            crd,
            storage_version,
            versions,
        }
    }

    /// The version entry of the CRD for `version`.
    pub fn version(&self, version: &str) -> Option<&Value> {
        self.crd["spec"]["versions"]
            .as_array()?
            .iter()
            .find(|v| v["name"].as_str() == Some(version))
    }

    /// The compiled schema of `version`: `None` when it has none, `Err` with
    /// the reason when it does not compile.
    pub fn schema(&self, version: &str) -> Option<Result<&crate::schema::CrdSchema, &str>> {
        match self.versions.get(version)?.schema.as_ref()? {
            Ok(schema) => Some(Ok(schema)),
            Err(message) => Some(Err(message)),
        }
    }

    /// The merge rules of `version` (untyped when the version is unknown).
    pub fn patch_schema(&self, version: &str) -> crate::patch::PatchSchema {
        self.versions
            .get(version)
            .map(|v| v.patch.clone())
            .unwrap_or_else(crate::patch::PatchSchema::untyped)
    }

    /// The `additionalPrinterColumns` of `version`, if it declares any.
    pub fn printer_columns(&self, version: &str) -> Option<&[PrinterColumn]> {
        self.versions.get(version)?.columns.as_deref()
    }
}

impl CompiledVersion {
    fn new(version: &Value) -> Self {
        let schema = version.get("schema").and_then(|s| s.get("openAPIV3Schema"));
        Self {
            schema: schema
                .map(|s| crate::schema::CrdSchema::from_value(s).map_err(|e| e.to_string())),
            patch: crate::patch::PatchSchema::from_openapi_v3(schema.unwrap_or(&Value::Null)),
            columns: version
                .get("additionalPrinterColumns")
                .and_then(|c| serde_json::from_value(c.clone()).ok()),
        }
    }
}

/// Tunables of a running API server.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Most requests served at once (watches excluded).
    pub max_in_flight: usize,
    /// Timeout of non-watch requests.
    pub request_timeout: std::time::Duration,
    /// Default and maximum watch duration.
    pub max_watch_timeout: std::time::Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 3 * 1024 * 1024,
            max_in_flight: 600,
            request_timeout: std::time::Duration::from_secs(60),
            max_watch_timeout: std::time::Duration::from_secs(1800),
        }
    }
}

/// Shared server state.
pub struct ApiState {
    /// The store.
    pub storage: Arc<dyn Storage>,
    /// The watch caches.
    pub caches: Arc<CacheSet>,
    /// Served resources (built-ins and established CRDs).
    pub catalogue: RwLock<Catalogue>,
    /// Established custom resources by (group, plural).
    pub custom: RwLock<HashMap<(String, String), Arc<CustomResource>>>,
    /// Limits.
    pub limits: Limits,
    /// Metrics.
    pub metrics: Metrics,
    /// OpenAPI documents, rebuilt when CRDs change.
    pub openapi: RwLock<Arc<crate::openapi::OpenApiCache>>,
    /// The Service cluster IP range.
    pub service_cidr: crate::admission::service_ips::ServiceCidr,
    /// Service IPs and node ports handed out but maybe not yet stored.
    pub allocations: crate::admission::Allocations,
    /// Serialises Service IP and port allocation.
    pub allocation_lock: tokio::sync::Mutex<()>,
    /// Serialises creates checked against quotas until they are stored.
    pub quota_lock: Arc<tokio::sync::Mutex<()>>,
    /// The key service account tokens are signed with, read from (or first
    /// written to) the store on first use.
    pub token_key: tokio::sync::OnceCell<Vec<u8>>,
    /// The built-in resources and their watch caches, found once.
    pub builtin: BuiltinCaches,
}

/// A built-in resource with its watch cache and storage prefix.
pub struct Resident {
    /// The resource.
    pub info: Arc<ResourceInfo>,
    /// Its storage prefix (`info.storage_prefix()`).
    pub prefix: String,
    /// Its watch cache as last found.
    cache: RwLock<Arc<WatchCache>>,
}

impl Resident {
    /// The resource's current watch cache: the one found last, or, once the
    /// cache set has retired that one (a rebuild after the storage watch
    /// broke replaces every cache), the cache set's current one.
    pub async fn cache(&self, caches: &CacheSet) -> Result<Arc<WatchCache>, ApiError> {
        let last = self.cache.read().unwrap_or_else(|p| p.into_inner()).clone();
        if !last.is_closed() {
            return Ok(last);
        }
        let current = match caches.get(&self.prefix).await {
            Some(c) => c,
            None => caches
                .add(&self.prefix, &self.info.kind)
                .await
                .map_err(|e| ApiError::internal(e.to_string()))?,
        };
        *self.cache.write().unwrap_or_else(|p| p.into_inner()) = current.clone();
        Ok(current)
    }
}

/// Every stored built-in resource with its watch cache, by plural.
///
/// Writes consult several of them on every request (admission
/// configuration, limit ranges, quotas, namespaces): looking each up in the
/// catalogue and the cache set, with a prefix string built every time, was
/// ~4% of a pod create's CPU. Built-in resources live as long as the
/// server, so each is found once, at start, and its cache again only when
/// the cache set retires it ([`Resident::cache`]).
#[derive(Default)]
pub struct BuiltinCaches {
    by_plural: HashMap<String, Vec<Arc<Resident>>>,
}

impl BuiltinCaches {
    /// Record `info`'s cache.
    pub fn insert(&mut self, info: Arc<ResourceInfo>, cache: Arc<WatchCache>) {
        let prefix = info.storage_prefix();
        self.by_plural
            .entry(info.plural.clone())
            .or_default()
            .push(Arc::new(Resident {
                info,
                prefix,
                cache: RwLock::new(cache),
            }));
    }

    /// The built-in resource `group/version/plural`, if it is one.
    pub fn get(&self, group: &str, version: &str, plural: &str) -> Option<&Arc<Resident>> {
        self.by_plural
            .get(plural)?
            .iter()
            .find(|r| r.info.group == group && r.info.version == version)
    }
}

impl ApiState {
    /// Look a resource up by group, version and plural.
    pub fn resource(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceInfo>> {
        self.catalogue
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(group, version, plural)
    }

    /// A snapshot of the catalogue.
    pub fn catalogue(&self) -> Catalogue {
        self.catalogue
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The custom resource behind `info`, if it is one.
    pub fn custom_resource(&self, info: &ResourceInfo) -> Option<Arc<CustomResource>> {
        // Asked several times per request: built-in kinds skip the lookup
        // (a CRD cannot define a kind in a built-in group).
        if rk_core::catalogue::Catalogue::is_builtin_group(&info.group) {
            return None;
        }
        self.custom
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(info.group.clone(), info.plural.clone()))
            .cloned()
    }

    /// The current OpenAPI documents.
    pub fn openapi(&self) -> Arc<crate::openapi::OpenApiCache> {
        self.openapi
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Rebuild the OpenAPI documents after the set of CRDs changed.
    pub fn rebuild_openapi(&self) {
        let crds: Vec<rk_core::k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> = self
            .custom
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter_map(|c| serde_json::from_value(c.crd.clone()).ok())
            .collect();
        let fresh = crate::openapi::OpenApiCache::new(&self.catalogue(), &crds);
        *self.openapi.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(fresh);
    }

    /// True if objects of `info` may be stored at another version than the
    /// one `info` serves, so reads must convert them.
    pub fn converts(&self, info: &ResourceInfo) -> bool {
        if info.group == "events.k8s.io" && info.kind == "Event" {
            return true;
        }
        self.custom_resource(info).is_some_and(|c| {
            c.crd["spec"]["versions"]
                .as_array()
                .map(|v| v.len() > 1)
                .unwrap_or(false)
        })
    }

    /// The resource whose storage `info` shares, for registry checks
    /// (`events.k8s.io/v1` events are stored as core `v1` events).
    pub fn storage_info(&self, info: &Arc<ResourceInfo>) -> Arc<ResourceInfo> {
        if info.group == "events.k8s.io"
            && info.kind == "Event"
            && let Some(core) = self.resource("", "v1", "events")
        {
            return core;
        }
        info.clone()
    }

    /// The watch cache of a resource.
    pub async fn cache(&self, info: &ResourceInfo) -> Result<Arc<WatchCache>, ApiError> {
        if let Some(resident) = self.builtin.get(&info.group, &info.version, &info.plural) {
            return resident.cache(&self.caches).await;
        }
        let prefix = info.storage_prefix();
        match self.caches.get(&prefix).await {
            Some(c) => Ok(c),
            None => self
                .caches
                .add(&prefix, &info.kind)
                .await
                .map_err(|e| ApiError::internal(e.to_string())),
        }
    }
}
