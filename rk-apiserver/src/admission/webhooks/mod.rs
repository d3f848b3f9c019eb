//! Admission webhooks: the API server calls the webhooks of
//! `MutatingWebhookConfiguration`s and `ValidatingWebhookConfiguration`s
//! whose rules match a write, as upstream's `MutatingAdmissionWebhook` and
//! `ValidatingAdmissionWebhook` plugins do.
//!
//! - Matching ([`rules`]): operations, API groups, versions, resources and
//!   subresources (`pods`, `pods/status`, `*/*`, `pods/*`), scope,
//!   `namespaceSelector` (the namespace's labels; a Namespace's own) and
//!   `objectSelector` (the new or the old object's labels). Configurations
//!   are taken in name order, webhooks in their order. Writes of the
//!   admissionregistration kinds themselves are never sent to a webhook, so
//!   a broken webhook can always be removed.
//! - The call ([`client`]): an `admission.k8s.io/v1` `AdmissionReview`
//!   POSTed over HTTPS to `clientConfig.url` or to the Service
//!   `clientConfig.service` names (one of its ready endpoints, else its
//!   cluster IP), the server's certificate checked against `caBundle` (the
//!   system's roots without one), within `timeoutSeconds`.
//! - The answer: `allowed: false` is the webhook's `Status` (code 403 when
//!   it gives none below 400) with upstream's message
//!   `admission webhook "NAME" denied the request: ...`; a mutating
//!   webhook's `JSONPatch` is applied in turn; `warnings` become `Warning`
//!   headers. A webhook that cannot be called, times out or answers
//!   nonsense fails the request (500) under `failurePolicy: Fail` and is
//!   skipped under `Ignore`.
//! - `dryRun` requests are only sent to webhooks with `sideEffects` `None`
//!   or `NoneOnDryRun`; any other matching webhook fails them (400).
//!
//! - `matchConditions` (CEL, [`crate::cel`]): a webhook is called only when
//!   every condition holds; a condition that cannot be evaluated fails the
//!   request under `failurePolicy: Fail` and skips the webhook under `Ignore`.
//!
//! - Under `matchPolicy: Equivalent` (the default) a write of a custom
//!   resource at a version the rules do not name reaches a webhook whose
//!   rules name another served version of it; the webhook is sent the
//!   objects converted to that version (`requestKind` stays the written
//!   one) and a mutating webhook's patch is converted back. rk serves one
//!   version of each built-in kind, so only custom resources have
//!   equivalents.
//!
//! Not done: reinvocation (`reinvocationPolicy: IfNeeded`) calls a webhook
//! again only when a later webhook changed the object, not for built-in
//! admission.

mod client;
pub(crate) use client::{MAX_ADMISSION_ANSWER, post};
mod rules;

pub(crate) use rules::{matches, rule_matches, selects_labels};

use std::sync::Arc;

use base64::Engine;
use rk_core::catalogue::ResourceInfo;
use serde_json::{Value, json};
use tracing::warn;

use crate::cel::{Activation, Conditions, match_conditions};
use crate::error::ApiError;
use crate::state::ApiState;

const GROUP: &str = "admissionregistration.k8s.io";
const MUTATING: &str = "mutatingwebhookconfigurations";
const VALIDATING: &str = "validatingwebhookconfigurations";

/// The operation being admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// A create.
    Create,
    /// An update or patch.
    Update,
    /// A delete.
    Delete,
}

impl Operation {
    /// Upstream's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
        }
    }

    fn options_kind(self) -> &'static str {
        match self {
            Operation::Create => "CreateOptions",
            Operation::Update => "UpdateOptions",
            Operation::Delete => "DeleteOptions",
        }
    }
}

/// What is being admitted.
#[derive(Clone, Copy, Debug)]
pub struct Attributes<'a> {
    /// The resource written.
    pub info: &'a ResourceInfo,
    /// Its subresource (`status`), or empty for the main resource.
    pub subresource: &'a str,
    /// The operation.
    pub operation: Operation,
    /// The object's namespace.
    pub namespace: Option<&'a str>,
    /// The object's name.
    pub name: &'a str,
    /// `dryRun=All`.
    pub dry_run: bool,
}

/// One webhook of a configuration, with what it needs to be called.
struct Webhook {
    /// The webhook's `name`.
    name: String,
    spec: Value,
    /// Another version of the written custom resource that the webhook's
    /// rules name (`matchPolicy: Equivalent`): it is sent the objects
    /// converted to that version.
    equivalent: Option<Arc<ResourceInfo>>,
}

