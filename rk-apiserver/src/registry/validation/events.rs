//! `events.k8s.io/v1` Events as upstream validates one written at that
//! version (`ValidateEventCreate`): the reporting controller and instance,
//! the action, reason and event time are required, the type is `Normal` or
//! `Warning`, and the deprecated core fields stay unset. Core `v1` Events
//! keep the looser legacy rules.

use serde_json::Value;

use super::{Cause, invalid, required};

/// Upstream's length limits of an event's fields.
const REPORTING_INSTANCE_LIMIT: usize = 128;
const ACTION_LIMIT: usize = 128;
const REASON_LIMIT: usize = 128;
const NOTE_LIMIT: usize = 1024;

/// The causes of an `events.k8s.io/v1` Event being created.
pub fn v1_create(obj: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    let text = |key: &str| obj[key].as_str().unwrap_or_default();
    let empty = Value::String(String::new());
    if text("eventTime").is_empty() {
        out.push(required("eventTime"));
    }
    let kind = text("type");
    if kind != "Normal" && kind != "Warning" {
        out.push(invalid(
            "type",
            &empty,
            &format!("has invalid value: {kind}"),
        ));
    }
    for deprecated in [
        "deprecatedFirstTimestamp",
        "deprecatedLastTimestamp",
        "deprecatedCount",
        "deprecatedSource",
    ] {
        let set = match &obj[deprecated] {
            Value::Null => false,
            Value::Number(n) => n.as_i64() != Some(0),
            Value::String(s) => !s.is_empty(),
            Value::Object(m) => m
                .values()
                .any(|v| v.as_str().is_some_and(|s| !s.is_empty())),
            _ => true,
        };
        if set {
            out.push(invalid(deprecated, &empty, "needs to be unset"));
        }
    }
    let controller = text("reportingController");
    if controller.is_empty() {
        out.push(required("reportingController"));
    } else {
        for problem in rk_core::labels::validation::validate_label_key(controller) {
            out.push(invalid(
                "reportingController",
                &obj["reportingController"],
                &problem,
            ));
        }
    }
    for (key, limit) in [
        ("reportingInstance", REPORTING_INSTANCE_LIMIT),
        ("action", ACTION_LIMIT),
        ("reason", REASON_LIMIT),
    ] {
        let value = text(key);
        if value.is_empty() {
            out.push(required(key));
        } else if value.len() > limit {
            out.push(invalid(
                key,
                &empty,
                &format!("can have at most {limit} characters"),
            ));
        }
    }
    if text("note").len() > NOTE_LIMIT {
        out.push(invalid(
            "note",
            &empty,
            &format!("can have at most {NOTE_LIMIT} characters"),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_v1_event_needs_its_reporter_action_reason_and_time() {
        let fields =
            |obj: &Value| -> Vec<String> { v1_create(obj).into_iter().map(|c| c.field).collect() };
        assert_eq!(
            fields(&json!({"reason": "X", "type": "Normal"})),
            [
                "eventTime",
                "reportingController",
                "reportingInstance",
                "action"
            ]
        );
        let good = json!({"eventTime": "2026-01-01T00:00:00.000000Z", "type": "Warning",
            "reportingController": "example.com/op", "reportingInstance": "op-1",
            "action": "Reconcile", "reason": "Failed", "note": "it broke"});
        assert!(v1_create(&good).is_empty());
        let mut old_style = good.clone();
        old_style["deprecatedCount"] = json!(2);
        old_style["type"] = json!("Info");
        assert_eq!(fields(&old_style), ["type", "deprecatedCount"]);
    }
}
