//! Field selectors with upstream's semantics (`k8s.io/apimachinery/pkg/fields`).
//!
//! A [`FieldSelector`] is a comma-separated list of `field=value`,
//! `field==value` or `field!=value` terms that must all hold. In values,
//! `\,`, `\=` and `\\` stand for `,`, `=` and `\`; an unescaped `,` ends the
//! term and an unescaped `=` is an error. A field absent from an object
//! reads as the empty string, so `spec.nodeName=` selects unscheduled pods.
//!
//! ```
//! use rk_core::fields::{FieldSelector, field_value};
//!
//! let selector: FieldSelector = "status.phase!=Succeeded,spec.nodeName=node-1".parse()?;
//! assert_eq!(selector.to_string(), "spec.nodeName=node-1,status.phase!=Succeeded");
//!
//! let pod = serde_json::json!({
//!     "metadata": {"name": "web", "namespace": "default"},
//!     "spec": {"nodeName": "node-1"},
//!     "status": {"phase": "Running"},
//! });
//! assert!(selector.for_kind("Pod")?.matches(|field| field_value("Pod", &pod, field)));
//! assert!("spec.replicas=3".parse::<FieldSelector>()?.for_kind("Deployment").is_err());
//! # Ok::<(), rk_core::fields::FieldSelectorError>(())
//! ```

mod object;

use std::fmt;
use std::str::FromStr;

pub use object::{
    field_value, object_field, selectable_field_values, selectable_fields, supported_fields,
};

/// Why a string is not a field selector, or names a field the kind does not
/// support.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldSelectorError {
    /// A term has no `=`, `==` or `!=`.
    #[error("invalid selector: '{selector}'; can't understand '{term}'")]
    CantUnderstand {
        /// The whole selector.
        selector: String,
        /// The term, as written.
        term: String,
        /// Byte offset of the term.
        position: usize,
    },
    /// A backslash followed by something other than `,`, `=` or `\`.
    #[error("invalid field selector: invalid escape sequence: {sequence} at byte {position}")]
    InvalidEscape {
        /// The backslash and the character after it (if any).
        sequence: String,
        /// Byte offset of the backslash.
        position: usize,
    },
    /// An `=` in a value that is not escaped.
    #[error(
        "invalid field selector: unescaped character in value: {character:?} at byte {position}"
    )]
    UnescapedCharacter {
        /// The character.
        character: char,
        /// Byte offset of the character.
        position: usize,
    },
    /// The kind cannot be selected on this field.
    #[error("field label not supported: {field}")]
    UnsupportedField {
        /// The field, as written.
        field: String,
    },
}

/// How a [`FieldRequirement`] compares a field with its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FieldOperator {
    /// `field=value` or `field==value`.
    Equals,
    /// `field!=value`.
    NotEquals,
}

/// One term of a [`FieldSelector`]: the field, the operator and the
/// (unescaped) value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldRequirement {
    /// The field path, e.g. `spec.nodeName`.
    pub field: String,
    /// The comparison.
    pub operator: FieldOperator,
    /// The value, unescaped; may be empty.
    pub value: String,
}

impl FieldRequirement {
    /// `field=value`.
    #[must_use]
    pub fn equals(field: impl Into<String>, value: impl Into<String>) -> Self {
        FieldRequirement {
            field: field.into(),
            operator: FieldOperator::Equals,
            value: value.into(),
        }
    }

    /// `field!=value`.
    #[must_use]
    pub fn not_equals(field: impl Into<String>, value: impl Into<String>) -> Self {
        FieldRequirement {
            field: field.into(),
            operator: FieldOperator::NotEquals,
            value: value.into(),
        }
    }

    /// Whether the field's value (absent reads as `""`) satisfies the term.
    #[must_use]
    pub fn matches(&self, actual: Option<&str>) -> bool {
        let equal = actual.unwrap_or_default() == self.value;
        match self.operator {
            FieldOperator::Equals => equal,
            FieldOperator::NotEquals => !equal,
        }
    }
}

