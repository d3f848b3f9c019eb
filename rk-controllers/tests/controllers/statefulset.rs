//! The StatefulSet controller on a `TestServer`. There is no kubelet: the
//! tests mark pods Running and Ready through the status subresource, either
//! one by one or with a task that readies every pod.

use crate::support::eventually;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::support::fake_kubelet;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

async fn mark_ready(pods: &Api<Pod>, name: &str) {
    let now = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    pods.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Running", "podIP": "10.0.0.1",
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}]}})),
    )
    .await
    .unwrap();
}

fn statefulset(name: &str, replicas: i32, extra: serde_json::Value) -> StatefulSet {
    let mut spec = json!({
        "replicas": replicas,
        "serviceName": "nginx",
        "selector": {"matchLabels": {"app": name}},
        "template": {"metadata": {"labels": {"app": name}},
            "spec": {"containers": [{"name": "c", "image": "v1"}]}}
    });
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
}

fn claim_template() -> serde_json::Value {
    json!([{"metadata": {"name": "www"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}])
}

async fn pod_names(pods: &Api<Pod>) -> BTreeSet<String> {
    pods.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| p.metadata.name)
        .collect()
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn image_of(p: &Pod) -> String {
    p.spec.as_ref().unwrap().containers[0]
        .image
        .clone()
        .unwrap_or_default()
}

fn start(client: &kube::Client) -> tokio::task::JoinHandle<()> {
    tokio::spawn(rk_controllers::controllers::statefulset::run(
        client.clone(),
        2,
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_creation_waits_for_each_pod_to_be_ready_and_creates_claims() {
    let server = crate::support::test_server().await.unwrap();
    let client = server.client();
    let task = start(&client);
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    sets.create(
        &PostParams::default(),
        &statefulset("web", 3, json!({"volumeClaimTemplates": claim_template()})),
    )
    .await
    .unwrap();
    eventually("web-0", || async {
        pod_names(&pods).await == names(&["web-0"])
    })
    .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        pod_names(&pods).await,
        names(&["web-0"]),
        "web-1 must wait for web-0 to be ready"
    );

    let p0 = pods.get("web-0").await.unwrap();
    let labels = p0.metadata.labels.clone().unwrap();
    assert_eq!(labels["statefulset.kubernetes.io/pod-name"], "web-0");
    assert_eq!(labels["apps.kubernetes.io/pod-index"], "0");
    assert!(labels.contains_key("controller-revision-hash"));
    let spec = p0.spec.unwrap();
    assert_eq!(spec.hostname.as_deref(), Some("web-0"));
    assert_eq!(spec.subdomain.as_deref(), Some("nginx"));
    let volume = spec
        .volumes
        .unwrap()
        .into_iter()
        .find(|v| v.name == "www")
        .unwrap();
    assert_eq!(
        volume.persistent_volume_claim.unwrap().claim_name,
        "www-web-0"
    );
    claims.get("www-web-0").await.unwrap();

    mark_ready(&pods, "web-0").await;
    eventually("web-1 after web-0 is ready", || async {
        pod_names(&pods).await == names(&["web-0", "web-1"])
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(pod_names(&pods).await, names(&["web-0", "web-1"]));
    mark_ready(&pods, "web-1").await;
    eventually("web-2", || async {
        pod_names(&pods).await == names(&["web-0", "web-1", "web-2"])
    })
    .await;
    mark_ready(&pods, "web-2").await;
    eventually("status", || async {
        let s = sets.get("web").await.unwrap().status.unwrap_or_default();
        s.replicas == 3 && s.ready_replicas == Some(3) && s.current_replicas == Some(3)
    })
    .await;
    let claim_names: BTreeSet<String> = claims
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    assert_eq!(claim_names, names(&["www-web-0", "www-web-1", "www-web-2"]));
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_down_removes_the_highest_ordinal_first_and_keeps_claims() {
    let server = crate::support::test_server().await.unwrap();
    let client = server.client();
    let task = start(&client);
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let kubelet = fake_kubelet(pods.clone());
    sets.create(
        &PostParams::default(),
        &statefulset(
            "db",
            4,
            json!({"volumeClaimTemplates": claim_template(),
                "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete", "whenScaled": "Retain"}}),
        ),
    )
    .await
    .unwrap();
    eventually("four ready pods", || async {
        let s = sets.get("db").await.unwrap().status.unwrap_or_default();
        s.ready_replicas == Some(4)
    })
    .await;

    // Every observed state is a prefix of the ordinals.
    let stop = Arc::new(AtomicBool::new(false));
    let checker = {
        let (pods, stop) = (pods.clone(), stop.clone());
        tokio::spawn(async move {
            let mut bad = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let present = pod_names(&pods).await;
                let prefix: BTreeSet<String> =
                    (0..present.len()).map(|i| format!("db-{i}")).collect();
                if present != prefix {
                    bad.push(present);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            bad
        })
    };
    sets.patch(
        "db",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 1}})),
    )
    .await
    .unwrap();
    eventually("one pod left", || async {
        pod_names(&pods).await == names(&["db-0"])
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    let bad = checker.await.unwrap();
    assert!(bad.is_empty(), "pods removed out of order: {bad:?}");

    let list = claims.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(list.len(), 4, "claims are kept on scale-down");
    let uid = sets.get("db").await.unwrap().metadata.uid.unwrap();
    eventually("claims owned by the set (whenDeleted: Delete)", || async {
        claims
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .all(|c| {
                c.metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|r| r.uid == uid && r.kind == "StatefulSet")
            })
    })
    .await;
    kubelet.abort();
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_rolling_update_updates_from_the_highest_ordinal_down() {
    let server = crate::support::test_server().await.unwrap();
    let client = server.client();
    let task = start(&client);
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let kubelet = fake_kubelet(pods.clone());
    sets.create(
        &PostParams::default(),
        &statefulset(
            "web",
            3,
            json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}}}),
        ),
    )
    .await
    .unwrap();
    eventually("three ready pods", || async {
        let s = sets.get("web").await.unwrap().status.unwrap_or_default();
        s.ready_replicas == Some(3)
    })
    .await;
    let first_revision = sets
        .get("web")
        .await
        .unwrap()
        .status
        .unwrap()
        .update_revision
        .unwrap();
    sets.patch(
        "web",
        &PatchParams::default(),
        &Patch::Strategic(
            json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "v2"}]}}}}),
        ),
    )
    .await
    .unwrap();
    let images = || async {
        let mut out = Vec::new();
        for i in 0..3 {
            out.push(
                pods.get_opt(&format!("web-{i}"))
                    .await
                    .unwrap()
                    .map(|p| image_of(&p))
                    .unwrap_or_default(),
            );
        }
        out
    };
    eventually("ordinals 1 and 2 updated", || async {
        let s = sets.get("web").await.unwrap().status.unwrap_or_default();
        images().await == ["v1", "v2", "v2"]
            && s.updated_replicas == Some(2)
            && s.ready_replicas == Some(3)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(images().await, ["v1", "v2", "v2"], "the partition holds");
    let s = sets.get("web").await.unwrap().status.unwrap();
    assert_eq!(s.current_revision.as_deref(), Some(first_revision.as_str()));
    assert_ne!(s.update_revision, s.current_revision);

    sets.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"updateStrategy": {"rollingUpdate": {"partition": 0}}}})),
    )
    .await
    .unwrap();
    eventually("every ordinal updated", || async {
        let s = sets.get("web").await.unwrap().status.unwrap_or_default();
        images().await == ["v2", "v2", "v2"]
            && s.updated_replicas == Some(3)
            && s.current_revision == s.update_revision
    })
    .await;
    kubelet.abort();
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_management_creates_every_pod_at_once_from_the_start_ordinal() {
    let server = crate::support::test_server().await.unwrap();
    let client = server.client();
    let task = start(&client);
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    sets.create(
        &PostParams::default(),
        &statefulset(
            "par",
            3,
            json!({"podManagementPolicy": "Parallel", "ordinals": {"start": 5}}),
        ),
    )
    .await
    .unwrap();
    // Nothing ever becomes ready, yet every pod is created.
    eventually("three pods without readiness", || async {
        pod_names(&pods).await == names(&["par-5", "par-6", "par-7"])
    })
    .await;
    sets.patch(
        "par",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 1}})),
    )
    .await
    .unwrap();
    eventually("parallel scale down", || async {
        pod_names(&pods).await == names(&["par-5"])
    })
    .await;
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_ready_seconds_delays_the_next_ordinal_and_availability() {
    let server = crate::support::test_server().await.unwrap();
    let client = server.client();
    let task = start(&client);
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    sets.create(
        &PostParams::default(),
        &statefulset("slow", 2, json!({"minReadySeconds": 2})),
    )
    .await
    .unwrap();
    eventually("slow-0", || async {
        pod_names(&pods).await == names(&["slow-0"])
    })
    .await;
    mark_ready(&pods, "slow-0").await;
    eventually("ready but not yet available", || async {
        let s = sets.get("slow").await.unwrap().status.unwrap_or_default();
        s.ready_replicas == Some(1) && s.available_replicas == Some(0)
    })
    .await;
    assert_eq!(pod_names(&pods).await, names(&["slow-0"]));
    eventually("available after minReadySeconds, then slow-1", || async {
        let s = sets.get("slow").await.unwrap().status.unwrap_or_default();
        s.available_replicas == Some(1) && pod_names(&pods).await.len() == 2
    })
    .await;
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_delete_keeps_old_pods_until_they_are_deleted() {
    let server = crate::support::test_server().await.unwrap();
    let client = server.client();
    let task = start(&client);
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let kubelet = fake_kubelet(pods.clone());
    sets.create(
        &PostParams::default(),
        &statefulset("od", 2, json!({"updateStrategy": {"type": "OnDelete"}})),
    )
    .await
    .unwrap();
    eventually("two ready pods", || async {
        let s = sets.get("od").await.unwrap().status.unwrap_or_default();
        s.ready_replicas == Some(2)
    })
    .await;
    sets.patch(
        "od",
        &PatchParams::default(),
        &Patch::Strategic(
            json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "v2"}]}}}}),
        ),
    )
    .await
    .unwrap();
    eventually("a new update revision", || async {
        let s = sets.get("od").await.unwrap().status.unwrap_or_default();
        s.update_revision != s.current_revision && s.updated_replicas == Some(0)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 0..2 {
        assert_eq!(image_of(&pods.get(&format!("od-{i}")).await.unwrap()), "v1");
    }
    pods.delete("od-1", &Default::default()).await.unwrap();
    eventually("od-1 recreated from the new template", || async {
        pods.get_opt("od-1")
            .await
            .unwrap()
            .is_some_and(|p| image_of(&p) == "v2" && p.metadata.deletion_timestamp.is_none())
    })
    .await;
    assert_eq!(image_of(&pods.get("od-0").await.unwrap()), "v1");
    kubelet.abort();
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_of_scaled_down_pods_go_with_them_when_when_scaled_is_delete() {
    let server = crate::support::test_server().await.unwrap();
    let client = server.client();
    let task = start(&client);
    let gc = tokio::spawn(rk_controllers::controllers::garbage_collector::run(
        client.clone(),
    ));
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let kubelet = fake_kubelet(pods.clone());
    sets.create(
        &PostParams::default(),
        &statefulset(
            "kv",
            3,
            json!({"volumeClaimTemplates": claim_template(),
                "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Delete"}}),
        ),
    )
    .await
    .unwrap();
    eventually("three ready pods", || async {
        let s = sets.get("kv").await.unwrap().status.unwrap_or_default();
        s.ready_replicas == Some(3)
    })
    .await;
    sets.patch(
        "kv",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 1}})),
    )
    .await
    .unwrap();
    let claim_names = || async {
        claims
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|c| c.metadata.deletion_timestamp.is_none())
            .filter_map(|c| c.metadata.name)
            .collect::<BTreeSet<String>>()
    };
    eventually("only the remaining pod's claim is left", || async {
        pod_names(&pods).await == names(&["kv-0"]) && claim_names().await == names(&["www-kv-0"])
    })
    .await;
    kubelet.abort();
    gc.abort();
    task.abort();
}
