//! `ValidatingAdmissionPolicy`: CEL validations the API server runs itself,
//! as upstream's `ValidatingAdmissionPolicy` plugin, after the mutating
//! webhooks and before the validating ones.
//!
//! A policy applies to a write through each `ValidatingAdmissionPolicyBinding`
//! that names it (`spec.policyName`), when the write matches the policy's
//! `matchConstraints` (resource rules less `excludeResourceRules`,
//! `namespaceSelector`, `objectSelector`), the binding's `matchResources` if
//! it has them, and the policy's `matchConditions`. With a `paramKind`, the
//! binding's `paramRef` picks the parameter objects (by name, or by label
//! selector; in the request's namespace unless it names one), and the
//! validations run once per parameter object; none found denies the write
//! unless `parameterNotFoundAction` is `Allow`.
//!
//! A validation that evaluates to false is a violation, reported with its
//! `messageExpression`, else its `message`, else `failed expression: ...`,
//! and upstream's prefix `ValidatingAdmissionPolicy 'P' with binding 'B'
//! denied request: `. The binding's `validationActions` say what a violation
//! does: `Deny` refuses the write (422 Invalid unless the validation gives
//! another `reason`), `Warn` adds a `Warning` header, `Audit` only logs.
//! An expression that cannot be evaluated counts as a violation under
//! `failurePolicy: Fail` (the default) and is skipped under `Ignore`.
//!
//! Under `matchConstraints.matchPolicy: Equivalent` (the default) a write of
//! a custom resource at a version the rules do not name is judged when they
//! name another served version of it, on the objects converted to that
//! version (`request.requestKind` stays the written one).
//!
//! Not done: `auditAnnotations` are not recorded (rk keeps no audit log),
//! and expressions are not type-checked when the policy is written, only
//! when they run.

use std::sync::Arc;

use rk_core::catalogue::ResourceInfo;
use serde_json::{Map, Value, json};
use tracing::{info, warn};

use super::webhooks::{self, Attributes};
use crate::cel::{Activation, Conditions, match_conditions};
use crate::error::{ApiError, StatusCause};
use crate::registry::conversion;
use crate::state::ApiState;

const GROUP: &str = "admissionregistration.k8s.io";

/// Runs the policies bound to this write. Returns their warnings; the first
/// violation of a `Deny` binding is the error.
pub async fn validate(
    state: &ApiState,
    attrs: &Attributes<'_>,
    obj: Option<&Value>,
    old: Option<&Value>,
) -> Result<Vec<String>, ApiError> {
    // Policies never judge the admission kinds, so a bad one can be removed.
    if attrs.info.group == GROUP {
        return Ok(Vec::new());
    }
    let bindings = stored(state, "validatingadmissionpolicybindings").await?;
    if bindings.is_empty() {
        return Ok(Vec::new());
    }
    let policies = stored(state, "validatingadmissionpolicies").await?;
    let mut warnings = Vec::new();
    for bound in Bound::pairs(&bindings, &policies) {
        bound.run(state, attrs, obj, old, &mut warnings).await?;
    }
    Ok(warnings)
}

/// The stored objects of one admissionregistration resource, by name.
pub(super) async fn stored(state: &ApiState, plural: &str) -> Result<Vec<Arc<Value>>, ApiError> {
    super::parsed::all(state, GROUP, "v1", plural).await
}

/// A policy with one binding of it.
pub(super) struct Bound<'a> {
    pub(super) policy: &'a Value,
    pub(super) binding: &'a Value,
    pub(super) policy_name: &'a str,
    pub(super) binding_name: &'a str,
}

/// What one validation concluded.
struct Violation {
    message: String,
    reason: String,
}

