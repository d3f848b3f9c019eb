//! Resource quota arithmetic shared by quota admission (API server) and the
//! quota controller: what an object counts against a quota, and how usage
//! compares with the hard limits — with upstream's resource names and
//! messages.
//!
//! ```
//! use rk_core::quota::{object_count_names, pod_usage};
//! use rk_core::k8s_openapi::api::core::v1::Pod;
//!
//! let pod: Pod = serde_json::from_value(serde_json::json!({
//!     "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "250m"}}}]}
//! })).unwrap();
//! let usage = pod_usage(&pod).unwrap();
//! assert_eq!(usage["pods"].to_string(), "1");
//! assert_eq!(usage["requests.cpu"].to_string(), "250m");
//! assert!(object_count_names("", "configmaps").contains(&"configmaps".to_string()));
//! ```

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;

use crate::quantity::{ParsedQuantity, QuantityError};

/// Usage or limits by resource name (`pods`, `requests.cpu`, `count/deployments.apps`).
pub type Usage = BTreeMap<String, ParsedQuantity>;

/// The quota resource names an object of `group`/`plural` counts against:
/// `count/<plural>[.<group>]`, plus the legacy short names upstream keeps
/// for core kinds (`configmaps`, `secrets`, `services`, ...).
pub fn object_count_names(group: &str, plural: &str) -> Vec<String> {
    let mut names = vec![if group.is_empty() {
        format!("count/{plural}")
    } else {
        format!("count/{plural}.{group}")
    }];
    if group.is_empty()
        && matches!(
            plural,
            "pods"
                | "services"
                | "configmaps"
                | "secrets"
                | "replicationcontrollers"
                | "resourcequotas"
                | "persistentvolumeclaims"
        )
    {
        names.push(plural.to_string());
    }
    names
}

fn add(usage: &mut Usage, name: &str, q: ParsedQuantity) {
    let entry = usage
        .entry(name.to_string())
        .or_insert_with(ParsedQuantity::zero);
    *entry += q;
}

/// True if a pod no longer counts against quota (terminal).
pub fn pod_is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded") | Some("Failed")
    )
}

/// What one pod counts against a quota: `pods`, `count/pods`, and the
/// compute resources (`requests.cpu`, `cpu`, `limits.cpu`, same for
/// memory and ephemeral-storage). Requests follow upstream: the larger of
/// the app containers' sum and any init container, plus overhead.
pub fn pod_usage(pod: &Pod) -> Result<Usage, QuantityError> {
    let mut usage = Usage::new();
    let one = ParsedQuantity::new(1, crate::quantity::Format::DecimalSI);
    add(&mut usage, "pods", one);
    add(&mut usage, "count/pods", one);
    let Some(spec) = pod.spec.as_ref() else {
        return Ok(usage);
    };
    for (kind, prefix) in [("requests", "requests."), ("limits", "limits.")] {
        let mut sum: Usage = Usage::new();
        for c in &spec.containers {
            let list = c.resources.as_ref().and_then(|r| {
                if kind == "requests" {
                    r.requests.as_ref()
                } else {
                    r.limits.as_ref()
                }
            });
            for (name, q) in list.into_iter().flatten() {
                add(&mut sum, name, ParsedQuantity::try_from(q)?);
            }
        }
        for c in spec.init_containers.iter().flatten() {
            let list = c.resources.as_ref().and_then(|r| {
                if kind == "requests" {
                    r.requests.as_ref()
                } else {
                    r.limits.as_ref()
                }
            });
            for (name, q) in list.into_iter().flatten() {
                let q = ParsedQuantity::try_from(q)?;
                let e = sum.entry(name.clone()).or_insert_with(ParsedQuantity::zero);
                if q > *e {
                    *e = q;
                }
            }
        }
        for (name, q) in spec.overhead.iter().flatten() {
            add(&mut sum, name, ParsedQuantity::try_from(q)?);
        }
        for (name, q) in sum {
            if !matches!(name.as_str(), "cpu" | "memory" | "ephemeral-storage") {
                continue;
            }
            add(&mut usage, &format!("{prefix}{name}"), q);
            if kind == "requests" {
                add(&mut usage, &name, q);
            }
        }
    }
    Ok(usage)
}

