//! Spec validation for pods, workloads, Services, ConfigMaps and Secrets,
//! and the fields that may not change on update.

use std::collections::{BTreeMap, HashSet};

use rk_core::catalogue::ResourceInfo;
use rk_core::labels::validation as names;
use rk_core::quantity::ParsedQuantity;
use serde_json::{Value, json};

use super::{Cause, check_supported, duplicate, forbidden, invalid, not_supported, required};

fn non_negative(out: &mut Vec<Cause>, field: &str, v: &Value) {
    if let Some(n) = v.as_i64()
        && n < 0
    {
        out.push(invalid(field, v, "must be greater than or equal to 0"));
    }
}

/// A container's resource requirements, as upstream's
/// `ValidateResourceRequirements`: no negative quantity, and no request
/// above its limit.
fn resources(out: &mut Vec<Cause>, path: &str, res: &Value) {
    let parsed = |part: &str| -> BTreeMap<String, (String, ParsedQuantity)> {
        res[part]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| {
                let text = v.as_str()?.to_string();
                let q = text.parse::<ParsedQuantity>().ok()?;
                Some((k.clone(), (text, q)))
            })
            .collect()
    };
    let (requests, limits) = (parsed("requests"), parsed("limits"));
    for (part, map) in [("limits", &limits), ("requests", &requests)] {
        for (name, (text, q)) in map {
            if q.is_negative() {
                out.push(invalid(
                    &format!("{path}.{part}[{name}]"),
                    &json!(text),
                    "must be greater than or equal to 0",
                ));
            }
        }
    }
    for (name, (text, q)) in &requests {
        if let Some((limit_text, limit)) = limits.get(name)
            && q > limit
        {
            out.push(invalid(
                &format!("{path}.requests"),
                &json!(text),
                &format!("must be less than or equal to {name} limit of {limit_text}"),
            ));
        }
    }
}

