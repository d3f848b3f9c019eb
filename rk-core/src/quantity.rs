//! Exact resource quantities with upstream's semantics
//! (`k8s.io/apimachinery/pkg/api/resource/quantity.go`).
//!
//! A [`ParsedQuantity`] is the number behind a `k8s_openapi` [`Quantity`]
//! string (`100m`, `1.5`, `2Gi`, `1e3`, ...): an exact count of nano-units
//! (no floats) plus the [`Format`] it was written in, which decides how it
//! prints. Parsing rounds anything finer than a nano-unit up (away from
//! zero), as upstream does; bad input is an error, never a silent zero.
//!
//! ```
//! use rk_core::quantity::ParsedQuantity;
//!
//! let cpu: ParsedQuantity = "1.5".parse()?;
//! assert_eq!(cpu.milli_value(), 1500);
//! assert_eq!(cpu.to_string(), "1500m");
//!
//! let memory: ParsedQuantity = "1024Mi".parse()?;
//! assert_eq!(memory.to_string(), "1Gi");
//! assert_eq!(memory, "1073741824".parse()?); // equal by value
//! assert_eq!((memory + "512Mi".parse()?).to_string(), "1536Mi");
//!
//! assert!("1 Gi".parse::<ParsedQuantity>().is_err());
//! # Ok::<(), rk_core::quantity::QuantityError>(())
//! ```
//!
//! [`resources`] has the per-resource map helpers (`requests`, `limits`,
//! `allocatable`): parse, add, subtract, max and fit checks.

mod parse;
pub mod resources;

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::iter::Sum;
use std::ops::{Add, AddAssign, Neg, Sub, SubAssign};
use std::str::FromStr;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

pub use resources::{
    ResourceList, ResourceListError, Shortfall, add_resources, fits, max_resources,
    parse_resource_list, subtract_resources, to_k8s_resource_list,
};

/// Nano-units per unit.
const NANO: i128 = 1_000_000_000;

/// Why a string is not a quantity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// The string is empty.
    #[error("invalid quantity \"\": quantities must not be empty")]
    Empty,
    /// An unexpected character (or the end of the string) at `position`.
    #[error(
        "invalid quantity {input:?}: found {} at byte {position}, expected {expected} (quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$')",
        describe(.found)
    )]
    Syntax {
        /// The whole input.
        input: String,
        /// Byte offset of the problem.
        position: usize,
        /// The character found there; `None` at the end of the string.
        found: Option<char>,
        /// What would have been valid there.
        expected: &'static str,
    },
    /// The characters after the number form no known suffix (`1Zi`, `1K`,
    /// `1e`).
    #[error(
        "invalid quantity {input:?}: unknown suffix {suffix:?} (expected one of n, u, m, k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei or e<exponent>)"
    )]
    UnknownSuffix {
        /// The whole input.
        input: String,
        /// The suffix as written.
        suffix: String,
    },
    /// The exponent of `e<exponent>` is outside the 64-bit range (upstream
    /// rejects these too).
    #[error("invalid quantity {input:?}: exponent out of range")]
    ExponentOutOfRange {
        /// The whole input.
        input: String,
    },
    /// The value is too large to represent (over about 1.7e29 units).
    #[error("invalid quantity {input:?}: value is too large")]
    Overflow {
        /// The whole input.
        input: String,
    },
}

fn describe(found: &Option<char>) -> String {
    found.map_or_else(|| "end of string".to_owned(), |c| format!("{c:?}"))
}

/// How a quantity is written, which decides how it prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Format {
    /// Decimal SI suffixes: `n`, `u`, `m`, none, `k`, `M`, `G`, `T`, `P`, `E`.
    #[default]
    DecimalSI,
    /// Binary SI suffixes: `Ki`, `Mi`, `Gi`, `Ti`, `Pi`, `Ei`.
    BinarySI,
    /// Decimal exponents: `1e3`, `5E-3`.
    DecimalExponent,
}

/// An exact quantity: a count of nano-units and the [`Format`] it prints in.
///
/// Equality, hashing and ordering are by value only (`1Gi == 1073741824`,
/// `1000m == 1`). Arithmetic is exact; `+` and `-` saturate at the
/// representable range (about ±1.7e29 units) where
/// [`checked_add`](Self::checked_add) and [`checked_sub`](Self::checked_sub)
/// report it. Like upstream, a sum or difference keeps the format of the
/// left operand unless that is zero.
///
/// `Display` prints upstream's canonical form (`CanonicalizeBytes`): the
/// format family is kept and the largest suffix that leaves an integer
/// mantissa is chosen (`1000m` → `1`, `1024Mi` → `1Gi`, `0.5` → `500m`,
/// `1e3` → `1e3`); binary quantities under 1024 or with a fraction print as
/// decimal SI. (Upstream also echoes some inputs verbatim, such as `+1`;
/// this type always prints the canonical form.)
#[derive(Debug, Clone, Copy, Default)]
pub struct ParsedQuantity {
    nanos: i128,
    format: Format,
}

