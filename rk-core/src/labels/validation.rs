//! Name and label validation with upstream's rules and messages
//! (`k8s.io/apimachinery/pkg/util/validation`).
//!
//! Every `validate_*` function returns the list of problems, empty when the
//! input is valid, worded as kube-apiserver words them so the API server can
//! put them verbatim into the causes of a 422 response.
//!
//! ```
//! use rk_core::labels::{validate_dns1123_label, validate_label_key, validate_label_value};
//!
//! assert!(validate_label_key("app.kubernetes.io/name").is_empty());
//! assert!(validate_label_value("").is_empty());
//! assert!(!validate_dns1123_label("Web").is_empty());
//! ```

use std::collections::BTreeMap;
use std::fmt;

/// Longest name part of a qualified name (and longest label value).
pub const QUALIFIED_NAME_MAX_LENGTH: usize = 63;
/// Longest label value.
pub const LABEL_VALUE_MAX_LENGTH: usize = 63;
/// Longest RFC 1123 label.
pub const DNS1123_LABEL_MAX_LENGTH: usize = 63;
/// Longest RFC 1123 subdomain.
pub const DNS1123_SUBDOMAIN_MAX_LENGTH: usize = 253;

const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_ERR: &str = "must consist of alphanumeric characters, '-', '_' or '.', \
     and must start and end with an alphanumeric character";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_ERR: &str = "a valid label must be an empty string or consist of alphanumeric \
     characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_LABEL_ERR: &str = "a lowercase RFC 1123 label must consist of lower case \
     alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FMT: &str =
    "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_ERR: &str = "a lowercase RFC 1123 subdomain must consist of lower case \
     alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";

/// Upstream's `MaxLenError`.
fn max_len_error(length: usize) -> String {
    format!("must be no more than {length} characters")
}

