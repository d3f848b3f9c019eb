//! The API server through `kube::Client`, typed and dynamic: the flows
//! kubectl exercises, from a Rust client.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Service};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use rk_apiserver::TestServer;
use serde_json::json;

fn deployment(name: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["sleep", "1000"]}]}
            }
        }
    }))
    .unwrap()
}

fn err_code<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> u16 {
    match r {
        Err(kube::Error::Api(s)) => s.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn system_namespaces_exist_at_start() {
    let server = TestServer::start().await.unwrap();
    let ns: Api<Namespace> = Api::all(server.client());
    let names: Vec<String> = ns
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    for want in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing from {names:?}"
        );
    }
    let classes: Api<k8s_openapi::api::scheduling::v1::PriorityClass> = Api::all(server.client());
    let critical = classes.get("system-node-critical").await.unwrap();
    assert_eq!(critical.value, Some(2_000_001_000));
    assert!(classes.get("system-cluster-critical").await.is_ok());
}

#[tokio::test]
async fn create_get_update_with_generation_and_conflicts() {
    let server = TestServer::start().await.unwrap();
    let api: Api<Deployment> = Api::namespaced(server.client(), "default");
    let created = api
        .create(&PostParams::default(), &deployment("web", 1))
        .await
        .unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    assert!(created.metadata.uid.is_some());
    assert!(created.metadata.creation_timestamp.is_some());
    let rv1 = created.metadata.resource_version.clone().unwrap();
    // A spec change bumps generation; a label change does not.
    let mut d = created.clone();
    d.spec.replicas = Some(3);
    let d2 = api
        .replace("web", &PostParams::default(), &d)
        .await
        .unwrap();
    assert_eq!(d2.metadata.generation, Some(2));
    let mut d3 = d2.clone();
    d3.metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert("x".into(), "y".into());
    let d3 = api
        .replace("web", &PostParams::default(), &d3)
        .await
        .unwrap();
    assert_eq!(d3.metadata.generation, Some(2));
    // A stale resourceVersion is refused with 409.
    let mut stale = created.clone();
    stale.metadata.resource_version = Some(rv1);
    assert_eq!(
        err_code(api.replace("web", &PostParams::default(), &stale).await),
        409
    );
    // Creating twice is AlreadyExists.
    assert_eq!(
        err_code(
            api.create(&PostParams::default(), &deployment("web", 1))
                .await
        ),
        409
    );
    assert_eq!(err_code(api.get("nope").await), 404);
}

#[tokio::test]
async fn status_subresource_is_split_from_the_main_resource() {
    let server = TestServer::start().await.unwrap();
    let api: Api<Deployment> = Api::namespaced(server.client(), "default");
    api.create(&PostParams::default(), &deployment("web", 1))
        .await
        .unwrap();
    // Status written through the main endpoint is ignored.
    let p = json!({"status": {"replicas": 7}});
    let d = api
        .patch("web", &PatchParams::default(), &Patch::Merge(&p))
        .await
        .unwrap();
    assert_eq!(d.status.and_then(|s| s.replicas), None);
    // Through the status subresource it sticks, and spec changes there are ignored.
    let p = json!({"spec": {"replicas": 9}, "status": {"replicas": 7}});
    let d = api
        .patch_status(
            "web",
            &PatchParams {
                field_manager: Some("rs-sim".into()),
                ..PatchParams::default()
            },
            &Patch::Merge(&p),
        )
        .await
        .unwrap();
    assert_eq!(d.status.as_ref().and_then(|s| s.replicas), Some(7));
    assert_eq!(d.spec.replicas, Some(1));
    assert_eq!(d.metadata.generation, Some(1));
    // The status writer's fields are its own entry, marked with the
    // subresource, as upstream records them; so is an apply through it.
    let apply =
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "status": {"readyReplicas": 1}});
    let d = api
        .patch_status(
            "web",
            &PatchParams::apply("ready-sim"),
            &Patch::Apply(&apply),
        )
        .await
        .unwrap();
    let entries = d.metadata.managed_fields.unwrap();
    let entry = |manager: &str| {
        entries
            .iter()
            .find(|e| e.manager.as_deref() == Some(manager))
            .unwrap_or_else(|| panic!("no entry of {manager} in {entries:?}"))
    };
    let update = entry("rs-sim");
    assert_eq!(update.subresource.as_deref(), Some("status"));
    assert_eq!(update.operation.as_deref(), Some("Update"));
    let fields = serde_json::to_value(&update.fields_v1).unwrap();
    assert!(fields["f:status"]["f:replicas"].is_object(), "{fields}");
    let applied = entry("ready-sim");
    assert_eq!(applied.subresource.as_deref(), Some("status"));
    assert_eq!(applied.operation.as_deref(), Some("Apply"));
    // The creator's entry is the main resource's.
    assert!(
        entries
            .iter()
            .any(|e| e.subresource.is_none() && e.operation.as_deref() == Some("Update")),
        "{entries:?}"
    );
}

#[tokio::test]
async fn validation_failures_are_422_with_causes() {
    let server = TestServer::start().await.unwrap();
    let api: Api<Deployment> = Api::namespaced(server.client(), "default");
    let mut bad = deployment("web", 1);
    bad.spec.replicas = Some(-1);
    match api.create(&PostParams::default(), &bad).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 422);
            assert_eq!(s.reason, "Invalid");
            assert!(s.message.contains("spec.replicas"), "{}", s.message);
        }
        other => panic!("expected 422, got {other:?}"),
    }
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "no-such-ns");
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("x".into());
    assert_eq!(err_code(cms.create(&PostParams::default(), &cm).await), 404);
}

#[tokio::test]
async fn generate_name_dry_run_and_server_side_apply() {
    let server = TestServer::start().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let mut cm = ConfigMap::default();
    cm.metadata.generate_name = Some("gen-".into());
    let created = cms.create(&PostParams::default(), &cm).await.unwrap();
    let name = created.metadata.name.unwrap();
    assert!(name.starts_with("gen-") && name.len() == 9, "{name}");
    let mut dry = ConfigMap::default();
    dry.metadata.name = Some("dry".into());
    cms.create(
        &PostParams {
            dry_run: true,
            ..Default::default()
        },
        &dry,
    )
    .await
    .unwrap();
    assert_eq!(err_code(cms.get("dry").await), 404);
    let applied = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"}, "data": {"a": "1"}});
    let out = cms
        .patch(
            "applied",
            &PatchParams::apply("tester"),
            &Patch::Apply(&applied),
        )
        .await
        .unwrap();
    assert_eq!(out.data.unwrap()["a"], "1");
    let managers: Vec<String> = out
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert!(managers.contains(&"tester".to_string()), "{managers:?}");
}

