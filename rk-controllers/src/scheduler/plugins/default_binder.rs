//! DefaultBinder: writes the binding through the `pods/binding` subresource.

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Binding, ObjectReference, Pod};
use kube::api::{Api, PostParams};

use crate::scheduler::framework::{BindPlugin, Plugin, Status};
use crate::scheduler::types::PodInfo;

/// The plugin's name.
pub const NAME: &str = "DefaultBinder";

/// Upstream's `DefaultBinder` Bind plugin.
#[derive(Clone)]
pub struct DefaultBinder {
    client: Option<kube::Client>,
}

impl DefaultBinder {
    /// A binder using `client` (`None`: every bind fails; for tests without a server).
    pub fn new(client: Option<kube::Client>) -> Self {
        Self { client }
    }
}

impl Plugin for DefaultBinder {
    fn name(&self) -> &'static str {
        NAME
    }
    fn as_bind(&self) -> Option<&dyn BindPlugin> {
        Some(self)
    }
}

impl BindPlugin for DefaultBinder {
    fn bind<'a>(&'a self, pod: &'a PodInfo, node: &'a str) -> BoxFuture<'a, Status> {
        Box::pin(async move {
            let Some(client) = self.client.clone() else {
                return Status::error("DefaultBinder has no API client");
            };
            let api: Api<Pod> = Api::namespaced(client, pod.namespace());
            let name = pod.pod.metadata.name.clone().unwrap_or_default();
            let binding = Binding {
                metadata: kube::api::ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(pod.namespace().to_owned()),
                    uid: pod.pod.metadata.uid.clone(),
                    ..Default::default()
                },
                target: ObjectReference {
                    kind: Some("Node".into()),
                    name: Some(node.to_owned()),
                    ..ObjectReference::default()
                },
            };
            let result: Result<serde_json::Value, kube::Error> = api
                .create_subresource("binding", &name, &PostParams::default(), &binding)
                .await;
            match result {
                Ok(_) => Status::success(),
                Err(e) => Status::error(format!("binding {} to {node}: {e}", pod.key)),
            }
        })
    }
}