impl ParsedQuantity {
    /// Zero, in decimal SI.
    #[must_use]
    pub const fn zero() -> Self {
        ParsedQuantity {
            nanos: 0,
            format: Format::DecimalSI,
        }
    }

    /// `value` whole units in `format` (upstream `NewQuantity`).
    ///
    /// ```
    /// use rk_core::quantity::{Format, ParsedQuantity};
    /// assert_eq!(ParsedQuantity::new(2048, Format::BinarySI).to_string(), "2Ki");
    /// assert_eq!(ParsedQuantity::new(2000, Format::DecimalSI).to_string(), "2k");
    /// ```
    #[must_use]
    pub fn new(value: i64, format: Format) -> Self {
        ParsedQuantity {
            nanos: i128::from(value) * NANO,
            format,
        }
    }

    /// `milli` thousandths of a unit, in decimal SI (upstream
    /// `NewMilliQuantity`), e.g. milli-CPU.
    ///
    /// ```
    /// use rk_core::quantity::ParsedQuantity;
    /// assert_eq!(ParsedQuantity::from_milli(250).to_string(), "250m");
    /// assert_eq!(ParsedQuantity::from_milli(2000).to_string(), "2");
    /// ```
    #[must_use]
    pub fn from_milli(milli: i64) -> Self {
        ParsedQuantity {
            nanos: i128::from(milli) * 1_000_000,
            format: Format::DecimalSI,
        }
    }

    /// `nanos` billionths of a unit in `format`. `i128::MIN` is clamped to
    /// `-i128::MAX` so that negation is always exact.
    #[must_use]
    pub fn from_nanos(nanos: i128, format: Format) -> Self {
        ParsedQuantity {
            nanos: nanos.max(-i128::MAX),
            format,
        }
    }

    /// The exact value, in nano-units.
    #[must_use]
    pub fn nanos(&self) -> i128 {
        self.nanos
    }

    /// The format the quantity prints in.
    #[must_use]
    pub fn format(&self) -> Format {
        self.format
    }

    /// The same value printed in another format.
    #[must_use]
    pub fn with_format(self, format: Format) -> Self {
        ParsedQuantity { format, ..self }
    }

    /// Whether the value is zero.
    #[must_use]
    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    /// Whether the value is below zero.
    #[must_use]
    pub fn is_negative(&self) -> bool {
        self.nanos < 0
    }

    /// The absolute value, in the same format.
    #[must_use]
    pub fn abs(self) -> Self {
        ParsedQuantity {
            nanos: self.nanos.abs(),
            ..self
        }
    }

    /// The value in whole units, rounded up away from zero (upstream
    /// `Value`); saturates at the `i64` range.
    ///
    /// ```
    /// use rk_core::quantity::ParsedQuantity;
    /// let q: ParsedQuantity = "1001m".parse()?;
    /// assert_eq!(q.value(), 2);
    /// # Ok::<(), rk_core::quantity::QuantityError>(())
    /// ```
    #[must_use]
    pub fn value(&self) -> i64 {
        round_away(self.nanos, NANO)
    }

    /// The value in thousandths, rounded up away from zero (upstream
    /// `MilliValue`); saturates at the `i64` range.
    #[must_use]
    pub fn milli_value(&self) -> i64 {
        round_away(self.nanos, 1_000_000)
    }

    /// `self + other`, or `None` if it does not fit.
    #[must_use]
    pub fn checked_add(self, other: Self) -> Option<Self> {
        let nanos = self
            .nanos
            .checked_add(other.nanos)
            .filter(|n| *n != i128::MIN)?;
        Some(ParsedQuantity {
            nanos,
            format: self.sum_format(other),
        })
    }

    /// `self - other`, or `None` if it does not fit.
    #[must_use]
    pub fn checked_sub(self, other: Self) -> Option<Self> {
        let nanos = self
            .nanos
            .checked_sub(other.nanos)
            .filter(|n| *n != i128::MIN)?;
        Some(ParsedQuantity {
            nanos,
            format: self.sum_format(other),
        })
    }

    /// Upstream: the result keeps the left format unless the left is zero.
    fn sum_format(self, other: Self) -> Format {
        if self.nanos == 0 {
            other.format
        } else {
            self.format
        }
    }
}

/// `ceil(|nanos| / divisor)` with the sign of `nanos`, saturated to `i64`.
fn round_away(nanos: i128, divisor: i128) -> i64 {
    let quotient = nanos / divisor;
    let rounded = match (nanos % divisor).cmp(&0) {
        Ordering::Greater => quotient + 1,
        Ordering::Less => quotient - 1,
        Ordering::Equal => quotient,
    };
    i64::try_from(rounded).unwrap_or(if rounded < 0 { i64::MIN } else { i64::MAX })
}

impl FromStr for ParsedQuantity {
    type Err = QuantityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse::parse(s)
    }
}

