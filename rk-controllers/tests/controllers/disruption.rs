//! The disruption controller and the API server's eviction together: a
//! budget's status follows its pods, an eviction takes a disruption and
//! the next one is refused until the budget allows it again.

use crate::support::eventually;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, EvictParams, Patch, PatchParams, PostParams};
use serde_json::json;

/// The status code, reason and message of a refused eviction.
async fn evict(pods: &Api<Pod>, name: &str) -> Result<(), (u16, String, String)> {
    match pods.evict(name, &EvictParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) => Err((e.code, e.reason.clone(), e.message.clone())),
        Err(e) => Err((0, String::new(), e.to_string())),
    }
}

async fn set_ready(pods: &Api<Pod>, name: &str, ready: bool) {
    let status = if ready { "True" } else { "False" };
    let patch = json!({"status": {"conditions": [{"type": "Ready", "status": status}]}});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("pod status patched");
}

/// `(expectedPods, desiredHealthy, currentHealthy, disruptionsAllowed)`
/// once the budget's status covers its current generation.
async fn counts(budgets: &Api<PodDisruptionBudget>, name: &str) -> Option<(i32, i32, i32, i32)> {
    let b = budgets.get(name).await.ok()?;
    let s = b.status?;
    (s.observed_generation == b.metadata.generation).then_some((
        s.expected_pods?,
        s.desired_healthy?,
        s.current_healthy?,
        s.disruptions_allowed?,
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evictions_take_disruptions_from_the_budget_its_controller_keeps() {
    let server = crate::support::test_server().await.unwrap();
    let client = server.client();
    // A client that reports a refused eviction rather than retrying it
    // (kube's default client retries 429s for minutes).
    let mut config = kube::Config::new(server.url().parse().unwrap());
    config.default_retry = false;
    let once = kube::Client::try_from(config).unwrap();
    let controller = tokio::spawn(rk_controllers::controllers::disruption::run(client.clone()));
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(once, "default");
    let budgets: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), "default");

    // Three Ready pods of a ReplicaSet of a Deployment of 3 (no workload
    // controllers run: the objects are written as they would leave them).
    let template = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}});
    let d: Deployment = serde_json::from_value(json!({"metadata": {"name": "web"}, "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": template}})).unwrap();
    let d = deploys.create(&PostParams::default(), &d).await.unwrap();
    let owner = |kind: &str, name: &str, uid: &str| json!([{"apiVersion": "apps/v1", "kind": kind, "name": name, "uid": uid, "controller": true}]);
    let rs: ReplicaSet = serde_json::from_value(json!({"metadata": {"name": "web-1", "ownerReferences": owner("Deployment", "web", d.metadata.uid.as_deref().unwrap())},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": template}})).unwrap();
    let rs = sets.create(&PostParams::default(), &rs).await.unwrap();
    for i in 0..3 {
        let p: Pod = serde_json::from_value(
            json!({"metadata": {"name": format!("web-{i}"), "labels": {"app": "web"},
            "ownerReferences": owner("ReplicaSet", "web-1", rs.metadata.uid.as_deref().unwrap())},
            "spec": {"containers": [{"name": "c", "image": "x"}]}}),
        )
        .unwrap();
        pods.create(&PostParams::default(), &p).await.unwrap();
        set_ready(&pods, &format!("web-{i}"), true).await;
    }

    // maxUnavailable 1 of the Deployment's 3: 2 must stay healthy.
    let b: PodDisruptionBudget = serde_json::from_value(json!({"metadata": {"name": "web"},
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "web"}}}}))
    .unwrap();
    budgets.create(&PostParams::default(), &b).await.unwrap();
    eventually("the budget allows one disruption", || async {
        counts(&budgets, "web").await == Some((3, 2, 3, 1))
    })
    .await;
    let allowed = budgets
        .get("web")
        .await
        .unwrap()
        .status
        .unwrap()
        .conditions
        .unwrap();
    assert_eq!(
        (
            allowed[0].type_.as_str(),
            allowed[0].status.as_str(),
            allowed[0].reason.as_str()
        ),
        ("DisruptionAllowed", "True", "SufficientPods")
    );

    // One eviction goes; the next is refused at once, whatever the
    // controller has seen yet.
    evict(&pods, "web-0")
        .await
        .expect("the first eviction goes");
    let (code, reason, message) = evict(&pods, "web-1")
        .await
        .expect_err("the budget is spent");
    assert_eq!((code, reason.as_str()), (429, "TooManyRequests"));
    assert!(message.contains("disruption budget"), "{message}");
    assert!(pods.get_opt("web-1").await.unwrap().is_some());
    eventually("the evicted pod is gone and counted out", || async {
        pods.get_opt("web-0").await.unwrap().is_none()
            && counts(&budgets, "web").await == Some((3, 2, 2, 0))
            && budgets
                .get("web")
                .await
                .ok()
                .and_then(|b| b.status)
                .is_some_and(|s| s.disrupted_pods.is_none())
    })
    .await;

    // An unready pod may not go while the budget is short of healthy
    // pods, unless the budget says AlwaysAllow.
    set_ready(&pods, "web-1", false).await;
    eventually("one healthy pod left", || async {
        counts(&budgets, "web").await == Some((3, 2, 1, 0))
    })
    .await;
    let (code, ..) = evict(&pods, "web-1")
        .await
        .expect_err("the budget is unhealthy");
    assert_eq!(code, 429);
    let patch = json!({"spec": {"unhealthyPodEvictionPolicy": "AlwaysAllow"}});
    budgets
        .patch("web", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    eventually("the controller saw the new generation", || async {
        counts(&budgets, "web").await.is_some()
    })
    .await;
    evict(&pods, "web-1")
        .await
        .expect("an unready pod goes with AlwaysAllow");

    // Two budgets over one pod: the eviction cannot choose.
    let b: PodDisruptionBudget = serde_json::from_value(json!({"metadata": {"name": "all"},
        "spec": {"minAvailable": 0, "selector": {}}}))
    .unwrap();
    budgets.create(&PostParams::default(), &b).await.unwrap();
    let (code, _, message) = evict(&pods, "web-2").await.expect_err("two budgets");
    assert_eq!(code, 500);
    assert!(
        message.contains("more than one PodDisruptionBudget"),
        "{message}"
    );

    // A pod without a supported controller: the budget allows nothing.
    let p: Pod = serde_json::from_value(
        json!({"metadata": {"name": "loose", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": "x"}]}}),
    )
    .unwrap();
    pods.create(&PostParams::default(), &p).await.unwrap();
    eventually("the budget fails safe", || async {
        budgets
            .get("web")
            .await
            .ok()
            .and_then(|b| b.status)
            .and_then(|s| s.conditions)
            .is_some_and(|c| c[0].reason == "SyncFailed" && c[0].message.contains("loose"))
    })
    .await;
    controller.abort();
}
