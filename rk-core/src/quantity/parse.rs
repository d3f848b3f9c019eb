//! Parsing the quantity string form into an exact count of nano-units.
//!
//! Grammar (upstream's, but a number needs at least one digit):
//!
//! ```text
//! <quantity> ::= [ "+" | "-" ] <number> <suffix>
//! <number>   ::= <digits> | <digits> "." [ <digits> ] | "." <digits>
//! <suffix>   ::= "" | "n" | "u" | "m" | "k" | "M" | "G" | "T" | "P" | "E"
//!              | "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei"
//!              | ( "e" | "E" ) [ "+" | "-" ] <digits>
//! ```
//!
//! The value is exact, then rounded up (away from zero) to a whole number of
//! nano-units, as upstream does. Binary-suffixed values are capped at
//! `2^63 - 1` units, as upstream does; decimal values too large for the
//! representation are an error.

use super::{Format, ParsedQuantity, QuantityError};

/// Upstream caps binary-SI quantities at `math.MaxInt64` units.
pub(super) const MAX_BINARY_NANOS: u128 = (i64::MAX as u128) * 1_000_000_000;

const SUFFIX_CHARS: &[u8] = b"eEinumkKMGTP+-0123456789";

enum Suffix {
    Decimal(i64),
    Binary(u32),
    Exponent(i64),
}

fn suffix(s: &str) -> Option<Suffix> {
    let decimal = match s {
        "" => 0,
        "n" => -9,
        "u" => -6,
        "m" => -3,
        "k" => 3,
        "M" => 6,
        "G" => 9,
        "T" => 12,
        "P" => 15,
        "E" => 18,
        "Ki" => return Some(Suffix::Binary(10)),
        "Mi" => return Some(Suffix::Binary(20)),
        "Gi" => return Some(Suffix::Binary(30)),
        "Ti" => return Some(Suffix::Binary(40)),
        "Pi" => return Some(Suffix::Binary(50)),
        "Ei" => return Some(Suffix::Binary(60)),
        _ => {
            let rest = s.strip_prefix(['e', 'E'])?;
            let digits = rest.strip_prefix(['+', '-']).unwrap_or(rest);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            // Upstream rejects exponents outside the int64 range.
            let exponent = rest.parse::<i64>().ok()?;
            return Some(Suffix::Exponent(exponent));
        }
    };
    Some(Suffix::Decimal(decimal))
}

fn char_at(input: &str, position: usize) -> Option<char> {
    input.get(position..).and_then(|s| s.chars().next())
}

pub(super) fn parse(input: &str) -> Result<ParsedQuantity, QuantityError> {
    if input.is_empty() {
        return Err(QuantityError::Empty);
    }
    let bytes = input.as_bytes();
    let syntax = |position: usize, expected: &'static str| QuantityError::Syntax {
        input: input.to_owned(),
        position,
        found: char_at(input, position),
        expected,
    };

    let mut pos = 0;
    let negative = match bytes.first() {
        Some(b'-') => {
            pos += 1;
            true
        }
        Some(b'+') => {
            pos += 1;
            false
        }
        _ => false,
    };
    let number_start = pos;
    let digits_end = |from: usize| {
        from + bytes[from..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count()
    };
    let int_end = digits_end(pos);
    let int_digits = &bytes[pos..int_end];
    pos = int_end;
    let mut frac_digits: &[u8] = &[];
    if bytes.get(pos) == Some(&b'.') {
        let frac_end = digits_end(pos + 1);
        frac_digits = &bytes[pos + 1..frac_end];
        pos = frac_end;
    }
    if int_digits.is_empty() && frac_digits.is_empty() {
        let expected = if pos > number_start {
            "a digit after '.'"
        } else {
            "a digit or '.'"
        };
        return Err(syntax(pos, expected));
    }

    let suffix_start = pos;
    if let Some(bad) = bytes[suffix_start..]
        .iter()
        .position(|b| !SUFFIX_CHARS.contains(b))
    {
        return Err(syntax(
            suffix_start + bad,
            "a suffix (n, u, m, k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei or e<exponent>)",
        ));
    }
    let suffix_text = input.get(suffix_start..).unwrap_or_default();
    let Some(suffix) = suffix(suffix_text) else {
        if let Some(rest) = suffix_text.strip_prefix(['e', 'E']) {
            let digits = rest.strip_prefix(['+', '-']).unwrap_or(rest);
            if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(QuantityError::ExponentOutOfRange {
                    input: input.to_owned(),
                });
            }
        }
        return Err(QuantityError::UnknownSuffix {
            input: input.to_owned(),
            suffix: suffix_text.to_owned(),
        });
    };
    let (format, decimal_exponent, binary_exponent) = match suffix {
        Suffix::Decimal(e) => (Format::DecimalSI, e, 0),
        Suffix::Binary(b) => (Format::BinarySI, 0, b),
        Suffix::Exponent(e) => (Format::DecimalExponent, e, 0),
    };

    let magnitude = match nanos(int_digits, frac_digits, decimal_exponent, binary_exponent) {
        Some(n) if format == Format::BinarySI => n.min(MAX_BINARY_NANOS),
        None if format == Format::BinarySI => MAX_BINARY_NANOS,
        Some(n) => n,
        None => {
            return Err(QuantityError::Overflow {
                input: input.to_owned(),
            });
        }
    };
    let Ok(magnitude) = i128::try_from(magnitude) else {
        return Err(QuantityError::Overflow {
            input: input.to_owned(),
        });
    };
    let nanos = if negative { -magnitude } else { magnitude };
    Ok(ParsedQuantity::from_nanos(nanos, format))
}

/// `ceil(int.frac × 10^decimal_exponent × 2^binary_exponent × 10^9)` for a
/// non-negative number given as digit strings; `None` on overflow.
fn nanos(int: &[u8], frac: &[u8], decimal_exponent: i64, binary_exponent: u32) -> Option<u128> {
    let digits: Vec<u8> = int.iter().chain(frac).map(|b| b - b'0').collect();
    let len = digits.len() as i128;
    // Number of leading digits that fall at or above the nano-unit position.
    let split = int.len() as i128 + i128::from(decimal_exponent) + 9;
    let int_len = split.clamp(0, len) as usize;
    let (int_part, frac_part) = digits.split_at(int_len);

    let mut whole: u128 = 0;
    for &d in int_part {
        whole = whole.checked_mul(10)?.checked_add(u128::from(d))?;
    }
    if whole != 0 && split > len {
        let zeros = u32::try_from(split - len).ok()?;
        whole = whole.checked_mul(10u128.checked_pow(zeros)?)?;
    }
    let factor = 1u128 << binary_exponent;
    whole = whole.checked_mul(factor)?;

    // The fraction 0.[leading zeros][frac_part], times 2^binary_exponent:
    // long multiplication from the last digit keeps it exact.
    let leading_zeros = (-split).max(0);
    let mut carry: u128 = 0;
    let mut remainder = false;
    for &d in frac_part.iter().rev() {
        let v = u128::from(d) * factor + carry;
        remainder |= !v.is_multiple_of(10);
        carry = v / 10;
    }
    let mut zeros = leading_zeros;
    while zeros > 0 && carry > 0 {
        remainder |= !carry.is_multiple_of(10);
        carry /= 10;
        zeros -= 1;
    }
    whole.checked_add(carry)?.checked_add(u128::from(remainder))
}
