//! The controllers' event recorder aggregates repeats as client-go does.

use k8s_openapi::api::core::v1::{ConfigMap, Event};
use kube::Api;
use kube::api::{ListParams, PostParams};
use rk_controllers::events::Recorder;
use serde_json::json;

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeats_bump_the_count_of_one_event() -> Result<(), Error> {
    let server = crate::support::test_server().await?;
    let client = server.client();
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "subject"}}))?;
    let cm = Api::<ConfigMap>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &cm)
        .await?;
    let recorder = Recorder::new(client.clone(), "test-controller");
    for _ in 0..3 {
        recorder
            .record(
                "v1",
                "ConfigMap",
                &cm.metadata,
                "Warning",
                "Odd",
                "the same thing",
            )
            .await;
    }
    recorder
        .record(
            "v1",
            "ConfigMap",
            &cm.metadata,
            "Normal",
            "Fine",
            "something else",
        )
        .await;

    let events = Api::<Event>::namespaced(client, "default")
        .list(&ListParams::default())
        .await?
        .items;
    let odd: Vec<&Event> = events
        .iter()
        .filter(|e| e.reason.as_deref() == Some("Odd"))
        .collect();
    assert_eq!(odd.len(), 1, "repeats fold into one Event: {events:?}");
    assert_eq!(odd[0].count, Some(3));
    assert!(odd[0].last_timestamp >= odd[0].first_timestamp);
    assert_eq!(odd[0].involved_object.name.as_deref(), Some("subject"));
    let fine: Vec<&Event> = events
        .iter()
        .filter(|e| e.reason.as_deref() == Some("Fine"))
        .collect();
    assert_eq!(fine.len(), 1);
    assert_eq!(fine[0].count, Some(1));
    Ok(())
}
