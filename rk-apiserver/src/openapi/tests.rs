use super::*;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

fn widget_crd() -> CustomResourceDefinition {
    serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "description": "A widget.",
                    "properties": {
                        "metadata": {"type": "object"},
                        "spec": {"type": "object", "description": "Desired widget.",
                            "properties": {"size": {"type": "integer", "nullable": true}}},
                    },
                }},
            }],
        },
    }))
    .unwrap()
}

fn gvk_of(schema: &Value) -> &Value {
    &schema["x-kubernetes-group-version-kind"]
}

#[test]
fn v3_index_lists_every_served_group_version() {
    let catalogue = Catalogue::builtin();
    let crds = [widget_crd()];
    let index = v3_index(&catalogue, &crds);
    let paths = index["paths"].as_object().unwrap();
    for (g, v) in group_versions(&catalogue, &crds) {
        let key = if g.is_empty() {
            format!("api/{v}")
        } else {
            format!("apis/{g}/{v}")
        };
        let url = paths[&key]["serverRelativeURL"].as_str().unwrap();
        let (path, hash) = url.split_once("?hash=").unwrap();
        assert_eq!(path, format!("/openapi/v3/{key}"));
        assert_eq!(hash.len(), 128);
        assert!(
            hash.chars()
                .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
        );
    }
    assert!(paths.contains_key("apis/example.com/v1"));
    assert!(paths.contains_key("apis/apps"));
    assert!(paths.contains_key("api"));
}

