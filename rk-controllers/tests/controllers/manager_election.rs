//! Two controller managers side by side under one Lease: only the leader
//! acts, and stopping it hands over without duplicate pods.

use crate::support::eventually;

use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use rk_controllers::controller_manager::{self, LeaderElection, Options, Selection};
use serde_json::json;
use tokio_util::sync::CancellationToken;

fn manager(client: &kube::Client, id: &str) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let mut election = LeaderElection::new(id);
    election.config.lease_duration = Duration::from_secs(3);
    election.config.renew_deadline = Duration::from_secs(2);
    election.config.retry_period = Duration::from_millis(500);
    let selection: Selection = "replicaset".parse().unwrap();
    let token = CancellationToken::new();
    let t = token.clone();
    let client = client.clone();
    let task = tokio::spawn(async move {
        let _ =
            controller_manager::run_elected(client, &selection, Options::default(), election, t)
                .await;
    });
    (token, task)
}

async fn holder(client: &kube::Client) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    leases
        .get_opt("kube-controller-manager")
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec?.holder_identity)
        .filter(|h| !h.is_empty())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_acts_and_a_stopped_leader_hands_over() {
    let server = crate::support::test_server().await.unwrap();
    let client = server.client();
    let (stop_a, a) = manager(&client, "a");
    eventually("a leads", || async {
        holder(&client).await.as_deref() == Some("a")
    })
    .await;
    let (stop_b, b) = manager(&client, "b");

    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let rs: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 5, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "x"}]}}}
    }))
    .unwrap();
    sets.create(&PostParams::default(), &rs).await.unwrap();
    let count = || async { pods.list(&ListParams::default()).await.unwrap().items.len() };
    eventually("five pods", || async { count().await == 5 }).await;
    assert_eq!(holder(&client).await.as_deref(), Some("a"));

    // Stop the leader: b takes over and acts alone.
    stop_a.cancel();
    let _ = a.await;
    eventually("b leads", || async {
        holder(&client).await.as_deref() == Some("b")
    })
    .await;
    sets.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 8}})),
    )
    .await
    .unwrap();
    eventually("eight pods", || async { count().await == 8 }).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(count().await, 8, "duplicate pods after the handover");
    stop_b.cancel();
    let _ = b.await;
}
