//! Node lifecycle, taint eviction, node IPAM and pod GC on a `TestServer`,
//! with short timings. Kubelets are played by the test: it renews Leases
//! and binds pods itself.

use crate::support::eventually;

use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use rk_controllers::controllers::{node_ipam, node_lifecycle, pod_gc};
use serde_json::json;

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

async fn make_node(client: &kube::Client, name: &str) {
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();
    nodes
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"conditions": [{"type": "Ready", "status": "True",
                "reason": "KubeletReady", "lastHeartbeatTime": now(), "lastTransitionTime": now()}]}})),
        )
        .await
        .unwrap();
}

async fn renew(client: &kube::Client, node: &str) {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let body = json!({"metadata": {"name": node}, "spec": {"holderIdentity": node,
        "leaseDurationSeconds": 40, "renewTime": now()}});
    let lease: Lease = serde_json::from_value(body.clone()).unwrap();
    if leases.create(&PostParams::default(), &lease).await.is_err() {
        let _ = leases
            .patch(
                node,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"renewTime": now()}})),
            )
            .await;
    }
}

fn ready_status(n: &Node) -> Option<String> {
    n.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_node_goes_unknown_and_its_pods_move_to_a_healthy_one() {
    let server = crate::support::test_server().await.unwrap();
    let client = server.client();
    let ns: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let lease_ns =
        serde_json::from_value(json!({"metadata": {"name": "kube-node-lease"}})).unwrap();
    let _ = ns.create(&PostParams::default(), &lease_ns).await;
    make_node(&client, "dead").await;
    make_node(&client, "alive").await;
    renew(&client, "dead").await;
    // Only `alive` keeps renewing.
    let c = client.clone();
    let heart = tokio::spawn(async move {
        loop {
            renew(&c, "alive").await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let options = node_lifecycle::Options {
        grace_period: Duration::from_secs(2),
        monitor_period: Duration::from_millis(200),
    };
    let tasks = vec![
        tokio::spawn(node_lifecycle::run(client.clone(), options)),
        tokio::spawn(node_lifecycle::eviction::run(client.clone())),
        tokio::spawn(rk_controllers::controllers::replicaset::run(
            client.clone(),
            2,
        )),
    ];
    // A stand-in scheduler: bind every pending pod to a node without the
    // unreachable taint, `dead` first while it is healthy.
    let c = client.clone();
    let scheduler = tokio::spawn(async move {
        let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
        let nodes: Api<Node> = Api::all(c.clone());
        loop {
            let healthy: Vec<String> = nodes
                .list(&ListParams::default())
                .await
                .map(|l| l.items)
                .unwrap_or_default()
                .into_iter()
                .filter(|n| {
                    n.spec
                        .as_ref()
                        .and_then(|s| s.taints.as_ref())
                        .is_none_or(|t| t.is_empty())
                })
                .filter_map(|n| n.metadata.name)
                .collect();
            let target = if healthy.iter().any(|n| n == "dead") {
                "dead"
            } else {
                "alive"
            };
            for p in pods
                .list(&ListParams::default())
                .await
                .map(|l| l.items)
                .unwrap_or_default()
            {
                if p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_none()
                    && p.metadata.deletion_timestamp.is_none()
                {
                    let name = p.metadata.name.clone().unwrap();
                    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
                        "target": {"apiVersion": "v1", "kind": "Node", "name": target}});
                    let _ = pods
                        .create_subresource::<serde_json::Value, serde_json::Value>(
                            "binding",
                            &name,
                            &PostParams::default(),
                            &binding,
                        )
                        .await;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let rs: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                "containers": [{"name": "c", "image": "x"}],
                "tolerations": [{"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                                 "effect": "NoExecute", "tolerationSeconds": 1}]}}}
    }))
    .unwrap();
    sets.create(&PostParams::default(), &rs).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let on = |node: &'static str| {
        let pods = pods.clone();
        async move {
            pods.list(&ListParams::default())
                .await
                .unwrap()
                .items
                .into_iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node))
                .count()
        }
    };
    eventually("two pods on the dead-to-be node", || async {
        on("dead").await == 2
    })
    .await;

    let nodes: Api<Node> = Api::all(client.clone());
    eventually("dead node Unknown and tainted unreachable", || async {
        let n = nodes.get("dead").await.unwrap();
        let taints = n.spec.clone().and_then(|s| s.taints).unwrap_or_default();
        ready_status(&n).as_deref() == Some("Unknown")
            && taints
                .iter()
                .any(|t| t.key == "node.kubernetes.io/unreachable" && t.effect == "NoExecute")
    })
    .await;
    let n = nodes.get("dead").await.unwrap();
    let ready = n
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.reason.as_deref(), Some("NodeStatusUnknown"));
    assert_eq!(
        ready_status(&nodes.get("alive").await.unwrap()).as_deref(),
        Some("True")
    );

    eventually("pods evicted and recreated on the healthy node", || async {
        on("dead").await == 0 && on("alive").await == 2
    })
    .await;
    let evicted = pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|p| p.metadata.deletion_timestamp.is_some())
        .expect("an evicted pod still terminating on the dead node");
    assert!(
        evicted
            .status
            .unwrap()
            .conditions
            .unwrap()
            .iter()
            .any(|c| c.type_ == "DisruptionTarget"
                && c.reason.as_deref() == Some("DeletionByTaintManager"))
    );

    // Deleting the dead node lets the pod GC force-delete its pods.
    nodes
        .delete("dead", &DeleteParams::default())
        .await
        .unwrap();
    let gc = tokio::spawn(pod_gc::run(
        client.clone(),
        pod_gc::Options {
            terminated_threshold: 100,
            period: Duration::from_millis(200),
        },
    ));
    eventually("orphaned pods collected", || async {
        pods.list(&ListParams::default()).await.unwrap().items.len() == 2
    })
    .await;
    for t in tasks.into_iter().chain([heart, scheduler, gc]) {
        t.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_gets_its_own_pod_cidr() {
    let server = crate::support::test_server().await.unwrap();
    let client = server.client();
    let nodes: Api<Node> = Api::all(client.clone());
    // One node already has a range: it is kept and never handed out again.
    let pre: Node = serde_json::from_value(
        json!({"metadata": {"name": "pre"}, "spec": {"podCIDR": "10.244.0.0/24"}}),
    )
    .unwrap();
    nodes.create(&PostParams::default(), &pre).await.unwrap();
    let ipam = tokio::spawn(node_ipam::run(
        client.clone(),
        node_ipam::ClusterCidr::default(),
    ));
    for i in 0..5 {
        let n: Node =
            serde_json::from_value(json!({"metadata": {"name": format!("n{i}")}})).unwrap();
        nodes.create(&PostParams::default(), &n).await.unwrap();
    }
    eventually("six distinct CIDRs", || async {
        let cidrs: std::collections::HashSet<String> = nodes
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|n| n.spec?.pod_cidr)
            .collect();
        cidrs.len() == 6
    })
    .await;
    assert_eq!(
        nodes
            .get("pre")
            .await
            .unwrap()
            .spec
            .unwrap()
            .pod_cidr
            .as_deref(),
        Some("10.244.0.0/24")
    );
    ipam.abort();
}
