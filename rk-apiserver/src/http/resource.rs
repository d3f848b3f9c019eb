//! Resource requests: route a parsed path and method to the verb handler.
//! The path a request follows: route -> handler here -> registry -> storage.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, Response, header};
use rk_core::catalogue::ResourceInfo;
use serde_json::{Value, json};

use super::convert::{self, IncludeObject};
use super::response::{self, Body, Representation};
use super::{list, watch};
use crate::error::ApiError;
use crate::patch::PatchType;
use crate::registry::store::{self, DeleteOptions, Part, Target, WriteOptions};
use crate::registry::subresources;
use crate::request::{Query, ResourcePath};
use crate::state::ApiState;

/// Everything a resource handler needs from the request.
pub struct Call {
    /// Shared state.
    pub state: Arc<ApiState>,
    /// The method.
    pub method: Method,
    /// The parsed path.
    pub path: ResourcePath,
    /// The query.
    pub query: Query,
    /// Request headers.
    pub headers: HeaderMap,
    /// The request body.
    pub body: Bytes,
    /// The resource as the request addresses it (set by [`handle`]).
    pub served: Option<Arc<ResourceInfo>>,
}

impl Call {
    /// Convert a stored object to the served version (through a custom
    /// resource's conversion webhook, if it has one).
    async fn out(&self, obj: Value) -> Result<Value, ApiError> {
        match &self.served {
            Some(info) => crate::registry::conversion::one_to_version(&self.state, info, obj).await,
            None => Ok(obj),
        }
    }

    /// [`Self::out`] of an object the registry already read at the served
    /// version (custom resources), or that needs no webhook (events).
    fn out_local(&self, obj: Value) -> Value {
        match &self.served {
            Some(info) if self.state.converts(info) => {
                crate::registry::versions::to_served(info, obj)
            }
            _ => obj,
        }
    }

    /// Convert a request object to the stored version.
    fn to_stored(&self, obj: Value) -> Value {
        match &self.served {
            Some(info) if self.state.converts(info) => {
                crate::registry::versions::to_stored(info, obj)
            }
            _ => obj,
        }
    }

    /// Render an object for the response: converted and in the negotiated
    /// representation.
    async fn render(
        &self,
        fallback: &ResourceInfo,
        obj: Value,
        repr: Representation,
        include: IncludeObject,
    ) -> Result<Value, ApiError> {
        let info = self.served.as_deref().unwrap_or(fallback);
        let obj = self.out(obj).await?;
        Ok(convert::single(&self.state, info, obj, repr, include))
    }

    /// The response to a write: the stored bytes as they are when the client
    /// wants the plain object, else the rendered representation.
    async fn respond(
        &self,
        code: u16,
        fallback: &ResourceInfo,
        out: store::Outcome,
        repr: Representation,
        include: IncludeObject,
    ) -> Result<Response<Body>, ApiError> {
        let converts = self
            .served
            .as_deref()
            .is_some_and(|i| self.state.converts(i));
        match out.bytes {
            Some(bytes) if repr == Representation::Object && !converts => {
                let mut resp = response::json_bytes(code, bytes);
                response::add_warnings(&mut resp, &out.warnings);
                Ok(resp)
            }
            _ => {
                let obj = self.render(fallback, out.object, repr, include).await?;
                Ok(response::json_with_warnings(code, &obj, &out.warnings))
            }
        }
    }

    fn header(&self, name: header::HeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn write_options(&self) -> Result<WriteOptions, ApiError> {
        let manager = match self.query.get("fieldManager") {
            Some(m) => m.to_string(),
            None => self
                .header(header::USER_AGENT)
                .map(|ua| ua.split('/').next().unwrap_or(ua).to_string())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "unknown".to_string()),
        };
        let options = self.options_kind();
        if manager.len() > 128 {
            return Err(ApiError::invalid_options(
                options,
                "fieldManager",
                "FieldValueTooLong",
                "Too long: may not be more than 128 bytes".into(),
            ));
        }
        Ok(WriteOptions {
            dry_run: self.query.dry_run(options)?,
            field_manager: manager,
            field_validation: self.query.field_validation(options)?,
        })
    }

