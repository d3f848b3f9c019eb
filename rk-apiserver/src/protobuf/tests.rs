use k8s_pb::api::core::v1 as pb;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as pbmeta;
use prost::Message;
use serde_json::json;

use super::*;

fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
    let tm = k8s_pb::apimachinery::pkg::runtime::TypeMeta {
        api_version: Some(api_version.into()),
        kind: Some(kind.into()),
    };
    let unknown = k8s_pb::apimachinery::pkg::runtime::Unknown {
        type_meta: Some(tm),
        raw: Some(raw),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut out = b"k8s\0".to_vec();
    out.extend(unknown.encode_to_vec());
    out
}

#[test]
fn configmap_with_data_and_binary_data_decodes_to_json() {
    let cm = pb::ConfigMap {
        metadata: Some(pbmeta::ObjectMeta {
            name: Some("settings".into()),
            namespace: Some("default".into()),
            labels: [("app".to_string(), "x".to_string())].into(),
            ..Default::default()
        }),
        data: [("k".to_string(), "v \"quoted\"\n".to_string())].into(),
        binary_data: [("b".to_string(), vec![0u8, 1, 2])].into(),
        immutable: None,
    };
    let v = decode_to_json(&envelope("v1", "ConfigMap", cm.encode_to_vec())).unwrap();
    assert_eq!(
        v,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": "default", "labels": {"app": "x"}},
                         "data": {"k": "v \"quoted\"\n"}, "binaryData": {"b": "AAEC"}})
    );
    serde_json::from_value::<k8s_openapi::api::core::v1::ConfigMap>(v).unwrap();
}

#[test]
fn service_ports_keep_int_or_string_and_cluster_ip() {
    let svc = pb::Service {
        metadata: Some(pbmeta::ObjectMeta {
            name: Some("web".into()),
            ..Default::default()
        }),
        spec: Some(pb::ServiceSpec {
            cluster_ip: Some("None".into()),
            ports: vec![pb::ServicePort {
                port: Some(80),
                target_port: Some(k8s_pb::apimachinery::pkg::util::intstr::IntOrString {
                    r#type: Some(1),
                    int_val: None,
                    str_val: Some("http".into()),
                }),
                ..Default::default()
            }],
            selector: [("app".to_string(), "web".to_string())].into(),
            ..Default::default()
        }),
        status: None,
    };
    let v = decode_to_json(&envelope("v1", "Service", svc.encode_to_vec())).unwrap();
    assert_eq!(v["spec"]["clusterIP"], "None");
    assert_eq!(v["spec"]["ports"][0]["targetPort"], "http");
    assert_eq!(v["spec"]["ports"][0]["port"], 80);
    serde_json::from_value::<k8s_openapi::api::core::v1::Service>(v).unwrap();
}

#[test]
fn deployment_with_quantities_and_timestamps_decodes() {
    use k8s_pb::api::apps::v1 as apps;
    let container = pb::Container {
        name: Some("c".into()),
        image: Some("nginx".into()),
        resources: Some(pb::ResourceRequirements {
            requests: [(
                "cpu".to_string(),
                k8s_pb::apimachinery::pkg::api::resource::Quantity {
                    string: Some("250m".into()),
                },
            )]
            .into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let d = apps::Deployment {
        metadata: Some(pbmeta::ObjectMeta {
            name: Some("web".into()),
            creation_timestamp: Some(pbmeta::Time {
                seconds: Some(1_767_225_600),
                nanos: Some(0),
            }),
            ..Default::default()
        }),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(0),
            selector: Some(pbmeta::LabelSelector {
                match_labels: [("app".to_string(), "web".to_string())].into(),
                ..Default::default()
            }),
            template: Some(pb::PodTemplateSpec {
                metadata: None,
                spec: Some(pb::PodSpec {
                    containers: vec![container],
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }),
        status: None,
    };
    let v = decode_to_json(&envelope("apps/v1", "Deployment", d.encode_to_vec())).unwrap();
    assert_eq!(v["spec"]["replicas"], 0, "explicit zero is kept");
    assert_eq!(v["metadata"]["creationTimestamp"], "2026-01-01T00:00:00Z");
    assert_eq!(
        v["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"],
        "250m"
    );
    serde_json::from_value::<k8s_openapi::api::apps::v1::Deployment>(v).unwrap();
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    assert!(matches!(
        decode_to_json(b"nope"),
        Err(ProtobufError::BadMagic)
    ));
    let mut seed: u64 = 42;
    for len in 0..300 {
        let mut body = b"k8s\0".to_vec();
        for _ in 0..len {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            body.push((seed >> 56) as u8);
        }
        let _ = decode_to_json(&body);
    }
}

/// What Go's marshaller writes for `kubectl create deployment`: every
/// non-pointer field, zero or not, and the zero time as an empty message.
/// The JSON is what a JSON client would have sent: no `stdin: false`, no
/// `generation: 0`, no 1970 timestamps — but a pointer field set to its
/// zero value stays.
#[test]
fn go_zero_values_of_omitempty_fields_are_left_out() {
    use k8s_pb::api::apps::v1 as apps;
    let meta = |name: Option<&str>| pbmeta::ObjectMeta {
        name: name.map(str::to_string),
        generation: Some(0),
        creation_timestamp: Some(pbmeta::Time {
            seconds: None,
            nanos: None,
        }),
        ..Default::default()
    };
    let d = apps::Deployment {
        metadata: Some(meta(Some("web"))),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(0),
            min_ready_seconds: Some(0),
            paused: Some(false),
            template: Some(pb::PodTemplateSpec {
                metadata: Some(meta(None)),
                spec: Some(pb::PodSpec {
                    containers: vec![pb::Container {
                        name: Some("c".into()),
                        image: Some("i".into()),
                        stdin: Some(false),
                        tty: Some(false),
                        ..Default::default()
                    }],
                    host_network: Some(false),
                    automount_service_account_token: Some(false),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }),
        status: None,
    };
    let v = decode_to_json(&envelope("apps/v1", "Deployment", d.encode_to_vec())).unwrap();
    assert_eq!(v["metadata"], json!({"name": "web"}));
    assert_eq!(
        v["spec"],
        json!({"replicas": 0, "template": {"metadata": {}, "spec": {
            "containers": [{"name": "c", "image": "i"}],
            "automountServiceAccountToken": false}}})
    );
}