#[test]
fn v3_hash_is_sha512_of_the_served_bytes() {
    let cache = OpenApiCache::new(&Catalogue::builtin(), &[]);
    let bytes = cache.v3("/openapi/v3/apis/apps/v1?hash=whatever").unwrap();
    assert_eq!(cache.v3_hash("apis/apps/v1").unwrap(), sha512_hex(&bytes));
    // Every document is built again on first request: the build must give
    // the bytes hashed for the index.
    let index: Value = serde_json::from_slice(&cache.v3_index()).unwrap();
    let keys: Vec<String> = index["paths"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert!(keys.len() > 20, "{keys:?}");
    for key in keys {
        let bytes = cache.v3(&key).unwrap();
        assert_eq!(cache.v3_hash(&key).unwrap(), sha512_hex(&bytes), "{key}");
    }
}

#[test]
fn deployment_schema_has_gvk_extension_and_descriptions() {
    let doc = v3_group_version(&Catalogue::builtin(), &[], "apps", "v1").unwrap();
    assert_eq!(doc["openapi"], "3.0.0");
    let schemas = &doc["components"]["schemas"];
    let deploy = &schemas["io.k8s.api.apps.v1.Deployment"];
    assert_eq!(
        gvk_of(deploy),
        &json!([{"group": "apps", "kind": "Deployment", "version": "v1"}])
    );
    assert!(
        deploy["description"]
            .as_str()
            .unwrap()
            .contains("declarative updates")
    );
    assert!(
        deploy.get("required").is_none(),
        "spec and metadata are optional upstream"
    );
    let spec = &deploy["properties"]["spec"];
    assert_eq!(
        spec["allOf"][0]["$ref"],
        "#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec"
    );
    assert!(spec["description"].is_string());
    // Every reference resolves inside the document.
    let mut refs = Vec::new();
    collect(&doc, &mut refs);
    for r in refs {
        let name = r.strip_prefix(V3_REF_PREFIX).unwrap();
        assert!(schemas.get(name).is_some(), "dangling {r}");
    }
    for name in [
        "io.k8s.api.apps.v1.DeploymentList",
        OBJECT_META,
        STATUS,
        DELETE_OPTIONS,
        WATCH_EVENT,
        SCALE,
    ] {
        assert!(schemas.get(name).is_some(), "missing {name}");
    }
    assert_eq!(
        gvk_of(&schemas["io.k8s.api.apps.v1.DeploymentList"])[0]["kind"],
        "DeploymentList"
    );
    assert_eq!(gvk_of(&schemas[STATUS])[0]["kind"], "Status");
    let containers = &schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
    assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
}

fn collect(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                if let (true, Some(r)) = (k == "$ref", c.as_str()) {
                    out.push(r.to_owned());
                } else {
                    collect(c, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|c| collect(c, out)),
        _ => {}
    }
}

#[test]
fn patch_operations_carry_gvk_and_field_validation() {
    let doc = v3_group_version(&Catalogue::builtin(), &[], "apps", "v1").unwrap();
    let item = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"];
    let patch = &item["patch"];
    assert_eq!(patch["x-kubernetes-action"], "patch");
    assert_eq!(
        patch["x-kubernetes-group-version-kind"],
        json!({"group": "apps", "kind": "Deployment", "version": "v1"})
    );
    assert_eq!(patch["operationId"], "patchAppsV1NamespacedDeployment");
    let params = patch["parameters"].as_array().unwrap();
    assert!(
        params
            .iter()
            .any(|p| p["name"] == "fieldValidation" && p["in"] == "query")
    );
    for verb in ["get", "put", "delete"] {
        assert!(item[verb].is_object(), "{verb}");
    }
    let coll = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments"];
    assert_eq!(coll["get"]["x-kubernetes-action"], "list");
    assert_eq!(coll["post"]["x-kubernetes-action"], "post");
    assert_eq!(coll["delete"]["x-kubernetes-action"], "deletecollection");
    let scale = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"];
    assert_eq!(
        scale["get"]["x-kubernetes-group-version-kind"]["kind"],
        "Scale"
    );
    let core = v3_group_version(&Catalogue::builtin(), &[], "", "v1").unwrap();
    assert!(core["paths"]["/api/v1/nodes/{name}"]["patch"].is_object());
}

#[test]
fn crd_group_version_publishes_schema_with_object_meta_ref() {
    let crds = [widget_crd()];
    let doc = v3_group_version(&Catalogue::builtin(), &crds, "example.com", "v1").unwrap();
    let widget = &doc["components"]["schemas"]["com.example.v1.Widget"];
    assert_eq!(
        gvk_of(widget),
        &json!([{"group": "example.com", "kind": "Widget", "version": "v1"}])
    );
    assert_eq!(
        widget["properties"]["metadata"]["allOf"][0]["$ref"],
        format!("{V3_REF_PREFIX}{OBJECT_META}")
    );
    assert_eq!(widget["properties"]["apiVersion"]["type"], "string");
    assert_eq!(
        widget["properties"]["spec"]["description"],
        "Desired widget."
    );
    assert!(doc["components"]["schemas"][OBJECT_META].is_object());
    let patch =
        &doc["paths"]["/apis/example.com/v1/namespaces/{namespace}/widgets/{name}"]["patch"];
    let types = patch["requestBody"]["content"].as_object().unwrap();
    assert!(!types.contains_key("application/strategic-merge-patch+json"));
    assert!(
        doc["paths"]["/apis/example.com/v1/namespaces/{namespace}/widgets/{name}/status"]
            .is_object()
    );
    assert!(v3_group_version(&Catalogue::builtin(), &crds, "example.com", "v2").is_none());
}

#[test]
fn v2_document_uses_definitions_refs() {
    let crds = [widget_crd()];
    let doc = v2_document(&Catalogue::builtin(), &crds);
    assert_eq!(doc["swagger"], "2.0");
    let defs = doc["definitions"].as_object().unwrap();
    let deploy = &defs["io.k8s.api.apps.v1.Deployment"];
    assert_eq!(
        deploy["properties"]["spec"]["$ref"],
        "#/definitions/io.k8s.api.apps.v1.DeploymentSpec"
    );
    assert_eq!(gvk_of(deploy)[0]["kind"], "Deployment");
    let widget = &defs["com.example.v1.Widget"];
    assert_eq!(
        widget["properties"]["metadata"]["$ref"],
        format!("#/definitions/{OBJECT_META}")
    );
    assert!(
        widget["properties"]["spec"]["properties"]["size"]
            .get("nullable")
            .is_none()
    );
    let mut refs = Vec::new();
    collect(&doc, &mut refs);
    for r in refs {
        let name = r
            .strip_prefix(V2_REF_PREFIX)
            .unwrap_or_else(|| panic!("v3 ref {r}"));
        assert!(defs.contains_key(name), "dangling {r}");
    }
    let op = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
    assert_eq!(op["x-kubernetes-group-version-kind"]["kind"], "Deployment");
}

#[test]
fn cache_rebuild_reuses_unchanged_documents() {
    let catalogue = Catalogue::builtin();
    let cache = OpenApiCache::new(&catalogue, &[]);
    assert!(cache.is_current(&catalogue, &[]));
    let crds = [widget_crd()];
    assert!(!cache.is_current(&catalogue, &crds));
    let next = cache.rebuild(&catalogue, &crds);
    assert!(next.v3("apis/example.com/v1").is_some());
    assert!(cache.v3("apis/example.com/v1").is_none());
    let before = cache.v3("apis/apps/v1").unwrap();
    let after = next.v3("apis/apps/v1").unwrap();
    assert_eq!(
        before.as_ptr(),
        after.as_ptr(),
        "apps/v1 bytes are shared, not rebuilt"
    );
    let v2: Value = serde_json::from_slice(&next.v2()).unwrap();
    assert!(v2["definitions"]["com.example.v1.Widget"].is_object());
}

#[test]
fn schema_for_resolves_built_in_kinds() {
    let pod = schema_for("v1", "Pod").unwrap();
    assert_eq!(pod.name(), "io.k8s.api.core.v1.Pod");
    let spec = pod.resolve(&pod.root()["properties"]["spec"]);
    assert!(spec["properties"]["containers"].is_object());
    assert!(schema_for("example.com/v1", "Widget").is_none());
}
