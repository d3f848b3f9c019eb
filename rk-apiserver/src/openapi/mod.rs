//! OpenAPI documents: `/openapi/v2` (swagger 2.0) and `/openapi/v3` (an index
//! plus one OpenAPI 3.0 document per group version), as kube-apiserver serves
//! them, so that `kubectl explain`, kubectl's client-side validation and
//! field-validation probe, and generated clients find what they expect.
//!
//! Component schemas of built-in kinds come from `k8s-openapi` through
//! `schemars`, under upstream's definition names
//! (`io.k8s.api.apps.v1.Deployment`), with the `x-kubernetes-group-version-kind`
//! extension on every kind. CustomResourceDefinitions contribute their
//! `openAPIV3Schema` (named `com.example.stable.v1.CronTab`, as upstream).
//!
//! The documents are large; [`OpenApiCache`] builds them once and keeps their
//! serialized bytes until the set of CRDs changes.
//!
//! ```
//! use rk_apiserver::openapi::{OpenApiCache, schema_for};
//! use rk_core::catalogue::Catalogue;
//!
//! let catalogue = Catalogue::builtin();
//! let cache = OpenApiCache::new(&catalogue, &[]);
//! let index: serde_json::Value = serde_json::from_slice(&cache.v3_index()).unwrap();
//! let url = index["paths"]["apis/apps/v1"]["serverRelativeURL"].as_str().unwrap();
//! assert!(url.starts_with("/openapi/v3/apis/apps/v1?hash="));
//! assert!(cache.v3("apis/apps/v1").is_some());
//!
//! let deployment = schema_for("apps/v1", "Deployment").unwrap();
//! assert_eq!(deployment.name(), "io.k8s.api.apps.v1.Deployment");
//! assert!(deployment.root()["properties"]["spec"].is_object());
//! ```

mod builtin;
mod crd;
mod paths;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use rk_core::catalogue::{Catalogue, ResourceInfo, split_api_version};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha512};

use builtin::{
    API_GROUP, API_GROUP_LIST, API_RESOURCE_LIST, API_VERSION_DESCRIPTION, API_VERSIONS,
    DELETE_OPTIONS, KIND_DESCRIPTION, LIST_META, LIST_META_DESCRIPTION, OBJECT_META, PATCH, SCALE,
    STATUS, V2_REF_PREFIX, V3_REF_PREFIX, WATCH_EVENT, builtin, collect_closure, gvk,
};
use paths::{Flavor, Served};

pub use crd::definition_name as crd_definition_name;

/// Upstream's definition name of `ObjectMeta`.
pub const OBJECT_META_NAME: &str = OBJECT_META;

/// The Kubernetes version the documents describe.
const INFO_VERSION: &str = "v1.37.0";

/// Deepest schema nesting the reference rewriting follows.
const MAX_DEPTH: usize = 256;

/// The component schema of one kind (or any named definition), with access to
/// the definitions it refers to.
#[derive(Clone, Copy)]
pub struct KindSchema {
    name: &'static str,
    root: &'static Value,
    definitions: &'static Map<String, Value>,
}

impl fmt::Debug for KindSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KindSchema")
            .field("name", &self.name)
            .finish()
    }
}

impl KindSchema {
    /// Upstream's definition name, e.g. `io.k8s.api.apps.v1.Deployment`.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The schema itself (OpenAPI v3 form, `#/components/schemas/` references).
    pub fn root(&self) -> &'static Value {
        self.root
    }

    /// Another definition by name.
    pub fn definition(&self, name: &str) -> Option<&'static Value> {
        self.definitions.get(name)
    }

    /// Follows `$ref` (also a single-element `allOf` wrapping a `$ref`, the
    /// form described references take in v3) to the schema it names. Returns
    /// `node` unchanged when it is no reference or the target is unknown.
    pub fn resolve(&self, node: &'static Value) -> &'static Value {
        let mut current = node;
        for _ in 0..8 {
            let Some(name) = reference_target(current) else {
                return current;
            };
            match self.definitions.get(name) {
                Some(next) => current = next,
                None => return current,
            }
        }
        current
    }
}

/// The definition a node refers to, if it is a (possibly `allOf`-wrapped) `$ref`.
fn reference_target(node: &Value) -> Option<&str> {
    if let Some(r) = node.get("$ref").and_then(Value::as_str) {
        return r.strip_prefix(V3_REF_PREFIX);
    }
    match node.get("allOf").and_then(Value::as_array) {
        Some(all) if all.len() == 1 => all[0]
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix(V3_REF_PREFIX)),
        _ => None,
    }
}

