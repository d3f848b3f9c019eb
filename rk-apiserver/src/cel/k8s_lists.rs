//! Kubernetes' CEL list library (upstream `k8s.io/apiserver/pkg/cel/library`,
//! `lists.go`), which CRD validation rules and admission policies may use on
//! top of the CEL standard library:
//!
//! - `list.isSorted()`: whether the elements are in ascending order;
//! - `list.sum()`: the sum of the elements (`0` for an empty list);
//! - `list.min()`, `list.max()`: the least and greatest element (an error
//!   for an empty list);
//! - `list.indexOf(x)`, `list.lastIndexOf(x)`: the first and last index of
//!   an element equal to `x`, or `-1`.

use std::cmp::Ordering;

use cel::common::traits::Iterable;
use cel::common::types::{CelBool, CelInt, DYN_TYPE, LIST_TYPE};
use cel::common::value::{CowVal, Val};
use cel::{DeclarationError, Env, ExecutionError};

/// Registers the library's overloads on `env`.
pub fn extension(env: &mut Env) -> Result<(), DeclarationError> {
    env.add_member_overload("isSorted", "list_is_sorted", LIST_TYPE, vec![], is_sorted)?;
    env.add_member_overload("sum", "list_sum", LIST_TYPE, vec![], sum)?;
    env.add_member_overload("min", "list_min", LIST_TYPE, vec![], min)?;
    env.add_member_overload("max", "list_max", LIST_TYPE, vec![], max)?;
    env.add_member_overload(
        "indexOf",
        "list_index_of",
        LIST_TYPE,
        vec![DYN_TYPE],
        index_of,
    )?;
    env.add_member_overload(
        "lastIndexOf",
        "list_last_index_of",
        LIST_TYPE,
        vec![DYN_TYPE],
        last_index_of,
    )?;
    Ok(())
}

/// The elements of the list an overload was called on (its first argument).
fn elements<'a, 'v>(
    name: &str,
    args: &'a [CowVal<'_, 'v>],
) -> Result<Vec<&'a (dyn Val + 'v)>, ExecutionError> {
    let list = args
        .first()
        .ok_or_else(|| ExecutionError::function_error(name, "no list to call it on"))?;
    let iterable: &(dyn Iterable + 'v) = list
        .as_iterable()
        .ok_or_else(|| ExecutionError::function_error(name, "not called on a list"))?;
    let mut items = iterable.iter();
    let mut out = Vec::new();
    while let Some(item) = items.next() {
        out.push(item);
    }
    Ok(out)
}

fn compare(name: &str, a: &dyn Val, b: &dyn Val) -> Result<Ordering, ExecutionError> {
    a.as_comparer()
        .ok_or_else(|| {
            ExecutionError::function_error(
                name,
                format!("elements of type {} do not order", a.get_type().name()),
            )
        })?
        .compare(b)
}

fn is_sorted<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let items = elements("isSorted", &args)?;
    for pair in items.windows(2) {
        if compare("isSorted", pair[0], pair[1])? == Ordering::Greater {
            return Ok(CowVal::owned(CelBool::from(false)));
        }
    }
    Ok(CowVal::owned(CelBool::from(true)))
}

fn sum<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let items = elements("sum", &args)?;
    let Some((first, rest)) = items.split_first() else {
        return Ok(CowVal::owned(CelInt::from(0)));
    };
    let mut total: Box<dyn Val + 'v> = first.clone_as_boxed();
    for item in rest {
        let next = total
            .as_adder()
            .ok_or_else(|| {
                ExecutionError::function_error(
                    "sum",
                    format!("elements of type {} do not add", total.get_type().name()),
                )
            })?
            .add(*item)?
            .into_owned();
        total = next;
    }
    Ok(CowVal::Owned(total))
}

fn extreme<'b, 'v>(
    name: &str,
    args: Vec<CowVal<'b, 'v>>,
    keep: Ordering,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let items = elements(name, &args)?;
    let Some((first, rest)) = items.split_first() else {
        return Err(ExecutionError::function_error(
            name,
            format!("{name} called on an empty list"),
        ));
    };
    let mut best = *first;
    for item in rest {
        if compare(name, *item, best)? == keep {
            best = *item;
        }
    }
    Ok(CowVal::Owned(best.clone_as_boxed()))
}

fn min<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    extreme("min", args, Ordering::Less)
}

fn max<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    extreme("max", args, Ordering::Greater)
}

fn position<'b, 'v>(
    name: &str,
    args: Vec<CowVal<'b, 'v>>,
    last: bool,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let items = elements(name, &args)?;
    let wanted = args
        .get(1)
        .ok_or_else(|| ExecutionError::function_error(name, "no element to look for"))?;
    let found = |(_, item): &(usize, &&(dyn Val + 'v))| item.equals(wanted.as_ref());
    let index = if last {
        items.iter().enumerate().rev().find(found)
    } else {
        items.iter().enumerate().find(found)
    };
    let index = index.map_or(-1, |(i, _)| i64::try_from(i).unwrap_or(i64::MAX));
    Ok(CowVal::owned(CelInt::from(index)))
}

fn index_of<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    position("indexOf", args, false)
}

fn last_index_of<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    position("lastIndexOf", args, true)
}
