//! Discovery: `/api`, `/apis`, per group and group/version resource lists,
//! aggregated discovery (`apidiscovery.k8s.io/v2`) and `/version`.

use http::{HeaderValue, Response, header};
use rk_core::catalogue::{Catalogue, ResourceInfo, Scope};
use serde_json::{Value, json};

use super::response::{self, Body};

/// The media type of aggregated discovery.
pub const AGGREGATED_V2: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// True if the client accepts aggregated discovery.
pub fn wants_aggregated(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| {
        a.split(',').any(|p| {
            let p = p.replace(' ', "");
            p.contains("g=apidiscovery.k8s.io")
                && p.contains("v=v2")
                && !p.contains("v=v2beta1")
                && p.contains("as=APIGroupDiscoveryList")
        })
    })
}

/// `/version`.
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "37",
        "emulationMajor": "1",
        "emulationMinor": "37",
        "minCompatibilityMajor": "1",
        "minCompatibilityMinor": "36",
        "gitVersion": concat!("v1.37.0-rk.", env!("CARGO_PKG_VERSION")),
        "gitCommit": "rk",
        "gitTreeState": "clean",
        "buildDate": "2026-11-22T00:00:00Z",
        "goVersion": "rust",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, arch()),
    })
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// `/api`.
pub fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn group_json(group: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    let preferred = vs.first().cloned().unwrap_or(Value::Null);
    json!({"name": group, "versions": vs, "preferredVersion": preferred})
}

