//! `MutatingAdmissionPolicy`: CEL mutations the API server applies itself,
//! as upstream's `MutatingAdmissionPolicy` plugin, after the built-in
//! defaulting and before the mutating webhooks, on creates and updates.
//!
//! A policy applies to a write through each `MutatingAdmissionPolicyBinding`
//! that names it, selected as a `ValidatingAdmissionPolicy` is (match
//! constraints, the binding's `matchResources`, `matchPolicy: Equivalent`,
//! `matchConditions`, parameters; see [`super::policies`]). Its `mutations`
//! run in order, once per parameter object, each on the result of the one
//! before, with the policy's `variables` evaluated afresh for each:
//!
//! - `ApplyConfiguration`: the expression builds an `Object{...}` (see
//!   [`crate::cel::MutationEnv`]) that is merged into the object as a
//!   server-side apply merges, without field ownership: maps and keyed lists
//!   merged, scalars replaced. It may not set an atomic list, map or struct.
//! - `JSONPatch`: the expression gives a list of `JSONPatch{op, path, value,
//!   from}`, applied in order; a failed `test` leaves the object as it was.
//!
//! A mutation that fails (its expression, or its patch) is an error of its
//! policy and the next mutation still runs. Under `failurePolicy: Fail`
//! (the default) the write is then refused, as upstream refuses it: 403
//! with the first error, `policy 'P' with binding 'B' denied request: ...`,
//! reason `Invalid` (`Forbidden` for a binding whose parameters are
//! missing). Under `Ignore` the error is logged.
//!
//! A binding of a policy with `reinvocationPolicy: IfNeeded` runs once more
//! when the object changed in the first pass of mutating admission (its own
//! policies' changes and the mutating webhooks'), as upstream reinvokes.
//!
//! The names of struct literals and a literal result's type are checked
//! as upstream checks them when the policy is written. Not done: the fields
//! of `Object` literals are not checked against the kind's schema.

use serde_json::{Map, Value};
use tracing::warn;

use super::policies::{self, Bound, Params};
use super::webhooks::{self, Attributes, Operation};
use crate::cel::{Activation, Conditions, MutationEnv, match_conditions};
use crate::error::{ApiError, StatusCause};
use crate::patch::{PatchSchema, merge_apply_configuration};
use crate::state::ApiState;

const GROUP: &str = "admissionregistration.k8s.io";

/// What a pass of the policies did.
#[derive(Debug, Default)]
pub struct Mutated {
    /// Whether the object changed.
    pub changed: bool,
    /// The bindings with `reinvocationPolicy: IfNeeded` that ran.
    reinvoke: Vec<String>,
}

/// Runs the policies bound to this write, changing `obj`.
pub async fn mutate(
    state: &ApiState,
    attrs: &Attributes<'_>,
    obj: &mut Value,
    old: Option<&Value>,
) -> Result<Mutated, ApiError> {
    run(state, attrs, obj, old, None).await
}

/// Runs again the `IfNeeded` bindings that [`mutate`] ran (`first`);
/// returns whether they changed `obj`.
pub async fn reinvoke(
    state: &ApiState,
    attrs: &Attributes<'_>,
    obj: &mut Value,
    old: Option<&Value>,
    first: &Mutated,
) -> Result<bool, ApiError> {
    if first.reinvoke.is_empty() {
        return Ok(false);
    }
    Ok(run(state, attrs, obj, old, Some(&first.reinvoke))
        .await?
        .changed)
}

/// One failed policy: its message and reason, and whether it refuses the
/// write (`failurePolicy: Fail`).
struct Failure {
    message: String,
    reason: &'static str,
    refuses: bool,
}