    /// The kind of options this request's query carries, which upstream
    /// names when it refuses one of them.
    fn options_kind(&self) -> &'static str {
        match self.method {
            Method::POST => "CreateOptions",
            Method::PUT => "UpdateOptions",
            Method::PATCH => "PatchOptions",
            Method::DELETE => "DeleteOptions",
            _ => "GetOptions",
        }
    }

    /// A JSON body of a stored built-in kind, sent at its stored version,
    /// decoded straight through its type; `None` for anything else, which
    /// takes [`Self::json_body`].
    fn typed_body(&self, info: &ResourceInfo) -> Option<crate::registry::typed::Decoded> {
        let json = self
            .header(header::CONTENT_TYPE)
            .and_then(|ct| ct.split(';').next())
            .is_none_or(|ct| ct.trim() == "application/json");
        let converts = self
            .served
            .as_deref()
            .is_some_and(|i| self.state.converts(i));
        if !json || converts || !info.stored || self.body.is_empty() {
            return None;
        }
        let decoded = crate::registry::typed::decode_json(info, &self.body)?;
        (depth(&decoded.object) <= 100).then_some(decoded)
    }

    /// The body as JSON (or YAML, by content type).
    fn json_body(&self) -> Result<Value, ApiError> {
        parse_body(self.header(header::CONTENT_TYPE), &self.body)
    }
}

/// Parse a request body by its content type.
pub fn parse_body(content_type: Option<&str>, body: &[u8]) -> Result<Value, ApiError> {
    let ct = content_type
        .unwrap_or("application/json")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    if body.is_empty() {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    let value: Value = match ct.as_str() {
        "application/yaml" | "application/apply-patch+yaml" | "text/yaml" => {
            let v: serde_yaml::Value = serde_yaml::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
            serde_json::to_value(v)
                .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?
        }
        "application/vnd.kubernetes.protobuf" => match crate::protobuf::decode_to_json(body) {
            Ok(v) => v,
            Err(e @ crate::protobuf::ProtobufError::UnknownKind { .. }) => {
                return Err(ApiError::unsupported_media_type(format!(
                    "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml ({e})"
                )));
            }
            Err(e) => return Err(ApiError::bad_request(e.to_string())),
        },
        "application/cbor" | "application/apply-patch+cbor" => {
            return Err(ApiError::unsupported_media_type(format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (got {ct})"
            )));
        }
        _ => serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
        })?,
    };
    if depth(&value) > 100 {
        return Err(ApiError::bad_request(
            "the request body is nested too deeply",
        ));
    }
    Ok(value)
}

fn depth(v: &Value) -> usize {
    let mut max = 0;
    let mut stack = vec![(v, 1usize)];
    while let Some((v, d)) = stack.pop() {
        max = max.max(d);
        if d > 101 {
            return d;
        }
        match v {
            Value::Array(a) => stack.extend(a.iter().map(|x| (x, d + 1))),
            Value::Object(m) => stack.extend(m.values().map(|x| (x, d + 1))),
            _ => {}
        }
    }
    max
}

/// Serve a resource request.
pub async fn handle(call: Call) -> Result<Response<Body>, ApiError> {
    let deprecated = deprecation_warning(&call.path);
    let mut resp = Box::pin(handle_resource(call)).await?;
    if let Some(warning) = deprecated {
        response::add_warnings(&mut resp, &[warning.to_string()]);
    }
    Ok(resp)
}

/// Upstream's warning for a request to a deprecated resource version
/// (kubectl prints it as `Warning: ...`).
fn deprecation_warning(path: &ResourcePath) -> Option<&'static str> {
    match (
        path.group.as_str(),
        path.version.as_str(),
        path.resource.as_str(),
    ) {
        ("", "v1", "endpoints") => {
            Some("v1 Endpoints is deprecated in v1.33+; use discovery.k8s.io/v1 EndpointSlice")
        }
        _ => None,
    }
}

