//! Kubernetes' CEL quantity library (upstream `k8s.io/apiserver/pkg/cel/library`,
//! `quantity.go`), for rules such as
//! `quantity(self.limit).compareTo(quantity(self.request)) >= 0`:
//!
//! - `quantity(s)`, `isQuantity(s)`: parse a quantity string (`500m`, `2Gi`,
//!   `1e3`) or say whether it parses;
//! - `q.sign()`, `q.isInteger()`, `q.asInteger()`, `q.asApproximateFloat()`;
//! - `q.add(q2 or int)`, `q.sub(q2 or int)`;
//! - `q.compareTo(q2)`, `q.isLessThan(q2)`, `q.isGreaterThan(q2)`; `==`
//!   compares values, so `quantity('1') == quantity('1000m')`.
//!
//! A quantity is held exactly, as a count of nano-units (what upstream
//! keeps for any quantity short of its arbitrary-precision fallback):
//! digits below a nano-unit round up, as upstream rounds them.

use std::cmp::Ordering;

use cel::common::types::{CelDouble, CelInt, INT_TYPE, STRING_TYPE, Type};
use cel::common::value::CowVal;

use super::library::{boolean, error, string_arg};
use cel::{DeclarationError, Env, ExecutionError};

/// The CEL type of a quantity.
static QUANTITY_TYPE: Type = Type::new_unspecified_type("kubernetes.Quantity");

const NANOS: i128 = 1_000_000_000;

/// A quantity, in nano-units.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Quantity(i128);

super::library::opaque_val!(Quantity, QUANTITY_TYPE);

/// Parses a Kubernetes quantity: a signed decimal number (`1`, `1.5`, `.5`),
/// then a binary suffix (`Ki` .. `Ei`), a decimal one (`n`, `u`, `m`, `k`,
/// `M` .. `E`) or an exponent (`e3`, `E-2`).
pub fn parse(text: &str) -> Option<Quantity> {
    let (negative, rest) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let number_len = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(number_len);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
        return None;
    }
    // (multiplier, power of ten) the suffix stands for.
    let (multiplier, exponent): (i128, i32) = match suffix {
        "" => (1, 0),
        "Ki" => (1 << 10, 0),
        "Mi" => (1 << 20, 0),
        "Gi" => (1 << 30, 0),
        "Ti" => (1 << 40, 0),
        "Pi" => (1 << 50, 0),
        "Ei" => (1 << 60, 0),
        "n" => (1, -9),
        "u" => (1, -6),
        "m" => (1, -3),
        "k" => (1, 3),
        "M" => (1, 6),
        "G" => (1, 9),
        "T" => (1, 12),
        "P" => (1, 15),
        "E" => (1, 18),
        exp if exp.starts_with(['e', 'E']) => {
            let e: i32 = exp[1..].parse().ok()?;
            if !(-60..=60).contains(&e) {
                return None;
            }
            (1, e)
        }
        _ => return None,
    };
    // The digits as one integer, and the power of ten that scales it to
    // nano-units.
    let mut digits: i128 = 0;
    for c in whole.bytes().chain(fraction.bytes()) {
        digits = digits.checked_mul(10)?.checked_add(i128::from(c - b'0'))?;
    }
    let scale = exponent + 9 - i32::try_from(fraction.len()).ok()?;
    let scaled = digits.checked_mul(multiplier)?;
    let nanos = if scale >= 0 {
        scaled.checked_mul(10i128.checked_pow(u32::try_from(scale).ok()?)?)?
    } else {
        let divisor = 10i128
            .checked_pow(u32::try_from(-scale).ok()?)
            .unwrap_or(i128::MAX);
        // Round up (away from zero), as upstream does below a nano-unit.
        scaled / divisor + i128::from(scaled % divisor != 0)
    };
    Some(Quantity(if negative { -nanos } else { nanos }))
}

