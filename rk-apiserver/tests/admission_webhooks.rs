//! Admission webhooks: a TLS webhook server in the test, configurations
//! pointing at it by URL and by Service, and what writes see through
//! `kube::Client`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use rk_apiserver::TestServer;
use serde_json::{Value, json};

mod support;
use support::{Certs, certs};

/// The reviews the webhook server saw: (path, operation, name).
type Seen = Arc<Mutex<Vec<(String, String, String)>>>;

/// What the webhook answers for one review.
fn answer(path: &str, review: &Value) -> Value {
    let request = &review["request"];
    let uid = request["uid"].clone();
    let object = if request["object"].is_null() {
        &request["oldObject"]
    } else {
        &request["object"]
    };
    let labels = &object["metadata"]["labels"];
    match path {
        "/mutate" | "/second" => {
            let key = if path == "/mutate" {
                "mutated"
            } else {
                "second"
            };
            let patch = if labels.is_object() {
                json!([{"op": "add", "path": format!("/metadata/labels/{key}"), "value": "yes"}])
            } else {
                json!([{"op": "add", "path": "/metadata/labels", "value": {key: "yes"}}])
            };
            let patch = base64::engine::general_purpose::STANDARD.encode(patch.to_string());
            json!({"uid": uid, "allowed": true, "patchType": "JSONPatch", "patch": patch})
        }
        _ => {
            let deny = labels["deny"] == "true"
                || (request["operation"] == "DELETE" && labels["protect"] == "true");
            if deny {
                json!({"uid": uid, "allowed": false,
                       "status": {"code": 403, "reason": "Forbidden", "message": "labels say no"}})
            } else {
                json!({"uid": uid, "allowed": true, "warnings": ["seen by the validator"]})
            }
        }
    }
}

/// Serves admission reviews over TLS on 127.0.0.1, noting each in `seen`;
/// returns the port.
async fn webhook_server(certs: &Certs, seen: Seen) -> u16 {
    let handler: support::Handler = Arc::new(move |path: &str, review: &Value| {
        let request = &review["request"];
        seen.lock().unwrap().push((
            path.to_string(),
            request["operation"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            request["name"].as_str().unwrap_or_default().to_string(),
        ));
        json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": answer(path, review),
        })
    });
    support::tls_server(certs, handler).await
}

fn webhook(name: &str, client_config: Value, resources: &[&str], failure: &str) -> Value {
    json!({
        "name": name,
        "clientConfig": client_config,
        "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "resources": resources,
                   "operations": ["CREATE", "UPDATE", "DELETE"]}],
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
        "failurePolicy": failure,
        "timeoutSeconds": 5
    })
}

fn validating_configuration(name: &str, webhooks: Vec<Value>) -> ValidatingWebhookConfiguration {
    serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": webhooks
    }))
    .unwrap()
}

fn mutating_configuration(name: &str, webhooks: Vec<Value>) -> MutatingWebhookConfiguration {
    serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": webhooks
    }))
    .unwrap()
}

fn api_error<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> (u16, String) {
    match r {
        Err(kube::Error::Api(s)) => (s.code, s.message.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn config_map(name: &str, labels: Value) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "labels": labels},
        "data": {"k": "v"}
    }))
    .unwrap()
}