async fn handle_resource(mut call: Call) -> Result<Response<Body>, ApiError> {
    let p = call.path.clone();
    let info = call
        .state
        .resource(&p.group, &p.version, &p.resource)
        .ok_or_else(ApiError::no_route)?;
    if p.namespace.is_some() && !info.scope.is_namespaced() {
        return Err(ApiError::no_route());
    }
    if let Some(sub) = &p.subresource
        && !info.has_subresource(sub)
    {
        return Err(ApiError::no_route());
    }
    let repr = response::negotiate(call.header(header::ACCEPT))?;
    call.served = Some(info.clone());
    let stored_info = call.state.storage_info(&info);
    let ns = p.namespace.as_deref();
    let is_watch = p.legacy_watch || call.query.flag("watch");
    match (&call.method, p.name.as_deref(), p.subresource.as_deref()) {
        (&Method::GET, None, None) if is_watch => {
            watch::watch(call.state.clone(), info, ns, None, &call.query, repr).await
        }
        (&Method::GET, Some(name), None) if is_watch => {
            watch::watch(call.state.clone(), info, ns, Some(name), &call.query, repr).await
        }
        (&Method::GET, None, None) => {
            require_verb(&info, "list")?;
            list::list(&call.state, &info, ns, &call.query, repr).await
        }
        (&Method::POST, None, None) => create(&call, stored_info, repr).await,
        (&Method::DELETE, None, None) => delete_collection(&call, info).await,
        (_, None, Some(_)) => Err(ApiError::no_route()),
        (method, Some(name), sub) => {
            let target = Target {
                info: stored_info.clone(),
                namespace: p.namespace.clone(),
                name: name.to_string(),
            };
            if info.scope.is_namespaced() && target.namespace.is_none() {
                return Err(ApiError::no_route());
            }
            match (method, sub) {
                (&Method::GET, None) => get(&call, &target, repr).await,
                (&Method::PUT, None) => update(&call, &target, Part::Main, repr).await,
                (&Method::PATCH, None) => patch(&call, &target, Part::Main, repr).await,
                (&Method::DELETE, None) => delete(&call, &target).await,
                (&Method::GET, Some("status")) => get(&call, &target, repr).await,
                (&Method::PUT, Some("status")) => update(&call, &target, Part::Status, repr).await,
                (&Method::PATCH, Some("status")) => patch(&call, &target, Part::Status, repr).await,
                (&Method::PUT, Some("finalize")) => update(&call, &target, Part::Main, repr).await,
                (&Method::GET, Some("scale")) => Ok(response::json(
                    200,
                    &subresources::get_scale(&call.state, &target).await?,
                )),
                (&Method::PUT, Some("scale")) => {
                    let body = call.json_body()?;
                    let opts = call.write_options()?;
                    let s = subresources::update_scale(&call.state, &target, &opts, |_| {
                        Ok(body.clone())
                    })
                    .await?;
                    Ok(response::json(200, &s))
                }
                (&Method::PATCH, Some("scale")) => patch_scale(&call, &target).await,
                (&Method::POST, Some("binding")) => {
                    let body = call.json_body()?;
                    subresources::bind(
                        &call.state,
                        &target,
                        &body,
                        call.query.dry_run("CreateOptions")?,
                    )
                    .await?;
                    Ok(response::json(
                        201,
                        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
                    ))
                }
                (&Method::POST, Some("eviction")) => {
                    let body = call.json_body()?;
                    subresources::evict(&call.state, &target, &body).await?;
                    Ok(response::json(
                        201,
                        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
                    ))
                }
                (&Method::POST, Some("token")) if target.info.kind == "ServiceAccount" => {
                    let body = call.json_body()?;
                    let issued = super::tokens::request(&call.state, &target, body).await?;
                    Ok(response::json(201, &issued))
                }
                (&Method::GET, Some("log")) => super::logs::pod_logs(&call, &target).await,
                (&Method::GET, Some("ephemeralcontainers")) => get(&call, &target, repr).await,
                (&Method::PATCH, Some("ephemeralcontainers")) => {
                    patch(&call, &target, Part::Main, repr).await
                }
                _ => Err(ApiError::method_not_allowed(
                    "the server does not allow this method on the requested resource",
                )),
            }
        }
        _ => Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        )),
    }
}