impl Webhook {
    /// A call that failed, as its `failurePolicy` says: the request's
    /// error (`Fail`, the default), or a log line (`Ignore`).
    fn failed(&self, message: String) -> Result<(), ApiError> {
        if self.spec["failurePolicy"].as_str() != Some("Ignore") {
            return Err(ApiError::internal(message));
        }
        warn!(webhook = %self.name, %message, "ignoring a failed webhook (failurePolicy: Ignore)");
        Ok(())
    }
}

/// Calls the mutating webhooks that match, one after another, applying
/// their patches to `obj`; a webhook with `reinvocationPolicy: IfNeeded`
/// is called once more when a later one changed the object. Returns their
/// warnings and whether `obj` changed.
pub async fn mutate(
    state: &ApiState,
    attrs: &Attributes<'_>,
    obj: &mut Value,
    old: Option<&Value>,
) -> Result<(Vec<String>, bool), ApiError> {
    let webhooks = matching(state, attrs, MUTATING, Some(obj), old).await?;
    let mut warnings = Vec::new();
    let mut last_change = None;
    for (i, webhook) in webhooks.iter().enumerate() {
        if mutate_once(state, attrs, webhook, obj, old, &mut warnings).await? {
            last_change = Some(i);
        }
    }
    if let Some(last) = last_change {
        for webhook in webhooks[..last]
            .iter()
            .filter(|w| w.spec["reinvocationPolicy"].as_str() == Some("IfNeeded"))
        {
            mutate_once(state, attrs, webhook, obj, old, &mut warnings).await?;
        }
    }
    Ok((warnings, last_change.is_some()))
}

/// One call of a mutating webhook; returns whether it changed `obj`.
async fn mutate_once(
    state: &ApiState,
    attrs: &Attributes<'_>,
    webhook: &Webhook,
    obj: &mut Value,
    old: Option<&Value>,
    warnings: &mut Vec<String>,
) -> Result<bool, ApiError> {
    let message = match call(state, attrs, webhook, Some(obj), old).await {
        Ok(answer) => {
            warnings.extend(answer.warnings);
            let Some(patch) = answer.patch else {
                return Ok(false);
            };
            // The patch is against what the webhook was sent.
            let sent = answer.sent.unwrap_or_else(|| obj.clone());
            match patched_at_request_version(state, attrs, webhook, sent, &patch).await {
                Ok(patched) => {
                    let changed = patched != *obj;
                    *obj = patched;
                    return Ok(changed);
                }
                Err(message) => format!("failed calling webhook {:?}: {message}", webhook.name),
            }
        }
        Err(CallError::Denied(e)) => return Err(e),
        Err(CallError::Failed(message)) => message,
    };
    webhook.failed(message)?;
    Ok(false)
}

/// `sent` patched by a mutating webhook, back at the version the request
/// writes.
async fn patched_at_request_version(
    state: &ApiState,
    attrs: &Attributes<'_>,
    webhook: &Webhook,
    mut sent: Value,
    patch: &Value,
) -> Result<Value, String> {
    apply_patch(&mut sent, patch)?;
    if webhook.equivalent.is_none() {
        return Ok(sent);
    }
    crate::registry::conversion::one_to_version(state, attrs.info, sent)
        .await
        .map_err(|e| e.message)
}

/// Calls the validating webhooks that match, all at once. Returns their
/// warnings; the first denial or failure (under `failurePolicy: Fail`) is
/// the error.
pub async fn validate(
    state: &ApiState,
    attrs: &Attributes<'_>,
    obj: Option<&Value>,
    old: Option<&Value>,
) -> Result<Vec<String>, ApiError> {
    call_all(state, attrs, VALIDATING, obj, old).await
}

/// A delete: the mutating webhooks (whose patches have nothing to change)
/// and then the validating ones that match, with `old` as the object that
/// goes.
pub async fn on_delete(
    state: &ApiState,
    attrs: &Attributes<'_>,
    old: &Value,
) -> Result<Vec<String>, ApiError> {
    let mut warnings = call_all(state, attrs, MUTATING, None, Some(old)).await?;
    warnings.extend(call_all(state, attrs, VALIDATING, None, Some(old)).await?);
    Ok(warnings)
}

