//! A controller that owns children: every Deployment labelled
//! `example.rk.dev/expose=true` gets a ClusterIP Service of the same name,
//! selecting its pods, with a controller owner reference back to the
//! Deployment. Because of that reference, a change to the Service (someone
//! deletes or edits it) reconciles its Deployment again, and deleting the
//! Deployment makes the garbage collector delete the Service.
//!
//! Shows: `owns::<Service>()`, `controller_owner_ref`, server-side apply as
//! create-or-update, an informer filtered by a label selector.
//!
//! ```sh
//! export KUBECONFIG=$PWD/rk-data/kubeconfig
//! cargo run --example owner &
//! kubectl create deployment web --image=python:3 -- sh -c 'exec python3 -m http.server 8080 --bind $POD_IP'
//! kubectl label deployment web example.rk.dev/expose=true
//! kubectl get service web -o yaml   # ownerReferences: Deployment web
//! kubectl delete deployment web; kubectl get service web   # gone
//! ```

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use kube::api::{ObjectMeta, Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};
use rk::runtime::{
    Action, ControllerBuilder, InformerFactory, InformerOptions, ObjectKey, Reconciler, Store,
};

const LABEL: &str = "example.rk.dev/expose";

struct Expose {
    client: Client,
    deployments: Store<Deployment>,
}

// ANCHOR: child
fn service_for(deployment: &Deployment) -> Option<Service> {
    let owner = deployment.controller_owner_ref(&())?; // needs the uid: a stored object
    let selector = deployment.spec.selector.match_labels.clone()?;
    Some(Service {
        metadata: ObjectMeta {
            name: deployment.metadata.name.clone(),
            namespace: deployment.namespace(),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            selector: Some(selector),
            ports: Some(vec![ServicePort {
                port: 8080,
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    })
}
// ANCHOR_END: child

impl Reconciler for Expose {
    type Error = kube::Error;

    async fn reconcile(&self, key: ObjectKey) -> Result<Action, kube::Error> {
        let Some(deployment) = self.deployments.get(&key) else {
            return Ok(Action::Done); // the garbage collector deletes the Service
        };
        let Some(service) = service_for(&deployment) else {
            return Ok(Action::Done);
        };
        let api: Api<Service> = Api::namespaced(
            self.client.clone(),
            key.namespace.as_deref().unwrap_or("default"),
        );
        api.patch(
            &key.name,
            &PatchParams::apply("expose-example").force(),
            &Patch::Apply(&service),
        )
        .await?;
        println!("{key}: Service applied");
        Ok(Action::Done)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let client = Client::try_default().await?;
    // ANCHOR: builder
    let factory = InformerFactory::new(client.clone());
    let builder = ControllerBuilder::<Deployment>::new("expose", &factory)
        .for_kind(InformerOptions::all().labels(format!("{LABEL}=true")))
        .owns::<Service>(&InformerOptions::all());
    let deployments = builder.store();
    let controller = builder.build(Expose {
        client,
        deployments,
    });
    // ANCHOR_END: builder
    let shutdown = tokio_util::sync::CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        stop.cancel();
    });
    controller.run(shutdown).await?;
    Ok(())
}