#[tokio::test]
async fn list_pagination_and_selectors() {
    let server = TestServer::start().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    for i in 0..25 {
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some(format!("cm-{i:02}"));
        cm.metadata.labels = Some(
            [(
                "parity".to_string(),
                if i % 2 == 0 { "even" } else { "odd" }.to_string(),
            )]
            .into(),
        );
        cms.create(&PostParams::default(), &cm).await.unwrap();
    }
    let mut names = Vec::new();
    let mut lp = ListParams::default().limit(10);
    let mut pages = 0;
    loop {
        let page = cms.list(&lp).await.unwrap();
        pages += 1;
        names.extend(page.items.into_iter().filter_map(|c| c.metadata.name));
        match page.metadata.continue_ {
            Some(c) if !c.is_empty() => lp = lp.continue_token(&c),
            _ => break,
        }
        // Writes between pages don't show up in this list.
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some(format!("late-{pages}"));
        cms.create(&PostParams::default(), &cm).await.unwrap();
    }
    assert_eq!(pages, 3);
    assert_eq!(names.len(), 25);
    let even = cms
        .list(&ListParams::default().labels("parity=even"))
        .await
        .unwrap();
    assert_eq!(even.items.len(), 13);
    let one = cms
        .list(&ListParams::default().fields("metadata.name=cm-03"))
        .await
        .unwrap();
    assert_eq!(one.items.len(), 1);
}

#[tokio::test]
async fn watch_resumes_from_resource_version_and_filters() {
    let server = TestServer::start().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("a".into());
    let a = cms.create(&PostParams::default(), &cm).await.unwrap();
    let rv = a.metadata.resource_version.unwrap();
    cm.metadata.name = Some("b".into());
    cms.create(&PostParams::default(), &cm).await.unwrap();
    cms.delete("a", &DeleteParams::default()).await.unwrap();
    let mut stream = cms
        .watch(&WatchParams::default().timeout(5), &rv)
        .await
        .unwrap()
        .boxed();
    let mut seen = Vec::new();
    while let Some(ev) = tokio::time::timeout(Duration::from_secs(5), stream.try_next())
        .await
        .unwrap()
        .unwrap()
    {
        match ev {
            WatchEvent::Added(o) => seen.push(format!("ADDED {}", o.metadata.name.unwrap())),
            WatchEvent::Deleted(o) => seen.push(format!("DELETED {}", o.metadata.name.unwrap())),
            WatchEvent::Modified(o) => seen.push(format!("MODIFIED {}", o.metadata.name.unwrap())),
            _ => {}
        }
        if seen.len() == 2 {
            break;
        }
    }
    assert_eq!(seen, vec!["ADDED b", "DELETED a"]);
}

#[tokio::test]
async fn watch_from_compacted_history_reports_410() {
    let server = TestServer::start().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("a".into());
    cms.create(&PostParams::default(), &cm).await.unwrap();
    // The watch cache keeps 10,000 events per resource; write past it.
    let first = cms
        .get("a")
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let api = cms.clone();
    let writes = futures::stream::iter(0..10_050).map(|i| {
        let api = api.clone();
        async move {
            let p = json!({"data": {"i": i.to_string()}});
            api.patch("a", &PatchParams::default(), &Patch::Merge(&p))
                .await
                .map(|_| ())
        }
    });
    writes
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
    let mut stream = cms
        .watch(&WatchParams::default(), &first)
        .await
        .unwrap()
        .boxed();
    match tokio::time::timeout(Duration::from_secs(5), stream.try_next())
        .await
        .unwrap()
        .unwrap()
    {
        Some(WatchEvent::Error(e)) => assert_eq!(e.code, 410),
        other => panic!("expected a 410 error event, got {other:?}"),
    }
}

#[tokio::test]
async fn services_get_unique_cluster_ips_and_node_ports() {
    let server = TestServer::start().await.unwrap();
    let svcs: Api<Service> = Api::namespaced(server.client(), "default");
    let mut tasks = Vec::new();
    for i in 0..20 {
        let svcs = svcs.clone();
        tasks.push(tokio::spawn(async move {
            let s: Service = serde_json::from_value(json!({
                "metadata": {"name": format!("s{i}")},
                "spec": {"type": "NodePort", "selector": {"app": "x"}, "ports": [{"port": 80}]}
            }))
            .unwrap();
            svcs.create(&PostParams::default(), &s).await.unwrap()
        }));
    }
    let mut ips = std::collections::HashSet::new();
    let mut ports = std::collections::HashSet::new();
    for t in tasks {
        let s = t.await.unwrap();
        let spec = s.spec.unwrap();
        assert!(ips.insert(spec.cluster_ip.unwrap()));
        let p = &spec.ports.unwrap()[0];
        assert!(ports.insert(p.node_port.unwrap()));
        assert!((30000..=32767).contains(&p.node_port.unwrap()));
    }
}

#[tokio::test]
async fn dynamic_client_and_scale_subresource() {
    let server = TestServer::start().await.unwrap();
    let api: Api<Deployment> = Api::namespaced(server.client(), "default");
    api.create(&PostParams::default(), &deployment("web", 2))
        .await
        .unwrap();
    let scale = api.get_scale("web").await.unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(2));
    assert_eq!(scale.status.unwrap().selector.as_deref(), Some("app=web"));
    let p = json!({"spec": {"replicas": 4}});
    api.patch_scale("web", &PatchParams::default(), &Patch::Merge(&p))
        .await
        .unwrap();
    let gvk = GroupVersionKind::gvk("apps", "v1", "Deployment");
    let ar = ApiResource::from_gvk(&gvk);
    let dynamic: Api<DynamicObject> = Api::namespaced_with(server.client(), "default", &ar);
    let obj = dynamic.get("web").await.unwrap();
    assert_eq!(obj.data["spec"]["replicas"], 4);
}

#[tokio::test]
async fn graceful_pod_deletion_and_binding() {
    let server = TestServer::start().await.unwrap();
    let pods: Api<Pod> = Api::namespaced(server.client(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}
    }))
    .unwrap();
    let created = pods.create(&PostParams::default(), &pod).await.unwrap();
    assert_eq!(created.status.unwrap().phase.as_deref(), Some("Pending"));
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"}, "target": {"kind": "Node", "name": "n1"}});
    let req = http::Request::post(format!(
        "{}/api/v1/namespaces/default/pods/p/binding",
        server.url()
    ))
    .header("content-type", "application/json")
    .body(serde_json::to_vec(&binding).unwrap())
    .unwrap();
    server.client().request_text(req).await.unwrap();
    let bound = pods.get("p").await.unwrap();
    assert_eq!(bound.spec.unwrap().node_name.as_deref(), Some("n1"));
    // A scheduled pod is deleted gracefully: it stays with a deletionTimestamp.
    pods.delete("p", &DeleteParams::default()).await.unwrap();
    let terminating = pods.get("p").await.unwrap();
    assert!(terminating.metadata.deletion_timestamp.is_some());
    assert_eq!(terminating.metadata.deletion_grace_period_seconds, Some(30));
    // Grace period zero (what the kubelet sends) removes it.
    pods.delete("p", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    assert_eq!(err_code(pods.get("p").await), 404);
}

