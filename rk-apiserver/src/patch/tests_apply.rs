//! Server-side apply and managedFields bookkeeping.

use serde_json::{Value, json};

use super::{
    PatchError, PatchSchema, patch_strategy_for, record_update_manager,
    record_update_manager_with_schema, server_side_apply,
};

const T1: &str = "2025-01-01T10:00:00Z";
const T2: &str = "2025-01-01T11:00:00Z";

fn schema() -> PatchSchema {
    patch_strategy_for("apps/v1", "Deployment")
}

fn config(replicas: i64, labels: Value, containers: Value) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": containers}
            }
        }
    })
}

fn web() -> Value {
    json!({"name": "web", "image": "nginx:1.25", "ports": [{"containerPort": 80}]})
}

fn apply(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
) -> Result<Value, PatchError> {
    server_side_apply(live, applied, manager, force, &schema(), T1)
}

fn applied_ok(live: Option<&Value>, applied: &Value, manager: &str) -> Value {
    match apply(live, applied, manager, false) {
        Ok(v) => v,
        Err(e) => panic!("apply failed: {e}"),
    }
}

fn entry<'v>(obj: &'v Value, manager: &str) -> Option<&'v Value> {
    obj["metadata"]["managedFields"]
        .as_array()?
        .iter()
        .find(|e| e["manager"] == manager)
}

fn fields<'v>(obj: &'v Value, manager: &str) -> &'v Value {
    entry(obj, manager).map_or(&Value::Null, |e| &e["fieldsV1"])
}

/// An object created by a client-side `kubectl apply` (an update).
fn created_by(manager: &str, obj: Value) -> Value {
    let mut obj = obj;
    record_update_manager(None, &mut obj, manager, T1);
    obj
}

#[test]
fn apply_creates_object_with_upstream_fields_v1() {
    let out = applied_ok(
        None,
        &config(2, json!({"app": "web"}), json!([web()])),
        "kubectl",
    );
    let entries = out["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(entries.len(), 1);
    let e = &entries[0];
    assert_eq!(
        (
            &e["manager"],
            &e["operation"],
            &e["apiVersion"],
            &e["time"],
            &e["fieldsType"]
        ),
        (
            &json!("kubectl"),
            &json!("Apply"),
            &json!("apps/v1"),
            &json!(T1),
            &json!("FieldsV1")
        )
    );
    assert_eq!(
        e["fieldsV1"],
        json!({
            "f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {
                "f:replicas": {},
                "f:selector": {},
                "f:template": {
                    "f:metadata": {"f:labels": {"f:app": {}}},
                    "f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {
                        ".": {},
                        "f:image": {},
                        "f:name": {},
                        "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}}
                    }}}
                }
            }
        })
    );
    assert_eq!(out["spec"]["replicas"], 2);
}

#[test]
fn apply_conflict_names_other_manager() {
    let live = created_by(
        "kubectl-client-side-apply",
        config(2, json!({"app": "web"}), json!([web()])),
    );
    let err = apply(
        Some(&live),
        &config(5, json!({"app": "web"}), json!([web()])),
        "kubectl",
        false,
    )
    .unwrap_err();
    assert_eq!((err.http_code(), err.reason()), (409, "Conflict"));
    assert_eq!(
        err.to_string(),
        r#"Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using apps/v1: .spec.replicas"#
    );
    let PatchError::Conflict { conflicts, .. } = err else {
        panic!("not a conflict")
    };
    assert_eq!(conflicts[0].manager, "kubectl-client-side-apply");
    assert_eq!(
        conflicts[0].message,
        r#"conflict with "kubectl-client-side-apply" using apps/v1"#
    );
    assert_eq!(conflicts[0].field, ".spec.replicas");
}

#[test]
fn apply_with_same_values_shares_ownership() {
    let live = created_by(
        "kubectl-client-side-apply",
        config(2, json!({"app": "web"}), json!([web()])),
    );
    let out = applied_ok(
        Some(&live),
        &config(2, json!({"app": "web"}), json!([web()])),
        "kubectl",
    );
    assert_eq!(fields(&out, "kubectl")["f:spec"]["f:replicas"], json!({}));
    assert_eq!(
        fields(&out, "kubectl-client-side-apply")["f:spec"]["f:replicas"],
        json!({})
    );
}