impl<'a> Bound<'a> {
    /// Each binding with the policy it names (bindings of a policy that
    /// does not exist are skipped).
    pub(super) fn pairs(
        bindings: &'a [Arc<Value>],
        policies: &'a [Arc<Value>],
    ) -> impl Iterator<Item = Bound<'a>> {
        bindings.iter().filter_map(|binding| {
            let policy_name = binding["spec"]["policyName"].as_str().unwrap_or_default();
            let policy = policies
                .iter()
                .find(|p| p["metadata"]["name"].as_str() == Some(policy_name))?;
            Some(Bound {
                policy,
                binding,
                policy_name,
                binding_name: binding["metadata"]["name"].as_str().unwrap_or_default(),
            })
        })
    }

    async fn run(
        &self,
        state: &ApiState,
        attrs: &Attributes<'_>,
        obj: Option<&Value>,
        old: Option<&Value>,
        warnings: &mut Vec<String>,
    ) -> Result<(), ApiError> {
        let spec = &self.policy["spec"];
        let equivalent = if self.selects(state, attrs, obj, old).await? {
            None
        } else {
            match self.equivalent_version(state, attrs, obj, old).await? {
                Some(info) => Some(info),
                None => return Ok(()),
            }
        };
        // Under `matchPolicy: Equivalent` the expressions see the objects at
        // the version the policy's rules name; `requestKind` stays the
        // written one.
        let seen = match webhooks::seen_at(state, attrs, equivalent.as_deref(), obj, old).await {
            Ok(seen) => seen,
            Err(e) => {
                let violation = Violation {
                    message: e.message,
                    reason: "Invalid".into(),
                };
                return self.act(
                    Some(violation).filter(|_| self.fails_closed()),
                    warnings,
                    attrs,
                );
            }
        };
        let mut activation = Activation {
            object: seen.object.unwrap_or(Value::Null),
            old_object: seen.old_object.unwrap_or(Value::Null),
            request: seen.request,
            namespace_object: namespace_object(state, attrs).await?,
            ..Activation::default()
        };
        match match_conditions(&spec["matchConditions"], &activation) {
            Conditions::Match => {}
            Conditions::NoMatch => return Ok(()),
            Conditions::Error(message) => {
                return self.act(
                    Some(Violation {
                        message,
                        reason: "Invalid".into(),
                    })
                    .filter(|_| self.fails_closed()),
                    warnings,
                    attrs,
                );
            }
        }
        let params = match self.params(state, attrs).await? {
            Params::None => vec![Value::Null],
            Params::Found(found) => found,
            Params::Missing(message) => {
                return self.act(
                    Some(Violation {
                        message,
                        reason: "Invalid".into(),
                    }),
                    warnings,
                    attrs,
                );
            }
            Params::Allowed => return Ok(()),
        };
        for param in params {
            activation.params = param;
            activation.variables = Map::new();
            for variable in spec["variables"].as_array().into_iter().flatten() {
                let name = variable["name"].as_str().unwrap_or_default();
                let value = activation
                    .eval(variable["expression"].as_str().unwrap_or_default())
                    .unwrap_or(Value::Null);
                activation.variables.insert(name.to_string(), value);
            }
            for validation in spec["validations"].as_array().into_iter().flatten() {
                let violation = self.check(validation, &activation);
                self.act(violation, warnings, attrs)?;
            }
        }
        Ok(())
    }

    /// Whether the policy's `matchConstraints` and the binding's
    /// `matchResources` select the write as `attrs` describe it.
    pub(super) async fn selects(
        &self,
        state: &ApiState,
        attrs: &Attributes<'_>,
        obj: Option<&Value>,
        old: Option<&Value>,
    ) -> Result<bool, ApiError> {
        let constraints = &self.policy["spec"]["matchConstraints"];
        if !matches_resources(state, attrs, constraints, false, obj, old).await? {
            return Ok(false);
        }
        let narrowing = &self.binding["spec"]["matchResources"];
        Ok(!narrowing.is_object()
            || matches_resources(state, attrs, narrowing, true, obj, old).await?)
    }

    /// Under `matchPolicy: Equivalent` (the default), another served version
    /// of the written custom resource that the policy selects.
    pub(super) async fn equivalent_version(
        &self,
        state: &ApiState,
        attrs: &Attributes<'_>,
        obj: Option<&Value>,
        old: Option<&Value>,
    ) -> Result<Option<Arc<ResourceInfo>>, ApiError> {
        if self.policy["spec"]["matchConstraints"]["matchPolicy"].as_str() == Some("Exact") {
            return Ok(None);
        }
        for info in conversion::other_served_versions(state, attrs.info) {
            let at_version = Attributes {
                info: &info,
                ..*attrs
            };
            if self.selects(state, &at_version, obj, old).await? {
                return Ok(Some(info));
            }
        }
        Ok(None)
    }

    /// `failurePolicy: Fail` (the default).
    pub(super) fn fails_closed(&self) -> bool {
        self.policy["spec"]["failurePolicy"].as_str() != Some("Ignore")
    }

    /// One validation against the write: `None` when it holds (or failed
    /// to evaluate under `Ignore`).
    fn check(&self, validation: &Value, activation: &Activation) -> Option<Violation> {
        let expression = validation["expression"].as_str().unwrap_or_default();
        let reason = validation["reason"]
            .as_str()
            .unwrap_or("Invalid")
            .to_string();
        match activation.eval_bool(expression) {
            Ok(true) => None,
            Ok(false) => {
                let from_expression = validation["messageExpression"]
                    .as_str()
                    .and_then(|e| activation.eval_string(e).ok())
                    .filter(|m| !m.trim().is_empty() && !m.contains('\n'));
                let message = from_expression
                    .or_else(|| validation["message"].as_str().map(str::to_string))
                    .filter(|m| !m.is_empty())
                    .unwrap_or_else(|| format!("failed expression: {expression}"));
                Some(Violation { message, reason })
            }
            Err(error) if self.fails_closed() => Some(Violation {
                message: format!("expression '{expression}' resulted in error: {error}"),
                reason: "Invalid".into(),
            }),
            Err(error) => {
                warn!(policy = self.policy_name, %expression, %error,
                    "ignoring a validation that failed to evaluate (failurePolicy: Ignore)");
                None
            }
        }
    }

    /// Does what the binding's `validationActions` say with a violation.
    fn act(
        &self,
        violation: Option<Violation>,
        warnings: &mut Vec<String>,
        attrs: &Attributes<'_>,
    ) -> Result<(), ApiError> {
        let Some(violation) = violation else {
            return Ok(());
        };
        let actions: Vec<&str> = self.binding["spec"]["validationActions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if actions.contains(&"Warn") {
            warnings.push(format!(
                "Validation failed for ValidatingAdmissionPolicy '{}' with binding '{}': {}",
                self.policy_name, self.binding_name, violation.message
            ));
        }
        if actions.contains(&"Audit") {
            info!(policy = self.policy_name, binding = self.binding_name,
                message = %violation.message, "validation failed (Audit)");
        }
        if !actions.contains(&"Deny") {
            return Ok(());
        }
        let message = format!(
            "ValidatingAdmissionPolicy '{}' with binding '{}' denied request: {}",
            self.policy_name, self.binding_name, violation.message
        );
        Err(denial(attrs, &violation.reason, message))
    }

    /// The parameter objects of the binding, when the policy has a `paramKind`.
    pub(super) async fn params(
        &self,
        state: &ApiState,
        attrs: &Attributes<'_>,
    ) -> Result<Params, ApiError> {
        let kind = &self.policy["spec"]["paramKind"];
        if !kind.is_object() {
            return Ok(Params::None);
        }
        let reference = &self.binding["spec"]["paramRef"];
        let not_found = |what: String| {
            if reference["parameterNotFoundAction"].as_str() == Some("Allow") {
                Params::Allowed
            } else {
                Params::Missing(what)
            }
        };
        let api_version = kind["apiVersion"].as_str().unwrap_or_default();
        let kind_name = kind["kind"].as_str().unwrap_or_default();
        let Some(info) = state
            .catalogue()
            .by_api_version_kind(api_version, kind_name)
        else {
            return Ok(Params::Missing(format!(
                "failed to configure binding: paramKind {api_version}, Kind={kind_name} is not served"
            )));
        };
        if !reference.is_object() {
            return Ok(Params::Missing(
                "failed to configure binding: no paramRef is set for a policy with a paramKind"
                    .into(),
            ));
        }
        let namespace = if info.scope.is_namespaced() {
            reference["namespace"]
                .as_str()
                .filter(|n| !n.is_empty())
                .or(attrs.namespace)
        } else {
            None
        };
        if info.scope.is_namespaced() && namespace.is_none() {
            return Ok(not_found(
                "no params found for policy binding with `Deny` parameterNotFoundAction".into(),
            ));
        }
        let prefix = match namespace {
            Some(ns) => format!("{}{ns}/", info.storage_prefix()),
            None => info.storage_prefix(),
        };
        let snapshot = state.cache(&info).await?.snapshot(&prefix);
        let objects = snapshot
            .objects
            .iter()
            .filter_map(|cached| serde_json::from_slice::<Value>(&cached.bytes).ok());
        let found: Vec<Value> = match reference["name"].as_str().filter(|n| !n.is_empty()) {
            Some(name) => objects
                .filter(|o| o["metadata"]["name"].as_str() == Some(name))
                .collect(),
            None => {
                let selector = &reference["selector"];
                objects
                    .filter(|o| webhooks::selects_labels(selector, &o["metadata"]["labels"]))
                    .collect()
            }
        };
        if found.is_empty() {
            return Ok(not_found(
                "no params found for policy binding with `Deny` parameterNotFoundAction".into(),
            ));
        }
        Ok(Params::Found(found))
    }
}

