//! Kubernetes' CEL authz library (upstream `k8s.io/apiserver/pkg/cel/library`,
//! `authz.go`), for the `authorizer` variable of admission expressions:
//!
//! - `authorizer.group(g).resource(r)`, then optionally `.subresource(s)`,
//!   `.namespace(ns)`, `.name(n)`, and `.check(verb)`;
//! - `authorizer.path(p).check(verb)` for a non-resource URL;
//! - `authorizer.serviceAccount(ns, name)`: the same checks for a service
//!   account;
//! - `authorizer.requestResource`: the resource of the request being
//!   admitted, ready for `.check(verb)`;
//! - a decision's `allowed()`, `reason()`, `errored()` and `error()`.
//!
//! rk authorizes every request (it has no RBAC enforcement yet), so every
//! check is allowed, with an empty reason, as `kubectl auth can-i` answers.

use cel::common::types::{CelBool, CelString, STRING_TYPE, Type};
use cel::common::value::CowVal;
use cel::{DeclarationError, Env, ExecutionError};

use super::library::{boolean, error, string_arg};

static AUTHORIZER_TYPE: Type = Type::new_unspecified_type("kubernetes.authorization.Authorizer");
static GROUP_CHECK_TYPE: Type = Type::new_unspecified_type("kubernetes.authorization.GroupCheck");
static RESOURCE_CHECK_TYPE: Type =
    Type::new_unspecified_type("kubernetes.authorization.ResourceCheck");
static PATH_CHECK_TYPE: Type = Type::new_unspecified_type("kubernetes.authorization.PathCheck");
static DECISION_TYPE: Type = Type::new_unspecified_type("kubernetes.authorization.Decision");

/// Who is asking: the request's user, or a service account.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Authorizer {
    service_account: Option<(String, String)>,
}

/// A resource check being built.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct ResourceCheck {
    group: String,
    resource: String,
    subresource: String,
    namespace: String,
    name: String,
}

#[derive(Clone, Debug, PartialEq)]
struct GroupCheck {
    group: String,
}

#[derive(Clone, Debug, PartialEq)]
struct PathCheck {
    path: String,
}

/// What a check decided.
#[derive(Clone, Debug, PartialEq)]
struct Decision {
    allowed: bool,
    reason: String,
}

super::library::opaque_val!(Authorizer, AUTHORIZER_TYPE);
super::library::opaque_val!(GroupCheck, GROUP_CHECK_TYPE);
super::library::opaque_val!(ResourceCheck, RESOURCE_CHECK_TYPE);
super::library::opaque_val!(PathCheck, PATH_CHECK_TYPE);
super::library::opaque_val!(Decision, DECISION_TYPE);

impl Authorizer {
    /// The authorizer of the request's user.
    pub(super) fn for_request() -> Self {
        Self {
            service_account: None,
        }
    }
}

impl ResourceCheck {
    /// The check of the resource a request (an `AdmissionRequest`) writes.
    pub(super) fn for_request(request: &serde_json::Value) -> Self {
        let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
        Self {
            group: text(&request["resource"]["group"]),
            resource: text(&request["resource"]["resource"]),
            subresource: text(&request["subResource"]),
            namespace: text(&request["namespace"]),
            name: text(&request["name"]),
        }
    }
}

