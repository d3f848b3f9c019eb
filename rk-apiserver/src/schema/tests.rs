use super::*;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::json;

fn widget_schema() -> CrdSchema {
    CrdSchema::from_value(&json!({
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "required": ["image"],
                "properties": {
                    "image": {"type": "string", "minLength": 2, "maxLength": 10, "pattern": "^[a-z]+$"},
                    "replicas": {"type": "integer", "minimum": 1, "maximum": 5, "format": "int32"},
                    "mode": {"type": "string", "enum": ["fast", "slow"]},
                    "port": {"x-kubernetes-int-or-string": true},
                    "when": {"type": "string", "format": "date-time"},
                    "note": {"type": "string", "nullable": true},
                    "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2, "x-kubernetes-list-type": "set"},
                    "ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                        "items": {"type": "object", "properties": {"name": {"type": "string"}, "port": {"type": "integer"}}}},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                    "choice": {"type": "string", "oneOf": [{"pattern": "^a"}, {"pattern": "b$"}]},
                },
            },
        },
    }))
    .unwrap()
}

fn obj(spec: Value) -> Value {
    json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": spec})
}

fn messages(causes: &[Cause]) -> Vec<String> {
    causes.iter().map(ToString::to_string).collect()
}

#[test]
fn crd_schema_rejects_wrong_type_with_upstream_message() {
    let causes = widget_schema().validate(&obj(json!({"image": "nginx", "replicas": "three"})));
    assert_eq!(
        messages(&causes),
        vec![
            r#"spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string""#
        ]
    );
    assert_eq!(causes[0].reason, "FieldValueTypeInvalid");
    assert_eq!(causes[0].field, "spec.replicas");
}

#[test]
fn crd_schema_reports_required_enum_bounds_and_patterns() {
    let causes = widget_schema().validate(&obj(json!({
        "replicas": 9, "mode": "medium", "port": true, "when": "yesterday",
        "tags": ["a", "a", "b"], "ports": [{"name": "x"}, {"name": "x"}], "choice": "ab",
    })));
    let got = messages(&causes);
    let want = [
        "spec.image: Required value",
        r#"spec.choice: Invalid value: "": "spec.choice" must validate one and only one schema (oneOf). Found 2 valid alternatives"#,
        r#"spec.mode: Unsupported value: "medium": supported values: "fast", "slow""#,
        r#"spec.port: Invalid value: "boolean": spec.port in body must be of type integer,string: "boolean""#,
        r#"spec.ports[1]: Duplicate value: {"name":"x"}"#,
        "spec.replicas: Invalid value: 9: spec.replicas in body should be less than or equal to 5",
        "spec.tags: Too many: 3: has too many items",
        r#"spec.tags[1]: Duplicate value: "a""#,
        r#"spec.when: Invalid value: "yesterday": spec.when in body must be of type date-time: "yesterday""#,
    ];
    assert_eq!(got, want);
    let reasons: Vec<&str> = causes.iter().map(|c| c.reason.as_str()).collect();
    assert!(reasons.contains(&"FieldValueRequired"));
    assert!(reasons.contains(&"FieldValueNotSupported"));
    assert!(reasons.contains(&"FieldValueDuplicate"));
}

#[test]
fn crd_schema_checks_strings_and_nullable() {
    let causes = widget_schema().validate(&obj(
        json!({"image": "Nginx-is-too-long", "note": null, "replicas": null}),
    ));
    assert_eq!(
        messages(&causes),
        vec![
            "spec.image: Too long: value is too long",
            r#"spec.image: Invalid value: "Nginx-is-too-long": spec.image in body should match '^[a-z]+$'"#,
            r#"spec.replicas: Invalid value: "null": spec.replicas in body must be of type integer: "null""#,
        ]
    );
    let ok = widget_schema().validate(&obj(json!({"image": "ok", "port": "http", "replicas": 2.0,
        "when": "2024-01-02T03:04:05Z", "labels": {"a": "b"}, "extra": {"anything": [1]}})));
    assert!(ok.is_empty(), "{ok:?}");
}

