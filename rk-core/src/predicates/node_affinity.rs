//! `spec.nodeSelector` and node affinity.
//!
//! Upstream: `k8s.io/component-helpers/scheduling/corev1/nodeaffinity` and the
//! scheduler's `NodeAffinity` plugin.
//!
//! A node selector term matches when it has at least one requirement and all
//! its `matchExpressions` (on labels) and `matchFields` (on `metadata.name`)
//! hold; terms are ORed. As upstream, a malformed term (unknown operator,
//! wrong number of values, `Gt`/`Lt` with a non-integer value, a field other
//! than `metadata.name`) matches no node.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, NodeSelectorRequirement, NodeSelectorTerm, Pod};

use crate::labels::{Operator, Requirement};

/// Whether the node's labels contain every pair of the pod's `spec.nodeSelector`.
pub fn pod_matches_node_selector(pod: &Pod, node: &Node) -> bool {
    let selector = pod.spec.as_ref().and_then(|s| s.node_selector.as_ref());
    let labels = node.metadata.labels.as_ref();
    selector
        .into_iter()
        .flatten()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// Whether the node satisfies the pod's required node affinity
/// (`requiredDuringSchedulingIgnoredDuringExecution`); true when there is none.
pub fn pod_matches_required_node_affinity(pod: &Pod, node: &Node) -> bool {
    let required = pod
        .spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    match required {
        Some(selector) => node_matches_node_selector_terms(&selector.node_selector_terms, node),
        None => true,
    }
}

/// Whether the node satisfies both the pod's `spec.nodeSelector` and its
/// required node affinity (upstream `GetRequiredNodeAffinity(pod).Match(node)`).
pub fn pod_matches_node_selector_and_affinity(pod: &Pod, node: &Node) -> bool {
    pod_matches_node_selector(pod, node) && pod_matches_required_node_affinity(pod, node)
}

/// Whether any of the terms matches the node (terms are ORed; no terms match nothing).
pub fn node_matches_node_selector_terms(terms: &[NodeSelectorTerm], node: &Node) -> bool {
    terms
        .iter()
        .any(|term| node_selector_term_matches(term, node))
}

/// Whether one term matches the node: all its requirements hold. An empty or
/// malformed term matches nothing.
pub fn node_selector_term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let expressions = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if expressions.is_empty() && fields.is_empty() {
        return false;
    }
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    let name = node.metadata.name.as_deref().unwrap_or_default();
    expressions
        .iter()
        .all(|r| label_requirement_matches(r, labels) == Some(true))
        && fields
            .iter()
            .all(|r| field_requirement_matches(r, name) == Some(true))
}

/// The sum of the weights of the pod's preferred node affinity terms that the
/// node matches (upstream NodeAffinity score before normalisation). Terms with
/// weight 0 or an empty preference are skipped.
pub fn preferred_node_affinity_score(pod: &Pod, node: &Node) -> i64 {
    let preferred = pod
        .spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.preferred_during_scheduling_ignored_during_execution
                .as_deref()
        })
        .unwrap_or_default();
    preferred
        .iter()
        .filter(|p| p.weight != 0 && node_selector_term_matches(&p.preference, node))
        .map(|p| i64::from(p.weight))
        .sum()
}

/// `Some(matches)` for a well-formed label requirement, `None` for a malformed
/// one (upstream builds it with `labels.NewRequirement`, so keys and values
/// must also be valid label keys and values).
pub fn label_requirement_matches(
    req: &NodeSelectorRequirement,
    labels: &BTreeMap<String, String>,
) -> Option<bool> {
    let operator = match req.operator.as_str() {
        "In" => Operator::In,
        "NotIn" => Operator::NotIn,
        "Exists" => Operator::Exists,
        "DoesNotExist" => Operator::DoesNotExist,
        "Gt" => Operator::GreaterThan,
        "Lt" => Operator::LessThan,
        _ => return None,
    };
    let values = req.values.as_deref().unwrap_or_default();
    let requirement = Requirement::new(&req.key, operator, values).ok()?;
    Some(requirement.matches(labels))
}