/// Upstream's `RegexError`, including its double spaces between examples.
fn regex_error(msg: &str, regex: &str, examples: &[&str]) -> String {
    let mut out = String::from(msg);
    if examples.is_empty() {
        out.push_str(" (regex used for validation is '");
    } else {
        out.push_str(" (e.g. ");
        for (i, example) in examples.iter().enumerate() {
            if i > 0 {
                out.push_str(" or ");
            }
            out.push('\'');
            out.push_str(example);
            out.push_str("', ");
        }
        out.push_str("regex used for validation is '");
    }
    out.push_str(regex);
    out.push_str("')");
    out
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`
fn is_qualified_name_part(s: &str) -> bool {
    let bytes = s.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(&first), Some(&last)) => {
            is_alnum(first)
                && is_alnum(last)
                && bytes
                    .iter()
                    .all(|&b| is_alnum(b) || b == b'-' || b == b'_' || b == b'.')
        }
        _ => false,
    }
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`
fn is_dns1123_label(s: &str) -> bool {
    let bytes = s.as_bytes();
    let lower_alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    match (bytes.first(), bytes.last()) {
        (Some(&first), Some(&last)) => {
            lower_alnum(first)
                && lower_alnum(last)
                && bytes.iter().all(|&b| lower_alnum(b) || b == b'-')
        }
        _ => false,
    }
}

/// Checks a qualified name: an optional DNS-1123 subdomain prefix and `/`,
/// then a name of at most 63 characters matching
/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]` (upstream `IsQualifiedName`).
/// Label keys, annotation keys and finalizer names are qualified names.
#[must_use]
pub fn validate_qualified_name(value: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let mut parts = value.split('/');
    let (prefix, name) = match (parts.next(), parts.next(), parts.next()) {
        (Some(name), None, _) => (None, name),
        (Some(prefix), Some(name), None) => (Some(prefix), name),
        _ => {
            problems.push(format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(QUALIFIED_NAME_ERR, QUALIFIED_NAME_FMT, &["MyName", "my.name", "123-abc"])
            ));
            return problems;
        }
    };
    if let Some(prefix) = prefix {
        if prefix.is_empty() {
            problems.push("prefix part must be non-empty".to_owned());
        } else {
            problems.extend(
                validate_dns1123_subdomain(prefix)
                    .into_iter()
                    .map(|p| format!("prefix part {p}")),
            );
        }
    }
    if name.is_empty() {
        problems.push("name part must be non-empty".to_owned());
    } else if name.len() > QUALIFIED_NAME_MAX_LENGTH {
        problems.push(format!(
            "name part {}",
            max_len_error(QUALIFIED_NAME_MAX_LENGTH)
        ));
    }
    if !is_qualified_name_part(name) {
        problems.push(format!(
            "name part {}",
            regex_error(
                QUALIFIED_NAME_ERR,
                QUALIFIED_NAME_FMT,
                &["MyName", "my.name", "123-abc"]
            )
        ));
    }
    problems
}

/// Checks a label key; label keys are qualified names (upstream `IsLabelKey`).
#[must_use]
pub fn validate_label_key(key: &str) -> Vec<String> {
    validate_qualified_name(key)
}

/// Checks a label value: empty, or at most 63 characters matching
/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]` (upstream `IsValidLabelValue`).
#[must_use]
pub fn validate_label_value(value: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if value.len() > LABEL_VALUE_MAX_LENGTH {
        problems.push(max_len_error(LABEL_VALUE_MAX_LENGTH));
    }
    if !value.is_empty() && !is_qualified_name_part(value) {
        problems.push(regex_error(
            LABEL_VALUE_ERR,
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    problems
}

/// Checks an RFC 1123 label: at most 63 lower-case alphanumerics or `-`,
/// starting and ending alphanumeric (upstream `IsDNS1123Label`). Namespace
/// and Service names are labels.
#[must_use]
pub fn validate_dns1123_label(value: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if value.len() > DNS1123_LABEL_MAX_LENGTH {
        problems.push(max_len_error(DNS1123_LABEL_MAX_LENGTH));
    }
    if !is_dns1123_label(value) {
        problems.push(regex_error(
            DNS1123_LABEL_ERR,
            DNS1123_LABEL_FMT,
            &["my-name", "123-abc"],
        ));
    }
    problems
}

/// Checks an RFC 1123 subdomain: at most 253 characters, dot-separated RFC
/// 1123 labels (upstream `IsDNS1123Subdomain`). Most object names are
/// subdomains.
#[must_use]
pub fn validate_dns1123_subdomain(value: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        problems.push(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH));
    }
    if !value.split('.').all(is_dns1123_label) {
        problems.push(regex_error(
            DNS1123_SUBDOMAIN_ERR,
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    problems
}

/// One problem found in a label map by [`validate_labels`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelProblem {
    /// The key is not a qualified name (upstream reports it at `metadata.labels`).
    Key {
        /// The offending key.
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// The value is not a valid label value (upstream reports it at
    /// `metadata.labels[<key>]`).
    Value {
        /// The key whose value is wrong.
        key: String,
        /// The offending value.
        value: String,
        /// What is wrong with it.
        message: String,
    },
}

impl fmt::Display for LabelProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LabelProblem::Key { key, message } => write!(f, "Invalid value: {key:?}: {message}"),
            LabelProblem::Value {
                key,
                value,
                message,
            } => {
                write!(f, "[{key}]: Invalid value: {value:?}: {message}")
            }
        }
    }
}

/// Checks every key and value of a label map (upstream `ValidateLabels`):
/// one [`LabelProblem`] per bad key or value, its messages joined by `"; "`.
/// Empty when the map is valid.
#[must_use]
pub fn validate_labels(labels: &BTreeMap<String, String>) -> Vec<LabelProblem> {
    let mut problems = Vec::new();
    for (key, value) in labels {
        let key_problems = validate_label_key(key);
        if !key_problems.is_empty() {
            problems.push(LabelProblem::Key {
                key: key.clone(),
                message: key_problems.join("; "),
            });
        }
        let value_problems = validate_label_value(value);
        if !value_problems.is_empty() {
            problems.push(LabelProblem::Value {
                key: key.clone(),
                value: value.clone(),
                message: value_problems.join("; "),
            });
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_and_prefixed_keys_are_valid() {
        for key in [
            "a",
            "app",
            "A.b_c-d",
            "example.com/name",
            "kubernetes.io/os",
            "a/b",
            "1",
        ] {
            assert!(
                validate_label_key(key).is_empty(),
                "{key}: {:?}",
                validate_label_key(key)
            );
        }
    }

    #[test]
    fn key_with_two_slashes_is_one_problem() {
        let problems = validate_label_key("a/b/c");
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].starts_with("a qualified name must consist of"),
            "{problems:?}"
        );
    }

    #[test]
    fn empty_key_reports_empty_and_regex() {
        let problems = validate_label_key("");
        assert_eq!(problems[0], "name part must be non-empty");
        assert_eq!(problems.len(), 2);
    }

    #[test]
    fn key_messages_match_upstream_wording() {
        let problems = validate_label_key("-a");
        assert_eq!(
            problems,
            vec![
                "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end \
                 with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used \
                 for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
                    .to_owned()
            ]
        );
    }

    #[test]
    fn uppercase_or_empty_prefix_is_rejected() {
        assert!(
            validate_label_key("Example.com/a")[0]
                .starts_with("prefix part a lowercase RFC 1123 subdomain")
        );
        assert_eq!(
            validate_label_key("/a"),
            vec!["prefix part must be non-empty".to_owned()]
        );
    }

    #[test]
    fn name_part_longer_than_63_is_rejected() {
        let long = "a".repeat(64);
        assert_eq!(
            validate_label_key(&long),
            vec!["name part must be no more than 63 characters".to_owned()]
        );
        assert!(validate_label_key(&"a".repeat(63)).is_empty());
    }

    #[test]
    fn label_values_may_be_empty_but_not_start_with_dash() {
        assert!(validate_label_value("").is_empty());
        assert!(validate_label_value("v1.2_3-x").is_empty());
        assert_eq!(validate_label_value("-x").len(), 1);
        assert_eq!(validate_label_value("x y").len(), 1);
        assert_eq!(
            validate_label_value(&"a".repeat(64)),
            vec!["must be no more than 63 characters".to_owned()]
        );
    }

    #[test]
    fn dns1123_label_is_lowercase_and_short() {
        assert!(validate_dns1123_label("my-name-1").is_empty());
        assert_eq!(validate_dns1123_label("My").len(), 1);
        assert_eq!(validate_dns1123_label("a.b").len(), 1);
        assert_eq!(validate_dns1123_label("").len(), 1);
        assert_eq!(validate_dns1123_label(&"a".repeat(64)).len(), 1);
    }

    #[test]
    fn dns1123_subdomain_allows_dots_but_not_empty_segments() {
        assert!(validate_dns1123_subdomain("example.com").is_empty());
        assert!(validate_dns1123_subdomain("a-b.c1").is_empty());
        assert_eq!(validate_dns1123_subdomain("a..b").len(), 1);
        assert_eq!(validate_dns1123_subdomain(".a").len(), 1);
        assert_eq!(validate_dns1123_subdomain("a_b").len(), 1);
        let long = vec!["a".repeat(63); 4].join(".");
        assert_eq!(
            validate_dns1123_subdomain(&long),
            vec!["must be no more than 253 characters".to_owned()]
        );
    }

    #[test]
    fn validate_labels_reports_bad_keys_and_values_separately() {
        let labels: BTreeMap<String, String> = [("ok", "fine"), ("bad key", "x"), ("k", "-bad")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let problems = validate_labels(&labels);
        assert_eq!(problems.len(), 2);
        assert!(matches!(&problems[0], LabelProblem::Key { key, .. } if key == "bad key"));
        assert!(
            matches!(&problems[1], LabelProblem::Value { key, value, .. } if key == "k" && value == "-bad")
        );
    }
}
