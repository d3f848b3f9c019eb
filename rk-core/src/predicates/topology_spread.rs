//! Pod topology spread constraints.
//!
//! Upstream: the scheduler's `PodTopologySpread` plugin (filtering part).
//!
//! For a constraint, the eligible nodes are those carrying its topology key
//! that pass its node inclusion policies: `nodeAffinityPolicy` (default
//! `Honor`: the node must match the incoming pod's `nodeSelector` and required
//! node affinity) and `nodeTaintsPolicy` (default `Ignore`; with `Honor` the
//! node's `NoSchedule`/`NoExecute` taints must be tolerated). Each eligible
//! node's value of the key is a domain; a domain's count is the number of pods
//! on its nodes in the incoming pod's namespace, not terminating nor terminal,
//! that match the constraint's selector (plus `matchLabelKeys`).
//!
//! Placing the pod in domain `d` gives
//! `skew = count(d) + (1 if the pod matches its own selector) - global minimum`,
//! where the global minimum is the smallest domain count, or 0 when there are
//! fewer domains than `minDomains`. A `DoNotSchedule` constraint is satisfied
//! when `skew <= maxSkew`; `ScheduleAnyway` constraints never filter.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Pod, TopologySpreadConstraint};

use super::node_affinity::pod_matches_node_selector_and_affinity;
use super::taints::{NO_EXECUTE, NO_SCHEDULE, find_untolerated_taint};
use super::{PredicateError, add_requirement, compile_selector, selects};
use crate::labels::Selector;

/// `whenUnsatisfiable` value that makes a constraint a filter.
pub const DO_NOT_SCHEDULE: &str = "DoNotSchedule";
/// `whenUnsatisfiable` value that makes a constraint a preference only.
pub const SCHEDULE_ANYWAY: &str = "ScheduleAnyway";
/// Node inclusion policy value: apply the check when choosing eligible nodes.
pub const HONOR: &str = "Honor";
/// Node inclusion policy value: skip the check.
pub const IGNORE: &str = "Ignore";

/// A node and the pods assigned to it.
#[derive(Debug, Clone, Copy)]
pub struct NodePods<'a> {
    /// The node.
    pub node: &'a Node,
    /// The pods bound to the node.
    pub pods: &'a [Pod],
}

/// A `TopologySpreadConstraint` compiled against the incoming pod, with its
/// defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpreadConstraint {
    /// The topology key naming the domains.
    pub topology_key: String,
    /// The largest skew allowed.
    pub max_skew: i32,
    /// The minimum number of domains (1 when unset).
    pub min_domains: i32,
    /// Whether the constraint filters (`DoNotSchedule`) rather than scores.
    pub do_not_schedule: bool,
    /// `nodeAffinityPolicy` is `Honor` (the default).
    pub honor_node_affinity: bool,
    /// `nodeTaintsPolicy` is `Honor` (the default is `Ignore`).
    pub honor_node_taints: bool,
    selector: Option<Selector>,
    namespace: String,
    self_match: bool,
}

impl SpreadConstraint {
    /// Compiles `constraint` from `incoming`'s spec; errors on a malformed selector.
    pub fn new(
        incoming: &Pod,
        constraint: &TopologySpreadConstraint,
    ) -> Result<Self, PredicateError> {
        let mut selector = compile_selector(constraint.label_selector.as_ref())?;
        let labels = incoming.metadata.labels.clone().unwrap_or_default();
        for key in constraint.match_label_keys.iter().flatten() {
            if let Some(value) = labels.get(key) {
                selector = add_requirement(selector, key, value, true)?;
            }
        }
        let self_match = selects(selector.as_ref(), Some(&labels));
        Ok(Self {
            topology_key: constraint.topology_key.clone(),
            max_skew: constraint.max_skew,
            min_domains: constraint.min_domains.unwrap_or(1),
            do_not_schedule: constraint.when_unsatisfiable == DO_NOT_SCHEDULE,
            honor_node_affinity: constraint.node_affinity_policy.as_deref() != Some(IGNORE),
            honor_node_taints: constraint.node_taints_policy.as_deref() == Some(HONOR),
            selector,
            namespace: incoming.metadata.namespace.clone().unwrap_or_default(),
            self_match,
        })
    }