/// Calls every matching webhook of the `plural` configurations at once,
/// without applying patches (a validating webhook may not send one).
async fn call_all(
    state: &ApiState,
    attrs: &Attributes<'_>,
    plural: &str,
    obj: Option<&Value>,
    old: Option<&Value>,
) -> Result<Vec<String>, ApiError> {
    let webhooks = matching(state, attrs, plural, obj, old).await?;
    if webhooks.is_empty() {
        return Ok(Vec::new());
    }
    let calls = webhooks
        .iter()
        .map(|webhook| async move { (webhook, call(state, attrs, webhook, obj, old).await) });
    let mut warnings = Vec::new();
    for (webhook, result) in futures::future::join_all(calls).await {
        match result {
            Ok(answer) if answer.patch.is_some() && plural == VALIDATING => {
                webhook.failed(format!(
                    "failed calling webhook {:?}: validating webhooks may not return a patch",
                    webhook.name
                ))?;
            }
            Ok(answer) => warnings.extend(answer.warnings),
            Err(CallError::Denied(e)) => return Err(e),
            Err(CallError::Failed(message)) => webhook.failed(message)?,
        }
    }
    Ok(warnings)
}

/// The webhooks of the configurations stored under `plural` that match.
async fn matching(
    state: &ApiState,
    attrs: &Attributes<'_>,
    plural: &str,
    obj: Option<&Value>,
    old: Option<&Value>,
) -> Result<Vec<Webhook>, ApiError> {
    if attrs.info.group == GROUP {
        return Ok(Vec::new());
    }
    let Some(resident) = state.builtin.get(GROUP, "v1", plural) else {
        return Ok(Vec::new());
    };
    let snapshot = resident
        .cache(&state.caches)
        .await?
        .snapshot(&resident.prefix);
    if snapshot.objects.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for cached in &snapshot.objects {
        let Some(config) = crate::admission::parsed::parsed(cached) else {
            continue;
        };
        let Value::Array(webhooks) = config["webhooks"].clone() else {
            continue;
        };
        for spec in webhooks {
            let equivalent = if rules::matches(state, attrs, &spec, obj, old).await? {
                None
            } else {
                match equivalent_version(state, attrs, &spec, obj, old).await? {
                    Some(info) => Some(info),
                    None => continue,
                }
            };
            let webhook = Webhook {
                name: spec["name"].as_str().unwrap_or_default().to_string(),
                spec,
                equivalent,
            };
            if !conditions_hold(state, attrs, &webhook, obj, old).await? {
                continue;
            }
            if attrs.dry_run
                && !matches!(
                    webhook.spec["sideEffects"].as_str(),
                    Some("None" | "NoneOnDryRun")
                )
            {
                return Err(ApiError::bad_request(format!(
                    "admission webhook {:?} does not support dry run",
                    webhook.name
                )));
            }
            out.push(webhook);
        }
    }
    Ok(out)
}

/// Whether the webhook's `matchConditions` (CEL over what it would be
/// sent) all hold. One that cannot be evaluated is a failed call, which
/// `failurePolicy` decides about (and skips the webhook under `Ignore`).
async fn conditions_hold(
    state: &ApiState,
    attrs: &Attributes<'_>,
    webhook: &Webhook,
    obj: Option<&Value>,
    old: Option<&Value>,
) -> Result<bool, ApiError> {
    let conditions = &webhook.spec["matchConditions"];
    if conditions.as_array().is_none_or(|c| c.is_empty()) {
        return Ok(true);
    }
    let activation = match sent_to(state, attrs, webhook, obj, old).await {
        Ok(seen) => Activation {
            object: seen.object.unwrap_or(Value::Null),
            old_object: seen.old_object.unwrap_or(Value::Null),
            request: seen.request,
            ..Activation::default()
        },
        Err(CallError::Failed(message)) => {
            webhook.failed(message)?;
            return Ok(false);
        }
        Err(CallError::Denied(e)) => return Err(e),
    };
    match match_conditions(conditions, &activation) {
        Conditions::Match => Ok(true),
        Conditions::NoMatch => Ok(false),
        Conditions::Error(message) => {
            webhook.failed(format!(
                "failed calling webhook {:?}: {message}",
                webhook.name
            ))?;
            Ok(false)
        }
    }
}

/// Under `matchPolicy: Equivalent` (the default), a write of a custom
/// resource at a version the webhook's rules do not name still reaches it
/// when they name another served version of the same resource: that
/// version. rk serves one version of each built-in kind, so only custom
/// resources have equivalents.
async fn equivalent_version(
    state: &ApiState,
    attrs: &Attributes<'_>,
    spec: &Value,
    obj: Option<&Value>,
    old: Option<&Value>,
) -> Result<Option<Arc<ResourceInfo>>, ApiError> {
    if spec["matchPolicy"].as_str() == Some("Exact") {
        return Ok(None);
    }
    for info in crate::registry::conversion::other_served_versions(state, attrs.info) {
        let at_version = Attributes {
            info: &info,
            ..*attrs
        };
        if rules::matches(state, &at_version, spec, obj, old).await? {
            return Ok(Some(info));
        }
    }
    Ok(None)
}

