//! CRD conversion webhooks: a CRD with two versions whose `spec` differs,
//! `conversion.strategy: Webhook` pointing at a TLS server in the test, and
//! what `kube::Client` reads and writes at either version.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use rk_apiserver::TestServer;
use serde_json::{Value, json};

mod support;

/// The `desiredAPIVersion` and object count of every review the webhook got.
type Seen = Arc<Mutex<Vec<(String, usize)>>>;

/// v1 has `spec.size`; v2 has `spec.dimensions.size`. An object labelled
/// `refuse` fails to convert; one labelled `rename` comes back renamed.
/// Each converted object gets the label `converted-to`.
fn convert(object: &Value, desired: &str) -> Result<Value, String> {
    let labels = &object["metadata"]["labels"];
    if labels["refuse"] == "yes" {
        return Err(format!(
            "cannot convert {}",
            object["metadata"]["name"].as_str().unwrap_or_default()
        ));
    }
    let mut out = object.clone();
    out["apiVersion"] = json!(desired);
    match desired {
        "example.com/v2" => {
            let size = object["spec"]["size"].clone();
            out["spec"] = json!({"dimensions": {"size": size}});
        }
        _ => {
            let size = object["spec"]["dimensions"]["size"].clone();
            out["spec"] = json!({"size": size});
        }
    }
    let version = desired.rsplit('/').next().unwrap_or_default();
    out["metadata"]["labels"]["converted-to"] = json!(version);
    if labels["rename"] == "yes" {
        out["metadata"]["name"] = json!("someone-else");
    }
    // Metadata other than labels and annotations is not the webhook's.
    out["metadata"]["finalizers"] = json!(["webhook.example.com/ignored"]);
    Ok(out)
}

/// The admission reviews the webhook got: (path, request kind's version,
/// written version, the object's spec).
type Admitted = Arc<Mutex<Vec<(String, String, String, Value)>>>;

/// `/validate` refuses a v1 widget bigger than 10; `/mutate` sets a v1
/// widget's size to at least 2. Both read and patch the v1 shape.
fn admit(path: &str, review: &Value, admitted: &Admitted) -> Value {
    let request = &review["request"];
    let object = &request["object"];
    admitted.lock().unwrap().push((
        path.to_string(),
        request["kind"]["version"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        request["requestKind"]["version"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        object["spec"].clone(),
    ));
    let size = object["spec"]["size"].as_i64().unwrap_or(0);
    let mut response = json!({"uid": request["uid"], "allowed": true});
    if path == "/validate" && size > 10 {
        response["allowed"] = json!(false);
        response["status"] = json!({"message": format!("size {size} is too big")});
    }
    if path == "/mutate" && size < 2 {
        let patch = json!([{"op": "replace", "path": "/spec/size", "value": 2}]);
        response["patchType"] = json!("JSONPatch");
        response["patch"] =
            json!(base64::engine::general_purpose::STANDARD.encode(patch.to_string()));
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response})
}

async fn conversion_webhook(certs: &support::Certs, seen: Seen) -> u16 {
    webhook_server(certs, seen, Admitted::default()).await
}

/// Converts at `/convert`, admits at `/validate` and `/mutate`.
async fn webhook_server(certs: &support::Certs, seen: Seen, admitted: Admitted) -> u16 {
    let handler: support::Handler = Arc::new(move |path: &str, review: &Value| {
        if path != "/convert" {
            return admit(path, review, &admitted);
        }
        let request = &review["request"];
        let desired = request["desiredAPIVersion"].as_str().unwrap_or_default();
        let objects = request["objects"].as_array().cloned().unwrap_or_default();
        seen.lock()
            .unwrap()
            .push((desired.to_string(), objects.len()));
        let converted: Result<Vec<Value>, String> =
            objects.iter().map(|o| convert(o, desired)).collect();
        let response = match converted {
            Ok(objects) => json!({"uid": request["uid"], "result": {"status": "Success"},
                "convertedObjects": objects}),
            Err(message) => json!({"uid": request["uid"],
                "result": {"status": "Failure", "message": message}}),
        };
        json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview", "response": response})
    });
    support::tls_server(certs, handler).await
}

fn crd(port: u16, ca_bundle: &str) -> CustomResourceDefinition {
    let schema =
        |spec: Value| json!({"openAPIV3Schema": {"type": "object", "properties": {"spec": spec}}});
    serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
            "scope": "Namespaced",
            "versions": [
                {"name": "v1", "served": true, "storage": true,
                 "schema": schema(json!({"type": "object", "properties": {"size": {"type": "integer"}}}))},
                {"name": "v2", "served": true, "storage": false,
                 "schema": schema(json!({"type": "object", "properties": {"dimensions": {
                     "type": "object", "properties": {"size": {"type": "integer"}}}}}))}
            ],
            "conversion": {"strategy": "Webhook", "webhook": {
                "conversionReviewVersions": ["v1"],
                "clientConfig": {"url": format!("https://127.0.0.1:{port}/convert"), "caBundle": ca_bundle}
            }}
        }
    }))
    .unwrap()
}