/// The schema of a built-in kind by `apiVersion` and `kind` (`apps/v1`,
/// `Deployment`). `None` for kinds `k8s-openapi` does not describe (custom
/// resources included).
pub fn schema_for(api_version: &str, kind: &str) -> Option<KindSchema> {
    let (group, version) = split_api_version(api_version);
    let b = builtin();
    let name = b
        .kinds
        .get(&(group.to_owned(), version.to_owned(), kind.to_owned()))?;
    definition(name)
}

/// A built-in definition by upstream name, e.g.
/// `io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta`.
pub fn definition(name: &str) -> Option<KindSchema> {
    let b = builtin();
    let (name, root) = b.definitions.get_key_value(name)?;
    Some(KindSchema {
        name: name.as_str(),
        root,
        definitions: &b.definitions,
    })
}

/// Every group version served by the catalogue or the CRDs, as
/// (group, version).
fn group_versions(
    catalogue: &Catalogue,
    crds: &[CustomResourceDefinition],
) -> BTreeSet<(String, String)> {
    let mut out: BTreeSet<(String, String)> = catalogue
        .iter()
        .map(|e| (e.group.clone(), e.version.clone()))
        .collect();
    for c in crds {
        for info in crd::resource_infos(c) {
            out.insert((info.group, info.version));
        }
    }
    out
}

/// The resources of one group version, each with the CRD that defines it.
fn resources_in<'a>(
    catalogue: &Catalogue,
    crds: &'a [CustomResourceDefinition],
    group: &str,
    version: &str,
) -> Vec<(ResourceInfo, Option<&'a CustomResourceDefinition>)> {
    let mut list: Vec<ResourceInfo> = catalogue
        .in_group_version(group, version)
        .iter()
        .map(|e| (**e).clone())
        .collect();
    for c in crds.iter().filter(|c| c.spec.group == group) {
        for info in crd::resource_infos(c) {
            if info.version == version && !list.iter().any(|e| e.plural == info.plural) {
                list.push(info);
            }
        }
    }
    list.sort_by(|a, b| a.plural.cmp(&b.plural));
    list.into_iter()
        .map(|info| {
            let owner = crds.iter().find(|c| {
                c.spec.group == info.group
                    && c.spec.names.plural == info.plural
                    && crd::crd_version(c, &info.version).is_some()
            });
            (info, owner)
        })
        .collect()
}

/// Paths and definitions under construction.
struct Builder {
    flavor: Flavor,
    paths: Map<String, Value>,
    definitions: BTreeMap<String, Value>,
    roots: Vec<String>,
}

impl Builder {
    fn new(flavor: Flavor) -> Self {
        Builder {
            flavor,
            paths: Map::new(),
            definitions: BTreeMap::new(),
            roots: [
                STATUS,
                DELETE_OPTIONS,
                WATCH_EVENT,
                PATCH,
                OBJECT_META,
                LIST_META,
                API_RESOURCE_LIST,
            ]
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
        }
    }

    /// Adds the paths and schemas of one group version.
    fn group_version(
        &mut self,
        catalogue: &Catalogue,
        crds: &[CustomResourceDefinition],
        group: &str,
        version: &str,
    ) {
        let flavor = self.flavor;
        paths::group_version_root(flavor, group, version, &mut self.paths);
        for (info, owner) in resources_in(catalogue, crds, group, version) {
            let (kind_def, list_def, custom) = if let Some(c) = owner {
                let defs = crd::definitions(flavor, c, version);
                let names: Vec<String> = defs.iter().map(|(n, _)| n.clone()).collect();
                self.definitions.extend(defs);
                let list_kind = c
                    .spec
                    .names
                    .list_kind
                    .clone()
                    .unwrap_or_else(|| format!("{}List", info.kind));
                let kind_def = names
                    .first()
                    .cloned()
                    .unwrap_or_else(|| crd::definition_name(group, version, &info.kind));
                (
                    kind_def,
                    crd::definition_name(group, version, &list_kind),
                    true,
                )
            } else {
                let key = (group.to_owned(), version.to_owned(), info.kind.clone());
                let kind_def = match builtin().kinds.get(&key) {
                    Some(name) => {
                        self.roots.push(name.clone());
                        name.clone()
                    }
                    None => {
                        let name = unknown_definition_name(group, version, &info.kind);
                        self.definitions
                            .insert(name.clone(), permissive_kind(group, version, &info.kind));
                        name
                    }
                };
                let list_def = format!("{kind_def}List");
                self.definitions.insert(
                    list_def.clone(),
                    list_schema(
                        flavor,
                        &kind_def,
                        group,
                        version,
                        &info.kind,
                        &info.list_kind(),
                    ),
                );
                (kind_def, list_def, false)
            };
            if info.has_subresource("scale") {
                self.roots.push(SCALE.to_owned());
            }
            paths::resource_paths(
                flavor,
                &Served {
                    info: &info,
                    kind_def,
                    list_def,
                    custom,
                },
                &mut self.paths,
            );
        }
    }

