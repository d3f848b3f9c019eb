//! `web-app`: a `WebApp` runs a web server as a Deployment behind a NodePort
//! Service, both owned by the `WebApp` (so deleting it deletes them through
//! the garbage collector), reports how many replicas are ready, and has a
//! scale subresource so `kubectl scale webapp/NAME --replicas=N` works.
//!
//! The reconcile reads top to bottom as the algorithm: keep the finalizer,
//! apply the wanted Deployment and Service (server-side apply, so it is
//! idempotent and reverts drift in the fields it owns), then copy the
//! Deployment's readiness into the status.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, PodSpec, PodTemplateSpec, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{ObjectMeta, Patch, PatchParams};
use kube::{Api, Client, CustomResource, Resource, ResourceExt};
use rk_runtime::Store;
use rk_runtime::cache::ObjectKey;
use rk_runtime::controller::{Action, ControllerBuilder, Reconciler};
use rk_runtime::events::{EventType, Recorder};
use rk_runtime::factory::InformerOptions;
use rk_runtime::finalizer::{FinalizerEvent, finalize};
use rk_runtime::manager::Manager;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::operator::{
    OperatorConfig, ReconcileError, is_true, manager as new_manager, patch_status, publish,
    recorder, set_condition,
};

/// The finalizer the operator keeps on every `WebApp`.
pub const FINALIZER: &str = "examples.rk.dev/web-app";
/// The field manager of the operator's server-side applies.
pub const FIELD_MANAGER: &str = "web-app-operator";
/// The label that selects a `WebApp`'s pods.
pub const APP_LABEL: &str = "examples.rk.dev/webapp";

// ANCHOR: types
/// A web server: what runs, how many copies, on which port.
// Each `printcolumn(...)` repeats `type_ = ...`, which clippy takes for a
// duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "examples.rk.dev",
    version = "v1",
    kind = "WebApp",
    namespaced,
    status = "WebAppStatus",
    shortname = "wa",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyReplicas")
)]
#[serde(rename_all = "camelCase")]
pub struct WebAppSpec {
    /// The container image (the `process` runtime of `rk up` ignores it).
    pub image: String,
    /// The command (the image's entrypoint when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Its arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// How many copies run.
    #[serde(default = "one")]
    pub replicas: i32,
    /// The port the server listens on (also given to it as `$PORT`; on
    /// `rk up` each pod also gets its own loopback address as `$POD_IP`).
    pub port: i32,
    /// The Service's node port (allocated by the API server when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_port: Option<i32>,
}

fn one() -> i32 {
    1
}

/// What the operator observed.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebAppStatus {
    /// Pods the Deployment has.
    #[serde(default)]
    pub replicas: i32,
    /// Pods that are ready.
    #[serde(default)]
    pub ready_replicas: i32,
    /// The label selector of the pods, for the scale subresource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`: every wanted replica is ready.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
// ANCHOR_END: types

/// The labels of a `WebApp`'s pods.
pub fn pod_labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(APP_LABEL.to_owned(), name.to_owned())])
}

// ANCHOR: children
/// The Deployment a `WebApp` wants, controlled by it.
pub fn desired_deployment(app: &WebApp) -> Result<Deployment, ReconcileError> {
    let name = app.name_any();
    let owner = app
        .controller_owner_ref(&())
        .ok_or_else(|| ReconcileError::Invalid("WebApp has no uid yet".into()))?;
    let container = Container {
        name: "web".into(),
        image: Some(app.spec.image.clone()),
        command: (!app.spec.command.is_empty()).then(|| app.spec.command.clone()),
        args: (!app.spec.args.is_empty()).then(|| app.spec.args.clone()),
        ports: Some(vec![ContainerPort {
            container_port: app.spec.port,
            name: Some("http".into()),
            ..ContainerPort::default()
        }]),
        env: Some(vec![EnvVar {
            name: "PORT".into(),
            value: Some(app.spec.port.to_string()),
            ..EnvVar::default()
        }]),
        ..Container::default()
    };
    Ok(Deployment {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: app.namespace(),
            labels: Some(pod_labels(&name)),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: DeploymentSpec {
            replicas: Some(app.spec.replicas),
            selector: LabelSelector {
                match_labels: Some(pod_labels(&name)),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels(&name)),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        },
        status: None,
    })
}

/// The NodePort Service a `WebApp` wants, controlled by it.
pub fn desired_service(app: &WebApp) -> Result<Service, ReconcileError> {
    let name = app.name_any();
    let owner = app
        .controller_owner_ref(&())
        .ok_or_else(|| ReconcileError::Invalid("WebApp has no uid yet".into()))?;
    Ok(Service {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: app.namespace(),
            labels: Some(pod_labels(&name)),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("NodePort".into()),
            selector: Some(pod_labels(&name)),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: app.spec.port,
                target_port: Some(IntOrString::Int(app.spec.port)),
                node_port: app.spec.node_port,
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    })
}
// ANCHOR_END: children

