//! API errors and their wire form: a `v1` `Status` object with upstream's
//! `reason` and `code` (k8s.io/apimachinery/pkg/api/errors).

use serde_json::{Value, json};

use crate::storage::StorageError;

/// One field-level cause of a 422 (or 400) answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusCause {
    /// Machine reason, e.g. `FieldValueRequired`.
    pub reason: String,
    /// Human message.
    pub message: String,
    /// Field path, e.g. `spec.containers[0].image`.
    pub field: String,
}

/// An error answered to an API client.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// Upstream `StatusReason`, e.g. `NotFound`.
    pub reason: &'static str,
    /// Human message.
    pub message: String,
    /// `details.name`.
    pub name: Option<String>,
    /// `details.group`.
    pub group: Option<String>,
    /// `details.kind` (the resource plural, as upstream puts it).
    pub kind: Option<String>,
    /// `details.causes`.
    pub causes: Vec<StatusCause>,
    /// `details.retryAfterSeconds`.
    pub retry_after: Option<u32>,
}

/// `plural.group` or `plural` for the core group, as upstream names a resource
/// in messages.
pub fn qualified(plural: &str, group: &str) -> String {
    if group.is_empty() {
        plural.to_string()
    } else {
        format!("{plural}.{group}")
    }
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            name: None,
            group: None,
            kind: None,
            causes: Vec::new(),
            retry_after: None,
        }
    }

    /// The `details` of the status: the object's group, resource and name.
    pub fn with_details(mut self, group: &str, plural: &str, name: &str) -> Self {
        self.group = Some(group.to_string());
        self.kind = Some(plural.to_string());
        if !name.is_empty() {
            self.name = Some(name.to_string());
        }
        self
    }

    /// Any code and reason (an empty reason is none), e.g. an admission
    /// webhook's refusal.
    pub fn with_status(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self::new(code, reason, message)
    }

    /// 400 BadRequest.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 404 NotFound for an object.
    pub fn not_found(group: &str, plural: &str, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", qualified(plural, group)),
        )
        .with_details(group, plural, name)
    }

    /// 404 NotFound for a path that serves nothing.
    pub fn no_route() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    /// 405 MethodNotAllowed.
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", message)
    }

    /// 409 AlreadyExists.
    pub fn already_exists(group: &str, plural: &str, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", qualified(plural, group)),
        )
        .with_details(group, plural, name)
    }

    /// 409 Conflict for a stale resourceVersion.
    pub fn conflict(group: &str, plural: &str, name: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; \
                 please apply your changes to the latest version and try again",
                qualified(plural, group)
            ),
        )
        .with_details(group, plural, name)
    }

    /// 409 Conflict with a custom message.
    pub fn conflict_msg(group: &str, plural: &str, name: &str, msg: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": {msg}",
                qualified(plural, group)
            ),
        )
        .with_details(group, plural, name)
    }

    /// 410 Gone (`Expired`) for a watch or list from a compacted revision.
    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    /// 413 RequestEntityTooLarge.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(413, "RequestEntityTooLarge", message)
    }

    /// 415 UnsupportedMediaType.
    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(415, "UnsupportedMediaType", message)
    }

    /// 406 NotAcceptable.
    pub fn not_acceptable(message: impl Into<String>) -> Self {
        Self::new(406, "NotAcceptable", message)
    }

    /// 422 Invalid with causes, in upstream's message form.
    pub fn invalid(kind: &str, group: &str, name: &str, causes: Vec<StatusCause>) -> Self {
        let details: Vec<String> = causes
            .iter()
            .map(|c| {
                if c.field.is_empty() {
                    c.message.clone()
                } else {
                    format!("{}: {}", c.field, c.message)
                }
            })
            .collect();
        let list = if details.len() == 1 {
            details[0].clone()
        } else {
            format!("[{}]", details.join(", "))
        };
        let mut e = Self::new(
            422,
            "Invalid",
            format!("{} \"{name}\" is invalid: {list}", qualified(kind, group)),
        );
        e.group = Some(group.to_string());
        e.kind = Some(kind.to_string());
        e.name = Some(name.to_string());
        e.causes = causes;
        e
    }

    /// 422 Invalid on a request's options, as upstream answers a bad query
    /// parameter: `CreateOptions.meta.k8s.io "" is invalid: dryRun: ...`.
    /// `kind` is the options kind (`CreateOptions`, `PatchOptions`, ...),
    /// `reason` the cause's (`FieldValueNotSupported`, ...).
    pub fn invalid_options(kind: &str, field: &str, reason: &str, message: String) -> Self {
        Self::invalid(
            kind,
            "meta.k8s.io",
            "",
            vec![StatusCause {
                reason: reason.into(),
                message,
                field: field.into(),
            }],
        )
    }

    /// 403 Forbidden.
    pub fn forbidden(group: &str, plural: &str, name: &str, reason: &str) -> Self {
        let what = if name.is_empty() {
            qualified(plural, group)
        } else {
            format!("{} \"{name}\"", qualified(plural, group))
        };
        Self::new(403, "Forbidden", format!("{what} is forbidden: {reason}"))
            .with_details(group, plural, name)
    }

    /// 429 TooManyRequests.
    pub fn too_many_requests(message: impl Into<String>, retry_after: u32) -> Self {
        let mut e = Self::new(429, "TooManyRequests", message);
        e.retry_after = Some(retry_after);
        e
    }

    /// 500 InternalError.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            500,
            "InternalError",
            format!("Internal error occurred: {}", message.into()),
        )
    }

    /// 503 ServiceUnavailable.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "ServiceUnavailable", message)
    }

    /// 504 Timeout.
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(504, "Timeout", message)
    }

    /// Map a storage error for an object of `plural.group` named `name`.
    pub fn from_storage(err: StorageError, group: &str, plural: &str, name: &str) -> Self {
        match err {
            StorageError::KeyExists { .. } => Self::already_exists(group, plural, name),
            StorageError::NotFound { .. } => Self::not_found(group, plural, name),
            StorageError::Conflict { .. } => Self::conflict(group, plural, name),
            StorageError::Compacted {
                requested,
                compacted,
            } => Self::gone(format!(
                "too old resource version: {requested} ({compacted})"
            )),
            StorageError::FutureRevision { requested, current } => {
                let mut e = Self::timeout(format!(
                    "Too large resource version: {requested}, current: {current}"
                ));
                e.retry_after = Some(1);
                e.causes.push(StatusCause {
                    reason: "ResourceVersionTooLarge".into(),
                    message: "Too large resource version".into(),
                    field: String::new(),
                });
                e
            }
            StorageError::InvalidKey { reason, .. } => Self::bad_request(reason),
            StorageError::ValueTooLarge { size, limit, .. } => {
                Self::too_large(format!("object is too large: {size} bytes, limit {limit}"))
            }
            other => Self::internal(other.to_string()),
        }
    }

    /// The `Status` object.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "code": self.code,
        });
        // Upstream leaves out an empty reason and group.
        if !self.reason.is_empty() {
            status["reason"] = json!(self.reason);
        }
        let mut details = serde_json::Map::new();
        if let Some(n) = &self.name {
            details.insert("name".into(), json!(n));
        }
        if let Some(g) = self.group.as_ref().filter(|g| !g.is_empty()) {
            details.insert("group".into(), json!(g));
        }
        if let Some(k) = &self.kind {
            details.insert("kind".into(), json!(k));
        }
        if !self.causes.is_empty() {
            details.insert(
                "causes".into(),
                Value::Array(
                    self.causes
                        .iter()
                        .map(
                            |c| json!({"reason": c.reason, "message": c.message, "field": c.field}),
                        )
                        .collect(),
                ),
            );
        }
        if let Some(r) = self.retry_after.filter(|r| *r > 0) {
            details.insert("retryAfterSeconds".into(), json!(r));
        }
        if !details.is_empty() {
            status["details"] = Value::Object(details);
        }
        status
    }
}