    /// Closes the definitions over references, converts them to the flavor
    /// and stamps the meta kinds' GVK lists.
    fn finish(
        mut self,
        gvs: &BTreeSet<(String, String)>,
    ) -> (Map<String, Value>, Map<String, Value>) {
        let b = builtin();
        let roots = std::mem::take(&mut self.roots);
        let mut builtins = BTreeMap::new();
        collect_closure(&b.definitions, roots, &mut builtins);
        let mut definitions = Map::new();
        for (name, mut schema) in builtins {
            if self.flavor == Flavor::V2 {
                to_v2_refs(&mut schema, 0);
            }
            definitions.insert(name, schema);
        }
        for (name, schema) in self.definitions {
            definitions.insert(name, schema);
        }
        let mut with_core = gvs.clone();
        with_core.insert((String::new(), "v1".to_owned()));
        for (name, kind) in [
            (DELETE_OPTIONS, "DeleteOptions"),
            (WATCH_EVENT, "WatchEvent"),
        ] {
            if let Some(Value::Object(schema)) = definitions.get_mut(name) {
                let list: Vec<Value> = with_core.iter().map(|(g, v)| gvk(g, v, kind)).collect();
                schema.insert("x-kubernetes-group-version-kind".into(), Value::Array(list));
            }
        }
        if let Some(Value::Object(schema)) = definitions.get_mut(STATUS) {
            schema.insert(
                "x-kubernetes-group-version-kind".into(),
                json!([gvk("", "v1", "Status")]),
            );
        }
        (self.paths, definitions)
    }
}

/// Name for a catalogue kind that has neither a CRD nor a `k8s-openapi` type.
fn unknown_definition_name(group: &str, version: &str, kind: &str) -> String {
    if group.is_empty() {
        format!("io.k8s.api.core.{version}.{kind}")
    } else {
        crd::definition_name(group, version, kind)
    }
}

/// A schema that accepts any object of a kind rk serves without a schema.
fn permissive_kind(group: &str, version: &str, kind: &str) -> Value {
    let mut m = Map::new();
    m.insert("type".into(), "object".into());
    m.insert("x-kubernetes-preserve-unknown-fields".into(), true.into());
    builtin::add_gvk(&mut m, group, version, kind);
    Value::Object(m)
}

/// The list kind of a built-in kind.
fn list_schema(
    flavor: Flavor,
    kind_def: &str,
    group: &str,
    version: &str,
    kind: &str,
    list_kind: &str,
) -> Value {
    let mut m = Map::new();
    m.insert(
        "description".into(),
        format!("{list_kind} is a list of {kind} objects.").into(),
    );
    m.insert("type".into(), "object".into());
    m.insert("required".into(), json!(["items"]));
    m.insert(
        "properties".into(),
        json!({
            "apiVersion": {"type": "string", "description": API_VERSION_DESCRIPTION},
            "items": {
                "type": "array",
                "description": format!("Items is the list of {kind} objects."),
                "items": flavor.reference(kind_def),
            },
            "kind": {"type": "string", "description": KIND_DESCRIPTION},
            "metadata": crd::meta_ref(flavor, LIST_META, LIST_META_DESCRIPTION),
        }),
    );
    builtin::add_gvk(&mut m, group, version, list_kind);
    Value::Object(m)
}

