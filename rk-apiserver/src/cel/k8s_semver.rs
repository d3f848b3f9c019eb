//! Kubernetes' CEL semver library (upstream `k8s.io/apiserver/pkg/cel/library`,
//! `semverlib.go`):
//!
//! - `isSemver(s)`, `semver(s)`: a strict semantic version (`1.2.3`,
//!   `1.2.3-rc.1+build`); with a second argument `true`, the string is
//!   normalized first (a leading `v` dropped, a missing minor or patch
//!   taken as 0, leading zeros dropped), as upstream's `normalize` does;
//! - `v.major()`, `v.minor()`, `v.patch()`;
//! - `v.compareTo(w)`, `v.isLessThan(w)`, `v.isGreaterThan(w)`, and `==`,
//!   by semver precedence (build metadata ignored).

use std::cmp::Ordering;

use cel::common::types::{BOOL_TYPE, CelBool, CelInt, STRING_TYPE, Type};
use cel::common::value::CowVal;

use super::library::{boolean, error, string_arg};
use cel::{DeclarationError, Env, ExecutionError};

static SEMVER_TYPE: Type = Type::new_unspecified_type("kubernetes.Semver");

/// A semantic version.
#[derive(Clone, Debug)]
struct Semver(semver::Version);

/// Equal by precedence: build metadata does not count.
impl PartialEq for Semver {
    fn eq(&self, other: &Self) -> bool {
        self.0.cmp_precedence(&other.0) == Ordering::Equal
    }
}

super::library::opaque_val!(Semver, SEMVER_TYPE);

/// Upstream's normalization: `v1.02` -> `1.2.0`.
fn normalize(text: &str) -> String {
    let text = text.strip_prefix('v').unwrap_or(text);
    let end = text.find(['-', '+']).unwrap_or(text.len());
    let (core, rest) = text.split_at(end);
    let mut parts: Vec<String> = core
        .split('.')
        .map(|p| {
            let trimmed = p.trim_start_matches('0');
            if trimmed.is_empty() && !p.is_empty() {
                "0".to_string()
            } else {
                trimmed.to_string()
            }
        })
        .collect();
    while parts.len() < 3 {
        parts.push("0".to_string());
    }
    format!("{}{rest}", parts.join("."))
}

fn parse(text: &str, normalized: bool) -> Option<semver::Version> {
    if normalized {
        semver::Version::parse(&normalize(text)).ok()
    } else {
        semver::Version::parse(text).ok()
    }
}

/// Registers the library's functions on `env`.
pub fn extension(env: &mut Env) -> Result<(), DeclarationError> {
    env.add_type(SEMVER_TYPE.to_owned())?;
    env.add_overload("isSemver", "is_semver_string", vec![STRING_TYPE], is_semver)?;
    env.add_overload(
        "isSemver",
        "is_semver_string_bool",
        vec![STRING_TYPE, BOOL_TYPE],
        is_semver,
    )?;
    env.add_overload("semver", "string_to_semver", vec![STRING_TYPE], to_semver)?;
    env.add_overload(
        "semver",
        "string_bool_to_semver",
        vec![STRING_TYPE, BOOL_TYPE],
        to_semver,
    )?;
    let s = || SEMVER_TYPE.to_owned();
    env.add_member_overload("major", "semver_major", s(), vec![], major)?;
    env.add_member_overload("minor", "semver_minor", s(), vec![], minor)?;
    env.add_member_overload("patch", "semver_patch", s(), vec![], patch)?;
    env.add_member_overload("compareTo", "semver_compare_to", s(), vec![s()], compare_to)?;
    env.add_member_overload("isLessThan", "semver_less_than", s(), vec![s()], less_than)?;
    env.add_member_overload(
        "isGreaterThan",
        "semver_greater_than",
        s(),
        vec![s()],
        greater_than,
    )?;
    Ok(())
}

fn text_and_flag<'a>(
    name: &str,
    args: &'a [CowVal<'_, '_>],
) -> Result<(&'a str, bool), ExecutionError> {
    let text = string_arg(name, args, 0)?;
    let flag = args
        .get(1)
        .and_then(|v| v.downcast_ref::<CelBool>())
        .is_some_and(|b| *b.inner());
    Ok((text, flag))
}

fn version<'a>(
    name: &str,
    args: &'a [CowVal<'_, '_>],
    at: usize,
) -> Result<&'a semver::Version, ExecutionError> {
    args.get(at)
        .and_then(|v| v.downcast_ref::<Semver>())
        .map(|s| &s.0)
        .ok_or_else(|| error(name, "expected a semver"))
}

fn is_semver<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let (text, normalized) = text_and_flag("isSemver", &args)?;
    boolean(parse(text, normalized).is_some())
}

fn to_semver<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let (text, normalized) = text_and_flag("semver", &args)?;
    let v = parse(text, normalized)
        .ok_or_else(|| error("semver", format!("invalid semver {text:?}")))?;
    Ok(CowVal::owned(Semver(v)))
}

fn int<'b, 'v>(name: &str, value: u64) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let value = i64::try_from(value).map_err(|_| error(name, "overflow"))?;
    Ok(CowVal::owned(CelInt::from(value)))
}

fn major<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    int("major", version("major", &args, 0)?.major)
}

fn minor<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    int("minor", version("minor", &args, 0)?.minor)
}

fn patch<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    int("patch", version("patch", &args, 0)?.patch)
}

fn ordering(name: &str, args: &[CowVal<'_, '_>]) -> Result<Ordering, ExecutionError> {
    Ok(version(name, args, 0)?.cmp_precedence(version(name, args, 1)?))
}

super::library::ordering_methods!(ordering);
