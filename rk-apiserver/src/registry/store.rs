//! The generic object flow every kind shares: decode, default, validate,
//! admit, write with compare-and-swap; generation bumps on spec changes; the
//! status split; graceful deletion and finalizers.

use std::sync::Arc;

use bytes::Bytes;
use rk_core::catalogue::ResourceInfo;
use serde_json::{Value, json};

use super::meta::{self, meta_mut, meta_str};
use crate::admission::{mutating_policies, webhooks};
use crate::cache::dispatch::decode_stored;
use crate::error::{ApiError, StatusCause};
use crate::request::FieldValidation;
use crate::state::ApiState;
use crate::storage::{Revision, StorageError};

/// Options of a write.
#[derive(Clone, Debug)]
pub struct WriteOptions {
    /// `dryRun=All`: run every step but the write.
    pub dry_run: bool,
    /// `fieldManager`, or the default derived from the user agent.
    pub field_manager: String,
    /// `fieldValidation`.
    pub field_validation: FieldValidation,
}

impl Default for WriteOptions {
    fn default() -> Self {
        Self {
            dry_run: false,
            field_manager: "unknown".into(),
            field_validation: FieldValidation::Warn,
        }
    }
}

/// Which part of an object a write may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// The main resource: everything but `status`.
    Main,
    /// The `status` subresource: only `status`.
    Status,
}

/// The result of a write.
#[derive(Debug)]
pub struct Outcome {
    /// The object as stored (or as it would be, on a dry run).
    pub object: Value,
    /// `object` serialized, when the write stored it.
    pub bytes: Option<Bytes>,
    /// `Warning` headers to send.
    pub warnings: Vec<String>,
    /// True if the write created the object.
    pub created: bool,
}

/// The identity of one object.
#[derive(Clone, Debug)]
pub struct Target {
    /// Its resource.
    pub info: Arc<ResourceInfo>,
    /// Its namespace (namespaced kinds only).
    pub namespace: Option<String>,
    /// Its name.
    pub name: String,
}

impl Target {
    /// The storage key.
    pub fn key(&self) -> String {
        self.info.storage_key(self.namespace.as_deref(), &self.name)
    }

    fn not_found(&self) -> ApiError {
        ApiError::not_found(&self.info.group, &self.info.plural, &self.name)
    }

    fn storage_err(&self, e: StorageError) -> ApiError {
        ApiError::from_storage(e, &self.info.group, &self.info.plural, &self.name)
    }
}

/// Kinds whose status may be written along with the object at creation.
fn keeps_status_on_create(info: &ResourceInfo) -> bool {
    matches!(
        (info.group.as_str(), info.kind.as_str()),
        ("", "Node") | ("", "Event") | ("events.k8s.io", "Event") | ("", "PersistentVolume")
    )
}

/// Read one object (consistent read from storage), a custom resource at the
/// version `target` addresses.
pub async fn get(state: &ApiState, target: &Target) -> Result<(Value, Revision), ApiError> {
    let kv = state
        .storage
        .get(&target.key())
        .await
        .map_err(|e| target.storage_err(e))?;
    let kv = kv.ok_or_else(|| target.not_found())?;
    let obj =
        decode_stored(&kv.value, kv.mod_revision).map_err(|e| ApiError::internal(e.to_string()))?;
    // A custom resource is stored at the version that wrote it; whoever
    // reads it here (an update, a patch) works at the version it addresses.
    let obj = if state.custom_resource(&target.info).is_some() {
        super::conversion::one_to_version(state, &target.info, obj).await?
    } else {
        obj
    };
    Ok((obj, kv.mod_revision))
}

