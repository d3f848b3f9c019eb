//! CEL expressions, evaluated with the `cel` crate (the standard library
//! and its strings, lists and math extensions, and Kubernetes' list
//! regex, quantity, IP, CIDR, URL, semver and authz libraries: `isSorted()`, `sum()`, `min()`, `max()`,
//! `indexOf()`, `lastIndexOf()`, `find()`, `findAll()`, `quantity()`,
//! `isQuantity()`, `ip()`, `isIP()`, `cidr()`, `isCIDR()`, `url()`,
//! `isURL()`, `semver()`, `isSemver()` and their methods):
//!
//! - admission: `matchConditions` of webhooks and policies, and the
//!   `validations` and `variables` of a `ValidatingAdmissionPolicy`
//!   ([`Activation`]), with upstream's variables `object`, `oldObject` (null
//!   when absent), `request` (the `AdmissionRequest` a webhook would get),
//!   `params`, `namespaceObject`, `variables` (the policy's variables
//!   evaluated so far, by name) and `authorizer` (every check allowed: rk
//!   authorizes every request);
//! - CRD validation rules (`x-kubernetes-validations`, [`eval_rule`]), with
//!   `self` the value the rule is written on.
//!
//! ```
//! use rk_apiserver::cel::{Activation, eval_rule};
//! use serde_json::json;
//!
//! let a = Activation { object: json!({"spec": {"replicas": 3}}), ..Activation::default() };
//! assert_eq!(a.eval_bool("object.spec.replicas <= 5"), Ok(true));
//! assert_eq!(eval_rule("self.min <= self.max", &json!({"min": 1, "max": 2}), None), Ok(json!(true)));
//! ```

use std::sync::{Arc, LazyLock};

mod k8s_authz;
mod k8s_lists;
mod k8s_net;
mod k8s_quantity;
mod k8s_regex;
mod k8s_semver;
mod k8s_url;
mod library;
mod mutation;

pub use mutation::{MutationEnv, check_mutation};

use serde_json::{Map, Value};

/// The environment every expression is compiled and run in.
static ENV: LazyLock<Arc<cel::Env>> = LazyLock::new(|| Arc::new(base_env()));

/// The standard library, its extensions and Kubernetes' libraries.
fn base_env() -> cel::Env {
    let mut env = cel::Env::stdlib();
    for extension in [
        cel::extensions::strings,
        cel::extensions::lists,
        cel::extensions::math,
        k8s_lists::extension,
        k8s_authz::extension,
        k8s_regex::extension,
        k8s_quantity::extension,
        k8s_net::extension,
        k8s_url::extension,
        k8s_semver::extension,
    ] {
        if let Err(error) = env.add_extension(extension) {
            tracing::warn!(%error, "a CEL extension could not be added");
        }
    }
    env
}

/// What an expression can see.
#[derive(Debug, Default)]
pub struct Activation {
    /// `object`: the new object (null for a delete).
    pub object: Value,
    /// `oldObject`: the current object (null for a create).
    pub old_object: Value,
    /// `request`: the admission request.
    pub request: Value,
    /// `params`: the parameter object of a policy binding, or null.
    pub params: Value,
    /// `namespaceObject`: the object's namespace, or null.
    pub namespace_object: Value,
    /// `variables`: the policy's variables evaluated so far.
    pub variables: Map<String, Value>,
}

impl Activation {
    /// Evaluates `expression` to a JSON value, or says why it could not.
    pub fn eval(&self, expression: &str) -> Result<Value, String> {
        self.eval_in(&ENV, expression)
    }

    /// Evaluates `expression` in `env` (a [`MutationEnv`]'s, say) to a
    /// JSON value, or says why it could not.
    pub fn eval_in(&self, env: &Arc<cel::Env>, expression: &str) -> Result<Value, String> {
        let program = env
            .compile(expression)
            .map_err(|e| format!("compilation failed: {e}"))?;
        let mut context = cel::Context::with_env(env.clone());
        let bind = |context: &mut cel::Context, name: &str, value: &Value| {
            context
                .add_variable(name, value)
                .map_err(|e| format!("variable {name} could not be bound: {e}"))
        };
        bind(&mut context, "object", &self.object)?;
        bind(&mut context, "oldObject", &self.old_object)?;
        bind(&mut context, "request", &self.request)?;
        bind(&mut context, "params", &self.params)?;
        bind(&mut context, "namespaceObject", &self.namespace_object)?;
        context
            .add_variable("variables", &self.variables)
            .map_err(|e| format!("variables could not be bound: {e}"))?;
        context.add_variable_as_val("authorizer", Box::new(k8s_authz::Authorizer::for_request()));
        context.add_variable_as_val(
            "authorizer.requestResource",
            Box::new(k8s_authz::ResourceCheck::for_request(&self.request)),
        );
        let result = program.execute(&context).map_err(|e| e.to_string())?;
        result
            .json()
            .map_err(|e| format!("the result cannot be used: {e}"))
    }

