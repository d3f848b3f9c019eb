//! Inter-pod affinity and anti-affinity terms.
//!
//! Upstream: `AffinityTerm` in the scheduler framework (`types.go`) and the
//! `InterPodAffinity` plugin.
//!
//! A term selects an existing pod when the pod's namespace is one of the
//! term's namespaces or matches its namespace selector, and the pod's labels
//! match the term's label selector. With neither `namespaces` nor
//! `namespaceSelector`, the namespaces are the incoming pod's own. A missing
//! label selector (or namespace selector) selects nothing; an empty one
//! selects everything. `matchLabelKeys` and `mismatchLabelKeys` add
//! `key In (value)` / `key NotIn (value)` for each key the incoming pod has.
//! Two nodes are in the same topology domain when both carry the term's
//! topology key with the same value.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Node, Pod, PodAffinityTerm};

use super::{PredicateError, add_requirement, compile_selector, selects};
use crate::labels::Selector;

/// A `PodAffinityTerm` compiled against the incoming pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AffinityTerm {
    namespaces: BTreeSet<String>,
    namespace_selector: Option<Selector>,
    selector: Option<Selector>,
    topology_key: String,
}

impl AffinityTerm {
    /// Compiles `term`, written in `incoming`'s spec; errors on a malformed
    /// label or namespace selector.
    pub fn new(incoming: &Pod, term: &PodAffinityTerm) -> Result<Self, PredicateError> {
        let incoming_labels = incoming.metadata.labels.clone().unwrap_or_default();
        let mut selector = compile_selector(term.label_selector.as_ref())?;
        for (keys, in_set) in [
            (&term.match_label_keys, true),
            (&term.mismatch_label_keys, false),
        ] {
            for key in keys.iter().flatten() {
                if let Some(value) = incoming_labels.get(key) {
                    selector = add_requirement(selector, key, value, in_set)?;
                }
            }
        }
        let mut namespaces: BTreeSet<String> = term.namespaces.iter().flatten().cloned().collect();
        if namespaces.is_empty() && term.namespace_selector.is_none() {
            namespaces.insert(incoming.metadata.namespace.clone().unwrap_or_default());
        }
        Ok(Self {
            namespaces,
            namespace_selector: compile_selector(term.namespace_selector.as_ref())?,
            selector,
            topology_key: term.topology_key.clone(),
        })
    }

    /// The term's topology key.
    pub fn topology_key(&self) -> &str {
        &self.topology_key
    }

    /// Whether the term selects `pod`, given the labels of `pod`'s namespace
    /// (`None` when unknown: then only the explicit namespace list applies).
    pub fn matches(&self, pod: &Pod, namespace_labels: Option<&BTreeMap<String, String>>) -> bool {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        let in_namespace = self.namespaces.contains(namespace)
            || namespace_labels.is_some_and(|l| selects(self.namespace_selector.as_ref(), Some(l)));
        in_namespace && selects(self.selector.as_ref(), pod.metadata.labels.as_ref())
    }

    /// Whether two nodes are in the same domain of this term's topology key.
    pub fn same_domain(&self, a: &Node, b: &Node) -> bool {
        nodes_share_topology_domain(a, b, &self.topology_key)
    }
}

/// Whether `term` (from `incoming`'s spec) selects `existing`, looking up
/// namespace labels through `namespace_labels`.
pub fn term_matches_pod<'a>(
    incoming: &Pod,
    term: &PodAffinityTerm,
    existing: &Pod,
    namespace_labels: impl Fn(&str) -> Option<&'a BTreeMap<String, String>>,
) -> Result<bool, PredicateError> {
    let compiled = AffinityTerm::new(incoming, term)?;
    let namespace = existing.metadata.namespace.as_deref().unwrap_or_default();
    Ok(compiled.matches(existing, namespace_labels(namespace)))
}