/// Rewrites `#/components/schemas/` references to `#/definitions/` and
/// unwraps described references (`allOf: [$ref]` + siblings) into the
/// `$ref`-with-siblings form upstream's swagger documents use. `schema` walks
/// a schema node; property maps are walked per value, so properties named
/// like keywords (`default`, `enum`) are handled as the schemas they are.
fn to_v2_refs(schema: &mut Value, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    let Value::Object(map) = schema else {
        return;
    };
    if let Some(Value::String(r)) = map.get_mut("$ref")
        && let Some(name) = r.strip_prefix(V3_REF_PREFIX)
    {
        *r = format!("{V2_REF_PREFIX}{name}");
    }
    let single_ref = match map.get("allOf") {
        Some(Value::Array(all)) if all.len() == 1 => all[0].get("$ref").cloned(),
        _ => None,
    };
    if let Some(Value::String(r)) = single_ref {
        map.remove("allOf");
        map.remove("default");
        let name = r.strip_prefix(V3_REF_PREFIX).unwrap_or(&r);
        map.insert("$ref".into(), format!("{V2_REF_PREFIX}{name}").into());
    }
    for key in ["properties", "patternProperties", "definitions"] {
        if let Some(Value::Object(children)) = map.get_mut(key) {
            children.values_mut().for_each(|c| to_v2_refs(c, depth + 1));
        }
    }
    for key in [
        "items",
        "additionalProperties",
        "additionalItems",
        "not",
        "allOf",
        "anyOf",
        "oneOf",
    ] {
        match map.get_mut(key) {
            Some(Value::Array(list)) => list.iter_mut().for_each(|c| to_v2_refs(c, depth + 1)),
            Some(child) => to_v2_refs(child, depth + 1),
            None => {}
        }
    }
}

fn security_scheme() -> Value {
    json!({
        "BearerToken": {
            "type": "apiKey",
            "description": "Bearer Token authentication",
            "name": "authorization",
            "in": "header",
        }
    })
}

fn v3_wrap(paths: Map<String, Value>, schemas: Map<String, Value>) -> Value {
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": INFO_VERSION},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": security_scheme(),
        },
    })
}

/// The OpenAPI 3.0 document of one group version (`""`/`v1` for the core
/// group), or `None` when nothing is served there.
pub fn v3_group_version(
    catalogue: &Catalogue,
    crds: &[CustomResourceDefinition],
    group: &str,
    version: &str,
) -> Option<Value> {
    let gvs = group_versions(catalogue, crds);
    if !gvs.contains(&(group.to_owned(), version.to_owned())) {
        return None;
    }
    let mut b = Builder::new(Flavor::V3);
    b.group_version(catalogue, crds, group, version);
    let mut doc_gvs = BTreeSet::new();
    doc_gvs.insert((group.to_owned(), version.to_owned()));
    let (paths, schemas) = b.finish(&doc_gvs);
    Some(v3_wrap(paths, schemas))
}

/// The `/openapi/v3` document keys: `api`, `api/v1`, `apis`, `apis/<group>`
/// and `apis/<group>/<version>` for everything served.
fn v3_keys(catalogue: &Catalogue, crds: &[CustomResourceDefinition]) -> Vec<String> {
    let gvs = group_versions(catalogue, crds);
    let mut keys = BTreeSet::new();
    keys.insert("api".to_owned());
    keys.insert("apis".to_owned());
    for (g, v) in &gvs {
        if g.is_empty() {
            keys.insert(format!("api/{v}"));
        } else {
            keys.insert(format!("apis/{g}"));
            keys.insert(format!("apis/{g}/{v}"));
        }
    }
    keys.into_iter().collect()
}

/// The OpenAPI 3.0 document at a `/openapi/v3/<path>` key: `api/v1`,
/// `apis/apps/v1`, or the discovery documents `api`, `apis`, `apis/apps`.
pub fn v3_document(
    catalogue: &Catalogue,
    crds: &[CustomResourceDefinition],
    path: &str,
) -> Option<Value> {
    let key = normalize_v3_path(path);
    let parts: Vec<&str> = key.split('/').collect();
    match parts.as_slice() {
        ["api", version] => v3_group_version(catalogue, crds, "", version),
        ["apis", group, version] => v3_group_version(catalogue, crds, group, version),
        ["api"] | ["apis"] => Some(discovery_document(key)),
        ["apis", group] => {
            let served = group_versions(catalogue, crds)
                .iter()
                .any(|(g, _)| g == group);
            served.then(|| discovery_document(key))
        }
        _ => None,
    }
}