#[test]
fn prune_drops_unknown_fields_but_keeps_preserved() {
    let mut o = json!({
        "apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w", "labels": {"a": "b"}, "bogus": 1,
            "ownerReferences": [{"apiVersion": "v1", "kind": "K", "name": "o", "uid": "u", "junk": 2}]},
        "spec": {"image": "x", "colour": "red", "extra": {"kept": {"deep": true}},
            "ports": [{"name": "a", "junk": 1}], "labels": {"free": "form"}},
        "status": {"ready": true},
    });
    let pruned = widget_schema().prune(&mut o);
    assert_eq!(
        pruned,
        vec![
            "metadata.bogus",
            "metadata.ownerReferences[0].junk",
            "spec.colour",
            "spec.ports[0].junk",
            "status"
        ]
    );
    assert_eq!(o["apiVersion"], "example.com/v1");
    assert_eq!(o["kind"], "Widget");
    assert_eq!(
        o["metadata"],
        json!({"name": "w", "labels": {"a": "b"},
            "ownerReferences": [{"apiVersion": "v1", "kind": "K", "name": "o", "uid": "u"}]})
    );
    assert_eq!(o["spec"]["extra"], json!({"kept": {"deep": true}}));
    assert_eq!(o["spec"]["labels"], json!({"free": "form"}));
    assert!(o.get("status").is_none());
}

#[test]
fn unknown_field_reported_with_path() {
    let deploy = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}, "annotationz": {}},
        "spec": {
            "replicas": 2, "foo": true,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
                {"name": "c", "image": "nginx", "imagePullPolice": "Always",
                 "resources": {"limits": {"cpu": "1", "memory": "1Gi"}},
                 "ports": [{"containerPort": 80, "bogus": 1}]}]}},
        },
        "status": {"conditions": [{"type": "Available", "status": "True", "lastUpdateTime": "2024-01-01T00:00:00Z"}]},
    });
    assert_eq!(
        unknown_fields("apps/v1", "Deployment", &deploy),
        vec![
            "metadata.annotationz",
            "spec.foo",
            "spec.template.spec.containers[0].imagePullPolice",
            "spec.template.spec.containers[0].ports[0].bogus",
        ]
    );
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "v"}});
    assert!(unknown_fields("v1", "ConfigMap", &cm).is_empty());
    let crd_obj =
        json!({"apiVersion": "example.com/v1", "kind": "Widget", "spec": {"anything": 1}});
    assert!(unknown_fields("example.com/v1", "Widget", &crd_obj).is_empty());
}

#[test]
fn deeply_nested_input_is_a_cause_not_a_crash() {
    let mut v = json!("leaf");
    for _ in 0..1000 {
        v = json!({"a": v});
    }
    let schema = CrdSchema::from_value(
        &json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
    )
    .unwrap();
    let causes = schema.validate(&v);
    assert_eq!(causes.len(), 1);
    assert!(causes[0].message.contains("nested more than 100 levels"));
    assert!(schema.prune(&mut v).is_empty());
    assert_eq!(unknown_fields("v1", "ConfigMap", &v), vec!["a"]);
    let mut deep_schema = json!({"type": "string"});
    for _ in 0..300 {
        deep_schema = json!({"type": "object", "properties": {"a": deep_schema}});
    }
    assert!(matches!(
        CrdSchema::from_value(&deep_schema),
        Err(SchemaError::TooDeep { .. })
    ));
}

#[test]
fn invalid_pattern_is_a_schema_error() {
    let err = CrdSchema::from_value(
        &json!({"type": "object", "properties": {"x": {"type": "string", "pattern": "("}}}),
    );
    assert!(matches!(err, Err(SchemaError::Pattern { .. })));
}

fn crd(value: Value) -> CustomResourceDefinition {
    serde_json::from_value(value).unwrap()
}

fn good_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {"size": {"type": "integer"}}}}}}}]},
    })
}

#[test]
fn valid_crd_has_no_causes() {
    assert_eq!(validate_crd(&crd(good_crd())), Vec::<Cause>::new());
}