impl fmt::Display for FieldRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.operator {
            FieldOperator::Equals => "=",
            FieldOperator::NotEquals => "!=",
        };
        write!(f, "{}{op}{}", self.field, escape_value(&self.value))
    }
}

/// A field selector: the conjunction of its [`FieldRequirement`]s. The
/// empty selector matches everything.
///
/// Parsing sorts the terms (as upstream does, so the printed form is
/// deterministic); `==` reads as `=`; empty terms (`a=b,,c=d`) are skipped.
/// `Display` prints the escaped canonical form, which parses back to an
/// equal selector.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// The selector that matches everything.
    #[must_use]
    pub fn everything() -> Self {
        Self::default()
    }

    /// A selector of the given terms, sorted by their printed form.
    #[must_use]
    pub fn from_requirements(requirements: impl IntoIterator<Item = FieldRequirement>) -> Self {
        let mut keyed: Vec<(String, FieldRequirement)> = requirements
            .into_iter()
            .map(|r| (r.to_string(), r))
            .collect();
        keyed.sort_by(|a, b| a.0.cmp(&b.0));
        FieldSelector {
            requirements: keyed.into_iter().map(|(_, r)| r).collect(),
        }
    }

    /// Whether the selector has no terms (and so matches everything).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The terms, in canonical order.
    #[must_use]
    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }

    /// Whether every term holds, reading fields with `get` (`None` reads as
    /// the empty string, as upstream).
    pub fn matches(&self, get: impl Fn(&str) -> Option<String>) -> bool {
        self.requirements
            .iter()
            .all(|r| r.matches(get(&r.field).as_deref()))
    }

    /// The value the selector pins `field` to with an `=` term, if any
    /// (upstream `RequiresExactMatch`; e.g. `spec.nodeName` for a kubelet's
    /// pod watch).
    #[must_use]
    pub fn requires_exact_match(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == field && r.operator == FieldOperator::Equals)
            .map(|r| r.value.as_str())
    }

    /// Checks every field against [`supported_fields`] for `kind`, renaming
    /// upstream's aliases (Pod `spec.host` → `spec.nodeName`). The first
    /// unsupported field is an error worded as upstream's
    /// (`field label not supported: foo`).
    pub fn for_kind(&self, kind: &str) -> Result<FieldSelector, FieldSelectorError> {
        let supported = supported_fields(kind);
        let requirements = self
            .requirements
            .iter()
            .map(|r| {
                let field = object::canonical_field(kind, &r.field);
                if supported.contains(&field) {
                    Ok(FieldRequirement {
                        field: field.to_owned(),
                        ..r.clone()
                    })
                } else {
                    Err(FieldSelectorError::UnsupportedField {
                        field: r.field.clone(),
                    })
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::from_requirements(requirements))
    }
}

impl FromStr for FieldSelector {
    type Err = FieldSelectorError;

    /// Parses the string form; the empty string is [`FieldSelector::everything`].
    fn from_str(selector: &str) -> Result<Self, Self::Err> {
        let mut requirements = Vec::new();
        for (start, term) in split_terms(selector) {
            if term.is_empty() {
                continue;
            }
            let Some((field, operator, value_offset)) = split_term(term) else {
                return Err(FieldSelectorError::CantUnderstand {
                    selector: selector.to_owned(),
                    term: term.to_owned(),
                    position: start,
                });
            };
            let raw_value = term.get(value_offset..).unwrap_or_default();
            let value = unescape(raw_value, start + value_offset)?;
            requirements.push(FieldRequirement {
                field: field.to_owned(),
                operator,
                value,
            });
        }
        Ok(Self::from_requirements(requirements))
    }
}

impl fmt::Display for FieldSelector {
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

/// Splits on commas not preceded by an escaping backslash; each term comes
/// with its byte offset.
fn split_terms(selector: &str) -> Vec<(usize, &str)> {
    if selector.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in selector.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' {
            terms.push((start, &selector[start..i]));
            start = i + 1;
        }
    }
    terms.push((start, &selector[start..]));
    terms
}

