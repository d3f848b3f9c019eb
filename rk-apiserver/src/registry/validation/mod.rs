//! Validation, answered as 422 `Invalid` with one cause per problem, in
//! upstream's words (`pkg/apis/*/validation`): object names, labels and
//! annotations, required fields, workload selectors, Service ports, and the
//! fields that may not change on update.

mod access;
mod admission;
pub mod events;
mod meta;
mod workloads;

use rk_core::catalogue::ResourceInfo;
use serde_json::Value;

/// The kinds of field error upstream reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CauseType {
    /// `FieldValueRequired`.
    Required,
    /// `FieldValueInvalid`.
    Invalid,
    /// `FieldValueNotSupported`.
    NotSupported,
    /// `FieldValueDuplicate`.
    Duplicate,
    /// `FieldValueTooLong`.
    TooLong,
    /// `FieldValueForbidden`.
    Forbidden,
    /// `FieldValueNotFound`.
    NotFound,
}

/// One field error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cause {
    /// Its kind.
    pub reason: CauseType,
    /// The field path, e.g. `spec.template.spec.containers[0].image`.
    pub field: String,
    /// The detail after the type's prefix, e.g. `must be greater than or equal to 0`.
    pub message: String,
    /// The offending value as upstream prints it, if any.
    pub value: Option<String>,
}

impl Cause {
    /// Upstream's cause type string.
    pub fn reason_str(&self) -> &'static str {
        match self.reason {
            CauseType::Required => "FieldValueRequired",
            CauseType::Invalid => "FieldValueInvalid",
            CauseType::NotSupported => "FieldValueNotSupported",
            CauseType::Duplicate => "FieldValueDuplicate",
            CauseType::TooLong => "FieldValueTooLong",
            CauseType::Forbidden => "FieldValueForbidden",
            CauseType::NotFound => "FieldValueNotFound",
        }
    }

    /// The message as upstream prints it after the field:
    /// The cause as a `Status` carries it.
    pub fn to_status_cause(&self) -> crate::error::StatusCause {
        crate::error::StatusCause {
            reason: self.reason_str().to_string(),
            message: self.detail_message(),
            field: self.field.clone(),
        }
    }

    /// `Required value`, `Invalid value: -1: must be ...`.
    pub fn detail_message(&self) -> String {
        let (prefix, with_value) = match self.reason {
            CauseType::Required => ("Required value", false),
            CauseType::Invalid => ("Invalid value", true),
            CauseType::NotSupported => ("Unsupported value", true),
            CauseType::Duplicate => ("Duplicate value", true),
            CauseType::TooLong => ("Too long", false),
            CauseType::Forbidden => ("Forbidden", false),
            CauseType::NotFound => ("Not found", true),
        };
        match (&self.value, with_value, self.message.is_empty()) {
            (Some(v), true, true) => format!("{prefix}: {v}"),
            (Some(v), true, false) => format!("{prefix}: {v}: {}", self.message),
            (_, _, true) => prefix.to_string(),
            (_, _, false) => format!("{prefix}: {}", self.message),
        }
    }
}

/// Helpers to build causes.
pub(crate) fn required(field: &str) -> Cause {
    Cause {
        reason: CauseType::Required,
        field: field.into(),
        message: String::new(),
        value: None,
    }
}

pub(crate) fn invalid(field: &str, value: &Value, message: &str) -> Cause {
    let shown = match value {
        Value::String(s) => format!("\"{s}\""),
        other => other.to_string(),
    };
    Cause {
        reason: CauseType::Invalid,
        field: field.into(),
        message: message.into(),
        value: Some(shown),
    }
}

pub(crate) fn forbidden(field: &str, message: &str) -> Cause {
    Cause {
        reason: CauseType::Forbidden,
        field: field.into(),
        message: message.into(),
        value: None,
    }
}

/// A string field that must be one of `supported` (absent is fine): a
/// NotSupported cause otherwise. `field` is formatted only on refusal.
pub(crate) fn check_supported(
    out: &mut Vec<Cause>,
    value: &Value,
    supported: &[&str],
    field: impl FnOnce() -> String,
) {
    if let Some(s) = value.as_str()
        && !supported.contains(&s)
    {
        out.push(not_supported(&field(), value, supported));
    }
}

pub(crate) fn not_supported(field: &str, value: &Value, supported: &[&str]) -> Cause {
    let list = supported
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let shown = match value {
        Value::String(s) => format!("\"{s}\""),
        other => other.to_string(),
    };
    Cause {
        reason: CauseType::NotSupported,
        field: field.into(),
        message: format!("supported values: {list}"),
        value: Some(shown),
    }
}

pub(crate) fn duplicate(field: &str, value: &Value) -> Cause {
    let shown = match value {
        Value::String(s) => format!("\"{s}\""),
        other => other.to_string(),
    };
    Cause {
        reason: CauseType::Duplicate,
        field: field.into(),
        message: String::new(),
        value: Some(shown),
    }
}

/// Validate an object (and, on update, its changes from `old`).
pub fn validate(info: &ResourceInfo, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut causes = meta::object_meta(info, obj, old);
    causes.extend(workloads::spec(info, obj, old));
    match (info.group.as_str(), info.kind.as_str()) {
        ("rbac.authorization.k8s.io", "Role" | "ClusterRole") => causes.extend(access::role(obj)),
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            causes.extend(access::binding(obj))
        }
        ("networking.k8s.io", "Ingress") => causes.extend(access::ingress(obj)),
        _ => {}
    }
    if info.group == "admissionregistration.k8s.io" {
        match info.kind.as_str() {
            "MutatingWebhookConfiguration" => {
                causes.extend(admission::webhook_configuration(obj, true))
            }
            "ValidatingWebhookConfiguration" => {
                causes.extend(admission::webhook_configuration(obj, false))
            }
            "ValidatingAdmissionPolicy" => causes.extend(admission::validating_policy(obj)),
            "ValidatingAdmissionPolicyBinding" => {
                causes.extend(admission::validating_policy_binding(obj))
            }
            "MutatingAdmissionPolicy" => causes.extend(admission::mutating_policy(obj)),
            "MutatingAdmissionPolicyBinding" => {
                causes.extend(admission::mutating_policy_binding(obj))
            }
            _ => {}
        }
    }
    causes
}