/// A `Status` of success, as returned by some deletes.
pub fn success_status(group: &str, plural: &str, name: &str, uid: Option<&str>) -> Value {
    let mut details = json!({"name": name, "kind": plural});
    if !group.is_empty() {
        details["group"] = json!(group);
    }
    if let Some(uid) = uid {
        details["uid"] = json!(uid);
    }
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_status_names_resource_with_group() {
        let s = ApiError::not_found("apps", "deployments", "web").to_status();
        assert_eq!(s["reason"], "NotFound");
        assert_eq!(s["code"], 404);
        assert_eq!(s["message"], "deployments.apps \"web\" not found");
        assert_eq!(s["details"]["kind"], "deployments");
    }

    #[test]
    fn invalid_lists_every_cause_in_message() {
        let e = ApiError::invalid(
            "Pod",
            "",
            "p",
            vec![
                StatusCause {
                    reason: "FieldValueRequired".into(),
                    message: "Required value".into(),
                    field: "spec.containers".into(),
                },
                StatusCause {
                    reason: "FieldValueInvalid".into(),
                    message: "Invalid value: -1".into(),
                    field: "spec.x".into(),
                },
            ],
        );
        assert_eq!(e.code, 422);
        assert_eq!(
            e.message,
            "Pod \"p\" is invalid: [spec.containers: Required value, spec.x: Invalid value: -1]"
        );
        assert_eq!(
            e.to_status()["details"]["causes"].as_array().map(Vec::len),
            Some(2)
        );
    }

    #[test]
    fn compacted_storage_error_becomes_410_expired() {
        let e = ApiError::from_storage(
            StorageError::Compacted {
                requested: 3,
                compacted: 9,
            },
            "",
            "pods",
            "",
        );
        assert_eq!((e.code, e.reason), (410, "Expired"));
    }
}