/// Finds the first operator (`!=`, `==` or `=`) in a term: the field, the
/// operator and the byte offset of the value.
fn split_term(term: &str) -> Option<(&str, FieldOperator, usize)> {
    term.char_indices().find_map(|(i, _)| {
        let rest = &term[i..];
        let (operator, len) = if rest.starts_with("!=") {
            (FieldOperator::NotEquals, 2)
        } else if rest.starts_with("==") {
            (FieldOperator::Equals, 2)
        } else if rest.starts_with('=') {
            (FieldOperator::Equals, 1)
        } else {
            return None;
        };
        Some((&term[..i], operator, i + len))
    })
}

/// Escapes `\`, `,` and `=` in a value (upstream `EscapeValue`).
///
/// ```
/// use rk_core::fields::{escape_value, unescape_value};
/// assert_eq!(escape_value(r"a,b=c\d"), r"a\,b\=c\\d");
/// assert_eq!(unescape_value(r"a\,b\=c\\d").as_deref(), Ok(r"a,b=c\d"));
/// ```
#[must_use]
pub fn escape_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Reverses [`escape_value`] (upstream `UnescapeValue`): an unknown escape
/// or an unescaped `,` or `=` is an error.
pub fn unescape_value(value: &str) -> Result<String, FieldSelectorError> {
    unescape(value, 0)
}