#[test]
fn force_apply_takes_ownership() {
    let live = created_by(
        "kubectl-client-side-apply",
        config(2, json!({"app": "web"}), json!([web()])),
    );
    let out = match apply(
        Some(&live),
        &config(5, json!({"app": "web"}), json!([web()])),
        "kubectl",
        true,
    ) {
        Ok(v) => v,
        Err(e) => panic!("force apply failed: {e}"),
    };
    assert_eq!(out["spec"]["replicas"], 5);
    assert_eq!(fields(&out, "kubectl")["f:spec"]["f:replicas"], json!({}));
    assert!(
        fields(&out, "kubectl-client-side-apply")["f:spec"]
            .get("f:replicas")
            .is_none()
    );
    assert!(
        fields(&out, "kubectl-client-side-apply")["f:spec"]
            .get("f:selector")
            .is_some()
    );
}

#[test]
fn apply_multiple_conflicts_are_listed_per_manager() {
    let live = created_by(
        "kubectl-client-side-apply",
        config(2, json!({"app": "web"}), json!([web()])),
    );
    let changed = json!([{"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}]);
    let err = apply(
        Some(&live),
        &config(5, json!({"app": "web"}), changed),
        "kubectl",
        false,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Apply failed with 2 conflicts: conflicts with \"kubectl-client-side-apply\" using apps/v1:\n\
         - .spec.replicas\n\
         - .spec.template.spec.containers[name=\"web\"].image"
    );
}

#[test]
fn apply_removes_fields_no_longer_applied() {
    let sidecar = json!({"name": "sidecar", "image": "envoy:1.29"});
    let first = applied_ok(
        None,
        &config(
            2,
            json!({"app": "web", "tier": "front"}),
            json!([web(), sidecar]),
        ),
        "kubectl",
    );
    let out = applied_ok(
        Some(&first),
        &config(2, json!({"app": "web"}), json!([web()])),
        "kubectl",
    );
    assert_eq!(out["metadata"]["labels"], json!({"app": "web"}));
    let containers = &out["spec"]["template"]["spec"]["containers"];
    assert_eq!(containers.as_array().map(Vec::len), Some(1));
    assert_eq!(containers[0]["name"], "web");
    assert!(
        fields(&out, "kubectl")["f:metadata"]["f:labels"]
            .get("f:tier")
            .is_none()
    );
}

#[test]
fn apply_keeps_dropped_fields_another_manager_owns() {
    let first = applied_ok(
        None,
        &config(2, json!({"app": "web", "tier": "front"}), json!([web()])),
        "kubectl",
    );
    let shared = applied_ok(
        Some(&first),
        &json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"tier": "front"}}
        }),
        "ops-bot",
    );
    let out = applied_ok(
        Some(&shared),
        &config(2, json!({"app": "web"}), json!([web()])),
        "kubectl",
    );
    assert_eq!(
        out["metadata"]["labels"],
        json!({"app": "web", "tier": "front"})
    );
    assert!(
        fields(&out, "ops-bot")["f:metadata"]["f:labels"]
            .get("f:tier")
            .is_some()
    );
}

#[test]
fn apply_keeps_fields_it_never_owned() {
    let mut live = applied_ok(
        None,
        &config(2, json!({"app": "web"}), json!([web()])),
        "kubectl",
    );
    // A defaulted field nobody owns.
    live["spec"]["progressDeadlineSeconds"] = json!(600);
    let out = applied_ok(
        Some(&live),
        &config(3, json!({"app": "web"}), json!([web()])),
        "kubectl",
    );
    assert_eq!(out["spec"]["progressDeadlineSeconds"], 600);
    assert_eq!(out["spec"]["replicas"], 3);
}

