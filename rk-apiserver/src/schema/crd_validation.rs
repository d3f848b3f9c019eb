//! Validation of CustomResourceDefinitions: upstream's main rules on names,
//! group, scope, versions and structural schemas, with its messages.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use regex::Regex;
use serde_json::{Map, Value};

use super::{Cause, MAX_DEPTH};

const DNS1035_MESSAGE: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
const DNS1123_SUBDOMAIN_MESSAGE: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const SCHEMA_TYPES: &[&str] = &["array", "boolean", "integer", "number", "object", "string"];

/// Upstream's defaulting of a CRD before validation: `names.singular` from the
/// kind, `names.listKind` as `<Kind>List`, conversion strategy `None`.
pub fn apply_crd_defaults(crd: &mut CustomResourceDefinition) {
    let names = &mut crd.spec.names;
    if names.singular.as_deref().unwrap_or("").is_empty() {
        names.singular = Some(names.kind.to_lowercase());
    }
    if names.list_kind.as_deref().unwrap_or("").is_empty() && !names.kind.is_empty() {
        names.list_kind = Some(format!("{}List", names.kind));
    }
    if crd.spec.conversion.is_none() {
        crd.spec.conversion = Some(
            k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceConversion {
                strategy: "None".to_owned(),
                webhook: None,
            },
        );
    }
}

/// Validates a CRD as kube-apiserver does on create: `metadata.name` is
/// `<plural>.<group>`, the group is a DNS subdomain with a dot, the scope is
/// `Namespaced` or `Cluster`, names are DNS labels, versions are unique DNS
/// labels with exactly one storage version and at least one served, every
/// version has a structural schema. Missing `singular`/`listKind` are taken
/// as their defaults (see [`apply_crd_defaults`]).
pub fn validate_crd(crd: &CustomResourceDefinition) -> Vec<Cause> {
    let mut crd = crd.clone();
    apply_crd_defaults(&mut crd);
    let mut out = Vec::new();
    let spec = &crd.spec;
    let names = &spec.names;

    // metadata.name
    let name = crd.metadata.name.clone().unwrap_or_default();
    if name.is_empty() {
        out.push(Cause::required(
            "metadata.name",
            "name or generateName is required",
        ));
    } else {
        let value = Value::String(name.clone());
        for msg in dns1123_subdomain(&name) {
            out.push(Cause::invalid("metadata.name", &value, &msg));
        }
        if name != format!("{}.{}", names.plural, spec.group) {
            out.push(Cause::invalid(
                "metadata.name",
                &value,
                "must be spec.names.plural+\".\"+spec.group",
            ));
        }
    }

    // spec.group
    if spec.group.is_empty() {
        out.push(Cause::required("spec.group", ""));
    } else {
        let errs = dns1123_subdomain(&spec.group);
        let value = Value::String(spec.group.clone());
        if !errs.is_empty() {
            out.push(Cause::invalid("spec.group", &value, &errs.join(",")));
        } else if spec.group.split('.').count() < 2 {
            out.push(Cause::invalid(
                "spec.group",
                &value,
                "should be a domain with at least one dot",
            ));
        }
    }

    // spec.scope
    if spec.scope.is_empty() {
        out.push(Cause::required("spec.scope", ""));
    } else if spec.scope != "Cluster" && spec.scope != "Namespaced" {
        out.push(Cause::not_supported(
            "spec.scope",
            &Value::String(spec.scope.clone()),
            &["Cluster".to_owned(), "Namespaced".to_owned()],
        ));
    }

    // spec.versions
    let version_names: Vec<Value> = spec
        .versions
        .iter()
        .map(|v| Value::String(v.name.clone()))
        .collect();
    let versions_value = Value::Array(version_names);
    let mut seen = Vec::new();
    let mut unique = true;
    for (i, v) in spec.versions.iter().enumerate() {
        let base = format!("spec.versions[{i}]");
        if seen.contains(&v.name) {
            unique = false;
        } else {
            seen.push(v.name.clone());
        }
        let errs = dns1035_label(&v.name);
        if !errs.is_empty() {
            out.push(Cause::invalid(
                &format!("{base}.name"),
                &Value::String(v.name.clone()),
                &errs.join(","),
            ));
        }
        let schema = v
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .and_then(|s| serde_json::to_value(s).ok());
        let schema_path = format!("{base}.schema.openAPIV3Schema");
        match schema {
            None => out.push(Cause::required(&schema_path, "schemas are required")),
            Some(schema) => {
                let status = v.subresources.as_ref().is_some_and(|s| s.status.is_some());
                validate_root_schema(&schema, &schema_path, status, &mut out);
            }
        }
    }
    if !unique {
        out.push(Cause::invalid(
            "spec.versions",
            &versions_value,
            "must contain unique version names",
        ));
    }
    if spec.versions.iter().filter(|v| v.storage).count() != 1 {
        out.push(Cause::invalid(
            "spec.versions",
            &versions_value,
            "must have exactly one version marked as storage version",
        ));
    }
    if !spec.versions.is_empty() && !spec.versions.iter().any(|v| v.served) {
        out.push(Cause::invalid(
            "spec.versions",
            &versions_value,
            "must have at least one served version",
        ));
    }

    if let Some(conversion) = &spec.conversion {
        validate_conversion(
            conversion,
            spec.preserve_unknown_fields == Some(true),
            &mut out,
        );
    }

    // spec.names
    let singular = names.singular.clone().unwrap_or_default();
    let list_kind = names.list_kind.clone().unwrap_or_default();
    for (field, value) in [
        ("spec.names.plural", &names.plural),
        ("spec.names.singular", &singular),
        ("spec.names.kind", &names.kind),
        ("spec.names.listKind", &list_kind),
    ] {
        if value.is_empty() {
            out.push(Cause::required(field, ""));
        }
    }
    for (field, value) in [
        ("spec.names.plural", &names.plural),
        ("spec.names.singular", &singular),
    ] {
        let errs = dns1035_label(value);
        if !value.is_empty() && !errs.is_empty() {
            out.push(Cause::invalid(
                field,
                &Value::String(value.clone()),
                &errs.join(","),
            ));
        }
    }
    for (field, value) in [
        ("spec.names.kind", &names.kind),
        ("spec.names.listKind", &list_kind),
    ] {
        let errs = dns1035_label(&value.to_lowercase());
        if !value.is_empty() && !errs.is_empty() {
            out.push(Cause::invalid(
                field,
                &Value::String(value.clone()),
                &format!(
                    "may have mixed case, but should otherwise match: {}",
                    errs.join(",")
                ),
            ));
        }
    }
    for (i, short) in names.short_names.iter().flatten().enumerate() {
        let errs = dns1035_label(short);
        if !errs.is_empty() {
            out.push(Cause::invalid(
                &format!("spec.names.shortNames[{i}]"),
                &Value::String(short.clone()),
                &errs.join(","),
            ));
        }
    }
    for (i, category) in names.categories.iter().flatten().enumerate() {
        let errs = dns1035_label(category);
        if !errs.is_empty() {
            out.push(Cause::invalid(
                &format!("spec.names.categories[{i}]"),
                &Value::String(category.clone()),
                &errs.join(","),
            ));
        }
    }
    if !names.kind.is_empty() && names.kind == list_kind {
        out.push(Cause::invalid(
            "spec.names.listKind",
            &Value::String(list_kind.clone()),
            "kind and listKind may not be the same",
        ));
    }
    out
}