/// Creates `name` until the configurations are seen (the webhooks read
/// them from the watch cache, a moment behind).
async fn create_until<F: Fn(&ConfigMap) -> bool>(
    api: &Api<ConfigMap>,
    name: &str,
    done: F,
) -> ConfigMap {
    for _ in 0..100 {
        let created = api
            .create(&PostParams::default(), &config_map(name, json!({})))
            .await
            .unwrap();
        if done(&created) {
            return created;
        }
        api.delete(name, &DeleteParams::default()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the webhook configuration never took effect");
}

/// Calls `attempt(i)` for i = 0, 1, ... until it is refused, pausing after
/// each success: a configuration is read from the watch cache a moment
/// after it is written. Returns the refusal's code and message.
async fn first_refusal<T, F, Fut>(what: &str, mut attempt: F) -> (u16, String)
where
    T: std::fmt::Debug,
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    for i in 0..100 {
        match attempt(i).await {
            Ok(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => return api_error::<T>(Err(e)),
        }
    }
    panic!("{what} never took effect");
}

#[tokio::test]
async fn webhooks_mutate_validate_and_fail_as_their_policy_says() {
    let server = TestServer::start().await.unwrap();
    let client = server.client();
    let certs = certs();
    let seen: Seen = Arc::default();
    let port = webhook_server(&certs, seen.clone()).await;
    let ca_bundle = base64::engine::general_purpose::STANDARD.encode(&certs.ca_pem);

    // The validator is reached through a Service and its EndpointSlice.
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    services
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Service", "metadata": {"name": "webhook"},
                "spec": {"ports": [{"port": 443, "targetPort": port}]}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    slices
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": "webhook-1", "labels": {"kubernetes.io/service-name": "webhook"}},
                "addressType": "IPv4",
                "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": true}}],
                "ports": [{"port": port, "protocol": "TCP"}]
            }))
            .unwrap(),
        )
        .await
        .unwrap();

    let mutating: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let created = mutating
        .create(
            &PostParams::default(),
            &mutating_configuration("labeller", vec![webhook(
                    "label.rk.test",
                    json!({"url": format!("https://127.0.0.1:{port}/mutate"), "caBundle": ca_bundle}),
                    &["configmaps"],
                    "Fail",
                )]),
        )
        .await
        .unwrap();
    // Defaults, as upstream sets them.
    let hook = &created.webhooks.as_ref().unwrap()[0];
    assert_eq!(hook.match_policy.as_deref(), Some("Equivalent"));
    assert_eq!(hook.reinvocation_policy.as_deref(), Some("Never"));
    assert_eq!(hook.rules.as_ref().unwrap()[0].scope.as_deref(), Some("*"));

    let validating: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    validating
        .create(
            &PostParams::default(),
            &validating_configuration("guard", vec![webhook(
                    "deny.rk.test",
                    json!({"service": {"namespace": "default", "name": "webhook", "path": "/validate"},
                           "caBundle": ca_bundle}),
                    &["configmaps"],
                    "Fail",
                )]),
        )
        .await
        .unwrap();

    // The mutating webhook labels what is created.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let first = create_until(&cms, "first", |cm| {
        cm.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("mutated"))
            .map(String::as_str)
            == Some("yes")
    })
    .await;
    assert_eq!(first.data.unwrap()["k"], "v");
    // Once the validator is seen (its configuration, too, is read from the
    // watch cache), it refuses what it should.
    let _ = create_until(&cms, "probe", |_| {
        seen.lock()
            .unwrap()
            .iter()
            .any(|(p, _, _)| p == "/validate")
    })
    .await;
    let denied = cms
        .create(
            &PostParams::default(),
            &config_map("bad", json!({"deny": "true"})),
        )
        .await;
    let (code, message) = api_error(denied);
    assert_eq!(code, 403);
    assert_eq!(
        message,
        "admission webhook \"deny.rk.test\" denied the request: labels say no"
    );
    // Updates and deletes are reviewed too.
    let patch = json!({"metadata": {"labels": {"deny": "true"}}});
    let (code, _) = api_error(
        cms.patch("first", &PatchParams::default(), &Patch::Merge(&patch))
            .await,
    );
    assert_eq!(code, 403);
    let protect = json!({"metadata": {"labels": {"protect": "true"}}});
    cms.patch("first", &PatchParams::default(), &Patch::Merge(&protect))
        .await
        .unwrap();
    let (code, _) = api_error(cms.delete("first", &DeleteParams::default()).await);
    assert_eq!(code, 403);
    assert!(
        cms.get("first").await.is_ok(),
        "a refused delete deletes nothing"
    );
    {
        let seen = seen.lock().unwrap();
        for op in ["CREATE", "UPDATE", "DELETE"] {
            assert!(
                seen.iter().any(|(p, o, _)| p == "/validate" && o == op),
                "no {op} review in {seen:?}"
            );
        }
    }

    // A webhook that cannot be reached: Ignore lets the write through,
    // Fail refuses it with upstream's message.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let unreachable = |name: &str, failure: &str| {
        webhook(
            &format!("{name}.rk.test"),
            json!({"url": format!("https://127.0.0.1:{closed_port}/"), "caBundle": ca_bundle}),
            &["secrets"],
            failure,
        )
    };
    // The Ignore webhook shares its configuration with one that answers, so
    // a review reaching the latter shows the configuration is in effect.
    let witness = webhook(
        "witness.rk.test",
        json!({"url": format!("https://127.0.0.1:{port}/validate"), "caBundle": ca_bundle}),
        &["secrets"],
        "Fail",
    );
    validating
        .create(
            &PostParams::default(),
            &validating_configuration("lenient", vec![unreachable("lenient", "Ignore"), witness]),
        )
        .await
        .unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let secret = |name: &str| -> Secret {
        serde_json::from_value(
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}}),
        )
        .unwrap()
    };
    let mut reviewed = false;
    for i in 0..100 {
        let name = format!("allowed-{i}");
        secrets
            .create(&PostParams::default(), &secret(&name))
            .await
            .expect("an unreachable Ignore webhook blocks nothing");
        if seen.lock().unwrap().iter().any(|(_, _, n)| *n == name) {
            reviewed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(reviewed, "the lenient configuration never took effect");
    validating
        .delete("lenient", &DeleteParams::default())
        .await
        .unwrap();
    validating
        .create(
            &PostParams::default(),
            &validating_configuration("strict", vec![unreachable("strict", "Fail")]),
        )
        .await
        .unwrap();
    let (code, message) = first_refusal("the Fail webhook", |i| {
        let object = secret(&format!("s{i}"));
        let api = &secrets;
        async move { api.create(&PostParams::default(), &object).await }
    })
    .await;
    assert_eq!(code, 500);
    assert!(
        message.starts_with(
            "Internal error occurred: failed calling webhook \"strict.rk.test\": failed to call webhook: Post \"https://127.0.0.1:"
        ),
        "{message}"
    );
    // Removing the broken configuration is never blocked by a webhook.
    validating
        .delete("strict", &DeleteParams::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_webhook_whose_certificate_is_not_trusted_fails_the_call() {
    let server = TestServer::start().await.unwrap();
    let client = server.client();
    let certs = certs();
    let port = webhook_server(&certs, Arc::default()).await;
    let stranger = base64::engine::general_purpose::STANDARD.encode(certs_ca_only());
    let validating: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    validating
        .create(
            &PostParams::default(),
            &validating_configuration("untrusted", vec![webhook(
                    "untrusted.rk.test",
                    json!({"url": format!("https://127.0.0.1:{port}/validate"), "caBundle": stranger}),
                    &["configmaps"],
                    "Fail",
                )]),
        )
        .await
        .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    let (code, message) = first_refusal("the untrusted webhook", |i| {
        let object = config_map(&format!("c{i}"), json!({}));
        let api = &cms;
        async move { api.create(&PostParams::default(), &object).await }
    })
    .await;
    assert_eq!(code, 500);
    assert!(message.contains("certificate"), "{message}");
}

/// The PEM of a CA that signed nothing the webhook serves.
fn certs_ca_only() -> String {
    certs().ca_pem
}

#[tokio::test]
async fn webhook_configurations_are_validated() {
    let server = TestServer::start().await.unwrap();
    let validating: Api<ValidatingWebhookConfiguration> = Api::all(server.client());
    let bad = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "bad"},
        "webhooks": [{
            "name": "short",
            "clientConfig": {"url": "http://127.0.0.1:1/"},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"], "operations": ["MAKE"]}],
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": 60
        }]
    });
    let result = validating
        .create(
            &PostParams::default(),
            &serde_json::from_value(bad).unwrap(),
        )
        .await;
    let (code, message) = api_error(result);
    assert_eq!(code, 422);
    for part in [
        "webhooks[0].name: Invalid value: \"short\": should be a domain with at least three segments separated by dots",
        "webhooks[0].clientConfig.url: Invalid value: \"http://127.0.0.1:1/\": 'https' is the only allowed URL scheme",
        "webhooks[0].rules[0].operations[0]: Unsupported value: \"MAKE\"",
        "webhooks[0].sideEffects: Unsupported value: \"\"",
        "webhooks[0].timeoutSeconds: Invalid value: 60: the timeout value must be between 1 and 30 seconds",
    ] {
        assert!(message.contains(part), "{part:?} not in {message}");
    }
}