/// Serialize an object for storage: everything but `resourceVersion`
/// (removed from `obj` in place; the write's revision replaces it).
fn encode(obj: &mut Value) -> Result<Bytes, ApiError> {
    meta_mut(obj).remove("resourceVersion");
    serde_json::to_vec(obj)
        .map(Bytes::from)
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// Store `obj` (its `resourceVersion` dropped) with `write`, announced to
/// the watch cache first so the object is serialized once for the client
/// and the cache: the stored object with its `resourceVersion`, and its
/// bytes.
async fn store_announced<F, Fut>(
    state: &ApiState,
    target: &Target,
    mut obj: Value,
    write: F,
) -> Result<(Value, Bytes), StoreError>
where
    F: FnOnce(Bytes) -> Fut,
    Fut: std::future::Future<Output = Result<Revision, StorageError>>,
{
    meta_mut(&mut obj).remove("resourceVersion");
    let (stored, rv_slot) = crate::cache::object::json_bytes_marking_rv(&obj)
        .map_err(|e| StoreError::Api(ApiError::internal(e.to_string())))?;
    let pending = state
        .caches
        .announce(&target.key(), &target.info.kind, &stored, rv_slot, obj);
    match write(stored).await {
        // `written` has the object unless it was taken back, which only
        // `abandon` does.
        Ok(rev) => state
            .caches
            .written(&pending, rev)
            .ok_or_else(|| StoreError::Api(ApiError::internal("the written object went missing"))),
        Err(e) => {
            state.caches.abandon(&pending);
            Err(StoreError::Storage(e))
        }
    }
}

/// Why [`store_announced`] failed.
enum StoreError {
    Api(ApiError),
    Storage(StorageError),
}

/// Whether two objects are equal apart from `metadata.resourceVersion` and
/// `metadata.managedFields` (an update that changes nothing else is not
/// written).
fn same_but_bookkeeping(a: &Value, b: &Value) -> bool {
    type Map = serde_json::Map<String, Value>;
    fn same_entries(a: &Map, b: &Map, skip: impl Fn(&str) -> bool) -> bool {
        let count = |m: &Map| m.keys().filter(|k| !skip(k)).count();
        count(a) == count(b)
            && a.iter()
                .filter(|(k, _)| !skip(k))
                .all(|(k, v)| b.get(k) == Some(v))
    }
    let (Value::Object(a), Value::Object(b)) = (a, b) else {
        return a == b;
    };
    fn meta<'a>(m: &'a Map, empty: &'a Map) -> Option<&'a Map> {
        match m.get("metadata") {
            Some(Value::Object(meta)) => Some(meta),
            None => Some(empty),
            Some(_) => None,
        }
    }
    let empty = Map::new();
    let same_meta = match (meta(a, &empty), meta(b, &empty)) {
        (Some(ma), Some(mb)) => {
            same_entries(ma, mb, |k| k == "resourceVersion" || k == "managedFields")
        }
        _ => a.get("metadata") == b.get("metadata"),
    };
    same_meta && same_entries(a, b, |k| k == "metadata")
}

fn with_rv(mut obj: Value, rev: Revision) -> Value {
    meta_mut(&mut obj).insert("resourceVersion".into(), json!(rev.to_string()));
    obj
}

/// Check the body's `apiVersion`, `kind`, namespace and name against the URL.
pub fn check_identity(
    info: &ResourceInfo,
    obj: &mut Value,
    namespace: Option<&str>,
    name: Option<&str>,
) -> Result<(), ApiError> {
    if !obj.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    let want_av = info.api_version();
    match obj.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => {
            obj["apiVersion"] = json!(want_av);
        }
        Some(av) if av == want_av => {}
        Some(av) => {
            // Custom resources may be written at any served version of the CRD.
            let (g, _) = rk_core::catalogue::split_api_version(av);
            if g != info.group {
                return Err(ApiError::bad_request(format!(
                    "the API version in the data ({av}) does not match the expected API version ({want_av})"
                )));
            }
            obj["apiVersion"] = json!(want_av);
        }
    }
    match obj.get("kind").and_then(Value::as_str) {
        None | Some("") => obj["kind"] = json!(info.kind),
        Some(k) if k == info.kind => {}
        Some(k) => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                info.kind
            )));
        }
    }
    let meta = meta_mut(obj);
    if info.scope.is_namespaced() {
        match (meta.get("namespace").and_then(Value::as_str), namespace) {
            (Some(body_ns), Some(url_ns)) if !body_ns.is_empty() && body_ns != url_ns => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            (_, Some(url_ns)) => {
                meta.insert("namespace".into(), json!(url_ns));
            }
            (_, None) => {}
        }
    } else {
        meta.remove("namespace");
    }
    if let Some(url_name) = name {
        match meta.get("name").and_then(Value::as_str) {
            Some(n) if !n.is_empty() && n != url_name => {
                return Err(ApiError::bad_request(
                    "the name of the object does not match the name on the URL",
                ));
            }
            _ => {
                meta.insert("name".into(), json!(url_name));
            }
        }
    }
    Ok(())
}

/// Decode, prune, default and validate an object about to be written.
/// `decoded` holds the unknown fields of a body already decoded through its
/// type ([`super::typed::decode_json`]), which is not decoded again.
fn prepare(
    state: &ApiState,
    info: &ResourceInfo,
    obj: Value,
    old: Option<&Value>,
    opts: &WriteOptions,
    decoded: Option<&[String]>,
) -> Result<(Value, Vec<String>), ApiError> {
    let mut warnings = Vec::new();
    let obj = decode_and_default(state, info, obj, opts, decoded, &mut warnings)?;
    let obj = validate(state, info, obj, old)?;
    Ok((obj, warnings))
}

/// The first half of [`prepare`]: the object as the request means it —
/// unknown fields dropped (or refused, as `fieldValidation` says), decoded
/// through its type, defaulted (custom resources: pruned to their schema).
/// This is what upstream's field manager records a create's fields from.
fn decode_and_default(
    state: &ApiState,
    info: &ResourceInfo,
    mut obj: Value,
    opts: &WriteOptions,
    decoded: Option<&[String]>,
    warnings: &mut Vec<String>,
) -> Result<Value, ApiError> {
    if let Some(cr) = state.custom_resource(info) {
        if let Some(schema) = cr.schema(&info.version) {
            let schema = schema.map_err(|e| ApiError::internal(format!("bad CRD schema: {e}")))?;
            let pruned = schema.prune(&mut obj);
            unknown_field_policy(info, opts.field_validation, &pruned, warnings)?;
        }
        return Ok(obj);
    }
    match decoded {
        Some(unknown) => {
            if opts.field_validation != FieldValidation::Ignore {
                unknown_field_policy(info, opts.field_validation, unknown, warnings)?;
            }
        }
        None => {
            if opts.field_validation != FieldValidation::Ignore {
                let unknown = crate::schema::unknown_fields(&info.api_version(), &info.kind, &obj);
                unknown_field_policy(info, opts.field_validation, &unknown, warnings)?;
            }
            obj = super::typed::normalize(info, obj)
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
        }
    }
    super::defaults::apply_defaults(info, &mut obj);
    Ok(obj)
}