fn dns1035_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > 63 {
        errs.push("must be no more than 63 characters".to_owned());
    }
    let bytes = value.as_bytes();
    let valid = !bytes.is_empty()
        && bytes[0].is_ascii_lowercase()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[bytes.len() - 1] != b'-';
    if !valid {
        errs.push(DNS1035_MESSAGE.to_owned());
    }
    errs
}

fn dns1123_subdomain(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > 253 {
        errs.push("must be no more than 253 characters".to_owned());
    }
    let label_ok = |l: &str| {
        let b = l.as_bytes();
        !b.is_empty()
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
    };
    if !value.split('.').all(label_ok) {
        errs.push(DNS1123_SUBDOMAIN_MESSAGE.to_owned());
    }
    errs
}

/// Where in the schema a node sits, for the "type must not be empty" message.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Root,
    Field,
    Item,
    /// Inside `allOf`/`anyOf`/`oneOf`/`not`: value validations only.
    Junction,
}

fn validate_root_schema(schema: &Value, path: &str, status: bool, out: &mut Vec<Cause>) {
    if schema.get("nullable") == Some(&Value::Bool(true)) {
        out.push(Cause::forbidden(
            &format!("{path}.nullable"),
            "nullable cannot be true at the root",
        ));
    }
    if status
        && let Some(t) = schema.get("type").and_then(Value::as_str)
        && !t.is_empty()
        && t != "object"
    {
        out.push(Cause::invalid(
                    &format!("{path}.type"),
                    &Value::String(t.to_owned()),
                    "only \"object\" is allowed as the type at the root of the schema if the status subresource is enabled",
                ));
    }
    structural(schema, path, Level::Root, 0, out);
}

