//! Per-resource quantity maps: a container's `requests`/`limits`, a node's
//! `capacity`/`allocatable`, a quota's `hard`/`used`.
//!
//! ```
//! use std::collections::BTreeMap;
//! use rk_core::k8s_openapi::apimachinery::pkg::api::resource::Quantity;
//! use rk_core::quantity::{add_resources, fits, parse_resource_list};
//!
//! let k8s = |pairs: &[(&str, &str)]| -> BTreeMap<String, Quantity> {
//!     pairs.iter().map(|(k, v)| (k.to_string(), Quantity(v.to_string()))).collect()
//! };
//! let a = parse_resource_list(&k8s(&[("cpu", "500m"), ("memory", "1Gi")]))?;
//! let b = parse_resource_list(&k8s(&[("cpu", "700m")]))?;
//! let requested = add_resources(&a, &b);
//! assert_eq!(requested["cpu"].to_string(), "1200m");
//!
//! let allocatable = parse_resource_list(&k8s(&[("cpu", "1"), ("memory", "4Gi")]))?;
//! let short = fits(&requested, &allocatable);
//! assert_eq!(short.len(), 1);
//! assert_eq!(short[0].resource, "cpu");
//! # Ok::<(), rk_core::quantity::ResourceListError>(())
//! ```

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::{ParsedQuantity, QuantityError};

/// Parsed quantities by resource name (`cpu`, `memory`, `pods`, ...).
pub type ResourceList = BTreeMap<String, ParsedQuantity>;

/// A resource whose quantity does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("resource {resource:?}: {error}")]
pub struct ResourceListError {
    /// The resource name (the map key).
    pub resource: String,
    /// Why its quantity is invalid.
    pub error: QuantityError,
}

/// Parses every quantity of a Kubernetes resource list; the first bad one
/// is reported with its resource name.
pub fn parse_resource_list(
    list: &BTreeMap<String, Quantity>,
) -> Result<ResourceList, ResourceListError> {
    list.iter()
        .map(|(resource, quantity)| {
            ParsedQuantity::try_from(quantity)
                .map(|q| (resource.clone(), q))
                .map_err(|error| ResourceListError {
                    resource: resource.clone(),
                    error,
                })
        })
        .collect()
}

/// The Kubernetes form, each quantity in canonical string form.
#[must_use]
pub fn to_k8s_resource_list(list: &ResourceList) -> BTreeMap<String, Quantity> {
    list.iter()
        .map(|(resource, q)| (resource.clone(), Quantity::from(q)))
        .collect()
}

/// Per-resource sums; a resource in only one list keeps its quantity.
#[must_use]
pub fn add_resources(a: &ResourceList, b: &ResourceList) -> ResourceList {
    let mut sum = a.clone();
    for (resource, q) in b {
        sum.entry(resource.clone())
            .and_modify(|total| *total += *q)
            .or_insert(*q);
    }
    sum
}

/// Per-resource `a - b`, as upstream's quota `Subtract`: a resource only in
/// `a` keeps its quantity, one only in `b` becomes its negation.
#[must_use]
pub fn subtract_resources(a: &ResourceList, b: &ResourceList) -> ResourceList {
    let mut difference = a.clone();
    for (resource, q) in b {
        difference
            .entry(resource.clone())
            .and_modify(|total| *total -= *q)
            .or_insert(-*q);
    }
    difference
}

/// Per-resource maximum; a resource in only one list keeps its quantity.
#[must_use]
pub fn max_resources(a: &ResourceList, b: &ResourceList) -> ResourceList {
    let mut max = a.clone();
    for (resource, q) in b {
        max.entry(resource.clone())
            .and_modify(|current| {
                if *q > *current {
                    *current = *q;
                }
            })
            .or_insert(*q);
    }
    max
}

