//! A pod watcher: one shared informer lists and watches every Pod, keeps them
//! in a [`rk::runtime::Store`] with an index by node, and prints each change
//! and, every five seconds, how many pods each node runs.
//!
//! Shows: `InformerFactory`, `Informer::subscribe`, `wait_for_sync`, named
//! indexes (`pod_node_name`, `by_namespace`) and `Store::by_index`.
//!
//! Run it against `rk up` (in another terminal):
//!
//! ```sh
//! export KUBECONFIG=$PWD/rk-data/kubeconfig
//! cargo run --example pod_watcher
//! ```

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use rk::runtime::cache::index::{by_namespace, pod_node_name};
use rk::runtime::{InformerEvent, InformerFactory, InformerOptions};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let client = kube::Client::try_default().await?;
    // ANCHOR: informer
    let factory = InformerFactory::new(client);
    let pods = factory.informer::<Pod>(&InformerOptions::all());
    let store = pods.store();
    store.add_index("node", pod_node_name());
    store.add_index("namespace", by_namespace());
    let mut events = pods.subscribe();
    factory.start();
    if !pods.wait_for_sync().await {
        anyhow::bail!("the pod informer stopped before it synced");
    }
    println!("synced: {} pods", store.len());
    // ANCHOR_END: informer

    // ANCHOR: events
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            event = events.next() => {
                let Some(event) = event else { break };
                match event {
                    InformerEvent::Added(pod) => println!("added   {}/{}", pod.namespace().unwrap_or_default(), pod.name_any()),
                    InformerEvent::Updated { new, .. } => {
                        let phase = new.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
                        println!("updated {}/{} ({phase})", new.namespace().unwrap_or_default(), new.name_any());
                    }
                    InformerEvent::Deleted(pod) => println!("deleted {}/{}", pod.namespace().unwrap_or_default(), pod.name_any()),
                }
            }
            _ = tick.tick() => {
                // The index answers "which pods are on node N" without a scan.
                for node in store.index_values("node")? {
                    let on_node = store.by_index("node", &node)?;
                    println!("node {node}: {} pods", on_node.len());
                }
            }
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    // ANCHOR_END: events
    factory.shutdown();
    Ok(())
}