/// Registers the library's types and methods on `env`.
pub fn extension(env: &mut Env) -> Result<(), DeclarationError> {
    for t in [
        &AUTHORIZER_TYPE,
        &GROUP_CHECK_TYPE,
        &RESOURCE_CHECK_TYPE,
        &PATH_CHECK_TYPE,
        &DECISION_TYPE,
    ] {
        env.add_type(t.to_owned())?;
    }
    let s = || STRING_TYPE.to_owned();
    let a = || AUTHORIZER_TYPE.to_owned();
    let r = || RESOURCE_CHECK_TYPE.to_owned();
    let d = || DECISION_TYPE.to_owned();
    env.add_member_overload("group", "authorizer_group", a(), vec![s()], group)?;
    env.add_member_overload("path", "authorizer_path", a(), vec![s()], path)?;
    env.add_member_overload(
        "serviceAccount",
        "authorizer_serviceaccount",
        a(),
        vec![s(), s()],
        service_account,
    )?;
    env.add_member_overload(
        "resource",
        "groupcheck_resource",
        GROUP_CHECK_TYPE.to_owned(),
        vec![s()],
        resource,
    )?;
    env.add_member_overload(
        "subresource",
        "resourcecheck_subresource",
        r(),
        vec![s()],
        subresource,
    )?;
    env.add_member_overload(
        "namespace",
        "resourcecheck_namespace",
        r(),
        vec![s()],
        namespace,
    )?;
    env.add_member_overload("name", "resourcecheck_name", r(), vec![s()], name)?;
    env.add_member_overload("check", "resourcecheck_check", r(), vec![s()], check)?;
    env.add_member_overload(
        "check",
        "pathcheck_check",
        PATH_CHECK_TYPE.to_owned(),
        vec![s()],
        check,
    )?;
    env.add_member_overload("allowed", "decision_allowed", d(), vec![], allowed)?;
    env.add_member_overload("reason", "decision_reason", d(), vec![], reason)?;
    env.add_member_overload("errored", "decision_errored", d(), vec![], errored)?;
    env.add_member_overload("error", "decision_error", d(), vec![], error_text)?;
    Ok(())
}

fn group<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let group = string_arg("group", &args, 1)?.to_string();
    Ok(CowVal::owned(GroupCheck { group }))
}

fn path<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let path = string_arg("path", &args, 1)?.to_string();
    Ok(CowVal::owned(PathCheck { path }))
}

fn service_account<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let namespace = string_arg("serviceAccount", &args, 1)?.to_string();
    let name = string_arg("serviceAccount", &args, 2)?.to_string();
    Ok(CowVal::owned(Authorizer {
        service_account: Some((namespace, name)),
    }))
}

fn resource<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let group = args
        .first()
        .and_then(|v| v.downcast_ref::<GroupCheck>())
        .ok_or_else(|| error("resource", "expected a group check"))?
        .group
        .clone();
    let resource = string_arg("resource", &args, 1)?.to_string();
    Ok(CowVal::owned(ResourceCheck {
        group,
        resource,
        subresource: String::new(),
        namespace: String::new(),
        name: String::new(),
    }))
}

/// Which part of a resource check a method narrows.
enum Part {
    Subresource,
    Namespace,
    Name,
}

/// `subresource()`, `namespace()` or `name()`.
fn narrow<'b, 'v>(
    part: Part,
    method: &str,
    args: Vec<CowVal<'b, 'v>>,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let mut check = args
        .first()
        .and_then(|v| v.downcast_ref::<ResourceCheck>())
        .ok_or_else(|| error(method, "expected a resource check"))?
        .clone();
    let value = string_arg(method, &args, 1)?.to_string();
    match part {
        Part::Subresource => check.subresource = value,
        Part::Namespace => check.namespace = value,
        Part::Name => check.name = value,
    }
    Ok(CowVal::owned(check))
}

fn subresource<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    narrow(Part::Subresource, "subresource", args)
}

fn namespace<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    narrow(Part::Namespace, "namespace", args)
}

fn name<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    narrow(Part::Name, "name", args)
}

fn check<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let verb = string_arg("check", &args, 1)?;
    if verb.is_empty() {
        return Err(error("check", "verb must not be empty"));
    }
    Ok(CowVal::owned(Decision {
        allowed: true,
        reason: String::new(),
    }))
}

fn decision<'a>(name: &str, args: &'a [CowVal<'_, '_>]) -> Result<&'a Decision, ExecutionError> {
    args.first()
        .and_then(|v| v.downcast_ref::<Decision>())
        .ok_or_else(|| error(name, "expected a decision"))
}

fn allowed<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    boolean(decision("allowed", &args)?.allowed)
}

fn reason<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let reason = decision("reason", &args)?.reason.clone();
    Ok(CowVal::owned(CelString::from(reason)))
}

fn errored<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    decision("errored", &args)?;
    Ok(CowVal::owned(CelBool::from(false)))
}

fn error_text<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    decision("error", &args)?;
    Ok(CowVal::owned(CelString::from(String::new())))
}
