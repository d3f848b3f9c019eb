//! The CEL environment of `MutatingAdmissionPolicy` mutations (upstream
//! `k8s.io/apiserver/pkg/cel/mutation`): everything admission expressions
//! have, plus
//!
//! - apply configurations built with struct literals: `Object{...}` for the
//!   object, and `Object.<field path>{...}` for a value inside it
//!   (`Object.spec{...}`, `Object.spec.containers{...}` for an element of a
//!   list, the list's path without an index);
//! - `JSONPatch{op, path, from, value}`, the operations of a JSON patch;
//! - `jsonpatch.escapeKey(s)`, a map key escaped for a JSON pointer (`~` as
//!   `~0`, `/` as `~1`).
//!
//! A struct literal gives a map of the fields it sets, which is what the
//! mutation then applies. Unlike upstream, the fields of `Object` types are
//! not checked against the kind's schema when the policy is written: a
//! field the kind does not have is dropped with the unknown fields of the
//! mutated object, or refused by its validation.
//!
//! ```
//! use rk_apiserver::cel::{Activation, MutationEnv};
//! use serde_json::json;
//!
//! let expression = "Object{metadata: Object.metadata{labels: {'team': 'a'}}}";
//! let env = MutationEnv::for_expressions([expression]);
//! let applied = Activation::default().eval_in(env.env(), expression).unwrap();
//! assert_eq!(applied, json!({"metadata": {"labels": {"team": "a"}}}));
//! ```

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock, Mutex};

use cel::IdedExpr;
use cel::common::ast::{EntryExpr, Expr, LiteralValue};
use cel::common::types::{CelMap, CelMapKey, CelString, STRING_TYPE, Type};
use cel::common::value::{CowVal, Val};
use cel::{Env, ExecutionError, StructType};

use super::library::{error, string_arg};

/// The name of the JSON patch operation type.
const JSON_PATCH: &str = "JSONPatch";

/// The fields a `JSONPatch{...}` may set.
const JSON_PATCH_FIELDS: &[&str] = &["op", "path", "from", "value"];

/// Most environments kept (each knows one set of struct type names).
const MAX_CACHED: usize = 256;

/// Environments already built, by the struct type names they know.
static CACHE: LazyLock<Mutex<HashMap<Vec<String>, MutationEnv>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// Struct type names as expressions write them: `Object`, `Object.a.b`
/// (dots may have spaces around them) or `JSONPatch`, before a `{`.
static STRUCT_LITERAL: LazyLock<Option<regex::Regex>> = LazyLock::new(|| {
    regex::Regex::new(
        r"(?:^|[^A-Za-z0-9_.])(Object(?:\s*\.\s*[A-Za-z_][A-Za-z0-9_]*)*|JSONPatch)\s*\{",
    )
    .ok()
});

/// A CEL environment for mutation expressions.
#[derive(Clone)]
pub struct MutationEnv(Arc<Env>);

impl std::fmt::Debug for MutationEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MutationEnv")
    }
}

impl MutationEnv {
    /// The environment for `expressions`: it knows every struct type they
    /// construct. Environments are kept and shared by the set of names.
    pub fn for_expressions<'a>(expressions: impl IntoIterator<Item = &'a str>) -> Self {
        let mut names: Vec<String> = expressions.into_iter().flat_map(struct_names).collect();
        names.sort();
        names.dedup();
        let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(env) = cache.get(&names) {
            return env.clone();
        }
        let env = Self(Arc::new(build(&names)));
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(names, env.clone());
        env
    }

    /// The environment, to evaluate in.
    pub fn env(&self) -> &Arc<Env> {
        &self.0
    }
}

/// Checks what upstream's type checker checks of a mutation's struct
/// literals without knowing the kind's schema: a literal in a field of an
/// `Object` literal is named by that field's path (`Object.spec` in
/// `Object{spec: ...}`; list items and map values by the list's or map's
/// path), and the expression gives the right type for `patch_type`
/// (`ApplyConfiguration`: `Object`; `JSONPatch`: a list) when it is a
/// literal. The error is upstream's message.
pub fn check_mutation(expression: &str, patch_type: &str) -> Result<(), String> {
    let env = MutationEnv::for_expressions([expression]);
    let parsed = env
        .env()
        .parser()
        .parse(expression)
        .map_err(|e| format!("compilation failed: {e}"))?;
    check_names(&parsed, None)?;
    let (wanted, fits): (&str, fn(&Expr) -> bool) = match patch_type {
        "ApplyConfiguration" => ("Object", |e| {
            !matches!(e, Expr::List(_) | Expr::Map(_) | Expr::Literal(_))
                && !matches!(e, Expr::Struct(s) if s.type_name != "Object")
        }),
        "JSONPatch" => ("list(JSONPatch)", |e| {
            !matches!(e, Expr::Struct(_) | Expr::Map(_) | Expr::Literal(_))
        }),
        _ => return Ok(()),
    };
    for result in results(&parsed) {
        if !fits(&result.expr) {
            return Err(format!(
                "must evaluate to {wanted} but got {}",
                literal_type(&result.expr)
            ));
        }
    }
    Ok(())
}