/// The status a `WebApp` should report, given its Deployment (if any).
pub fn observed_status(app: &WebApp, deployment: Option<&Deployment>) -> WebAppStatus {
    let mut status = app.status.clone().unwrap_or_default();
    let dstatus = deployment.and_then(|d| d.status.as_ref());
    status.replicas = dstatus.and_then(|s| s.replicas).unwrap_or(0);
    status.ready_replicas = dstatus.and_then(|s| s.ready_replicas).unwrap_or(0);
    status.selector = Some(format!("{APP_LABEL}={}", app.name_any()));
    status.observed_generation = app.metadata.generation;
    let wanted = app.spec.replicas;
    let ready = status.ready_replicas >= wanted && status.replicas == wanted;
    let (reason, message) = if ready {
        (
            "AllReplicasReady",
            format!("{wanted} of {wanted} replicas ready"),
        )
    } else {
        (
            "ReplicasNotReady",
            format!("{} of {wanted} replicas ready", status.ready_replicas),
        )
    };
    set_condition(
        &mut status.conditions,
        "Ready",
        ready,
        reason,
        message,
        app.metadata.generation,
    );
    status
}

/// Reconciles `WebApp`s.
pub struct WebAppReconciler {
    client: Client,
    apps: Store<WebApp>,
    deployments: Store<Deployment>,
    recorder: Arc<Recorder>,
}

// ANCHOR: reconcile
impl Reconciler for WebAppReconciler {
    type Error = ReconcileError;

    async fn reconcile(&self, key: ObjectKey) -> Result<Action, ReconcileError> {
        let Some(app) = self.apps.get(&key) else {
            return Ok(Action::Done); // deleted; the garbage collector removes the children
        };
        let api: Api<WebApp> =
            Api::namespaced(self.client.clone(), &app.namespace().unwrap_or_default());
        let outcome = finalize(&api, FINALIZER, (*app).clone(), |event| async {
            match event {
                FinalizerEvent::Apply(app) => self.apply(&app).await,
                FinalizerEvent::Cleanup(app) => self.cleanup(&app).await,
            }
        })
        .await;
        match outcome {
            Ok(action) => Ok(action.unwrap_or(Action::Done)),
            Err(e) => {
                let e = ReconcileError::from(e);
                publish(
                    &self.recorder,
                    &*app,
                    EventType::Warning,
                    "ReconcileFailed",
                    e.to_string(),
                )
                .await;
                Err(e)
            }
        }
    }
}
// ANCHOR_END: reconcile

impl WebAppReconciler {
    // ANCHOR: apply
    async fn apply(&self, app: &WebApp) -> Result<Action, ReconcileError> {
        let name = app.name_any();
        let namespace = app.namespace().unwrap_or_default();
        let params = PatchParams::apply(FIELD_MANAGER).force();

        // 1. The children: server-side apply is create-or-update in one call.
        let existed = self
            .deployments
            .get(&ObjectKey::namespaced(&namespace, &name))
            .is_some();
        let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), &namespace);
        deployments
            .patch(&name, &params, &Patch::Apply(&desired_deployment(app)?))
            .await?;
        let services: Api<Service> = Api::namespaced(self.client.clone(), &namespace);
        services
            .patch(&name, &params, &Patch::Apply(&desired_service(app)?))
            .await?;
        if !existed {
            let note = format!("created Deployment and Service {name}");
            publish(&self.recorder, app, EventType::Normal, "Created", note).await;
        }

        // 2. The status, from the Deployment the informer last saw.
        let deployment = self
            .deployments
            .get(&ObjectKey::namespaced(&namespace, &name));
        let status = observed_status(app, deployment.as_deref());
        if app.status.as_ref() != Some(&status) {
            let became_ready = is_true(&status.conditions, "Ready")
                && !app
                    .status
                    .as_ref()
                    .is_some_and(|s| is_true(&s.conditions, "Ready"));
            let api: Api<WebApp> = Api::namespaced(self.client.clone(), &namespace);
            patch_status(&api, &name, app.status.as_ref(), &status).await?;
            if became_ready {
                let note = format!("{} replicas ready", status.ready_replicas);
                publish(&self.recorder, app, EventType::Normal, "Ready", note).await;
            }
        }
        Ok(Action::Done)
    }
    // ANCHOR_END: apply

    async fn cleanup(&self, app: &WebApp) -> Result<Action, ReconcileError> {
        // Nothing lives outside the cluster; the Deployment and Service go
        // with their owner. A real operator would release external state here.
        let note = "WebApp deleted; the garbage collector removes its Deployment and Service";
        publish(
            &self.recorder,
            app,
            EventType::Normal,
            "Deleting",
            note.into(),
        )
        .await;
        Ok(Action::Done)
    }
}

// ANCHOR: wiring
/// A [`Manager`] running the `web-app` controller under `config`.
pub fn manager(client: Client, config: &OperatorConfig) -> Manager {
    let mut manager = new_manager(client.clone(), config);
    let builder = ControllerBuilder::<WebApp>::new("web-app", manager.factory())
        .owns::<Deployment>(&InformerOptions::all())
        .owns::<Service>(&InformerOptions::all())
        .workers(config.workers)
        .metrics(manager.controller_metrics(), Some(manager.queue_metrics()));
    let apps = builder.store();
    let deployments = manager
        .factory()
        .informer::<Deployment>(&InformerOptions::all())
        .store();
    let reconciler = WebAppReconciler {
        recorder: recorder(client.clone(), "examples.rk.dev/web-app", config),
        client,
        apps,
        deployments,
    };
    manager.add_controller(builder.build(reconciler));
    manager
}
// ANCHOR_END: wiring
