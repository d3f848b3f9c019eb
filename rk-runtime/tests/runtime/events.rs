//! Events are published and repeats aggregated; finalizers guard cleanup.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::common::create_config_map;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::{DeleteParams, ListParams};
use rk_apiserver::TestServer;
use rk_runtime::client_rate_limit::rate_limited_client;
use rk_runtime::events::{EventInput, EventType, Recorder, Reporter};
use rk_runtime::finalizer::{FinalizerEvent, finalize};

#[tokio::test]
async fn repeated_events_become_one_series() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client();
    let cm = create_config_map(&client, "noisy", "x").await;
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "rk.io/test".into(),
            instance: Some("test-0".into()),
        },
    );
    let failed = EventInput {
        type_: EventType::Warning,
        reason: "FailedCreate".into(),
        action: "Create".into(),
        note: Some("quota exceeded".into()),
    };
    for _ in 0..3 {
        recorder.publish_for(&cm, &failed).await?;
    }
    let other = EventInput {
        type_: EventType::Normal,
        reason: "Created".into(),
        action: "Create".into(),
        note: None,
    };
    recorder.publish_for(&cm, &other).await?;

    let events = Api::<Event>::namespaced(client, "default")
        .list(&ListParams::default())
        .await?
        .items;
    assert_eq!(events.len(), 2, "{events:?}");
    let series = events
        .iter()
        .find(|e| e.reason.as_deref() == Some("FailedCreate"))
        .expect("the warning");
    assert_eq!(series.series.as_ref().map(|s| s.count), Some(3));
    assert_eq!(series.reporting_controller.as_deref(), Some("rk.io/test"));
    assert_eq!(
        series.regarding.as_ref().and_then(|r| r.name.as_deref()),
        Some("noisy")
    );
    Ok(())
}

#[tokio::test]
async fn finalizer_runs_cleanup_before_the_object_goes() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    create_config_map(&client, "guarded", "x").await;
    let cleanups = Arc::new(AtomicUsize::new(0));
    let step = |cm: ConfigMap| {
        let api = api.clone();
        let cleanups = cleanups.clone();
        async move {
            finalize(&api, "rk.io/cleanup", cm, |event| async move {
                if let FinalizerEvent::Cleanup(_) = event {
                    cleanups.fetch_add(1, Ordering::SeqCst);
                }
                Ok::<_, std::io::Error>(())
            })
            .await
        }
    };
    // First pass adds the finalizer; the second applies.
    assert!(step(api.get("guarded").await?).await?.is_none());
    let cm = api.get("guarded").await?;
    assert_eq!(
        cm.metadata.finalizers,
        Some(vec!["rk.io/cleanup".to_owned()])
    );
    assert!(step(cm).await?.is_some());
    assert_eq!(cleanups.load(Ordering::SeqCst), 0);

    // Deleting leaves the object until the cleanup removes the finalizer.
    api.delete("guarded", &DeleteParams::default()).await?;
    let cm = api.get("guarded").await?;
    assert!(cm.metadata.deletion_timestamp.is_some());
    step(cm).await?;
    assert_eq!(cleanups.load(Ordering::SeqCst), 1);
    let mut gone = false;
    for _ in 0..50 {
        if api.get_opt("guarded").await?.is_none() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(gone, "object deleted once its finalizer is removed");
    Ok(())
}

#[tokio::test]
async fn rate_limited_client_spaces_requests_after_the_burst() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = rate_limited_client(server.client(), 20.0, 5);
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let started = std::time::Instant::now();
    for _ in 0..15 {
        api.list(&ListParams::default()).await?;
    }
    // 5 at once, then 10 more at 20/s: at least ~500 ms.
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(450),
        "15 requests took only {elapsed:?}"
    );
    Ok(())
}

/// A client whose server does not serve events.k8s.io: it answers 404 there
/// and records the core/v1 events posted.
fn core_only_client(posted: Arc<std::sync::Mutex<Vec<serde_json::Value>>>) -> kube::Client {
    use http_body_util::BodyExt;
    let service = tower::service_fn(move |request: http::Request<kube::client::Body>| {
        let posted = posted.clone();
        async move {
            let path = request.uri().path().to_owned();
            let method = request.method().clone();
            let bytes = request.into_body().collect().await?.to_bytes();
            let (status, body) = if path.starts_with("/apis/events.k8s.io/") {
                (
                    404,
                    serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                        "reason": "NotFound", "code": 404, "message": "the server could not find the requested resource"}),
                )
            } else if method == http::Method::POST && path == "/api/v1/namespaces/default/events" {
                let event: serde_json::Value = serde_json::from_slice(&bytes)?;
                posted.lock().unwrap().push(event.clone());
                (201, event)
            } else if method == http::Method::PATCH {
                let patch: serde_json::Value = serde_json::from_slice(&bytes)?;
                posted.lock().unwrap().push(patch.clone());
                (200, patch)
            } else {
                (
                    404,
                    serde_json::json!({"kind": "Status", "code": 404, "message": "no"}),
                )
            };
            let response = http::Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(http_body_util::Full::new(bytes::Bytes::from(
                    body.to_string(),
                )))?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(response)
        }
    });
    kube::Client::new(service, "default")
}

#[tokio::test]
async fn recorder_falls_back_to_core_v1_events() -> anyhow::Result<()> {
    let posted: Arc<std::sync::Mutex<Vec<serde_json::Value>>> = Arc::default();
    let recorder = Recorder::new(
        core_only_client(posted.clone()),
        Reporter {
            controller: "rk.io/test".into(),
            instance: None,
        },
    );
    let regarding = k8s_openapi::api::core::v1::ObjectReference {
        kind: Some("ConfigMap".into()),
        namespace: Some("default".into()),
        name: Some("old-server".into()),
        ..Default::default()
    };
    let input = EventInput {
        type_: EventType::Normal,
        reason: "Synced".into(),
        action: "Sync".into(),
        note: Some("done".into()),
    };
    recorder.publish(&regarding, &input).await?;
    recorder.publish(&regarding, &input).await?;
    let posted = posted.lock().unwrap().clone();
    assert_eq!(posted.len(), 2, "{posted:?}");
    assert_eq!(posted[0]["involvedObject"]["name"], "old-server");
    assert_eq!(posted[0]["count"], 1);
    assert_eq!(posted[0]["source"]["component"], "rk.io/test");
    assert_eq!(posted[1]["count"], 2, "the repeat bumps the count");
    Ok(())
}