    /// Evaluates an expression that must give a boolean.
    pub fn eval_bool(&self, expression: &str) -> Result<bool, String> {
        match self.eval(expression)? {
            Value::Bool(b) => Ok(b),
            other => Err(format!(
                "expression must evaluate to bool, got {}",
                type_name(&other)
            )),
        }
    }

    /// Evaluates an expression that must give a string.
    pub fn eval_string(&self, expression: &str) -> Result<String, String> {
        match self.eval(expression)? {
            Value::String(s) => Ok(s),
            other => Err(format!(
                "expression must evaluate to string, got {}",
                type_name(&other)
            )),
        }
    }
}

/// Evaluates a CRD validation rule with `self` bound to `this` and, for a
/// transition rule, `oldSelf` to `old`.
pub fn eval_rule(rule: &str, this: &Value, old: Option<&Value>) -> Result<Value, String> {
    let program = ENV
        .compile(rule)
        .map_err(|e| format!("compilation failed: {e}"))?;
    let mut context = cel::Context::with_env(ENV.clone());
    context
        .add_variable("self", this)
        .map_err(|e| format!("self could not be bound: {e}"))?;
    if let Some(old) = old {
        context
            .add_variable("oldSelf", old)
            .map_err(|e| format!("oldSelf could not be bound: {e}"))?;
    }
    let result = program.execute(&context).map_err(|e| e.to_string())?;
    result
        .json()
        .map_err(|e| format!("the result cannot be used: {e}"))
}

/// Whether `expression` parses as CEL; the parser's complaint if not.
pub fn parses(expression: &str) -> Result<(), String> {
    ENV.compile(expression)
        .map(|_| ())
        .map_err(|e| format!("compilation failed: {e}"))
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "map",
    }
}

/// How `matchConditions` decided: every condition true (`Match`), one
/// false (`NoMatch`), or none false and one failed (`Error`, with its
/// message), as upstream's matcher.
#[derive(Debug, PartialEq, Eq)]
pub enum Conditions {
    /// Call the webhook / apply the policy.
    Match,
    /// Skip it.
    NoMatch,
    /// A condition could not be evaluated; the failure policy decides.
    Error(String),
}