/// `x-kubernetes-validations`: every rule is required and must compile, as
/// must a `messageExpression` (upstream refuses the CRD otherwise, rather
/// than each custom resource).
fn validation_rules(schema: &serde_json::Map<String, Value>, path: &str, out: &mut Vec<Cause>) {
    let Some(rules) = schema
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
    else {
        return;
    };
    for (i, entry) in rules.iter().enumerate() {
        let base = format!("{path}.x-kubernetes-validations[{i}]");
        match entry.get("rule").and_then(Value::as_str) {
            None | Some("") => out.push(Cause::required(&format!("{base}.rule"), "")),
            Some(rule) => {
                if let Err(e) = crate::cel::parses(rule) {
                    out.push(Cause::invalid(
                        &format!("{base}.rule"),
                        &Value::String(rule.to_owned()),
                        &e,
                    ));
                }
            }
        }
        if let Some(expr) = entry.get("messageExpression").and_then(Value::as_str)
            && let Err(e) = crate::cel::parses(expr)
        {
            out.push(Cause::invalid(
                &format!("{base}.messageExpression"),
                &Value::String(expr.to_owned()),
                &e,
            ));
        }
    }
}

fn structural(schema: &Value, path: &str, level: Level, depth: usize, out: &mut Vec<Cause>) {
    if depth > MAX_DEPTH {
        out.push(Cause::invalid(
            path,
            &Value::String(String::new()),
            &format!("must not be nested more than {MAX_DEPTH} levels deep"),
        ));
        return;
    }
    let Some(m) = schema.as_object() else {
        return;
    };
    let flag = |k: &str| m.get(k).and_then(Value::as_bool);
    validation_rules(m, path, out);
    let ty = m.get("type").and_then(Value::as_str).unwrap_or("");
    let int_or_string = flag("x-kubernetes-int-or-string") == Some(true);
    let preserve = flag("x-kubernetes-preserve-unknown-fields");
    let embedded = flag("x-kubernetes-embedded-resource") == Some(true);

    if !ty.is_empty() && !SCHEMA_TYPES.contains(&ty) {
        out.push(Cause::not_supported(
            &format!("{path}.type"),
            &Value::String(ty.to_owned()),
            &SCHEMA_TYPES
                .iter()
                .map(|s| (*s).to_owned())
                .collect::<Vec<_>>(),
        ));
    }
    if level == Level::Root && !ty.is_empty() && ty != "object" {
        out.push(Cause::invalid(
            &format!("{path}.type"),
            &Value::String(ty.to_owned()),
            "must be object at the root",
        ));
    }
    if ty.is_empty() && !int_or_string && !embedded && preserve != Some(true) {
        let msg = match level {
            Level::Root => Some("must not be empty at the root"),
            Level::Field => Some("must not be empty for specified object fields"),
            Level::Item => Some("must not be empty for specified array items"),
            Level::Junction => None,
        };
        if let Some(msg) = msg {
            out.push(Cause::required(&format!("{path}.type"), msg));
        }
    }
    if preserve == Some(false) {
        out.push(Cause::invalid(
            &format!("{path}.x-kubernetes-preserve-unknown-fields"),
            &Value::Bool(false),
            "must be true or undefined",
        ));
    }
    if embedded && !ty.is_empty() && ty != "object" {
        out.push(Cause::invalid(
            &format!("{path}.type"),
            &Value::String(ty.to_owned()),
            "must be object if x-kubernetes-embedded-resource is true",
        ));
    }
    if ty == "array" && level != Level::Junction && !m.contains_key("items") {
        out.push(Cause::required(
            &format!("{path}.items"),
            "must be specified",
        ));
    }
    if flag("uniqueItems") == Some(true) {
        out.push(Cause::forbidden(
            &format!("{path}.uniqueItems"),
            "uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
        ));
    }
    if let Some(p) = m.get("pattern").and_then(Value::as_str)
        && let Err(e) = Regex::new(p)
    {
        out.push(Cause::invalid(
            &format!("{path}.pattern"),
            &Value::String(p.to_owned()),
            &format!("must be a valid regular expression, but isn't: {e}"),
        ));
    }
    if m.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("map")
        && m.get("x-kubernetes-list-map-keys")
            .and_then(Value::as_array)
            .is_none_or(|k| k.is_empty())
    {
        out.push(Cause::required(
            &format!("{path}.x-kubernetes-list-map-keys"),
            "must not be empty if x-kubernetes-list-type is map",
        ));
    }

    let props = m.get("properties").and_then(Value::as_object);
    if let Some(additional) = m.get("additionalProperties") {
        let allows_anything = additional == &Value::Bool(true);
        if props.is_some_and(|p: &Map<String, Value>| !p.is_empty()) && !allows_anything {
            out.push(Cause::forbidden(
                &format!("{path}.additionalProperties"),
                "additionalProperties and properties are mutual exclusive",
            ));
        }
        if additional.is_object() {
            structural(
                additional,
                &format!("{path}.additionalProperties"),
                Level::Field,
                depth + 1,
                out,
            );
        }
    }
    let child_level = if level == Level::Junction {
        Level::Junction
    } else {
        Level::Field
    };
    if let Some(props) = props {
        for (k, v) in props {
            if level == Level::Root && k == "metadata" {
                validate_metadata_schema(v, &format!("{path}.properties[metadata]"), out);
                continue;
            }
            structural(
                v,
                &format!("{path}.properties[{k}]"),
                child_level,
                depth + 1,
                out,
            );
        }
    }
    if let Some(items) = m.get("items") {
        let item_level = if level == Level::Junction {
            Level::Junction
        } else {
            Level::Item
        };
        match items {
            Value::Array(list) => {
                for (i, it) in list.iter().enumerate() {
                    structural(
                        it,
                        &format!("{path}.items[{i}]"),
                        item_level,
                        depth + 1,
                        out,
                    );
                }
            }
            other => structural(other, &format!("{path}.items"), item_level, depth + 1, out),
        }
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(list) = m.get(key).and_then(Value::as_array) {
            for (i, s) in list.iter().enumerate() {
                structural(
                    s,
                    &format!("{path}.{key}[{i}]"),
                    Level::Junction,
                    depth + 1,
                    out,
                );
            }
        }
    }
    if let Some(not) = m.get("not") {
        structural(not, &format!("{path}.not"), Level::Junction, depth + 1, out);
    }
}