/// The second half of [`prepare`]: the kind's validation (a custom
/// resource's schema and rules), a 422 with causes.
fn validate(
    state: &ApiState,
    info: &ResourceInfo,
    mut obj: Value,
    old: Option<&Value>,
) -> Result<Value, ApiError> {
    let name = meta::name(&obj).to_string();
    if let Some(cr) = state.custom_resource(info)
        && let Some(schema) = cr.schema(&info.version)
    {
        let schema = schema.map_err(|e| ApiError::internal(format!("bad CRD schema: {e}")))?;
        let causes = schema.validate_update(&obj, old);
        if !causes.is_empty() {
            return Err(ApiError::invalid(
                &info.kind,
                &info.group,
                &name,
                causes.into_iter().map(schema_cause).collect(),
            ));
        }
    }
    if info.group == "apiextensions.k8s.io" && info.kind == "CustomResourceDefinition" {
        let mut crd: rk_core::k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition =
            serde_json::from_value(obj.clone()).map_err(|e| ApiError::bad_request(e.to_string()))?;
        crate::schema::apply_crd_defaults(&mut crd);
        let causes = crate::schema::validate_crd(&crd);
        if !causes.is_empty() {
            return Err(ApiError::invalid(
                &info.kind,
                &info.group,
                &name,
                causes.into_iter().map(schema_cause).collect(),
            ));
        }
        let status = obj.get("status").cloned();
        obj = serde_json::to_value(&crd).map_err(|e| ApiError::internal(e.to_string()))?;
        if let Some(s) = status {
            obj["status"] = s;
        }
    }
    let causes = super::validation::validate(info, &obj, old);
    if !causes.is_empty() {
        let causes = causes.iter().map(|c| c.to_status_cause()).collect();
        return Err(ApiError::invalid(&info.kind, &info.group, &name, causes));
    }
    Ok(obj)
}

/// The admission webhooks of a create (`old` is `None`) or update: the
/// mutating ones first, their changes defaulted and validated again, then
/// the validating ones. Their warnings join `warnings`.
#[allow(clippy::too_many_arguments)]
async fn call_webhooks(
    state: &ApiState,
    info: &ResourceInfo,
    namespace: Option<&str>,
    mut obj: Value,
    old: Option<&Value>,
    part: Part,
    mut warnings: Vec<String>,
    opts: &WriteOptions,
) -> Result<(Value, Vec<String>), ApiError> {
    let name = meta::name(&obj).to_string();
    let attrs = webhooks::Attributes {
        info,
        subresource: match part {
            Part::Main => "",
            Part::Status => "status",
        },
        operation: match old {
            Some(_) => webhooks::Operation::Update,
            None => webhooks::Operation::Create,
        },
        namespace,
        name: &name,
        dry_run: opts.dry_run,
    };
    let first = mutating_policies::mutate(state, &attrs, &mut obj, old).await?;
    let (sent, by_webhooks) = webhooks::mutate(state, &attrs, &mut obj, old).await?;
    warnings.extend(sent);
    let mut changed = first.changed || by_webhooks;
    if changed {
        // Upstream runs mutating admission a second time for the policies
        // that asked to see what came after them.
        changed |= mutating_policies::reinvoke(state, &attrs, &mut obj, old, &first).await?;
    }
    if changed {
        let (again, more) = prepare(state, info, obj, old, opts, None)?;
        obj = again;
        for warning in more {
            if !warnings.contains(&warning) {
                warnings.push(warning);
            }
        }
    }
    warnings.extend(crate::admission::policies::validate(state, &attrs, Some(&obj), old).await?);
    warnings.extend(webhooks::validate(state, &attrs, Some(&obj), old).await?);
    Ok((obj, warnings))
}

fn schema_cause(c: crate::schema::Cause) -> StatusCause {
    StatusCause {
        reason: c.reason,
        message: c.message,
        field: c.field,
    }
}

fn unknown_field_policy(
    info: &ResourceInfo,
    policy: FieldValidation,
    unknown: &[String],
    warnings: &mut Vec<String>,
) -> Result<(), ApiError> {
    if unknown.is_empty() {
        return Ok(());
    }
    match policy {
        FieldValidation::Ignore => Ok(()),
        FieldValidation::Warn => {
            warnings.extend(unknown.iter().map(|f| format!("unknown field \"{f}\"")));
            Ok(())
        }
        FieldValidation::Strict => {
            let list: Vec<String> = unknown
                .iter()
                .map(|f| format!("unknown field \"{f}\""))
                .collect();
            Err(ApiError::bad_request(format!(
                "{kind} in version \"{version}\" cannot be handled as a {kind}: strict decoding error: {}",
                list.join(", "),
                kind = info.kind,
                version = info.version,
            )))
        }
    }
}