#[tokio::test]
async fn events_written_as_events_k8s_io_are_read_as_core_events() {
    use k8s_openapi::api::core::v1::Event as CoreEvent;
    use k8s_openapi::api::events::v1::Event;
    let server = TestServer::start().await.unwrap();
    let new_api: Api<Event> = Api::namespaced(server.client(), "default");
    let ev: Event = serde_json::from_value(json!({
        "metadata": {"name": "web.1"},
        "eventTime": "2026-11-22T10:00:00.000000Z",
        "reportingController": "rk/deployment-controller",
        "reportingInstance": "rk-1",
        "action": "Scaling",
        "reason": "ScalingReplicaSet",
        "type": "Normal",
        "note": "Scaled up replica set web-1 to 3",
        "regarding": {"kind": "Deployment", "namespace": "default", "name": "web", "apiVersion": "apps/v1"}
    }))
    .unwrap();
    new_api.create(&PostParams::default(), &ev).await.unwrap();
    let core: Api<CoreEvent> = Api::namespaced(server.client(), "default");
    let got = core.get("web.1").await.unwrap();
    assert_eq!(
        got.message.as_deref(),
        Some("Scaled up replica set web-1 to 3")
    );
    assert_eq!(got.involved_object.name.as_deref(), Some("web"));
    assert_eq!(
        got.reporting_component.as_deref(),
        Some("rk/deployment-controller")
    );
    let listed = new_api.list(&ListParams::default()).await.unwrap();
    assert_eq!(
        listed.items[0].note.as_deref(),
        Some("Scaled up replica set web-1 to 3")
    );
    let by_field = core
        .list(&ListParams::default().fields("involvedObject.name=web"))
        .await
        .unwrap();
    assert_eq!(by_field.items.len(), 1);
    // The events.k8s.io field names select too.
    for (selector, found) in [
        (
            "regarding.name=web,reportingController=rk/deployment-controller",
            1,
        ),
        ("regarding.name=other", 0),
        ("type=Normal,reason=ScalingReplicaSet", 1),
    ] {
        let listed = new_api
            .list(&ListParams::default().fields(selector))
            .await
            .unwrap();
        assert_eq!(listed.items.len(), found, "{selector}");
    }
    // An events.k8s.io Event without its reporter, action and time is
    // refused, as upstream refuses it.
    let bare: Event = serde_json::from_value(
        json!({"metadata": {"name": "bare"}, "reason": "X", "type": "Normal"}),
    )
    .unwrap();
    match new_api.create(&PostParams::default(), &bare).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 422);
            for field in [
                "eventTime",
                "reportingController",
                "reportingInstance",
                "action",
            ] {
                assert!(
                    s.message.contains(&format!("{field}: Required value")),
                    "{}",
                    s.message
                );
            }
        }
        other => panic!("an incomplete event was stored: {other:?}"),
    }
}

#[tokio::test]
async fn quota_refuses_the_pod_that_would_exceed_it() {
    use k8s_openapi::api::core::v1::ResourceQuota;
    let server = TestServer::start().await.unwrap();
    let quotas: Api<ResourceQuota> = Api::namespaced(server.client(), "default");
    let q: ResourceQuota = serde_json::from_value(json!({"metadata": {"name": "small"}, "spec": {"hard": {"pods": "2", "requests.cpu": "1"}}})).unwrap();
    quotas.create(&PostParams::default(), &q).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(server.client(), "default");
    let pod = |name: &str, cpu: &str| -> Pod {
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": cpu}}}]}})).unwrap()
    };
    pods.create(&PostParams::default(), &pod("a", "400m"))
        .await
        .unwrap();
    match pods
        .create(&PostParams::default(), &pod("big", "700m"))
        .await
    {
        Err(kube::Error::Api(e)) => {
            assert_eq!(e.code, 403);
            assert_eq!(
                e.message,
                "pods \"big\" is forbidden: exceeded quota: small, requested: requests.cpu=700m, used: requests.cpu=400m, limited: requests.cpu=1"
            );
        }
        other => panic!("expected 403, got {other:?}"),
    }
    pods.create(&PostParams::default(), &pod("b", "100m"))
        .await
        .unwrap();
    match pods.create(&PostParams::default(), &pod("c", "100m")).await {
        Err(kube::Error::Api(e)) => assert!(
            e.message.contains(
                "exceeded quota: small, requested: pods=1, used: pods=2, limited: pods=2"
            ),
            "{}",
            e.message
        ),
        other => panic!("expected 403, got {other:?}"),
    }
    let no_requests: Pod = serde_json::from_value(json!({"metadata": {"name": "bare"}, "spec": {"containers": [{"name": "c", "image": "x"}]}})).unwrap();
    pods.delete("b", &DeleteParams::default()).await.unwrap();
    match pods.create(&PostParams::default(), &no_requests).await {
        Err(kube::Error::Api(e)) => assert!(
            e.message.contains("must specify requests.cpu"),
            "{}",
            e.message
        ),
        other => panic!("expected 403, got {other:?}"),
    }
}

#[tokio::test]
async fn limit_ranges_default_and_bound_container_resources() {
    use k8s_openapi::api::core::v1::LimitRange;
    let server = TestServer::start().await.unwrap();
    let ranges: Api<LimitRange> = Api::namespaced(server.client(), "default");
    let lr: LimitRange = serde_json::from_value(json!({"metadata": {"name": "lr"}, "spec": {"limits": [{
        "type": "Container", "default": {"memory": "256Mi"}, "defaultRequest": {"cpu": "100m"}, "max": {"memory": "1Gi"}, "min": {"cpu": "50m"}
    }]}}))
    .unwrap();
    ranges.create(&PostParams::default(), &lr).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(server.client(), "default");
    let p: Pod = serde_json::from_value(
        json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "x"}]}}),
    )
    .unwrap();
    let created = pods.create(&PostParams::default(), &p).await.unwrap();
    let res = created.spec.unwrap().containers[0]
        .resources
        .clone()
        .unwrap();
    assert_eq!(res.limits.unwrap()["memory"].0, "256Mi");
    assert_eq!(res.requests.unwrap()["cpu"].0, "100m");
    let big: Pod = serde_json::from_value(json!({"metadata": {"name": "big"}, "spec": {"containers": [{"name": "c", "image": "x", "resources": {"limits": {"memory": "2Gi"}}}]}})).unwrap();
    match pods.create(&PostParams::default(), &big).await {
        Err(kube::Error::Api(e)) => {
            assert_eq!(e.code, 403);
            assert!(
                e.message
                    .contains("maximum memory usage per Container is 1Gi, but limit is 2Gi"),
                "{}",
                e.message
            );
        }
        other => panic!("expected 403, got {other:?}"),
    }
}

