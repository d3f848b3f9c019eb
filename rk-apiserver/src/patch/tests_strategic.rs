//! Strategic merge patch, on realistic Deployment, Pod and Node objects.

use serde_json::{Value, json};

use super::{PatchSchema, apply_strategic_merge_patch, patch_strategy_for};

fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "labels": {"app": "web", "team": "storefront"},
            "finalizers": ["example.com/cleanup"]
        },
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": "nginx:1.25",
                            "ports": [{"containerPort": 80, "protocol": "TCP"}],
                            "env": [{"name": "MODE", "value": "prod"}, {"name": "LOG", "value": "info"}]
                        },
                        {"name": "sidecar", "image": "envoy:1.29"}
                    ],
                    "volumes": [{"name": "cache", "emptyDir": {}}],
                    "tolerations": [{"key": "spot", "operator": "Exists"}]
                }
            }
        },
        "status": {
            "conditions": [
                {"type": "Available", "status": "True"},
                {"type": "Progressing", "status": "True"}
            ]
        }
    })
}

fn smp(original: &Value, patch: Value) -> Value {
    let schema = patch_strategy_for("apps/v1", "Deployment");
    match apply_strategic_merge_patch(original, patch.to_string().as_bytes(), &schema) {
        Ok(v) => v,
        Err(e) => panic!("patch failed: {e}"),
    }
}

fn containers(d: &Value) -> &Value {
    &d["spec"]["template"]["spec"]["containers"]
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .map(|l| l.iter().filter_map(|c| c["name"].as_str()).collect())
        .unwrap_or_default()
}

#[test]
fn smp_merges_containers_by_name() {
    let out = smp(
        &deployment(),
        json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}}),
    );
    assert_eq!(names(containers(&out)), ["web", "sidecar"]);
    assert_eq!(containers(&out)[0]["image"], "nginx:1.27");
    assert_eq!(
        containers(&out)[0]["ports"][0]["containerPort"],
        80,
        "untouched fields stay"
    );
    assert_eq!(containers(&out)[1]["image"], "envoy:1.29");
}

#[test]
fn smp_new_element_without_order_directive_goes_first_as_upstream() {
    let out = smp(
        &deployment(),
        json!({"spec": {"template": {"spec": {"containers": [{"name": "debug", "image": "busybox"}]}}}}),
    );
    assert_eq!(names(containers(&out)), ["debug", "web", "sidecar"]);
}

#[test]
fn smp_set_element_order_places_new_elements() {
    let out = smp(
        &deployment(),
        json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "web"}, {"name": "sidecar"}, {"name": "debug"}],
            "containers": [{"name": "debug", "image": "busybox"}]
        }}}}),
    );
    assert_eq!(names(containers(&out)), ["web", "sidecar", "debug"]);
    assert!(
        out["spec"]["template"]["spec"]
            .get("$setElementOrder/containers")
            .is_none()
    );
}

#[test]
fn smp_merges_nested_env_by_name() {
    let out = smp(
        &deployment(),
        json!({"spec": {"template": {"spec": {"containers": [
            {"name": "web", "env": [{"name": "LOG", "value": "debug"}]}
        ]}}}}),
    );
    let env = &containers(&out)[0]["env"];
    assert_eq!(
        env,
        &json!([{"name": "MODE", "value": "prod"}, {"name": "LOG", "value": "debug"}])
    );
}

#[test]
fn smp_delete_directive_removes_element() {
    let out = smp(
        &deployment(),
        json!({"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "$patch": "delete"}]}}}}),
    );
    assert_eq!(names(containers(&out)), ["web"]);
}

#[test]
fn smp_replace_directive_in_list_replaces_whole_list() {
    let out = smp(
        &deployment(),
        json!({"spec": {"template": {"spec": {"containers": [
            {"$patch": "replace"},
            {"name": "only", "image": "app:1"}
        ]}}}}),
    );
    assert_eq!(
        containers(&out),
        &json!([{"name": "only", "image": "app:1"}])
    );
}

#[test]
fn smp_replace_directive_on_map_replaces_map() {
    let out = smp(
        &deployment(),
        json!({"metadata": {"labels": {"$patch": "replace", "app": "web2"}}}),
    );
    assert_eq!(out["metadata"]["labels"], json!({"app": "web2"}));
}

#[test]
fn smp_delete_directive_on_map_empties_it() {
    let out = smp(
        &deployment(),
        json!({"spec": {"strategy": {"$patch": "delete"}}}),
    );
    assert_eq!(out["spec"]["strategy"], json!({}));
}

#[test]
fn smp_null_deletes_key() {
    let out = smp(
        &deployment(),
        json!({"metadata": {"labels": {"team": null}}, "spec": {"replicas": null}}),
    );
    assert_eq!(out["metadata"]["labels"], json!({"app": "web"}));
    assert!(out["spec"].get("replicas").is_none());
}

#[test]
fn smp_list_without_strategy_is_replaced() {
    let out = smp(
        &deployment(),
        json!({"spec": {"template": {"spec": {"tolerations": [{"key": "gpu", "operator": "Exists"}]}}}}),
    );
    assert_eq!(
        out["spec"]["template"]["spec"]["tolerations"],
        json!([{"key": "gpu", "operator": "Exists"}])
    );
}

#[test]
fn smp_unions_finalizers() {
    let out = smp(
        &deployment(),
        json!({"metadata": {"finalizers": ["example.com/cleanup", "example.com/audit"]}}),
    );
    assert_eq!(
        out["metadata"]["finalizers"],
        json!(["example.com/cleanup", "example.com/audit"])
    );
}

#[test]
fn smp_delete_from_primitive_list() {
    let out = smp(
        &deployment(),
        json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["example.com/cleanup"]}}),
    );
    assert_eq!(out["metadata"]["finalizers"], json!([]));
}