/// A write as an admission check sees it: the objects and the
/// `AdmissionRequest`.
pub(crate) struct Seen {
    /// The new object (none on delete).
    pub object: Option<Value>,
    /// The old object (none on create).
    pub old_object: Option<Value>,
    /// The `AdmissionRequest`, without its uid.
    pub request: Value,
}

/// The write as seen at `version` — another served version of the written
/// custom resource, which a `matchPolicy: Equivalent` check's rules name —
/// or as written when `None`. `requestKind` and `requestResource` stay the
/// written ones. The error is the conversion's.
pub(crate) async fn seen_at(
    state: &ApiState,
    attrs: &Attributes<'_>,
    version: Option<&ResourceInfo>,
    obj: Option<&Value>,
    old: Option<&Value>,
) -> Result<Seen, ApiError> {
    let Some(info) = version else {
        return Ok(Seen {
            object: obj.cloned(),
            old_object: old.cloned(),
            request: request(attrs, obj, old),
        });
    };
    let mut converted = Vec::with_capacity(2);
    for o in [obj, old] {
        converted.push(match o {
            Some(o) => {
                Some(crate::registry::conversion::one_to_version(state, info, o.clone()).await?)
            }
            None => None,
        });
    }
    let old_object = converted.pop().flatten();
    let object = converted.pop().flatten();
    let at_version = Attributes { info, ..*attrs };
    let mut request = request(&at_version, object.as_ref(), old_object.as_ref());
    let written = attrs.info;
    request["requestKind"] =
        json!({"group": written.group, "version": written.version, "kind": written.kind});
    request["requestResource"] =
        json!({"group": written.group, "version": written.version, "resource": written.plural});
    Ok(Seen {
        object,
        old_object,
        request,
    })
}

/// [`seen_at`] the version `webhook` asked for; a failed conversion is a
/// failed call.
async fn sent_to(
    state: &ApiState,
    attrs: &Attributes<'_>,
    webhook: &Webhook,
    obj: Option<&Value>,
    old: Option<&Value>,
) -> Result<Seen, CallError> {
    seen_at(state, attrs, webhook.equivalent.as_deref(), obj, old)
        .await
        .map_err(|e| {
            CallError::Failed(format!(
                "failed calling webhook {:?}: {}",
                webhook.name, e.message
            ))
        })
}

/// What a webhook answered when it allowed the request.
struct Answer {
    patch: Option<Value>,
    warnings: Vec<String>,
    /// The object it was sent, when that was converted to another version.
    sent: Option<Value>,
}

/// Why a call did not allow the request.
enum CallError {
    /// The webhook said no: its status, answered as is.
    Denied(ApiError),
    /// The webhook could not be called or answered nonsense: the message
    /// of the error `failurePolicy` decides about.
    Failed(String),
}

async fn call(
    state: &ApiState,
    attrs: &Attributes<'_>,
    webhook: &Webhook,
    obj: Option<&Value>,
    old: Option<&Value>,
) -> Result<Answer, CallError> {
    let failed = |message: String| {
        CallError::Failed(format!(
            "failed calling webhook {:?}: {message}",
            webhook.name
        ))
    };
    let uid = uuid::Uuid::new_v4().to_string();
    let seen = sent_to(state, attrs, webhook, obj, old).await?;
    let review = review(seen.request, &uid);
    let sent = seen.object;
    let body = serde_json::to_vec(&review).map_err(|e| failed(e.to_string()))?;
    let timeout = webhook.spec["timeoutSeconds"]
        .as_u64()
        .unwrap_or(10)
        .clamp(1, 30);
    let answer = Box::pin(client::post(
        state,
        &webhook.spec["clientConfig"],
        body,
        timeout,
        MAX_ADMISSION_ANSWER,
    ))
    .await
    .map_err(|e| failed(format!("failed to call webhook: {e}")))?;
    let reply: Value = serde_json::from_slice(&answer)
        .map_err(|e| failed(format!("received invalid webhook response: {e}")))?;
    let response = &reply["response"];
    if !response.is_object() {
        return Err(failed("webhook response was absent".into()));
    }
    if response["uid"].as_str() != Some(uid.as_str()) {
        return Err(failed(format!(
            "expected response.uid={uid:?}, got {:?}",
            response["uid"].as_str().unwrap_or_default()
        )));
    }
    let warnings = response["warnings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect();
    if response["allowed"].as_bool() != Some(true) {
        return Err(CallError::Denied(denial(
            &webhook.name,
            &response["status"],
        )));
    }
    let patch = match response["patch"].as_str() {
        None => None,
        Some(encoded) => {
            if response["patchType"].as_str() != Some("JSONPatch") {
                return Err(failed(format!(
                    "unsupported patch type {:?}",
                    response["patchType"].as_str().unwrap_or_default()
                )));
            }
            let raw = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|e| failed(format!("the patch is not base64: {e}")))?;
            Some(
                serde_json::from_slice(&raw)
                    .map_err(|e| failed(format!("the patch is not JSON: {e}")))?,
            )
        }
    };
    let sent = webhook.equivalent.as_ref().and(sent);
    Ok(Answer {
        patch,
        warnings,
        sent,
    })
}