/// Namespace lifecycle admission: the namespace must exist and not be
/// terminating.
/// Whether a namespace's JSON says it is being deleted. Reads only the two
/// fields that tell (every create in a namespace asks).
fn namespace_terminating(json: &[u8]) -> bool {
    #[derive(serde::Deserialize, Default)]
    #[serde(default, rename_all = "camelCase")]
    struct Meta {
        deletion_timestamp: Option<String>,
    }
    #[derive(serde::Deserialize, Default)]
    #[serde(default)]
    struct Status {
        phase: Option<String>,
    }
    #[derive(serde::Deserialize, Default)]
    #[serde(default)]
    struct Namespace {
        metadata: Meta,
        status: Status,
    }
    // Most namespaces have neither field: no need to parse them.
    let has = |needle: &[u8]| memchr::memmem::find(json, needle).is_some();
    if !has(b"\"deletionTimestamp\"") && !has(b"Terminating") {
        return false;
    }
    let ns: Namespace = serde_json::from_slice(json).unwrap_or_default();
    ns.metadata.deletion_timestamp.is_some() || ns.status.phase.as_deref() == Some("Terminating")
}

async fn admit_namespace(
    state: &ApiState,
    info: &ResourceInfo,
    namespace: Option<&str>,
) -> Result<(), ApiError> {
    let Some(ns) = namespace else { return Ok(()) };
    if !info.scope.is_namespaced() {
        return Ok(());
    }
    let Some(namespaces) = state.builtin.get("", "v1", "namespaces") else {
        return Ok(());
    };
    let (ns_info, cache) = (&namespaces.info, namespaces.cache(&state.caches).await?);
    let key = ns_info.storage_key(None, ns);
    let obj = match cache.get(&key) {
        Some(o) => Some(o),
        None => {
            // The cache may lag a namespace created a moment ago.
            let _ = state
                .caches
                .sync_with_storage(std::time::Duration::from_secs(2))
                .await;
            cache.get(&key)
        }
    };
    let Some(obj) = obj else {
        return Err(ApiError::not_found("", "namespaces", ns));
    };
    if namespace_terminating(&obj.bytes) {
        return Err(ApiError::forbidden(
            &info.group,
            &info.plural,
            "",
            &format!(
                "unable to create new content in namespace {ns} because it is being terminated"
            ),
        ));
    }
    Ok(())
}

/// A create does not set the status of a kind with a status subresource
/// (the status is written through it).
fn reset_status_on_create(info: &ResourceInfo, obj: &mut Value) {
    if info.has_subresource("status")
        && !keeps_status_on_create(info)
        && let Some(map) = obj.as_object_mut()
    {
        map.remove("status");
    }
}