fn require_verb(info: &ResourceInfo, verb: &str) -> Result<(), ApiError> {
    if info.has_verb(verb) {
        Ok(())
    } else {
        Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({verb} {})",
            info.plural
        )))
    }
}

async fn get(
    call: &Call,
    target: &Target,
    repr: Representation,
) -> Result<Response<Body>, ApiError> {
    require_verb(&target.info, "get")?;
    let obj = match call.query.get("resourceVersion") {
        Some("0") => {
            let cache = call.state.cache(&target.info).await?;
            match cache.get(&target.key()) {
                Some(o) => serde_json::from_slice(&o.bytes)
                    .map_err(|e| ApiError::internal(e.to_string()))?,
                None => store::get(&call.state, target).await?.0,
            }
        }
        _ => store::get(&call.state, target).await?.0,
    };
    let include = IncludeObject::parse(call.query.get("includeObject"));
    Ok(response::json(
        200,
        &call.render(&target.info, obj, repr, include).await?,
    ))
}

async fn create(
    call: &Call,
    info: Arc<ResourceInfo>,
    repr: Representation,
) -> Result<Response<Body>, ApiError> {
    require_verb(&info, "create")?;
    let opts;
    let namespace = call.path.namespace.as_deref();
    let out = match call.typed_body(&info) {
        Some(decoded) => {
            opts = call.write_options()?;
            store::create_decoded(&call.state, &info, namespace, decoded, &opts).await?
        }
        None => {
            let body = call.json_body()?;
            if let Some(served) = &call.served
                && served.group == "events.k8s.io"
            {
                events_v1_create(served, &body)?;
            }
            let body = call.to_stored(body);
            if info.group == "authentication.k8s.io" && info.kind == "TokenReview" {
                let reviewed = super::tokens::review(&call.state, body).await?;
                return Ok(response::json(201, &reviewed));
            }
            if !info.stored {
                return super::reviews::review(&info, body);
            }
            opts = call.write_options()?;
            store::create(&call.state, &info, namespace, body, &opts).await?
        }
    };
    if info.kind == "CustomResourceDefinition" && !opts.dry_run {
        // Serve the new kind before answering, so a client can use it at once.
        crate::crd::reconcile(&call.state, &out.object).await;
    }
    let include = IncludeObject::parse(call.query.get("includeObject"));
    call.respond(201, &info, out, repr, include).await
}

/// An `events.k8s.io/v1` Event is held to that version's rules before it is
/// stored as a core Event.
fn events_v1_create(served: &ResourceInfo, body: &Value) -> Result<(), ApiError> {
    let causes = crate::registry::validation::events::v1_create(body);
    if causes.is_empty() {
        return Ok(());
    }
    let causes = causes.iter().map(|c| c.to_status_cause()).collect();
    let name = body["metadata"]["name"].as_str().unwrap_or_default();
    Err(ApiError::invalid(&served.kind, &served.group, name, causes))
}

async fn update(
    call: &Call,
    target: &Target,
    part: Part,
    repr: Representation,
) -> Result<Response<Body>, ApiError> {
    require_verb(&target.info, "update")?;
    let opts = call.write_options()?;
    let out = match call.typed_body(&target.info) {
        Some(decoded) => store::update_decoded(&call.state, target, decoded, part, &opts).await?,
        None => {
            let body = call.to_stored(call.json_body()?);
            store::update(&call.state, target, body, part, &opts).await?
        }
    };
    if target.info.kind == "CustomResourceDefinition" && !opts.dry_run {
        crate::crd::reconcile(&call.state, &out.object).await;
    }
    let code = if out.created { 201 } else { 200 };
    let include = IncludeObject::parse(call.query.get("includeObject"));
    call.respond(code, &target.info, out, repr, include).await
}

fn patch_type(call: &Call) -> Result<PatchType, ApiError> {
    let ct = call.header(header::CONTENT_TYPE).unwrap_or("");
    let media = ct.split(';').next().unwrap_or("").trim();
    PatchType::from_content_type(media).ok_or_else(|| {
        ApiError::unsupported_media_type(format!(
            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {media:?})"
        ))
    })
}