impl fmt::Display for ParsedQuantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nanos == 0 {
            return f.write_str("0");
        }
        let binary = self.format == Format::BinarySI
            && self.nanos.abs() >= 1024 * NANO
            && self.nanos % NANO == 0;
        if binary {
            const SUFFIXES: [&str; 7] = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
            let mut units = self.nanos / NANO;
            let mut power = 0;
            while power + 1 < SUFFIXES.len() && units % 1024 == 0 {
                units /= 1024;
                power += 1;
            }
            return write!(f, "{units}{}", SUFFIXES[power]);
        }
        // Move every factor of ten into the exponent, then back out until the
        // exponent is a multiple of three (so it has an SI suffix).
        let mut mantissa = self.nanos;
        let mut exponent: i32 = -9;
        while mantissa % 10 == 0 {
            mantissa /= 10;
            exponent += 1;
        }
        let excess = exponent.rem_euclid(3);
        mantissa *= 10i128.pow(excess.unsigned_abs());
        exponent -= excess;
        if self.format == Format::DecimalExponent {
            return if exponent == 0 {
                write!(f, "{mantissa}")
            } else {
                write!(f, "{mantissa}e{exponent}")
            };
        }
        if exponent > 18 {
            mantissa *= 10i128.pow((exponent - 18).unsigned_abs());
            exponent = 18;
        }
        let suffix = match exponent {
            -9 => "n",
            -6 => "u",
            -3 => "m",
            3 => "k",
            6 => "M",
            9 => "G",
            12 => "T",
            15 => "P",
            18 => "E",
            _ => "",
        };
        write!(f, "{mantissa}{suffix}")
    }
}

impl PartialEq for ParsedQuantity {
    fn eq(&self, other: &Self) -> bool {
        self.nanos == other.nanos
    }
}

impl Eq for ParsedQuantity {}

impl Hash for ParsedQuantity {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.nanos.hash(state);
    }
}

impl PartialOrd for ParsedQuantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ParsedQuantity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

impl Add for ParsedQuantity {
    type Output = ParsedQuantity;

    /// Exact sum, saturating at the representable range.
    fn add(self, other: Self) -> Self {
        let nanos = self.nanos.saturating_add(other.nanos).max(-i128::MAX);
        ParsedQuantity {
            nanos,
            format: self.sum_format(other),
        }
    }
}

impl Sub for ParsedQuantity {
    type Output = ParsedQuantity;

    /// Exact difference, saturating at the representable range.
    fn sub(self, other: Self) -> Self {
        let nanos = self.nanos.saturating_sub(other.nanos).max(-i128::MAX);
        ParsedQuantity {
            nanos,
            format: self.sum_format(other),
        }
    }
}

impl Neg for ParsedQuantity {
    type Output = ParsedQuantity;

    fn neg(self) -> Self {
        ParsedQuantity {
            nanos: -self.nanos,
            ..self
        }
    }
}

impl AddAssign for ParsedQuantity {
    fn add_assign(&mut self, other: Self) {
        *self = *self + other;
    }
}

impl SubAssign for ParsedQuantity {
    fn sub_assign(&mut self, other: Self) {
        *self = *self - other;
    }
}

impl Sum for ParsedQuantity {
    fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
        iter.fold(ParsedQuantity::zero(), Add::add)
    }
}

impl<'a> Sum<&'a ParsedQuantity> for ParsedQuantity {
    fn sum<I: Iterator<Item = &'a ParsedQuantity>>(iter: I) -> Self {
        iter.copied().sum()
    }
}

impl TryFrom<&Quantity> for ParsedQuantity {
    type Error = QuantityError;

    fn try_from(quantity: &Quantity) -> Result<Self, Self::Error> {
        quantity.0.parse()
    }
}

impl TryFrom<Quantity> for ParsedQuantity {
    type Error = QuantityError;

    fn try_from(quantity: Quantity) -> Result<Self, Self::Error> {
        quantity.0.parse()
    }
}

impl From<ParsedQuantity> for Quantity {
    /// The canonical string form.
    fn from(quantity: ParsedQuantity) -> Self {
        Quantity(quantity.to_string())
    }
}

impl From<&ParsedQuantity> for Quantity {
    /// The canonical string form.
    fn from(quantity: &ParsedQuantity) -> Self {
        Quantity(quantity.to_string())
    }
}

impl serde::Serialize for ParsedQuantity {
    /// As the canonical string.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for ParsedQuantity {
    /// From a string, or (as upstream accepts) a JSON number.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;

        impl serde::de::Visitor<'_> for Visitor {
            type Value = ParsedQuantity;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a quantity string such as \"100m\" or \"2Gi\", or a number")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ParsedQuantity, E> {
                v.parse().map_err(E::custom)
            }

            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ParsedQuantity, E> {
                Ok(ParsedQuantity::new(v, Format::DecimalSI))
            }

            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ParsedQuantity, E> {
                Ok(ParsedQuantity::from_nanos(
                    i128::from(v) * NANO,
                    Format::DecimalSI,
                ))
            }

            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<ParsedQuantity, E> {
                if !v.is_finite() {
                    return Err(E::custom(format!("{v} is not a quantity")));
                }
                // Rust prints the shortest string that reads back as `v`.
                v.to_string().parse().map_err(E::custom)
            }
        }

        deserializer.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests;