/// Registers the library's functions on `env`.
pub fn extension(env: &mut Env) -> Result<(), DeclarationError> {
    env.add_type(QUANTITY_TYPE.to_owned())?;
    env.add_overload(
        "quantity",
        "string_to_quantity",
        vec![STRING_TYPE],
        quantity,
    )?;
    env.add_overload(
        "isQuantity",
        "is_quantity_string",
        vec![STRING_TYPE],
        is_quantity,
    )?;
    let q = || QUANTITY_TYPE.to_owned();
    env.add_member_overload("sign", "quantity_sign", q(), vec![], sign)?;
    env.add_member_overload("isInteger", "quantity_is_integer", q(), vec![], is_integer)?;
    env.add_member_overload("asInteger", "quantity_as_integer", q(), vec![], as_integer)?;
    env.add_member_overload(
        "asApproximateFloat",
        "quantity_as_float",
        q(),
        vec![],
        as_float,
    )?;
    env.add_member_overload("add", "quantity_add", q(), vec![q()], add)?;
    env.add_member_overload("add", "quantity_add_int", q(), vec![INT_TYPE], add)?;
    env.add_member_overload("sub", "quantity_sub", q(), vec![q()], sub)?;
    env.add_member_overload("sub", "quantity_sub_int", q(), vec![INT_TYPE], sub)?;
    env.add_member_overload(
        "compareTo",
        "quantity_compare_to",
        q(),
        vec![q()],
        compare_to,
    )?;
    env.add_member_overload(
        "isLessThan",
        "quantity_less_than",
        q(),
        vec![q()],
        less_than,
    )?;
    env.add_member_overload(
        "isGreaterThan",
        "quantity_greater_than",
        q(),
        vec![q()],
        greater_than,
    )?;
    Ok(())
}

fn quantity_arg(
    name: &str,
    args: &[CowVal<'_, '_>],
    at: usize,
) -> Result<Quantity, ExecutionError> {
    let value = args
        .get(at)
        .ok_or_else(|| error(name, "missing argument"))?;
    if let Some(q) = value.downcast_ref::<Quantity>() {
        return Ok(*q);
    }
    if let Some(i) = value.downcast_ref::<CelInt>() {
        return i128::from(*i.inner())
            .checked_mul(NANOS)
            .map(Quantity)
            .ok_or_else(|| error(name, "overflow"));
    }
    Err(error(name, "expected a quantity"))
}

fn quantity<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let text = string_arg("quantity", &args, 0)?;
    let q = parse(text).ok_or_else(|| error("quantity", format!("invalid quantity {text:?}")))?;
    Ok(CowVal::owned(q))
}

fn is_quantity<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    boolean(parse(string_arg("isQuantity", &args, 0)?).is_some())
}

fn sign<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let q = quantity_arg("sign", &args, 0)?;
    Ok(CowVal::owned(CelInt::from(q.0.signum() as i64)))
}

fn is_integer<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let q = quantity_arg("isInteger", &args, 0)?;
    let fits = q.0 % NANOS == 0 && i64::try_from(q.0 / NANOS).is_ok();
    boolean(fits)
}

fn as_integer<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let q = quantity_arg("asInteger", &args, 0)?;
    if q.0 % NANOS != 0 {
        return Err(error("asInteger", "the quantity is not an integer"));
    }
    let value = i64::try_from(q.0 / NANOS)
        .map_err(|_| error("asInteger", "the quantity overflows an int"))?;
    Ok(CowVal::owned(CelInt::from(value)))
}

fn as_float<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let q = quantity_arg("asApproximateFloat", &args, 0)?;
    Ok(CowVal::owned(CelDouble::from(q.0 as f64 / NANOS as f64)))
}

fn combine<'b, 'v>(
    name: &str,
    args: Vec<CowVal<'b, 'v>>,
    op: fn(i128, i128) -> Option<i128>,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let (a, b) = (quantity_arg(name, &args, 0)?, quantity_arg(name, &args, 1)?);
    let value = op(a.0, b.0).ok_or_else(|| error(name, "overflow"))?;
    Ok(CowVal::owned(Quantity(value)))
}

fn add<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    combine("add", args, i128::checked_add)
}

fn sub<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    combine("sub", args, i128::checked_sub)
}

fn ordering(name: &str, args: &[CowVal<'_, '_>]) -> Result<Ordering, ExecutionError> {
    Ok(quantity_arg(name, args, 0)?.cmp(&quantity_arg(name, args, 1)?))
}

super::library::ordering_methods!(ordering);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_parse_exactly() {
        let n = |s: &str| parse(s).map(|q| q.0);
        assert_eq!(n("1"), Some(NANOS));
        assert_eq!(n("1000m"), Some(NANOS));
        assert_eq!(n("500m"), Some(NANOS / 2));
        assert_eq!(n("1Ki"), Some(1024 * NANOS));
        assert_eq!(n("2Gi"), Some(2 * (1 << 30) * NANOS));
        assert_eq!(n("1.5k"), Some(1500 * NANOS));
        assert_eq!(n("1e3"), Some(1000 * NANOS));
        assert_eq!(n("1E-3"), Some(NANOS / 1000));
        assert_eq!(n("-2"), Some(-2 * NANOS));
        assert_eq!(n(".5"), Some(NANOS / 2));
        assert_eq!(n("0.1n"), Some(1));
        for bad in ["", "abc", "1.2.3", "1Qi", "--1", ".", "1e", "1e999"] {
            assert_eq!(n(bad), None, "{bad}");
        }
    }
}
