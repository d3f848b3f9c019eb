//! Admission webhook configurations and validating admission policies, as
//! upstream's `pkg/apis/admissionregistration/validation` checks them: each
//! webhook's name, client config, rules and policies; a policy's
//! expressions (compiled here, so a typo is refused when written rather
//! than failing every request) and a binding's policy and actions.

use std::collections::HashSet;

use serde_json::Value;

use super::{Cause, duplicate, invalid, not_supported, required};

const OPERATIONS: &[&str] = &["CREATE", "UPDATE", "DELETE", "CONNECT", "*"];

/// The causes of a `MutatingWebhookConfiguration` or
/// `ValidatingWebhookConfiguration`.
pub(super) fn webhook_configuration(obj: &Value, mutating: bool) -> Vec<Cause> {
    let mut out = Vec::new();
    let mut names = HashSet::new();
    for (i, webhook) in obj["webhooks"].as_array().into_iter().flatten().enumerate() {
        let at = format!("webhooks[{i}]");
        match webhook["name"].as_str() {
            None | Some("") => out.push(required(&format!("{at}.name"))),
            Some(name) => {
                let segments = name.split('.').count();
                if segments < 3
                    || !rk_core::labels::validation::validate_dns1123_subdomain(name).is_empty()
                {
                    out.push(invalid(
                        &format!("{at}.name"),
                        &webhook["name"],
                        "should be a domain with at least three segments separated by dots",
                    ));
                } else if !names.insert(name.to_string()) {
                    out.push(duplicate(&format!("{at}.name"), &webhook["name"]));
                }
            }
        }
        client_config(&mut out, &at, &webhook["clientConfig"]);
        for (j, rule) in webhook["rules"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            for (k, op) in rule["operations"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
            {
                if !op.as_str().is_some_and(|o| OPERATIONS.contains(&o)) {
                    let field = format!("{at}.rules[{j}].operations[{k}]");
                    out.push(not_supported(&field, op, OPERATIONS));
                }
            }
            let scope = &rule["scope"];
            if !scope.is_null()
                && !["Cluster", "Namespaced", "*"].contains(&scope.as_str().unwrap_or(""))
            {
                let field = format!("{at}.rules[{j}].scope");
                out.push(not_supported(
                    &field,
                    scope,
                    &["Cluster", "Namespaced", "*"],
                ));
            }
        }
        let versions: Vec<&str> = webhook["admissionReviewVersions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if !versions.iter().any(|v| *v == "v1" || *v == "v1beta1") {
            let mut cause = required(&format!("{at}.admissionReviewVersions"));
            cause.message = "must specify one of v1, v1beta1".into();
            out.push(cause);
        }
        one_of(
            &mut out,
            &at,
            webhook,
            "sideEffects",
            &["None", "NoneOnDryRun"],
            true,
        );
        one_of(
            &mut out,
            &at,
            webhook,
            "failurePolicy",
            &["Fail", "Ignore"],
            false,
        );
        one_of(
            &mut out,
            &at,
            webhook,
            "matchPolicy",
            &["Equivalent", "Exact"],
            false,
        );
        if mutating {
            one_of(
                &mut out,
                &at,
                webhook,
                "reinvocationPolicy",
                &["Never", "IfNeeded"],
                false,
            );
        }
        if let Some(t) = webhook["timeoutSeconds"].as_i64()
            && !(1..=30).contains(&t)
        {
            out.push(invalid(
                &format!("{at}.timeoutSeconds"),
                &webhook["timeoutSeconds"],
                "the timeout value must be between 1 and 30 seconds",
            ));
        }
    }
    out
}

fn one_of(
    out: &mut Vec<Cause>,
    at: &str,
    webhook: &Value,
    key: &str,
    allowed: &[&str],
    needed: bool,
) {
    let value = &webhook[key];
    let field = format!("{at}.{key}");
    match value.as_str() {
        None if value.is_null() => {
            if needed {
                let mut cause = not_supported(&field, &Value::String(String::new()), allowed);
                cause.value = Some("\"\"".into());
                out.push(cause);
            }
        }
        Some(v) if allowed.contains(&v) => {}
        _ => out.push(not_supported(&field, value, allowed)),
    }
}

fn client_config(out: &mut Vec<Cause>, at: &str, config: &Value) {
    let field = format!("{at}.clientConfig");
    match (config["url"].as_str(), config["service"].is_object()) {
        (Some(_), true) | (None, false) => {
            let mut cause = required(&field);
            cause.message = "exactly one of url or service is required".into();
            out.push(cause);
        }
        (Some(url), false) => {
            let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
            let problem = if scheme != "https" {
                Some("'https' is the only allowed URL scheme")
            } else if rest.is_empty() || rest.starts_with('/') {
                Some("host must be specified")
            } else if rest.contains('#') {
                Some("fragments are not permitted in the URL")
            } else if rest
                .split('/')
                .next()
                .is_some_and(|host| host.contains('@'))
            {
                Some("user information is not permitted in the URL")
            } else {
                None
            };
            if let Some(problem) = problem {
                out.push(invalid(&format!("{field}.url"), &config["url"], problem));
            }
        }
        (None, true) => {
            let service = &config["service"];
            for key in ["name", "namespace"] {
                if service[key].as_str().is_none_or(str::is_empty) {
                    out.push(required(&format!("{field}.service.{key}")));
                }
            }
            if let Some(path) = service["path"].as_str()
                && !path.starts_with('/')
            {
                out.push(invalid(
                    &format!("{field}.service.path"),
                    &service["path"],
                    "must start with a '/'",
                ));
            }
            if let Some(port) = service["port"].as_i64()
                && !(1..=65535).contains(&port)
            {
                out.push(invalid(
                    &format!("{field}.service.port"),
                    &service["port"],
                    "port is not valid: must be between 1 and 65535, inclusive",
                ));
            }
        }
    }
}

const FAILURE_POLICIES: &[&str] = &["Fail", "Ignore"];
const VALIDATION_ACTIONS: &[&str] = &["Deny", "Warn", "Audit"];

/// The causes of a `ValidatingAdmissionPolicy`.
pub(super) fn validating_policy(obj: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    let spec = &obj["spec"];
    let validations = spec["validations"].as_array().filter(|v| !v.is_empty());
    let audits = spec["auditAnnotations"]
        .as_array()
        .filter(|v| !v.is_empty());
    if validations.is_none() && audits.is_none() {
        out.push(required("spec.validations"));
    }
    policy_spec(&mut out, spec, OPERATIONS);
    let parses = crate::cel::parses;
    expressions(&mut out, spec, "validations", "expression", true, parses);
    expressions(
        &mut out,
        spec,
        "validations",
        "messageExpression",
        false,
        parses,
    );
    out
}

/// What every admission policy's spec needs: a known failure policy,
/// resource rules with operations from `operations`, a whole `paramKind`,
/// and match conditions and variables that compile.
fn policy_spec(out: &mut Vec<Cause>, spec: &Value, operations: &[&str]) {
    let policy = &spec["failurePolicy"];
    if !policy.is_null()
        && !policy
            .as_str()
            .is_some_and(|p| FAILURE_POLICIES.contains(&p))
    {
        out.push(not_supported(
            "spec.failurePolicy",
            policy,
            FAILURE_POLICIES,
        ));
    }
    let rules = spec["matchConstraints"]["resourceRules"].as_array();
    if rules.is_none_or(|r| r.is_empty()) {
        out.push(required("spec.matchConstraints.resourceRules"));
    }
    for (i, rule) in rules.into_iter().flatten().enumerate() {
        rule_operations(
            out,
            &format!("spec.matchConstraints.resourceRules[{i}]"),
            rule,
            operations,
        );
    }
    let kind = &spec["paramKind"];
    if kind.is_object() {
        for key in ["apiVersion", "kind"] {
            if kind[key].as_str().is_none_or(str::is_empty) {
                out.push(required(&format!("spec.paramKind.{key}")));
            }
        }
    }
    let parses = crate::cel::parses;
    expressions(out, spec, "matchConditions", "expression", true, parses);
    expressions(out, spec, "variables", "expression", true, parses);
}

/// The operations of a rule must be ones the policy can act on.
fn rule_operations(out: &mut Vec<Cause>, at: &str, rule: &Value, operations: &[&str]) {
    for (j, operation) in rule["operations"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        if !operation.as_str().is_some_and(|o| operations.contains(&o)) {
            out.push(not_supported(
                &format!("{at}.operations[{j}]"),
                operation,
                operations,
            ));
        }
    }
}

/// Each `spec.<list>[i].<key>` compiles (and is there, if `needed`).
fn expressions(
    out: &mut Vec<Cause>,
    spec: &Value,
    list: &str,
    key: &str,
    needed: bool,
    compiles: impl Fn(&str) -> Result<(), String>,
) {
    for (i, entry) in spec[list].as_array().into_iter().flatten().enumerate() {
        let field = format!("spec.{list}[{i}].{key}");
        match entry[key].as_str() {
            None | Some("") if needed => out.push(required(&field)),
            None | Some("") => {}
            Some(expression) => {
                if let Err(message) = compiles(expression) {
                    out.push(invalid(&field, &entry[key], &message));
                }
            }
        }
    }
}

/// The operations a `MutatingAdmissionPolicy` can act on (a delete has no
/// object to mutate).
const MUTATING_OPERATIONS: &[&str] = &["*", "CREATE", "UPDATE", "CONNECT"];
const PATCH_TYPES: &[&str] = &["ApplyConfiguration", "JSONPatch"];
const REINVOCATION_POLICIES: &[&str] = &["Never", "IfNeeded"];

/// The causes of a `MutatingAdmissionPolicy`.
pub(super) fn mutating_policy(obj: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    let spec = &obj["spec"];
    policy_spec(&mut out, spec, MUTATING_OPERATIONS);
    let reinvocation = &spec["reinvocationPolicy"];
    match reinvocation.as_str() {
        None | Some("") => out.push(required("spec.reinvocationPolicy")),
        Some(p) if !REINVOCATION_POLICIES.contains(&p) => out.push(not_supported(
            "spec.reinvocationPolicy",
            reinvocation,
            REINVOCATION_POLICIES,
        )),
        Some(_) => {}
    }
    let mutations = spec["mutations"].as_array().filter(|m| !m.is_empty());
    if mutations.is_none() {
        let mut cause = required("spec.mutations");
        cause.message = "mutations must contain at least one item".into();
        out.push(cause);
    }
    for (i, mutation) in mutations.into_iter().flatten().enumerate() {
        let at = format!("spec.mutations[{i}]");
        let patch_type = &mutation["patchType"];
        let (wanted, other) = match patch_type.as_str() {
            None | Some("") => {
                out.push(required(&format!("{at}.patchType")));
                continue;
            }
            Some("ApplyConfiguration") => ("applyConfiguration", "jsonPatch"),
            Some("JSONPatch") => ("jsonPatch", "applyConfiguration"),
            Some(_) => {
                out.push(not_supported(
                    &format!("{at}.patchType"),
                    patch_type,
                    PATCH_TYPES,
                ));
                continue;
            }
        };
        let type_name = patch_type.as_str().unwrap_or_default();
        if !mutation[other].is_null() {
            out.push(invalid(
                &format!("{at}.{other}"),
                &Value::String(format!("{{{other}}}")),
                &format!("must not be specified when patchType is {type_name}"),
            ));
        }
        if !mutation[wanted].is_object() {
            let mut cause = required(&format!("{at}.{wanted}"));
            cause.message = format!("must be specified when patchType is {type_name}");
            out.push(cause);
            continue;
        }
        let field = format!("{at}.{wanted}.expression");
        match mutation[wanted]["expression"].as_str() {
            None | Some("") => out.push(required(&field)),
            Some(expression) => {
                if let Err(message) = crate::cel::check_mutation(expression, type_name) {
                    out.push(invalid(&field, &mutation[wanted]["expression"], &message));
                }
            }
        }
    }
    out
}

/// The causes of a `MutatingAdmissionPolicyBinding`.
pub(super) fn mutating_policy_binding(obj: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    let spec = &obj["spec"];
    policy_name(&mut out, spec);
    param_ref(&mut out, spec);
    for (i, rule) in spec["matchResources"]["resourceRules"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        rule_operations(
            &mut out,
            &format!("spec.matchResources.resourceRules[{i}]"),
            rule,
            MUTATING_OPERATIONS,
        );
    }
    out
}

/// A binding names its policy, as a DNS subdomain.
fn policy_name(out: &mut Vec<Cause>, spec: &Value) {
    match spec["policyName"].as_str() {
        None | Some("") => out.push(required("spec.policyName")),
        Some(name) => {
            for message in rk_core::labels::validation::validate_dns1123_subdomain(name) {
                out.push(invalid("spec.policyName", &spec["policyName"], &message));
            }
        }
    }
}

/// The causes of a `ValidatingAdmissionPolicyBinding`.
pub(super) fn validating_policy_binding(obj: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    let spec = &obj["spec"];
    policy_name(&mut out, spec);
    let actions = spec["validationActions"].as_array();
    match actions {
        None => out.push(required("spec.validationActions")),
        Some(list) if list.is_empty() => out.push(required("spec.validationActions")),
        Some(list) => {
            let mut seen = HashSet::new();
            for (i, action) in list.iter().enumerate() {
                let field = format!("spec.validationActions[{i}]");
                match action.as_str() {
                    Some(a) if VALIDATION_ACTIONS.contains(&a) => {
                        if !seen.insert(a) {
                            out.push(duplicate(&field, action));
                        }
                    }
                    _ => out.push(not_supported(&field, action, VALIDATION_ACTIONS)),
                }
            }
            if seen.contains("Deny") && seen.contains("Warn") {
                out.push(invalid(
                    "spec.validationActions",
                    &spec["validationActions"],
                    "must not contain both Deny and Warn (repeating the same validation failure information in the API response and headers serves no purpose)",
                ));
            }
        }
    }
    param_ref(&mut out, spec);
    out
}

/// A binding's `paramRef`: a name or a selector, and what to do when no
/// parameter is found.
fn param_ref(out: &mut Vec<Cause>, spec: &Value) {
    let reference = &spec["paramRef"];
    if reference.is_object() {
        let named = reference["name"].as_str().is_some_and(|n| !n.is_empty());
        if named == reference["selector"].is_object() {
            out.push(invalid(
                "spec.paramRef",
                reference,
                "one of name or selector must be specified",
            ));
        }
        let action = &reference["parameterNotFoundAction"];
        if !action
            .as_str()
            .is_some_and(|a| ["Allow", "Deny"].contains(&a))
        {
            out.push(not_supported(
                "spec.paramRef.parameterNotFoundAction",
                action,
                &["Allow", "Deny"],
            ));
        }
    }
}
