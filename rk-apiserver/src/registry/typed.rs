//! Typed decoding: a built-in object is passed through its `k8s-openapi`
//! type, so a wrong type anywhere (`"replicas": "three"`) is a 400 as
//! upstream answers it, and what is stored has the shape of the type.
//! Custom resources pass through unchanged (their schema checks them).

use rk_core::catalogue::ResourceInfo;
use rk_core::k8s_openapi::api;
use rk_core::k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
use rk_core::k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1 as apiregistration;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A body that does not decode as its kind.
#[derive(Debug, thiserror::Error)]
#[error("{kind} in version \"{version}\" cannot be handled as a {kind}: {message}")]
pub struct DecodeError {
    /// The kind.
    pub kind: String,
    /// The version.
    pub version: String,
    /// What serde said.
    pub message: String,
}

fn roundtrip<T: DeserializeOwned + Serialize>(
    info: &ResourceInfo,
    obj: Value,
) -> Result<Value, DecodeError> {
    let err = |message: String| DecodeError {
        kind: info.kind.clone(),
        version: info.version.clone(),
        message,
    };
    let typed: T = serde_json::from_value(obj).map_err(|e| err(e.to_string()))?;
    serde_json::to_value(&typed).map_err(|e| err(e.to_string()))
}

/// Call `$f::<T>($args)` with `T` the `k8s-openapi` type of `info`'s kind,
/// or evaluate `$otherwise` for kinds without one (custom resources).
macro_rules! with_type {
    (@kinds $info:expr, $f:ident $args:tt, $otherwise:expr, $($group:literal $kind:literal => $ty:ty),* $(,)?) => {
        match ($info.group.as_str(), $info.kind.as_str()) {
            $(($group, $kind) => $f::<$ty> $args,)*
            _ => $otherwise,
        }
    };
    ($info:expr, $f:ident $args:tt, $otherwise:expr) => {
        with_type!(@kinds $info, $f $args, $otherwise,
        "" "Pod" => api::core::v1::Pod,
        "" "Node" => api::core::v1::Node,
        "" "Namespace" => api::core::v1::Namespace,
        "" "Service" => api::core::v1::Service,
        "" "Endpoints" => api::core::v1::Endpoints,
        "" "ConfigMap" => api::core::v1::ConfigMap,
        "" "Secret" => api::core::v1::Secret,
        "" "ServiceAccount" => api::core::v1::ServiceAccount,
        "" "Event" => api::core::v1::Event,
        "" "ReplicationController" => api::core::v1::ReplicationController,
        "" "ResourceQuota" => api::core::v1::ResourceQuota,
        "" "LimitRange" => api::core::v1::LimitRange,
        "" "PersistentVolume" => api::core::v1::PersistentVolume,
        "" "PersistentVolumeClaim" => api::core::v1::PersistentVolumeClaim,
        "" "PodTemplate" => api::core::v1::PodTemplate,
        "apps" "ReplicaSet" => api::apps::v1::ReplicaSet,
        "apps" "Deployment" => api::apps::v1::Deployment,
        "apps" "DaemonSet" => api::apps::v1::DaemonSet,
        "apps" "StatefulSet" => api::apps::v1::StatefulSet,
        "apps" "ControllerRevision" => api::apps::v1::ControllerRevision,
        "batch" "Job" => api::batch::v1::Job,
        "batch" "CronJob" => api::batch::v1::CronJob,
        "coordination.k8s.io" "Lease" => api::coordination::v1::Lease,
        "discovery.k8s.io" "EndpointSlice" => api::discovery::v1::EndpointSlice,
        "networking.k8s.io" "Ingress" => api::networking::v1::Ingress,
        "networking.k8s.io" "IngressClass" => api::networking::v1::IngressClass,
        "networking.k8s.io" "NetworkPolicy" => api::networking::v1::NetworkPolicy,
        "rbac.authorization.k8s.io" "Role" => api::rbac::v1::Role,
        "rbac.authorization.k8s.io" "ClusterRole" => api::rbac::v1::ClusterRole,
        "rbac.authorization.k8s.io" "RoleBinding" => api::rbac::v1::RoleBinding,
        "rbac.authorization.k8s.io" "ClusterRoleBinding" => api::rbac::v1::ClusterRoleBinding,
        "apiextensions.k8s.io" "CustomResourceDefinition" => apiextensions::CustomResourceDefinition,
        "policy" "PodDisruptionBudget" => api::policy::v1::PodDisruptionBudget,
        "scheduling.k8s.io" "PriorityClass" => api::scheduling::v1::PriorityClass,
        "storage.k8s.io" "StorageClass" => api::storage::v1::StorageClass,
        "node.k8s.io" "RuntimeClass" => api::node::v1::RuntimeClass,
        "autoscaling" "HorizontalPodAutoscaler" => api::autoscaling::v2::HorizontalPodAutoscaler,
        "certificates.k8s.io" "CertificateSigningRequest" => api::certificates::v1::CertificateSigningRequest,
        "admissionregistration.k8s.io" "MutatingWebhookConfiguration" => api::admissionregistration::v1::MutatingWebhookConfiguration,
        "admissionregistration.k8s.io" "ValidatingWebhookConfiguration" => api::admissionregistration::v1::ValidatingWebhookConfiguration,
        "admissionregistration.k8s.io" "ValidatingAdmissionPolicy" => api::admissionregistration::v1::ValidatingAdmissionPolicy,
        "admissionregistration.k8s.io" "ValidatingAdmissionPolicyBinding" => api::admissionregistration::v1::ValidatingAdmissionPolicyBinding,
        "admissionregistration.k8s.io" "MutatingAdmissionPolicy" => api::admissionregistration::v1::MutatingAdmissionPolicy,
        "admissionregistration.k8s.io" "MutatingAdmissionPolicyBinding" => api::admissionregistration::v1::MutatingAdmissionPolicyBinding,
        "apiregistration.k8s.io" "APIService" => apiregistration::APIService,
        "flowcontrol.apiserver.k8s.io" "FlowSchema" => api::flowcontrol::v1::FlowSchema,
        "flowcontrol.apiserver.k8s.io" "PriorityLevelConfiguration" => api::flowcontrol::v1::PriorityLevelConfiguration,
        "storage.k8s.io" "CSIDriver" => api::storage::v1::CSIDriver,
        "storage.k8s.io" "CSINode" => api::storage::v1::CSINode,
        "storage.k8s.io" "CSIStorageCapacity" => api::storage::v1::CSIStorageCapacity,
        "storage.k8s.io" "VolumeAttachment" => api::storage::v1::VolumeAttachment,
        "storage.k8s.io" "VolumeAttributesClass" => api::storage::v1::VolumeAttributesClass,
        "networking.k8s.io" "IPAddress" => api::networking::v1::IPAddress,
        "networking.k8s.io" "ServiceCIDR" => api::networking::v1::ServiceCIDR,
        "resource.k8s.io" "DeviceClass" => api::resource::v1::DeviceClass,
        "resource.k8s.io" "ResourceClaim" => api::resource::v1::ResourceClaim,
        "resource.k8s.io" "ResourceClaimTemplate" => api::resource::v1::ResourceClaimTemplate,
        "resource.k8s.io" "ResourceSlice" => api::resource::v1::ResourceSlice,
        )
    };
}