fn pod_spec(out: &mut Vec<Cause>, path: &str, spec: &Value, allowed_restart: &[&str]) {
    let none = Vec::new();
    let containers = spec["containers"].as_array().unwrap_or(&none);
    if containers.is_empty() {
        out.push(required(&format!("{path}.containers")));
    }
    let volumes: HashSet<String> = spec["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["name"].as_str().map(str::to_string))
        .collect();
    let mut seen_volumes = HashSet::new();
    for (i, v) in spec["volumes"].as_array().into_iter().flatten().enumerate() {
        let sources: Vec<&String> = v
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, val)| k.as_str() != "name" && val.is_object())
            .map(|(k, _)| k)
            .collect();
        if let Some(extra) = sources.get(1) {
            out.push(forbidden(
                &format!("{path}.volumes[{i}].{extra}"),
                "may not specify more than 1 volume type",
            ));
        }
        let f = format!("{path}.volumes[{i}].name");
        match v["name"].as_str() {
            None | Some("") => out.push(required(&f)),
            Some(n) => {
                if !seen_volumes.insert(n.to_string()) {
                    out.push(duplicate(&f, &json!(n)));
                }
            }
        }
    }
    let mut seen = HashSet::new();
    for (list, key) in [
        (containers, "containers"),
        (
            spec["initContainers"].as_array().unwrap_or(&none),
            "initContainers",
        ),
    ] {
        for (i, c) in list.iter().enumerate() {
            let base = format!("{path}.{key}[{i}]");
            match c["name"].as_str() {
                None | Some("") => out.push(required(&format!("{base}.name"))),
                Some(n) => {
                    for p in names::validate_dns1123_label(n) {
                        out.push(invalid(&format!("{base}.name"), &json!(n), &p));
                    }
                    if !seen.insert(n.to_string()) {
                        out.push(duplicate(&format!("{base}.name"), &json!(n)));
                    }
                }
            }
            if c["image"].as_str().is_none_or(|s| s.trim().is_empty()) {
                out.push(required(&format!("{base}.image")));
            }
            for (j, p) in c["ports"].as_array().into_iter().flatten().enumerate() {
                let port = &p["containerPort"];
                match port.as_i64() {
                    Some(n) if (1..=65535).contains(&n) => {}
                    Some(_) => out.push(invalid(
                        &format!("{base}.ports[{j}].containerPort"),
                        port,
                        "must be between 1 and 65535, inclusive",
                    )),
                    None => out.push(required(&format!("{base}.ports[{j}].containerPort"))),
                }
                check_supported(out, &p["protocol"], &["SCTP", "TCP", "UDP"], || {
                    format!("{base}.ports[{j}].protocol")
                });
            }
            for (j, m) in c["volumeMounts"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
            {
                let name = m["name"].as_str().unwrap_or("");
                if !volumes.contains(name) {
                    out.push(Cause {
                        reason: super::CauseType::NotFound,
                        field: format!("{base}.volumeMounts[{j}].name"),
                        message: String::new(),
                        value: Some(format!("\"{name}\"")),
                    });
                }
                if m["mountPath"].as_str().is_none_or(str::is_empty) {
                    out.push(required(&format!("{base}.volumeMounts[{j}].mountPath")));
                }
            }
            for (j, e) in c["env"].as_array().into_iter().flatten().enumerate() {
                if e["name"].as_str().is_none_or(str::is_empty) {
                    out.push(required(&format!("{base}.env[{j}].name")));
                }
                if e["value"].as_str().is_some_and(|v| !v.is_empty()) && e["valueFrom"].is_object()
                {
                    out.push(invalid(
                        &format!("{base}.env[{j}].valueFrom"),
                        &json!(""),
                        "may not be specified when `value` is not empty",
                    ));
                }
            }
            resources(out, &format!("{base}.resources"), &c["resources"]);
            check_supported(
                out,
                &c["imagePullPolicy"],
                &["Always", "IfNotPresent", "Never"],
                || format!("{base}.imagePullPolicy"),
            );
            for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
                let p = &c[probe];
                if !p.is_object() {
                    continue;
                }
                for field in [
                    "initialDelaySeconds",
                    "timeoutSeconds",
                    "periodSeconds",
                    "successThreshold",
                    "failureThreshold",
                ] {
                    non_negative(out, &format!("{base}.{probe}.{field}"), &p[field]);
                }
            }
        }
    }
    check_supported(
        out,
        &spec["dnsPolicy"],
        &["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"],
        || format!("{path}.dnsPolicy"),
    );
    for (i, t) in spec["tolerations"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let operator = t["operator"].as_str().unwrap_or("Equal");
        match operator {
            "Exists" => {
                if t["value"].as_str().is_some_and(|v| !v.is_empty()) {
                    out.push(invalid(
                        &format!("{path}.tolerations[{i}].operator"),
                        &t["value"],
                        "value must be empty when `operator` is 'Exists'",
                    ));
                }
            }
            "Equal" | "" => {
                if t["key"].as_str().is_none_or(str::is_empty) {
                    out.push(invalid(
                        &format!("{path}.tolerations[{i}].operator"),
                        &json!(operator),
                        "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
                    ));
                }
            }
            _ => out.push(not_supported(
                &format!("{path}.tolerations[{i}].operator"),
                &t["operator"],
                &["Equal", "Exists"],
            )),
        }
        // An empty effect matches every effect.
        if t["effect"] != "" {
            check_supported(
                out,
                &t["effect"],
                &["NoExecute", "NoSchedule", "PreferNoSchedule"],
                || format!("{path}.tolerations[{i}].effect"),
            );
        }
    }
    if let Some(rp) = spec["restartPolicy"].as_str()
        && !allowed_restart.contains(&rp)
    {
        out.push(not_supported(
            &format!("{path}.restartPolicy"),
            &spec["restartPolicy"],
            allowed_restart,
        ));
    }
}