/// `Some(matches)` for a well-formed field requirement (`metadata.name`, `In`
/// or `NotIn`, exactly one value), `None` otherwise.
pub fn field_requirement_matches(req: &NodeSelectorRequirement, node_name: &str) -> Option<bool> {
    if req.key != "metadata.name" {
        return None;
    }
    let [value] = req.values.as_deref().unwrap_or_default() else {
        return None;
    };
    match req.operator.as_str() {
        "In" => Some(node_name == value),
        "NotIn" => Some(node_name != value),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{
        Affinity, NodeAffinity, NodeSelector, PodSpec, PreferredSchedulingTerm,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn node(name: &str, labels: &[(&str, &str)]) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                ),
                ..ObjectMeta::default()
            },
            ..Node::default()
        }
    }

    fn req(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|v| (*v).to_owned()).collect()),
        }
    }

    fn term(exprs: Vec<NodeSelectorRequirement>) -> NodeSelectorTerm {
        NodeSelectorTerm {
            match_expressions: Some(exprs),
            match_fields: None,
        }
    }

    fn pod_with(node_selector: &[(&str, &str)], terms: Option<Vec<NodeSelectorTerm>>) -> Pod {
        let ns: BTreeMap<String, String> = node_selector
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Pod {
            spec: Some(PodSpec {
                node_selector: Some(ns),
                affinity: terms.map(|terms| Affinity {
                    node_affinity: Some(NodeAffinity {
                        required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                            node_selector_terms: terms,
                        }),
                        ..NodeAffinity::default()
                    }),
                    ..Affinity::default()
                }),
                ..PodSpec::default()
            }),
            ..Pod::default()
        }
    }

    #[test]
    fn node_selector_requires_every_pair() {
        let n = node("n1", &[("disk", "ssd"), ("zone", "a")]);
        assert!(pod_matches_node_selector_and_affinity(
            &pod_with(&[("disk", "ssd")], None),
            &n
        ));
        assert!(!pod_matches_node_selector_and_affinity(
            &pod_with(&[("disk", "hdd")], None),
            &n
        ));
        assert!(!pod_matches_node_selector_and_affinity(
            &pod_with(&[("gpu", "yes")], None),
            &n
        ));
    }

    #[test]
    fn terms_are_ored_and_expressions_are_anded() {
        let n = node("n1", &[("zone", "a"), ("disk", "ssd")]);
        let terms = vec![
            term(vec![req("zone", "In", &["b"])]),
            term(vec![
                req("zone", "In", &["a", "c"]),
                req("disk", "Exists", &[]),
            ]),
        ];
        assert!(node_matches_node_selector_terms(&terms, &n));
        let terms = vec![term(vec![
            req("zone", "In", &["a"]),
            req("disk", "DoesNotExist", &[]),
        ])];
        assert!(!node_matches_node_selector_terms(&terms, &n));
    }

    #[test]
    fn not_in_matches_nodes_without_the_label() {
        let terms = vec![term(vec![req("zone", "NotIn", &["a"])])];
        assert!(node_matches_node_selector_terms(&terms, &node("n", &[])));
        assert!(!node_matches_node_selector_terms(
            &terms,
            &node("n", &[("zone", "a")])
        ));
    }

    #[test]
    fn gt_and_lt_compare_integer_labels() {
        let n = node("n", &[("cores", "16")]);
        assert!(node_matches_node_selector_terms(
            &[term(vec![req("cores", "Gt", &["8"])])],
            &n
        ));
        assert!(!node_matches_node_selector_terms(
            &[term(vec![req("cores", "Lt", &["16"])])],
            &n
        ));
        let text = node("n", &[("cores", "many")]);
        assert!(!node_matches_node_selector_terms(
            &[term(vec![req("cores", "Gt", &["8"])])],
            &text
        ));
    }

    #[test]
    fn malformed_terms_match_nothing_but_other_terms_still_count() {
        let n = node("n", &[("zone", "a")]);
        for bad in [
            req("zone", "In", &[]),
            req("zone", "Gt", &["x"]),
            req("zone", "Near", &["a"]),
            req("zone", "Exists", &["a"]),
            req("zone", "In", &["not a label value!"]),
            req("bad key!", "Exists", &[]),
        ] {
            assert!(!node_matches_node_selector_terms(
                &[term(vec![bad.clone()])],
                &n
            ));
            let terms = vec![term(vec![bad]), term(vec![req("zone", "In", &["a"])])];
            assert!(node_matches_node_selector_terms(&terms, &n));
        }
    }

    #[test]
    fn empty_term_and_empty_term_list_match_nothing() {
        let n = node("n", &[("zone", "a")]);
        assert!(!node_matches_node_selector_terms(
            &[NodeSelectorTerm::default()],
            &n
        ));
        assert!(!pod_matches_node_selector_and_affinity(
            &pod_with(&[], Some(vec![])),
            &n
        ));
    }

    #[test]
    fn match_fields_select_by_node_name() {
        let n = node("worker-1", &[]);
        let by_name = |op: &str, name: &str| NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![req("metadata.name", op, &[name])]),
        };
        assert!(node_selector_term_matches(&by_name("In", "worker-1"), &n));
        assert!(!node_selector_term_matches(&by_name("In", "worker-2"), &n));
        assert!(node_selector_term_matches(
            &by_name("NotIn", "worker-2"),
            &n
        ));
        let other_field = NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![req("metadata.uid", "In", &["x"])]),
        };
        assert!(!node_selector_term_matches(&other_field, &n));
    }

    #[test]
    fn preferred_score_sums_weights_of_matching_terms() {
        let n = node("n", &[("zone", "a"), ("disk", "ssd")]);
        let pref = |w: i32, t: NodeSelectorTerm| PreferredSchedulingTerm {
            weight: w,
            preference: t,
        };
        let mut p = pod_with(&[], None);
        if let Some(spec) = p.spec.as_mut() {
            spec.affinity = Some(Affinity {
                node_affinity: Some(NodeAffinity {
                    preferred_during_scheduling_ignored_during_execution: Some(vec![
                        pref(10, term(vec![req("zone", "In", &["a"])])),
                        pref(5, term(vec![req("disk", "In", &["ssd"])])),
                        pref(7, term(vec![req("zone", "In", &["b"])])),
                        pref(3, NodeSelectorTerm::default()),
                    ]),
                    ..NodeAffinity::default()
                }),
                ..Affinity::default()
            });
        }
        assert_eq!(preferred_node_affinity_score(&p, &n), 15);
    }
}
