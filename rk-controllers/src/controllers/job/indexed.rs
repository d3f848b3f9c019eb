//! Indexed completion mode: each pod carries its completion index (in an
//! annotation, a label and the `JOB_COMPLETION_INDEX` env), and the Job's
//! status records finished indexes as compressed ranges (`"1,3-5"`).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::batch::v1::JobSpec;
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod};

/// The annotation and label carrying a pod's completion index.
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
/// The annotation counting earlier failures of a pod's index
/// (`backoffLimitPerIndex`).
pub const INDEX_FAILURE_COUNT: &str = "batch.kubernetes.io/job-index-failure-count";
/// The environment variable that tells a container its index.
pub const INDEX_ENV: &str = "JOB_COMPLETION_INDEX";

/// The indexes in `s` (`"1,3-5"`) below `limit`; malformed or out-of-range
/// parts are skipped.
pub fn parse_ranges(s: &str, limit: i32) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (a.trim().parse::<i32>(), b.trim().parse::<i32>()),
            None => (part.parse::<i32>(), part.parse::<i32>()),
        };
        let (Ok(first), Ok(last)) = (first, last) else {
            continue;
        };
        if first < 0 || last < first {
            continue;
        }
        for i in first..=last.min(limit.saturating_sub(1)) {
            out.insert(i);
        }
    }
    out
}

/// `set` as compressed ranges (`"0,2-4,7"`), as upstream writes
/// `completedIndexes`: every run of consecutive indexes becomes `first-last`.
pub fn format_ranges(set: &BTreeSet<i32>) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut iter = set.iter().copied().peekable();
    while let Some(first) = iter.next() {
        let mut last = first;
        while iter.peek() == Some(&(last + 1)) {
            last += 1;
            iter.next();
        }
        if first == last {
            parts.push(first.to_string());
        } else {
            parts.push(format!("{first}-{last}"));
        }
    }
    parts.join(",")
}

/// A pod's completion index: its annotation, else its label; `None` when
/// missing or not a non-negative number.
pub fn pod_index(pod: &Pod) -> Option<i32> {
    let from = |m: Option<&std::collections::BTreeMap<String, String>>| {
        m.and_then(|m| m.get(COMPLETION_INDEX))
            .and_then(|v| v.parse::<i32>().ok())
            .filter(|i| *i >= 0)
    };
    from(pod.metadata.annotations.as_ref()).or_else(|| from(pod.metadata.labels.as_ref()))
}

/// How many times the pod's index failed before this pod was created.
pub fn index_failure_count(pod: &Pod) -> i32 {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(INDEX_FAILURE_COUNT))
        .and_then(|v| v.parse::<i32>().ok())
        .unwrap_or(0)
        .max(0)
}

/// Indexes in `0..completions` that are neither completed, failed, nor
/// held by an active pod, lowest first.
pub fn pending(
    completions: i32,
    completed: &BTreeSet<i32>,
    failed: &BTreeSet<i32>,
    active: &BTreeSet<i32>,
) -> Vec<i32> {
    (0..completions.max(0))
        .filter(|i| !completed.contains(i) && !failed.contains(i) && !active.contains(i))
        .collect()
}

/// Give a new pod of Job `job` its completion `index`: name prefix
/// `<job>-<index>-`, annotation and label, hostname `<job>-<index>` (unless
/// the template sets one), the `JOB_COMPLETION_INDEX` env in every
/// container, and with `failures` (for `backoffLimitPerIndex`) the count of
/// the index's earlier failures.
pub fn assign(pod: &mut Pod, job: &str, index: i32, failures: Option<i32>) {
    let meta = &mut pod.metadata;
    meta.generate_name = Some(format!("{job}-{index}-"));
    meta.annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(COMPLETION_INDEX.into(), index.to_string());
    meta.labels
        .get_or_insert_with(BTreeMap::new)
        .insert(COMPLETION_INDEX.into(), index.to_string());
    if let Some(n) = failures {
        meta.annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(INDEX_FAILURE_COUNT.into(), n.to_string());
    }
    let spec = pod.spec.get_or_insert_with(Default::default);
    if spec.hostname.as_deref().is_none_or(str::is_empty) {
        spec.hostname = Some(format!("{job}-{index}"));
    }
    let env = EnvVar {
        name: INDEX_ENV.into(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                api_version: Some("v1".into()),
                field_path: format!("metadata.annotations['{COMPLETION_INDEX}']"),
            }),
            ..Default::default()
        }),
    };
    for c in spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten())
    {
        let vars = c.env.get_or_insert_with(Vec::new);
        if !vars.iter().any(|v| v.name == INDEX_ENV) {
            vars.push(env.clone());
        }
    }
}

/// The earlier failures of index `i`: one more than the highest count on a
/// counted failed pod of that index.
pub fn failures_of(spec: &JobSpec, pods: &[Pod], i: i32) -> i32 {
    pods.iter()
        .filter(|p| pod_index(p) == Some(i))
        .filter(|p| rk_core::object::pod_phase(p) == "Failed" || super::is_terminating(p))
        .filter(|p| {
            !matches!(
                spec.pod_failure_policy
                    .as_ref()
                    .and_then(|f| super::failure_policy::evaluate(f, p)),
                Some(super::failure_policy::Action::Ignore)
            )
        })
        .map(|p| index_failure_count(p) + 1)
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_round_trip() {
        let set = parse_ranges("0,2-4,7", 10);
        assert_eq!(set.iter().copied().collect::<Vec<_>>(), vec![0, 2, 3, 4, 7]);
        assert_eq!(format_ranges(&set), "0,2-4,7");
        assert_eq!(format_ranges(&BTreeSet::from([1, 2])), "1-2");
        assert_eq!(format_ranges(&BTreeSet::new()), "");
    }

    #[test]
    fn out_of_range_and_malformed_parts_are_skipped() {
        let set = parse_ranges("1,x,3-9,5-2", 5);
        assert_eq!(set.iter().copied().collect::<Vec<_>>(), vec![1, 3, 4]);
    }

    #[test]
    fn pending_skips_done_failed_and_running_indexes() {
        let p = pending(
            5,
            &BTreeSet::from([0]),
            &BTreeSet::from([3]),
            &BTreeSet::from([1]),
        );
        assert_eq!(p, vec![2, 4]);
    }
}
