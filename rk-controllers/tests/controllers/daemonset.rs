//! The DaemonSet controller on a `TestServer`. There is no scheduler and no
//! kubelet: pods stay unbound (pinned to their node by node affinity) and a
//! task of the test marks them Running and Ready through the status
//! subresource.

use crate::support::eventually;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::support::{fake_kubelet, is_ready};
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

async fn add_node(
    nodes: &Api<Node>,
    name: &str,
    labels: serde_json::Value,
    taints: serde_json::Value,
) {
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {"taints": taints}
    }))
    .unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();
}

fn daemonset(name: &str, image: &str, spec_extra: serde_json::Value) -> DaemonSet {
    let mut spec = json!({
        "selector": {"matchLabels": {"app": name}},
        "template": {"metadata": {"labels": {"app": name}},
            "spec": {"containers": [{"name": "c", "image": image}]}}
    });
    for (k, v) in spec_extra.as_object().unwrap() {
        if k == "nodeSelector" {
            spec["template"]["spec"]["nodeSelector"] = v.clone();
        } else {
            spec[k] = v.clone();
        }
    }
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
}

/// The node each live pod is pinned to, sorted.
async fn pinned_nodes(pods: &Api<Pod>) -> Vec<String> {
    let mut out: Vec<String> = pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| {
            let terms = &p
                .spec
                .as_ref()
                .unwrap()
                .affinity
                .as_ref()
                .unwrap()
                .node_affinity
                .as_ref()
                .unwrap()
                .required_during_scheduling_ignored_during_execution
                .as_ref()
                .unwrap()
                .node_selector_terms;
            assert_eq!(terms.len(), 1);
            let req = &terms[0].match_fields.as_ref().unwrap()[0];
            assert_eq!(
                (req.key.as_str(), req.operator.as_str()),
                ("metadata.name", "In")
            );
            req.values.as_ref().unwrap()[0].clone()
        })
        .collect();
    out.sort();
    out
}