#[tokio::test]
async fn service_account_tokens_are_issued_and_reviewed() {
    use k8s_openapi::api::authentication::v1::{TokenRequest, TokenReview};
    use k8s_openapi::api::core::v1::ServiceAccount;
    let server = TestServer::start().await.unwrap();
    let client = server.client();
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": "bot"}})).unwrap();
    let sa = sas.create(&PostParams::default(), &sa).await.unwrap();

    let ask = |spec: serde_json::Value| -> TokenRequest {
        serde_json::from_value(
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}),
        )
        .unwrap()
    };
    let issued = sas
        .create_token_request(
            "bot",
            &PostParams::default(),
            &ask(json!({"expirationSeconds": 900})),
        )
        .await
        .unwrap();
    let token = issued.status.and_then(|s| s.token).unwrap_or_default();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    let spec = issued.spec.unwrap();
    assert_eq!(spec.expiration_seconds, Some(900));
    assert_eq!(
        spec.audiences,
        Some(vec![
            "https://kubernetes.default.svc.cluster.local".to_string()
        ])
    );

    let reviews: Api<TokenReview> = Api::all(client.clone());
    let review = |token: String, audiences: Vec<&str>| -> TokenReview {
        serde_json::from_value(json!({"spec": {"token": token, "audiences": audiences}})).unwrap()
    };
    let r = reviews
        .create(&PostParams::default(), &review(token.clone(), vec![]))
        .await
        .unwrap()
        .status
        .unwrap();
    assert_eq!(r.authenticated, Some(true), "{r:?}");
    let user = r.user.unwrap();
    assert_eq!(
        user.username.as_deref(),
        Some("system:serviceaccount:default:bot")
    );
    assert_eq!(user.uid, sa.metadata.uid);
    assert!(
        user.groups
            .unwrap()
            .contains(&"system:serviceaccounts:default".to_string())
    );

    // Another audience, a tampered token: not authenticated.
    let r = reviews
        .create(
            &PostParams::default(),
            &review(token.clone(), vec!["vault"]),
        )
        .await
        .unwrap()
        .status
        .unwrap();
    assert_ne!(r.authenticated, Some(true));
    let mut tampered = token.clone();
    tampered.pop();
    tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
    let r = reviews
        .create(&PostParams::default(), &review(tampered, vec![]))
        .await
        .unwrap()
        .status
        .unwrap();
    assert_ne!(r.authenticated, Some(true));

    // Too short a lifetime is invalid; a missing account is not found.
    let short = sas
        .create_token_request(
            "bot",
            &PostParams::default(),
            &ask(json!({"expirationSeconds": 60})),
        )
        .await;
    assert_eq!(err_code(short), 422);
    let missing = sas
        .create_token_request("nobody", &PostParams::default(), &ask(json!({})))
        .await;
    assert_eq!(err_code(missing), 404);

    // Once the account is gone, its tokens no longer authenticate.
    sas.delete("bot", &DeleteParams::default()).await.unwrap();
    let r = reviews
        .create(&PostParams::default(), &review(token, vec![]))
        .await
        .unwrap()
        .status
        .unwrap();
    assert_ne!(r.authenticated, Some(true));
    assert!(r.error.unwrap_or_default().contains("not found"));
}

fn widget_crd(
    max_size: i64,
) -> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
            "scope": "Namespaced",
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {
                        "size": {"type": "integer", "maximum": max_size}
                    }}
                }}},
                "additionalPrinterColumns": [
                    {"name": "Size", "type": "integer", "jsonPath": ".spec.size"}
                ]
            }]
        }
    }))
    .unwrap()
}

/// A custom resource is checked against the schema of the CRD as it is now:
/// the compiled schema the server keeps per CRD version is replaced when the
/// CRD changes.
#[tokio::test]
async fn a_changed_crd_schema_applies_to_the_next_write() {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let server = TestServer::start().await.unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(server.client());
    let created = crds
        .create(&PostParams::default(), &widget_crd(5))
        .await
        .unwrap();
    // As upstream creates it: no names accepted yet, the storage version
    // stored.
    let status = created.status.unwrap();
    assert_eq!(status.stored_versions, Some(vec!["v1".to_string()]));
    assert_eq!(status.accepted_names.unwrap().plural, "");
    let gvk = GroupVersionKind::gvk("example.com", "v1", "Widget");
    let widgets: Api<DynamicObject> =
        Api::namespaced_with(server.client(), "default", &ApiResource::from_gvk(&gvk));
    let widget = |name: &str, size: i64| -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": name}, "spec": {"size": size}
        }))
        .unwrap()
    };
    let pp = PostParams::default();
    let mut created = false;
    for _ in 0..100 {
        match widgets.create(&pp, &widget("small", 3)).await {
            Ok(_) => {
                created = true;
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    assert!(created, "the CRD's kind was never served");
    assert_eq!(err_code(widgets.create(&pp, &widget("big", 9)).await), 422);

    let mut crd = crds.get("widgets.example.com").await.unwrap();
    crd.spec.versions[0] = widget_crd(10).spec.versions.remove(0);
    crds.replace("widgets.example.com", &pp, &crd)
        .await
        .unwrap();
    let mut accepted = false;
    for _ in 0..100 {
        match widgets.create(&pp, &widget("big", 9)).await {
            Ok(_) => {
                accepted = true;
                break;
            }
            Err(kube::Error::Api(s)) if s.code == 422 => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert!(accepted, "the raised maximum never took effect");
    assert_eq!(
        err_code(widgets.create(&pp, &widget("huge", 11)).await),
        422
    );
}

/// A create's managedFields hold what the request set and what defaulting
/// filled in, as upstream's field manager records them: not what the
/// server sets itself (a pod's phase, a namespace's finalizer) nor what
/// admission adds (a pod's tolerations and priority, a Service's cluster IP).
#[tokio::test]
async fn a_creates_managed_fields_are_the_request_and_its_defaults() {
    let server = TestServer::start().await.unwrap();
    let client = server.client();
    let pp = PostParams {
        field_manager: Some("tester".into()),
        ..PostParams::default()
    };
    let fields = |managed: Option<
        Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry>,
    >| {
        let managed = managed.unwrap_or_default();
        assert_eq!(managed.len(), 1, "{managed:?}");
        assert_eq!(managed[0].manager.as_deref(), Some("tester"));
        serde_json::to_value(&managed[0].fields_v1).unwrap()
    };

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "p", "labels": {"app": "x"}},
        "spec": {"containers": [{"name": "c", "image": "nginx"}]}
    }))
    .unwrap();
    let pod = pods.create(&pp, &pod).await.unwrap();
    let spec = pod.spec.as_ref().unwrap();
    assert!(spec.tolerations.as_ref().is_some_and(|t| t.len() == 2));
    assert_eq!(spec.priority, Some(0));
    assert_eq!(
        pod.status.as_ref().unwrap().phase.as_deref(),
        Some("Pending")
    );
    let f = fields(pod.metadata.managed_fields.clone());
    let f_spec = &f["f:spec"];
    assert!(f_spec["f:dnsPolicy"].is_object(), "{f}");
    assert!(
        f_spec["f:containers"]["k:{\"name\":\"c\"}"]["f:imagePullPolicy"].is_object(),
        "{f}"
    );
    assert!(f["f:metadata"]["f:labels"]["f:app"].is_object(), "{f}");
    for owned_by_no_one in [
        &f["f:status"],
        &f_spec["f:tolerations"],
        &f_spec["f:priority"],
    ] {
        assert!(owned_by_no_one.is_null(), "{f}");
    }

    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "fields"}})).unwrap();
    // Its name as a label, and the namespace controller's finalizer.
    let named_and_finalized = |ns: &Namespace| {
        let labels = ns.metadata.labels.clone().unwrap_or_default();
        assert_eq!(
            labels
                .get("kubernetes.io/metadata.name")
                .map(String::as_str),
            Some("fields")
        );
        let finalizers = ns.spec.as_ref().and_then(|s| s.finalizers.clone());
        assert_eq!(finalizers, Some(vec!["kubernetes".to_string()]));
    };
    let ns = namespaces.create(&pp, &ns).await.unwrap();
    named_and_finalized(&ns);
    let f = fields(ns.metadata.managed_fields.clone());
    assert!(
        f["f:metadata"]["f:labels"]["f:kubernetes.io/metadata.name"].is_object(),
        "{f}"
    );
    assert!(f["f:spec"].is_null() && f["f:status"].is_null(), "{f}");
    // The label follows the name whatever an update says.
    let mut relabelled = namespaces.get("fields").await.unwrap();
    relabelled.metadata.labels = Some(
        [(
            "kubernetes.io/metadata.name".to_string(),
            "other".to_string(),
        )]
        .into(),
    );
    let relabelled = namespaces
        .replace("fields", &PostParams::default(), &relabelled)
        .await
        .unwrap();
    named_and_finalized(&relabelled);

    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "s"},
        "spec": {"selector": {"app": "x"}, "ports": [{"port": 80}]}
    }))
    .unwrap();
    let svc = services.create(&pp, &svc).await.unwrap();
    assert!(svc.spec.as_ref().unwrap().cluster_ip.is_some());
    let f = fields(svc.metadata.managed_fields.clone());
    assert!(f["f:spec"]["f:ports"].is_object(), "{f}");
    assert!(f["f:spec"]["f:clusterIP"].is_null(), "{f}");
}