#[tokio::test]
async fn an_if_needed_webhook_is_called_again_after_a_later_change() {
    let server = TestServer::start().await.unwrap();
    let client = server.client();
    let certs = certs();
    let seen: Seen = Arc::default();
    let port = webhook_server(&certs, seen.clone()).await;
    let ca_bundle = base64::engine::general_purpose::STANDARD.encode(&certs.ca_pem);
    let mutating: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    for (name, path, policy) in [
        ("a-first", "/mutate", "IfNeeded"),
        ("b-second", "/second", "Never"),
    ] {
        let mut hook = webhook(
            &format!("{name}.rk.test"),
            json!({"url": format!("https://127.0.0.1:{port}{path}"), "caBundle": ca_bundle}),
            &["configmaps"],
            "Fail",
        );
        hook["reinvocationPolicy"] = json!(policy);
        mutating
            .create(
                &PostParams::default(),
                &mutating_configuration(name, vec![hook]),
            )
            .await
            .unwrap();
    }
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    let both = |cm: &ConfigMap| {
        cm.metadata
            .labels
            .as_ref()
            .is_some_and(|l| l.contains_key("mutated") && l.contains_key("second"))
    };
    let _ = create_until(&cms, "twice", both).await;
    seen.lock().unwrap().clear();
    cms.delete("twice", &DeleteParams::default()).await.unwrap();
    seen.lock().unwrap().clear();
    cms.create(&PostParams::default(), &config_map("again", json!({})))
        .await
        .unwrap();
    let calls: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, op, name)| op == "CREATE" && name == "again")
        .map(|(path, _, _)| path.clone())
        .collect();
    assert_eq!(calls, vec!["/mutate", "/second", "/mutate"]);
}