async fn run(
    state: &ApiState,
    attrs: &Attributes<'_>,
    obj: &mut Value,
    old: Option<&Value>,
    only: Option<&[String]>,
) -> Result<Mutated, ApiError> {
    let mut out = Mutated::default();
    // Policies never mutate the admission kinds, so a bad one can be fixed;
    // a delete has no object to mutate.
    if attrs.info.group == GROUP || matches!(attrs.operation, Operation::Delete) {
        return Ok(out);
    }
    let bindings = policies::stored(state, "mutatingadmissionpolicybindings").await?;
    if bindings.is_empty() {
        return Ok(out);
    }
    let stored = policies::stored(state, "mutatingadmissionpolicies").await?;
    let before = obj.clone();
    let mut failures = Vec::new();
    for bound in Bound::pairs(&bindings, &stored) {
        if only.is_some_and(|names| !names.iter().any(|n| n == bound.binding_name)) {
            continue;
        }
        if invoke(state, attrs, &bound, obj, old, &mut failures).await?
            && bound.policy["spec"]["reinvocationPolicy"].as_str() == Some("IfNeeded")
        {
            out.reinvoke.push(bound.binding_name.to_string());
        }
    }
    out.changed = *obj != before;
    let refusing: Vec<Failure> = failures.into_iter().filter(|f| f.refuses).collect();
    let Some(first) = refusing.first() else {
        return Ok(out);
    };
    let causes = refusing
        .iter()
        .map(|f| StatusCause {
            reason: String::new(),
            message: f.message.clone(),
            field: String::new(),
        })
        .collect();
    let mut error = ApiError::with_status(403, first.reason, first.message.clone()).with_details(
        &attrs.info.group,
        &attrs.info.plural,
        attrs.name,
    );
    error.causes = causes;
    Err(error)
}

/// Runs one binding of a policy; returns whether it applied (matched).
async fn invoke(
    state: &ApiState,
    attrs: &Attributes<'_>,
    bound: &Bound<'_>,
    obj: &mut Value,
    old: Option<&Value>,
    failures: &mut Vec<Failure>,
) -> Result<bool, ApiError> {
    let spec = &bound.policy["spec"];
    let fail = |failures: &mut Vec<Failure>, reason: &'static str, inner: String| {
        let message = format!(
            "policy '{}' with binding '{}' denied request: {inner}",
            bound.policy_name, bound.binding_name
        );
        if !bound.fails_closed() {
            warn!(policy = bound.policy_name, binding = bound.binding_name, %message,
                "ignoring a mutation that failed (failurePolicy: Ignore)");
        }
        failures.push(Failure {
            message,
            reason,
            refuses: bound.fails_closed(),
        });
    };
    let equivalent = if bound.selects(state, attrs, Some(obj), old).await? {
        None
    } else {
        match bound
            .equivalent_version(state, attrs, Some(obj), old)
            .await?
        {
            Some(info) => Some(info),
            None => return Ok(false),
        }
    };
    // Under `matchPolicy: Equivalent` the policy mutates the object at the
    // version its rules name; the result is converted back.
    let seen = match webhooks::seen_at(state, attrs, equivalent.as_deref(), Some(obj), old).await {
        Ok(seen) => seen,
        Err(e) => {
            fail(failures, "Invalid", e.message);
            return Ok(true);
        }
    };
    let mut current = seen.object.unwrap_or(Value::Null);
    let mut activation = Activation {
        object: current.clone(),
        old_object: seen.old_object.unwrap_or(Value::Null),
        request: seen.request,
        namespace_object: policies::namespace_object(state, attrs).await?,
        ..Activation::default()
    };
    match match_conditions(&spec["matchConditions"], &activation) {
        Conditions::Match => {}
        Conditions::NoMatch => return Ok(false),
        Conditions::Error(message) => {
            fail(failures, "Invalid", message);
            return Ok(true);
        }
    }
    let params = match bound.params(state, attrs).await? {
        Params::None => vec![Value::Null],
        Params::Found(found) => found,
        Params::Missing(message) => {
            let message = if message.starts_with("failed to configure") {
                message
            } else {
                format!("failed to configure binding: {message}")
            };
            fail(failures, "Forbidden", message);
            return Ok(true);
        }
        Params::Allowed => return Ok(false),
    };
    let info = equivalent.as_deref().unwrap_or(attrs.info);
    let schema = crate::registry::store::merge_schema(state, info);
    let mutations = spec["mutations"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let env = MutationEnv::for_expressions(mutations.iter().filter_map(expression_of));
    for param in params {
        activation.params = param;
        for mutation in mutations {
            activation.object = current.clone();
            activation.variables = variables(spec, &activation);
            match apply(&env, &activation, mutation, &current, &schema) {
                Ok(Some(patched)) => current = patched,
                Ok(None) => {}
                Err(inner) => fail(failures, "Invalid", inner),
            }
        }
    }
    if equivalent.is_some() {
        match crate::registry::conversion::one_to_version(state, attrs.info, current).await {
            Ok(back) => *obj = back,
            Err(e) => fail(failures, "Invalid", e.message),
        }
    } else {
        *obj = current;
    }
    Ok(true)
}

