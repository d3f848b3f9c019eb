use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use proptest::prelude::*;

use super::*;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn parse(s: &str) -> Selector {
    match s.parse() {
        Ok(selector) => selector,
        Err(e) => panic!("{s:?} should parse: {e}"),
    }
}

fn parse_err(s: &str) -> SelectorError {
    match s.parse::<Selector>() {
        Ok(selector) => panic!("{s:?} should not parse, got {selector}"),
        Err(e) => e,
    }
}

#[test]
fn empty_string_is_everything() {
    let selector = parse("");
    assert!(selector.is_empty());
    assert_eq!(selector, Selector::everything());
    assert!(selector.matches(&labels(&[])));
    assert!(parse("   ").is_empty());
}

#[test]
fn every_upstream_form_parses_to_its_canonical_string() {
    let cases = [
        ("a=b", "a=b"),
        ("a==b", "a==b"),
        ("a!=b", "a!=b"),
        ("a in (x,y)", "a in (x,y)"),
        ("a in (y, x)", "a in (x,y)"),
        ("a notin (x)", "a notin (x)"),
        ("a", "a"),
        ("!a", "!a"),
        ("a=", "a="),
        ("a>1", "a>1"),
        ("a<10", "a<10"),
        ("  b = x ,a  in(z,y) , !c ", "a in (y,z),b=x,!c"),
        (
            "x in (foo,,baz),y,z notin ()",
            "x in (,baz,foo),y,z notin ()",
        ),
        ("a in (x,)", "a in (,x)"),
        ("a in (x,x)", "a in (x)"),
        ("example.com/app=web", "example.com/app=web"),
        (
            "in in (in),notin notin (notin)",
            "in in (in),notin notin (notin)",
        ),
        ("a=b,a!=c", "a=b,a!=c"),
    ];
    for (input, canonical) in cases {
        assert_eq!(parse(input).to_string(), canonical, "input {input:?}");
    }
}

#[test]
fn requirements_are_sorted_by_key() {
    let selector = parse("z=1,a=2,m");
    let keys: Vec<&str> = selector
        .requirements()
        .iter()
        .map(Requirement::key)
        .collect();
    assert_eq!(keys, ["a", "m", "z"]);
}

#[test]
fn equals_requires_key_present_with_value() {
    let selector = parse("a=b");
    assert!(selector.matches(&labels(&[("a", "b")])));
    assert!(!selector.matches(&labels(&[("a", "c")])));
    assert!(!selector.matches(&labels(&[])));
}

#[test]
fn empty_value_matches_only_empty_label() {
    let selector = parse("a=");
    assert!(selector.matches(&labels(&[("a", "")])));
    assert!(!selector.matches(&labels(&[("a", "x")])));
    assert!(!selector.matches(&labels(&[])));
}

#[test]
fn not_equals_matches_when_key_absent() {
    let selector = parse("a!=b");
    assert!(selector.matches(&labels(&[])));
    assert!(selector.matches(&labels(&[("a", "c")])));
    assert!(!selector.matches(&labels(&[("a", "b")])));
}

#[test]
fn notin_matches_when_key_absent() {
    let selector = parse("a notin (x,y)");
    assert!(selector.matches(&labels(&[])));
    assert!(selector.matches(&labels(&[("a", "z")])));
    assert!(!selector.matches(&labels(&[("a", "y")])));
}

#[test]
fn in_requires_one_of_the_values() {
    let selector = parse("a in (x,y)");
    assert!(selector.matches(&labels(&[("a", "x")])));
    assert!(!selector.matches(&labels(&[("a", "z")])));
    assert!(!selector.matches(&labels(&[])));
}

#[test]
fn exists_and_does_not_exist_look_only_at_the_key() {
    assert!(parse("a").matches(&labels(&[("a", "")])));
    assert!(!parse("a").matches(&labels(&[("b", "")])));
    assert!(parse("!a").matches(&labels(&[("b", "")])));
    assert!(!parse("!a").matches(&labels(&[("a", "x")])));
}

#[test]
fn greater_and_less_than_compare_integers() {
    let gt = parse("n>5");
    assert!(gt.matches(&labels(&[("n", "6")])));
    assert!(!gt.matches(&labels(&[("n", "5")])));
    assert!(!gt.matches(&labels(&[("n", "abc")])));
    assert!(!gt.matches(&labels(&[])));
    let lt = parse("n<5");
    assert!(lt.matches(&labels(&[("n", "-3")])));
    assert!(!lt.matches(&labels(&[("n", "10")])));
}

#[test]
fn gt_with_non_integer_value_is_rejected() {
    let err = parse_err("n>abc");
    assert!(
        matches!(&err, SelectorError::InvalidValues { position: Some(2), reason, .. } if reason.contains("integer")),
        "{err:?}"
    );
}

#[test]
fn all_requirements_must_match() {
    let selector = parse("a=b,c");
    assert!(selector.matches(&labels(&[("a", "b"), ("c", "d")])));
    assert!(!selector.matches(&labels(&[("a", "b")])));
}