    /// Every constraint of the pod, compiled.
    pub fn all_of(incoming: &Pod) -> Result<Vec<Self>, PredicateError> {
        let constraints = incoming
            .spec
            .as_ref()
            .and_then(|s| s.topology_spread_constraints.as_deref());
        constraints
            .unwrap_or_default()
            .iter()
            .map(|c| Self::new(incoming, c))
            .collect()
    }

    /// Whether the incoming pod matches its own selector (counts 1 towards skew).
    pub fn self_match(&self) -> bool {
        self.self_match
    }

    /// The node's domain for this constraint, if it has the topology key.
    pub fn domain_of<'n>(&self, node: &'n Node) -> Option<&'n str> {
        node.metadata
            .labels
            .as_ref()?
            .get(&self.topology_key)
            .map(String::as_str)
    }

    /// Whether the node's pods count towards a domain: it has the key and
    /// passes the node inclusion policies for `incoming`.
    pub fn node_is_eligible(&self, incoming: &Pod, node: &Node) -> bool {
        if self.domain_of(node).is_none() {
            return false;
        }
        if self.honor_node_affinity && !pod_matches_node_selector_and_affinity(incoming, node) {
            return false;
        }
        if self.honor_node_taints {
            let taints = node
                .spec
                .as_ref()
                .and_then(|s| s.taints.as_deref())
                .unwrap_or_default();
            let tolerations = incoming
                .spec
                .as_ref()
                .and_then(|s| s.tolerations.as_deref())
                .unwrap_or_default();
            if find_untolerated_taint(taints, tolerations, &[NO_SCHEDULE, NO_EXECUTE]).is_some() {
                return false;
            }
        }
        true
    }

    /// Whether an existing pod counts towards its domain.
    pub fn counts_pod(&self, pod: &Pod) -> bool {
        let terminal = matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        );
        !terminal
            && pod.metadata.deletion_timestamp.is_none()
            && pod.metadata.namespace.as_deref().unwrap_or_default() == self.namespace
            && selects(self.selector.as_ref(), pod.metadata.labels.as_ref())
    }

    /// Matching pods per domain over the eligible nodes (domains with no
    /// matching pod are present with 0).
    pub fn count_per_domain(
        &self,
        incoming: &Pod,
        nodes: &[NodePods<'_>],
    ) -> BTreeMap<String, i32> {
        let mut counts = BTreeMap::new();
        for np in nodes {
            if !self.node_is_eligible(incoming, np.node) {
                continue;
            }
            let Some(domain) = self.domain_of(np.node) else {
                continue;
            };
            let matching = np.pods.iter().filter(|p| self.counts_pod(p)).count();
            let entry = counts.entry(domain.to_owned()).or_insert(0i32);
            *entry = entry.saturating_add(i32::try_from(matching).unwrap_or(i32::MAX));
        }
        counts
    }
}