/// Deletes answer as upstream's: a `Status` for most kinds, the object for
/// pods (and while deletion waits); Jobs orphan their pods unless told
/// otherwise, with upstream's warning. Bad options are 422 on the options
/// kind; finalizers cannot be added to an object being deleted.
#[tokio::test]
async fn deletes_and_request_options_answer_as_upstream() {
    let server = TestServer::start().await.unwrap();
    let client = server.client();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm = |name: &str| -> ConfigMap {
        serde_json::from_value(json!({"metadata": {"name": name}, "data": {"a": "1"}})).unwrap()
    };
    cms.create(&PostParams::default(), &cm("gone"))
        .await
        .unwrap();
    let status = cms
        .delete("gone", &DeleteParams::default())
        .await
        .unwrap()
        .right()
        .expect("a deleted ConfigMap answers with a Status");
    assert_eq!(
        status.status,
        Some(kube::core::response::StatusSummary::Success)
    );
    let details = status.details.unwrap();
    assert_eq!(
        (details.name.as_str(), details.kind.as_str()),
        ("gone", "configmaps")
    );

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "nginx"}]}}))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let deleted = pods.delete("p", &DeleteParams::default()).await.unwrap();
    assert!(deleted.is_left(), "a pod answers with itself");

    // A held object answers with itself, and takes no new finalizers.
    let mut held = cm("held");
    held.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    cms.create(&PostParams::default(), &held).await.unwrap();
    let waiting = cms.delete("held", &DeleteParams::default()).await.unwrap();
    assert!(
        waiting
            .left()
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some()
    );
    let more = json!({"metadata": {"finalizers": ["example.com/hold", "example.com/new"]}});
    match cms
        .patch("held", &PatchParams::default(), &Patch::Merge(&more))
        .await
    {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 422);
            assert!(
                s.message.contains("metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{\"example.com/new\"}"),
                "{}",
                s.message
            );
        }
        other => panic!("adding a finalizer was not refused: {other:?}"),
    }

    // A Job deleted without a policy orphans its pods (the orphan finalizer
    // for the garbage collector) and says so.
    let jobs: Api<k8s_openapi::api::batch::v1::Job> = Api::namespaced(client.clone(), "default");
    let job = serde_json::from_value(json!({"metadata": {"name": "j"}, "spec": {"template": {
        "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}}))
    .unwrap();
    jobs.create(&PostParams::default(), &job).await.unwrap();
    let url = format!("{}/apis/batch/v1/namespaces/default/jobs/j", server.url());
    let answer = delete_warnings(&url).await;
    assert!(
        answer
            .0
            .contains("child pods are preserved by default when jobs are deleted"),
        "{:?}",
        answer.0
    );
    let j = jobs.get("j").await.unwrap();
    assert_eq!(j.metadata.finalizers, Some(vec!["orphan".to_string()]));

    // Options: 422 naming the options kind.
    let base = format!("{}/api/v1/namespaces/default/configmaps", server.url());
    let body = serde_json::to_vec(&cm("opts")).unwrap();
    let (code, status) = raw(
        hyper::Method::POST,
        &format!("{base}?dryRun=Bogus"),
        "application/json",
        &body,
    )
    .await;
    assert_eq!(code, 422);
    assert_eq!(
        status["message"],
        "CreateOptions.meta.k8s.io \"\" is invalid: dryRun: Unsupported value: \"Bogus\": supported values: \"All\""
    );
    assert_eq!(status["details"]["group"], "meta.k8s.io");
    raw(hyper::Method::POST, &base, "application/json", &body).await;
    let (code, status) = raw(
        hyper::Method::PATCH,
        &format!("{base}/opts?force=true"),
        "application/merge-patch+json",
        br#"{"data":{"b":"2"}}"#,
    )
    .await;
    assert_eq!(code, 422, "{status}");
    assert_eq!(
        status["message"],
        "PatchOptions.meta.k8s.io \"\" is invalid: force: Forbidden: may not be specified for non-apply patch"
    );
    let (code, status) = raw(
        hyper::Method::DELETE,
        &format!("{base}/opts"),
        "application/json",
        br#"{"propagationPolicy":"Orphan","orphanDependents":true}"#,
    )
    .await;
    assert_eq!(code, 422, "{status}");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("orphanDependents and deletionPropagation cannot be both set")
    );
    // A core kind's error names no group.
    let (code, status) = raw(
        hyper::Method::GET,
        &format!("{base}/nope"),
        "application/json",
        b"",
    )
    .await;
    assert_eq!(code, 404);
    assert!(status["details"].get("group").is_none(), "{status}");

    // A Lease must last; a StatefulSet may change only some of its spec.
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(client.clone(), "default");
    let lease = serde_json::from_value(
        json!({"metadata": {"name": "l"}, "spec": {"leaseDurationSeconds": 0}}),
    )
    .unwrap();
    assert_eq!(
        err_code(leases.create(&PostParams::default(), &lease).await),
        422
    );
    let sets: Api<k8s_openapi::api::apps::v1::StatefulSet> =
        Api::namespaced(client.clone(), "default");
    let set = serde_json::from_value(json!({"metadata": {"name": "s"}, "spec": {
        "serviceName": "s", "selector": {"matchLabels": {"app": "s"}},
        "template": {"metadata": {"labels": {"app": "s"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}))
    .unwrap();
    sets.create(&PostParams::default(), &set).await.unwrap();
    let scaled = json!({"spec": {"replicas": 3}});
    sets.patch("s", &PatchParams::default(), &Patch::Merge(&scaled))
        .await
        .unwrap();
    let parallel = json!({"spec": {"podManagementPolicy": "Parallel"}});
    match sets
        .patch("s", &PatchParams::default(), &Patch::Merge(&parallel))
        .await
    {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 422);
            assert!(s.message.contains("spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"), "{}", s.message);
        }
        other => panic!("a podManagementPolicy change was not refused: {other:?}"),
    }
}

/// A request with a body, without a client library: the status code and
/// the JSON answer.
async fn raw(
    method: hyper::Method,
    url: &str,
    content_type: &str,
    body: &[u8],
) -> (u16, serde_json::Value) {
    let (code, _, text) = send(method, url, content_type, body).await;
    (
        code,
        serde_json::from_slice(&text).unwrap_or(serde_json::Value::Null),
    )
}

/// A DELETE without options; the `Warning` headers joined.
async fn delete_warnings(url: &str) -> (String, u16) {
    let (code, warnings, _) = send(hyper::Method::DELETE, url, "application/json", b"").await;
    (warnings, code)
}

async fn send(
    method: hyper::Method,
    url: &str,
    content_type: &str,
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    use http_body_util::BodyExt;
    let uri: hyper::Uri = url.parse().unwrap();
    let addr = format!("{}:{}", uri.host().unwrap(), uri.port_u16().unwrap());
    let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .method(method)
        .uri(uri.path_and_query().unwrap().as_str())
        .header("host", addr)
        .header("content-type", content_type)
        .body(http_body_util::Full::new(bytes::Bytes::copy_from_slice(
            body,
        )))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let code = resp.status().as_u16();
    let warnings = resp
        .headers()
        .get_all("warning")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join("\n");
    let body = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (code, warnings, body)
}

/// A short watch that asked for bookmarks gets one before it times out, so
/// its client resumes from a recent revision.
#[tokio::test]
async fn a_short_watch_gets_a_bookmark_before_it_ends() {
    let server = TestServer::start().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let list = cms.list(&ListParams::default()).await.unwrap();
    let rv = list.metadata.resource_version.unwrap();
    let params = WatchParams::default().timeout(3);
    let started = std::time::Instant::now();
    let events: Vec<_> = cms
        .watch(&params, &rv)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert!(
        events.iter().any(|e| matches!(e, WatchEvent::Bookmark(_))),
        "{events:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// The log of a pod no node runs yet is empty (upstream answers 204), and a
/// container the pod does not have is a 400.
#[tokio::test]
async fn an_unscheduled_pod_has_an_empty_log() {
    let server = TestServer::start().await.unwrap();
    let pods: Api<Pod> = Api::namespaced(server.client(), "default");
    let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "nginx"}]}}))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let log = pods.logs("p", &Default::default()).await.unwrap();
    assert_eq!(log, "");
    let params = kube::api::LogParams {
        container: Some("nope".into()),
        ..Default::default()
    };
    assert_eq!(err_code(pods.logs("p", &params).await), 400);
}

/// Upstream's `Priority` admission: a pod's priority and preemption policy
/// come from its PriorityClass, or the global default, or 0.
#[tokio::test]
async fn pods_get_their_priority_from_their_class() {
    use k8s_openapi::api::scheduling::v1::PriorityClass;
    let server = TestServer::start().await.unwrap();
    let pods: Api<Pod> = Api::namespaced(server.client(), "default");
    let pod = |name: &str, extra: serde_json::Value| -> Pod {
        let mut spec = json!({"containers": [{"name": "c", "image": "nginx"}]});
        if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
            s.extend(e.clone());
        }
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
    };
    let pp = PostParams::default();
    let plain = pods.create(&pp, &pod("plain", json!({}))).await.unwrap();
    let spec = plain.spec.unwrap();
    assert_eq!(spec.priority, Some(0));
    assert_eq!(
        spec.preemption_policy.as_deref(),
        Some("PreemptLowerPriority")
    );
    let critical = pods
        .create(
            &pp,
            &pod(
                "critical",
                json!({"priorityClassName": "system-node-critical"}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(critical.spec.unwrap().priority, Some(2_000_001_000));
    let forbidden = |r: Result<Pod, kube::Error>| match r {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 403);
            s.message
        }
        other => panic!("not refused: {other:?}"),
    };
    let unknown = forbidden(
        pods.create(&pp, &pod("unknown", json!({"priorityClassName": "nope"})))
            .await,
    );
    assert!(
        unknown.contains("no PriorityClass with name nope was found"),
        "{unknown}"
    );
    let stated = forbidden(
        pods.create(&pp, &pod("stated", json!({"priority": 5})))
            .await,
    );
    assert!(
        stated.contains("the integer value of priority (5) must not be provided in pod spec"),
        "{stated}"
    );

    // A global default class names itself on pods that name none.
    let classes: Api<PriorityClass> = Api::all(server.client());
    let class = serde_json::from_value(json!({"metadata": {"name": "batch"}, "value": 100,
        "globalDefault": true, "preemptionPolicy": "Never"}))
    .unwrap();
    classes.create(&pp, &class).await.unwrap();
    let mut defaulted = None;
    for i in 0..100 {
        let created = pods
            .create(&pp, &pod(&format!("later-{i}"), json!({})))
            .await
            .unwrap();
        let spec = created.spec.unwrap();
        if spec.priority == Some(100) {
            defaulted = Some(spec);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let spec = defaulted.expect("the global default class applies");
    assert_eq!(spec.priority_class_name.as_deref(), Some("batch"));
    assert_eq!(spec.preemption_policy.as_deref(), Some("Never"));
}

/// What upstream's API server makes itself: the `default/kubernetes`
/// Service on the first Service address with endpoints naming the server,
/// and the `default` service account for a pod that names none.
#[tokio::test]
async fn the_kubernetes_service_names_the_server_and_pods_run_as_default() {
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    let server = TestServer::start().await.unwrap();
    let port: i32 = server
        .url()
        .rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .unwrap();
    let svc = Api::<Service>::namespaced(server.client(), "default")
        .get("kubernetes")
        .await
        .unwrap();
    let spec = svc.spec.unwrap();
    assert_eq!(spec.cluster_ip.as_deref(), Some("127.200.0.1"));
    let ports = spec.ports.unwrap();
    assert_eq!(ports[0].name.as_deref(), Some("https"));
    assert_eq!(ports[0].port, 443);
    let slice = Api::<EndpointSlice>::namespaced(server.client(), "default")
        .get("kubernetes")
        .await
        .unwrap();
    assert_eq!(
        slice.endpoints.unwrap()[0].addresses,
        vec!["127.0.0.1".to_string()]
    );
    assert_eq!(slice.ports.unwrap()[0].port, Some(port));
    assert_eq!(
        slice.metadata.labels.unwrap()["kubernetes.io/service-name"],
        "kubernetes"
    );

    let pods: Api<Pod> = Api::namespaced(server.client(), "default");
    let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "nginx"}]}}))
    .unwrap();
    let spec = pods
        .create(&PostParams::default(), &pod)
        .await
        .unwrap()
        .spec
        .unwrap();
    assert_eq!(spec.service_account_name.as_deref(), Some("default"));
}

