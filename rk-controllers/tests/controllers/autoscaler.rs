//! The horizontal pod autoscaler end to end: sim pods report the CPU their
//! annotation says, the API server serves it as `metrics.k8s.io`, and the
//! autoscaler scales a ReplicaSet (run by its controller) up to its
//! maximum, then down when the target rises.

use std::time::Duration;

use crate::support::eventually;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::api::{Api, Patch, PatchParams, PostParams};
use rk_controllers::controllers::autoscaler;
use rk_controllers::kubelet::{self, Config};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_utilization_scales_a_replica_set_up_and_down() {
    let server = crate::support::test_server().await.unwrap();
    let client = server.client();
    let dir = tempfile::tempdir().unwrap();
    let capacity =
        kubelet::node_status::parse_capacity("cpu=8,memory=8Gi,pods=110").expect("capacity");
    let kubelet = kubelet::start(
        client.clone(),
        Config::sim("sim-", 1, capacity, dir.path().to_owned()),
    )
    .await
    .unwrap();
    let sets = tokio::spawn(rk_controllers::controllers::replicaset::run(
        client.clone(),
        2,
    ));
    let hpa_controller = tokio::spawn(autoscaler::run(
        client.clone(),
        autoscaler::Options {
            sync_period: Duration::from_millis(500),
            ..autoscaler::Options::default()
        },
    ));

    // Each pod requests 100m and uses 300m: 300% of its request.
    let rs: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "template": {
            "metadata": {"labels": {"app": "web"}, "annotations": {"rk.dev/sim-cpu-usage": "300m"}},
            "spec": {"nodeName": "sim-0", "containers": [{"name": "c", "image": "x",
                "resources": {"requests": {"cpu": "100m"}}}]}}}
    }))
    .unwrap();
    let sets_api: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    sets_api.create(&PostParams::default(), &rs).await.unwrap();
    let hpa: HorizontalPodAutoscaler = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web"},
            "minReplicas": 1, "maxReplicas": 4,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 100}}}],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}}
        }
    }))
    .unwrap();
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), "default");
    hpas.create(&PostParams::default(), &hpa).await.unwrap();

    // 300% of a 100% target: up, limited to 4.
    eventually("the ReplicaSet scaled to the maximum", || async {
        let rs = sets_api.get("web").await.unwrap();
        let h = hpas.get("web").await.unwrap();
        let status = h.status.unwrap_or_default();
        rs.spec.replicas == Some(4)
            && status.desired_replicas == 4
            && status.last_scale_time.is_some()
    })
    .await;
    eventually("the status reports utilization and the limit", || async {
        let status = hpas.get("web").await.unwrap().status.unwrap_or_default();
        let utilization = status
            .current_metrics
            .unwrap_or_default()
            .first()
            .and_then(|m| m.resource.as_ref())
            .and_then(|r| r.current.average_utilization);
        let conditions = status.conditions.unwrap_or_default();
        let has = |t: &str, s: &str, r: &str| {
            conditions
                .iter()
                .any(|c| c.type_ == t && c.status == s && c.reason.as_deref() == Some(r))
        };
        utilization == Some(300)
            && has("ScalingActive", "True", "ValidMetricFound")
            && has("ScalingLimited", "True", "TooManyReplicas")
    })
    .await;

    // A target of 600%: half the pods do.
    let patch = json!({"spec": {"metrics": [{"type": "Resource", "resource": {"name": "cpu",
        "target": {"type": "Utilization", "averageUtilization": 600}}}]}});
    hpas.patch("web", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    eventually("the ReplicaSet scaled down to 2", || async {
        let rs = sets_api.get("web").await.unwrap();
        rs.spec.replicas == Some(2)
    })
    .await;

    // kubectl top's source agrees: four... now two pods at 300m each.
    let metrics = client
        .request::<serde_json::Value>(
            http::Request::get(
                "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods?labelSelector=app%3Dweb",
            )
            .body(Vec::new())
            .unwrap(),
        )
        .await
        .unwrap();
    let items = metrics["items"].as_array().cloned().unwrap_or_default();
    assert!(!items.is_empty());
    assert!(
        items
            .iter()
            .all(|m| m["containers"][0]["usage"]["cpu"] == "300000000n"),
        "{metrics}"
    );
    hpa_controller.abort();
    sets.abort();
    kubelet.shutdown().await;
}