fn patch_schema(call: &Call, info: &ResourceInfo) -> crate::patch::PatchSchema {
    store::merge_schema(&call.state, info)
}

fn apply_patch(
    ty: PatchType,
    schema: &crate::patch::PatchSchema,
    current: &Value,
    body: &[u8],
    is_custom: bool,
) -> Result<Value, ApiError> {
    let r = match ty {
        PatchType::Json => crate::patch::apply_json_patch(current, body),
        PatchType::Merge => crate::patch::apply_merge_patch(current, body),
        PatchType::StrategicMerge if is_custom => Err(crate::patch::PatchError::UnsupportedMediaType(
            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml".into(),
        )),
        PatchType::StrategicMerge => crate::patch::apply_strategic_merge_patch(current, body, schema),
        PatchType::Apply => Err(crate::patch::PatchError::BadRequest("apply patches are handled separately".into())),
    };
    r.map_err(patch_error)
}

/// A patch engine error as an API error.
fn patch_error(e: crate::patch::PatchError) -> ApiError {
    use crate::patch::PatchError as P;
    match e {
        P::BadRequest(m) => ApiError::bad_request(m),
        P::Invalid(m) => {
            let mut err = ApiError::bad_request(m);
            err.code = 422;
            err.reason = "Invalid";
            err
        }
        P::Conflict { message, conflicts } => {
            let mut err = ApiError::conflict_msg("", "", "", "");
            err.message = message;
            err.causes = conflicts
                .into_iter()
                .map(|c| crate::error::StatusCause {
                    reason: "FieldManagerConflict".into(),
                    message: c.message,
                    field: c.field,
                })
                .collect();
            err
        }
        P::UnsupportedMediaType(m) => ApiError::unsupported_media_type(m),
        P::TooLarge(m) => ApiError::too_large(m),
    }
}

