//! Node heartbeats: a Lease per node in `kube-node-lease`, renewed every
//! 10 s. Many nodes (sim) renew from one task, spread over the interval so
//! the API server sees a steady trickle instead of bursts.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};

use super::node_status::NodeCtx;

/// The namespace of node leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

/// Take one node's lease at start: create it, or renew it if it exists.
pub async fn ensure(
    client: &kube::Client,
    node: &NodeCtx,
    duration_seconds: i32,
) -> Result<(), kube::Error> {
    let api: Api<Lease> = Api::namespaced(client.clone(), NODE_LEASE_NAMESPACE);
    match api
        .create(&PostParams::default(), &new_lease(node, duration_seconds))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => renew(client, node, duration_seconds).await,
        Err(e) => Err(e),
    }
}

fn new_lease(node: &NodeCtx, duration_seconds: i32) -> Lease {
    let owner = node.node().and_then(|n| {
        Some(OwnerReference {
            api_version: "v1".to_owned(),
            kind: "Node".to_owned(),
            name: node.name.clone(),
            uid: n.metadata.uid?,
            ..OwnerReference::default()
        })
    });
    Lease {
        metadata: ObjectMeta {
            name: Some(node.name.clone()),
            namespace: Some(NODE_LEASE_NAMESPACE.to_owned()),
            owner_references: owner.map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(node.name.clone()),
            lease_duration_seconds: Some(duration_seconds),
            renew_time: Some(MicroTime(jiff::Timestamp::now())),
            ..LeaseSpec::default()
        }),
    }
}

/// Renew (or create) one node's lease.
pub async fn renew(
    client: &kube::Client,
    node: &NodeCtx,
    duration_seconds: i32,
) -> Result<(), kube::Error> {
    let api: Api<Lease> = Api::namespaced(client.clone(), NODE_LEASE_NAMESPACE);
    let now = MicroTime(jiff::Timestamp::now());
    let patch = serde_json::json!({
        "spec": {
            "holderIdentity": node.name,
            "leaseDurationSeconds": duration_seconds,
            "renewTime": now,
        }
    });
    match api
        .patch(&node.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => {
            let lease = new_lease(node, duration_seconds);
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

/// Renew every node's lease each `interval`, forever: the nodes are split
/// into one slice per second of the interval, renewed a few at a time.
pub async fn run(
    client: kube::Client,
    nodes: Vec<Arc<NodeCtx>>,
    interval: Duration,
    duration_seconds: i32,
) {
    let slots = interval.as_secs().max(1) as usize;
    let tick = interval / slots as u32;
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut slot = 0usize;
    loop {
        ticker.tick().await;
        let due: Vec<Arc<NodeCtx>> = nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| i % slots == slot)
            .map(|(_, n)| n.clone())
            .collect();
        slot = (slot + 1) % slots;
        futures::stream::iter(due)
            .for_each_concurrent(16, |node| {
                let client = client.clone();
                async move {
                    if let Err(e) = renew(&client, &node, duration_seconds).await {
                        tracing::warn!(node = %node.name, error = %e, "renewing the node lease failed");
                    }
                }
            })
            .await;
    }
}
