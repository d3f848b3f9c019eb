//! Label selectors with upstream's semantics (`k8s.io/apimachinery/pkg/labels`).
//!
//! A [`Selector`] is a list of [`Requirement`]s that must all hold. Parse one
//! from the string form used by `kubectl -l` and the `labelSelector` query
//! parameter, or convert one from the `LabelSelector` of an object's spec.
//!
//! ```
//! use std::collections::BTreeMap;
//! use rk_core::labels::Selector;
//!
//! let selector: Selector = "tier in (web, api), env!=prod, !canary".parse()?;
//! // Printed in canonical form: sorted by key, `in` values sorted.
//! assert_eq!(selector.to_string(), "!canary,env!=prod,tier in (api,web)");
//!
//! let labels: BTreeMap<String, String> =
//!     [("tier".to_owned(), "web".to_owned())].into_iter().collect();
//! // `!=` and `notin` match when the key is absent.
//! assert!(selector.matches(&labels));
//! # Ok::<(), rk_core::labels::SelectorError>(())
//! ```
//!
//! Name and label validation (for the API server's 422 causes) lives in
//! [`validation`] and is re-exported here.

mod parse;
pub mod validation;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

pub use validation::{
    LabelProblem, validate_dns1123_label, validate_dns1123_subdomain, validate_label_key,
    validate_label_value, validate_labels, validate_qualified_name,
};

/// Why a selector string or `LabelSelector` is not a valid selector.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// The string is not well formed: at byte `position` the parser found
    /// `found` (empty at the end of the string) where it expected `expected`.
    #[error("unable to parse requirement: found {} at byte {position}, expected: {expected}", describe_found(.found))]
    Syntax {
        /// Byte offset of the unexpected token.
        position: usize,
        /// The unexpected token; empty for the end of the string.
        found: String,
        /// What the parser expected there.
        expected: &'static str,
    },
    /// The key is not a valid label key.
    #[error("{}invalid label key {key:?}: {}", at(.position), .problems.join("; "))]
    InvalidKey {
        /// Byte offset of the key, when parsed from a string.
        position: Option<usize>,
        /// The key.
        key: String,
        /// Upstream-worded problems, as [`validate_label_key`] returns them.
        problems: Vec<String>,
    },
    /// A value is not a valid label value.
    #[error("{}invalid label value {value:?} for key {key:?}: {}", at(.position), .problems.join("; "))]
    InvalidValue {
        /// Byte offset of the value, when parsed from a string.
        position: Option<usize>,
        /// The key the value belongs to.
        key: String,
        /// The value.
        value: String,
        /// Upstream-worded problems, as [`validate_label_value`] returns them.
        problems: Vec<String>,
    },
    /// The values do not suit the operator (count, or not an integer for
    /// `>`/`<`).
    #[error("{}invalid values for key {key:?}: {reason}", at(.position))]
    InvalidValues {
        /// Byte offset of the first value concerned, when parsed from a string.
        position: Option<usize>,
        /// The key.
        key: String,
        /// Upstream's wording of the rule broken.
        reason: &'static str,
    },
    /// A `LabelSelector` expression has an operator other than `In`,
    /// `NotIn`, `Exists` or `DoesNotExist`.
    #[error("{operator:?} is not a valid label selector operator")]
    UnknownOperator {
        /// The operator as written.
        operator: String,
    },
}

fn describe_found(found: &str) -> String {
    if found.is_empty() {
        "end of string".to_owned()
    } else {
        format!("'{found}'")
    }
}

fn at(position: &Option<usize>) -> String {
    position
        .map(|p| format!("at byte {p}: "))
        .unwrap_or_default()
}

/// How a [`Requirement`] relates a label's value to its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operator {
    /// `key=value`: the label exists with this value.
    Equals,
    /// `key==value`: the same as [`Operator::Equals`], printed as written.
    DoubleEquals,
    /// `key!=value`: the label is absent or has another value.
    NotEquals,
    /// `key in (a,b)`: the label exists with one of the values.
    In,
    /// `key notin (a,b)`: the label is absent or has none of the values.
    NotIn,
    /// `key`: the label exists.
    Exists,
    /// `!key`: the label is absent.
    DoesNotExist,
    /// `key>n`: the label exists and is an integer greater than `n`.
    GreaterThan,
    /// `key<n`: the label exists and is an integer less than `n`.
    LessThan,
}

/// One condition of a [`Selector`]: a key, an [`Operator`] and values.
///
/// Built only by parsing, [`Requirement::new`] or conversion, so it is always
/// valid: the key is a valid label key, every value a valid label value, and
/// the values suit the operator. Values are kept sorted and de-duplicated.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Requirement {
    key: String,
    operator: Operator,
    values: Vec<String>,
}

const NO_POSITION: usize = usize::MAX;

fn position(p: usize) -> Option<usize> {
    (p != NO_POSITION).then_some(p)
}