/// A mutation's expression, whichever its patch type.
fn expression_of(mutation: &Value) -> Option<&str> {
    mutation["applyConfiguration"]["expression"]
        .as_str()
        .or_else(|| mutation["jsonPatch"]["expression"].as_str())
}

/// The policy's variables, evaluated in order (a failed one is null).
fn variables(spec: &Value, activation: &Activation) -> Map<String, Value> {
    let mut scope = Activation {
        object: activation.object.clone(),
        old_object: activation.old_object.clone(),
        request: activation.request.clone(),
        params: activation.params.clone(),
        namespace_object: activation.namespace_object.clone(),
        variables: Map::new(),
    };
    for variable in spec["variables"].as_array().into_iter().flatten() {
        let name = variable["name"].as_str().unwrap_or_default();
        let value = scope
            .eval(variable["expression"].as_str().unwrap_or_default())
            .unwrap_or(Value::Null);
        scope.variables.insert(name.to_string(), value);
    }
    scope.variables
}

/// One mutation of `current`: the patched object, `None` when a JSON
/// patch's `test` failed (nothing applies), or what went wrong.
fn apply(
    env: &MutationEnv,
    activation: &Activation,
    mutation: &Value,
    current: &Value,
    schema: &PatchSchema,
) -> Result<Option<Value>, String> {
    let expression = expression_of(mutation).unwrap_or_default();
    let patch_type = mutation["patchType"].as_str().unwrap_or_default();
    crate::cel::check_mutation(expression, patch_type)
        .map_err(|e| format!("expression '{expression}' resulted in error: {e}"))?;
    let result = activation
        .eval_in(env.env(), expression)
        .map_err(|e| format!("expression '{expression}' resulted in error: {e}"))?;
    match mutation["patchType"].as_str() {
        Some("ApplyConfiguration") => {
            if !result.is_object() {
                return Err(format!(
                    "expression '{expression}' resulted in error: must evaluate to Object but got {}",
                    type_name(&result)
                ));
            }
            merge_apply_configuration(current, &result, schema)
                .map(Some)
                .map_err(|e| format!("error applying patch: {e}"))
        }
        Some("JSONPatch") => {
            if !result.is_array() {
                return Err(
                    "type mismatch: JSONPatchType.expression should evaluate to array".into(),
                );
            }
            let ops: json_patch::Patch = serde_json::from_value(result)
                .map_err(|e| format!("JSON Patch: invalid operation: {e}"))?;
            let mut patched = current.clone();
            match json_patch::patch(&mut patched, &ops) {
                Ok(()) => Ok(Some(patched)),
                Err(e) if matches!(e.kind, json_patch::PatchErrorKind::TestFailed) => Ok(None),
                Err(e) => Err(format!("JSON Patch: {e}")),
            }
        }
        other => Err(format!("unsupported patchType {other:?}")),
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null_type",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "double",
        Value::Number(_) => "int",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "map",
    }
}