/// The root `metadata` schema may only be `type: object` with `name` and
/// `generateName` string restrictions.
fn validate_metadata_schema(schema: &Value, path: &str, out: &mut Vec<Cause>) {
    let Some(m) = schema.as_object() else {
        return;
    };
    if let Some(t) = m.get("type").and_then(Value::as_str)
        && t != "object"
    {
        out.push(Cause::invalid(
            &format!("{path}.type"),
            &Value::String(t.to_owned()),
            "must be object",
        ));
    }
    if let Some(props) = m.get("properties").and_then(Value::as_object) {
        for k in props.keys() {
            if k != "name" && k != "generateName" {
                out.push(Cause::forbidden(
                    &format!("{path}.properties[{k}]"),
                    "must not specify anything other than name and generateName, but metadata is implicitly specified",
                ));
            }
        }
    }
}

/// `spec.conversion`: a known strategy; a webhook (one of url or service,
/// review versions rk speaks) exactly when the strategy is `Webhook`. The
/// field paths are upstream's internal ones, as its messages name them.
fn validate_conversion(
    conversion: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceConversion,
    preserve_unknown_fields: bool,
    out: &mut Vec<Cause>,
) {
    const STRATEGIES: [&str; 2] = ["None", "Webhook"];
    let config = conversion
        .webhook
        .as_ref()
        .and_then(|w| w.client_config.as_ref());
    match conversion.strategy.as_str() {
        "Webhook" => {
            match config {
                None => out.push(Cause::required(
                    "spec.conversion.webhookClientConfig",
                    "required when strategy is set to Webhook",
                )),
                Some(cc) if cc.url.is_some() == cc.service.is_some() => out.push(Cause::required(
                    "spec.conversion.webhookClientConfig",
                    "exactly one of url or service is required",
                )),
                Some(cc) => {
                    if let Some(url) = &cc.url
                        && !url.starts_with("https://")
                    {
                        out.push(Cause::invalid(
                            "spec.conversion.webhookClientConfig.url",
                            &Value::String(url.clone()),
                            "'https' is the only allowed URL scheme",
                        ));
                    }
                    if let Some(service) = &cc.service
                        && (service.name.is_empty() || service.namespace.is_empty())
                    {
                        out.push(Cause::required(
                            "spec.conversion.webhookClientConfig.service",
                            "service name and namespace are required",
                        ));
                    }
                }
            }
            let versions = conversion
                .webhook
                .as_ref()
                .map(|w| w.conversion_review_versions.clone())
                .unwrap_or_default();
            let path = "spec.conversion.conversionReviewVersions";
            if versions.is_empty() {
                out.push(Cause::required(path, ""));
            } else if !versions.iter().any(|v| v == "v1" || v == "v1beta1") {
                out.push(Cause::invalid(
                    path,
                    &Value::Array(versions.iter().cloned().map(Value::String).collect()),
                    "must include at least one of v1, v1beta1",
                ));
            }
            if preserve_unknown_fields {
                out.push(Cause::invalid(
                    "spec.conversion.strategy",
                    &Value::String(conversion.strategy.clone()),
                    "must be None if spec.preserveUnknownFields is true",
                ));
            }
        }
        "None" => {
            if config.is_some() {
                out.push(Cause::forbidden(
                    "spec.conversion.webhookClientConfig",
                    "should not be set when strategy is not set to Webhook",
                ));
            }
        }
        other => out.push(Cause::not_supported(
            "spec.conversion.strategy",
            &Value::String(other.to_string()),
            &STRATEGIES.map(String::from),
        )),
    }
}
