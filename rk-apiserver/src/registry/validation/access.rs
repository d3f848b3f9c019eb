//! Validation of RBAC roles and bindings and of Ingresses, as upstream's
//! `ValidatePolicyRule`, `ValidateRoleBinding` and `ValidateIngressSpec`
//! report the common mistakes.

use serde_json::{Value, json};

use super::{Cause, invalid, not_supported, required};

/// A Role's or ClusterRole's rules: verbs are required; a resource rule
/// names API groups, a non-resource rule may not.
pub fn role(obj: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    for (i, rule) in obj["rules"].as_array().into_iter().flatten().enumerate() {
        let base = format!("rules[{i}]");
        let has = |k: &str| rule[k].as_array().is_some_and(|a| !a.is_empty());
        if !has("verbs") {
            out.push(required_msg(
                &format!("{base}.verbs"),
                "verbs must contain at least one value",
            ));
        }
        if has("nonResourceURLs") {
            if has("resources") || has("apiGroups") || has("resourceNames") {
                out.push(invalid(
                    &format!("{base}.nonResourceURLs"),
                    &rule["nonResourceURLs"],
                    "rules cannot apply to both regular resources and non-resource URLs",
                ));
            }
        } else {
            if !has("apiGroups") {
                out.push(required_msg(
                    &format!("{base}.apiGroups"),
                    "resource rules must supply at least one api group",
                ));
            }
            if !has("resources") {
                out.push(required_msg(
                    &format!("{base}.resources"),
                    "resource rules must supply at least one resource",
                ));
            }
        }
    }
    out
}

/// A RoleBinding's or ClusterRoleBinding's role reference and subjects.
pub fn binding(obj: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    let role_ref = &obj["roleRef"];
    let kind = role_ref["kind"].as_str().unwrap_or("");
    let allowed: &[&str] = if obj["kind"] == "RoleBinding" {
        &["ClusterRole", "Role"]
    } else {
        &["ClusterRole"]
    };
    if !allowed.contains(&kind) {
        out.push(not_supported("roleRef.kind", &role_ref["kind"], allowed));
    }
    if role_ref["apiGroup"] != "rbac.authorization.k8s.io" {
        out.push(not_supported(
            "roleRef.apiGroup",
            &role_ref["apiGroup"],
            &["rbac.authorization.k8s.io"],
        ));
    }
    if role_ref["name"].as_str().is_none_or(str::is_empty) {
        out.push(required("roleRef.name"));
    }
    for (i, subject) in obj["subjects"].as_array().into_iter().flatten().enumerate() {
        let base = format!("subjects[{i}]");
        if subject["name"].as_str().is_none_or(str::is_empty) {
            out.push(required(&format!("{base}.name")));
        }
        match subject["kind"].as_str().unwrap_or("") {
            "ServiceAccount" => {
                if subject["namespace"].as_str().is_none_or(str::is_empty)
                    && obj["kind"] == "ClusterRoleBinding"
                {
                    out.push(required(&format!("{base}.namespace")));
                }
            }
            "User" | "Group" => {}
            _ => out.push(not_supported(
                &format!("{base}.kind"),
                &subject["kind"],
                &["Group", "ServiceAccount", "User"],
            )),
        }
    }
    out
}

/// An Ingress needs a default backend or rules; each path a backend and,
/// with `pathType` `Exact` or `Prefix`, an absolute path.
pub fn ingress(obj: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    let spec = &obj["spec"];
    let rules = spec["rules"].as_array().filter(|r| !r.is_empty());
    if rules.is_none() && !spec["defaultBackend"].is_object() {
        out.push(invalid(
            "spec",
            &json!("[]"),
            "either `defaultBackend` or `rules` must be specified",
        ));
    }
    for (i, rule) in rules.into_iter().flatten().enumerate() {
        let paths = rule["http"]["paths"].as_array();
        if rule["http"].is_object() && paths.is_none_or(Vec::is_empty) {
            out.push(required(&format!("spec.rules[{i}].http.paths")));
        }
        for (j, p) in paths.into_iter().flatten().enumerate() {
            let base = format!("spec.rules[{i}].http.paths[{j}]");
            let path_type = p["pathType"].as_str().unwrap_or("");
            if !matches!(path_type, "Exact" | "Prefix" | "ImplementationSpecific") {
                if path_type.is_empty() {
                    out.push(required(&format!("{base}.pathType")));
                } else {
                    out.push(not_supported(
                        &format!("{base}.pathType"),
                        &p["pathType"],
                        &["Exact", "ImplementationSpecific", "Prefix"],
                    ));
                }
            }
            if matches!(path_type, "Exact" | "Prefix")
                && !p["path"].as_str().unwrap_or("").starts_with('/')
            {
                out.push(invalid(
                    &format!("{base}.path"),
                    &p["path"],
                    "must be an absolute path",
                ));
            }
            if !p["backend"]["service"].is_object() && !p["backend"]["resource"].is_object() {
                out.push(invalid(
                    &format!("{base}.backend"),
                    &json!(""),
                    "one backend must be specified",
                ));
            }
        }
    }
    out
}

fn required_msg(field: &str, message: &str) -> Cause {
    let mut cause = required(field);
    cause.message = message.to_string();
    cause
}