/// [`unescape_value`], with error positions offset by `base`.
fn unescape(value: &str, base: usize) -> Result<String, FieldSelectorError> {
    if !value.contains(['\\', ',', '=']) {
        return Ok(value.to_owned());
    }
    let mut out = String::with_capacity(value.len());
    let mut escape_at: Option<usize> = None;
    for (i, c) in value.char_indices() {
        if let Some(at) = escape_at.take() {
            if !matches!(c, '\\' | ',' | '=') {
                return Err(FieldSelectorError::InvalidEscape {
                    sequence: format!("\\{c}"),
                    position: base + at,
                });
            }
            out.push(c);
        } else if c == '\\' {
            escape_at = Some(i);
        } else if matches!(c, ',' | '=') {
            return Err(FieldSelectorError::UnescapedCharacter {
                character: c,
                position: base + i,
            });
        } else {
            out.push(c);
        }
    }
    if let Some(at) = escape_at {
        return Err(FieldSelectorError::InvalidEscape {
            sequence: "\\".to_owned(),
            position: base + at,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    fn parse(s: &str) -> FieldSelector {
        s.parse()
            .unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    fn getter(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |field| map.get(field).cloned()
    }

    #[test]
    fn empty_string_is_everything() {
        assert!(parse("").is_empty());
        assert!(parse(",").is_empty());
        assert!(parse("").matches(|_| None));
    }

    #[test]
    fn every_operator_parses_and_prints_canonically() {
        let cases = [
            ("metadata.name=x", "metadata.name=x"),
            ("metadata.namespace==y", "metadata.namespace=y"),
            ("spec.nodeName!=", "spec.nodeName!="),
            (
                "status.phase=Running,metadata.name=a",
                "metadata.name=a,status.phase=Running",
            ),
            ("a=b,,c=d,", "a=b,c=d"),
            (r"a=x\,y\=z\\w", r"a=x\,y\=z\\w"),
            ("a==", "a="),
        ];
        for (input, canonical) in cases {
            assert_eq!(parse(input).to_string(), canonical, "input {input:?}");
        }
    }

    #[test]
    fn escaped_values_are_unescaped() {
        let selector = parse(r"a=x\,y\=z\\w");
        assert_eq!(selector.requirements()[0].value, r"x,y=z\w");
        assert_eq!(selector.requirements()[0].field, "a");
    }

    #[test]
    fn absent_field_reads_as_empty() {
        assert!(parse("spec.nodeName=").matches(getter(&[])));
        assert!(!parse("spec.nodeName!=").matches(getter(&[])));
        assert!(parse("spec.nodeName!=").matches(getter(&[("spec.nodeName", "n1")])));
        assert!(!parse("spec.nodeName=n1").matches(getter(&[])));
    }

    #[test]
    fn all_terms_must_match() {
        let selector = parse("a=1,b!=2");
        assert!(selector.matches(getter(&[("a", "1"), ("b", "3")])));
        assert!(!selector.matches(getter(&[("a", "1"), ("b", "2")])));
        assert!(!selector.matches(getter(&[("b", "3")])));
    }

    #[test]
    fn term_without_operator_is_rejected() {
        let err = "a=b,nonsense".parse::<FieldSelector>().err();
        assert_eq!(
            err,
            Some(FieldSelectorError::CantUnderstand {
                selector: "a=b,nonsense".to_owned(),
                term: "nonsense".to_owned(),
                position: 4
            })
        );
        assert_eq!(
            err.map(|e| e.to_string()).unwrap_or_default(),
            "invalid selector: 'a=b,nonsense'; can't understand 'nonsense'"
        );
    }

    #[test]
    fn unescaped_equals_in_value_is_rejected() {
        let err = "x=y,a=b=c".parse::<FieldSelector>().err();
        assert_eq!(
            err,
            Some(FieldSelectorError::UnescapedCharacter {
                character: '=',
                position: 7
            })
        );
    }

    #[test]
    fn unknown_escape_is_rejected() {
        let err = r"a=\x".parse::<FieldSelector>().err();
        assert_eq!(
            err,
            Some(FieldSelectorError::InvalidEscape {
                sequence: r"\x".to_owned(),
                position: 2
            })
        );
        let err = r"a=b\".parse::<FieldSelector>().err();
        assert_eq!(
            err,
            Some(FieldSelectorError::InvalidEscape {
                sequence: r"\".to_owned(),
                position: 3
            })
        );
    }

    #[test]
    fn requires_exact_match_finds_equals_terms_only() {
        let selector = parse("spec.nodeName=n1,status.phase!=Failed");
        assert_eq!(selector.requires_exact_match("spec.nodeName"), Some("n1"));
        assert_eq!(selector.requires_exact_match("status.phase"), None);
        assert_eq!(selector.requires_exact_match("metadata.name"), None);
    }

    #[test]
    fn unsupported_field_error_matches_upstream_wording() {
        let err = parse("foo=bar").for_kind("Pod").err();
        assert_eq!(
            err.map(|e| e.to_string()).unwrap_or_default(),
            "field label not supported: foo"
        );
        assert!(parse("metadata.name=a").for_kind("ConfigMap").is_ok());
        assert!(parse("type=Opaque").for_kind("Secret").is_ok());
        assert!(parse("type=Opaque").for_kind("ConfigMap").is_err());
    }

    #[test]
    fn pod_spec_host_is_renamed_to_node_name() {
        let selector = parse("spec.host=n1").for_kind("Pod").unwrap_or_default();
        assert_eq!(selector.to_string(), "spec.nodeName=n1");
    }

    #[test]
    fn multibyte_values_are_kept() {
        let selector = parse("metadata.name=ünïcode");
        assert_eq!(selector.requirements()[0].value, "ünïcode");
    }

    fn requirement() -> impl Strategy<Value = FieldRequirement> {
        (
            "[a-z]{1,6}(\\.[a-zA-Z]{1,6})?",
            prop::bool::ANY,
            "[a-z0-9,=\\\\ é-]{0,8}",
        )
            .prop_map(|(field, equals, value)| {
                if equals {
                    FieldRequirement::equals(field, value)
                } else {
                    FieldRequirement::not_equals(field, value)
                }
            })
    }

    proptest! {
        #[test]
        fn printed_selector_parses_back_to_itself(
            requirements in prop::collection::vec(requirement(), 0..5)
        ) {
            let selector = FieldSelector::from_requirements(requirements);
            let printed = selector.to_string();
            let reparsed: FieldSelector =
                printed.parse().map_err(|e| TestCaseError::fail(format!("{printed:?}: {e}")))?;
            prop_assert_eq!(reparsed, selector);
        }

        #[test]
        fn escaping_round_trips(value in ".{0,16}") {
            prop_assert_eq!(unescape_value(&escape_value(&value)), Ok(value));
        }

        #[test]
        fn parsing_arbitrary_input_never_panics(input in "[a-z.,=!\\\\é]{0,16}") {
            let _ = input.parse::<FieldSelector>();
        }
    }
}
