//! The garbage collector and the namespace controller on a `TestServer`.

use crate::support::eventually;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;

async fn owner_and_child(client: &kube::Client, ns: &str) -> (Api<ConfigMap>, Api<Secret>) {
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let owner: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "owner"}})).unwrap();
    let owner = cms.create(&PostParams::default(), &owner).await.unwrap();
    let child: Secret = serde_json::from_value(json!({"metadata": {"name": "child", "ownerReferences": [{
        "apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid.unwrap(),
        "controller": true, "blockOwnerDeletion": true
    }]}}))
    .unwrap();
    secrets
        .create(&PostParams::default(), &child)
        .await
        .unwrap();
    (cms, secrets)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_deletion_collects_dependents() {
    let server = crate::support::test_server().await.unwrap();
    let gc = tokio::spawn(rk_controllers::controllers::garbage_collector::run(
        server.client(),
    ));
    let (cms, secrets) = owner_and_child(&server.client(), "default").await;
    cms.delete("owner", &DeleteParams::background())
        .await
        .unwrap();
    eventually("the child is collected", || async {
        secrets.get_opt("child").await.unwrap().is_none()
    })
    .await;
    gc.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreground_deletion_deletes_the_owner_last() {
    let server = crate::support::test_server().await.unwrap();
    let gc = tokio::spawn(rk_controllers::controllers::garbage_collector::run(
        server.client(),
    ));
    let (cms, secrets) = owner_and_child(&server.client(), "default").await;
    // A finalizer on the child keeps it (and so the owner) around.
    let p = json!({"metadata": {"finalizers": ["example.com/hold"]}});
    secrets
        .patch(
            "child",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&p),
        )
        .await
        .unwrap();
    cms.delete("owner", &DeleteParams::foreground())
        .await
        .unwrap();
    eventually("the child is being deleted", || async {
        secrets
            .get("child")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some()
    })
    .await;
    assert!(
        cms.get_opt("owner").await.unwrap().is_some(),
        "the owner waits for its dependents"
    );
    let p = json!({"metadata": {"finalizers": null}});
    secrets
        .patch(
            "child",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&p),
        )
        .await
        .unwrap();
    eventually("the owner goes once the child is gone", || async {
        cms.get_opt("owner").await.unwrap().is_none()
    })
    .await;
    gc.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphan_deletion_keeps_dependents_without_the_reference() {
    let server = crate::support::test_server().await.unwrap();
    let gc = tokio::spawn(rk_controllers::controllers::garbage_collector::run(
        server.client(),
    ));
    let (cms, secrets) = owner_and_child(&server.client(), "default").await;
    cms.delete("owner", &DeleteParams::orphan()).await.unwrap();
    eventually("the owner is gone", || async {
        cms.get_opt("owner").await.unwrap().is_none()
    })
    .await;
    let child = secrets.get("child").await.unwrap();
    assert!(
        child
            .metadata
            .owner_references
            .unwrap_or_default()
            .is_empty()
    );
    gc.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_in_another_namespace_does_not_keep_a_dependent() {
    let server = crate::support::test_server().await.unwrap();
    let client = server.client();
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "other"}})).unwrap(),
    )
    .await
    .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "other");
    let owner = cms
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "owner"}})).unwrap(),
        )
        .await
        .unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let child: Secret = serde_json::from_value(json!({"metadata": {"name": "child", "ownerReferences": [{
        "apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid.unwrap()
    }]}}))
    .unwrap();
    secrets
        .create(&PostParams::default(), &child)
        .await
        .unwrap();
    let gc = tokio::spawn(rk_controllers::controllers::garbage_collector::run(
        client.clone(),
    ));
    eventually(
        "the dependent with a cross-namespace owner is collected",
        || async { secrets.get_opt("child").await.unwrap().is_none() },
    )
    .await;
    assert!(cms.get_opt("owner").await.unwrap().is_some());
    gc.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_namespace_empties_and_removes_it() {
    let server = crate::support::test_server().await.unwrap();
    let client = server.client();
    let nc = tokio::spawn(rk_controllers::controllers::namespace::run(client.clone()));
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "doomed"}})).unwrap(),
    )
    .await
    .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "doomed");
    for i in 0..50 {
        let cm: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": format!("cm-{i}")}})).unwrap();
        cms.create(&PostParams::default(), &cm).await.unwrap();
    }
    nss.delete("doomed", &DeleteParams::default())
        .await
        .unwrap();
    let ns = nss.get("doomed").await.unwrap();
    assert_eq!(ns.status.unwrap().phase.as_deref(), Some("Terminating"));
    // Creating in a terminating namespace is refused.
    let late: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "late"}})).unwrap();
    match cms.create(&PostParams::default(), &late).await {
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 403),
        other => panic!("expected 403, got {other:?}"),
    }
    eventually("the namespace is gone", || async {
        nss.get_opt("doomed").await.unwrap().is_none()
    })
    .await;
    nc.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_namespace_gets_a_default_service_account_back() {
    use k8s_openapi::api::core::v1::ServiceAccount;
    let server = crate::support::test_server().await.unwrap();
    let client = server.client();
    let sac = tokio::spawn(rk_controllers::controllers::service_account::run(
        client.clone(),
    ));
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "team"}})).unwrap(),
    )
    .await
    .unwrap();
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "team");
    eventually("the default account exists", || async {
        sas.get_opt("default").await.unwrap().is_some()
    })
    .await;
    sas.delete("default", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the default account is recreated", || async {
        sas.get_opt("default").await.unwrap().is_some()
    })
    .await;
    let system: Api<ServiceAccount> = Api::namespaced(client.clone(), "kube-system");
    eventually("system namespaces have one too", || async {
        system.get_opt("default").await.unwrap().is_some()
    })
    .await;
    sac.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_status_reports_usage() {
    use k8s_openapi::api::core::v1::{Pod, ResourceQuota};
    let server = crate::support::test_server().await.unwrap();
    let client = server.client();
    let qc = tokio::spawn(rk_controllers::controllers::resource_quota::run(
        client.clone(),
    ));
    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), "default");
    let q: ResourceQuota = serde_json::from_value(
        json!({"metadata": {"name": "q"}, "spec": {"hard": {"pods": "5", "configmaps": "10"}}}),
    )
    .unwrap();
    quotas.create(&PostParams::default(), &q).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for i in 0..2 {
        let p: Pod = serde_json::from_value(json!({"metadata": {"name": format!("p{i}")}, "spec": {"containers": [{"name": "c", "image": "x"}]}})).unwrap();
        pods.create(&PostParams::default(), &p).await.unwrap();
    }
    eventually("used shows two pods", || async {
        let q = quotas.get("q").await.unwrap();
        q.status
            .and_then(|s| s.used)
            .and_then(|u| u.get("pods").map(|p| p.0 == "2"))
            .unwrap_or(false)
    })
    .await;
    qc.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreground_deletion_of_a_deployment_removes_replicasets_and_pods_first() {
    use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
    use k8s_openapi::api::core::v1::Pod;
    let server = crate::support::test_server().await.unwrap();
    let client = server.client();
    let gc = tokio::spawn(rk_controllers::controllers::garbage_collector::run(
        client.clone(),
    ));
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let template = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}});
    let d: Deployment = serde_json::from_value(json!({"metadata": {"name": "web"}, "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": template}})).unwrap();
    let d = deploys.create(&PostParams::default(), &d).await.unwrap();
    let owner = |kind: &str, name: &str, uid: &str| json!([{"apiVersion": "apps/v1", "kind": kind, "name": name, "uid": uid, "controller": true, "blockOwnerDeletion": true}]);
    let rs: ReplicaSet = serde_json::from_value(json!({"metadata": {"name": "web-1", "ownerReferences": owner("Deployment", "web", d.metadata.uid.as_deref().unwrap())},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": template}})).unwrap();
    let rs = sets.create(&PostParams::default(), &rs).await.unwrap();
    for i in 0..3 {
        let p: Pod = serde_json::from_value(
            json!({"metadata": {"name": format!("web-1-{i}"), "labels": {"app": "web"},
            "ownerReferences": owner("ReplicaSet", "web-1", rs.metadata.uid.as_deref().unwrap())},
            "spec": {"containers": [{"name": "c", "image": "x"}]}}),
        )
        .unwrap();
        pods.create(&PostParams::default(), &p).await.unwrap();
    }
    deploys
        .delete("web", &DeleteParams::foreground())
        .await
        .unwrap();
    eventually("the deployment is gone", || async {
        deploys.get_opt("web").await.unwrap().is_none()
    })
    .await;
    assert!(
        sets.get_opt("web-1").await.unwrap().is_none(),
        "the ReplicaSet went before its owner"
    );
    assert!(
        pods.list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty(),
        "the pods went before their owner"
    );
    gc.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_with_a_thousand_objects_and_a_custom_resource_is_emptied() {
    use k8s_openapi::api::core::v1::{Service, ServiceAccount};
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let server = crate::support::test_server().await.unwrap();
    let client = server.client();
    let nc = tokio::spawn(rk_controllers::controllers::namespace::run(client.clone()));
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd: CustomResourceDefinition = serde_json::from_value(json!({"metadata": {"name": "widgets.example.com"}, "spec": {
        "group": "example.com", "scope": "Namespaced", "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}})).unwrap();
    crds.create(&PostParams::default(), &crd).await.unwrap();
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "big"}})).unwrap(),
    )
    .await
    .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "big");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "big");
    let svcs: Api<Service> = Api::namespaced(client.clone(), "big");
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "big");
    let ar = kube::core::ApiResource::from_gvk_with_plural(
        &kube::core::GroupVersionKind::gvk("example.com", "v1", "Widget"),
        "widgets",
    );
    let widgets: Api<kube::core::DynamicObject> = Api::namespaced_with(client.clone(), "big", &ar);
    let mut writes = Vec::new();
    for i in 0..200 {
        let (cms, secrets, svcs, sas, widgets, ar) = (
            cms.clone(),
            secrets.clone(),
            svcs.clone(),
            sas.clone(),
            widgets.clone(),
            ar.clone(),
        );
        writes.push(tokio::spawn(async move {
            let pp = PostParams::default();
            cms.create(&pp, &serde_json::from_value(json!({"metadata": {"name": format!("cm-{i}")}})).unwrap()).await.unwrap();
            secrets.create(&pp, &serde_json::from_value(json!({"metadata": {"name": format!("s-{i}")}})).unwrap()).await.unwrap();
            svcs.create(&pp, &serde_json::from_value(json!({"metadata": {"name": format!("svc-{i}")}, "spec": {"ports": [{"port": 80}]}})).unwrap()).await.unwrap();
            sas.create(&pp, &serde_json::from_value(json!({"metadata": {"name": format!("sa-{i}")}})).unwrap()).await.unwrap();
            let mut w = kube::core::DynamicObject::new(&format!("w-{i}"), &ar);
            w.data = json!({"spec": {"n": i}});
            widgets.create(&pp, &w).await.unwrap();
        }));
    }
    for w in writes {
        w.await.unwrap();
    }
    nss.delete("big", &DeleteParams::default()).await.unwrap();
    eventually("the namespace and its 1,000 objects are gone", || async {
        nss.get_opt("big").await.unwrap().is_none()
    })
    .await;
    let left: Api<ConfigMap> = Api::all(client.clone());
    assert!(
        left.list(&Default::default())
            .await
            .unwrap()
            .items
            .iter()
            .all(|c| c.metadata.namespace.as_deref() != Some("big"))
    );
    nc.abort();
}