/// Decode `obj` as the kind `info` names and re-encode it.
pub fn normalize(info: &ResourceInfo, obj: Value) -> Result<Value, DecodeError> {
    with_type!(info, roundtrip(info, obj), Ok(obj))
}

/// A JSON request body decoded straight into its kind's type and encoded
/// again: what [`normalize`] makes of it, and the fields the type does not
/// declare (which decoding dropped).
#[derive(Debug)]
pub struct Decoded {
    /// The object, in the shape of its type.
    pub object: Value,
    /// Paths of the dropped fields, sorted, worded as
    /// [`crate::schema::unknown_fields`] words them.
    pub unknown: Vec<String>,
}

/// Decode a JSON body in one pass, without the generic [`Value`] in between
/// (the fast path of writes of built-in kinds). `None` when the kind has no
/// type here or the body does not decode as it: the general path then
/// parses it and reports what is wrong as it always does.
pub fn decode_json(info: &ResourceInfo, body: &[u8]) -> Option<Decoded> {
    with_type!(info, decode_one(body), None)
}

fn decode_one<T: DeserializeOwned + Serialize>(body: &[u8]) -> Option<Decoded> {
    let mut unknown = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(body);
    let typed: T = serde_ignored::deserialize(&mut de, |path| {
        let mut text = String::new();
        path_text(&path, &mut text);
        unknown.push(text);
    })
    .ok()?;
    de.end().ok()?;
    let object = serde_json::to_value(&typed).ok()?;
    unknown.sort();
    Some(Decoded { object, unknown })
}