fn discovery_document(key: &str) -> Value {
    let mut paths = Map::new();
    paths::discovery_paths(Flavor::V3, key, &mut paths);
    let mut schemas = BTreeMap::new();
    let root = match key {
        "api" => API_VERSIONS,
        "apis" => API_GROUP_LIST,
        _ => API_GROUP,
    };
    collect_closure(&builtin().definitions, [root.to_owned()], &mut schemas);
    v3_wrap(paths, schemas.into_iter().collect())
}

/// `/openapi/v3/apis/apps/v1?hash=..` or `/apis/apps/v1` -> `apis/apps/v1`.
fn normalize_v3_path(path: &str) -> &str {
    let path = path.split('?').next().unwrap_or(path);
    let path = path.strip_prefix("/openapi/v3").unwrap_or(path);
    path.trim_matches('/')
}

/// The `/openapi/v3` index: every document key with its URL and hash.
pub fn v3_index(catalogue: &Catalogue, crds: &[CustomResourceDefinition]) -> Value {
    let cache = OpenApiCache::new(catalogue, crds);
    serde_json::from_slice(&cache.v3_index()).unwrap_or_else(|_| json!({"paths": {}}))
}

/// The swagger 2.0 document of everything served (`/openapi/v2`).
pub fn v2_document(catalogue: &Catalogue, crds: &[CustomResourceDefinition]) -> Value {
    let gvs = group_versions(catalogue, crds);
    let mut b = Builder::new(Flavor::V2);
    let mut groups = BTreeSet::new();
    for key in ["api", "apis"] {
        paths::discovery_paths(Flavor::V2, key, &mut b.paths);
    }
    for (g, v) in &gvs {
        if !g.is_empty() && groups.insert(g.clone()) {
            paths::discovery_paths(Flavor::V2, &format!("apis/{g}"), &mut b.paths);
        }
        b.group_version(catalogue, crds, g, v);
    }
    b.roots
        .extend([API_VERSIONS, API_GROUP_LIST, API_GROUP].map(str::to_owned));
    let (paths, definitions) = b.finish(&gvs);
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": INFO_VERSION},
        "paths": paths,
        "definitions": definitions,
        "securityDefinitions": security_scheme(),
        "security": [{"BearerToken": []}],
    })
}

/// Uppercase hex of the SHA-512 of `bytes`, as upstream's document hashes.
fn sha512_hex(bytes: &[u8]) -> String {
    let digest = Sha512::digest(bytes);
    let mut out = String::with_capacity(digest.len() * 2);
    for b in digest.iter() {
        out.push_str(&format!("{b:02X}"));
    }
    out
}

fn to_bytes(value: &Value) -> Bytes {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .unwrap_or_else(|_| Bytes::from_static(b"{}"))
}

/// One v3 document: its hash, and its bytes once a client asked for it.
#[derive(Clone, Debug)]
struct CachedDoc {
    /// Digest of what the document was built from.
    input: String,
    /// Built again on first request (the build is deterministic, so the
    /// bytes are those `hash` was taken of); shared with the caches rebuilt
    /// from this one.
    bytes: Arc<OnceLock<Bytes>>,
    hash: String,
}

#[derive(Debug)]
struct CacheInner {
    fingerprint: String,
    index: Bytes,
    docs: BTreeMap<String, CachedDoc>,
    v2: OnceLock<Bytes>,
    catalogue: Catalogue,
    crds: Vec<CustomResourceDefinition>,
}

/// The serialized OpenAPI documents, built once per set of served kinds.
///
/// Every `/openapi/v3` document is built and hashed up front (the index
/// carries each hash) and kept from its first request on; `/openapi/v2` is
/// built on first request. The cache is
/// immutable and cheap to clone; when CRDs are added, changed or removed,
/// build a new one with [`OpenApiCache::rebuild`], which reuses every document
/// whose inputs did not change (built-in group versions are never rebuilt).
/// [`OpenApiCache::is_current`] tells whether a catalogue and CRD set is the
/// one the cache was built from (CRD status and metadata are ignored).
#[derive(Clone, Debug)]
pub struct OpenApiCache {
    inner: Arc<CacheInner>,
}

impl OpenApiCache {
    /// Builds every v3 document for the catalogue and CRDs.
    pub fn new(catalogue: &Catalogue, crds: &[CustomResourceDefinition]) -> Self {
        Self::build(catalogue, crds, None)
    }

    /// A cache for a new catalogue and CRD set, reusing this one's documents
    /// whose inputs are unchanged.
    pub fn rebuild(&self, catalogue: &Catalogue, crds: &[CustomResourceDefinition]) -> Self {
        Self::build(catalogue, crds, Some(&self.inner.docs))
    }

