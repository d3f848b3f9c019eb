//! Helpers shared by the integration tests of this crate.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use serde_json::json;

/// Send the controllers' warnings and info logs to the test's output, which
/// libtest shows when the test fails (`RUST_LOG` overrides the filter).
pub fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,rk_controllers=info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .with_ansi(false)
        .try_init();
}

/// Start an in-process API server, with the logs of the test that starts
/// it captured ([`init_logs`]).
pub async fn test_server() -> Result<rk_apiserver::TestServer, rk_apiserver::server::ServerError> {
    init_logs();
    rk_apiserver::TestServer::start().await
}

/// Poll `check` every 100 ms until it holds; panic naming `what` after 60 s.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// True when the pod's `Ready` condition is `True`.
pub fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// Stand in for a kubelet: every 30 ms, mark each pod that is not ready yet
/// Running and Ready (until the task is aborted).
pub fn fake_kubelet(pods: Api<Pod>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if let Ok(list) = pods.list(&ListParams::default()).await {
                for p in list.items.iter().filter(|p| !is_ready(p)) {
                    let name = p.metadata.name.clone().unwrap_or_default();
                    let now = jiff::Timestamp::now()
                        .strftime("%Y-%m-%dT%H:%M:%SZ")
                        .to_string();
                    let _ = pods
                        .patch_status(
                            &name,
                            &PatchParams::default(),
                            &Patch::Merge(json!({"status": {"phase": "Running", "podIP": "10.0.0.1",
                                "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}]}})),
                        )
                        .await;
                }
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    })
}
