//! Kubernetes' CEL regex library (upstream `k8s.io/apiserver/pkg/cel/library`,
//! `regex.go`):
//!
//! - `s.find(re)`: the first match of `re` in `s`, or `''`;
//! - `s.findAll(re)`, `s.findAll(re, limit)`: every match (at most `limit`
//!   when it is not negative).
//!
//! Patterns use the `regex` crate's syntax, which is RE2's, as upstream.

use cel::common::types::{CelInt, CelList, CelString, INT_TYPE, STRING_TYPE};
use cel::common::value::{CowVal, Val};
use cel::{DeclarationError, Env, ExecutionError};

use super::library::{error, string_arg};

/// Registers the library's overloads on `env`.
pub fn extension(env: &mut Env) -> Result<(), DeclarationError> {
    env.add_member_overload(
        "find",
        "string_find_string",
        STRING_TYPE,
        vec![STRING_TYPE],
        find,
    )?;
    env.add_member_overload(
        "findAll",
        "string_find_all_string",
        STRING_TYPE,
        vec![STRING_TYPE],
        find_all,
    )?;
    env.add_member_overload(
        "findAll",
        "string_find_all_string_int",
        STRING_TYPE,
        vec![STRING_TYPE, INT_TYPE],
        find_all,
    )?;
    Ok(())
}

fn pattern(name: &str, args: &[CowVal<'_, '_>]) -> Result<regex::Regex, ExecutionError> {
    let re = string_arg(name, args, 1)?;
    regex::Regex::new(re).map_err(|e| error(name, e.to_string()))
}

fn find<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let re = pattern("find", &args)?;
    let found = re
        .find(string_arg("find", &args, 0)?)
        .map_or_else(String::new, |m| m.as_str().to_string());
    Ok(CowVal::owned(CelString::from(found)))
}

fn find_all<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let re = pattern("findAll", &args)?;
    let limit = match args.get(2) {
        Some(limit) => *limit
            .downcast_ref::<CelInt>()
            .ok_or_else(|| error("findAll", "expected an int limit"))?
            .inner(),
        None => -1,
    };
    let text = string_arg("findAll", &args, 0)?;
    let take = usize::try_from(limit).unwrap_or(usize::MAX);
    let found: Vec<Box<dyn Val + 'v>> = re
        .find_iter(text)
        .take(take)
        .map(|m| Box::new(CelString::from(m.as_str().to_string())) as Box<dyn Val + 'v>)
        .collect();
    Ok(CowVal::owned(CelList::from(found)))
}