/// Whether both nodes carry `topology_key` with the same value.
pub fn nodes_share_topology_domain(a: &Node, b: &Node, topology_key: &str) -> bool {
    let value = |n: &Node| {
        n.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(topology_key))
            .cloned()
    };
    match (value(a), value(b)) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn pod(ns: &str, labels: &[(&str, &str)]) -> Pod {
        Pod {
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                labels: Some(map(labels)),
                ..ObjectMeta::default()
            },
            ..Pod::default()
        }
    }

    fn selects(labels: &[(&str, &str)]) -> Option<LabelSelector> {
        Some(LabelSelector {
            match_labels: Some(map(labels)),
            match_expressions: None,
        })
    }

    fn term(selector: Option<LabelSelector>) -> PodAffinityTerm {
        PodAffinityTerm {
            label_selector: selector,
            topology_key: "zone".into(),
            ..PodAffinityTerm::default()
        }
    }

    fn compile(incoming: &Pod, t: &PodAffinityTerm) -> AffinityTerm {
        match AffinityTerm::new(incoming, t) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn term_without_namespaces_selects_pods_in_the_incoming_pods_namespace() {
        let incoming = pod("team-a", &[]);
        let t = compile(&incoming, &term(selects(&[("app", "db")])));
        assert!(t.matches(&pod("team-a", &[("app", "db")]), None));
        assert!(!t.matches(&pod("team-b", &[("app", "db")]), None));
        assert!(!t.matches(&pod("team-a", &[("app", "web")]), None));
    }

    #[test]
    fn missing_label_selector_selects_nothing_and_empty_selects_everything() {
        let incoming = pod("ns", &[]);
        assert!(!compile(&incoming, &term(None)).matches(&pod("ns", &[("a", "b")]), None));
        let everything = term(Some(LabelSelector::default()));
        assert!(compile(&incoming, &everything).matches(&pod("ns", &[("a", "b")]), None));
    }

    #[test]
    fn namespace_selector_matches_by_namespace_labels() {
        let incoming = pod("ns", &[]);
        let mut t = term(selects(&[("app", "db")]));
        t.namespace_selector = selects(&[("env", "prod")]);
        t.namespaces = Some(vec!["listed".into()]);
        let namespaces = BTreeMap::from([
            ("prod-1".to_owned(), map(&[("env", "prod")])),
            ("dev".to_owned(), map(&[("env", "dev")])),
        ]);
        let lookup = |ns: &str| namespaces.get(ns);
        let check = |p: &Pod| term_matches_pod(&incoming, &t, p, lookup);
        assert_eq!(check(&pod("prod-1", &[("app", "db")])), Ok(true));
        assert_eq!(check(&pod("dev", &[("app", "db")])), Ok(false));
        assert_eq!(check(&pod("listed", &[("app", "db")])), Ok(true));
        // with a namespace selector set, the incoming pod's namespace is not implied
        assert_eq!(check(&pod("ns", &[("app", "db")])), Ok(false));
    }

    #[test]
    fn match_label_keys_take_values_from_the_incoming_pod() {
        let incoming = pod("ns", &[("rev", "2"), ("app", "web")]);
        let mut t = term(selects(&[("app", "web")]));
        t.match_label_keys = Some(vec!["rev".into(), "absent".into()]);
        let c = compile(&incoming, &t);
        assert!(c.matches(&pod("ns", &[("app", "web"), ("rev", "2")]), None));
        assert!(!c.matches(&pod("ns", &[("app", "web"), ("rev", "1")]), None));

        let mut anti = term(selects(&[("app", "web")]));
        anti.mismatch_label_keys = Some(vec!["rev".into()]);
        let c = compile(&incoming, &anti);
        assert!(c.matches(&pod("ns", &[("app", "web"), ("rev", "1")]), None));
        assert!(!c.matches(&pod("ns", &[("app", "web"), ("rev", "2")]), None));
    }

    #[test]
    fn nodes_share_a_domain_only_when_both_have_the_same_value() {
        let node = |labels: &[(&str, &str)]| Node {
            metadata: ObjectMeta {
                labels: Some(map(labels)),
                ..ObjectMeta::default()
            },
            ..Node::default()
        };
        let a = node(&[("zone", "z1")]);
        assert!(nodes_share_topology_domain(
            &a,
            &node(&[("zone", "z1")]),
            "zone"
        ));
        assert!(!nodes_share_topology_domain(
            &a,
            &node(&[("zone", "z2")]),
            "zone"
        ));
        assert!(!nodes_share_topology_domain(&node(&[]), &node(&[]), "zone"));
    }
}