fn image_of(p: &Pod) -> String {
    p.spec.as_ref().unwrap().containers[0]
        .image
        .clone()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_pod_per_eligible_node_follows_nodes_joining_and_changing() {
    let server = crate::support::test_server().await.unwrap();
    let client = server.client();
    let nodes: Api<Node> = Api::all(client.clone());
    add_node(&nodes, "edge-1", json!({"role": "edge"}), json!([])).await;
    add_node(
        &nodes,
        "edge-tainted",
        json!({"role": "edge"}),
        json!([{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]),
    )
    .await;
    add_node(&nodes, "core-1", json!({"role": "core"}), json!([])).await;
    // Cordoned and not-ready nodes still get daemon pods.
    add_node(
        &nodes,
        "edge-cordoned",
        json!({"role": "edge"}),
        json!([{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"},
               {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}]),
    )
    .await;
    let task = tokio::spawn(rk_controllers::controllers::daemonset::run(
        client.clone(),
        2,
    ));
    let sets: Api<DaemonSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    sets.create(
        &PostParams::default(),
        &daemonset("agent", "v1", json!({"nodeSelector": {"role": "edge"}})),
    )
    .await
    .unwrap();
    eventually("pods on the eligible nodes", || async {
        pinned_nodes(&pods).await == ["edge-1", "edge-cordoned"]
    })
    .await;

    let list = pods.list(&ListParams::default()).await.unwrap().items;
    let pod = &list[0];
    assert!(
        pod.spec.as_ref().unwrap().node_name.is_none(),
        "pods are left to the scheduler"
    );
    let tolerations = pod.spec.as_ref().unwrap().tolerations.clone().unwrap();
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
        "node.kubernetes.io/disk-pressure",
        "node.kubernetes.io/memory-pressure",
        "node.kubernetes.io/pid-pressure",
        "node.kubernetes.io/unschedulable",
    ] {
        assert!(
            tolerations.iter().any(|t| t.key.as_deref() == Some(key)),
            "no toleration for {key}"
        );
    }
    let hash = pod.metadata.labels.as_ref().unwrap()["controller-revision-hash"].clone();
    let revisions: Api<ControllerRevision> = Api::namespaced(client.clone(), "default");
    let rev = revisions.get(&format!("agent-{hash}")).await.unwrap();
    assert_eq!(rev.revision, Some(1));
    eventually("status", || async {
        let s = sets.get("agent").await.unwrap().status.unwrap_or_default();
        s.desired_number_scheduled == 2
            && s.current_number_scheduled == 2
            && s.number_misscheduled == 0
    })
    .await;

    // A node joins: it gets a pod.
    add_node(&nodes, "edge-2", json!({"role": "edge"}), json!([])).await;
    eventually("a pod on the new node", || async {
        pinned_nodes(&pods).await == ["edge-1", "edge-2", "edge-cordoned"]
    })
    .await;

    // A node loses its label: its pod goes. Another gains it: it gets one.
    nodes
        .patch(
            "edge-1",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"role": "core"}}})),
        )
        .await
        .unwrap();
    nodes
        .patch(
            "core-1",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"role": "edge"}}})),
        )
        .await
        .unwrap();
    eventually("pods follow the labels", || async {
        pinned_nodes(&pods).await == ["core-1", "edge-2", "edge-cordoned"]
    })
    .await;

    // A NoExecute taint the pod does not tolerate evicts it; a node that
    // leaves takes its pod with it.
    nodes
        .patch(
            "edge-2",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"taints": [{"key": "maintenance", "effect": "NoExecute"}]}}),
            ),
        )
        .await
        .unwrap();
    nodes
        .delete("core-1", &DeleteParams::default())
        .await
        .unwrap();
    eventually("pods leave tainted and deleted nodes", || async {
        pinned_nodes(&pods).await == ["edge-cordoned"]
    })
    .await;
    eventually("status counts", || async {
        let s = sets.get("agent").await.unwrap().status.unwrap_or_default();
        s.desired_number_scheduled == 1 && s.current_number_scheduled == 1
    })
    .await;

    // A NoSchedule taint keeps new pods away but lets the running one stay,
    // counted as misscheduled.
    nodes
        .patch(
            "edge-cordoned",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"taints": [{"key": "gpu", "effect": "NoSchedule"}]}})),
        )
        .await
        .unwrap();
    eventually("a misscheduled pod", || async {
        let s = sets.get("agent").await.unwrap().status.unwrap_or_default();
        s.desired_number_scheduled == 0 && s.number_misscheduled == 1
    })
    .await;
    assert_eq!(pinned_nodes(&pods).await, ["edge-cordoned"]);
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_daemon_pods_are_replaced() {
    let server = crate::support::test_server().await.unwrap();
    let client = server.client();
    let nodes: Api<Node> = Api::all(client.clone());
    add_node(&nodes, "n1", json!({}), json!([])).await;
    let task = tokio::spawn(rk_controllers::controllers::daemonset::run(
        client.clone(),
        2,
    ));
    let sets: Api<DaemonSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    sets.create(&PostParams::default(), &daemonset("agent", "v1", json!({})))
        .await
        .unwrap();
    eventually("a pod", || async {
        pods.list(&ListParams::default()).await.unwrap().items.len() == 1
    })
    .await;
    let first = pods.list(&ListParams::default()).await.unwrap().items[0]
        .metadata
        .name
        .clone()
        .unwrap();
    pods.patch_status(
        &first,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Failed"}})),
    )
    .await
    .unwrap();
    eventually("a replacement pod", || async {
        let list = pods.list(&ListParams::default()).await.unwrap().items;
        list.len() == 1 && list[0].metadata.name.as_deref() != Some(first.as_str())
    })
    .await;
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_keeps_max_unavailable() {
    let server = crate::support::test_server().await.unwrap();
    let client = server.client();
    let nodes: Api<Node> = Api::all(client.clone());
    let count = 6;
    for i in 0..count {
        add_node(&nodes, &format!("n{i}"), json!({}), json!([])).await;
    }
    let task = tokio::spawn(rk_controllers::controllers::daemonset::run(
        client.clone(),
        2,
    ));
    let sets: Api<DaemonSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let kubelet = fake_kubelet(pods.clone());
    let strategy = json!({"updateStrategy": {"type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 2, "maxSurge": 0}}});
    sets.create(&PostParams::default(), &daemonset("agent", "v1", strategy))
        .await
        .unwrap();
    let rolled_out = |image: &'static str| {
        let (sets, pods) = (sets.clone(), pods.clone());
        move || {
            let (sets, pods) = (sets.clone(), pods.clone());
            async move {
                let d = sets.get("agent").await.unwrap();
                let s = d.status.unwrap_or_default();
                let list = pods.list(&ListParams::default()).await.unwrap().items;
                s.observed_generation == d.metadata.generation
                    && s.updated_number_scheduled == Some(count)
                    && s.number_available == Some(count)
                    && list.len() == count as usize
                    && list.iter().all(|p| image_of(p) == image)
            }
        }
    };
    eventually("first rollout", rolled_out("v1")).await;

    let stop = Arc::new(AtomicBool::new(false));
    let checker = {
        let (pods, stop) = (pods.clone(), stop.clone());
        tokio::spawn(async move {
            let (mut most, mut fewest_ready) = (0usize, usize::MAX);
            while !stop.load(Ordering::SeqCst) {
                let list = pods.list(&ListParams::default()).await.unwrap().items;
                let live: Vec<&Pod> = list
                    .iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_none())
                    .collect();
                most = most.max(live.len());
                fewest_ready = fewest_ready.min(live.iter().filter(|p| is_ready(p)).count());
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (most, fewest_ready)
        })
    };
    sets.patch(
        "agent",
        &PatchParams::default(),
        &Patch::Strategic(
            json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "v2"}]}}}}),
        ),
    )
    .await
    .unwrap();
    eventually("second rollout", rolled_out("v2")).await;
    stop.store(true, Ordering::SeqCst);
    let (most, fewest_ready) = checker.await.unwrap();
    assert!(
        most <= count as usize,
        "{most} pods at once with maxSurge 0"
    );
    assert!(
        fewest_ready >= count as usize - 2,
        "only {fewest_ready} ready pods with maxUnavailable 2"
    );

    let revisions: Api<ControllerRevision> = Api::namespaced(client.clone(), "default");
    let mut numbers: Vec<i64> = revisions
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|r| r.revision.unwrap_or(0))
        .collect();
    numbers.sort();
    assert_eq!(numbers, vec![1, 2]);

    // Undo as `kubectl rollout undo` does: apply revision 1's data as a
    // strategic merge patch. The old revision is reused and renumbered.
    let first = revisions
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|r| r.revision == Some(1))
        .unwrap();
    sets.patch(
        "agent",
        &PatchParams::default(),
        &Patch::Strategic(first.data.0.clone()),
    )
    .await
    .unwrap();
    eventually("undo", rolled_out("v1")).await;
    let undone = revisions
        .get(first.metadata.name.as_deref().unwrap())
        .await
        .unwrap();
    assert_eq!(undone.revision, Some(3));
    assert_eq!(
        revisions
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        2
    );
    kubelet.abort();
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_delete_replaces_only_deleted_pods() {
    let server = crate::support::test_server().await.unwrap();
    let client = server.client();
    let nodes: Api<Node> = Api::all(client.clone());
    for i in 0..2 {
        add_node(&nodes, &format!("n{i}"), json!({}), json!([])).await;
    }
    let task = tokio::spawn(rk_controllers::controllers::daemonset::run(
        client.clone(),
        2,
    ));
    let sets: Api<DaemonSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let kubelet = fake_kubelet(pods.clone());
    sets.create(
        &PostParams::default(),
        &daemonset(
            "agent",
            "v1",
            json!({"updateStrategy": {"type": "OnDelete"}}),
        ),
    )
    .await
    .unwrap();
    eventually("two ready pods", || async {
        let s = sets.get("agent").await.unwrap().status.unwrap_or_default();
        s.number_ready == 2
    })
    .await;
    sets.patch(
        "agent",
        &PatchParams::default(),
        &Patch::Strategic(
            json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "v2"}]}}}}),
        ),
    )
    .await
    .unwrap();
    eventually("status sees the new generation", || async {
        let d = sets.get("agent").await.unwrap();
        d.status.unwrap_or_default().observed_generation == d.metadata.generation
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let list = pods.list(&ListParams::default()).await.unwrap().items;
    assert!(
        list.iter().all(|p| image_of(p) == "v1"),
        "OnDelete must not replace pods"
    );
    let victim = list[0].metadata.name.clone().unwrap();
    pods.delete(&victim, &DeleteParams::default())
        .await
        .unwrap();
    eventually("the deleted pod comes back updated", || async {
        let list = pods.list(&ListParams::default()).await.unwrap().items;
        list.len() == 2
            && list.iter().filter(|p| image_of(p) == "v2").count() == 1
            && list.iter().filter(|p| image_of(p) == "v1").count() == 1
    })
    .await;
    kubelet.abort();
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn surge_update_starts_new_pods_before_old_ones_go() {
    let server = crate::support::test_server().await.unwrap();
    let client = server.client();
    let nodes: Api<Node> = Api::all(client.clone());
    let count = 4;
    for i in 0..count {
        add_node(&nodes, &format!("n{i}"), json!({}), json!([])).await;
    }
    let task = tokio::spawn(rk_controllers::controllers::daemonset::run(
        client.clone(),
        2,
    ));
    let sets: Api<DaemonSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let kubelet = fake_kubelet(pods.clone());
    let strategy = json!({"updateStrategy": {"type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}});
    sets.create(&PostParams::default(), &daemonset("agent", "v1", strategy))
        .await
        .unwrap();
    eventually("every node ready", || async {
        let s = sets.get("agent").await.unwrap().status.unwrap_or_default();
        s.number_available == Some(count)
    })
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let checker = {
        let (pods, stop) = (pods.clone(), stop.clone());
        tokio::spawn(async move {
            let (mut most, mut fewest_ready) = (0usize, usize::MAX);
            while !stop.load(Ordering::SeqCst) {
                let list = pods.list(&ListParams::default()).await.unwrap().items;
                let live: Vec<&Pod> = list
                    .iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_none())
                    .collect();
                most = most.max(live.len());
                fewest_ready = fewest_ready.min(live.iter().filter(|p| is_ready(p)).count());
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (most, fewest_ready)
        })
    };
    sets.patch(
        "agent",
        &PatchParams::default(),
        &Patch::Strategic(
            json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "v2"}]}}}}),
        ),
    )
    .await
    .unwrap();
    eventually("surge rollout", || async {
        let d = sets.get("agent").await.unwrap();
        let s = d.status.unwrap_or_default();
        let list = pods.list(&ListParams::default()).await.unwrap().items;
        s.observed_generation == d.metadata.generation
            && s.updated_number_scheduled == Some(count)
            && s.number_available == Some(count)
            && list.len() == count as usize
            && list.iter().all(|p| image_of(p) == "v2")
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    let (most, fewest_ready) = checker.await.unwrap();
    assert!(
        most <= count as usize + 1,
        "{most} pods at once with maxSurge 1"
    );
    assert!(
        fewest_ready >= count as usize,
        "only {fewest_ready} ready pods with maxUnavailable 0"
    );
    kubelet.abort();
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_binds_daemon_pods_to_their_nodes() {
    let server = crate::support::test_server().await.unwrap();
    let client = server.client();
    let nodes: Api<Node> = Api::all(client.clone());
    for name in ["a", "b", "c"] {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "status": {
                "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                "conditions": [{"type": "Ready", "status": "True"}]
            }
        }))
        .unwrap();
        nodes.create(&PostParams::default(), &node).await.unwrap();
    }
    let task = tokio::spawn(rk_controllers::controllers::daemonset::run(
        client.clone(),
        2,
    ));
    let scheduler = tokio::spawn({
        let client = client.clone();
        async move {
            let _ = rk_controllers::scheduler::run(client, Default::default()).await;
        }
    });
    let sets: Api<DaemonSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    sets.create(&PostParams::default(), &daemonset("agent", "v1", json!({})))
        .await
        .unwrap();
    eventually("every pod bound to the node it is pinned to", || async {
        let list = pods.list(&ListParams::default()).await.unwrap().items;
        let mut bound: Vec<String> = list
            .iter()
            .filter_map(|p| p.spec.as_ref()?.node_name.clone())
            .collect();
        bound.sort();
        list.len() == 3 && bound == ["a", "b", "c"] && pinned_nodes(&pods).await == bound
    })
    .await;
    scheduler.abort();
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_beyond_the_limit_is_deleted() {
    let server = crate::support::test_server().await.unwrap();
    let client = server.client();
    let nodes: Api<Node> = Api::all(client.clone());
    add_node(&nodes, "n1", json!({}), json!([])).await;
    let task = tokio::spawn(rk_controllers::controllers::daemonset::run(
        client.clone(),
        2,
    ));
    let sets: Api<DaemonSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let revisions: Api<ControllerRevision> = Api::namespaced(client.clone(), "default");
    let kubelet = fake_kubelet(pods.clone());
    sets.create(
        &PostParams::default(),
        &daemonset("agent", "v1", json!({"revisionHistoryLimit": 1})),
    )
    .await
    .unwrap();
    // Each template, v1 included, is seen by the controller before the next
    // replaces it: one revision each.
    eventually("the first rollout", || async {
        let list = pods.list(&ListParams::default()).await.unwrap().items;
        list.len() == 1 && image_of(&list[0]) == "v1" && is_ready(&list[0])
    })
    .await;
    for image in ["v2", "v3", "v4"] {
        sets.patch(
            "agent",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": image}]}}}})),
        )
        .await
        .unwrap();
        eventually("the update", || async {
            let list = pods.list(&ListParams::default()).await.unwrap().items;
            list.len() == 1 && image_of(&list[0]) == image && is_ready(&list[0])
        })
        .await;
    }
    let numbers = || async {
        let mut numbers: Vec<i64> = revisions
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .map(|r| r.revision.unwrap_or(0))
            .collect();
        numbers.sort();
        numbers
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut seen = numbers().await;
    while seen != [3, 4] {
        assert!(
            tokio::time::Instant::now() < deadline,
            "revisions {seen:?}, expected [3, 4]"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        seen = numbers().await;
    }
    kubelet.abort();
    task.abort();
}