/// Matching pods per domain for `constraint` (see [`SpreadConstraint::count_per_domain`]).
pub fn count_per_domain(
    incoming: &Pod,
    constraint: &TopologySpreadConstraint,
    nodes: &[NodePods<'_>],
) -> Result<BTreeMap<String, i32>, PredicateError> {
    Ok(SpreadConstraint::new(incoming, constraint)?.count_per_domain(incoming, nodes))
}

/// The skew after placing the pod in `domain`: its count, plus 1 when the
/// pod matches its own selector, minus the global minimum (0 when fewer than
/// `min_domains` domains exist, or none at all).
pub fn skew_if_placed(
    counts: &BTreeMap<String, i32>,
    domain: &str,
    self_match: bool,
    min_domains: i32,
) -> i32 {
    let global_min = match counts.values().min() {
        Some(&min) if i32::try_from(counts.len()).unwrap_or(i32::MAX) >= min_domains => min,
        _ => 0,
    };
    let count = counts.get(domain).copied().unwrap_or(0);
    count
        .saturating_add(i32::from(self_match))
        .saturating_sub(global_min)
}

/// Whether placing `incoming` on `node` keeps `constraint` satisfied, given
/// every node with its pods. `ScheduleAnyway` constraints are always
/// satisfied; a node without the topology key never satisfies a
/// `DoNotSchedule` constraint.
pub fn satisfies(
    constraint: &SpreadConstraint,
    incoming: &Pod,
    node: &Node,
    nodes: &[NodePods<'_>],
) -> bool {
    if !constraint.do_not_schedule {
        return true;
    }
    let Some(domain) = constraint.domain_of(node) else {
        return false;
    };
    let counts = constraint.count_per_domain(incoming, nodes);
    skew_if_placed(
        &counts,
        domain,
        constraint.self_match,
        constraint.min_domains,
    ) <= constraint.max_skew
}

/// Whether `node` satisfies all of `incoming`'s `DoNotSchedule` constraints.
///
/// As upstream, only nodes carrying the topology keys of all those constraints
/// are counted.
pub fn pod_satisfies_topology_spread(
    incoming: &Pod,
    node: &Node,
    nodes: &[NodePods<'_>],
) -> Result<bool, PredicateError> {
    let constraints: Vec<SpreadConstraint> = SpreadConstraint::all_of(incoming)?
        .into_iter()
        .filter(|c| c.do_not_schedule)
        .collect();
    if constraints.is_empty() {
        return Ok(true);
    }
    let has_all_keys = |n: &Node| constraints.iter().all(|c| c.domain_of(n).is_some());
    let counted: Vec<NodePods<'_>> = nodes
        .iter()
        .copied()
        .filter(|np| has_all_keys(np.node))
        .collect();
    Ok(constraints
        .iter()
        .all(|c| satisfies(c, incoming, node, &counted)))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{NodeSpec, PodSpec, Taint};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn node(name: &str, zone: Option<&str>) -> Node {
        let labels = zone.map(|z| map(&[("zone", z)]));
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels,
                ..ObjectMeta::default()
            },
            ..Node::default()
        }
    }

    fn web(ns: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                labels: Some(map(&[("app", "web")])),
                ..ObjectMeta::default()
            },
            ..Pod::default()
        }
    }

    fn constraint(max_skew: i32, when: &str) -> TopologySpreadConstraint {
        TopologySpreadConstraint {
            label_selector: Some(LabelSelector {
                match_labels: Some(map(&[("app", "web")])),
                match_expressions: None,
            }),
            max_skew,
            topology_key: "zone".into(),
            when_unsatisfiable: when.into(),
            ..TopologySpreadConstraint::default()
        }
    }

    fn incoming_with(c: TopologySpreadConstraint) -> Pod {
        let mut p = web("ns");
        p.spec = Some(PodSpec {
            topology_spread_constraints: Some(vec![c]),
            ..PodSpec::default()
        });
        p
    }

    fn compile(p: &Pod) -> SpreadConstraint {
        match SpreadConstraint::all_of(p) {
            Ok(mut v) if v.len() == 1 => v.remove(0),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn skew_counts_the_pod_itself_against_the_global_minimum() {
        let counts = BTreeMap::from([("a".to_owned(), 2), ("b".to_owned(), 0)]);
        assert_eq!(skew_if_placed(&counts, "a", true, 1), 3);
        assert_eq!(skew_if_placed(&counts, "b", true, 1), 1);
        assert_eq!(skew_if_placed(&counts, "b", false, 1), 0);
    }

    #[test]
    fn fewer_domains_than_min_domains_make_the_global_minimum_zero() {
        let counts = BTreeMap::from([("a".to_owned(), 2), ("b".to_owned(), 2)]);
        assert_eq!(skew_if_placed(&counts, "a", true, 2), 1);
        assert_eq!(skew_if_placed(&counts, "a", true, 3), 3);
    }

    #[test]
    fn counts_only_matching_live_pods_in_the_same_namespace() {
        let incoming = incoming_with(constraint(1, DO_NOT_SCHEDULE));
        let mut terminating = web("ns");
        terminating.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ));
        let mut other_app = web("ns");
        other_app.metadata.labels = Some(map(&[("app", "db")]));
        let pods_a = [
            web("ns"),
            web("ns"),
            web("other-ns"),
            terminating,
            other_app,
        ];
        let pods_b: [Pod; 0] = [];
        let (na, nb, nx) = (
            node("a", Some("z1")),
            node("b", Some("z2")),
            node("x", None),
        );
        let nodes = [
            NodePods {
                node: &na,
                pods: &pods_a,
            },
            NodePods {
                node: &nb,
                pods: &pods_b,
            },
            NodePods {
                node: &nx,
                pods: &pods_a,
            },
        ];
        let counts = compile(&incoming).count_per_domain(&incoming, &nodes);
        assert_eq!(
            counts,
            BTreeMap::from([("z1".to_owned(), 2), ("z2".to_owned(), 0)])
        );
    }

    #[test]
    fn do_not_schedule_rejects_domains_that_would_exceed_max_skew() {
        let incoming = incoming_with(constraint(1, DO_NOT_SCHEDULE));
        let pods_a = [web("ns")];
        let (na, nb, nx) = (
            node("a", Some("z1")),
            node("b", Some("z2")),
            node("x", None),
        );
        let nodes = [
            NodePods {
                node: &na,
                pods: &pods_a,
            },
            NodePods {
                node: &nb,
                pods: &[],
            },
        ];
        assert_eq!(
            pod_satisfies_topology_spread(&incoming, &na, &nodes),
            Ok(false)
        );
        assert_eq!(
            pod_satisfies_topology_spread(&incoming, &nb, &nodes),
            Ok(true)
        );
        assert_eq!(
            pod_satisfies_topology_spread(&incoming, &nx, &nodes),
            Ok(false)
        );
    }

    #[test]
    fn schedule_anyway_never_filters() {
        let incoming = incoming_with(constraint(1, SCHEDULE_ANYWAY));
        let pods_a = [web("ns"), web("ns"), web("ns")];
        let (na, nb) = (node("a", Some("z1")), node("b", Some("z2")));
        let nodes = [
            NodePods {
                node: &na,
                pods: &pods_a,
            },
            NodePods {
                node: &nb,
                pods: &[],
            },
        ];
        assert!(satisfies(&compile(&incoming), &incoming, &na, &nodes));
    }

    #[test]
    fn tainted_nodes_count_only_when_taints_policy_is_ignore() {
        let mut tainted = node("b", Some("z2"));
        tainted.spec = Some(NodeSpec {
            taints: Some(vec![Taint {
                key: "dedicated".into(),
                effect: NO_SCHEDULE.into(),
                ..Taint::default()
            }]),
            ..NodeSpec::default()
        });
        let na = node("a", Some("z1"));
        let pods_a = [web("ns")];
        let nodes = [
            NodePods {
                node: &na,
                pods: &pods_a,
            },
            NodePods {
                node: &tainted,
                pods: &[],
            },
        ];

        let ignore = incoming_with(constraint(1, DO_NOT_SCHEDULE));
        // z2 counts with 0 pods, so z1 would reach skew 2.
        assert!(!satisfies(&compile(&ignore), &ignore, &na, &nodes));

        let mut honoring = constraint(1, DO_NOT_SCHEDULE);
        honoring.node_taints_policy = Some(HONOR.into());
        let honor = incoming_with(honoring);
        // only z1 is a domain: skew = 1 + 1 - 1 = 1.
        assert!(satisfies(&compile(&honor), &honor, &na, &nodes));
    }

    #[test]
    fn malformed_selector_is_an_error() {
        let mut c = constraint(1, DO_NOT_SCHEDULE);
        c.label_selector = Some(LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![
                k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement {
                    key: "app".into(),
                    operator: "In".into(),
                    values: None,
                },
            ]),
        });
        let incoming = incoming_with(c);
        let n = node("a", Some("z1"));
        assert!(pod_satisfies_topology_spread(&incoming, &n, &[]).is_err());
    }
}