impl Requirement {
    /// Builds a requirement with upstream's `NewRequirement` rules: `in` and
    /// `notin` need at least one value; `=`, `==`, `!=`, `>` and `<` exactly
    /// one (an integer for `>`/`<`); exists and does-not-exist none; the key
    /// and every value must be valid.
    ///
    /// ```
    /// use rk_core::labels::{Operator, Requirement};
    ///
    /// let r = Requirement::new("tier", Operator::In, ["web", "api"])?;
    /// assert_eq!(r.to_string(), "tier in (api,web)");
    /// assert!(Requirement::new("tier", Operator::In, Vec::<String>::new()).is_err());
    /// # Ok::<(), rk_core::labels::SelectorError>(())
    /// ```
    pub fn new<I, S>(key: &str, operator: Operator, values: I) -> Result<Self, SelectorError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let values: Vec<S> = values.into_iter().collect();
        let spanned: Vec<(&str, usize)> =
            values.iter().map(|v| (v.as_ref(), NO_POSITION)).collect();
        Self::build((key, NO_POSITION), operator, &spanned)
    }

    /// Validates and builds; positions are [`NO_POSITION`] when unknown.
    fn build(
        (key, key_position): (&str, usize),
        operator: Operator,
        values: &[(&str, usize)],
    ) -> Result<Self, SelectorError> {
        let problems = validate_label_key(key);
        if !problems.is_empty() {
            return Err(SelectorError::InvalidKey {
                position: position(key_position),
                key: key.to_owned(),
                problems,
            });
        }
        let first_value = values.first().map_or(NO_POSITION, |v| v.1);
        let invalid = |reason| SelectorError::InvalidValues {
            position: position(first_value),
            key: key.to_owned(),
            reason,
        };
        match operator {
            Operator::In | Operator::NotIn if values.is_empty() => {
                return Err(invalid(
                    "for 'in', 'notin' operators, values set can't be empty",
                ));
            }
            Operator::Equals | Operator::DoubleEquals | Operator::NotEquals
                if values.len() != 1 =>
            {
                return Err(invalid(
                    "exact-match compatibility requires one single value",
                ));
            }
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                return Err(invalid(
                    "values set must be empty for exists and does not exist",
                ));
            }
            Operator::GreaterThan | Operator::LessThan => {
                if values.len() != 1 {
                    return Err(invalid(
                        "for 'Gt', 'Lt' operators, exactly one value is required",
                    ));
                }
                if values.iter().any(|(v, _)| v.parse::<i64>().is_err()) {
                    return Err(invalid(
                        "for 'Gt', 'Lt' operators, the value must be an integer",
                    ));
                }
            }
            _ => {}
        }
        for &(value, value_position) in values {
            let problems = validate_label_value(value);
            if !problems.is_empty() {
                return Err(SelectorError::InvalidValue {
                    position: position(value_position),
                    key: key.to_owned(),
                    value: value.to_owned(),
                    problems,
                });
            }
        }
        let values: BTreeSet<&str> = values.iter().map(|(v, _)| *v).collect();
        Ok(Requirement {
            key: key.to_owned(),
            operator,
            values: values.into_iter().map(str::to_owned).collect(),
        })
    }

    /// The label key.
    #[must_use]
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The operator.
    #[must_use]
    pub fn operator(&self) -> Operator {
        self.operator
    }

    /// The values, sorted and de-duplicated; empty for exists and
    /// does-not-exist.
    #[must_use]
    pub fn values(&self) -> &[String] {
        &self.values
    }

    /// Whether a label set satisfies this requirement, looking labels up
    /// with `lookup`. `!=` and `notin` match when the key is absent; `>` and
    /// `<` never match a value that is not an integer.
    pub fn matches_with<'a>(&self, lookup: impl Fn(&str) -> Option<&'a str>) -> bool {
        let has = |value: &str| self.values.iter().any(|v| v == value);
        match self.operator {
            Operator::Equals | Operator::DoubleEquals | Operator::In => {
                lookup(&self.key).is_some_and(has)
            }
            Operator::NotEquals | Operator::NotIn => !lookup(&self.key).is_some_and(has),
            Operator::Exists => lookup(&self.key).is_some(),
            Operator::DoesNotExist => lookup(&self.key).is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let Some(actual) = lookup(&self.key).and_then(|v| v.parse::<i64>().ok()) else {
                    return false;
                };
                let Some(bound) = self.values.first().and_then(|v| v.parse::<i64>().ok()) else {
                    return false;
                };
                if self.operator == Operator::GreaterThan {
                    actual > bound
                } else {
                    actual < bound
                }
            }
        }
    }

    /// Whether `labels` satisfies this requirement.
    #[must_use]
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matches_with(|key| labels.get(key).map(String::as_str))
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.operator {
            Operator::DoesNotExist => return write!(f, "!{}", self.key),
            Operator::Exists => return f.write_str(&self.key),
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::GreaterThan => ">",
            Operator::LessThan => "<",
            Operator::In => " in ",
            Operator::NotIn => " notin ",
        };
        let values = self.values.join(",");
        if matches!(self.operator, Operator::In | Operator::NotIn) {
            write!(f, "{}{op}({values})", self.key)
        } else {
            write!(f, "{}{op}{values}", self.key)
        }
    }
}