/// A resource of which less is available than requested.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortfall {
    /// The resource name.
    pub resource: String,
    /// How much was requested.
    pub requested: ParsedQuantity,
    /// How much is available (zero when the resource is not listed).
    pub available: ParsedQuantity,
}

/// The requested resources that exceed what is allocatable, in resource
/// name order; empty when the request fits. A resource missing from
/// `allocatable` counts as zero available, so only a positive request for it
/// is short.
#[must_use]
pub fn fits(requested: &ResourceList, allocatable: &ResourceList) -> Vec<Shortfall> {
    requested
        .iter()
        .filter_map(|(resource, want)| {
            let available = allocatable.get(resource).copied().unwrap_or_default();
            (*want > available).then(|| Shortfall {
                resource: resource.clone(),
                requested: *want,
                available,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(pairs: &[(&str, &str)]) -> ResourceList {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    (*k).to_owned(),
                    v.parse().unwrap_or_else(|e| panic!("{v}: {e}")),
                )
            })
            .collect()
    }

    fn printed(list: &ResourceList) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect()
    }

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn bad_quantity_error_names_the_resource() {
        let k8s: BTreeMap<String, Quantity> = [
            ("cpu".to_owned(), Quantity("1".to_owned())),
            ("memory".to_owned(), Quantity("1 Gi".to_owned())),
        ]
        .into_iter()
        .collect();
        let err = parse_resource_list(&k8s).err();
        assert_eq!(err.as_ref().map(|e| e.resource.as_str()), Some("memory"));
        assert!(
            err.map(|e| e.to_string())
                .unwrap_or_default()
                .starts_with("resource \"memory\": invalid quantity")
        );
    }

    #[test]
    fn round_trips_through_the_k8s_form_canonically() {
        let k8s: BTreeMap<String, Quantity> =
            [("memory".to_owned(), Quantity("1024Mi".to_owned()))]
                .into_iter()
                .collect();
        let parsed = parse_resource_list(&k8s).unwrap_or_default();
        assert_eq!(to_k8s_resource_list(&parsed)["memory"].0, "1Gi");
    }

    #[test]
    fn add_sums_shared_keys_and_keeps_others() {
        let sum = add_resources(
            &list(&[("cpu", "100m"), ("memory", "1Gi")]),
            &list(&[("cpu", "1"), ("pods", "1")]),
        );
        assert_eq!(
            printed(&sum),
            pairs(&[("cpu", "1100m"), ("memory", "1Gi"), ("pods", "1")])
        );
    }

    #[test]
    fn subtract_negates_keys_only_on_the_right() {
        let difference = subtract_resources(
            &list(&[("cpu", "1"), ("memory", "1Gi")]),
            &list(&[("cpu", "250m"), ("pods", "2")]),
        );
        assert_eq!(
            printed(&difference),
            pairs(&[("cpu", "750m"), ("memory", "1Gi"), ("pods", "-2")])
        );
    }

    #[test]
    fn max_takes_the_larger_per_key() {
        let max = max_resources(
            &list(&[("cpu", "1"), ("memory", "1Gi")]),
            &list(&[("cpu", "1500m"), ("memory", "1Mi")]),
        );
        assert_eq!(printed(&max), pairs(&[("cpu", "1500m"), ("memory", "1Gi")]));
    }

    #[test]
    fn fits_reports_every_short_resource() {
        let requested = list(&[
            ("cpu", "2"),
            ("memory", "1Gi"),
            ("nvidia.com/gpu", "1"),
            ("pods", "0"),
        ]);
        let allocatable = list(&[("cpu", "1"), ("memory", "2Gi")]);
        let short = fits(&requested, &allocatable);
        let names: Vec<&str> = short.iter().map(|s| s.resource.as_str()).collect();
        assert_eq!(names, ["cpu", "nvidia.com/gpu"]);
        assert_eq!(short[1].available, ParsedQuantity::zero());
        assert!(fits(&list(&[("cpu", "1")]), &allocatable).is_empty());
    }
}
