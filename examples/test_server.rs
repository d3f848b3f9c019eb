//! Testing a controller with `TestServer`: an in-process API server on an
//! ephemeral port with memory storage (rk's envtest, with no binaries to
//! install). The check below is shaped as a test — start the server, run the
//! controller, create an object, wait for the controller's effect — and
//! `main` runs it, so `cargo run --example test_server` exits 0 when it
//! passes, and `cargo test --example test_server` runs it as a
//! `#[tokio::test]`, the way a crate's `tests/` would (rk-examples/tests/
//! does, for each example operator).
//!
//! ```sh
//! cargo run --example test_server
//! cargo test --example test_server
//! ```

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use rk::apiserver::TestServer;
use rk::runtime::controller::ReconcileFn;
use rk::runtime::{Action, ControllerBuilder, InformerFactory, ObjectKey};
use tokio_util::sync::CancellationToken;

/// The controller under test: marks every ConfigMap `example.rk.dev/seen`.
fn controller(
    client: Client,
    factory: &InformerFactory,
) -> rk::runtime::Controller<impl rk::runtime::Reconciler> {
    let builder = ControllerBuilder::<ConfigMap>::new("mark-seen", factory);
    let store = builder.store();
    builder.build(ReconcileFn(move |key: ObjectKey| {
        let (client, store) = (client.clone(), store.clone());
        async move {
            let Some(cm) = store.get(&key) else {
                return Ok(Action::Done);
            };
            let seen = cm
                .metadata
                .labels
                .as_ref()
                .is_some_and(|l| l.contains_key("example.rk.dev/seen"));
            if !seen {
                let api: Api<ConfigMap> =
                    Api::namespaced(client, key.namespace.as_deref().unwrap_or("default"));
                let patch =
                    serde_json::json!({"metadata": {"labels": {"example.rk.dev/seen": "true"}}});
                api.patch(&key.name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
            }
            Ok::<_, kube::Error>(Action::Done)
        }
    }))
}

// ANCHOR: test
async fn controller_labels_new_config_maps() -> anyhow::Result<()> {
    // An API server for this test alone, and a client for it.
    let server = TestServer::start().await?;
    let client = server.client();

    // The controller, running in the background.
    let factory = InformerFactory::new(client.clone());
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(controller(client.clone(), &factory).run(shutdown.clone()));

    // Act: create an object, as a user would.
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some("demo".into()),
            ..ObjectMeta::default()
        },
        ..ConfigMap::default()
    };
    api.create(&PostParams::default(), &cm).await?;

    // Assert, eventually: controllers converge, they do not answer at once.
    let mut labelled = false;
    for _ in 0..100 {
        let cm = api.get("demo").await?;
        if cm
            .metadata
            .labels
            .is_some_and(|l| l.contains_key("example.rk.dev/seen"))
        {
            labelled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::ensure!(labelled, "the controller never labelled the ConfigMap");

    shutdown.cancel();
    running.await??;
    server.shutdown().await;
    Ok(())
}
// ANCHOR_END: test

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    controller_labels_new_config_maps().await?;
    println!("ok: controller_labels_new_config_maps");
    Ok(())
}

// `cargo test --example test_server` runs the same check under the test
// harness, as it would run in a crate's tests/.
#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn controller_labels_new_config_maps() -> anyhow::Result<()> {
        super::controller_labels_new_config_maps().await
    }
}
