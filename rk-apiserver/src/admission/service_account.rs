//! A pod's service account, as upstream's `ServiceAccount` admission plugin
//! sets it on a create: a pod naming none runs as `default`
//! (`spec.serviceAccountName` and its deprecated twin
//! `spec.serviceAccount`). Mirror pods (a kubelet's static pods) are left as
//! they are.
//!
//! Upstream's plugin also mounts a projected service account token; this
//! server has no TLS or token authentication for in-cluster clients yet, so
//! there is no token volume to add.

use serde_json::{Value, json};

/// The annotation that marks a mirror pod.
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// Give `pod` the `default` service account when it names none.
pub fn admit_pod(pod: &mut Value) {
    if pod["metadata"]["annotations"]
        .get(MIRROR_ANNOTATION)
        .is_some()
    {
        return;
    }
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let named = ["serviceAccountName", "serviceAccount"]
        .iter()
        .find_map(|k| {
            spec.get(*k)
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
        })
        .unwrap_or("default")
        .to_string();
    spec.insert("serviceAccountName".into(), json!(named));
    spec.insert("serviceAccount".into(), json!(named));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_without_an_account_runs_as_default() {
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {"containers": []}});
        admit_pod(&mut pod);
        assert_eq!(pod["spec"]["serviceAccountName"], "default");
        assert_eq!(pod["spec"]["serviceAccount"], "default");
    }

    #[test]
    fn a_named_account_is_kept_and_the_deprecated_field_follows() {
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {"serviceAccountName": "robot"}});
        admit_pod(&mut pod);
        assert_eq!(pod["spec"]["serviceAccount"], "robot");
        let mut old_style = json!({"metadata": {"name": "p"}, "spec": {"serviceAccount": "robot"}});
        admit_pod(&mut old_style);
        assert_eq!(old_style["spec"]["serviceAccountName"], "robot");
    }

    #[test]
    fn mirror_pods_are_left_alone() {
        let mut pod = json!({"metadata": {"name": "p",
            "annotations": {"kubernetes.io/config.mirror": "x"}}, "spec": {}});
        admit_pod(&mut pod);
        assert!(pod["spec"].get("serviceAccountName").is_none());
    }
}
