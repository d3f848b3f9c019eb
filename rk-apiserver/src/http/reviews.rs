//! Virtual, create-only kinds: access reviews and self-subject reviews
//! (token reviews are in [`super::tokens`]).
//! Authorization is not enforced yet, so every review answers "allowed"
//! (the seam where RBAC will plug in).

use http::Response;
use rk_core::catalogue::ResourceInfo;
use serde_json::{Value, json};

use super::response::{self, Body};
use crate::error::ApiError;

/// Answer a review object.
pub fn review(info: &ResourceInfo, mut body: Value) -> Result<Response<Body>, ApiError> {
    if !body.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    body["apiVersion"] = json!(info.api_version());
    body["kind"] = json!(info.kind);
    match info.kind.as_str() {
        "SelfSubjectAccessReview" | "SubjectAccessReview" | "LocalSubjectAccessReview" => {
            body["status"] =
                json!({"allowed": true, "reason": "rk: authorization is not enforced"});
        }
        "SelfSubjectRulesReview" => {
            body["status"] = json!({
                "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
                "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
                "incomplete": false,
            });
        }
        "SelfSubjectReview" => {
            body["status"] = json!({"userInfo": {"username": "rk-admin", "groups": ["system:masters", "system:authenticated"]}});
        }
        _ => {
            return Err(ApiError::method_not_allowed(
                "this resource only supports create",
            ));
        }
    }
    Ok(response::json(201, &body))
}
