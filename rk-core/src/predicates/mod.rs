//! Scheduling predicates shared by the scheduler, kubelet admission and the
//! DaemonSet controller.
//!
//! Each module holds one concept, with upstream's semantics:
//!
//! - [`resources`]: what a pod requests (init containers, sidecars, overhead,
//!   pod-level resources) and whether it fits a node's allocatable resources;
//! - [`taints`]: tolerations against taints;
//! - [`node_affinity`]: `spec.nodeSelector` and node affinity (required and
//!   preferred);
//! - [`ports`]: host ports a pod wants and conflicts with ports in use;
//! - [`interpod`]: inter-pod affinity terms (which existing pods a term selects,
//!   and whether two nodes share a topology domain);
//! - [`topology_spread`]: pod topology spread constraints (domain counts, skew);
//! - [`node_fits_pod_basic`]: the combination the kubelet and the DaemonSet
//!   controller run, returning upstream's reason strings.
//!
//! # Malformed specs
//!
//! Nothing here panics on input. A malformed quantity or label selector in a
//! pod (a spec the API server should have rejected) is reported as a
//! [`PredicateError`] by the functions that compute with it
//! ([`pod_requests`], [`AffinityTerm::new`], [`SpreadConstraint::new`]).
//! Node selector terms follow upstream instead: a term that cannot be parsed
//! (an unknown operator, `Gt` with a non-integer value, ...) simply matches no
//! node, so a malformed affinity makes a pod unschedulable rather than an error.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::labels::{Operator, Requirement, Selector, SelectorError};
use crate::quantity::{ParsedQuantity, QuantityError};

mod basic;
pub mod interpod;
pub mod node_affinity;
pub mod ports;
pub mod resources;
pub mod taints;
pub mod topology_spread;

pub use basic::{
    REASON_NODE_AFFINITY, REASON_NODE_NAME, REASON_NODE_PORTS, REASON_UNSCHEDULABLE,
    node_fits_pod_basic,
};
pub use interpod::{AffinityTerm, nodes_share_topology_domain, term_matches_pod};
pub use node_affinity::{
    node_matches_node_selector_terms, pod_matches_node_selector_and_affinity,
    preferred_node_affinity_score,
};
pub use ports::{HostPort, HostPortSet, pod_host_ports};
pub use resources::{
    InsufficientResource, Resources, fits, node_allocatable, pod_nonzero_requests, pod_requests,
    requested_by_pods,
};
pub use taints::{find_untolerated_taint, toleration_tolerates_taint, tolerations_tolerate_taint};
pub use topology_spread::{
    NodePods, SpreadConstraint, pod_satisfies_topology_spread, satisfies, skew_if_placed,
};

/// A pod or node spec that the predicates cannot evaluate.
///
/// The API server validates these fields, so seeing one of these errors
/// usually means an object bypassed validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PredicateError {
    /// A resource quantity could not be parsed.
    #[error(transparent)]
    InvalidQuantity(#[from] QuantityError),
    /// A label selector could not be converted into a matcher.
    #[error("invalid label selector: {0}")]
    InvalidLabelSelector(#[from] SelectorError),
}

/// The quantity in milli-units, rounded up (upstream `MilliValue`; saturates
/// at the `i64` range).
fn milli(q: &Quantity) -> Result<i64, PredicateError> {
    Ok(ParsedQuantity::try_from(q)?.milli_value())
}

/// Upstream `LabelSelectorAsSelector`: a missing selector (`None`) selects
/// nothing, an empty one everything.
fn compile_selector(selector: Option<&LabelSelector>) -> Result<Option<Selector>, PredicateError> {
    Ok(selector.map(Selector::try_from).transpose()?)
}

/// Adds `key In (value)` (or `NotIn` when `!in_set`) to a compiled selector;
/// a selector that selects nothing stays so.
fn add_requirement(
    selector: Option<Selector>,
    key: &str,
    value: &str,
    in_set: bool,
) -> Result<Option<Selector>, PredicateError> {
    let operator = if in_set {
        Operator::In
    } else {
        Operator::NotIn
    };
    let Some(selector) = selector else {
        return Ok(None);
    };
    Ok(Some(selector.and(Requirement::new(
        key,
        operator,
        [value],
    )?)))
}

/// Whether a compiled selector (`None`: nothing) selects these labels.
fn selects(selector: Option<&Selector>, labels: Option<&BTreeMap<String, String>>) -> bool {
    match (selector, labels) {
        (None, _) => false,
        (Some(s), Some(labels)) => s.matches(labels),
        (Some(s), None) => s.matches(&BTreeMap::new()),
    }
}
