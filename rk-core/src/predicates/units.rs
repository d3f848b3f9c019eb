//! Exact conversion of a `Quantity` to milli-units.
//!
//! A private stand-in for `crate::quantity` with upstream's grammar:
//! `[+-]digits[.digits]` followed by nothing, a decimal SI suffix
//! (`n u m k M G T P E`), a binary suffix (`Ki Mi Gi Ti Pi Ei`) or a decimal
//! exponent (`e3`, `E-2`). Fractions of a milli-unit round up, as upstream's
//! `MilliValue` does.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::PredicateError;

/// Significant digits accepted in the number part (keeps every step in `i128`).
const MAX_DIGITS: usize = 30;
/// Largest decimal exponent accepted after `e`/`E`.
const MAX_EXPONENT: i32 = 100;

/// The quantity in milli-units: `1` is 1000, `250m` is 250, `1Ki` is 1_024_000.
pub(crate) fn milli(q: &Quantity) -> Result<i64, PredicateError> {
    milli_str(&q.0)
}

/// [`milli`] over the string form.
pub(crate) fn milli_str(s: &str) -> Result<i64, PredicateError> {
    let invalid = |reason: &'static str| PredicateError::InvalidQuantity {
        quantity: s.to_owned(),
        reason,
    };
    let overflow = || PredicateError::QuantityOverflow {
        quantity: s.to_owned(),
    };

    let (negative, rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        Some(_) => (false, s),
        None => return Err(invalid("empty quantity")),
    };

    let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
    let (int_part, after_int) = rest.split_at(int_len);
    let (frac_part, suffix) = match after_int.strip_prefix('.') {
        Some(after_dot) => {
            let frac_len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
            after_dot.split_at(frac_len)
        }
        None => ("", after_int),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return Err(invalid("missing number"));
    }

    let (mut exp10, exp2): (i32, u32) = match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        other => match other.strip_prefix(['e', 'E']) {
            Some(exp) => (
                parse_exponent(exp).ok_or_else(|| invalid("bad exponent"))?,
                0,
            ),
            None => return Err(invalid("unknown suffix")),
        },
    };

    let digits = format!("{int_part}{frac_part}");
    let significant = digits.trim_start_matches('0');
    if significant.len() > MAX_DIGITS {
        return Err(invalid("too many digits"));
    }
    let mut mantissa: i128 = 0;
    for b in significant.bytes() {
        mantissa = mantissa * 10 + i128::from(b - b'0');
    }
    let frac_len = i32::try_from(frac_part.len()).map_err(|_| invalid("too many digits"))?;
    // Milli-units, then move the decimal point left by the fraction length.
    exp10 = exp10 + 3 - frac_len;

    let scaled = mantissa.checked_mul(1i128 << exp2).ok_or_else(overflow)?;
    let magnitude = if exp10 >= 0 {
        let factor = pow10(exp10).ok_or_else(overflow)?;
        scaled.checked_mul(factor).ok_or_else(overflow)?
    } else {
        match pow10(-exp10) {
            // Round the magnitude up: upstream rounds fractional milli-units away from zero.
            Some(divisor) => (scaled + divisor - 1) / divisor,
            None => i128::from(scaled > 0),
        }
    };
    let signed = if negative { -magnitude } else { magnitude };
    i64::try_from(signed).map_err(|_| overflow())
}

fn parse_exponent(s: &str) -> Option<i32> {
    let (negative, digits) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 4 {
        return None;
    }
    let n: i32 = digits.parse().ok()?;
    if n > MAX_EXPONENT {
        return None;
    }
    Some(if negative { -n } else { n })
}

fn pow10(exp: i32) -> Option<i128> {
    10i128.checked_pow(u32::try_from(exp).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str) -> i64 {
        match milli_str(s) {
            Ok(v) => v,
            Err(e) => panic!("{s}: {e}"),
        }
    }

    #[test]
    fn decimal_si_suffixes_scale_by_powers_of_ten() {
        assert_eq!(m("1"), 1000);
        assert_eq!(m("250m"), 250);
        assert_eq!(m("2k"), 2_000_000);
        assert_eq!(m("1M"), 1_000_000_000);
        assert_eq!(m("1G"), 1_000_000_000_000);
        assert_eq!(m("1P"), 1_000_000_000_000_000_000);
    }

    #[test]
    fn binary_suffixes_scale_by_powers_of_two() {
        assert_eq!(m("1Ki"), 1_024_000);
        assert_eq!(m("200Mi"), 200 * 1024 * 1024 * 1000);
        assert_eq!(m("1.5Gi"), 1_610_612_736_000);
    }

    #[test]
    fn decimals_and_exponents_are_exact() {
        assert_eq!(m("0.5"), 500);
        assert_eq!(m(".1"), 100);
        assert_eq!(m("5."), 5000);
        assert_eq!(m("1e3"), 1_000_000);
        assert_eq!(m("1E3"), 1_000_000);
        assert_eq!(m("12e-1"), 1200);
        assert_eq!(m("-1"), -1000);
        assert_eq!(m("+2"), 2000);
    }

    #[test]
    fn fractions_of_a_milli_unit_round_up() {
        assert_eq!(m("1n"), 1);
        assert_eq!(m("0.0001"), 1);
        assert_eq!(m("1500u"), 2);
        assert_eq!(m("0"), 0);
    }

    #[test]
    fn malformed_quantities_are_errors_not_panics() {
        for bad in [
            "", "-", ".", "1x", "1.2.3", "abc", "1e", "1ee3", "1Ki2", " 1", "1e99999",
        ] {
            assert!(milli_str(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(matches!(
            milli_str("1E"),
            Err(PredicateError::QuantityOverflow { .. })
        ));
    }

    proptest::proptest! {
        #[test]
        fn whole_numbers_with_suffixes_scale_exactly(n in 0i64..1_000_000, suffix_index in 0usize..6) {
            let (suffix, factor) = [("", 1i64), ("k", 1000), ("M", 1_000_000), ("Ki", 1024), ("Mi", 1 << 20), ("m", 0)][suffix_index];
            let expected = if factor == 0 { n } else { n * factor * 1000 };
            proptest::prop_assert_eq!(milli_str(&format!("{n}{suffix}")), Ok(expected));
        }

        #[test]
        fn arbitrary_strings_never_panic(s in "\\PC{0,24}") {
            let _ = milli_str(&s);
        }
    }
}