/// `/apis`.
pub fn group_list(cat: &Catalogue) -> Value {
    let groups: Vec<Value> = cat
        .groups()
        .into_iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, v)| group_json(&g, &v))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/{group}`.
pub fn group(cat: &Catalogue, group: &str) -> Option<Value> {
    let (g, v) = cat.groups().into_iter().find(|(g, _)| g == group)?;
    let mut out = group_json(&g, &v);
    out["kind"] = json!("APIGroup");
    out["apiVersion"] = json!("v1");
    Some(out)
}

/// (kind group, kind version, kind, verbs) of a subresource.
fn subresource_kind(info: &ResourceInfo, sub: &str) -> (String, String, String, Vec<&'static str>) {
    let own = (info.group.clone(), info.version.clone(), info.kind.clone());
    match sub {
        "status" | "ephemeralcontainers" | "approval" | "resize" => {
            (own.0, own.1, own.2, vec!["get", "patch", "update"])
        }
        "scale" => (
            "autoscaling".into(),
            "v1".into(),
            "Scale".into(),
            vec!["get", "patch", "update"],
        ),
        "binding" => (String::new(), "v1".into(), "Binding".into(), vec!["create"]),
        "eviction" => (
            "policy".into(),
            "v1".into(),
            "Eviction".into(),
            vec!["create"],
        ),
        "log" => (String::new(), "v1".into(), "Pod".into(), vec!["get"]),
        "exec" => (
            String::new(),
            "v1".into(),
            "PodExecOptions".into(),
            vec!["create", "get"],
        ),
        "attach" => (
            String::new(),
            "v1".into(),
            "PodAttachOptions".into(),
            vec!["create", "get"],
        ),
        "portforward" => (
            String::new(),
            "v1".into(),
            "PodPortForwardOptions".into(),
            vec!["create", "get"],
        ),
        "finalize" => (own.0, own.1, own.2, vec!["update"]),
        "token" => (
            "authentication.k8s.io".into(),
            "v1".into(),
            "TokenRequest".into(),
            vec!["create"],
        ),
        _ => (own.0, own.1, own.2, vec!["get"]),
    }
}

/// `/api/v1` or `/apis/{group}/{version}`.
pub fn resource_list(cat: &Catalogue, group: &str, version: &str) -> Option<Value> {
    let entries = cat.in_group_version(group, version);
    if entries.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for e in &entries {
        let mut r = json!({
            "name": e.plural,
            "singularName": e.singular,
            "namespaced": e.scope == Scope::Namespaced,
            "kind": e.kind,
            "verbs": e.verbs,
        });
        if !e.short_names.is_empty() {
            r["shortNames"] = json!(e.short_names);
        }
        if !e.categories.is_empty() {
            r["categories"] = json!(e.categories);
        }
        resources.push(r);
        for sub in &e.subresources {
            let (g, v, k, verbs) = subresource_kind(e, sub);
            let mut r = json!({
                "name": format!("{}/{sub}", e.plural),
                "singularName": "",
                "namespaced": e.scope == Scope::Namespaced,
                "kind": k,
                "verbs": verbs,
            });
            if g != e.group || v != e.version {
                r["group"] = json!(g);
                r["version"] = json!(v);
            }
            resources.push(r);
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

/// Aggregated discovery for `/api` (`core = true`) or `/apis`.
pub fn aggregated(cat: &Catalogue, core: bool) -> Value {
    let mut items = Vec::new();
    for (g, versions) in cat.groups() {
        if g.is_empty() != core {
            continue;
        }
        let mut vs = Vec::new();
        for v in &versions {
            let mut resources = Vec::new();
            for e in cat.in_group_version(&g, v) {
                let subs: Vec<Value> = e
                    .subresources
                    .iter()
                    .map(|s| {
                        let (sg, sv, sk, verbs) = subresource_kind(&e, s);
                        json!({"subresource": s, "responseKind": {"group": sg, "version": sv, "kind": sk}, "verbs": verbs})
                    })
                    .collect();
                let mut r = json!({
                    "resource": e.plural,
                    "responseKind": {"group": e.group, "version": e.version, "kind": e.kind},
                    "scope": if e.scope == Scope::Namespaced { "Namespaced" } else { "Cluster" },
                    "singularResource": e.singular,
                    "verbs": e.verbs,
                });
                if !e.short_names.is_empty() {
                    r["shortNames"] = json!(e.short_names);
                }
                if !e.categories.is_empty() {
                    r["categories"] = json!(e.categories);
                }
                if !subs.is_empty() {
                    r["subresources"] = Value::Array(subs);
                }
                resources.push(r);
            }
            vs.push(json!({"version": v, "resources": resources, "freshness": "Current"}));
        }
        let metadata = if g.is_empty() {
            json!({"creationTimestamp": null})
        } else {
            json!({"name": g, "creationTimestamp": null})
        };
        items.push(json!({"metadata": metadata, "versions": vs}));
    }
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items})
}

/// The aggregated discovery response with its media type.
pub fn aggregated_response(cat: &Catalogue, core: bool) -> Response<Body> {
    let mut resp = response::json(200, &aggregated(cat, core));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(AGGREGATED_V2),
    );
    resp.headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Accept"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_resource_list_has_subresources_with_their_kinds() {
        let cat = Catalogue::builtin();
        let list = resource_list(&cat, "", "v1").unwrap();
        let rs = list["resources"].as_array().unwrap();
        let eviction = rs.iter().find(|r| r["name"] == "pods/eviction").unwrap();
        assert_eq!(eviction["kind"], "Eviction");
        assert_eq!(eviction["group"], "policy");
        let pods = rs.iter().find(|r| r["name"] == "pods").unwrap();
        assert_eq!(pods["shortNames"][0], "po");
    }

    #[test]
    fn aggregated_discovery_separates_core_from_groups() {
        let cat = Catalogue::builtin();
        let core = aggregated(&cat, true);
        assert_eq!(core["items"].as_array().unwrap().len(), 1);
        let groups = aggregated(&cat, false);
        let apps = groups["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["metadata"]["name"] == "apps")
            .unwrap();
        let deploy = apps["versions"][0]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "deployments")
            .unwrap();
        assert_eq!(deploy["scope"], "Namespaced");
        assert!(
            deploy["subresources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["subresource"] == "scale")
        );
    }

    #[test]
    fn kubectl_accept_header_is_aggregated() {
        assert!(wants_aggregated(Some(
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"
        )));
        assert!(!wants_aggregated(Some("application/json")));
    }
}