fn widgets(client: &kube::Client, version: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("example.com", version, "Widget");
    Api::namespaced_with(client.clone(), "default", &ApiResource::from_gvk(&gvk))
}

fn widget(name: &str, size: i64, labels: Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": name, "labels": labels}, "spec": {"size": size}
    }))
    .unwrap()
}

fn widget_v2(name: &str, size: i64) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "example.com/v2", "kind": "Widget",
        "metadata": {"name": name}, "spec": {"dimensions": {"size": size}}
    }))
    .unwrap()
}

/// Creates widgets of size 50 at v2 until one is refused with `code` (the
/// kind is served, and admission configurations read, a moment after they
/// are written); returns the refusal's message.
async fn first_refusal_of_a_big_widget(v2: &Api<DynamicObject>, code: u16) -> String {
    for i in 0..100 {
        match v2
            .create(&PostParams::default(), &widget_v2(&format!("big-{i}"), 50))
            .await
        {
            Err(kube::Error::Api(s)) if s.code == code => return s.message,
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    panic!("no big widget written at v2 was refused with {code}");
}

fn api_error<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> (u16, String) {
    match r {
        Err(kube::Error::Api(s)) => (s.code, s.message.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_conversion_webhook_serves_each_version_its_own_shape() {
    let server = TestServer::start().await.unwrap();
    let client = server.client();
    let certs = support::certs();
    let seen: Seen = Arc::default();
    let port = conversion_webhook(&certs, seen.clone()).await;
    let ca_bundle = base64::engine::general_purpose::STANDARD.encode(&certs.ca_pem);
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &crd(port, &ca_bundle))
        .await
        .unwrap();
    let v1 = widgets(&client, "v1");
    let v2 = widgets(&client, "v2");
    let pp = PostParams::default();
    let mut created = None;
    for _ in 0..100 {
        match v1.create(&pp, &widget("a", 3, json!({"app": "w"}))).await {
            Ok(w) => {
                created = Some(w);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let created = created.expect("the CRD's kind was never served");
    assert!(
        seen.lock().unwrap().is_empty(),
        "a write at its own version converts nothing"
    );

    // Read at the other version: the webhook's spec and labels, the stored
    // object's other metadata.
    let a = v2.get("a").await.unwrap();
    assert_eq!(a.types.as_ref().unwrap().api_version, "example.com/v2");
    assert_eq!(a.data["spec"], json!({"dimensions": {"size": 3}}));
    let labels = a.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get("converted-to").map(String::as_str), Some("v2"));
    assert_eq!(labels.get("app").map(String::as_str), Some("w"));
    assert_eq!(a.metadata.uid, created.metadata.uid);
    assert_eq!(
        a.metadata.resource_version,
        created.metadata.resource_version
    );
    assert_eq!(
        a.metadata.finalizers, None,
        "only labels and annotations are the webhook's"
    );
    assert_eq!(
        seen.lock().unwrap().last().unwrap(),
        &("example.com/v2".to_string(), 1)
    );

    // A list sends what needs converting in one review.
    v1.create(&pp, &widget("b", 4, json!({}))).await.unwrap();
    seen.lock().unwrap().clear();
    let list = v2.list(&ListParams::default()).await.unwrap();
    let sizes: Vec<Value> = list
        .items
        .iter()
        .map(|w| w.data["spec"]["dimensions"]["size"].clone())
        .collect();
    assert_eq!(sizes, vec![json!(3), json!(4)]);
    assert_eq!(
        *seen.lock().unwrap(),
        vec![("example.com/v2".to_string(), 2)]
    );

    // A patch at v2 works on the v2 shape; v1 then reads it back converted.
    v2.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"dimensions": {"size": 5}}})),
    )
    .await
    .unwrap();
    let a = v1.get("a").await.unwrap();
    assert_eq!(a.data["spec"], json!({"size": 5}));

    // A watch at v1 sees the object written at v2 converted, and a watch at
    // v2 the one written at v1.
    let mut events = v1
        .watch(&WatchParams::default(), "0")
        .await
        .unwrap()
        .boxed();
    let mut sizes = Vec::new();
    while sizes.len() < 2 {
        match events.try_next().await.unwrap() {
            Some(WatchEvent::Added(w)) => sizes.push(w.data["spec"]["size"].clone()),
            Some(_) => {}
            None => panic!("the watch ended"),
        }
    }
    sizes.sort_by_key(|v| v.as_i64());
    assert_eq!(sizes, vec![json!(4), json!(5)]);

    // A refusal is the webhook's message in a 500; nothing is stored.
    v1.create(&pp, &widget("c", 1, json!({"refuse": "yes"})))
        .await
        .unwrap();
    let (code, message) = api_error(v2.get("c").await);
    assert_eq!(code, 500);
    assert!(
        message.contains(
            "conversion webhook for example.com/v1, Kind=Widget failed: cannot convert c"
        ),
        "{message}"
    );
    assert_eq!(v1.get("c").await.unwrap().data["spec"]["size"], 1);
    // A converted object must be the same object.
    v1.create(&pp, &widget("d", 1, json!({"rename": "yes"})))
        .await
        .unwrap();
    let (code, message) = api_error(v2.get("d").await);
    assert_eq!(code, 500);
    assert!(
        message.contains("must have the same name: d != someone-else"),
        "{message}"
    );
}

#[tokio::test]
async fn conversion_settings_are_validated() {
    let server = TestServer::start().await.unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(server.client());
    let pp = PostParams::default();
    let mut no_webhook = crd(443, "");
    no_webhook.spec.conversion.as_mut().unwrap().webhook = None;
    let (code, message) = api_error(crds.create(&pp, &no_webhook).await);
    assert_eq!(code, 422);
    assert!(
        message.contains("spec.conversion.webhookClientConfig: Required value: required when strategy is set to Webhook"),
        "{message}"
    );
    let mut plain = crd(443, "");
    let webhook = plain
        .spec
        .conversion
        .as_mut()
        .unwrap()
        .webhook
        .as_mut()
        .unwrap();
    webhook.client_config.as_mut().unwrap().url = Some("http://127.0.0.1/convert".into());
    webhook.conversion_review_versions = vec!["v9".into()];
    let (code, message) = api_error(crds.create(&pp, &plain).await);
    assert_eq!(code, 422);
    assert!(
        message.contains("'https' is the only allowed URL scheme"),
        "{message}"
    );
    assert!(
        message.contains("must include at least one of v1, v1beta1"),
        "{message}"
    );
    let mut unknown = crd(443, "");
    unknown.spec.conversion.as_mut().unwrap().strategy = "Magic".into();
    let (code, message) = api_error(crds.create(&pp, &unknown).await);
    assert_eq!(code, 422);
    assert!(
        message.contains(r#"spec.conversion.strategy: Unsupported value: "Magic": supported values: "None", "Webhook""#),
        "{message}"
    );
}

/// Admission webhooks whose rules name only v1 see writes at v2 converted
/// to v1 (`matchPolicy: Equivalent`, the default), unless they ask for
/// `Exact`.
#[tokio::test]
async fn webhooks_for_one_version_admit_writes_at_another() {
    use k8s_openapi::api::admissionregistration::v1::{
        MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
    };
    let server = TestServer::start().await.unwrap();
    let client = server.client();
    let certs = support::certs();
    let admitted: Admitted = Arc::default();
    let port = webhook_server(&certs, Arc::default(), admitted.clone()).await;
    let ca_bundle = base64::engine::general_purpose::STANDARD.encode(&certs.ca_pem);
    let pp = PostParams::default();
    Api::<CustomResourceDefinition>::all(client.clone())
        .create(&pp, &crd(port, &ca_bundle))
        .await
        .unwrap();
    let webhook = |name: &str, path: &str, policy: &str| {
        json!({"name": name, "matchPolicy": policy,
            "clientConfig": {"url": format!("https://127.0.0.1:{port}{path}"), "caBundle": ca_bundle},
            "rules": [{"apiGroups": ["example.com"], "apiVersions": ["v1"], "resources": ["widgets"],
                       "operations": ["CREATE", "UPDATE"]}],
            "sideEffects": "None", "admissionReviewVersions": ["v1"], "timeoutSeconds": 5})
    };
    let validating: ValidatingWebhookConfiguration = serde_json::from_value(json!({
        "metadata": {"name": "widgets"},
        "webhooks": [webhook("size.example.com", "/validate", "Equivalent"),
                     webhook("exact.example.com", "/exact", "Exact")]
    }))
    .unwrap();
    Api::<ValidatingWebhookConfiguration>::all(client.clone())
        .create(&pp, &validating)
        .await
        .unwrap();
    let mutating: MutatingWebhookConfiguration = serde_json::from_value(json!({
        "metadata": {"name": "widgets"},
        "webhooks": [webhook("grow.example.com", "/mutate", "Equivalent")]
    }))
    .unwrap();
    Api::<MutatingWebhookConfiguration>::all(client.clone())
        .create(&pp, &mutating)
        .await
        .unwrap();
    let v2 = widgets(&client, "v2");
    let refusal = first_refusal_of_a_big_widget(&v2, 403).await;
    assert!(refusal.contains("size 50 is too big"), "{refusal}");

    admitted.lock().unwrap().clear();
    let small = v2.create(&pp, &widget_v2("small", 1)).await.unwrap();
    assert_eq!(
        small.data["spec"],
        json!({"dimensions": {"size": 2}}),
        "the mutating webhook's v1 patch, converted back to v2"
    );
    let seen = admitted.lock().unwrap().clone();
    let paths: Vec<&str> = seen.iter().map(|(p, ..)| p.as_str()).collect();
    assert_eq!(
        paths,
        vec!["/mutate", "/validate"],
        "Exact webhooks are not called"
    );
    for (_, kind_version, request_version, spec) in &seen {
        assert_eq!(
            (kind_version.as_str(), request_version.as_str()),
            ("v1", "v2")
        );
        assert!(spec["size"].is_i64(), "sent at v1: {spec}");
    }
}

/// A ValidatingAdmissionPolicy whose rules name only v1 judges writes at v2
/// on the object converted to v1; with `matchPolicy: Exact` it does not.
#[tokio::test]
async fn policies_for_one_version_judge_writes_at_another() {
    use k8s_openapi::api::admissionregistration::v1::{
        ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
    };
    let server = TestServer::start().await.unwrap();
    let client = server.client();
    let certs = support::certs();
    let port = conversion_webhook(&certs, Arc::default()).await;
    let ca_bundle = base64::engine::general_purpose::STANDARD.encode(&certs.ca_pem);
    let pp = PostParams::default();
    Api::<CustomResourceDefinition>::all(client.clone())
        .create(&pp, &crd(port, &ca_bundle))
        .await
        .unwrap();
    let policies: Api<ValidatingAdmissionPolicy> = Api::all(client.clone());
    let bindings: Api<ValidatingAdmissionPolicyBinding> = Api::all(client.clone());
    for (name, policy, limit) in [("equivalent", "Equivalent", 10), ("exact", "Exact", 1)] {
        let p: ValidatingAdmissionPolicy = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {
                "matchConstraints": {"matchPolicy": policy, "resourceRules": [{
                    "apiGroups": ["example.com"], "apiVersions": ["v1"], "resources": ["widgets"],
                    "operations": ["CREATE", "UPDATE"]}]},
                "validations": [{"expression": format!("object.spec.size <= {limit}"),
                    "message": format!("{name}: too big")}]
            }
        }))
        .unwrap();
        policies.create(&pp, &p).await.unwrap();
        let b: ValidatingAdmissionPolicyBinding = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"policyName": name, "validationActions": ["Deny"]}
        }))
        .unwrap();
        bindings.create(&pp, &b).await.unwrap();
    }
    let v2 = widgets(&client, "v2");
    let refusal = first_refusal_of_a_big_widget(&v2, 422).await;
    assert!(refusal.contains("equivalent: too big"), "{refusal}");
    // Size 5 passes the Equivalent policy; the Exact one (limit 1) never
    // sees a v2 write.
    let small = v2.create(&pp, &widget_v2("small", 5)).await.unwrap();
    assert_eq!(small.data["spec"], json!({"dimensions": {"size": 5}}));
}

/// A webhook serving a self-signed certificate that is its own `caBundle`
/// (and a CA) is trusted, as kube-apiserver trusts it.
#[tokio::test]
async fn a_self_signed_webhook_certificate_in_the_bundle_is_trusted() {
    let server = TestServer::start().await.unwrap();
    let client = server.client();
    let certs = support::self_signed_ca();
    let port = conversion_webhook(&certs, Arc::default()).await;
    let ca_bundle = base64::engine::general_purpose::STANDARD.encode(&certs.ca_pem);
    Api::<CustomResourceDefinition>::all(client.clone())
        .create(&PostParams::default(), &crd(port, &ca_bundle))
        .await
        .unwrap();
    let v1 = widgets(&client, "v1");
    let mut created = false;
    for _ in 0..100 {
        if v1
            .create(&PostParams::default(), &widget("a", 3, json!({})))
            .await
            .is_ok()
        {
            created = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(created, "the CRD's kind was never served");
    let a = widgets(&client, "v2").get("a").await.unwrap();
    assert_eq!(a.data["spec"], json!({"dimensions": {"size": 3}}));
}