    /// True if the cache was built from this catalogue and CRD set.
    pub fn is_current(&self, catalogue: &Catalogue, crds: &[CustomResourceDefinition]) -> bool {
        self.inner.fingerprint == fingerprint(catalogue, crds)
    }

    fn build(
        catalogue: &Catalogue,
        crds: &[CustomResourceDefinition],
        previous: Option<&BTreeMap<String, CachedDoc>>,
    ) -> Self {
        let mut docs = BTreeMap::new();
        let mut index = Map::new();
        for key in v3_keys(catalogue, crds) {
            let input = doc_input(catalogue, crds, &key);
            let reused = previous
                .and_then(|p| p.get(&key))
                .filter(|d| d.input == input)
                .cloned();
            let doc = match reused {
                Some(d) => d,
                None => {
                    let Some(value) = v3_document(catalogue, crds, &key) else {
                        continue;
                    };
                    // Hashed now for the index; the bytes are dropped until a
                    // client asks (most never ask for most group versions,
                    // and all of them together are ~4 MB).
                    let hash = sha512_hex(&to_bytes(&value));
                    CachedDoc {
                        input,
                        bytes: Arc::new(OnceLock::new()),
                        hash,
                    }
                }
            };
            index.insert(
                key.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash={}", doc.hash)}),
            );
            docs.insert(key, doc);
        }
        let index = to_bytes(&json!({ "paths": index }));
        OpenApiCache {
            inner: Arc::new(CacheInner {
                fingerprint: fingerprint(catalogue, crds),
                index,
                docs,
                v2: OnceLock::new(),
                catalogue: catalogue.clone(),
                crds: crds.to_vec(),
            }),
        }
    }

    /// The `/openapi/v3` index document.
    pub fn v3_index(&self) -> Bytes {
        self.inner.index.clone()
    }

    /// The v3 document at a key (`apis/apps/v1`; a leading `/openapi/v3/` and
    /// a `?hash=` query are ignored), or `None` if there is none.
    pub fn v3(&self, path: &str) -> Option<Bytes> {
        let key = normalize_v3_path(path);
        let doc = self.inner.docs.get(key)?;
        let bytes = doc.bytes.get_or_init(|| {
            v3_document(&self.inner.catalogue, &self.inner.crds, key)
                .map(|value| to_bytes(&value))
                .unwrap_or_else(|| Bytes::from_static(b"{}"))
        });
        Some(bytes.clone())
    }

    /// The hash (ETag) of the v3 document at a key.
    pub fn v3_hash(&self, path: &str) -> Option<&str> {
        self.inner
            .docs
            .get(normalize_v3_path(path))
            .map(|d| d.hash.as_str())
    }

    /// The `/openapi/v2` document (built on first call).
    pub fn v2(&self) -> Bytes {
        self.inner
            .v2
            .get_or_init(|| to_bytes(&v2_document(&self.inner.catalogue, &self.inner.crds)))
            .clone()
    }
}

/// What a CRD contributes to the documents: its name and spec.
fn crd_input(crd: &CustomResourceDefinition) -> String {
    format!(
        "{:?}{}",
        crd.metadata.name,
        serde_json::to_string(&crd.spec).unwrap_or_default()
    )
}

/// Digest of everything the documents depend on.
fn fingerprint(catalogue: &Catalogue, crds: &[CustomResourceDefinition]) -> String {
    let mut h = Sha512::new();
    for e in catalogue.iter() {
        h.update(format!("{e:?}\n"));
    }
    for c in crds {
        h.update(crd_input(c));
        h.update("\n");
    }
    sha512_hex(&h.finalize())
}

/// Digest of the inputs of one v3 document.
fn doc_input(catalogue: &Catalogue, crds: &[CustomResourceDefinition], key: &str) -> String {
    let mut h = Sha512::new();
    h.update(key);
    let parts: Vec<&str> = key.split('/').collect();
    let gv = match parts.as_slice() {
        ["api", v] => Some(("", *v)),
        ["apis", g, v] => Some((*g, *v)),
        _ => None,
    };
    if let Some((g, v)) = gv {
        for (info, owner) in resources_in(catalogue, crds, g, v) {
            h.update(format!("{info:?}\n"));
            if let Some(c) = owner {
                h.update(crd_input(c));
            }
        }
    }
    sha512_hex(&h.finalize())
}

#[cfg(test)]
mod tests;