/// The expressions whose value is the result: both branches of a
/// conditional, else the expression itself.
fn results(e: &IdedExpr) -> Vec<&IdedExpr> {
    match &e.expr {
        Expr::Call(call) if call.func_name == "_?_:_" && call.args.len() == 3 => {
            let mut out = results(&call.args[1]);
            out.extend(results(&call.args[2]));
            out
        }
        _ => vec![e],
    }
}

fn literal_type(e: &Expr) -> String {
    match e {
        Expr::Struct(s) => s.type_name.clone(),
        Expr::List(_) => "list(dyn)".into(),
        Expr::Map(_) => "map(dyn, dyn)".into(),
        Expr::Literal(LiteralValue::Boolean(_)) => "bool".into(),
        Expr::Literal(LiteralValue::Bytes(_)) => "bytes".into(),
        Expr::Literal(LiteralValue::Double(_)) => "double".into(),
        Expr::Literal(LiteralValue::Int(_)) => "int".into(),
        Expr::Literal(LiteralValue::UInt(_)) => "uint".into(),
        Expr::Literal(LiteralValue::String(_)) => "string".into(),
        Expr::Literal(LiteralValue::Null) => "null_type".into(),
        _ => "dyn".into(),
    }
}

/// Walks `e`, where a struct literal must be named `expected` if set.
fn check_names(e: &IdedExpr, expected: Option<&str>) -> Result<(), String> {
    match &e.expr {
        Expr::Struct(s) => {
            if let Some(expected) = expected
                && s.type_name != expected
            {
                return Err(format!(
                    "type mismatch: unexpected type name {:?}, expected {expected:?}, which matches field name path from root Object type",
                    s.type_name
                ));
            }
            let is_object = s.type_name == "Object" || s.type_name.starts_with("Object.");
            for entry in &s.entries {
                if let EntryExpr::StructField(field) = &entry.expr {
                    let path = is_object.then(|| format!("{}.{}", s.type_name, field.field));
                    check_names(&field.value, path.as_deref())?;
                }
            }
            Ok(())
        }
        Expr::List(list) => list
            .elements
            .iter()
            .try_for_each(|el| check_names(el, expected)),
        Expr::Map(map) => map.entries.iter().try_for_each(|entry| match &entry.expr {
            EntryExpr::MapEntry(m) => {
                check_names(&m.key, None)?;
                check_names(&m.value, expected)
            }
            EntryExpr::StructField(f) => check_names(&f.value, None),
        }),
        Expr::Call(call) if call.func_name == "_?_:_" && call.args.len() == 3 => {
            check_names(&call.args[0], None)?;
            check_names(&call.args[1], expected)?;
            check_names(&call.args[2], expected)
        }
        Expr::Call(call) => {
            if let Some(target) = &call.target {
                check_names(target, None)?;
            }
            call.args.iter().try_for_each(|a| check_names(a, None))
        }
        Expr::Select(select) => check_names(&select.operand, None),
        Expr::Comprehension(c) => [
            &c.iter_range,
            &c.accu_init,
            &c.loop_cond,
            &c.loop_step,
            &c.result,
        ]
        .into_iter()
        .try_for_each(|x| check_names(x, None)),
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => Ok(()),
    }
}

/// The struct type names `expression` constructs.
fn struct_names(expression: &str) -> Vec<String> {
    let Some(re) = STRUCT_LITERAL.as_ref() else {
        return Vec::new();
    };
    re.captures_iter(expression)
        .filter_map(|c| c.get(1))
        .map(|m| m.as_str().split_whitespace().collect::<String>())
        .collect()
}

fn build(names: &[String]) -> Env {
    let mut env = super::base_env();
    if let Err(e) = env.add_overload(
        "jsonpatch.escapeKey",
        "jsonpatch_escape_key_string",
        vec![STRING_TYPE],
        escape_key,
    ) {
        tracing::warn!(error = %e, "jsonpatch.escapeKey could not be added");
    }
    for name in names {
        let fields = (name == JSON_PATCH).then_some(JSON_PATCH_FIELDS);
        if let Err(e) = env.add_type(LiteralType {
            r#type: Type::new_struct(name.clone()),
            fields,
        }) {
            tracing::warn!(error = %e, %name, "a mutation struct type could not be added");
        }
    }
    env
}

