//! What the replica controller needs of the kind it manages, so one core
//! serves both apps/v1 ReplicaSets and core/v1 ReplicationControllers.

use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{PodTemplateSpec, ReplicationController};
use kube::Resource;
use rk_core::labels::Selector;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A kind that keeps a number of pod replicas (ReplicaSet,
/// ReplicationController).
pub trait ReplicaWorkload:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Debug
    + DeserializeOwned
    + Serialize
    + Send
    + Sync
    + 'static
{
    /// The kind's name, as in owner references.
    const KIND: &'static str;
    /// The pod selector.
    fn selector(&self) -> Result<Selector, String>;
    /// `spec.replicas`, defaulting to 1.
    fn replicas(&self) -> i32;
    /// The pod template.
    fn template(&self) -> PodTemplateSpec;
    /// `spec.minReadySeconds`.
    fn min_ready_seconds(&self) -> i32;
    /// The current status as JSON (`{}` when unset).
    fn status_json(&self) -> serde_json::Value;
}

impl ReplicaWorkload for ReplicaSet {
    const KIND: &'static str = "ReplicaSet";
    fn selector(&self) -> Result<Selector, String> {
        Selector::try_from(&self.spec.selector).map_err(|e| e.to_string())
    }
    fn replicas(&self) -> i32 {
        self.spec.replicas.unwrap_or(1).max(0)
    }
    fn template(&self) -> PodTemplateSpec {
        self.spec.template.clone().unwrap_or_default()
    }
    fn min_ready_seconds(&self) -> i32 {
        self.spec.min_ready_seconds.unwrap_or(0)
    }
    fn status_json(&self) -> serde_json::Value {
        serde_json::to_value(self.status.clone().unwrap_or_default()).unwrap_or_default()
    }
}

impl ReplicaWorkload for ReplicationController {
    const KIND: &'static str = "ReplicationController";
    fn selector(&self) -> Result<Selector, String> {
        // An RC's selector is a plain label map; unset, it is the
        // template's labels (the API server defaults it so).
        let labels = self
            .spec
            .as_ref()
            .and_then(|s| s.selector.clone())
            .or_else(|| self.template().metadata.and_then(|m| m.labels))
            .unwrap_or_default();
        let selector = k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
            match_labels: Some(labels),
            match_expressions: None,
        };
        Selector::try_from(&selector).map_err(|e| e.to_string())
    }
    fn replicas(&self) -> i32 {
        self.spec
            .as_ref()
            .and_then(|s| s.replicas)
            .unwrap_or(1)
            .max(0)
    }
    fn template(&self) -> PodTemplateSpec {
        self.spec
            .as_ref()
            .and_then(|s| s.template.clone())
            .unwrap_or_default()
    }
    fn min_ready_seconds(&self) -> i32 {
        self.spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0)
    }
    fn status_json(&self) -> serde_json::Value {
        serde_json::to_value(self.status.clone().unwrap_or_default()).unwrap_or_default()
    }
}