/// The parameter objects a binding resolved to.
pub(super) enum Params {
    /// The policy takes no parameters: validate once with `params` null.
    None,
    /// Validate once per object.
    Found(Vec<Value>),
    /// None found (or the reference is broken): a violation.
    Missing(String),
    /// None found and `parameterNotFoundAction: Allow`: nothing to check.
    Allowed,
}

/// Whether the write is one `constraints` (a `MatchResources`) selects.
async fn matches_resources(
    state: &ApiState,
    attrs: &Attributes<'_>,
    constraints: &Value,
    narrowing: bool,
    obj: Option<&Value>,
    old: Option<&Value>,
) -> Result<bool, ApiError> {
    let excluded = constraints["excludeResourceRules"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|rule| webhooks::rule_matches(rule, attrs));
    if excluded {
        return Ok(false);
    }
    // A binding's `matchResources` without resource rules narrows by its
    // selectors only; a policy without them matches nothing.
    let rules = match constraints["resourceRules"].as_array() {
        Some(rules) if !rules.is_empty() => Value::Array(rules.clone()),
        _ if narrowing => json!([{"apiGroups": ["*"], "apiVersions": ["*"],
            "operations": ["*"], "resources": ["*", "*/*"]}]),
        _ => return Ok(false),
    };
    let as_webhook = json!({
        "rules": rules,
        "namespaceSelector": constraints["namespaceSelector"],
        "objectSelector": constraints["objectSelector"],
    });
    webhooks::matches(state, attrs, &as_webhook, obj, old).await
}