/// A webhook is called only when its `matchConditions` (CEL) all hold; a
/// condition that cannot be evaluated fails the request under `Fail` and
/// skips the webhook under `Ignore`.
#[tokio::test]
async fn match_conditions_decide_whether_a_webhook_is_called() {
    let server = TestServer::start().await.unwrap();
    let client = server.client();
    let certs = certs();
    let seen: Seen = Arc::default();
    let port = webhook_server(&certs, seen.clone()).await;
    let ca_bundle = base64::engine::general_purpose::STANDARD.encode(&certs.ca_pem);
    let config =
        json!({"url": format!("https://127.0.0.1:{port}/validate"), "caBundle": ca_bundle});
    let mut guarded = webhook("guarded.rk.test", config.clone(), &["configmaps"], "Fail");
    guarded["matchConditions"] = json!([
        {"name": "not-exempt", "expression": "!has(object.metadata.labels) || !('exempt' in object.metadata.labels)"},
        {"name": "creates-only", "expression": "request.operation == 'CREATE'"}
    ]);
    let validating: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    validating
        .create(
            &PostParams::default(),
            &validating_configuration("conditions", vec![guarded]),
        )
        .await
        .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    // Wait until the webhook is in force: it refuses what is labelled deny.
    let (code, message) = first_refusal("the guarded webhook", |i| {
        let object = config_map(&format!("probe{i}"), json!({"deny": "true"}));
        let api = &cms;
        async move { api.create(&PostParams::default(), &object).await }
    })
    .await;
    assert_eq!(code, 403);
    assert!(message.contains("labels say no"), "{message}");

    // Exempt objects are not sent at all.
    let calls_before = seen.lock().unwrap().len();
    cms.create(
        &PostParams::default(),
        &config_map("exempt", json!({"deny": "true", "exempt": "yes"})),
    )
    .await
    .unwrap();
    assert_eq!(seen.lock().unwrap().len(), calls_before);

    // A condition that cannot be evaluated: Fail refuses, Ignore skips.
    let mut broken = webhook("broken.rk.test", config, &["secrets"], "Fail");
    broken["matchConditions"] = json!([{"name": "typo", "expression": "object.nothing.here == 1"}]);
    validating
        .create(
            &PostParams::default(),
            &validating_configuration("broken", vec![broken.clone()]),
        )
        .await
        .unwrap();
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(client.clone(), "default");
    let secret = |name: &str| -> k8s_openapi::api::core::v1::Secret {
        serde_json::from_value(
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}}),
        )
        .unwrap()
    };
    let (code, message) = first_refusal("the broken condition", |i| {
        let object = secret(&format!("s{i}"));
        let api = &secrets;
        async move { api.create(&PostParams::default(), &object).await }
    })
    .await;
    assert_eq!(code, 500);
    assert!(
        message.contains("failed to evaluate match condition \"typo\""),
        "{message}"
    );
    broken["failurePolicy"] = json!("Ignore");
    let mut current = validating.get("broken").await.unwrap();
    current.webhooks = validating_configuration("broken", vec![broken]).webhooks;
    validating
        .replace("broken", &PostParams::default(), &current)
        .await
        .unwrap();
    let mut created = false;
    for i in 0..100 {
        if secrets
            .create(&PostParams::default(), &secret(&format!("t{i}")))
            .await
            .is_ok()
        {
            created = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(created, "failurePolicy Ignore did not skip the webhook");
}