#[tokio::test]
async fn a_configured_service_range_gives_the_kubernetes_service_and_new_services_its_addresses() {
    use rk_apiserver::admission::service_ips::ServiceCidr;
    let server = TestServer::start_with(rk_apiserver::ServerConfig {
        bind: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        service_cidr: "127.201.8.0/22".parse().unwrap(),
        ..Default::default()
    })
    .await
    .unwrap();
    let services: Api<Service> = Api::namespaced(server.client(), "default");
    let kubernetes = services.get("kubernetes").await.unwrap();
    assert_eq!(
        kubernetes.spec.unwrap().cluster_ip.as_deref(),
        Some("127.201.8.1")
    );
    let cidr: ServiceCidr = "127.201.8.0/22".parse().unwrap();
    let svc: Service = serde_json::from_value(
        json!({"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}}),
    )
    .unwrap();
    let ip: std::net::Ipv4Addr = services
        .create(&PostParams::default(), &svc)
        .await
        .unwrap()
        .spec
        .unwrap()
        .cluster_ip
        .unwrap()
        .parse()
        .unwrap();
    assert!(cidr.holds(ip) && ip != cidr.first(), "{ip}");
    // The default range's addresses are outside this one.
    let outside: Service = serde_json::from_value(json!({"metadata": {"name": "far"},
        "spec": {"clusterIP": "127.200.0.9", "ports": [{"port": 80}]}}))
    .unwrap();
    let err = services
        .create(&PostParams::default(), &outside)
        .await
        .unwrap_err();
    let kube::Error::Api(status) = err else {
        panic!("{err}")
    };
    assert_eq!(status.code, 422);
    assert!(
        status
            .message
            .contains("The range of valid IPs is 127.201.8.0/22"),
        "{}",
        status.message
    );
}

/// Upstream's reset fields: an applied configuration's `status` is not
/// the applier's through the main endpoint, so an object exported with its
/// status applies without conflicting with whoever writes the status.
#[tokio::test]
async fn apply_through_the_main_endpoint_ignores_status() {
    let server = TestServer::start().await.unwrap();
    let api: Api<Deployment> = Api::namespaced(server.client(), "default");
    let ssa = PatchParams::apply("exporter");
    api.patch("web", &ssa, &Patch::Apply(deployment("web", 1)))
        .await
        .unwrap();
    let status = json!({"status": {"replicas": 1, "observedGeneration": 1}});
    api.patch_status(
        "web",
        &PatchParams::default(),
        &Patch::Merge(status.clone()),
    )
    .await
    .unwrap();
    let mut exported = serde_json::to_value(deployment("web", 2)).unwrap();
    exported["status"] = json!({"replicas": 7, "readyReplicas": 7});
    let applied = api
        .patch("web", &ssa, &Patch::Apply(exported))
        .await
        .unwrap();
    assert_eq!(applied.spec.replicas, Some(2));
    let st = applied.status.unwrap();
    assert_eq!(st.replicas, Some(1));
    assert_eq!(st.ready_replicas, None);
    let mine = applied
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .find(|m| m.manager.as_deref() == Some("exporter"))
        .unwrap();
    let owned = serde_json::to_value(mine.fields_v1.unwrap()).unwrap();
    assert!(owned.get("f:status").is_none(), "{owned}");
}

/// `?pretty=true` indents the JSON as upstream's server does.
#[tokio::test]
async fn pretty_answers_are_indented() {
    let server = TestServer::start().await.unwrap();
    let client = server.client();
    let req = |uri: &str| http::Request::get(uri).body(Vec::new()).unwrap();
    let pretty = client
        .request_text(req("/api/v1/namespaces/default?pretty=true"))
        .await
        .unwrap();
    assert!(
        pretty.starts_with("{\n  \"apiVersion\": \"v1\",\n"),
        "{pretty}"
    );
    assert!(
        pretty.contains("\n    \"name\": \"default\",\n"),
        "{pretty}"
    );
    let compact = client
        .request_text(req("/api/v1/namespaces/default"))
        .await
        .unwrap();
    assert!(!compact.contains('\n'), "{compact}");
    let parsed: serde_json::Value = serde_json::from_str(&pretty).unwrap();
    assert_eq!(
        parsed,
        serde_json::from_str::<serde_json::Value>(&compact).unwrap()
    );
}

/// Bad input answered as upstream answers it: resource quantities, an
/// eviction for another pod, an apply at the wrong version, a watch with a
/// negative timeout.
#[tokio::test]
async fn more_bad_input_gets_upstreams_answers() {
    let server = TestServer::start().await.unwrap();
    let pods: Api<Pod> = Api::namespaced(server.client(), "default");
    let pod = |name: &str, resources: serde_json::Value| -> Pod {
        serde_json::from_value(json!({"metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "nginx", "resources": resources}]}}))
        .unwrap()
    };
    let pp = PostParams::default();
    let refused = |r: Result<Pod, kube::Error>, code: u16| match r {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, code, "{s:?}");
            s.message
        }
        other => panic!("not refused: {other:?}"),
    };
    let negative = refused(
        pods.create(&pp, &pod("neg", json!({"requests": {"cpu": "-1"}})))
            .await,
        422,
    );
    assert!(
        negative.contains(
            "spec.containers[0].resources.requests[cpu]: Invalid value: \"-1\": must be greater than or equal to 0"
        ),
        "{negative}"
    );
    let above = refused(
        pods.create(
            &pp,
            &pod(
                "above",
                json!({"requests": {"memory": "2Gi"}, "limits": {"memory": "1Gi"}}),
            ),
        )
        .await,
        422,
    );
    assert!(
        above.contains(
            "spec.containers[0].resources.requests: Invalid value: \"2Gi\": must be less than or equal to memory limit of 1Gi"
        ),
        "{above}"
    );
    // Limits alone: the requests follow them, so the pod is Guaranteed.
    let limited = pods
        .create(
            &pp,
            &pod(
                "limited",
                json!({"limits": {"cpu": "500m", "memory": "64Mi"}}),
            ),
        )
        .await
        .unwrap();
    let requests = limited.spec.unwrap().containers[0]
        .resources
        .clone()
        .unwrap()
        .requests
        .unwrap();
    assert_eq!(requests["cpu"].0, "500m");
    assert_eq!(requests["memory"].0, "64Mi");

    let eviction = json!({"apiVersion": "policy/v1", "kind": "Eviction",
        "metadata": {"name": "someone-else", "namespace": "default"}});
    let req = http::Request::post("/api/v1/namespaces/default/pods/limited/eviction")
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&eviction).unwrap())
        .unwrap();
    // A raw request the server must refuse: its code and message.
    let refused_raw = |req: http::Request<Vec<u8>>| {
        let client = server.client();
        async move {
            match client.request_text(req).await {
                Err(kube::Error::Api(s)) => (s.code, s.message),
                other => panic!("not refused: {other:?}"),
            }
        }
    };
    assert_eq!(
        refused_raw(req).await,
        (
            400,
            "name in URL does not match name in Eviction object".to_string()
        )
    );

    let wrong = json!({"apiVersion": "v2", "kind": "Pod", "metadata": {"name": "limited"}});
    let applied = pods
        .patch("limited", &PatchParams::apply("me"), &Patch::Apply(wrong))
        .await;
    let msg = refused(applied, 400);
    assert_eq!(
        msg,
        "Incorrect version specified in apply patch. Specified patch version: v2, expected: v1"
    );

    // A CRD whose validation rule does not compile is refused whole.
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object",
                        "x-kubernetes-validations": [
                            {"rule": "self.?size.orValue(0) >= 0"},
                            {"rule": "self.size +"}],
                        "properties": {"size": {"type": "integer"}}}}}}}]}
    }))
    .unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(server.client());
    match crds.create(&pp, &crd).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 422, "{s:?}");
            assert!(
                s.message.contains(
                    "spec.versions[0].schema.openAPIV3Schema.properties[spec].x-kubernetes-validations[1].rule: Invalid value: \"self.size +\": compilation failed"
                ),
                "{}",
                s.message
            );
        }
        other => panic!("CRD not refused: {other:?}"),
    }

    let started = std::time::Instant::now();
    let req = http::Request::get("/api/v1/namespaces/default/pods?watch=true&timeoutSeconds=-5")
        .body(Vec::new())
        .unwrap();
    let body = tokio::time::timeout(Duration::from_secs(10), server.client().request_text(req))
        .await
        .expect("a watch with a negative timeout ends at once");
    assert!(body.is_ok(), "{body:?}");
    assert!(started.elapsed() < Duration::from_secs(10));

    // Every list option is decoded, even one a plain list does not use.
    let req = http::Request::get("/api/v1/namespaces/default/pods?timeoutSeconds=abc")
        .body(Vec::new())
        .unwrap();
    assert_eq!(
        refused_raw(req).await,
        (
            400,
            "strconv.ParseInt: parsing \"abc\": invalid syntax".to_string()
        )
    );

    // RuntimeClass admission: an overhead needs a class that defines it; a
    // pod naming a class gets its overhead and scheduling.
    let with_overhead = |name: &str, class: Option<&str>| -> Pod {
        serde_json::from_value(json!({"metadata": {"name": name},
            "spec": {"runtimeClassName": class, "overhead": {"cpu": "100m"},
                "containers": [{"name": "c", "image": "nginx"}]}}))
        .unwrap()
    };
    let msg = refused(pods.create(&pp, &with_overhead("over", None)).await, 403);
    assert_eq!(
        msg,
        "pods \"over\" is forbidden: pod rejected: Pod Overhead set without corresponding RuntimeClass defined Overhead"
    );
    let msg = refused(
        pods.create(&pp, &with_overhead("nowhere", Some("gvisor")))
            .await,
        403,
    );
    assert_eq!(
        msg,
        "pods \"nowhere\" is forbidden: pod rejected: RuntimeClass \"gvisor\" not found"
    );
    use k8s_openapi::api::node::v1::RuntimeClass;
    let classes: Api<RuntimeClass> = Api::all(server.client());
    let class: RuntimeClass = serde_json::from_value(json!({"metadata": {"name": "gvisor"},
        "handler": "runsc", "overhead": {"podFixed": {"cpu": "250m"}},
        "scheduling": {"nodeSelector": {"sandbox": "gvisor"}}}))
    .unwrap();
    classes.create(&pp, &class).await.unwrap();
    let msg = refused(
        pods.create(&pp, &with_overhead("differs", Some("gvisor")))
            .await,
        403,
    );
    assert!(
        msg.contains("Pod's Overhead doesn't match RuntimeClass's defined Overhead"),
        "{msg}"
    );
    let plain: Pod = serde_json::from_value(json!({"metadata": {"name": "sandboxed"},
        "spec": {"runtimeClassName": "gvisor", "containers": [{"name": "c", "image": "nginx"}]}}))
    .unwrap();
    let spec = pods.create(&pp, &plain).await.unwrap().spec.unwrap();
    assert_eq!(spec.overhead.unwrap()["cpu"].0, "250m");
    assert_eq!(spec.node_selector.unwrap()["sandbox"], "gvisor");
}