async fn patch(
    call: &Call,
    target: &Target,
    part: Part,
    repr: Representation,
) -> Result<Response<Body>, ApiError> {
    require_verb(&target.info, "patch")?;
    let ty = patch_type(call)?;
    if ty != PatchType::Apply && call.query.get("force").is_some() {
        return Err(ApiError::invalid_options(
            "PatchOptions",
            "force",
            "FieldValueForbidden",
            "Forbidden: may not be specified for non-apply patch".into(),
        ));
    }
    let mut opts = call.write_options()?;
    let info = target.info.clone();
    let schema = patch_schema(call, &info);
    let is_custom = call.state.custom_resource(&info).is_some();
    let include = IncludeObject::parse(call.query.get("includeObject"));
    if ty == PatchType::Apply {
        if call.query.get("fieldManager").is_none() {
            return Err(ApiError::invalid(
                "PatchOptions",
                "meta.k8s.io",
                "",
                vec![crate::error::StatusCause {
                    reason: "FieldValueRequired".into(),
                    message: "Required value: is required for apply patch".into(),
                    field: "fieldManager".into(),
                }],
            ));
        }
        let mut applied = parse_body(Some("application/apply-patch+yaml"), &call.body)?;
        // The version the URL names (the stored one may differ).
        let expected = call.served.as_deref().unwrap_or(&info).api_version();
        if let Some(given) = applied["apiVersion"].as_str()
            && !given.is_empty()
            && given != expected
        {
            return Err(ApiError::bad_request(format!(
                "Incorrect version specified in apply patch. Specified patch version: {given}, expected: {expected}"
            )));
        }
        reset_fields(&info, part, &mut applied);
        let force = call.query.flag("force");
        let manager = opts.field_manager.clone();
        let now = crate::registry::meta::now();
        let existing = store::get(&call.state, target).await;
        match existing {
            Err(e) if e.code == 404 && part == Part::Main => {
                let obj =
                    crate::patch::server_side_apply(None, &applied, &manager, force, &schema, &now)
                        .map_err(patch_error)?;
                opts.field_manager = String::new();
                let out =
                    store::create(&call.state, &info, target.namespace.as_deref(), obj, &opts)
                        .await?;
                return call.respond(201, &info, out, repr, include).await;
            }
            Err(e) => return Err(e),
            Ok(_) => {}
        }
        opts.field_manager = String::new();
        let out = store::guaranteed_update(&call.state, target, None, part, &opts, |current| {
            let subresource = match part {
                Part::Main => "",
                Part::Status => "status",
            };
            crate::patch::server_side_apply_to(
                Some(current),
                &applied,
                &manager,
                force,
                &schema,
                subresource,
                &now,
            )
            .map_err(patch_error)
        })
        .await?;
        return call.respond(200, &info, out, repr, include).await;
    }
    let body = call.body.clone();
    let name = target.name.clone();
    let out = store::guaranteed_update(&call.state, target, None, part, &opts, |current| {
        let served = call.out_local(current.clone());
        let patched = call.to_stored(apply_patch(ty, &schema, &served, &body, is_custom)?);
        let want_rv = patched["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or("");
        let have_rv = current["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or("");
        if !want_rv.is_empty() && want_rv != have_rv {
            return Err(ApiError::conflict(&info.group, &info.plural, &name));
        }
        Ok(patched)
    })
    .await?;
    call.respond(200, &target.info, out, repr, include).await
}

/// Drop from an applied configuration what the endpoint does not write, as
/// upstream's reset fields: `status` through the main endpoint of a kind
/// with a status subresource, everything but `status` (and the object's
/// identity) through `status`. The applier then neither owns those fields
/// nor conflicts over them (an object exported with `kubectl get -o yaml`
/// applies cleanly).
fn reset_fields(info: &ResourceInfo, part: Part, applied: &mut Value) {
    let Some(fields) = applied.as_object_mut() else {
        return;
    };
    match part {
        Part::Main if info.has_subresource("status") => {
            fields.remove("status");
        }
        Part::Main => {}
        Part::Status => fields
            .retain(|k, _| matches!(k.as_str(), "apiVersion" | "kind" | "metadata" | "status")),
    }
}

async fn patch_scale(call: &Call, target: &Target) -> Result<Response<Body>, ApiError> {
    let ty = patch_type(call)?;
    if ty == PatchType::Apply {
        return Err(ApiError::unsupported_media_type(
            "apply is not supported on the scale subresource",
        ));
    }
    let opts = call.write_options()?;
    let body = call.body.clone();
    let schema = crate::patch::patch_strategy_for("autoscaling/v1", "Scale");
    let s = subresources::update_scale(&call.state, target, &opts, |current| {
        apply_patch(ty, &schema, current, &body, false)
    })
    .await?;
    Ok(response::json(200, &s))
}

fn delete_options(call: &Call) -> Result<DeleteOptions, ApiError> {
    let body = if call.body.is_empty() {
        Value::Null
    } else {
        call.json_body()?
    };
    let q = &call.query;
    let grace = match q.int("gracePeriodSeconds")? {
        Some(g) => Some(g),
        None => body["gracePeriodSeconds"].as_i64(),
    };
    let mut propagation = q
        .get("propagationPolicy")
        .map(str::to_string)
        .or_else(|| body["propagationPolicy"].as_str().map(str::to_string));
    let orphan = q
        .get("orphanDependents")
        .map(|v| v == "true")
        .or_else(|| body["orphanDependents"].as_bool());
    if let Some(policy) = &propagation {
        if !["Orphan", "Background", "Foreground"].contains(&policy.as_str()) {
            return Err(ApiError::invalid_options(
                "DeleteOptions",
                "propagationPolicy",
                "FieldValueNotSupported",
                format!(
                    "Unsupported value: {policy:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""
                ),
            ));
        }
        if orphan.is_some() {
            return Err(ApiError::invalid_options(
                "DeleteOptions",
                "propagationPolicy",
                "FieldValueInvalid",
                format!(
                    "Invalid value: {policy:?}: orphanDependents and deletionPropagation cannot be both set"
                ),
            ));
        }
    }
    if propagation.is_none() {
        propagation = match orphan {
            Some(true) => Some("Orphan".into()),
            Some(false) => Some("Background".into()),
            None => None,
        };
    }
    let dry_run = q.dry_run("DeleteOptions")?
        || body["dryRun"]
            .as_array()
            .is_some_and(|a| a.iter().any(|v| v == "All"));
    Ok(DeleteOptions {
        grace_period: grace,
        propagation,
        uid: body["preconditions"]["uid"].as_str().map(str::to_string),
        resource_version: body["preconditions"]["resourceVersion"]
            .as_str()
            .and_then(|s| s.parse().ok()),
        dry_run,
    })
}

/// Upstream's warning on a delete of a Job that orphans its pods because
/// the request chose no propagation policy.
const JOB_ORPHANS_WARNING: &str = "child pods are preserved by default when jobs are deleted; set propagationPolicy=Background to remove them or set propagationPolicy=Orphan to suppress this warning";

async fn delete(call: &Call, target: &Target) -> Result<Response<Body>, ApiError> {
    require_verb(&target.info, "delete")?;
    let mut opts = delete_options(call)?;
    let info = &target.info;
    let mut warnings = Vec::new();
    // Kinds whose default garbage-collection policy is to orphan their
    // dependents (upstream's DefaultGarbageCollectionPolicy).
    let orphans = matches!(
        (info.group.as_str(), info.kind.as_str()),
        ("batch", "Job") | ("", "ReplicationController")
    );
    if opts.propagation.is_none() && orphans {
        opts.propagation = Some("Orphan".into());
        if info.kind == "Job" {
            warnings.push(JOB_ORPHANS_WARNING.to_string());
        }
    }
    let (obj, deleted) = store::delete(&call.state, target, &opts).await?;
    // Most kinds answer a delete that is done with a success Status; those
    // that upstream stores with ReturnDeletedObject answer with the object,
    // and a delete that waits (finalizers, a grace period) always does.
    if deleted && !returns_deleted_object(info) {
        let uid = obj["metadata"]["uid"].as_str();
        let status = crate::error::success_status(&info.group, &info.plural, &target.name, uid);
        return Ok(response::json_with_warnings(200, &status, &warnings));
    }
    let cascading = call.query.get("orphanDependents") == Some("false");
    let code = if !deleted && cascading { 202 } else { 200 };
    Ok(response::json_with_warnings(
        code,
        &call.out(obj).await?,
        &warnings,
    ))
}

/// Kinds whose delete answers with the deleted object (upstream's
/// `ReturnDeletedObject`), not a `Status`.
fn returns_deleted_object(info: &ResourceInfo) -> bool {
    match info.group.as_str() {
        "" => matches!(
            info.kind.as_str(),
            "Pod" | "Namespace" | "ServiceAccount" | "PersistentVolume" | "PersistentVolumeClaim"
        ),
        "storage.k8s.io" => info.kind == "StorageClass",
        _ => false,
    }
}

async fn delete_collection(
    call: &Call,
    info: Arc<ResourceInfo>,
) -> Result<Response<Body>, ApiError> {
    require_verb(&info, "deletecollection")?;
    let opts = delete_options(call)?;
    let filter = list::Filter::from_query(&info, &call.query)?;
    let cache = call.state.cache(&info).await?;
    let _ = call
        .state
        .caches
        .sync_with_storage(std::time::Duration::from_secs(3))
        .await;
    let prefix = match call.path.namespace.as_deref() {
        Some(ns) => format!("{}{ns}/", info.storage_prefix()),
        None => info.storage_prefix(),
    };
    let mut deleted = Vec::new();
    for o in cache.snapshot(&prefix).objects {
        if !filter.matches(&o) {
            continue;
        }
        let target = Target {
            info: info.clone(),
            namespace: o.namespace.clone(),
            name: o.name.clone(),
        };
        match store::delete(&call.state, &target, &opts).await {
            Ok((obj, _)) => deleted.push(obj),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let rev = call.state.caches.revision().to_string();
    let deleted = crate::registry::conversion::to_version(&call.state, &info, deleted).await?;
    Ok(response::json(
        200,
        &json!({
            "kind": info.list_kind(),
            "apiVersion": info.api_version(),
            "metadata": {"resourceVersion": rev},
            "items": deleted,
        }),
    ))
}