/// Fields the server owns on create (upstream's `PrepareForCreate`), set
/// after the field manager has recorded the request's fields.
fn prepare_for_create(info: &ResourceInfo, obj: &mut Value) {
    let is_pod = info.group.is_empty() && info.kind == "Pod";
    let generation =
        obj.get("spec").is_some() || !rk_core::catalogue::Catalogue::is_builtin_group(&info.group);
    if is_pod {
        let qos = qos_class(obj);
        obj["status"] = json!({"phase": "Pending", "qosClass": qos});
    }
    if info.group.is_empty() && info.kind == "Namespace" {
        obj["status"] = json!({"phase": "Active"});
        // The namespace controller's finalizer: content goes before the namespace.
        let finalizers = obj["spec"]["finalizers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if !finalizers.iter().any(|f| f == "kubernetes") {
            let mut f = finalizers;
            f.push(json!("kubernetes"));
            obj["spec"]["finalizers"] = Value::Array(f);
        }
    }
    if info.group == "apiextensions.k8s.io" && info.kind == "CustomResourceDefinition" {
        // Upstream's PrepareForCreate: no names accepted yet, and the
        // storage version recorded as stored.
        let storage: Vec<Value> = obj["spec"]["versions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|v| v["storage"] == json!(true))
            .map(|v| v["name"].clone())
            .collect();
        obj["status"] = json!({
            "acceptedNames": {"plural": "", "kind": ""},
            "storedVersions": storage,
        });
    }
    let meta = meta_mut(obj);
    meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    meta.insert("creationTimestamp".into(), json!(meta::now()));
    for f in [
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "resourceVersion",
        "selfLink",
    ] {
        meta.remove(f);
    }
    if generation {
        meta.insert("generation".into(), json!(1));
    } else {
        meta.remove("generation");
    }
}

/// The merge rules of `info`'s kind: a custom resource's from its schema,
/// a built-in kind's from its type.
pub(crate) fn merge_schema(state: &ApiState, info: &ResourceInfo) -> crate::patch::PatchSchema {
    match state.custom_resource(info) {
        Some(cr) => cr.patch_schema(&info.version),
        None => crate::patch::patch_strategy_for(&info.api_version(), &info.kind),
    }
}

/// A pod's QoS class, as upstream computes it.
fn qos_class(pod: &Value) -> &'static str {
    let mut any = false;
    let mut guaranteed = true;
    let containers = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(
            pod["spec"]["initContainers"]
                .as_array()
                .into_iter()
                .flatten(),
        );
    for c in containers {
        let req = &c["resources"]["requests"];
        let lim = &c["resources"]["limits"];
        for r in ["cpu", "memory"] {
            let (rq, lm) = (req.get(r), lim.get(r));
            if rq.is_some() || lm.is_some() {
                any = true;
            }
            match (rq, lm) {
                (_, None) => guaranteed = false,
                (Some(a), Some(b)) if a != b => guaranteed = false,
                _ => {}
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// Create an object.
pub async fn create(
    state: &ApiState,
    info: &Arc<ResourceInfo>,
    namespace: Option<&str>,
    obj: Value,
    opts: &WriteOptions,
) -> Result<Outcome, ApiError> {
    create_with(state, info, namespace, obj, None, opts).await
}

/// Create an object from a body already decoded through its type
/// ([`super::typed::decode_json`]).
pub async fn create_decoded(
    state: &ApiState,
    info: &Arc<ResourceInfo>,
    namespace: Option<&str>,
    body: super::typed::Decoded,
    opts: &WriteOptions,
) -> Result<Outcome, ApiError> {
    create_with(
        state,
        info,
        namespace,
        body.object,
        Some(&body.unknown),
        opts,
    )
    .await
}

async fn create_with(
    state: &ApiState,
    info: &Arc<ResourceInfo>,
    namespace: Option<&str>,
    mut obj: Value,
    decoded: Option<&[String]>,
    opts: &WriteOptions,
) -> Result<Outcome, ApiError> {
    check_identity(info, &mut obj, namespace, None)?;
    if info.scope.is_namespaced() && namespace.is_none() {
        return Err(ApiError::bad_request(
            "the server could not find the requested resource: a namespace is required",
        ));
    }
    {
        let meta = meta_mut(&mut obj);
        let name = meta.get("name").and_then(Value::as_str).unwrap_or("");
        if name.is_empty() {
            match meta.get("generateName").and_then(Value::as_str) {
                Some(prefix) if !prefix.is_empty() => {
                    let n = format!("{prefix}{}", meta::random_suffix(5));
                    meta.insert("name".into(), json!(n));
                }
                _ => {
                    return Err(ApiError::invalid(
                        &info.kind,
                        &info.group,
                        "",
                        vec![StatusCause {
                            reason: "FieldValueRequired".into(),
                            message: "Required value: name or generateName is required".into(),
                            field: "metadata.name".into(),
                        }],
                    ));
                }
            }
        }
    }
    // Upstream's field manager records a create's fields from the request
    // as decoded and defaulted: what the server sets itself (uid, a pod's
    // phase, a namespace's finalizer) and what admission adds (a pod's
    // default tolerations and priority, a Service's cluster IP, webhooks'
    // patches) is no one's.
    reset_status_on_create(info, &mut obj);
    let mut warnings = Vec::new();
    let mut obj = decode_and_default(state, info, obj, opts, decoded, &mut warnings)?;
    if !opts.field_manager.is_empty() {
        let schema = merge_schema(state, info);
        crate::patch::record_update_manager_with_schema(
            None,
            &mut obj,
            &opts.field_manager,
            &schema,
            "",
            &meta::now(),
        );
    }
    prepare_for_create(info, &mut obj);
    super::defaults::on_create(info, &mut obj);
    let obj = validate(state, info, obj, None)?;
    admit_namespace(state, info, namespace).await?;
    let (mut obj, warnings) = Box::pin(call_webhooks(
        state,
        info,
        namespace,
        obj,
        None,
        Part::Main,
        warnings,
        opts,
    ))
    .await?;
    let _admitted = crate::admission::on_create(state, info, &mut obj).await?;
    let target = Target {
        info: info.clone(),
        namespace: namespace.map(str::to_string),
        name: meta::name(&obj).to_string(),
    };
    if opts.dry_run {
        return Ok(Outcome {
            bytes: None,
            object: obj,
            warnings,
            created: true,
        });
    }
    let key = target.key();
    let (object, bytes) = store_announced(state, &target, obj, |bytes| {
        state.storage.create(&key, bytes)
    })
    .await
    .map_err(|e| match e {
        StoreError::Api(e) => e,
        StoreError::Storage(e) => target.storage_err(e),
    })?;
    Ok(Outcome {
        object,
        bytes: Some(bytes),
        warnings,
        created: true,
    })
}

/// Kinds that may be created by an update (PUT) of a missing object.
fn allow_create_on_update(info: &ResourceInfo) -> bool {
    matches!(
        (info.group.as_str(), info.kind.as_str()),
        ("", "Endpoints")
            | ("", "Event")
            | ("events.k8s.io", "Event")
            | ("coordination.k8s.io", "Lease")
            | ("", "LimitRange")
            | ("rbac.authorization.k8s.io", _)
    )
}

/// Replace an object (PUT), honouring its `resourceVersion` if set.
pub async fn update(
    state: &ApiState,
    target: &Target,
    body: Value,
    part: Part,
    opts: &WriteOptions,
) -> Result<Outcome, ApiError> {
    update_with(state, target, body, None, part, opts).await
}

/// Update (PUT) an object from a body already decoded through its type
/// ([`super::typed::decode_json`]).
pub async fn update_decoded(
    state: &ApiState,
    target: &Target,
    body: super::typed::Decoded,
    part: Part,
    opts: &WriteOptions,
) -> Result<Outcome, ApiError> {
    update_with(state, target, body.object, Some(&body.unknown), part, opts).await
}

async fn update_with(
    state: &ApiState,
    target: &Target,
    mut body: Value,
    decoded: Option<&[String]>,
    part: Part,
    opts: &WriteOptions,
) -> Result<Outcome, ApiError> {
    check_identity(
        &target.info,
        &mut body,
        target.namespace.as_deref(),
        Some(&target.name),
    )?;
    let precondition = meta::resource_version(&body)?;
    let may_create = part == Part::Main && allow_create_on_update(&target.info);
    let body_for_create = may_create.then(|| body.clone());
    let result = guaranteed_update_with(
        state,
        target,
        precondition,
        part,
        opts,
        decoded,
        move |_old| Ok(body.clone()),
    )
    .await;
    match (result, body_for_create) {
        (Err(e), Some(body)) if e.code == 404 => {
            create_with(
                state,
                &target.info,
                target.namespace.as_deref(),
                body,
                decoded,
                opts,
            )
            .await
        }
        (other, _) => other,
    }
}

/// Read-modify-write with compare-and-swap. `mutate` gets the current object
/// and returns the desired one. Without a precondition, conflicts with
/// concurrent writers are retried on fresh reads.
pub async fn guaranteed_update<F>(
    state: &ApiState,
    target: &Target,
    precondition: Option<Revision>,
    part: Part,
    opts: &WriteOptions,
    mutate: F,
) -> Result<Outcome, ApiError>
where
    F: FnMut(&Value) -> Result<Value, ApiError>,
{
    guaranteed_update_with(state, target, precondition, part, opts, None, mutate).await
}

/// [`guaranteed_update`] whose new object comes from a body decoded through
/// its type, with the unknown fields it had (`decoded`).
async fn guaranteed_update_with<F>(
    state: &ApiState,
    target: &Target,
    precondition: Option<Revision>,
    part: Part,
    opts: &WriteOptions,
    decoded: Option<&[String]>,
    mut mutate: F,
) -> Result<Outcome, ApiError>
where
    F: FnMut(&Value) -> Result<Value, ApiError>,
{
    let info = &target.info;
    for _attempt in 0..16 {
        let (old, rev) = get(state, target).await?;
        if let Some(want) = precondition
            && want != rev
        {
            return Err(ApiError::conflict(&info.group, &info.plural, &target.name));
        }
        let mut new = mutate(&old)?;
        check_identity(
            info,
            &mut new,
            target.namespace.as_deref(),
            Some(&target.name),
        )?;
        merge_server_fields(info, &old, &mut new, part);
        let (new, warnings) = prepare(state, info, new, Some(&old), opts, decoded)?;
        let (mut new, warnings) = Box::pin(call_webhooks(
            state,
            info,
            target.namespace.as_deref(),
            new,
            Some(&old),
            part,
            warnings,
            opts,
        ))
        .await?;
        if part == Part::Main
            && old
                .get("metadata")
                .and_then(|m| m.get("generation"))
                .is_some()
            && meta::spec_changed(&old, &new)
        {
            let g = old["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
            meta_mut(&mut new).insert("generation".into(), json!(g));
        }
        crate::admission::on_update(state, info, &old, &mut new).await?;
        if !opts.field_manager.is_empty() {
            // A custom resource's fields follow its schema's list and map
            // types; a status write has its own entry.
            let schema = merge_schema(state, info);
            let subresource = match part {
                Part::Main => "",
                Part::Status => "status",
            };
            crate::patch::record_update_manager_with_schema(
                Some(&old),
                &mut new,
                &opts.field_manager,
                &schema,
                subresource,
                &meta::now(),
            );
        }
        // An object being deleted whose last finalizer is gone is deleted now.
        let finalized = new["metadata"]["deletionTimestamp"].is_string()
            && all_finalizers(info, &new).is_empty()
            && new["metadata"]["deletionGracePeriodSeconds"]
                .as_i64()
                .unwrap_or(0)
                == 0;
        if opts.dry_run {
            return Ok(Outcome {
                bytes: None,
                object: with_rv(new, rev),
                warnings,
                created: false,
            });
        }
        if finalized {
            return match state.storage.delete(&target.key(), Some(rev)).await {
                Ok((_, drev)) => Ok(Outcome {
                    bytes: None,
                    object: with_rv(new, drev),
                    warnings,
                    created: false,
                }),
                Err(StorageError::Conflict { .. }) if precondition.is_none() => continue,
                Err(e) => Err(target.storage_err(e)),
            };
        }
        if same_but_bookkeeping(&old, &new) {
            return Ok(Outcome {
                bytes: None,
                object: with_rv(old, rev),
                warnings,
                created: false,
            });
        }
        let key = target.key();
        let written = store_announced(state, target, new, |bytes| {
            state.storage.update(&key, bytes, rev)
        })
        .await;
        match written {
            Ok((object, bytes)) => {
                return Ok(Outcome {
                    object,
                    bytes: Some(bytes),
                    warnings,
                    created: false,
                });
            }
            Err(StoreError::Api(e)) => return Err(e),
            Err(StoreError::Storage(StorageError::Conflict { .. })) if precondition.is_none() => {
                continue;
            }
            Err(StoreError::Storage(StorageError::NotFound { .. })) => {
                return Err(target.not_found());
            }
            Err(StoreError::Storage(e)) => return Err(target.storage_err(e)),
        }
    }
    Err(ApiError::conflict(&info.group, &info.plural, &target.name))
}

/// Read-modify-write with compare-and-swap and none of the create/update
/// checks: for server-side transitions (binding) that validation of the
/// user-facing path would refuse.
pub async fn raw_update<F>(
    state: &ApiState,
    target: &Target,
    dry_run: bool,
    mut mutate: F,
) -> Result<Value, ApiError>
where
    F: FnMut(&Value) -> Result<Value, ApiError>,
{
    for _attempt in 0..16 {
        let (old, rev) = get(state, target).await?;
        let mut new = mutate(&old)?;
        if dry_run {
            return Ok(new);
        }
        match state
            .storage
            .update(&target.key(), encode(&mut new)?, rev)
            .await
        {
            Ok(nrev) => return Ok(with_rv(new, nrev)),
            Err(StorageError::Conflict { .. }) => continue,
            Err(e) => return Err(target.storage_err(e)),
        }
    }
    Err(ApiError::conflict(
        &target.info.group,
        &target.info.plural,
        &target.name,
    ))
}

/// Keep what a client may not change through `part`.
fn merge_server_fields(info: &ResourceInfo, old: &Value, new: &mut Value, part: Part) {
    let has_status_sub = info.has_subresource("status");
    match part {
        Part::Main => {
            // A namespace written without finalizers keeps the namespace
            // controller's (its finalize call names them, `[]` included).
            if info.group.is_empty()
                && info.kind == "Namespace"
                && new["spec"].get("finalizers").is_none()
                && let Some(spec) = new.as_object_mut().map(|m| {
                    m.entry("spec")
                        .or_insert_with(|| Value::Object(serde_json::Map::new()))
                })
                && let Some(spec) = spec.as_object_mut()
            {
                spec.insert("finalizers".into(), json!(["kubernetes"]));
            }
            if has_status_sub {
                match old.get("status") {
                    Some(s) => new["status"] = s.clone(),
                    None => {
                        if let Some(m) = new.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
            }
        }
        Part::Status => {
            let status = new.get("status").cloned();
            let rv = meta_str(new, "resourceVersion").map(str::to_string);
            let managed = new["metadata"].get("managedFields").cloned();
            *new = old.clone();
            match status {
                Some(s) => new["status"] = s,
                None => {
                    if let Some(m) = new.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
            let meta = meta_mut(new);
            if let Some(rv) = rv {
                meta.insert("resourceVersion".into(), json!(rv));
            }
            if let Some(m) = managed {
                meta.insert("managedFields".into(), m);
            }
        }
    }
    let meta = meta_mut(new);
    for f in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
    ] {
        match old["metadata"].get(f) {
            Some(v) => {
                meta.insert(f.into(), v.clone());
            }
            None => {
                meta.remove(f);
            }
        }
    }
    // Finalizers added once deletion has started are refused by validation.
}

/// Options of a delete.
#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    /// `gracePeriodSeconds`.
    pub grace_period: Option<i64>,
    /// `propagationPolicy`: `Orphan`, `Background` or `Foreground`.
    pub propagation: Option<String>,
    /// `preconditions.uid`.
    pub uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub resource_version: Option<Revision>,
    /// `dryRun=All`.
    pub dry_run: bool,
}

/// Delete an object: immediately, or by setting `deletionTimestamp` when it
/// has finalizers or (pods) a grace period. Returns the object's last state.
pub async fn delete(
    state: &ApiState,
    target: &Target,
    opts: &DeleteOptions,
) -> Result<(Value, bool), ApiError> {
    let info = &target.info;
    for _attempt in 0..16 {
        let (obj, rev) = get(state, target).await?;
        if let Some(uid) = &opts.uid
            && meta_str(&obj, "uid") != Some(uid.as_str())
        {
            return Err(ApiError::conflict_msg(
                &info.group,
                &info.plural,
                &target.name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta_str(&obj, "uid").unwrap_or("")
                ),
            ));
        }
        if let Some(want) = opts.resource_version
            && want != rev
        {
            return Err(ApiError::conflict_msg(
                &info.group,
                &info.plural,
                &target.name,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {want}, ResourceVersion in object meta: {rev}"
                ),
            ));
        }
        let attrs = webhooks::Attributes {
            info,
            subresource: "",
            operation: webhooks::Operation::Delete,
            namespace: target.namespace.as_deref(),
            name: &target.name,
            dry_run: opts.dry_run,
        };
        Box::pin(webhooks::on_delete(state, &attrs, &obj)).await?;
        Box::pin(crate::admission::policies::validate(
            state,
            &attrs,
            None,
            Some(&obj),
        ))
        .await?;
        let mut new = obj.clone();
        match opts.propagation.as_deref() {
            Some("Orphan") => meta::add_finalizer(&mut new, "orphan"),
            Some("Foreground") => meta::add_finalizer(&mut new, "foregroundDeletion"),
            Some("Background") | None => {}
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "propagationPolicy {other:?} is not supported: use Orphan, Background or Foreground"
                )));
            }
        }
        let grace = grace_period(info, &obj, opts.grace_period);
        let finalizers = all_finalizers(info, &new);
        let already = obj["metadata"]["deletionTimestamp"].is_string();
        if finalizers.is_empty() && grace == 0 {
            if opts.dry_run {
                return Ok((obj, true));
            }
            return match state.storage.delete(&target.key(), Some(rev)).await {
                Ok((_, drev)) => Ok((with_rv(obj, drev), true)),
                Err(StorageError::Conflict { .. }) => continue,
                Err(e) => Err(target.storage_err(e)),
            };
        }
        // Graceful or finalizer-blocked deletion.
        let meta = meta_mut(&mut new);
        let current_grace = meta
            .get("deletionGracePeriodSeconds")
            .and_then(Value::as_i64);
        if !already || current_grace.is_some_and(|g| grace < g) {
            meta.insert("deletionTimestamp".into(), json!(meta::now_plus(grace)));
            meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
        }
        if info.group.is_empty() && info.kind == "Namespace" {
            new["status"]["phase"] = json!("Terminating");
        }
        if new == obj {
            return Ok((obj, false));
        }
        if opts.dry_run {
            return Ok((new, false));
        }
        match state
            .storage
            .update(&target.key(), encode(&mut new)?, rev)
            .await
        {
            Ok(nrev) => return Ok((with_rv(new, nrev), false)),
            Err(StorageError::Conflict { .. }) => continue,
            Err(e) => return Err(target.storage_err(e)),
        }
    }
    Err(ApiError::conflict(&info.group, &info.plural, &target.name))
}

/// Everything that holds an object being deleted: `metadata.finalizers`,
/// and for namespaces also `spec.finalizers` (emptied through `finalize`).
fn all_finalizers(info: &ResourceInfo, obj: &Value) -> Vec<String> {
    let mut f = meta::finalizers(obj);
    if info.group.is_empty() && info.kind == "Namespace" {
        f.extend(
            obj["spec"]["finalizers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_string)),
        );
    }
    f
}

/// The grace period a delete uses: pods that run on a node get theirs (or the
/// request's); everything else is deleted at once.
fn grace_period(info: &ResourceInfo, obj: &Value, requested: Option<i64>) -> i64 {
    if !(info.group.is_empty() && info.kind == "Pod") {
        return 0;
    }
    let scheduled = obj["spec"]["nodeName"]
        .as_str()
        .is_some_and(|n| !n.is_empty());
    let phase = obj["status"]["phase"].as_str().unwrap_or("");
    if !scheduled || phase == "Succeeded" || phase == "Failed" {
        return 0;
    }
    requested
        .or_else(|| obj["spec"]["terminationGracePeriodSeconds"].as_i64())
        .unwrap_or(30)
        .max(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qos_class_follows_requests_and_limits() {
        let best = json!({"spec": {"containers": [{"name": "a"}]}});
        assert_eq!(qos_class(&best), "BestEffort");
        let g = json!({"spec": {"containers": [{"resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1", "memory": "1Gi"}}}]}});
        assert_eq!(qos_class(&g), "Guaranteed");
        let b = json!({"spec": {"containers": [{"resources": {"requests": {"cpu": "1"}}}]}});
        assert_eq!(qos_class(&b), "Burstable");
    }

    #[test]
    fn unscheduled_pods_are_deleted_without_grace() {
        let info = rk_core::catalogue::Catalogue::builtin()
            .get("", "v1", "pods")
            .unwrap();
        let pod =
            json!({"spec": {"terminationGracePeriodSeconds": 30}, "status": {"phase": "Pending"}});
        assert_eq!(grace_period(&info, &pod, None), 0);
        let pod = json!({"spec": {"nodeName": "n1", "terminationGracePeriodSeconds": 30}, "status": {"phase": "Running"}});
        assert_eq!(grace_period(&info, &pod, None), 30);
        assert_eq!(grace_period(&info, &pod, Some(0)), 0);
    }
}