/// `namespaceObject`: the namespace of a namespaced write, from the cache.
pub(super) async fn namespace_object(
    state: &ApiState,
    attrs: &Attributes<'_>,
) -> Result<Value, ApiError> {
    let Some(ns) = attrs.namespace.filter(|_| attrs.info.scope.is_namespaced()) else {
        return Ok(Value::Null);
    };
    let Some(namespaces) = state.builtin.get("", "v1", "namespaces") else {
        return Ok(Value::Null);
    };
    let key = namespaces.info.storage_key(None, ns);
    Ok(namespaces
        .cache(&state.caches)
        .await?
        .get(&key)
        .and_then(|cached| serde_json::from_slice(&cached.bytes).ok())
        .unwrap_or(Value::Null))
}

/// A `Deny` violation as upstream answers it: 422 Invalid on the object,
/// or the status of the validation's `reason`.
fn denial(attrs: &Attributes<'_>, reason: &str, message: String) -> ApiError {
    let info: &ResourceInfo = attrs.info;
    match reason {
        "Unauthorized" => ApiError::with_status(401, "Unauthorized", message),
        "Forbidden" => ApiError::with_status(403, "Forbidden", message),
        "RequestEntityTooLarge" => ApiError::with_status(413, "RequestEntityTooLarge", message),
        _ => ApiError::invalid(
            &info.plural,
            &info.group,
            attrs.name,
            vec![StatusCause {
                reason: "FieldValueInvalid".into(),
                message,
                field: String::new(),
            }],
        ),
    }
}
