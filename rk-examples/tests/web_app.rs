//! The `web-app` operator against an in-process API server (`TestServer`):
//! no controllers run there but ours, so the test plays the Deployment
//! controller's part by writing the Deployment's status itself.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Service;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, CustomResourceExt, ResourceExt};
use rk_apiserver::TestServer;
use rk_examples::operator::{LeaseSettings, OperatorConfig, install_crd, is_true};
use rk_examples::web_app::{self, FINALIZER, WebApp, WebAppSpec};

async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..600 {
        if let Some(v) = check().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

fn web_app(name: &str, replicas: i32) -> WebApp {
    WebApp::new(
        name,
        WebAppSpec {
            image: "python:3".into(),
            command: vec!["sh".into(), "-c".into()],
            args: vec!["exec python3 -m http.server $PORT --bind $POD_IP".into()],
            replicas,
            port: 8080,
            node_port: Some(31555),
        },
    )
}

// ANCHOR: test
#[tokio::test]
async fn web_app_owns_a_deployment_and_a_service_reports_readiness_and_scales() {
    let server = TestServer::start().await.unwrap();
    let client = server.client();
    install_crd(client.clone(), &WebApp::crd()).await.unwrap();
    let manager = web_app::manager(
        client.clone(),
        &OperatorConfig {
            workers: 2,
            ..Default::default()
        },
    );
    let stop = manager.shutdown_token();
    let running = tokio::spawn(manager.run());

    let apps: Api<WebApp> = Api::namespaced(client.clone(), "default");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let app = apps
        .create(&PostParams::default(), &web_app("hello", 2))
        .await
        .unwrap();

    // The children appear, controlled by the WebApp.
    let deployment = eventually("the Deployment", || async {
        deployments.get_opt("hello").await.unwrap()
    })
    .await;
    let owner = &deployment.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
        ("WebApp", app.uid().unwrap().as_str(), Some(true))
    );
    assert_eq!(deployment.spec.replicas, Some(2));
    let service = eventually("the Service", || async {
        services.get_opt("hello").await.unwrap()
    })
    .await;
    let ports = service.spec.unwrap().ports.unwrap();
    assert_eq!((ports[0].port, ports[0].node_port), (8080, Some(31555)));
    eventually("the finalizer", || async {
        apps.get("hello")
            .await
            .unwrap()
            .finalizers()
            .iter()
            .any(|f| f == FINALIZER)
            .then_some(())
    })
    .await;

    // Not ready until the Deployment says so.
    let status = serde_json::json!({"status": {"replicas": 2, "readyReplicas": 2}});
    deployments
        .patch_status("hello", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    eventually("Ready=True", || async {
        let app = apps.get("hello").await.unwrap();
        let status = app.status?;
        (status.ready_replicas == 2 && is_true(&status.conditions, "Ready")).then_some(())
    })
    .await;

    // The scale subresource (what `kubectl scale webapp/hello` uses).
    let scale = apps.get_scale("hello").await.unwrap();
    assert_eq!(scale.spec.and_then(|s| s.replicas), Some(2));
    let patch = serde_json::json!({"spec": {"replicas": 3}});
    apps.patch_scale("hello", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    eventually("the Deployment scaled to 3", || async {
        (deployments.get("hello").await.unwrap().spec.replicas == Some(3)).then_some(())
    })
    .await;

    // Drift in an owned field is reverted.
    let patch = serde_json::json!({"spec": {"replicas": 7}});
    deployments
        .patch("hello", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    eventually("the drift reverted", || async {
        (deployments.get("hello").await.unwrap().spec.replicas == Some(3)).then_some(())
    })
    .await;

    // Deleting runs the finalizer's cleanup, then the WebApp is gone.
    apps.delete("hello", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the WebApp gone", || async {
        apps.get_opt("hello").await.unwrap().is_none().then_some(())
    })
    .await;

    stop.cancel();
    running.await.unwrap().unwrap();
}
// ANCHOR_END: test

#[test]
fn crd_declares_status_and_scale_subresources() {
    let yaml = serde_yaml::to_string(&WebApp::crd()).unwrap();
    assert!(yaml.contains("specReplicasPath: .spec.replicas"), "{yaml}");
    assert!(
        yaml.contains("statusReplicasPath: .status.replicas"),
        "{yaml}"
    );
    assert!(yaml.contains("status: {}"), "{yaml}");
}

async fn metrics(addr: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).await.unwrap();
    out
}

fn replica(identity: &str) -> OperatorConfig {
    OperatorConfig {
        metrics_bind: Some(([127, 0, 0, 1], 0).into()),
        leader_election: Some(LeaseSettings {
            namespace: "default".into(),
            name: "web-app".into(),
            identity: identity.into(),
        }),
        workers: 1,
        handle_signals: false,
    }
}

#[tokio::test]
async fn of_two_replicas_only_the_leader_reconciles_and_the_other_takes_over() {
    let server = TestServer::start().await.unwrap();
    let client = server.client();
    install_crd(client.clone(), &WebApp::crd()).await.unwrap();
    let leases: Api<Lease> = Api::namespaced(client.clone(), "default");
    let holder = || async {
        let lease = leases.get_opt("web-app").await.unwrap()?;
        lease.spec?.holder_identity.filter(|h| !h.is_empty())
    };

    let mut a = web_app::manager(client.clone(), &replica("a"));
    let a_metrics = a.bind().await.unwrap().unwrap();
    let stop_a = a.shutdown_token();
    let running_a = tokio::spawn(a.run());
    eventually("a leads", || async { holder().await.filter(|h| h == "a") }).await;
    let mut b = web_app::manager(client.clone(), &replica("b"));
    let b_metrics = b.bind().await.unwrap().unwrap();
    let stop_b = b.shutdown_token();
    let running_b = tokio::spawn(b.run());

    let apps: Api<WebApp> = Api::namespaced(client.clone(), "default");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    apps.create(&PostParams::default(), &web_app("one", 1))
        .await
        .unwrap();
    eventually("one's Deployment", || async {
        deployments.get_opt("one").await.unwrap()
    })
    .await;

    // The leader's /metrics counts its reconciles; the follower has none.
    let success = r#"controller_runtime_reconcile_total{controller="web-app",result="success"}"#;
    eventually("a's reconciles in its metrics", || async {
        metrics(a_metrics).await.contains(success).then_some(())
    })
    .await;
    assert!(!metrics(b_metrics).await.contains(success));

    // a stops and releases the Lease; b takes over and reconciles.
    stop_a.cancel();
    running_a.await.unwrap().unwrap();
    eventually("b leads", || async { holder().await.filter(|h| h == "b") }).await;
    apps.create(&PostParams::default(), &web_app("two", 1))
        .await
        .unwrap();
    eventually("two's Deployment", || async {
        deployments.get_opt("two").await.unwrap()
    })
    .await;
    assert!(metrics(b_metrics).await.contains(success));

    stop_b.cancel();
    running_b.await.unwrap().unwrap();
}