/// Common mistakes in pods, Services, ConfigMaps, Secrets, RBAC and
/// Ingresses are 422s with upstream's causes.
#[tokio::test]
async fn common_mistakes_are_invalid_as_upstream_says() {
    let server = TestServer::start().await.unwrap();
    let client = server.client();
    let post = |path: &'static str, body: serde_json::Value| {
        let client = client.clone();
        async move {
            let req = http::Request::post(path)
                .header("content-type", "application/json")
                .body(serde_json::to_vec(&body).unwrap())
                .unwrap();
            match client.request_text(req).await {
                Err(kube::Error::Api(s)) => (s.code, s.message),
                Ok(_) => (201, String::new()),
                Err(e) => panic!("{e}"),
            }
        }
    };
    let pod = |name: &str, spec: serde_json::Value| {
        let mut s = json!({"containers": [{"name": "c", "image": "x"}]});
        if let (Some(m), Some(e)) = (s.as_object_mut(), spec.as_object()) {
            m.extend(e.clone());
        }
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": s})
    };
    let pods = "/api/v1/namespaces/default/pods";
    let cases = [
        (
            pods,
            pod(
                "env",
                json!({"containers": [{"name": "c", "image": "x",
                "env": [{"name": "A", "value": "1", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}]}),
            ),
            "spec.containers[0].env[0].valueFrom: Invalid value: \"\": may not be specified when `value` is not empty",
        ),
        (
            pods,
            pod(
                "probe",
                json!({"containers": [{"name": "c", "image": "x",
                "livenessProbe": {"periodSeconds": -1, "exec": {"command": ["true"]}}}]}),
            ),
            "spec.containers[0].livenessProbe.periodSeconds: Invalid value: -1: must be greater than or equal to 0",
        ),
        (
            pods,
            pod(
                "vols",
                json!({"volumes": [{"name": "v", "emptyDir": {}, "hostPath": {"path": "/x"}}]}),
            ),
            "spec.volumes[0].hostPath: Forbidden: may not specify more than 1 volume type",
        ),
        (
            pods,
            pod(
                "pull",
                json!({"containers": [{"name": "c", "image": "x", "imagePullPolicy": "Sometimes"}]}),
            ),
            "spec.containers[0].imagePullPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"IfNotPresent\", \"Never\"",
        ),
        (
            pods,
            pod("dns", json!({"dnsPolicy": "Weird"})),
            "spec.dnsPolicy: Unsupported value: \"Weird\"",
        ),
        (
            pods,
            pod(
                "tol",
                json!({"tolerations": [{"key": "a", "operator": "Exists", "value": "x"}]}),
            ),
            "spec.tolerations[0].operator: Invalid value: \"x\": value must be empty when `operator` is 'Exists'",
        ),
        (
            "/api/v1/namespaces/default/services",
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "far"},
                "spec": {"clusterIP": "10.0.0.1", "ports": [{"port": 80}]}}),
            "the provided IP (10.0.0.1) is not in the valid range. The range of valid IPs is 127.200.0.0/16",
        ),
        (
            "/api/v1/namespaces/default/services",
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "low"},
                "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 80}]}}),
            "Service \"low\" is invalid: spec.ports[0].nodePort",
        ),
        (
            "/api/v1/namespaces/default/configmaps",
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "twice"},
                "data": {"a": "x"}, "binaryData": {"a": "eA=="}}),
            "binaryData: Invalid value: \"a\": duplicate of key present in data",
        ),
        (
            "/api/v1/namespaces/default/secrets",
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "tls"},
                "type": "kubernetes.io/tls", "data": {}}),
            "data[tls.crt]: Required value",
        ),
        (
            "/apis/rbac.authorization.k8s.io/v1/clusterroles",
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": "empty"}, "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": []}]}),
            "rules[0].verbs: Required value: verbs must contain at least one value",
        ),
        (
            "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings",
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"name": "b"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Nope", "name": "r"}}),
            "roleRef.kind: Unsupported value: \"Nope\"",
        ),
        (
            "/apis/networking.k8s.io/v1/namespaces/default/ingresses",
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "i"}, "spec": {}}),
            "either `defaultBackend` or `rules` must be specified",
        ),
    ];
    for (path, body, want) in cases {
        let (code, message) = post(path, body.clone()).await;
        assert_eq!(code, 422, "{body}: {message}");
        assert!(message.contains(want), "{body}:\n{message}\nwants: {want}");
    }
    // What is right still goes in.
    let (code, message) = post(
        "/apis/rbac.authorization.k8s.io/v1/clusterroles",
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "reader"}, "rules": [
                {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
                {"nonResourceURLs": ["/healthz"], "verbs": ["get"]}]}),
    )
    .await;
    assert_eq!(code, 201, "{message}");
}