/// A label selector: the conjunction of its [`Requirement`]s, kept sorted by
/// key. The empty selector matches everything.
///
/// `FromStr` accepts every form upstream's `labels.Parse` accepts;
/// `Display` prints upstream's canonical `String()` form, which parses back
/// to an equal selector.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

impl Selector {
    /// The selector that matches every label set.
    #[must_use]
    pub fn everything() -> Self {
        Self::default()
    }

    /// Whether the selector has no requirements (and so matches everything).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The requirements, sorted by key (stable: requirements on one key keep
    /// their written order).
    #[must_use]
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// Builds a selector from requirements, sorting them by key.
    #[must_use]
    pub fn from_requirements(requirements: impl IntoIterator<Item = Requirement>) -> Self {
        let mut requirements: Vec<Requirement> = requirements.into_iter().collect();
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Selector { requirements }
    }

    /// A selector requiring every `key=value` of `labels` (upstream
    /// `ValidatedSelectorFromSet`); an empty map gives [`Selector::everything`].
    pub fn from_labels(labels: &BTreeMap<String, String>) -> Result<Self, SelectorError> {
        let requirements = labels
            .iter()
            .map(|(key, value)| Requirement::new(key, Operator::Equals, [value]))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::from_requirements(requirements))
    }

    /// Adds a requirement, keeping the requirements sorted by key.
    #[must_use]
    pub fn and(mut self, requirement: Requirement) -> Self {
        let at = self
            .requirements
            .partition_point(|r| r.key <= requirement.key);
        self.requirements.insert(at, requirement);
        self
    }

    /// Whether `labels` satisfies every requirement.
    #[must_use]
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Whether the labels that `lookup` returns satisfy every requirement.
    pub fn matches_with<'a>(&self, lookup: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.requirements.iter().all(|r| r.matches_with(&lookup))
    }

    /// The value the selector pins `key` to, when its first requirement on
    /// `key` is `=`, `==`, or `in` with a single value (upstream
    /// `RequiresExactMatch`; lets an indexer answer the query).
    #[must_use]
    pub fn requires_exact_match(&self, key: &str) -> Option<&str> {
        let requirement = self.requirements.iter().find(|r| r.key == key)?;
        match (requirement.operator, requirement.values.as_slice()) {
            (Operator::Equals | Operator::DoubleEquals | Operator::In, [value]) => Some(value),
            _ => None,
        }
    }
}

impl FromStr for Selector {
    type Err = SelectorError;

    /// Parses the string form; the empty string is [`Selector::everything`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse::parse(s).map(Self::from_requirements)
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, requirement) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{requirement}")?;
        }
        Ok(())
    }
}

impl TryFrom<&LabelSelector> for Selector {
    type Error = SelectorError;

    /// Converts as upstream's `metav1.LabelSelectorAsSelector`: each
    /// `matchLabels` entry becomes `key=value`, each `matchExpressions` entry
    /// a requirement with operator `In`, `NotIn`, `Exists` or `DoesNotExist`.
    /// An empty `LabelSelector` matches everything. (An absent selector —
    /// `None` — matches nothing upstream; that case is the caller's.)
    ///
    /// ```
    /// use rk_core::k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    ///     LabelSelector, LabelSelectorRequirement,
    /// };
    /// use rk_core::labels::Selector;
    ///
    /// let ls = LabelSelector {
    ///     match_labels: Some([("app".to_owned(), "web".to_owned())].into_iter().collect()),
    ///     match_expressions: Some(vec![LabelSelectorRequirement {
    ///         key: "tier".to_owned(),
    ///         operator: "NotIn".to_owned(),
    ///         values: Some(vec!["db".to_owned()]),
    ///     }]),
    /// };
    /// assert_eq!(Selector::try_from(&ls)?.to_string(), "app=web,tier notin (db)");
    /// # Ok::<(), rk_core::labels::SelectorError>(())
    /// ```
    fn try_from(selector: &LabelSelector) -> Result<Self, Self::Error> {
        let mut requirements = Vec::new();
        for (key, value) in selector.match_labels.iter().flatten() {
            requirements.push(Requirement::new(key, Operator::Equals, [value])?);
        }
        for expression in selector.match_expressions.iter().flatten() {
            let operator = match expression.operator.as_str() {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => {
                    return Err(SelectorError::UnknownOperator {
                        operator: other.to_owned(),
                    });
                }
            };
            let values = expression.values.as_deref().unwrap_or_default();
            requirements.push(Requirement::new(&expression.key, operator, values)?);
        }
        Ok(Self::from_requirements(requirements))
    }
}

impl TryFrom<LabelSelector> for Selector {
    type Error = SelectorError;

    /// See the `TryFrom<&LabelSelector>` conversion.
    fn try_from(selector: LabelSelector) -> Result<Self, Self::Error> {
        Selector::try_from(&selector)
    }
}

#[cfg(test)]
mod tests;