#[test]
fn syntax_errors_name_the_position_and_the_expectation() {
    let cases: [(&str, usize, &str, &str); 10] = [
        ("a=b c", 4, "c", "',' or end of string"),
        ("a=b,", 4, "", "identifier after ','"),
        (",a", 0, ",", "'!', identifier, or end of string"),
        ("a in x", 5, "x", "'('"),
        ("a in (x y)", 8, "y", "',' or ')'"),
        ("a in (x", 7, "", "',' or ')'"),
        ("a in (=)", 6, "=", "',', ')' or identifier"),
        (
            "a (x)",
            2,
            "(",
            "one of '!=', '<', '=', '==', '>', 'in', 'notin'",
        ),
        ("a=(x)", 2, "(", "identifier"),
        ("!", 1, "", "identifier"),
    ];
    for (input, position, found, expected) in cases {
        let err = parse_err(input);
        assert_eq!(
            err,
            SelectorError::Syntax {
                position,
                found: found.to_owned(),
                expected
            },
            "input {input:?}"
        );
    }
}

#[test]
fn syntax_error_message_is_readable() {
    let message = parse_err("a=b c").to_string();
    assert_eq!(
        message,
        "unable to parse requirement: found 'c' at byte 4, expected: ',' or end of string"
    );
    let message = parse_err("a=b,").to_string();
    assert!(
        message.contains("found end of string at byte 4"),
        "{message}"
    );
}

#[test]
fn invalid_key_is_rejected_with_its_position() {
    let err = parse_err("a=b, -x=y");
    assert!(
        matches!(&err, SelectorError::InvalidKey { position: Some(5), key, .. } if key == "-x"),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with("at byte 5: invalid label key \"-x\": name part must consist")
    );
    assert!(matches!(
        parse_err(&"k".repeat(64)),
        SelectorError::InvalidKey { .. }
    ));
}

#[test]
fn invalid_value_is_rejected_with_its_position() {
    let err = parse_err("a in (ok, -bad)");
    assert!(
        matches!(&err, SelectorError::InvalidValue { position: Some(10), value, .. } if value == "-bad"),
        "{err:?}"
    );
    assert!(matches!(
        parse_err(&format!("a={}", "v".repeat(64))),
        SelectorError::InvalidValue { .. }
    ));
}

#[test]
fn negated_key_followed_by_operator_is_rejected() {
    assert!(matches!(
        parse_err("!a=b"),
        SelectorError::Syntax { position: 2, .. }
    ));
}

#[test]
fn non_ascii_input_is_an_error_not_a_panic() {
    assert!(matches!(
        parse_err("ключ=значение"),
        SelectorError::InvalidKey { .. }
    ));
    assert!(matches!(
        parse_err("a=é"),
        SelectorError::InvalidValue { .. }
    ));
}

#[test]
fn requires_exact_match_finds_pinned_values() {
    let selector = parse("a=x,b in (y),c in (y,z),d!=w");
    assert_eq!(selector.requires_exact_match("a"), Some("x"));
    assert_eq!(selector.requires_exact_match("b"), Some("y"));
    assert_eq!(selector.requires_exact_match("c"), None);
    assert_eq!(selector.requires_exact_match("d"), None);
    assert_eq!(selector.requires_exact_match("e"), None);
}

#[test]
fn and_keeps_requirements_sorted() {
    let selector = parse("a,c")
        .and(Requirement::new("b", Operator::Exists, [""; 0]).unwrap_or_else(|e| panic!("{e}")));
    assert_eq!(selector.to_string(), "a,b,c");
}

#[test]
fn requirement_new_enforces_value_counts() {
    assert!(Requirement::new("a", Operator::Equals, ["x", "y"]).is_err());
    assert!(Requirement::new("a", Operator::Exists, ["x"]).is_err());
    assert!(Requirement::new("a", Operator::GreaterThan, ["1", "2"]).is_err());
    assert!(Requirement::new("a", Operator::NotIn, [""; 0]).is_err());
    let err = Requirement::new("a", Operator::In, [""; 0]).err();
    assert_eq!(
        err.map(|e| e.to_string()),
        Some(
            "invalid values for key \"a\": for 'in', 'notin' operators, values set can't be empty"
                .to_owned()
        )
    );
}

#[test]
fn from_labels_requires_every_pair() {
    let selector = Selector::from_labels(&labels(&[("b", "2"), ("a", "1")])).unwrap_or_default();
    assert_eq!(selector.to_string(), "a=1,b=2");
    assert!(selector.matches(&labels(&[("a", "1"), ("b", "2"), ("c", "3")])));
    assert!(Selector::from_labels(&labels(&[("bad key", "1")])).is_err());
}

fn expression(key: &str, operator: &str, values: Option<&[&str]>) -> LabelSelectorRequirement {
    LabelSelectorRequirement {
        key: key.to_owned(),
        operator: operator.to_owned(),
        values: values.map(|vs| vs.iter().map(|v| (*v).to_owned()).collect()),
    }
}

