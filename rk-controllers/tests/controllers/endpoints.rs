//! The Endpoints and EndpointSlice controllers on a `TestServer`: pods are
//! given IPs and readiness through the status subresource by the test.

use crate::support::eventually;

use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

async fn make_pod(pods: &Api<Pod>, name: &str, ip: &str, ready: bool) {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "x",
            "ports": [{"name": "http", "containerPort": 8080}]}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    set_status(pods, name, ip, ready).await;
}

async fn set_status(pods: &Api<Pod>, name: &str, ip: &str, ready: bool) {
    pods.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Running", "podIP": ip,
            "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}})),
    )
    .await
    .unwrap();
}

fn slice_ips(slices: &[EndpointSlice]) -> Vec<(String, bool)> {
    let mut out: Vec<(String, bool)> = slices
        .iter()
        .flat_map(|s| s.endpoints.iter().flatten())
        .map(|e| {
            (
                e.addresses[0].clone(),
                e.conditions.as_ref().and_then(|c| c.ready) == Some(true),
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_get_endpoints_and_slices_that_follow_their_pods() {
    let server = crate::support::test_server().await.unwrap();
    let client = server.client();
    let a = tokio::spawn(rk_controllers::controllers::endpoints::legacy::run(
        client.clone(),
        2,
    ));
    let b = tokio::spawn(rk_controllers::controllers::endpoints::slices::run(
        client.clone(),
        2,
    ));
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let eps: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    make_pod(&pods, "a", "10.1.0.1", true).await;
    make_pod(&pods, "b", "10.1.0.2", false).await;
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "web", "labels": {"tier": "front"}},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}
    }))
    .unwrap();
    services.create(&PostParams::default(), &svc).await.unwrap();

    eventually(
        "Endpoints with one ready and one not-ready address",
        || async {
            let Some(e) = eps.get_opt("web").await.unwrap() else {
                return false;
            };
            let Some(s) = e.subsets.as_ref().and_then(|s| s.first()) else {
                return false;
            };
            s.addresses.as_ref().map(|a| a.len()) == Some(1)
                && s.not_ready_addresses.as_ref().map(|a| a.len()) == Some(1)
                && s.ports.as_ref().unwrap()[0].port == 8080
        },
    )
    .await;
    let e = eps.get("web").await.unwrap();
    let s = &e.subsets.unwrap()[0];
    assert_eq!(s.addresses.as_ref().unwrap()[0].ip, "10.1.0.1");
    assert_eq!(
        s.addresses.as_ref().unwrap()[0]
            .target_ref
            .as_ref()
            .unwrap()
            .name
            .as_deref(),
        Some("a")
    );
    assert_eq!(e.metadata.labels.unwrap()["tier"], "front");

    let by_service = ListParams::default().labels("kubernetes.io/service-name=web");
    eventually("a slice with both pods", || async {
        let l = slices.list(&by_service).await.unwrap().items;
        slice_ips(&l) == [("10.1.0.1".into(), true), ("10.1.0.2".into(), false)]
    })
    .await;
    let l = slices.list(&by_service).await.unwrap().items;
    assert_eq!(l.len(), 1);
    let slice = &l[0];
    assert_eq!(slice.address_type, "IPv4");
    assert_eq!(
        slice.metadata.labels.as_ref().unwrap()["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    let owner = &slice.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("Service", Some(true))
    );
    assert_eq!(slice.ports.as_ref().unwrap()[0].port, Some(8080));

    // Readiness changes follow; a relabelled pod leaves.
    set_status(&pods, "b", "10.1.0.2", true).await;
    pods.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "other"}}})),
    )
    .await
    .unwrap();
    eventually("only b, now ready", || async {
        let l = slices.list(&by_service).await.unwrap().items;
        let e = eps.get("web").await.unwrap();
        let ready: Vec<String> = e
            .subsets
            .unwrap_or_default()
            .iter()
            .flat_map(|s| s.addresses.clone().unwrap_or_default())
            .map(|a| a.ip)
            .collect();
        slice_ips(&l) == [("10.1.0.2".into(), true)] && ready == ["10.1.0.2"]
    })
    .await;

    // Deleting the Service removes its Endpoints (slices go with the GC).
    services
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    eventually("Endpoints deleted", || async {
        eps.get_opt("web").await.unwrap().is_none()
    })
    .await;
    a.abort();
    b.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_services_split_into_slices_of_one_hundred() {
    let server = crate::support::test_server().await.unwrap();
    let client = server.client();
    let ctrl = tokio::spawn(rk_controllers::controllers::endpoints::slices::run(
        client.clone(),
        2,
    ));
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}
    }))
    .unwrap();
    services.create(&PostParams::default(), &svc).await.unwrap();
    for i in 0..250 {
        make_pod(
            &pods,
            &format!("p{i}"),
            &format!("10.2.{}.{}", i / 200, i % 200 + 1),
            true,
        )
        .await;
    }
    let by_service = ListParams::default().labels("kubernetes.io/service-name=web");
    eventually("250 endpoints in three slices", || async {
        let l = slices.list(&by_service).await.unwrap().items;
        l.len() == 3
            && slice_ips(&l).len() == 250
            && l.iter()
                .all(|s| s.endpoints.as_ref().map_or(0, |e| e.len()) <= 100)
    })
    .await;
    // Stable: nothing more is written once it settled.
    let before: Vec<_> = slices
        .list(&by_service)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|s| s.metadata.resource_version)
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after: Vec<_> = slices
        .list(&by_service)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|s| s.metadata.resource_version)
        .collect();
    assert_eq!(before, after);
    ctrl.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_without_pods_has_one_empty_slice_that_stays_put() {
    let server = crate::support::test_server().await.unwrap();
    let client = server.client();
    let ctrl = tokio::spawn(rk_controllers::controllers::endpoints::slices::run(
        client.clone(),
        2,
    ));
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "lonely"},
        "spec": {"selector": {"app": "none"}, "ports": [{"port": 80}]}
    }))
    .unwrap();
    services.create(&PostParams::default(), &svc).await.unwrap();
    let by_service = ListParams::default().labels("kubernetes.io/service-name=lonely");
    eventually("an empty slice", || async {
        slices.list(&by_service).await.unwrap().items.len() == 1
    })
    .await;
    let first = slices.list(&by_service).await.unwrap().items[0]
        .metadata
        .resource_version
        .clone();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let l = slices.list(&by_service).await.unwrap().items;
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].metadata.resource_version, first, "rewritten in a loop");
    ctrl.abort();
}