/// Evaluates `matchConditions` (a list of `{name, expression}`).
pub fn match_conditions(conditions: &Value, activation: &Activation) -> Conditions {
    let mut error = None;
    for condition in conditions.as_array().into_iter().flatten() {
        let name = condition["name"].as_str().unwrap_or_default();
        let expression = condition["expression"].as_str().unwrap_or_default();
        match activation.eval_bool(expression) {
            Ok(true) => {}
            Ok(false) => return Conditions::NoMatch,
            Err(message) => {
                error.get_or_insert_with(|| {
                    format!("failed to evaluate match condition {name:?}: {message}")
                });
            }
        }
    }
    match error {
        Some(message) => Conditions::Error(message),
        None => Conditions::Match,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn with_object(object: Value) -> Activation {
        Activation {
            object,
            request: json!({"operation": "CREATE", "userInfo": {"username": "alice"}}),
            ..Activation::default()
        }
    }

    #[test]
    fn expressions_see_the_object_the_request_and_variables() {
        let mut a = with_object(json!({"spec": {"replicas": 3, "name": "Web"}}));
        assert_eq!(a.eval_bool("object.spec.replicas <= 5"), Ok(true));
        assert_eq!(a.eval_bool("has(object.spec.paused)"), Ok(false));
        assert_eq!(a.eval_bool("oldObject == null"), Ok(true));
        assert_eq!(a.eval_bool("request.operation == 'CREATE'"), Ok(true));
        assert_eq!(
            a.eval_string("'replicas: ' + string(object.spec.replicas)"),
            Ok("replicas: 3".to_string())
        );
        assert_eq!(
            a.eval_string("object.spec.name.lowerAscii()"),
            Ok("web".to_string())
        );
        a.variables.insert("max".into(), json!(2));
        assert_eq!(
            a.eval_bool("object.spec.replicas <= variables.max"),
            Ok(false)
        );
    }

    #[test]
    fn kubernetes_libraries() {
        let a = with_object(
            json!({"spec": {"ports": [80, 443, 8080], "names": ["b", "a", "b"], "none": [], "ratios": [0.5, 1.5]}}),
        );
        let yes = |e: &str| assert_eq!(a.eval_bool(e), Ok(true), "{e}");
        yes("object.spec.ports.isSorted()");
        yes("!object.spec.names.isSorted()");
        yes("object.spec.none.isSorted()");
        yes("object.spec.ports.sum() == 8603");
        yes("object.spec.ratios.sum() == 2.0");
        yes("object.spec.none.sum() == 0");
        yes("object.spec.ports.min() == 80 && object.spec.ports.max() == 8080");
        yes("object.spec.names.min() == 'a' && object.spec.names.max() == 'b'");
        yes("object.spec.names.indexOf('b') == 0 && object.spec.names.lastIndexOf('b') == 2");
        yes("object.spec.names.indexOf('z') == -1");
        // Strings keep their own indexOf.
        yes("'hello'.indexOf('l') == 2");
        yes("'abc 123 def 456'.find('[0-9]+') == '123'");
        yes("'abc'.find('[0-9]+') == ''");
        yes("'abc 123 def 456'.findAll('[0-9]+') == ['123', '456']");
        yes("'1 2 3'.findAll('[0-9]', 2) == ['1', '2']");
        yes("'1 2 3'.findAll('[0-9]', 0) == []");
        assert!(a.eval("'x'.find('(')").is_err());
        yes("quantity('1') == quantity('1000m')");
        yes("quantity('2Gi').compareTo(quantity('1Gi')) == 1");
        yes("quantity('500m').isLessThan(quantity('1'))");
        yes("quantity('1Ki').isGreaterThan(quantity('1k'))");
        yes("quantity('1.5').add(quantity('500m')).asInteger() == 2");
        yes("quantity('3').sub(1).isInteger() && quantity('3').sub(1).sign() == 1");
        yes("!quantity('1500m').isInteger()");
        yes("quantity('250m').asApproximateFloat() == 0.25");
        yes("isQuantity('10Mi') && !isQuantity('ten')");
        assert!(a.eval("quantity('ten')").is_err());
        yes(
            "isIP('10.0.0.1') && isIP('fd00::1') && !isIP('10.0.0.256') && !isIP('::ffff:1.2.3.4')",
        );
        yes("ip('10.0.0.1').family() == 4 && ip('::1').family() == 6 && ip('::1').isLoopback()");
        yes("ip('10.0.0.1') == ip('10.0.0.1') && ip('10.0.0.1') != ip('10.0.0.2')");
        yes("ip('169.254.1.1').isLinkLocalUnicast() && ip('8.8.8.8').isGlobalUnicast()");
        yes("!ip('127.0.0.1').isGlobalUnicast() && ip('0.0.0.0').isUnspecified()");
        yes(
            "cidr('10.0.0.0/8').containsIP(ip('10.1.2.3')) && !cidr('10.0.0.0/8').containsIP('11.0.0.1')",
        );
        yes(
            "cidr('10.0.0.0/8').containsCIDR('10.1.0.0/16') && !cidr('10.1.0.0/16').containsCIDR('10.0.0.0/8')",
        );
        yes(
            "cidr('10.1.2.3/16').masked() == cidr('10.1.0.0/16') && cidr('10.1.2.3/16').ip() == ip('10.1.2.3')",
        );
        yes(
            "cidr('fd00::/64').prefixLength() == 64 && isCIDR('fd00::/64') && !isCIDR('10.0.0.0/33')",
        );
        assert!(a.eval("ip('nope')").is_err());
        yes(
            "isURL('https://example.com:8443/a%20b?x=1') && isURL('/just/a/path') && !isURL('example.com') && !isURL('https://a b')",
        );
        yes(
            "url('https://example.com:8443/p').getScheme() == 'https' && url('https://example.com:8443/p').getHost() == 'example.com:8443'",
        );
        yes(
            "url('https://example.com:8443/p').getHostname() == 'example.com' && url('https://example.com:8443/p').getPort() == '8443'",
        );
        yes(
            "url('https://[::1]:80/').getHostname() == '::1' && url('https://[::1]/').getPort() == ''",
        );
        yes("url('https://example.com/a%20b').getEscapedPath() == '/a%20b'");
        yes("url('https://example.com/?k=a&k=b&x=1').getQuery()['k'] == ['a', 'b']");
        assert!(a.eval("url('nope')").is_err());
        yes("isSemver('1.2.3-rc.1+b') && !isSemver('v1.2') && isSemver('v1.2', true)");
        yes(
            "semver('1.2.3').major() == 1 && semver('1.2.3').minor() == 2 && semver('1.2.3').patch() == 3",
        );
        yes(
            "semver('1.10.0').isGreaterThan(semver('1.9.9')) && semver('1.0.0-rc.1').isLessThan(semver('1.0.0'))",
        );
        yes(
            "semver('1.0.0+a') == semver('1.0.0+b') && semver('v01.2', true).compareTo(semver('1.2.0')) == 0",
        );
        assert!(a.eval("semver('one')").is_err());
        assert!(a.eval("quantity('1500m').asInteger()").is_err());
        assert!(a.eval("object.spec.none.max()").is_err());
        assert!(a.eval("[1, 'a'].isSorted()").is_err());
        assert_eq!(
            eval_rule(
                "self.all(p, p > 0) && self.isSorted()",
                &json!([1, 2, 3]),
                None
            ),
            Ok(json!(true))
        );
    }

    #[test]
    fn the_authorizer_allows_every_check() {
        let a = Activation {
            request: json!({"resource": {"group": "apps", "version": "v1", "resource": "deployments"},
                "namespace": "default", "name": "web"}),
            ..Activation::default()
        };
        let yes = |e: &str| assert_eq!(a.eval_bool(e), Ok(true), "{e}");
        yes("authorizer.requestResource.check('update').allowed()");
        yes(
            "authorizer.group('apps').resource('deployments').namespace('default').name('web').check('delete').allowed()",
        );
        yes("authorizer.group('').resource('pods').subresource('log').check('get').allowed()");
        yes("authorizer.path('/healthz').check('get').allowed()");
        yes(
            "authorizer.serviceAccount('default', 'builder').group('').resource('secrets').check('list').allowed()",
        );
        yes("authorizer.requestResource.check('create').reason() == ''");
        yes("!authorizer.path('/metrics').check('get').errored()");
        assert!(a.eval("authorizer.path('/x').check('')").is_err());
    }

    #[test]
    fn errors_are_messages_not_panics() {
        let a = with_object(json!({"spec": {}}));
        assert!(a.eval_bool("object.spec.replicas > 1").is_err());
        assert!(a.eval_bool("object.spec.(").is_err());
        assert!(a.eval_bool("'text'").is_err());
        assert!(a.eval_string("1 + 1").is_err());
    }

    #[test]
    fn match_conditions_need_all_true_and_a_false_beats_an_error() {
        let a = with_object(json!({"metadata": {"name": "x"}}));
        let both = json!([
            {"name": "named-x", "expression": "object.metadata.name == 'x'"},
            {"name": "creating", "expression": "request.operation == 'CREATE'"}
        ]);
        assert_eq!(match_conditions(&both, &a), Conditions::Match);
        let one_false = json!([
            {"name": "broken", "expression": "object.nope.deeper == 1"},
            {"name": "named-y", "expression": "object.metadata.name == 'y'"}
        ]);
        assert_eq!(match_conditions(&one_false, &a), Conditions::NoMatch);
        let broken = json!([{"name": "broken", "expression": "object.nope.deeper == 1"}]);
        assert!(
            matches!(match_conditions(&broken, &a), Conditions::Error(m) if m.contains("broken"))
        );
        assert_eq!(match_conditions(&Value::Null, &a), Conditions::Match);
    }
}