/// Why an object would exceed a quota.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuotaViolation {
    /// Usage plus the request is over a hard limit.
    Exceeded {
        /// `name=value` pairs requested, used and limited, sorted by name.
        requested: String,
        /// Current usage.
        used: String,
        /// Hard limits.
        limited: String,
    },
    /// The quota limits a compute resource the object doesn't specify.
    MustSpecify(Vec<String>),
}

/// Check `delta` against a quota's `hard` limits with current `used`.
/// Only resources the quota names are checked.
pub fn check(hard: &Usage, used: &Usage, delta: &Usage) -> Result<(), QuotaViolation> {
    // A compute limit the pod doesn't state can't be enforced: upstream
    // refuses the pod.
    if delta.contains_key("pods") {
        let missing: Vec<String> = hard
            .keys()
            .filter(|k| {
                matches!(
                    k.as_str(),
                    "requests.cpu"
                        | "requests.memory"
                        | "limits.cpu"
                        | "limits.memory"
                        | "cpu"
                        | "memory"
                ) && !delta.contains_key(k.as_str())
            })
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Err(QuotaViolation::MustSpecify(missing));
        }
    }
    let mut over = Vec::new();
    for (name, want) in delta {
        let Some(limit) = hard.get(name) else {
            continue;
        };
        let now = used.get(name).copied().unwrap_or_else(ParsedQuantity::zero);
        if now + *want > *limit {
            over.push(name.clone());
        }
    }
    if over.is_empty() {
        return Ok(());
    }
    over.sort();
    let join = |m: &Usage| -> String {
        over.iter()
            .map(|n| {
                format!(
                    "{n}={}",
                    m.get(n).copied().unwrap_or_else(ParsedQuantity::zero)
                )
            })
            .collect::<Vec<_>>()
            .join(",")
    };
    Err(QuotaViolation::Exceeded {
        requested: join(delta),
        used: join(used),
        limited: join(hard),
    })
}

/// Parse a quota's `spec.hard` / `status.used` map.
pub fn parse_usage(
    map: &BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
) -> Result<Usage, QuotaError> {
    map.iter()
        .map(|(k, v)| {
            ParsedQuantity::try_from(v)
                .map(|q| (k.clone(), q))
                .map_err(|e| QuotaError {
                    resource: k.clone(),
                    error: e,
                })
        })
        .collect()
}

/// A quantity in a quota that doesn't parse.
#[derive(Debug, thiserror::Error)]
#[error("invalid quantity for {resource}: {error}")]
pub struct QuotaError {
    /// The resource name.
    pub resource: String,
    /// The parse error.
    pub error: QuantityError,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn q(s: &str) -> ParsedQuantity {
        s.parse().unwrap()
    }

    #[test]
    fn pod_usage_counts_requests_limits_and_the_pod() {
        let pod: Pod = serde_json::from_value(json!({"spec": {
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "200m"}}},
                {"name": "b", "resources": {"requests": {"cpu": "150m"}}}
            ],
            "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "1"}}}]
        }}))
        .unwrap();
        let u = pod_usage(&pod).unwrap();
        assert_eq!(u["pods"], q("1"));
        assert_eq!(
            u["requests.cpu"],
            q("1"),
            "an init container's larger request wins"
        );
        assert_eq!(u["cpu"], q("1"));
        assert_eq!(u["requests.memory"], q("64Mi"));
        assert_eq!(u["limits.cpu"], q("200m"));
    }

    #[test]
    fn exceeding_a_quota_reports_upstream_fields() {
        let hard: Usage = [("pods".to_string(), q("2"))].into();
        let used: Usage = [("pods".to_string(), q("2"))].into();
        let delta: Usage = [("pods".to_string(), q("1"))].into();
        assert_eq!(
            check(&hard, &used, &delta),
            Err(QuotaViolation::Exceeded {
                requested: "pods=1".into(),
                used: "pods=2".into(),
                limited: "pods=2".into()
            })
        );
        let used: Usage = [("pods".to_string(), q("1"))].into();
        assert_eq!(check(&hard, &used, &delta), Ok(()));
    }

    #[test]
    fn compute_quota_requires_pods_to_state_requests() {
        let hard: Usage = [("requests.cpu".to_string(), q("1"))].into();
        let delta: Usage = [("pods".to_string(), q("1"))].into();
        assert_eq!(
            check(&hard, &Usage::new(), &delta),
            Err(QuotaViolation::MustSpecify(vec!["requests.cpu".into()]))
        );
    }
}
