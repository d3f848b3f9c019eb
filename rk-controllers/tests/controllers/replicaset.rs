//! The ReplicaSet controller on a `TestServer` (no kubelet: pods stay
//! Pending unless a test marks them ready through the status subresource).

use crate::support::eventually;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

fn replicaset(name: &str, replicas: i32) -> ReplicaSet {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}
        }
    }))
    .unwrap()
}

async fn owned_pods(pods: &Api<Pod>, app: &str) -> Vec<Pod> {
    pods.list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicaset_creates_scales_and_reports_status() {
    let server = crate::support::test_server().await.unwrap();
    let client = server.client();
    let ctrl = tokio::spawn(rk_controllers::controllers::replicaset::run(
        client.clone(),
        2,
    ));
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    sets.create(&PostParams::default(), &replicaset("web", 3))
        .await
        .unwrap();
    eventually("three pods", || async {
        owned_pods(&pods, "web").await.len() == 3
    })
    .await;
    for p in owned_pods(&pods, "web").await {
        let r = p.metadata.owner_references.unwrap();
        assert_eq!(r[0].kind, "ReplicaSet");
        assert_eq!(r[0].controller, Some(true));
        assert!(p.metadata.name.unwrap().starts_with("web-"));
    }
    eventually("status.replicas is 3", || async {
        sets.get("web").await.unwrap().status.map(|s| s.replicas) == Some(3)
    })
    .await;
    // Mark one pod ready: readyReplicas follows.
    let first = owned_pods(&pods, "web").await[0]
        .metadata
        .name
        .clone()
        .unwrap();
    let ready = json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
    pods.patch_status(&first, &PatchParams::default(), &Patch::Merge(&ready))
        .await
        .unwrap();
    eventually("readyReplicas is 1", || async {
        sets.get("web")
            .await
            .unwrap()
            .status
            .and_then(|s| s.ready_replicas)
            == Some(1)
    })
    .await;
    // Scale down to 1: the ready pod survives (unready ones go first).
    sets.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"replicas": 1}})),
    )
    .await
    .unwrap();
    eventually("one pod left", || async {
        owned_pods(&pods, "web").await.len() == 1
    })
    .await;
    assert_eq!(
        owned_pods(&pods, "web").await[0].metadata.name.as_deref(),
        Some(first.as_str())
    );
    ctrl.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphans_are_adopted_and_non_matching_pods_released() {
    let server = crate::support::test_server().await.unwrap();
    let client = server.client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let orphan: Pod = serde_json::from_value(json!({"metadata": {"name": "orphan", "labels": {"app": "api"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}})).unwrap();
    pods.create(&PostParams::default(), &orphan).await.unwrap();
    let ctrl = tokio::spawn(rk_controllers::controllers::replicaset::run(
        client.clone(),
        2,
    ));
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    sets.create(&PostParams::default(), &replicaset("api", 2))
        .await
        .unwrap();
    eventually("two pods, the orphan adopted", || async {
        owned_pods(&pods, "api").await.len() == 2
    })
    .await;
    let adopted = pods.get("orphan").await.unwrap();
    assert_eq!(adopted.metadata.owner_references.unwrap()[0].name, "api");
    // Relabel the adopted pod: it is released and replaced.
    pods.patch(
        "orphan",
        &PatchParams::default(),
        &Patch::Merge(&json!({"metadata": {"labels": {"app": "other"}}})),
    )
    .await
    .unwrap();
    eventually("released", || async {
        pods.get("orphan")
            .await
            .unwrap()
            .metadata
            .owner_references
            .unwrap_or_default()
            .is_empty()
    })
    .await;
    eventually("replaced", || async {
        owned_pods(&pods, "api").await.len() == 2
    })
    .await;
    ctrl.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_pod_is_replaced_without_overshooting() {
    let server = crate::support::test_server().await.unwrap();
    let client = server.client();
    let ctrl = tokio::spawn(rk_controllers::controllers::replicaset::run(
        client.clone(),
        4,
    ));
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    sets.create(&PostParams::default(), &replicaset("many", 50))
        .await
        .unwrap();
    eventually("fifty pods", || async {
        owned_pods(&pods, "many").await.len() == 50
    })
    .await;
    let victim = owned_pods(&pods, "many").await[0]
        .metadata
        .name
        .clone()
        .unwrap();
    pods.delete(&victim, &Default::default()).await.unwrap();
    eventually("replaced", || async {
        let now = owned_pods(&pods, "many").await;
        now.len() == 50
            && now
                .iter()
                .all(|p| p.metadata.name.as_deref() != Some(victim.as_str()))
    })
    .await;
    // Give any duplicate creation a chance to show, then check the count.
    eventually("status settles at 50", || async {
        sets.get("many").await.unwrap().status.map(|s| s.replicas) == Some(50)
    })
    .await;
    assert_eq!(owned_pods(&pods, "many").await.len(), 50);
    ctrl.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_controllers_share_the_replica_core() {
    use k8s_openapi::api::core::v1::ReplicationController;
    let server = crate::support::test_server().await.unwrap();
    let client = server.client();
    let ctrl = tokio::spawn(
        rk_controllers::controllers::replicaset::run_replication_controllers(client.clone(), 2),
    );
    let rcs: Api<ReplicationController> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    // No selector: it defaults to the template's labels.
    let rc: ReplicationController = serde_json::from_value(json!({
        "metadata": {"name": "legacy"},
        "spec": {"replicas": 3, "template": {"metadata": {"labels": {"app": "legacy"}},
            "spec": {"containers": [{"name": "c", "image": "x"}]}}}
    }))
    .unwrap();
    rcs.create(&PostParams::default(), &rc).await.unwrap();
    eventually("three pods owned by the RC", || async {
        let owned = owned_pods(&pods, "legacy").await;
        owned.len() == 3
            && owned.iter().all(|p| {
                p.metadata.owner_references.as_ref().unwrap()[0].kind == "ReplicationController"
            })
    })
    .await;
    rcs.patch(
        "legacy",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 1}})),
    )
    .await
    .unwrap();
    eventually("scaled down to one, status follows", || async {
        owned_pods(&pods, "legacy").await.len() == 1
            && rcs.get("legacy").await.unwrap().status.map(|s| s.replicas) == Some(1)
    })
    .await;
    ctrl.abort();
}