/// The `AdmissionReview` sent for a write.
fn review(mut request: Value, uid: &str) -> Value {
    request["uid"] = json!(uid);
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request})
}

/// The `AdmissionRequest` of a write: what a webhook is sent and what CEL
/// expressions see as `request`.
pub(crate) fn request(attrs: &Attributes<'_>, obj: Option<&Value>, old: Option<&Value>) -> Value {
    let info = attrs.info;
    let kind = json!({"group": info.group, "version": info.version, "kind": info.kind});
    let resource = json!({"group": info.group, "version": info.version, "resource": info.plural});
    let mut request = json!({
        "uid": "",
        "kind": kind,
        "resource": resource,
        "requestKind": kind,
        "requestResource": resource,
        "name": attrs.name,
        "operation": attrs.operation.as_str(),
        // rk authenticates no one yet: every request is the cluster admin's.
        "userInfo": {"username": "system:admin", "groups": ["system:masters", "system:authenticated"]},
        "object": obj.cloned().unwrap_or(Value::Null),
        "oldObject": old.cloned().unwrap_or(Value::Null),
        "dryRun": attrs.dry_run,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": attrs.operation.options_kind()},
    });
    if !attrs.subresource.is_empty() {
        request["subResource"] = json!(attrs.subresource);
        request["requestSubResource"] = json!(attrs.subresource);
    }
    if let Some(ns) = attrs.namespace {
        request["namespace"] = json!(ns);
    }
    request
}

/// A webhook's refusal as upstream turns it into an error: its status with
/// a code of at least 400 (403 without one) and the message prefixed.
fn denial(name: &str, status: &Value) -> ApiError {
    let denied_by = format!("admission webhook {name:?} denied the request");
    let message = status["message"].as_str().filter(|m| !m.is_empty());
    let reason = status["reason"].as_str().unwrap_or_default();
    let message = match (message, reason) {
        (Some(m), _) => format!("{denied_by}: {m}"),
        (None, r) if !r.is_empty() => format!("{denied_by}: {r}"),
        _ => format!("{denied_by} without explanation"),
    };
    let code = status["code"]
        .as_u64()
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| (400..600).contains(c))
        .unwrap_or(403);
    ApiError::with_status(code, known_reason(reason), message)
}

/// A webhook's `reason` among upstream's, or none.
fn known_reason(reason: &str) -> &'static str {
    const REASONS: &[&str] = &[
        "Unauthorized",
        "Forbidden",
        "NotFound",
        "AlreadyExists",
        "Conflict",
        "Gone",
        "Invalid",
        "ServerTimeout",
        "Timeout",
        "TooManyRequests",
        "BadRequest",
        "MethodNotAllowed",
        "NotAcceptable",
        "RequestEntityTooLarge",
        "UnsupportedMediaType",
        "InternalError",
        "Expired",
        "ServiceUnavailable",
    ];
    REASONS
        .iter()
        .find(|r| **r == reason)
        .copied()
        .unwrap_or("")
}

fn apply_patch(obj: &mut Value, patch: &Value) -> Result<(), String> {
    let patch: json_patch::Patch = serde_json::from_value(patch.clone())
        .map_err(|e| format!("the webhook's JSONPatch is invalid: {e}"))?;
    json_patch::patch(obj, &patch).map_err(|e| format!("the webhook's JSONPatch failed: {e}"))
}