#[test]
fn apply_merges_keyed_lists_with_other_managers_elements() {
    let live = applied_ok(
        None,
        &config(2, json!({"app": "web"}), json!([web()])),
        "kubectl",
    );
    let injected = applied_ok(
        Some(&live),
        &json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"template": {"spec": {"containers": [{"name": "istio-proxy", "image": "proxy:1"}]}}}
        }),
        "injector",
    );
    let out = applied_ok(
        Some(&injected),
        &config(2, json!({"app": "web"}), json!([web()])),
        "kubectl",
    );
    let names: Vec<&str> = out["spec"]["template"]["spec"]["containers"]
        .as_array()
        .map(|c| c.iter().filter_map(|c| c["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["web", "istio-proxy"]);
}

#[test]
fn update_manager_takes_changed_fields_and_then_conflicts() {
    let live = applied_ok(
        None,
        &config(2, json!({"app": "web"}), json!([web()])),
        "kubectl",
    );
    let mut scaled = live.clone();
    scaled["spec"]["replicas"] = json!(7);
    record_update_manager(Some(&live), &mut scaled, "kube-controller-manager", T2);
    let hpa = entry(&scaled, "kube-controller-manager")
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        (&hpa["operation"], &hpa["time"]),
        (&json!("Update"), &json!(T2))
    );
    assert_eq!(hpa["fieldsV1"], json!({"f:spec": {"f:replicas": {}}}));
    assert!(
        fields(&scaled, "kubectl")["f:spec"]
            .get("f:replicas")
            .is_none()
    );

    let err = apply(
        Some(&scaled),
        &config(2, json!({"app": "web"}), json!([web()])),
        "kubectl",
        false,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"Apply failed with 1 conflict: conflict with "kube-controller-manager" using apps/v1: .spec.replicas"#
    );
}

#[test]
fn record_update_on_create_owns_everything_but_metadata_identity() {
    let obj = created_by(
        "kubectl-create",
        config(1, json!({"app": "web"}), json!([web()])),
    );
    let e = entry(&obj, "kubectl-create").cloned().unwrap_or_default();
    assert_eq!(e["operation"], "Update");
    let f = &e["fieldsV1"];
    assert_eq!(f["f:metadata"], json!({"f:labels": {".": {}, "f:app": {}}}));
    assert!(
        f["f:spec"].get(".").is_none(),
        "value structs are not owned themselves: {f}"
    );
    let web = &f["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"web\"}"];
    assert_eq!(web["."], json!({}));
    assert_eq!(web["f:image"], json!({}));
    assert!(f.get("f:apiVersion").is_none() && f.get("f:kind").is_none());
}

#[test]
fn record_update_keeps_time_when_nothing_changed() {
    let obj = created_by(
        "kubectl-create",
        config(1, json!({"app": "web"}), json!([web()])),
    );
    let mut same = obj.clone();
    same["metadata"]["resourceVersion"] = json!("42");
    record_update_manager(Some(&obj), &mut same, "kubectl-create", T2);
    assert_eq!(
        entry(&same, "kubectl-create").map(|e| &e["time"]),
        Some(&json!(T1))
    );
}

#[test]
fn record_update_removes_deleted_fields_from_every_manager() {
    let obj = applied_ok(
        None,
        &config(1, json!({"app": "web", "tier": "front"}), json!([web()])),
        "kubectl",
    );
    let mut edited = obj.clone();
    if let Some(labels) = edited["metadata"]["labels"].as_object_mut() {
        labels.remove("tier");
    }
    record_update_manager(Some(&obj), &mut edited, "kubectl-edit", T2);
    assert!(
        fields(&edited, "kubectl")["f:metadata"]["f:labels"]
            .get("f:tier")
            .is_none()
    );
    assert!(
        entry(&edited, "kubectl-edit").is_none(),
        "a pure removal owns nothing"
    );
}

#[test]
fn record_update_with_empty_managed_fields_clears_them() {
    let obj = created_by(
        "kubectl-create",
        config(1, json!({"app": "web"}), json!([web()])),
    );
    let mut cleared = obj.clone();
    cleared["metadata"]["managedFields"] = json!([]);
    cleared["spec"]["replicas"] = json!(2);
    record_update_manager(Some(&obj), &mut cleared, "kubectl-edit", T2);
    assert!(cleared["metadata"].get("managedFields").is_none());
}

#[test]
fn apply_to_object_without_managed_fields_credits_before_first_apply() {
    let mut live = config(2, json!({"app": "web"}), json!([web()]));
    live["metadata"]["uid"] = json!("1234");
    let err = apply(
        Some(&live),
        &config(4, json!({"app": "web"}), json!([web()])),
        "kubectl",
        false,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"Apply failed with 1 conflict: conflict with "before-first-apply" using apps/v1: .spec.replicas"#
    );
}

#[test]
fn apply_refuses_managed_fields_in_configuration() {
    let mut cfg = config(2, json!({"app": "web"}), json!([web()]));
    cfg["metadata"]["managedFields"] = json!([{"manager": "x"}]);
    let err = apply(None, &cfg, "kubectl", false).unwrap_err();
    assert_eq!(err.to_string(), "metadata.managedFields must be nil");
    assert_eq!(err.http_code(), 400);
}

#[test]
fn apply_with_duplicate_keys_is_422() {
    let cfg = config(2, json!({"app": "web"}), json!([web(), web()]));
    assert_eq!(
        apply(None, &cfg, "kubectl", false).unwrap_err().http_code(),
        422
    );
}

#[test]
fn apply_to_custom_resource_uses_list_map_keys() {
    let schema = PatchSchema::from_openapi_v3(&json!({
        "type": "object",
        "properties": {"spec": {"type": "object", "properties": {
            "targets": {
                "type": "array",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["host"],
                "items": {"type": "object", "properties": {"host": {"type": "string"}, "weight": {"type": "integer"}}}
            },
            "tags": {"type": "array", "items": {"type": "string"}}
        }}}
    }));
    let base = |targets: Value| json!({"apiVersion": "example.com/v1", "kind": "Route", "metadata": {"name": "r"}, "spec": {"targets": targets}});
    let a = server_side_apply(
        None,
        &base(json!([{"host": "a", "weight": 1}])),
        "team-a",
        false,
        &schema,
        T1,
    );
    let a = match a {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    };
    let b = server_side_apply(
        Some(&a),
        &base(json!([{"host": "b", "weight": 2}])),
        "team-b",
        false,
        &schema,
        T1,
    );
    let b = match b {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(
        b["spec"]["targets"],
        json!([{"host": "a", "weight": 1}, {"host": "b", "weight": 2}])
    );
    assert_eq!(
        fields(&b, "team-b"),
        &json!({"f:spec": {"f:targets": {"k:{\"host\":\"b\"}": {".": {}, "f:host": {}, "f:weight": {}}}}})
    );
    let mut edited = b.clone();
    edited["spec"]["targets"][0]["weight"] = json!(9);
    record_update_manager_with_schema(Some(&b), &mut edited, "kubectl-edit", &schema, "", T2);
    assert_eq!(
        fields(&edited, "kubectl-edit"),
        &json!({"f:spec": {"f:targets": {"k:{\"host\":\"a\"}": {"f:weight": {}}}}})
    );
}

#[test]
fn apply_requires_a_field_manager() {
    let err = apply(
        None,
        &config(2, json!({"app": "web"}), json!([web()])),
        "",
        false,
    )
    .unwrap_err();
    assert_eq!(err.http_code(), 400);
}

#[test]
fn record_update_without_manager_leaves_apply_entries_alone() {
    let applied = applied_ok(
        None,
        &config(2, json!({"app": "web"}), json!([web()])),
        "kubectl",
    );
    let mut stored = applied.clone();
    record_update_manager(None, &mut stored, "", T2);
    assert_eq!(stored, applied);
}

#[test]
fn noop_apply_keeps_entry_time() {
    let cfg = config(2, json!({"app": "web"}), json!([web()]));
    let first = applied_ok(None, &cfg, "kubectl");
    let again = match server_side_apply(Some(&first), &cfg, "kubectl", false, &schema(), T2) {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(again, first);
}

/// A mutating admission policy's apply configuration: merged by the kind's
/// rules, keeping the live kind, and refused where it sets an atomic value.
#[test]
fn apply_configurations_of_policies_merge_and_may_not_set_atomic_values() {
    let live = config(1, json!({"a": "1"}), json!([web()]));
    let sidecar = json!({"name": "sidecar", "image": "proxy"});
    let applied = json!({
        "kind": "Other",
        "metadata": {"labels": {"b": "2"}},
        "spec": {"template": {"spec": {"containers": [sidecar]}}}
    });
    let merged = super::merge_apply_configuration(&live, &applied, &schema()).unwrap();
    assert_eq!(merged["kind"], "Deployment");
    assert_eq!(merged["metadata"]["labels"], json!({"a": "1", "b": "2"}));
    assert_eq!(
        merged["spec"]["template"]["spec"]["containers"],
        json!([web(), sidecar])
    );
    let atomic = json!({"spec": {"selector": {"matchLabels": {"x": "y"}},
        "template": {"spec": {"containers": [{"name": "web", "args": ["-v"]}]}}}});
    assert_eq!(
        super::merge_apply_configuration(&live, &atomic, &schema()),
        Err("invalid ApplyConfiguration: may not mutate atomic arrays, maps or structs: .spec.selector, .spec.template.spec.containers[0].args".to_string())
    );

    // A custom resource follows its schema's list and map types.
    let crd = PatchSchema::from_openapi_v3(&json!({"type": "object", "properties": {
        "spec": {"type": "object", "properties": {
            "ports": {"type": "array", "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
                "items": {"type": "object", "properties": {"name": {"type": "string"}, "port": {"type": "integer"}}}},
            "tags": {"type": "array", "items": {"type": "string"}}
        }}
    }}));
    let live = json!({"apiVersion": "example.com/v1", "kind": "Widget",
        "spec": {"ports": [{"name": "http", "port": 80}], "tags": ["a"]}});
    let merged = super::merge_apply_configuration(
        &live,
        &json!({"spec": {"ports": [{"name": "http", "port": 8080}, {"name": "grpc", "port": 9090}]}}),
        &crd,
    )
    .unwrap();
    assert_eq!(
        merged["spec"]["ports"],
        json!([{"name": "http", "port": 8080}, {"name": "grpc", "port": 9090}])
    );
    assert!(
        super::merge_apply_configuration(&live, &json!({"spec": {"tags": ["b"]}}), &crd)
            .is_err_and(|e| e.ends_with(".spec.tags"))
    );
}