fn label_map(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

fn selector_and_template(out: &mut Vec<Cause>, spec: &Value, template_path: &str) {
    let selector = &spec["selector"];
    if selector.is_null() || selector.as_object().is_some_and(|m| m.is_empty()) {
        out.push(required("spec.selector"));
        return;
    }
    let Ok(ls) = serde_json::from_value::<
        rk_core::k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    >(selector.clone()) else {
        out.push(invalid("spec.selector", selector, "invalid label selector"));
        return;
    };
    let sel = match rk_core::labels::Selector::try_from(&ls) {
        Ok(s) => s,
        Err(e) => {
            out.push(invalid("spec.selector", selector, &e.to_string()));
            return;
        }
    };
    if sel.is_empty() {
        out.push(invalid(
            "spec.selector",
            selector,
            "empty selector is invalid for deployment",
        ));
    }
    let labels = label_map(&spec["template"]["metadata"]["labels"]);
    if !sel.is_empty() && !sel.matches(&labels) {
        let shown = format!(
            "map[string]string{{{}}}",
            labels
                .iter()
                .map(|(k, v)| format!("\"{k}\":\"{v}\""))
                .collect::<Vec<_>>()
                .join(", ")
        );
        out.push(Cause {
            reason: super::CauseType::Invalid,
            field: format!("{template_path}.metadata.labels"),
            message: "`selector` does not match template `labels`".into(),
            value: Some(shown),
        });
    }
}

fn immutable(out: &mut Vec<Cause>, old: Option<&Value>, new: &Value, path: &[&str]) {
    let Some(old) = old else { return };
    let get = |v: &Value| path.iter().fold(v.clone(), |acc, k| acc[*k].clone());
    let (a, b) = (get(old), get(new));
    if a != b {
        out.push(invalid(&path.join("."), &b, "field is immutable"));
    }
}

/// Validate the kind-specific parts of an object.
pub fn spec(info: &ResourceInfo, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut out = Vec::new();
    let spec = &obj["spec"];
    match (info.group.as_str(), info.kind.as_str()) {
        ("", "Pod") => {
            pod_spec(&mut out, "spec", spec, &["Always", "OnFailure", "Never"]);
            if let Some(old) = old {
                // Only a few pod spec fields may change after creation.
                let strip = |v: &Value| {
                    let mut s = v["spec"].clone();
                    if let Some(m) = s.as_object_mut() {
                        for k in [
                            "activeDeadlineSeconds",
                            "tolerations",
                            "terminationGracePeriodSeconds",
                            "schedulingGates",
                            "ephemeralContainers",
                        ] {
                            m.remove(k);
                        }
                        for key in ["containers", "initContainers"] {
                            for c in m
                                .get_mut(key)
                                .and_then(Value::as_array_mut)
                                .into_iter()
                                .flatten()
                            {
                                if let Some(c) = c.as_object_mut() {
                                    c.remove("image");
                                    c.remove("resources");
                                }
                            }
                        }
                    }
                    s
                };
                let (mut a, b) = (strip(old), strip(obj));
                // nodeName may be set once (binding), never changed.
                if old["spec"]["nodeName"].is_null() && !b["nodeName"].is_null() {
                    a["nodeName"] = b["nodeName"].clone();
                }
                if a != b {
                    out.push(forbidden(
                        "spec",
                        "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
                    ));
                }
            }
        }
        ("apps", "Deployment") | ("apps", "ReplicaSet") | ("apps", "StatefulSet") => {
            non_negative(&mut out, "spec.replicas", &spec["replicas"]);
            selector_and_template(&mut out, spec, "spec.template");
            pod_spec(
                &mut out,
                "spec.template.spec",
                &spec["template"]["spec"],
                &["Always"],
            );
            immutable(&mut out, old, obj, &["spec", "selector"]);
            if info.kind == "StatefulSet" {
                statefulset_update(&mut out, old, spec);
            }
        }
        ("apps", "DaemonSet") => {
            selector_and_template(&mut out, spec, "spec.template");
            pod_spec(
                &mut out,
                "spec.template.spec",
                &spec["template"]["spec"],
                &["Always"],
            );
            immutable(&mut out, old, obj, &["spec", "selector"]);
        }
        ("", "ReplicationController") => {
            non_negative(&mut out, "spec.replicas", &spec["replicas"]);
            pod_spec(
                &mut out,
                "spec.template.spec",
                &spec["template"]["spec"],
                &["Always"],
            );
        }
        ("batch", "Job") => {
            for f in [
                "parallelism",
                "completions",
                "backoffLimit",
                "activeDeadlineSeconds",
                "ttlSecondsAfterFinished",
            ] {
                non_negative(&mut out, &format!("spec.{f}"), &spec[f]);
            }
            pod_spec(
                &mut out,
                "spec.template.spec",
                &spec["template"]["spec"],
                &["OnFailure", "Never"],
            );
            if let Some(o) = old {
                // The selector is set by the controller-side defaulting; only
                // check it once both have one.
                if !o["spec"]["selector"].is_null() && !spec["selector"].is_null() {
                    immutable(&mut out, old, obj, &["spec", "selector"]);
                }
                let suspended = o["spec"]["suspend"] == true;
                if !suspended {
                    let strip = |v: &Value| {
                        let mut t = v["spec"]["template"].clone();
                        if let Some(l) = t["metadata"]["labels"].as_object_mut() {
                            l.remove("controller-uid");
                            l.remove("batch.kubernetes.io/controller-uid");
                            l.remove("job-name");
                            l.remove("batch.kubernetes.io/job-name");
                        }
                        t
                    };
                    if strip(o) != strip(obj) {
                        out.push(invalid(
                            "spec.template",
                            &json!("core.PodTemplateSpec{...}"),
                            "field is immutable",
                        ));
                    }
                }
            }
        }
        ("batch", "CronJob") => {
            match spec["schedule"].as_str() {
                None | Some("") => out.push(required("spec.schedule")),
                Some(s) => {
                    let fields = s.split_whitespace().count();
                    let macro_ok = s.starts_with('@')
                        && matches!(
                            s,
                            "@yearly"
                                | "@annually"
                                | "@monthly"
                                | "@weekly"
                                | "@daily"
                                | "@midnight"
                                | "@hourly"
                        )
                        || s.starts_with("@every ");
                    let tz_prefixed = s.starts_with("TZ=") || s.starts_with("CRON_TZ=");
                    if !(macro_ok || fields == 5 || (tz_prefixed && fields == 6)) {
                        out.push(invalid(
                            "spec.schedule",
                            &spec["schedule"],
                            &format!("expected exactly 5 fields, found {fields}: {s}"),
                        ));
                    }
                }
            }
            pod_spec(
                &mut out,
                "spec.jobTemplate.spec.template.spec",
                &spec["jobTemplate"]["spec"]["template"]["spec"],
                &["OnFailure", "Never"],
            );
        }
        ("", "Service") => {
            let ty = spec["type"].as_str().unwrap_or("ClusterIP");
            if !matches!(
                ty,
                "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName"
            ) {
                out.push(not_supported(
                    "spec.type",
                    &spec["type"],
                    &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
                ));
            }
            let ports = spec["ports"].as_array().cloned().unwrap_or_default();
            let headless = spec["clusterIP"] == "None";
            if ports.is_empty() && ty != "ExternalName" && !headless {
                out.push(required("spec.ports"));
            }
            let mut names_seen = HashSet::new();
            for (i, p) in ports.iter().enumerate() {
                let port = &p["port"];
                match port.as_i64() {
                    Some(n) if (1..=65535).contains(&n) => {}
                    _ => out.push(invalid(
                        &format!("spec.ports[{i}].port"),
                        port,
                        "must be between 1 and 65535, inclusive",
                    )),
                }
                match p["name"].as_str() {
                    Some(n) if !n.is_empty() && !names_seen.insert(n.to_string()) => {
                        out.push(duplicate(&format!("spec.ports[{i}].name"), &p["name"]));
                    }
                    _ if ports.len() > 1 => out.push(required(&format!("spec.ports[{i}].name"))),
                    _ => {}
                }
                check_supported(&mut out, &p["protocol"], &["SCTP", "TCP", "UDP"], || {
                    format!("spec.ports[{i}].protocol")
                });
            }
            if ty == "ExternalName" && spec["externalName"].as_str().is_none_or(str::is_empty) {
                out.push(required("spec.externalName"));
            }
            if let Some(o) = old {
                let old_ip = o["spec"]["clusterIP"].as_str().unwrap_or("");
                let new_ip = spec["clusterIP"].as_str().unwrap_or("");
                if !old_ip.is_empty()
                    && !new_ip.is_empty()
                    && old_ip != new_ip
                    && ty != "ExternalName"
                {
                    out.push(invalid(
                        "spec.clusterIPs[0]",
                        &spec["clusterIP"],
                        "may not change once set",
                    ));
                }
            }
        }
        ("", "ConfigMap") | ("", "Secret") => {
            let mut total = 0usize;
            for key in ["data", "binaryData", "stringData"] {
                for (k, v) in obj[key].as_object().into_iter().flatten() {
                    total += k.len() + v.as_str().map(str::len).unwrap_or(0);
                    let valid = !k.is_empty()
                        && k.len() <= 253
                        && k.chars()
                            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                        && k != "."
                        && k != "..";
                    if !valid {
                        out.push(invalid(key, &json!(k), "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"));
                    }
                }
            }
            if info.kind == "ConfigMap" {
                for k in obj["binaryData"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, _)| k)
                {
                    if obj["data"].get(k).is_some() {
                        out.push(invalid(
                            "binaryData",
                            &json!(k),
                            "duplicate of key present in data",
                        ));
                    }
                }
            }
            if info.kind == "Secret" {
                let has = |key: &str| {
                    obj["data"].get(key).is_some() || obj["stringData"].get(key).is_some()
                };
                let needed: &[&str] = match obj["type"].as_str().unwrap_or("Opaque") {
                    "kubernetes.io/tls" => &["tls.crt", "tls.key"],
                    "kubernetes.io/basic-auth" => &[],
                    "kubernetes.io/ssh-auth" => &["ssh-privatekey"],
                    "kubernetes.io/dockerconfigjson" => &[".dockerconfigjson"],
                    "kubernetes.io/dockercfg" => &[".dockercfg"],
                    _ => &[],
                };
                for key in needed {
                    if !has(key) {
                        out.push(required(&format!("data[{key}]")));
                    }
                }
            }
            if total > 1024 * 1024 {
                out.push(Cause {
                    reason: super::CauseType::TooLong,
                    field: "data".into(),
                    message: "must have at most 1048576 bytes".into(),
                    value: None,
                });
            }
            if let Some(o) = old {
                if o["immutable"] == true {
                    for key in ["data", "binaryData"] {
                        if o[key] != obj[key] {
                            out.push(forbidden(key, "field is immutable when `immutable` is set"));
                        }
                    }
                    if obj["immutable"] != true {
                        out.push(forbidden(
                            "immutable",
                            "field is immutable when `immutable` is set",
                        ));
                    }
                }
                if info.kind == "Secret" && o["type"] != obj["type"] {
                    out.push(invalid("type", &obj["type"], "field is immutable"));
                }
            }
        }
        ("scheduling.k8s.io", "PriorityClass") => {
            if let Some(v) = obj["value"].as_i64()
                && v > 1_000_000_000
                && !obj["metadata"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("system-")
            {
                out.push(forbidden(
                    "value",
                    "maximum allowed value of a user defined priority is 1000000000",
                ));
            }
            immutable(&mut out, old, obj, &["value"]);
        }
        ("coordination.k8s.io", "Lease") => {
            let duration = &spec["leaseDurationSeconds"];
            if duration.as_i64().is_some_and(|d| d <= 0) {
                out.push(invalid(
                    "spec.leaseDurationSeconds",
                    duration,
                    "must be greater than 0",
                ));
            }
            non_negative(&mut out, "spec.leaseTransitions", &spec["leaseTransitions"]);
        }
        _ => {}
    }
    out
}

/// The fields of a StatefulSet's spec an update may change (upstream's
/// `ValidateStatefulSetUpdate`); any other change is forbidden.
const STATEFULSET_MUTABLE: &[&str] = &[
    "replicas",
    "ordinals",
    "template",
    "updateStrategy",
    "persistentVolumeClaimRetentionPolicy",
    "minReadySeconds",
];

fn statefulset_update(out: &mut Vec<Cause>, old: Option<&Value>, spec: &Value) {
    let Some(old) = old else {
        return;
    };
    let frozen = |spec: &Value| -> serde_json::Map<String, Value> {
        spec.as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| !STATEFULSET_MUTABLE.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    if frozen(spec) != frozen(&old["spec"]) {
        out.push(super::forbidden(
            "spec",
            "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rk_core::catalogue::Catalogue;

    fn deploy_info() -> std::sync::Arc<ResourceInfo> {
        Catalogue::builtin()
            .get("apps", "v1", "deployments")
            .unwrap()
    }

    #[test]
    fn deployment_selector_must_match_template_labels() {
        let d = json!({"metadata": {"name": "d", "namespace": "n"}, "spec": {"replicas": 1,
            "selector": {"matchLabels": {"app": "a"}},
            "template": {"metadata": {"labels": {"app": "b"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}}});
        let causes = super::super::validate(&deploy_info(), &d, None);
        assert_eq!(causes.len(), 1, "{causes:?}");
        assert_eq!(causes[0].field, "spec.template.metadata.labels");
        assert!(
            causes[0]
                .detail_message()
                .contains("`selector` does not match template `labels`")
        );
    }

    #[test]
    fn negative_replicas_are_invalid_with_upstream_message() {
        let d = json!({"metadata": {"name": "d", "namespace": "n"}, "spec": {"replicas": -1,
            "selector": {"matchLabels": {"app": "a"}},
            "template": {"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}}});
        let causes = super::super::validate(&deploy_info(), &d, None);
        assert_eq!(
            causes[0].detail_message(),
            "Invalid value: -1: must be greater than or equal to 0"
        );
    }

    #[test]
    fn job_template_is_immutable() {
        let info = Catalogue::builtin().get("batch", "v1", "jobs").unwrap();
        let old = json!({"metadata": {"name": "j", "namespace": "n"}, "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x"}]}}}});
        let mut new = old.clone();
        new["spec"]["template"]["spec"]["containers"][0]["image"] = json!("y");
        let causes = super::super::validate(&info, &new, Some(&old));
        assert!(causes.iter().any(
            |c| c.field == "spec.template" && c.detail_message().contains("field is immutable")
        ));
    }

    #[test]
    fn pod_metadata_updates_leave_the_spec_alone() {
        let info = Catalogue::builtin().get("", "v1", "pods").unwrap();
        let old = json!({"metadata": {"name": "p", "namespace": "n"}, "spec": {"containers": [{"name": "c", "image": "x"}]}});
        let mut new = old.clone();
        new["metadata"]["labels"] = json!({"a": "b"});
        assert!(super::super::validate(&info, &new, Some(&old)).is_empty());
        new["spec"]["containers"][0]["name"] = json!("d");
        assert_eq!(
            super::super::validate(&info, &new, Some(&old))[0].reason_str(),
            "FieldValueForbidden"
        );
    }

    #[test]
    fn bad_names_are_refused() {
        let info = Catalogue::builtin().get("", "v1", "configmaps").unwrap();
        let cm = json!({"metadata": {"name": "Bad_Name", "namespace": "n"}});
        let causes = super::super::validate(&info, &cm, None);
        assert_eq!(causes[0].field, "metadata.name");
        assert!(
            causes[0]
                .detail_message()
                .starts_with("Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain")
        );
    }
}
