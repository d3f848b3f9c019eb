//! Two schedulers under one Lease: only the leader binds, and a stopped
//! leader hands over.

use crate::support::eventually;

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use rk_controllers::election::{self, LeaderElection};
use serde_json::json;
use tokio_util::sync::CancellationToken;

fn scheduler(client: &kube::Client, id: &str) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let mut lease = LeaderElection::for_lease(id, "kube-scheduler");
    lease.config.lease_duration = Duration::from_secs(3);
    lease.config.renew_deadline = Duration::from_secs(2);
    lease.config.retry_period = Duration::from_millis(500);
    let token = CancellationToken::new();
    let t = token.clone();
    let client = client.clone();
    let task = tokio::spawn(async move {
        let work = rk_controllers::scheduler::run(client.clone(), Default::default());
        let _ = election::while_leading(client, lease, t, work).await;
    });
    (token, task)
}

async fn holder(client: &kube::Client) -> Option<String> {
    Api::<Lease>::namespaced(client.clone(), "kube-system")
        .get_opt("kube-scheduler")
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec?.holder_identity)
        .filter(|h| !h.is_empty())
}

async fn bound_by(pods: &Api<Pod>, name: &str) -> Option<String> {
    pods.get(name).await.ok()?.spec?.node_name
}

async fn make_pod(pods: &Api<Pod>, name: &str) {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "x"}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leading_scheduler_binds_and_a_stopped_one_hands_over() {
    let server = crate::support::test_server().await.unwrap();
    let client = server.client();
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({"metadata": {"name": "n1"}})).unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();
    nodes
        .patch_status(
            "n1",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {
                "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                "conditions": [{"type": "Ready", "status": "True"}]}})),
        )
        .await
        .unwrap();
    let (stop_a, a) = scheduler(&client, "a");
    eventually("a leads", || async {
        holder(&client).await.as_deref() == Some("a")
    })
    .await;
    let (stop_b, b) = scheduler(&client, "b");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    make_pod(&pods, "p1").await;
    eventually("p1 bound", || async {
        bound_by(&pods, "p1").await.is_some()
    })
    .await;
    // Exactly one Scheduled event: the standby did not bind too.
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), "default");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let scheduled = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("Scheduled"))
        .count();
    assert!(scheduled <= 1, "{scheduled} Scheduled events for one pod");
    assert_eq!(holder(&client).await.as_deref(), Some("a"));

    stop_a.cancel();
    let _ = a.await;
    eventually("b leads", || async {
        holder(&client).await.as_deref() == Some("b")
    })
    .await;
    make_pod(&pods, "p2").await;
    eventually("p2 bound by the new leader", || async {
        bound_by(&pods, "p2").await.is_some()
    })
    .await;
    stop_b.cancel();
    let _ = b.await;
}
