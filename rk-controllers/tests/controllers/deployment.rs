//! The Deployment controller (with the ReplicaSet controller) on a
//! `TestServer`. There is no kubelet: a task of the test marks every new
//! pod Running and Ready through the status subresource.

use crate::support::eventually;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::support::{fake_kubelet, is_ready};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

fn deployment(name: &str, replicas: i32, image: &str, strategy: serde_json::Value) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": strategy,
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": image}]}}
        }
    }))
    .unwrap()
}

fn image_of(p: &Pod) -> String {
    p.spec.as_ref().unwrap().containers[0]
        .image
        .clone()
        .unwrap_or_default()
}

async fn set_image(api: &Api<Deployment>, name: &str, image: &str) {
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": image}]}}}})),
    )
    .await
    .unwrap();
}

async fn rolled_out(api: &Api<Deployment>, name: &str, replicas: i32) -> bool {
    let d = api.get(name).await.unwrap();
    let s = d.status.unwrap_or_default();
    s.observed_generation == d.metadata.generation
        && s.updated_replicas == Some(replicas)
        && s.replicas == Some(replicas)
        && s.available_replicas == Some(replicas)
}

fn start_controllers(client: &kube::Client) -> Vec<tokio::task::JoinHandle<()>> {
    vec![
        tokio::spawn(rk_controllers::controllers::replicaset::run(
            client.clone(),
            4,
        )),
        tokio::spawn(rk_controllers::controllers::deployment::run(
            client.clone(),
            2,
        )),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_keeps_surge_and_unavailability_bounds_and_undo_returns() {
    let server = crate::support::test_server().await.unwrap();
    let client = server.client();
    let tasks = start_controllers(&client);
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let kubelet = fake_kubelet(pods.clone());
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let replicas = 50;
    let strategy = json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}});
    deployments
        .create(
            &PostParams::default(),
            &deployment("web", replicas, "v1", strategy),
        )
        .await
        .unwrap();
    eventually("first rollout", || {
        rolled_out(&deployments, "web", replicas)
    })
    .await;
    let d = deployments.get("web").await.unwrap();
    assert_eq!(
        d.metadata.annotations.as_ref().unwrap()["deployment.kubernetes.io/revision"],
        "1"
    );
    let conditions = d.status.unwrap().conditions.unwrap();
    let progressing = conditions
        .iter()
        .find(|c| c.type_.as_deref() == Some("Progressing"))
        .unwrap();
    assert_eq!(
        progressing.reason.as_deref(),
        Some("NewReplicaSetAvailable")
    );
    let available = conditions
        .iter()
        .find(|c| c.type_.as_deref() == Some("Available"))
        .unwrap();
    assert_eq!(available.status.as_deref(), Some("True"));

    // Watch every pod during the update: maxSurge 5 and maxUnavailable 5 must
    // hold at every observed instant.
    let stop = Arc::new(AtomicBool::new(false));
    let checker = {
        let pods = pods.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut worst = (0usize, usize::MAX);
            while !stop.load(Ordering::SeqCst) {
                let list = pods.list(&ListParams::default()).await.unwrap().items;
                let live: Vec<&Pod> = list
                    .iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_none())
                    .collect();
                let ready = live.iter().filter(|p| is_ready(p)).count();
                worst = (worst.0.max(live.len()), worst.1.min(ready));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            worst
        })
    };
    set_image(&deployments, "web", "v2").await;
    eventually("second rollout", || async {
        rolled_out(&deployments, "web", replicas).await
            && pods
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .iter()
                .all(|p| image_of(p) == "v2")
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    let (most, fewest_ready) = checker.await.unwrap();
    // 25% of 50: maxSurge rounds up to 13, maxUnavailable down to 12.
    assert!(most <= 63, "{most} pods at once, over replicas + maxSurge");
    assert!(
        fewest_ready >= 38,
        "only {fewest_ready} ready, under replicas - maxUnavailable"
    );

    let list = sets.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(list.len(), 2);
    let old = list
        .iter()
        .find(|r| {
            r.spec
                .template
                .as_ref()
                .unwrap()
                .spec
                .as_ref()
                .unwrap()
                .containers[0]
                .image
                .as_deref()
                == Some("v1")
        })
        .unwrap();
    assert_eq!(old.spec.replicas, Some(0));
    let old_name = old.metadata.name.clone().unwrap();

    // Undo: the template goes back, the old set is reused with revision 3.
    set_image(&deployments, "web", "v1").await;
    eventually("undo", || async {
        rolled_out(&deployments, "web", replicas).await
            && pods
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .iter()
                .all(|p| image_of(p) == "v1")
    })
    .await;
    let reused = sets.get(&old_name).await.unwrap();
    assert_eq!(reused.spec.replicas, Some(replicas));
    assert_eq!(
        reused.metadata.annotations.as_ref().unwrap()["deployment.kubernetes.io/revision"],
        "3"
    );
    assert_eq!(
        sets.list(&ListParams::default()).await.unwrap().items.len(),
        2
    );
    // The syncs were counted, under controller-runtime's metric names.
    let metrics = rk_controllers::metrics::render();
    assert!(
        metrics.contains(
            r#"controller_runtime_reconcile_total{controller="deployment",result="success"}"#
        ),
        "{metrics}"
    );
    assert!(metrics.contains("controller_runtime_active_workers"));
    kubelet.abort();
    for t in tasks {
        t.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreate_never_runs_two_templates_at_once() {
    let server = crate::support::test_server().await.unwrap();
    let client = server.client();
    let tasks = start_controllers(&client);
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let kubelet = fake_kubelet(pods.clone());
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    deployments
        .create(
            &PostParams::default(),
            &deployment("db", 3, "v1", json!({"type": "Recreate"})),
        )
        .await
        .unwrap();
    eventually("first rollout", || rolled_out(&deployments, "db", 3)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let checker = {
        let pods = pods.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut mixed = false;
            while !stop.load(Ordering::SeqCst) {
                let list = pods.list(&ListParams::default()).await.unwrap().items;
                let images: std::collections::HashSet<String> = list.iter().map(image_of).collect();
                mixed |= images.len() > 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            mixed
        })
    };
    set_image(&deployments, "db", "v2").await;
    eventually("recreated", || async {
        rolled_out(&deployments, "db", 3).await
            && pods
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .iter()
                .all(|p| image_of(p) == "v2")
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    assert!(!checker.await.unwrap(), "old and new pods ran together");
    kubelet.abort();
    for t in tasks {
        t.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_deployments_scale_but_do_not_roll_and_history_is_limited() {
    let server = crate::support::test_server().await.unwrap();
    let client = server.client();
    let tasks = start_controllers(&client);
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let kubelet = fake_kubelet(pods.clone());
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let mut d = deployment("api", 2, "v1", json!({}));
    d.spec.revision_history_limit = Some(1);
    deployments
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
    eventually("first rollout", || rolled_out(&deployments, "api", 2)).await;
    for image in ["v2", "v3"] {
        set_image(&deployments, "api", image).await;
        eventually("rollout", || async {
            rolled_out(&deployments, "api", 2).await
                && pods
                    .list(&ListParams::default())
                    .await
                    .unwrap()
                    .items
                    .iter()
                    .all(|p| image_of(p) == image)
        })
        .await;
    }
    // revisionHistoryLimit 1: the current set and one old one.
    eventually("old sets cleaned up", || async {
        sets.list(&ListParams::default()).await.unwrap().items.len() == 2
    })
    .await;

    deployments
        .patch(
            "api",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"paused": true}})),
        )
        .await
        .unwrap();
    set_image(&deployments, "api", "v4").await;
    deployments
        .patch(
            "api",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 4}})),
        )
        .await
        .unwrap();
    eventually("scaled while paused", || async {
        let s = deployments
            .get("api")
            .await
            .unwrap()
            .status
            .unwrap_or_default();
        s.replicas == Some(4) && s.available_replicas == Some(4)
    })
    .await;
    let list = pods.list(&ListParams::default()).await.unwrap().items;
    assert!(
        list.iter().all(|p| image_of(p) == "v3"),
        "a paused deployment rolled out"
    );
    let d = deployments.get("api").await.unwrap();
    let progressing = d
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_.as_deref() == Some("Progressing"))
        .unwrap();
    assert_eq!(progressing.reason.as_deref(), Some("DeploymentPaused"));
    kubelet.abort();
    for t in tasks {
        t.abort();
    }
}