/// `spec.containers[0].foo` from serde_ignored's path.
fn path_text(path: &serde_ignored::Path<'_>, out: &mut String) {
    use serde_ignored::Path;
    match path {
        Path::Root => {}
        Path::Seq { parent, index } => {
            path_text(parent, out);
            out.push('[');
            out.push_str(&index.to_string());
            out.push(']');
        }
        Path::Map { parent, key } => {
            path_text(parent, out);
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(key);
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => path_text(parent, out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rk_core::catalogue::Catalogue;
    use serde_json::json;

    #[test]
    fn wrong_types_are_decode_errors_naming_the_kind() {
        let info = Catalogue::builtin()
            .get("apps", "v1", "deployments")
            .unwrap();
        let bad = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {"replicas": "three", "selector": {}, "template": {}}});
        let e = normalize(&info, bad).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("Deployment in version \"v1\" cannot be handled as a Deployment:"),
            "{e}"
        );
    }

    #[test]
    fn one_pass_decoding_agrees_with_the_general_path() {
        let cat = Catalogue::builtin();
        let cases = [
            (
                cat.get("", "v1", "pods").unwrap(),
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "b"}, "bogus": 1},
                       "spec": {"containers": [{"name": "c", "image": "i", "imagePullPolice": "x", "ports": [{"containerPort": 80, "nope": true}]}],
                                "nodeSelector": {"k": "v"}, "junk": {"deep": [1]}},
                       "status": null}),
            ),
            (
                cat.get("apps", "v1", "deployments").unwrap(),
                json!({"metadata": {"name": "d", "annotations": {"x": "y"}},
                       "spec": {"replicas": 2, "selector": {"matchLabels": {"a": "b"}},
                                "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i", "extra": 1}]}}}}),
            ),
            (
                cat.get("", "v1", "configmaps").unwrap(),
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "managedFields": [{"manager": "m", "fieldsV1": {"f:data": {}}}]}, "data": {"a": "1"}}),
            ),
        ];
        for (info, body) in cases {
            let decoded = decode_json(&info, body.to_string().as_bytes()).unwrap();
            let mut general = normalize(&info, body.clone()).unwrap();
            // The general path has the identity filled in before it decodes.
            general["apiVersion"] = json!(info.api_version());
            general["kind"] = json!(info.kind);
            assert_eq!(decoded.object, general, "{}", info.kind);
            let unknown = crate::schema::unknown_fields(&info.api_version(), &info.kind, &body);
            assert_eq!(decoded.unknown, unknown, "{}", info.kind);
        }
    }

    #[test]
    fn bodies_that_do_not_decode_take_the_general_path() {
        let info = Catalogue::builtin().get("", "v1", "pods").unwrap();
        for body in [
            r#"{"apiVersion": "v1", "kind": "Deployment"}"#,
            r#"{"apiVersion": "apps/v1", "kind": "Pod"}"#,
            r#"{"spec": {"containers": "no"}}"#,
            r#"{"metadata": {}} trailing"#,
            r#"[1, 2]"#,
            "",
        ] {
            assert!(decode_json(&info, body.as_bytes()).is_none(), "{body}");
        }
        let custom = Catalogue::builtin().get("", "v1", "pods").unwrap();
        let mut custom = (*custom).clone();
        custom.group = "example.com".into();
        assert!(decode_json(&custom, b"{}").is_none());
    }

    #[test]
    fn custom_resources_pass_through() {
        let mut info = (*Catalogue::builtin()
            .get("apps", "v1", "deployments")
            .unwrap())
        .clone();
        info.group = "example.com".into();
        let obj = json!({"spec": {"anything": ["goes"]}});
        assert_eq!(normalize(&info, obj.clone()).unwrap(), obj);
    }
}