#[test]
fn crd_validation_reports_upstream_messages() {
    let mut bad = good_crd();
    bad["metadata"]["name"] = json!("widget.example.com");
    bad["spec"]["group"] = json!("example");
    bad["spec"]["scope"] = json!("Global");
    bad["spec"]["versions"][0]["storage"] = json!(false);
    bad["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["size"] =
        json!({"description": "no type"});
    bad["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["list"] =
        json!({"type": "array"});
    let got = messages(&validate_crd(&crd(bad)));
    let want = [
        r#"metadata.name: Invalid value: "widget.example.com": must be spec.names.plural+"."+spec.group"#,
        r#"spec.group: Invalid value: "example": should be a domain with at least one dot"#,
        r#"spec.scope: Unsupported value: "Global": supported values: "Cluster", "Namespaced""#,
        "spec.versions[0].schema.openAPIV3Schema.properties[list].items: Required value: must be specified",
        "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[size].type: Required value: must not be empty for specified object fields",
        r#"spec.versions: Invalid value: ["v1"]: must have exactly one version marked as storage version"#,
    ];
    assert_eq!(got, want);

    let mut no_schema = good_crd();
    no_schema["spec"]["versions"][0]
        .as_object_mut()
        .unwrap()
        .remove("schema");
    no_schema["spec"]["names"]["kind"] = json!("widget_thing");
    let got = messages(&validate_crd(&crd(no_schema)));
    assert!(got.contains(
        &"spec.versions[0].schema.openAPIV3Schema: Required value: schemas are required".to_owned()
    ));
    assert!(got.iter().any(|m| m.starts_with(r#"spec.names.kind: Invalid value: "widget_thing": may have mixed case, but should otherwise match: a DNS-1035 label"#)));
}

#[test]
fn validation_rules_are_checked_with_self_bound_to_their_field() {
    let schema = CrdSchema::from_value(&json!({
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "x-kubernetes-validations": [
                    {"rule": "self.minReplicas <= self.maxReplicas", "message": "minReplicas must not exceed maxReplicas"},
                    {"rule": "!has(self.mode) || self.mode != 'legacy'", "fieldPath": ".mode", "reason": "FieldValueForbidden", "message": "legacy mode is gone"},
                    {"rule": "self.name.startsWith('w-')", "messageExpression": "'name ' + self.name + ' lacks the w- prefix'"},
                    {"rule": "self.replicas == oldSelf.replicas", "message": "transition rules need the old object"},
                    {"rule": "!has(self.size) || quantity(self.size).isLessThan(quantity('1Gi'))", "message": "size must stay under 1Gi"},
                    {"rule": "!format.dns1123Label().validate(self.name).hasValue()", "message": "a function rk lacks"}
                ],
                "properties": {
                    "minReplicas": {"type": "integer"},
                    "maxReplicas": {"type": "integer"},
                    "mode": {"type": "string"},
                    "name": {"type": "string"},
                    "size": {"type": "string"},
                    "tags": {"type": "array", "items": {"type": "string",
                        "x-kubernetes-validations": [{"rule": "size(self) <= 5"}]}},
                },
            },
        },
    }))
    .unwrap();
    let good = obj(
        json!({"minReplicas": 1, "maxReplicas": 3, "name": "w-a", "size": "1Mi", "tags": ["ok"]}),
    );
    assert!(
        schema.validate(&good).is_empty(),
        "{:?}",
        schema.validate(&good)
    );

    let bad = obj(
        json!({"minReplicas": 4, "maxReplicas": 3, "mode": "legacy", "name": "x", "size": "2Gi", "tags": ["ok", "toolong"]}),
    );
    assert_eq!(
        messages(&schema.validate(&bad)),
        vec![
            "spec: Invalid value: \"object\": minReplicas must not exceed maxReplicas",
            "spec.mode: Forbidden: legacy mode is gone",
            "spec: Invalid value: \"object\": name x lacks the w- prefix",
            "spec: Invalid value: \"object\": size must stay under 1Gi",
            "spec.tags[1]: Invalid value: \"string\": failed rule: size(self) <= 5",
        ]
    );
}

#[test]
fn transition_rules_run_on_updates_where_the_old_object_has_a_value() {
    let schema = CrdSchema::from_value(&json!({
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {
                    "class": {"type": "string",
                        "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "Value is immutable"}]},
                    "listeners": {"type": "array", "x-kubernetes-list-type": "map",
                        "x-kubernetes-list-map-keys": ["name"],
                        "items": {"type": "object",
                            "x-kubernetes-validations": [{"rule": "self.port == oldSelf.port", "message": "port is fixed", "fieldPath": ".port"}],
                            "properties": {"name": {"type": "string"}, "port": {"type": "integer"}}}},
                },
            },
        },
    }))
    .unwrap();
    let old = obj(json!({"class": "gold", "listeners": [{"name": "http", "port": 80}]}));
    // A create has no old values: transition rules do not run.
    assert!(schema.validate(&old).is_empty());
    assert!(schema.validate_update(&old, Some(&old)).is_empty());
    let changed = obj(json!({"class": "silver", "listeners": [
        {"name": "https", "port": 443}, {"name": "http", "port": 8080}]}));
    assert_eq!(
        messages(&schema.validate_update(&changed, Some(&old))),
        vec![
            "spec.class: Invalid value: \"string\": Value is immutable",
            "spec.listeners[1].port: Invalid value: \"object\": port is fixed",
        ]
    );
    // A field the old object lacked may be set.
    let before = obj(json!({"listeners": []}));
    assert!(schema.validate_update(&changed, Some(&before)).is_empty());
}