/// `jsonpatch.escapeKey(s)`.
fn escape_key<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let key = string_arg("jsonpatch.escapeKey", &args, 0)?;
    Ok(CowVal::owned(CelString::from(
        key.replace('~', "~0").replace('/', "~1"),
    )))
}

/// A struct type whose literals give the map of the fields they set.
struct LiteralType {
    r#type: Type,
    /// The only fields it has, when it is not an apply configuration.
    fields: Option<&'static [&'static str]>,
}

impl StructType for LiteralType {
    fn get_type(&self) -> &Type {
        &self.r#type
    }

    fn new_value<'b, 'v>(
        &self,
        fields: BTreeMap<String, CowVal<'b, 'v>>,
    ) -> Result<Box<dyn Val + 'v>, ExecutionError> {
        let mut map = HashMap::with_capacity(fields.len());
        for (name, value) in fields {
            if let Some(known) = self.fields
                && !known.contains(&name.as_str())
            {
                return Err(error(
                    self.r#type.name(),
                    format!("no such field {name:?} in {}", self.r#type.name()),
                ));
            }
            map.insert(CelMapKey::from(name), value.into_owned());
        }
        Ok(Box::new(CelMap::from(map)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cel::Activation;
    use serde_json::json;

    fn eval(expression: &str, object: serde_json::Value) -> Result<serde_json::Value, String> {
        let env = MutationEnv::for_expressions([expression]);
        Activation {
            object,
            ..Activation::default()
        }
        .eval_in(env.env(), expression)
    }

    #[test]
    fn struct_literals_give_the_fields_they_set() {
        let expression = "Object{spec: Object.spec{containers: [Object.spec.containers{name: 'c', image: object.spec.image}]}}";
        assert_eq!(
            eval(expression, json!({"spec": {"image": "nginx"}})),
            Ok(json!({"spec": {"containers": [{"name": "c", "image": "nginx"}]}}))
        );
        assert_eq!(
            eval("Object {metadata: Object . metadata{}}", json!({})),
            Ok(json!({"metadata": {}}))
        );
    }

    #[test]
    fn json_patches_and_escaped_keys() {
        let expression = "[JSONPatch{op: 'add', path: '/metadata/labels/' + jsonpatch.escapeKey('a/b~c'), value: 'x'}]";
        assert_eq!(
            eval(expression, json!({})),
            Ok(json!([{"op": "add", "path": "/metadata/labels/a~1b~0c", "value": "x"}]))
        );
        assert!(eval("[JSONPatch{op: 'add', where: '/x'}]", json!({})).is_err());
    }

    #[test]
    fn literal_names_follow_field_paths_and_results_their_patch_type() {
        let ok = "Object{spec: Object.spec{containers: [Object.spec.containers{name: 'c'}], \
                  selector: true ? Object.spec.selector{} : Object.spec.selector{}}}";
        assert_eq!(check_mutation(ok, "ApplyConfiguration"), Ok(()));
        assert_eq!(
            check_mutation("Object{spec: Object.specx{}}", "ApplyConfiguration"),
            Err("type mismatch: unexpected type name \"Object.specx\", expected \"Object.spec\", which matches field name path from root Object type".into())
        );
        assert_eq!(
            check_mutation("Object.spec.metadata{}", "ApplyConfiguration"),
            Err("must evaluate to Object but got Object.spec.metadata".into())
        );
        assert_eq!(
            check_mutation("'text'", "ApplyConfiguration"),
            Err("must evaluate to Object but got string".into())
        );
        assert_eq!(
            check_mutation("[JSONPatch{op: 'remove', path: '/spec/x'}]", "JSONPatch"),
            Ok(())
        );
        assert!(check_mutation("JSONPatch{op: 'remove'}", "JSONPatch").is_err());
        assert!(check_mutation("Object{", "ApplyConfiguration").is_err());
    }

    #[test]
    fn names_in_strings_or_longer_identifiers_are_not_types() {
        assert_eq!(struct_names("MyObject{a: 1}"), Vec::<String>::new());
        assert_eq!(
            struct_names("Object{} + Object.spec.x {}"),
            vec!["Object".to_string(), "Object.spec.x".to_string()]
        );
        assert!(eval("NotKnown{a: 1}", json!({})).is_err());
    }
}
