//! Label selector matching for the predicates.
//!
//! A private stand-in for `crate::labels` covering what the predicates need:
//! `LabelSelector` (`matchLabels` plus `matchExpressions` with `In`, `NotIn`,
//! `Exists`, `DoesNotExist`) with upstream's `LabelSelectorAsSelector`
//! semantics: a missing selector selects nothing, an empty one everything.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::PredicateError;

/// One compiled requirement of a selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Requirement {
    In(String, BTreeSet<String>),
    NotIn(String, BTreeSet<String>),
    Exists(String),
    DoesNotExist(String),
}

impl Requirement {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Self::In(key, values) => labels.get(key).is_some_and(|v| values.contains(v)),
            Self::NotIn(key, values) => labels.get(key).is_none_or(|v| !values.contains(v)),
            Self::Exists(key) => labels.contains_key(key),
            Self::DoesNotExist(key) => !labels.contains_key(key),
        }
    }
}

/// A compiled label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Selector {
    /// Selects no object (a missing selector).
    Nothing,
    /// Selects objects meeting every requirement (none: every object).
    All(Vec<Requirement>),
}

impl Selector {
    /// Compiles an optional `LabelSelector`: `None` selects nothing.
    pub(crate) fn from_optional(selector: Option<&LabelSelector>) -> Result<Self, PredicateError> {
        selector.map_or(Ok(Self::Nothing), Self::from_label_selector)
    }

    /// Compiles a `LabelSelector`; an empty one selects everything.
    pub(crate) fn from_label_selector(selector: &LabelSelector) -> Result<Self, PredicateError> {
        let mut requirements = Vec::new();
        for (key, value) in selector.match_labels.iter().flatten() {
            requirements.push(Requirement::In(
                key.clone(),
                BTreeSet::from([value.clone()]),
            ));
        }
        for expr in selector.match_expressions.iter().flatten() {
            let values: BTreeSet<String> = expr.values.iter().flatten().cloned().collect();
            let key = expr.key.clone();
            let requirement = match expr.operator.as_str() {
                "In" | "NotIn" if values.is_empty() => {
                    return Err(PredicateError::InvalidLabelSelector(format!(
                        "key {key:?}: values must be non-empty for operator {}",
                        expr.operator
                    )));
                }
                "Exists" | "DoesNotExist" if !values.is_empty() => {
                    return Err(PredicateError::InvalidLabelSelector(format!(
                        "key {key:?}: values must be empty for operator {}",
                        expr.operator
                    )));
                }
                "In" => Requirement::In(key, values),
                "NotIn" => Requirement::NotIn(key, values),
                "Exists" => Requirement::Exists(key),
                "DoesNotExist" => Requirement::DoesNotExist(key),
                other => {
                    return Err(PredicateError::InvalidLabelSelector(format!(
                        "key {key:?}: unknown operator {other:?}"
                    )));
                }
            };
            requirements.push(requirement);
        }
        Ok(Self::All(requirements))
    }

    /// Adds `key In (value)` (`in_set`) or `key NotIn (value)`; on [`Selector::Nothing`]
    /// this is a no-op, as upstream's `Nothing().Add(...)` is.
    pub(crate) fn add(&mut self, key: &str, value: &str, in_set: bool) {
        if let Self::All(requirements) = self {
            let values = BTreeSet::from([value.to_owned()]);
            requirements.push(if in_set {
                Requirement::In(key.to_owned(), values)
            } else {
                Requirement::NotIn(key.to_owned(), values)
            });
        }
    }

    /// Whether the labels satisfy the selector.
    pub(crate) fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Self::Nothing => false,
            Self::All(requirements) => requirements.iter().all(|r| r.matches(labels)),
        }
    }

    /// Whether the (optional) labels satisfy the selector.
    pub(crate) fn matches_opt(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        match labels {
            Some(labels) => self.matches(labels),
            None => self.matches(&BTreeMap::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|v| (*v).to_owned()).collect()),
        }
    }

    #[test]
    fn missing_selector_selects_nothing_and_empty_selects_everything() {
        let l = labels(&[("app", "web")]);
        assert_eq!(
            Selector::from_optional(None).map(|s| s.matches(&l)),
            Ok(false)
        );
        let empty = LabelSelector::default();
        assert_eq!(
            Selector::from_optional(Some(&empty)).map(|s| s.matches(&l)),
            Ok(true)
        );
    }

    #[test]
    fn match_labels_and_expressions_are_anded() {
        let sel = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: Some(vec![
                expr("tier", "In", &["fe", "be"]),
                expr("canary", "DoesNotExist", &[]),
                expr("env", "NotIn", &["prod"]),
                expr("app", "Exists", &[]),
            ]),
        };
        let Ok(sel) = Selector::from_label_selector(&sel) else {
            panic!("valid selector rejected");
        };
        assert!(sel.matches(&labels(&[("app", "web"), ("tier", "fe")])));
        assert!(!sel.matches(&labels(&[("app", "web"), ("tier", "fe"), ("env", "prod")])));
        assert!(!sel.matches(&labels(&[("app", "web"), ("tier", "fe"), ("canary", "")])));
        assert!(!sel.matches(&labels(&[("app", "db"), ("tier", "fe")])));
        assert!(!sel.matches(&labels(&[("app", "web")])));
    }

    #[test]
    fn malformed_expressions_are_errors() {
        for e in [
            expr("a", "In", &[]),
            expr("a", "Exists", &["x"]),
            expr("a", "Near", &["x"]),
        ] {
            let sel = LabelSelector {
                match_expressions: Some(vec![e]),
                ..LabelSelector::default()
            };
            assert!(Selector::from_label_selector(&sel).is_err());
        }
    }
}
