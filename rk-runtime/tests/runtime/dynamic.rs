//! Informers for kinds known only at run time (CRDs) through the factory.

use std::time::Duration;

use crate::common::eventually;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, PostParams};
use rk_apiserver::TestServer;
use rk_runtime::factory::{InformerFactory, InformerOptions};

#[tokio::test]
async fn dynamic_informer_caches_custom_resources() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client();
    let crd: CustomResourceDefinition = serde_json::from_value(serde_json::json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget", "listKind": "WidgetList"},
            "scope": "Namespaced",
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}
            }]
        }
    }))?;
    Api::<CustomResourceDefinition>::all(client.clone())
        .create(&PostParams::default(), &crd)
        .await?;

    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.com", "v1", "Widget"),
        "widgets",
    );
    let widgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &resource);
    let widget = |name: &str| -> anyhow::Result<DynamicObject> {
        Ok(serde_json::from_value(serde_json::json!({
            "apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"size": 3}
        }))?)
    };
    // The CRD takes a moment to be served.
    let mut created = false;
    for _ in 0..100 {
        if widgets
            .create(&PostParams::default(), &widget("w1")?)
            .await
            .is_ok()
        {
            created = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(created, "custom resource served");

    let factory = InformerFactory::new(client.clone());
    let options = InformerOptions::all();
    let informer = factory.dynamic(&resource, &options);
    assert!(std::sync::Arc::ptr_eq(
        &informer,
        &factory.dynamic(&resource, &options)
    ));
    factory.start();
    assert!(factory.wait_for_cache_sync().await);
    widgets
        .create(&PostParams::default(), &widget("w2")?)
        .await?;
    let store = informer.store();
    assert!(
        eventually(Duration::from_secs(5), || {
            let store = store.clone();
            async move { store.len() == 2 }
        })
        .await
    );
    let w1 = store.get_named(Some("default"), "w1").expect("w1 cached");
    assert_eq!(w1.data["spec"]["size"], 3);
    factory.shutdown();
    Ok(())
}
