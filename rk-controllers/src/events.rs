//! Recording core/v1 Events about objects, the way `kubectl describe` shows
//! them (`Normal ScalingReplicaSet  Scaled up replica set web-5d8f to 3`).
//! Failures to record are logged and otherwise ignored: an Event is never
//! worth failing a sync for.

use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, PostParams};
use kube::core::ObjectMeta;
use serde_json::json;

/// Records Events on behalf of one component.
#[derive(Clone)]
pub struct Recorder {
    client: kube::Client,
    component: String,
}

impl Recorder {
    /// A recorder writing as `component` (e.g. `deployment-controller`).
    pub fn new(client: kube::Client, component: impl Into<String>) -> Self {
        Self {
            client,
            component: component.into(),
        }
    }

    /// Record an Event of `type_` (`Normal` or `Warning`) about the object
    /// `kind`/`meta` (its apiVersion given).
    pub async fn record(
        &self,
        api_version: &str,
        kind: &str,
        meta: &ObjectMeta,
        type_: &str,
        reason: &str,
        message: &str,
    ) {
        let ns = meta.namespace.clone().unwrap_or_else(|| "default".into());
        let name = meta.name.clone().unwrap_or_default();
        let now = jiff::Timestamp::now();
        let stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
        let body = json!({
            "metadata": {
                "name": format!("{name}.{:x}", now.as_nanosecond()),
                "namespace": ns,
            },
            "involvedObject": {
                "apiVersion": api_version, "kind": kind, "name": name, "namespace": meta.namespace,
                "uid": meta.uid, "resourceVersion": meta.resource_version,
            },
            "reason": reason,
            "message": message,
            "type": type_,
            "source": {"component": self.component},
            "reportingComponent": self.component,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        });
        let event: Event = match serde_json::from_value(body) {
            Ok(e) => e,
            Err(e) => {
                tracing::debug!(error = %e, "building an event failed");
                return;
            }
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        if let Err(e) = api.create(&PostParams::default(), &event).await {
            tracing::debug!(error = %e, reason, "recording an event failed");
        }
    }
}