#[test]
fn smp_merges_conditions_by_type() {
    let out = smp(
        &deployment(),
        json!({"status": {"conditions": [{"type": "Progressing", "status": "False", "reason": "Stuck"}]}}),
    );
    assert_eq!(
        out["status"]["conditions"],
        json!([
            {"type": "Available", "status": "True"},
            {"type": "Progressing", "status": "False", "reason": "Stuck"}
        ])
    );
}

#[test]
fn smp_retain_keys_clears_other_strategy_fields() {
    let out = smp(
        &deployment(),
        json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": null}}}),
    );
    assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
}

#[test]
fn smp_retain_keys_must_cover_the_patch() {
    let schema = patch_strategy_for("apps/v1", "Deployment");
    let patch =
        json!({"spec": {"strategy": {"$retainKeys": ["rollingUpdate"], "type": "Recreate"}}});
    let err = apply_strategic_merge_patch(&deployment(), patch.to_string().as_bytes(), &schema)
        .unwrap_err();
    assert_eq!(err.http_code(), 400);
}

#[test]
fn smp_missing_merge_key_is_400() {
    let schema = patch_strategy_for("apps/v1", "Deployment");
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"image": "nginx"}]}}}});
    let err = apply_strategic_merge_patch(&deployment(), patch.to_string().as_bytes(), &schema)
        .unwrap_err();
    assert_eq!(err.http_code(), 400);
    assert!(
        err.to_string()
            .contains("does not contain declared merge key: name"),
        "{err}"
    );
}

#[test]
fn smp_list_of_lists_is_422() {
    let schema = patch_strategy_for("v1", "Node");
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}, "spec": {"podCIDRs": ["10.0.0.0/24"]}});
    let patch = json!({"spec": {"podCIDRs": [["10.0.1.0/24"]]}});
    let err =
        apply_strategic_merge_patch(&node, patch.to_string().as_bytes(), &schema).unwrap_err();
    assert_eq!((err.http_code(), err.reason()), (422, "Invalid"));
}

#[test]
fn smp_unknown_directive_is_400() {
    let schema = patch_strategy_for("apps/v1", "Deployment");
    let patch = json!({"metadata": {"labels": {"$patch": "explode"}}});
    assert_eq!(
        apply_strategic_merge_patch(&deployment(), patch.to_string().as_bytes(), &schema)
            .unwrap_err()
            .http_code(),
        400
    );
}

#[test]
fn smp_merges_pod_volumes_and_service_ports() {
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "app", "image": "app:1", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                 "volumes": [{"name": "data", "emptyDir": {}}]}
    });
    let schema = patch_strategy_for("v1", "Pod");
    let patch = json!({"spec": {
        "volumes": [{"name": "config", "configMap": {"name": "app"}}],
        "containers": [{"name": "app", "volumeMounts": [{"name": "config", "mountPath": "/etc/app"}]}]
    }});
    let out = apply_strategic_merge_patch(&pod, patch.to_string().as_bytes(), &schema).unwrap();
    assert_eq!(names(&out["spec"]["volumes"]), ["config", "data"]);
    assert_eq!(
        out["spec"]["containers"][0]["volumeMounts"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );

    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
        "spec": {"ports": [{"port": 80, "targetPort": 8080}], "selector": {"app": "a", "tier": "x"}}});
    let schema = patch_strategy_for("v1", "Service");
    let patch = json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}]}});
    let out = apply_strategic_merge_patch(&svc, patch.to_string().as_bytes(), &schema).unwrap();
    assert_eq!(
        out["spec"]["ports"],
        json!([{"port": 80, "targetPort": 9090}])
    );
}

#[test]
fn smp_on_custom_resource_is_415() {
    let cr = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}});
    for schema in [
        patch_strategy_for("example.com/v1", "Widget"),
        PatchSchema::from_openapi_v3(&json!({})),
    ] {
        let err = apply_strategic_merge_patch(&cr, br#"{"spec":{}}"#, &schema).unwrap_err();
        assert_eq!(
            (err.http_code(), err.reason()),
            (415, "UnsupportedMediaType")
        );
        assert_eq!(
            err.to_string(),
            "strategic merge patch format is not supported"
        );
    }
}

#[test]
fn smp_owner_references_merge_by_uid() {
    let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "r",
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "u1", "controller": true}]}});
    let schema = patch_strategy_for("apps/v1", "ReplicaSet");
    let patch = json!({"metadata": {"ownerReferences": [{"uid": "u1", "controller": false, "apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}]}});
    let out = apply_strategic_merge_patch(&rs, patch.to_string().as_bytes(), &schema).unwrap();
    assert_eq!(
        out["metadata"]["ownerReferences"].as_array().map(Vec::len),
        Some(1)
    );
    assert_eq!(out["metadata"]["ownerReferences"][0]["controller"], false);
}
