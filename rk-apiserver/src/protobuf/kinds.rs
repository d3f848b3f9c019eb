//! The kinds whose protobuf form is decoded: (apiVersion, kind) -> the
//! `k8s-pb` type, rendered with `Debug`.

use k8s_pb::api;
use prost::Message;

use super::ProtobufError;

fn debug<T: Message + Default + std::fmt::Debug>(
    kind: &str,
    raw: &[u8],
) -> Result<String, ProtobufError> {
    T::decode(raw)
        .map(|m| format!("{m:?}"))
        .map_err(|e| ProtobufError::Decode {
            kind: kind.to_string(),
            message: e.to_string(),
        })
}

/// Decode `raw` as (apiVersion, kind) and render it with `Debug`.
pub fn decode_debug(api_version: &str, kind: &str, raw: &[u8]) -> Result<String, ProtobufError> {
    macro_rules! table {
        ($($av:literal $k:literal => $ty:ty),* $(,)?) => {
            match (api_version, kind) {
                $(($av, $k) => debug::<$ty>(kind, raw),)*
                _ => Err(ProtobufError::UnknownKind { api_version: api_version.to_string(), kind: kind.to_string() }),
            }
        };
    }
    table! {
        "v1" "Pod" => api::core::v1::Pod,
        "v1" "Namespace" => api::core::v1::Namespace,
        "v1" "Node" => api::core::v1::Node,
        "v1" "Service" => api::core::v1::Service,
        "v1" "Endpoints" => api::core::v1::Endpoints,
        "v1" "ConfigMap" => api::core::v1::ConfigMap,
        "v1" "Secret" => api::core::v1::Secret,
        "v1" "ServiceAccount" => api::core::v1::ServiceAccount,
        "v1" "Event" => api::core::v1::Event,
        "v1" "ReplicationController" => api::core::v1::ReplicationController,
        "v1" "ResourceQuota" => api::core::v1::ResourceQuota,
        "v1" "LimitRange" => api::core::v1::LimitRange,
        "v1" "PersistentVolume" => api::core::v1::PersistentVolume,
        "v1" "PersistentVolumeClaim" => api::core::v1::PersistentVolumeClaim,
        "v1" "PodTemplate" => api::core::v1::PodTemplate,
        "v1" "Binding" => api::core::v1::Binding,
        "apps/v1" "Deployment" => api::apps::v1::Deployment,
        "apps/v1" "ReplicaSet" => api::apps::v1::ReplicaSet,
        "apps/v1" "DaemonSet" => api::apps::v1::DaemonSet,
        "apps/v1" "StatefulSet" => api::apps::v1::StatefulSet,
        "apps/v1" "ControllerRevision" => api::apps::v1::ControllerRevision,
        "batch/v1" "Job" => api::batch::v1::Job,
        "batch/v1" "CronJob" => api::batch::v1::CronJob,
        "coordination.k8s.io/v1" "Lease" => api::coordination::v1::Lease,
        "discovery.k8s.io/v1" "EndpointSlice" => api::discovery::v1::EndpointSlice,
        "events.k8s.io/v1" "Event" => api::events::v1::Event,
        "networking.k8s.io/v1" "Ingress" => api::networking::v1::Ingress,
        "networking.k8s.io/v1" "IngressClass" => api::networking::v1::IngressClass,
        "networking.k8s.io/v1" "NetworkPolicy" => api::networking::v1::NetworkPolicy,
        "rbac.authorization.k8s.io/v1" "Role" => api::rbac::v1::Role,
        "rbac.authorization.k8s.io/v1" "ClusterRole" => api::rbac::v1::ClusterRole,
        "rbac.authorization.k8s.io/v1" "RoleBinding" => api::rbac::v1::RoleBinding,
        "rbac.authorization.k8s.io/v1" "ClusterRoleBinding" => api::rbac::v1::ClusterRoleBinding,
        "authorization.k8s.io/v1" "SelfSubjectAccessReview" => api::authorization::v1::SelfSubjectAccessReview,
        "authorization.k8s.io/v1" "SelfSubjectRulesReview" => api::authorization::v1::SelfSubjectRulesReview,
        "authorization.k8s.io/v1" "SubjectAccessReview" => api::authorization::v1::SubjectAccessReview,
        "authorization.k8s.io/v1" "LocalSubjectAccessReview" => api::authorization::v1::LocalSubjectAccessReview,
        "authentication.k8s.io/v1" "SelfSubjectReview" => api::authentication::v1::SelfSubjectReview,
        "authentication.k8s.io/v1" "TokenReview" => api::authentication::v1::TokenReview,
        "authentication.k8s.io/v1" "TokenRequest" => api::authentication::v1::TokenRequest,
        "policy/v1" "PodDisruptionBudget" => api::policy::v1::PodDisruptionBudget,
        "policy/v1" "Eviction" => api::policy::v1::Eviction,
        "scheduling.k8s.io/v1" "PriorityClass" => api::scheduling::v1::PriorityClass,
        "storage.k8s.io/v1" "StorageClass" => api::storage::v1::StorageClass,
        "node.k8s.io/v1" "RuntimeClass" => api::node::v1::RuntimeClass,
        "autoscaling/v1" "Scale" => api::autoscaling::v1::Scale,
        "autoscaling/v2" "HorizontalPodAutoscaler" => api::autoscaling::v2::HorizontalPodAutoscaler,
        "certificates.k8s.io/v1" "CertificateSigningRequest" => api::certificates::v1::CertificateSigningRequest,
    }
}
