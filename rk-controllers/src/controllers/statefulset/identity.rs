//! The stable identity of a StatefulSet's pods (upstream's
//! `stateful_set_utils.go`): the pod of ordinal `i` is `<set>-<i>`, labelled
//! with its name and index, has its own name as hostname and the governing
//! Service as subdomain, and mounts the claims `<template>-<set>-<i>` made
//! from `volumeClaimTemplates`.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

/// The label naming the pod (for per-pod Services).
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// The label carrying the pod's ordinal.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
/// The label naming the revision a pod was made from.
pub const REVISION_LABEL: &str = "controller-revision-hash";

/// The set's name.
pub fn set_name(set: &StatefulSet) -> &str {
    set.metadata.name.as_deref().unwrap_or_default()
}

/// The first ordinal (`spec.ordinals.start`, default 0).
pub fn start_ordinal(set: &StatefulSet) -> i32 {
    set.spec
        .ordinals
        .as_ref()
        .and_then(|o| o.start)
        .unwrap_or(0)
        .max(0)
}

/// `spec.replicas` (default 1).
pub fn replicas(set: &StatefulSet) -> i32 {
    set.spec.replicas.unwrap_or(1).max(0)
}

/// The name of the pod of `ordinal`.
pub fn pod_name(set: &StatefulSet, ordinal: i32) -> String {
    format!("{}-{ordinal}", set_name(set))
}

/// The ordinal in a pod name `<set>-<ordinal>`, if it has that shape.
pub fn ordinal_of(set: &StatefulSet, pod: &Pod) -> Option<i32> {
    let name = pod.metadata.name.as_deref()?;
    let rest = name.strip_prefix(set_name(set))?.strip_prefix('-')?;
    if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    rest.parse().ok().filter(|o: &i32| *o >= 0)
}

/// The claim of template `template` for `ordinal`.
pub fn claim_name(set: &StatefulSet, template: &PersistentVolumeClaim, ordinal: i32) -> String {
    format!(
        "{}-{}-{ordinal}",
        template.metadata.name.as_deref().unwrap_or_default(),
        set_name(set)
    )
}

/// The claims the pod of `ordinal` uses, keyed by template (volume) name.
pub fn claims_for(set: &StatefulSet, ordinal: i32) -> BTreeMap<String, PersistentVolumeClaim> {
    let selector_labels = set.spec.selector.match_labels.clone().unwrap_or_default();
    set.spec
        .volume_claim_templates
        .iter()
        .flatten()
        .map(|t| {
            let mut labels = t.metadata.labels.clone().unwrap_or_default();
            labels.extend(selector_labels.clone());
            let claim = PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(claim_name(set, t, ordinal)),
                    namespace: set.metadata.namespace.clone(),
                    labels: Some(labels),
                    annotations: t.metadata.annotations.clone(),
                    ..ObjectMeta::default()
                },
                spec: t.spec.clone(),
                status: None,
            };
            (t.metadata.name.clone().unwrap_or_default(), claim)
        })
        .collect()
}

/// The pod of `ordinal` made from `template` (a revision's template), with
/// its identity, the revision label and volumes for its claims.
pub fn new_pod(
    set: &StatefulSet,
    template: &PodTemplateSpec,
    ordinal: i32,
    revision: &str,
    owner: OwnerReference,
) -> Pod {
    let name = pod_name(set, ordinal);
    let tmeta = template.metadata.clone().unwrap_or_default();
    let mut labels = tmeta.labels.unwrap_or_default();
    labels.insert(POD_NAME_LABEL.into(), name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    labels.insert(REVISION_LABEL.into(), revision.to_string());
    let mut spec = template.spec.clone().unwrap_or_default();
    spec.hostname = Some(name.clone());
    spec.subdomain = set.spec.service_name.clone().filter(|s| !s.is_empty());
    let claims = claims_for(set, ordinal);
    if !claims.is_empty() {
        let volumes = spec.volumes.get_or_insert_with(Vec::new);
        volumes.retain(|v| !claims.contains_key(&v.name));
        for (volume, claim) in claims {
            volumes.push(Volume {
                name: volume,
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim.metadata.name.unwrap_or_default(),
                    read_only: None,
                }),
                ..Volume::default()
            });
        }
    }
    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: set.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: tmeta.annotations,
            finalizers: tmeta.finalizers,
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// The identity labels the pod of `ordinal` lacks or has wrong, as a
/// label patch (empty when the identity holds).
pub fn missing_identity_labels(
    set: &StatefulSet,
    pod: &Pod,
    ordinal: i32,
) -> BTreeMap<String, String> {
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    let want = [
        (POD_NAME_LABEL, pod_name(set, ordinal)),
        (POD_INDEX_LABEL, ordinal.to_string()),
    ];
    want.into_iter()
        .filter(|(k, v)| labels.get(*k) != Some(v))
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

/// The pod's revision (its `controller-revision-hash` label).
pub fn pod_revision(pod: &Pod) -> Option<&str> {
    pod.metadata
        .labels
        .as_ref()?
        .get(REVISION_LABEL)
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set() -> StatefulSet {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "serviceName": "nginx",
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c"}], "volumes": [{"name": "www", "emptyDir": {}}]}},
                "volumeClaimTemplates": [{"metadata": {"name": "www"},
                    "spec": {"accessModes": ["ReadWriteOnce"]}}]}
        }))
        .unwrap_or_default()
    }

    #[test]
    fn ordinals_come_from_names_of_the_set_only() {
        let s = set();
        let named = |n: &str| Pod {
            metadata: ObjectMeta {
                name: Some(n.into()),
                ..ObjectMeta::default()
            },
            ..Pod::default()
        };
        assert_eq!(ordinal_of(&s, &named("web-3")), Some(3));
        assert_eq!(ordinal_of(&s, &named("web-x")), None);
        assert_eq!(ordinal_of(&s, &named("webby-1")), None);
        assert_eq!(ordinal_of(&s, &named("web-")), None);
    }

    #[test]
    fn new_pods_carry_identity_and_claim_volumes() {
        let s = set();
        let owner = OwnerReference::default();
        let p = new_pod(&s, &s.spec.template, 2, "web-abc", owner);
        let labels = p.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels[POD_NAME_LABEL], "web-2");
        assert_eq!(labels[POD_INDEX_LABEL], "2");
        assert_eq!(labels[REVISION_LABEL], "web-abc");
        let spec = p.spec.unwrap_or_default();
        assert_eq!(spec.hostname.as_deref(), Some("web-2"));
        assert_eq!(spec.subdomain.as_deref(), Some("nginx"));
        let volumes = spec.volumes.unwrap_or_default();
        assert_eq!(volumes.len(), 1, "the claim replaces the template volume");
        assert_eq!(
            volumes[0]
                .persistent_volume_claim
                .as_ref()
                .map(|c| c.claim_name.as_str()),
            Some("www-web-2")
        );
        let claims = claims_for(&s, 2);
        assert_eq!(
            claims["www"]
                .metadata
                .labels
                .as_ref()
                .map(|l| l["app"].as_str()),
            Some("web")
        );
    }
}