#[test]
fn empty_label_selector_matches_everything() {
    let selector = Selector::try_from(&LabelSelector::default()).unwrap_or_else(|e| panic!("{e}"));
    assert!(selector.is_empty());
    let selector = Selector::try_from(&LabelSelector {
        match_labels: Some(BTreeMap::new()),
        match_expressions: Some(vec![]),
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(selector.is_empty());
}

#[test]
fn label_selector_converts_labels_and_expressions() {
    let ls = LabelSelector {
        match_labels: Some(labels(&[("app", "web")])),
        match_expressions: Some(vec![
            expression("tier", "In", Some(&["b", "a"])),
            expression("canary", "DoesNotExist", None),
            expression("zone", "Exists", Some(&[])),
        ]),
    };
    let selector = Selector::try_from(&ls).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(selector.to_string(), "app=web,!canary,tier in (a,b),zone");
    assert!(selector.matches(&labels(&[("app", "web"), ("tier", "a"), ("zone", "z")])));
    assert!(!selector.matches(&labels(&[("app", "web"), ("tier", "a")])));
}

#[test]
fn label_selector_with_bad_operator_is_rejected() {
    let ls = LabelSelector {
        match_expressions: Some(vec![expression("a", "Gt", Some(&["1"]))]),
        ..LabelSelector::default()
    };
    let err = Selector::try_from(&ls).err();
    assert_eq!(
        err.map(|e| e.to_string()),
        Some("\"Gt\" is not a valid label selector operator".to_owned())
    );
}

#[test]
fn label_selector_in_without_values_is_rejected() {
    let ls = LabelSelector {
        match_expressions: Some(vec![expression("a", "In", None)]),
        ..LabelSelector::default()
    };
    assert!(matches!(
        Selector::try_from(ls),
        Err(SelectorError::InvalidValues { position: None, .. })
    ));
    let ls = LabelSelector {
        match_expressions: Some(vec![expression("a", "Exists", Some(&["x"]))]),
        ..LabelSelector::default()
    };
    assert!(Selector::try_from(&ls).is_err());
}

#[test]
fn label_selector_with_invalid_label_is_rejected() {
    let ls = LabelSelector {
        match_labels: Some(labels(&[("a", "not valid")])),
        ..LabelSelector::default()
    };
    assert!(matches!(
        Selector::try_from(&ls),
        Err(SelectorError::InvalidValue { .. })
    ));
}

fn key_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]([-a-z0-9_.]{0,6}[a-z0-9])?",
        "[a-z]{1,5}(\\.[a-z]{1,4})?/[A-Za-z0-9]([-A-Za-z0-9_.]{0,5}[A-Za-z0-9])?",
        Just("in".to_owned()),
        Just("notin".to_owned()),
    ]
}

fn value_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[A-Za-z0-9]([-A-Za-z0-9_.]{0,6}[A-Za-z0-9])?",
        Just("in".to_owned())
    ]
}

fn requirement_strategy() -> impl Strategy<Value = Requirement> {
    (
        key_strategy(),
        0usize..9,
        prop::collection::vec(value_strategy(), 1..4),
        any::<i32>(),
    )
        .prop_map(|(key, op, values, n)| {
            let built = match op {
                0 => Requirement::new(&key, Operator::Equals, &values[..1]),
                1 => Requirement::new(&key, Operator::DoubleEquals, &values[..1]),
                2 => Requirement::new(&key, Operator::NotEquals, &values[..1]),
                3 => Requirement::new(&key, Operator::In, &values),
                4 => Requirement::new(&key, Operator::NotIn, &values),
                5 => Requirement::new(&key, Operator::Exists, [""; 0]),
                6 => Requirement::new(&key, Operator::DoesNotExist, [""; 0]),
                7 => Requirement::new(&key, Operator::GreaterThan, [n.unsigned_abs().to_string()]),
                _ => Requirement::new(&key, Operator::LessThan, [n.unsigned_abs().to_string()]),
            };
            built.unwrap_or_else(|e| panic!("strategy built an invalid requirement: {e}"))
        })
}

proptest! {
    #[test]
    fn printed_selector_parses_back_to_itself(
        requirements in prop::collection::vec(requirement_strategy(), 0..5)
    ) {
        let selector = Selector::from_requirements(requirements);
        let printed = selector.to_string();
        let reparsed: Selector = printed.parse().map_err(|e| TestCaseError::fail(format!("{printed:?}: {e}")))?;
        prop_assert_eq!(&reparsed, &selector);
        prop_assert_eq!(reparsed.to_string(), printed);
    }

    #[test]
    fn parsing_arbitrary_input_never_panics(input in "[a-z!=(), <>in\\t.-/]{0,24}") {
        let _ = input.parse::<Selector>();
    }

    #[test]
    fn not_equals_is_the_negation_of_equals(
        key in key_strategy(), value in value_strategy(), actual in prop::option::of(value_strategy())
    ) {
        let eq = Requirement::new(&key, Operator::Equals, [&value]).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let ne = Requirement::new(&key, Operator::NotEquals, [&value]).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut set = BTreeMap::new();
        if let Some(actual) = actual {
            set.insert(key.clone(), actual);
        }
        prop_assert_ne!(eq.matches(&set), ne.matches(&set));
    }
}
