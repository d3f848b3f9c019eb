//! The `configmap-generator` operator against an in-process API server.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, CustomResourceExt, ResourceExt};
use rk_apiserver::TestServer;
use rk_examples::configmap_generator::{self, ConfigMapGenerator, ConfigMapGeneratorSpec};
use rk_examples::operator::{OperatorConfig, install_crd, is_true};

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

fn data(cm: &ConfigMap) -> BTreeMap<String, String> {
    cm.data.clone().unwrap_or_default()
}

#[tokio::test]
async fn generator_renders_its_config_map_and_reverts_drift() {
    let server = TestServer::start().await.unwrap();
    let client = server.client();
    install_crd(client.clone(), &ConfigMapGenerator::crd())
        .await
        .unwrap();
    let manager = configmap_generator::manager(
        client.clone(),
        &OperatorConfig {
            workers: 1,
            ..Default::default()
        },
    );
    let stop = manager.shutdown_token();
    let running = tokio::spawn(manager.run());

    let generators: Api<ConfigMapGenerator> = Api::namespaced(client.clone(), "default");
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let spec = ConfigMapGeneratorSpec {
        config_map_name: Some("app-config".into()),
        data: BTreeMap::from([("host".into(), "db".into()), ("port".into(), "5432".into())]),
        templates: BTreeMap::from([("url".into(), "postgres://{{host}}:{{port}}/app".into())]),
    };
    let generator = generators
        .create(
            &PostParams::default(),
            &ConfigMapGenerator::new("app", spec),
        )
        .await
        .unwrap();

    let cm = eventually("the ConfigMap", || async {
        config_maps.get_opt("app-config").await.unwrap()
    })
    .await;
    assert_eq!(data(&cm)["url"], "postgres://db:5432/app");
    assert_eq!(cm.owner_references()[0].uid, generator.uid().unwrap());
    eventually("Ready=True", || async {
        let status = generators.get("app").await.unwrap().status?;
        is_true(&status.conditions, "Ready").then_some(())
    })
    .await;

    // An edit is reverted.
    let patch = serde_json::json!({"data": {"url": "hacked", "extra": "x"}});
    config_maps
        .patch("app-config", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    eventually("the edit reverted", || async {
        let cm = config_maps.get("app-config").await.unwrap();
        (data(&cm).get("url").map(String::as_str) == Some("postgres://db:5432/app")
            && !data(&cm).contains_key("extra"))
        .then_some(())
    })
    .await;

    // A deleted ConfigMap is recreated.
    config_maps
        .delete("app-config", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the ConfigMap recreated", || async {
        config_maps
            .get_opt("app-config")
            .await
            .unwrap()
            .filter(|cm| cm.uid() != Some(String::new()))
            .filter(|cm| data(cm).contains_key("url"))
    })
    .await;

    // A change of the spec is rendered.
    let patch = serde_json::json!({"spec": {"data": {"host": "db2"}}});
    generators
        .patch("app", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    eventually("the new value rendered", || async {
        (data(&config_maps.get("app-config").await.unwrap())["url"] == "postgres://db2:5432/app")
            .then_some(())
    })
    .await;

    // A template naming a missing value makes Ready=False with the reason.
    let patch = serde_json::json!({"spec": {"templates": {"user": "{{user}}"}}});
    generators
        .patch("app", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    eventually("Ready=False RenderFailed", || async {
        let status = generators.get("app").await.unwrap().status?;
        status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "False" && c.reason == "RenderFailed")
            .then_some(())
    })
    .await;

    generators
        .delete("app", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the generator gone", || async {
        generators
            .get_opt("app")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    stop.cancel();
    running.await.unwrap().unwrap();
}
