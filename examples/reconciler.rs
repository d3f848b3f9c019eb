//! A minimal reconciler: for every ConfigMap, keep an annotation
//! `example.rk.dev/keys` saying how many keys it holds. Level-triggered: the
//! reconcile reads the current object from the informer's store and writes
//! only when what it sees differs from what it wants, so running it twice,
//! after a restart or after a missed event changes nothing.
//!
//! Shows: `ControllerBuilder`, `Reconciler`, `Action`, reading from the
//! store, an idempotent write.
//!
//! ```sh
//! export KUBECONFIG=$PWD/rk-data/kubeconfig
//! cargo run --example reconciler &
//! kubectl create configmap demo --from-literal=a=1 --from-literal=b=2
//! kubectl get configmap demo -o jsonpath='{.metadata.annotations}'
//! ```

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use rk::runtime::{Action, ControllerBuilder, InformerFactory, ObjectKey, Reconciler, Store};

const ANNOTATION: &str = "example.rk.dev/keys";

// ANCHOR: reconciler
struct CountKeys {
    client: Client,
    config_maps: Store<ConfigMap>,
}

impl Reconciler for CountKeys {
    type Error = kube::Error;

    async fn reconcile(&self, key: ObjectKey) -> Result<Action, kube::Error> {
        // 1. Read what is, from the cache.
        let Some(cm) = self.config_maps.get(&key) else {
            return Ok(Action::Done); // deleted: nothing to do
        };
        // 2. Compute what should be.
        let want = cm.data.as_ref().map_or(0, |d| d.len()).to_string();
        let have = cm
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ANNOTATION));
        // 3. Act only on a difference.
        if have != Some(&want) {
            let api: Api<ConfigMap> = Api::namespaced(
                self.client.clone(),
                key.namespace.as_deref().unwrap_or("default"),
            );
            let patch = serde_json::json!({"metadata": {"annotations": {ANNOTATION: want}}});
            api.patch(&key.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            println!("{key}: {ANNOTATION}={want}");
        }
        Ok(Action::Done)
    }
}
// ANCHOR_END: reconciler

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let client = Client::try_default().await?;
    // ANCHOR: run
    let factory = InformerFactory::new(client.clone());
    let builder = ControllerBuilder::<ConfigMap>::new("count-keys", &factory).workers(2);
    let config_maps = builder.store();
    let controller = builder.build(CountKeys {
        client,
        config_maps,
    });
    let shutdown = tokio_util::sync::CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        stop.cancel();
    });
    controller.run(shutdown).await?;
    // ANCHOR_END: run
    Ok(())
}
