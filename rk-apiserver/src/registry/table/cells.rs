//! Cell values for the built-in kinds' table rows.

use rk_core::catalogue::ResourceInfo;
use serde_json::{Value, json};

/// Upstream's `duration.HumanDuration`: `45s`, `3m20s`, `15m`, `5h10m`,
/// `2d3h`, `300d`, `2y5d`.
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    if secs < 0 {
        return "0s".into();
    }
    if secs < 120 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        let s = secs % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = secs / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let d = (hours / 24) % 365;
        return if d == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{d}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// Age of a timestamp value, or `<unknown>`.
pub fn age(ts: &Value, now: jiff::Timestamp) -> String {
    match ts.as_str().and_then(|s| s.parse::<jiff::Timestamp>().ok()) {
        Some(t) => human_duration(now.duration_since(t).as_secs()),
        None => "<unknown>".into(),
    }
}

fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or("").to_string()
}

fn or_none(v: String) -> String {
    if v.is_empty() { "<none>".into() } else { v }
}

fn label_selector(sel: &Value) -> String {
    if sel.get("matchLabels").is_some() || sel.get("matchExpressions").is_some() {
        serde_json::from_value::<
            rk_core::k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
        >(sel.clone())
        .ok()
        .and_then(|ls| rk_core::labels::Selector::try_from(&ls).ok())
        .map(|s| s.to_string())
        .unwrap_or_default()
    } else {
        let mut pairs: Vec<String> = sel
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| v.as_str().map(|v| format!("{k}={v}")))
            .collect();
        pairs.sort();
        pairs.join(",")
    }
}

fn containers_images(template_spec: &Value) -> (String, String) {
    let cs: Vec<&Value> = template_spec["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    let names = cs
        .iter()
        .map(|c| s(&c["name"]))
        .collect::<Vec<_>>()
        .join(",");
    let images = cs
        .iter()
        .map(|c| s(&c["image"]))
        .collect::<Vec<_>>()
        .join(",");
    (names, images)
}

/// Upstream's pod STATUS column: the phase, or what the containers say.
pub fn pod_status(pod: &Value) -> String {
    let status = &pod["status"];
    let mut reason = status["phase"].as_str().unwrap_or("").to_string();
    if let Some(r) = status["reason"].as_str() {
        reason = r.to_string();
    }
    let init_specs = pod["spec"]["initContainers"]
        .as_array()
        .map(Vec::len)
        .unwrap_or(0);
    let mut initializing = false;
    for (i, c) in status["initContainerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let term = &c["state"]["terminated"];
        let wait = &c["state"]["waiting"];
        if term.is_object() && int(&term["exitCode"]) == 0 {
            continue;
        }
        if c["started"] == true && c["state"]["running"].is_object() {
            continue; // a running sidecar
        }
        initializing = true;
        reason = if term.is_object() {
            match term["reason"].as_str() {
                Some(r) if !r.is_empty() => format!("Init:{r}"),
                _ if int(&term["signal"]) != 0 => format!("Init:Signal:{}", int(&term["signal"])),
                _ => format!("Init:ExitCode:{}", int(&term["exitCode"])),
            }
        } else if let Some(r) = wait["reason"]
            .as_str()
            .filter(|r| !r.is_empty() && *r != "PodInitializing")
        {
            format!("Init:{r}")
        } else {
            format!("Init:{i}/{init_specs}")
        };
        break;
    }
    if !initializing {
        let mut has_running = false;
        for c in status["containerStatuses"]
            .as_array()
            .into_iter()
            .flatten()
            .rev()
        {
            let term = &c["state"]["terminated"];
            if let Some(r) = c["state"]["waiting"]["reason"]
                .as_str()
                .filter(|r| !r.is_empty())
            {
                reason = r.to_string();
            } else if term.is_object() {
                reason = match term["reason"].as_str() {
                    Some(r) if !r.is_empty() => r.to_string(),
                    _ if int(&term["signal"]) != 0 => format!("Signal:{}", int(&term["signal"])),
                    _ => format!("ExitCode:{}", int(&term["exitCode"])),
                };
            } else if c["ready"] == true && c["state"]["running"].is_object() {
                has_running = true;
            }
        }
        if reason == "Completed" && has_running {
            let ready = status["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            reason = if ready {
                "Running".into()
            } else {
                "NotReady".into()
            };
        }
    }
    if pod["metadata"]["deletionTimestamp"].is_string() {
        reason = if status["reason"] == "NodeLost" {
            "Unknown".into()
        } else {
            "Terminating".into()
        };
    }
    reason
}

fn pod_row(pod: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let total = pod["spec"]["containers"]
        .as_array()
        .map(Vec::len)
        .unwrap_or(0);
    let statuses: Vec<&Value> = pod["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    let ready = statuses
        .iter()
        .filter(|c| c["ready"] == true && c["state"]["running"].is_object())
        .count();
    let restarts: i64 = statuses.iter().map(|c| int(&c["restartCount"])).sum();
    let last_restart = statuses
        .iter()
        .filter_map(|c| c["lastState"]["terminated"]["finishedAt"].as_str())
        .filter_map(|t| t.parse::<jiff::Timestamp>().ok())
        .max();
    let restarts = match last_restart {
        Some(t) if restarts > 0 => format!(
            "{restarts} ({} ago)",
            human_duration(now.duration_since(t).as_secs())
        ),
        _ => restarts.to_string(),
    };
    let gates = pod["spec"]["readinessGates"]
        .as_array()
        .map(Vec::len)
        .unwrap_or(0);
    let gates = if gates == 0 {
        "<none>".to_string()
    } else {
        let met = pod["spec"]["readinessGates"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|g| {
                pod["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == g["conditionType"] && c["status"] == "True")
            })
            .count();
        format!("{met}/{gates}")
    };
    vec![
        pod["metadata"]["name"].clone(),
        json!(format!("{ready}/{total}")),
        json!(pod_status(pod)),
        json!(restarts),
        json!(age(&pod["metadata"]["creationTimestamp"], now)),
        json!(or_none(s(&pod["status"]["podIP"]))),
        json!(or_none(s(&pod["spec"]["nodeName"]))),
        json!(or_none(s(&pod["status"]["nominatedNodeName"]))),
        json!(gates),
    ]
}

fn node_row(node: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let mut status = node["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Ready")
        .map(|c| {
            if c["status"] == "True" {
                "Ready"
            } else {
                "NotReady"
            }
            .to_string()
        })
        .unwrap_or_else(|| "Unknown".into());
    if node["spec"]["unschedulable"] == true {
        status.push_str(",SchedulingDisabled");
    }
    let mut roles: Vec<String> = node["metadata"]["labels"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, _)| {
            k.strip_prefix("node-role.kubernetes.io/")
                .map(str::to_string)
        })
        .filter(|r| !r.is_empty())
        .collect();
    roles.sort();
    let addr = |ty: &str| -> String {
        node["status"]["addresses"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["type"] == ty)
            .map(|a| s(&a["address"]))
            .unwrap_or_default()
    };
    let info = &node["status"]["nodeInfo"];
    vec![
        node["metadata"]["name"].clone(),
        json!(status),
        json!(or_none(roles.join(","))),
        json!(age(&node["metadata"]["creationTimestamp"], now)),
        json!(s(&info["kubeletVersion"])),
        json!(or_none(addr("InternalIP"))),
        json!(or_none(addr("ExternalIP"))),
        json!(s(&info["osImage"])),
        json!(s(&info["kernelVersion"])),
        json!(s(&info["containerRuntimeVersion"])),
    ]
}

fn service_row(svc: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let spec = &svc["spec"];
    let ty = s(&spec["type"]);
    let external = match ty.as_str() {
        "ExternalName" => s(&spec["externalName"]),
        "LoadBalancer" => {
            let ing: Vec<String> = svc["status"]["loadBalancer"]["ingress"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|i| {
                    i["ip"]
                        .as_str()
                        .or(i["hostname"].as_str())
                        .unwrap_or("")
                        .to_string()
                })
                .collect();
            if ing.is_empty() {
                "<pending>".into()
            } else {
                ing.join(",")
            }
        }
        _ => {
            let ext: Vec<String> = spec["externalIPs"]
                .as_array()
                .into_iter()
                .flatten()
                .map(s)
                .collect();
            or_none(ext.join(","))
        }
    };
    let ports: Vec<String> = spec["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let proto = p["protocol"].as_str().unwrap_or("TCP");
            match p["nodePort"].as_i64() {
                Some(np) if np != 0 => format!("{}:{np}/{proto}", int(&p["port"])),
                _ => format!("{}/{proto}", int(&p["port"])),
            }
        })
        .collect();
    vec![
        svc["metadata"]["name"].clone(),
        json!(ty),
        json!(or_none(s(&spec["clusterIP"]))),
        json!(external),
        json!(or_none(ports.join(","))),
        json!(age(&svc["metadata"]["creationTimestamp"], now)),
        json!(or_none(label_selector(&spec["selector"]))),
    ]
}

fn job_status(job: &Value) -> &'static str {
    let conds = job["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let has = |t: &str| {
        conds
            .iter()
            .any(|c| c["type"] == t && c["status"] == "True")
    };
    if has("Complete") {
        "Complete"
    } else if has("Failed") {
        "Failed"
    } else if has("FailureTarget") {
        "FailureTarget"
    } else if has("SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else if has("Suspended") {
        "Suspended"
    } else {
        "Running"
    }
}

fn event_row(ev: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let last = ev["lastTimestamp"]
        .as_str()
        .or(ev["deprecatedLastTimestamp"].as_str())
        .or(ev["eventTime"].as_str())
        .or(ev["series"]["lastObservedTime"].as_str())
        .or(ev["metadata"]["creationTimestamp"].as_str())
        .map(|t| json!(t))
        .unwrap_or(Value::Null);
    let obj = if ev["involvedObject"].is_object() {
        &ev["involvedObject"]
    } else {
        &ev["regarding"]
    };
    let message = ev["message"].as_str().or(ev["note"].as_str()).unwrap_or("");
    vec![
        json!(age(&last, now)),
        json!(s(&ev["type"])),
        json!(s(&ev["reason"])),
        json!(format!(
            "{}/{}",
            s(&obj["kind"]).to_lowercase(),
            s(&obj["name"])
        )),
        json!(message.trim()),
    ]
}

/// The cells of one row, as many as the kind's columns.
pub fn row(info: &ResourceInfo, obj: &Value, now: jiff::Timestamp, width: usize) -> Vec<Value> {
    let name = obj["metadata"]["name"].clone();
    let created = json!(age(&obj["metadata"]["creationTimestamp"], now));
    let spec = &obj["spec"];
    let status = &obj["status"];
    let mut cells = match (info.group.as_str(), info.kind.as_str()) {
        ("", "Pod") => pod_row(obj, now),
        ("", "Node") => node_row(obj, now),
        ("", "Service") => service_row(obj, now),
        ("", "Event") | ("events.k8s.io", "Event") => event_row(obj, now),
        ("apps", "Deployment") => {
            let (c, i) = containers_images(&spec["template"]["spec"]);
            vec![
                name,
                json!(format!(
                    "{}/{}",
                    int(&status["readyReplicas"]),
                    spec["replicas"].as_i64().unwrap_or(1)
                )),
                json!(int(&status["updatedReplicas"])),
                json!(int(&status["availableReplicas"])),
                created,
                json!(c),
                json!(i),
                json!(label_selector(&spec["selector"])),
            ]
        }
        ("apps", "ReplicaSet") | ("", "ReplicationController") => {
            let (c, i) = containers_images(&spec["template"]["spec"]);
            vec![
                name,
                json!(spec["replicas"].as_i64().unwrap_or(1)),
                json!(int(&status["replicas"])),
                json!(int(&status["readyReplicas"])),
                created,
                json!(c),
                json!(i),
                json!(label_selector(&spec["selector"])),
            ]
        }
        ("apps", "DaemonSet") => {
            let (c, i) = containers_images(&spec["template"]["spec"]);
            vec![
                name,
                json!(int(&status["desiredNumberScheduled"])),
                json!(int(&status["currentNumberScheduled"])),
                json!(int(&status["numberReady"])),
                json!(int(&status["updatedNumberScheduled"])),
                json!(int(&status["numberAvailable"])),
                json!(or_none(label_selector(
                    &spec["template"]["spec"]["nodeSelector"]
                ))),
                created,
                json!(c),
                json!(i),
                json!(label_selector(&spec["selector"])),
            ]
        }
        ("apps", "StatefulSet") => {
            let (c, i) = containers_images(&spec["template"]["spec"]);
            vec![
                name,
                json!(format!(
                    "{}/{}",
                    int(&status["readyReplicas"]),
                    spec["replicas"].as_i64().unwrap_or(1)
                )),
                created,
                json!(c),
                json!(i),
            ]
        }
        ("apps", "ControllerRevision") => {
            let controller = obj["metadata"]["ownerReferences"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|o| o["controller"] == true)
                .map(|o| {
                    format!(
                        "{}.{}/{}",
                        s(&o["kind"]).to_lowercase(),
                        s(&o["apiVersion"]).split('/').next().unwrap_or(""),
                        s(&o["name"])
                    )
                })
                .unwrap_or_else(|| "<none>".into());
            vec![
                name,
                json!(controller),
                json!(int(&obj["revision"])),
                created,
            ]
        }
        ("batch", "Job") => {
            let (c, i) = containers_images(&spec["template"]["spec"]);
            let completions = match spec["completions"].as_i64() {
                Some(n) => format!("{}/{n}", int(&status["succeeded"])),
                None => format!(
                    "{}/1 of {}",
                    int(&status["succeeded"]),
                    spec["parallelism"].as_i64().unwrap_or(1)
                ),
            };
            let start = status["startTime"]
                .as_str()
                .and_then(|t| t.parse::<jiff::Timestamp>().ok());
            let end = status["completionTime"]
                .as_str()
                .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                .unwrap_or(now);
            let duration = start
                .map(|st| human_duration(end.duration_since(st).as_secs()))
                .unwrap_or_default();
            vec![
                name,
                json!(job_status(obj)),
                json!(completions),
                json!(duration),
                created,
                json!(c),
                json!(i),
                json!(label_selector(&spec["selector"])),
            ]
        }
        ("batch", "CronJob") => {
            let (c, i) = containers_images(&spec["jobTemplate"]["spec"]["template"]["spec"]);
            let last = if status["lastScheduleTime"].is_string() {
                age(&status["lastScheduleTime"], now)
            } else {
                "<none>".into()
            };
            vec![
                name,
                json!(s(&spec["schedule"])),
                json!(or_none(s(&spec["timeZone"]))),
                json!(spec["suspend"].as_bool().unwrap_or(false)),
                json!(status["active"].as_array().map(Vec::len).unwrap_or(0)),
                json!(last),
                created,
                json!(c),
                json!(i),
                json!(label_selector(&spec["jobTemplate"]["spec"]["selector"])),
            ]
        }
        ("", "Namespace") => vec![name, json!(s(&status["phase"])), created],
        ("", "ConfigMap") => {
            let n = obj["data"].as_object().map(|m| m.len()).unwrap_or(0)
                + obj["binaryData"].as_object().map(|m| m.len()).unwrap_or(0);
            vec![name, json!(n), created]
        }
        ("", "Secret") => {
            let n = obj["data"].as_object().map(|m| m.len()).unwrap_or(0)
                + obj["stringData"].as_object().map(|m| m.len()).unwrap_or(0);
            vec![name, json!(s(&obj["type"])), json!(n), created]
        }
        ("admissionregistration.k8s.io", "MutatingWebhookConfiguration")
        | ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration") => vec![
            name,
            json!(obj["webhooks"].as_array().map(Vec::len).unwrap_or(0)),
            created,
        ],
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy") => {
            let kind = &obj["spec"]["paramKind"];
            let param_kind = if kind.is_object() {
                format!("{}/{}", s(&kind["apiVersion"]), s(&kind["kind"]))
            } else {
                "<unset>".to_string()
            };
            let validations = obj["spec"]["validations"].as_array().map_or(0, Vec::len);
            vec![name, json!(validations), json!(param_kind), created]
        }
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding") => {
            let reference = &obj["spec"]["paramRef"];
            let param_ref = match (s(&reference["namespace"]), s(&reference["name"])) {
                _ if !reference.is_object() => "<unset>".to_string(),
                (ns, name) if !name.is_empty() && !ns.is_empty() => format!("{ns}/{name}"),
                (_, name) if !name.is_empty() => format!("*/{name}"),
                _ => label_selector(&reference["selector"]),
            };
            vec![
                name,
                json!(s(&obj["spec"]["policyName"])),
                json!(param_ref),
                created,
            ]
        }
        ("", "ServiceAccount") => vec![
            name,
            json!(obj["secrets"].as_array().map(Vec::len).unwrap_or(0)),
            created,
        ],
        ("", "Endpoints") => {
            let mut list = Vec::new();
            for sub in obj["subsets"].as_array().into_iter().flatten() {
                for a in sub["addresses"].as_array().into_iter().flatten() {
                    let ports: Vec<i64> = sub["ports"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|p| int(&p["port"]))
                        .collect();
                    if ports.is_empty() {
                        list.push(s(&a["ip"]));
                    }
                    for p in ports {
                        list.push(format!("{}:{p}", s(&a["ip"])));
                    }
                }
            }
            let shown = if list.len() > 3 {
                format!("{} + {} more...", list[..3].join(","), list.len() - 3)
            } else {
                list.join(",")
            };
            vec![name, json!(or_none(shown)), created]
        }
        ("discovery.k8s.io", "EndpointSlice") => {
            let ports: Vec<String> = obj["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| int(&p["port"]).to_string())
                .collect();
            let eps: Vec<String> = obj["endpoints"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|e| e["addresses"].as_array().cloned().unwrap_or_default())
                .map(|a| s(&a))
                .collect();
            let shown = if eps.len() > 3 {
                format!("{} + {} more...", eps[..3].join(","), eps.len() - 3)
            } else {
                eps.join(",")
            };
            vec![
                name,
                json!(s(&obj["addressType"])),
                json!(or_none(ports.join(","))),
                json!(or_none(shown)),
                created,
            ]
        }
        ("coordination.k8s.io", "Lease") => vec![name, json!(s(&spec["holderIdentity"])), created],
        ("", "PersistentVolumeClaim") => vec![
            name,
            json!(s(&status["phase"])),
            json!(s(&spec["volumeName"])),
            json!(s(&status["capacity"]["storage"])),
            json!(access_modes(&status["accessModes"])),
            json!(or_unset(s(&spec["storageClassName"]))),
            created,
        ],
        ("", "PersistentVolume") => {
            let claim = if spec["claimRef"].is_object() {
                format!(
                    "{}/{}",
                    s(&spec["claimRef"]["namespace"]),
                    s(&spec["claimRef"]["name"])
                )
            } else {
                String::new()
            };
            vec![
                name,
                json!(s(&spec["capacity"]["storage"])),
                json!(access_modes(&spec["accessModes"])),
                json!(s(&spec["persistentVolumeReclaimPolicy"])),
                json!(s(&status["phase"])),
                json!(claim),
                json!(or_unset(s(&spec["storageClassName"]))),
                created,
            ]
        }
        ("networking.k8s.io", "Ingress") => {
            let hosts: Vec<String> = spec["rules"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r["host"].as_str().map(str::to_string))
                .collect();
            let ports = if spec["tls"].as_array().is_some_and(|t| !t.is_empty()) {
                "80, 443"
            } else {
                "80"
            };
            let addrs: Vec<String> = status["loadBalancer"]["ingress"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|i| {
                    i["ip"]
                        .as_str()
                        .or(i["hostname"].as_str())
                        .unwrap_or("")
                        .to_string()
                })
                .collect();
            vec![
                name,
                json!(or_none(s(&spec["ingressClassName"]))),
                json!(if hosts.is_empty() {
                    "*".to_string()
                } else {
                    hosts.join(",")
                }),
                json!(addrs.join(",")),
                json!(ports),
                created,
            ]
        }
        ("autoscaling", "HorizontalPodAutoscaler") => {
            let target = &spec["scaleTargetRef"];
            let reference = format!(
                "{}/{}",
                target["kind"].as_str().unwrap_or_default(),
                target["name"].as_str().unwrap_or_default()
            );
            vec![
                name,
                json!(reference),
                json!(hpa_targets(spec, status)),
                json!(match spec["minReplicas"].as_i64() {
                    Some(n) => n.to_string(),
                    None => "<unset>".to_string(),
                }),
                json!(int(&spec["maxReplicas"])),
                json!(int(&status["currentReplicas"])),
                created,
            ]
        }
        ("policy", "PodDisruptionBudget") => {
            let show = |v: &Value| match v {
                Value::Null => "N/A".to_string(),
                Value::String(x) => x.clone(),
                other => other.to_string(),
            };
            vec![
                name,
                json!(show(&spec["minAvailable"])),
                json!(show(&spec["maxUnavailable"])),
                json!(int(&status["disruptionsAllowed"])),
                created,
            ]
        }
        ("scheduling.k8s.io", "PriorityClass") => vec![
            name,
            json!(int(&obj["value"])),
            json!(obj["globalDefault"].as_bool().unwrap_or(false)),
            created,
        ],
        ("apiextensions.k8s.io", "CustomResourceDefinition")
        | ("rbac.authorization.k8s.io", "Role")
        | ("rbac.authorization.k8s.io", "ClusterRole")
        | ("", "LimitRange") => vec![name, obj["metadata"]["creationTimestamp"].clone()],
        ("rbac.authorization.k8s.io", "RoleBinding")
        | ("rbac.authorization.k8s.io", "ClusterRoleBinding") => {
            let subjects = |kind: &str| -> String {
                obj["subjects"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|x| x["kind"] == kind)
                    .map(|x| {
                        if kind == "ServiceAccount" {
                            format!("{}/{}", s(&x["namespace"]), s(&x["name"]))
                        } else {
                            s(&x["name"])
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            vec![
                name,
                json!(format!(
                    "{}/{}",
                    s(&obj["roleRef"]["kind"]),
                    s(&obj["roleRef"]["name"])
                )),
                created,
                json!(subjects("User")),
                json!(subjects("Group")),
                json!(subjects("ServiceAccount")),
            ]
        }
        ("", "ResourceQuota") => {
            let pairs = |prefix_match: bool| -> String {
                let mut out: Vec<String> = status["hard"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter(|(k, _)| k.starts_with("limits.") == prefix_match)
                    .map(|(k, v)| {
                        format!(
                            "{k}: {}/{}",
                            status["used"][k].as_str().unwrap_or("0"),
                            v.as_str().unwrap_or("")
                        )
                    })
                    .collect();
                out.sort();
                out.join(", ")
            };
            vec![name, created, json!(pairs(false)), json!(pairs(true))]
        }
        _ => vec![name, created],
    };
    cells.resize(width, Value::Null);
    cells
}

fn access_modes(v: &Value) -> String {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|m| match m {
            "ReadWriteOnce" => "RWO",
            "ReadOnlyMany" => "ROX",
            "ReadWriteMany" => "RWX",
            "ReadWriteOncePod" => "RWOP",
            other => other,
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn or_unset(v: String) -> String {
    if v.is_empty() { "<unset>".into() } else { v }
}

/// An HPA's `Targets` column: `cpu: 330%/50%` per metric (`<unknown>`
/// before the first measurement), two at most and a count of the rest.
fn hpa_targets(spec: &Value, status: &Value) -> String {
    let specs = spec["metrics"].as_array().cloned().unwrap_or_default();
    if specs.is_empty() {
        return "<none>".to_string();
    }
    let currents = status["currentMetrics"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut parts = Vec::new();
    for (i, m) in specs.iter().enumerate() {
        let kind = m["type"].as_str().unwrap_or_default();
        let field = match kind {
            "Resource" => "resource",
            "ContainerResource" => "containerResource",
            "Pods" => "pods",
            "Object" => "object",
            "External" => "external",
            _ => "",
        };
        let source = &m[field];
        let target = &source["target"];
        let current = currents
            .get(i)
            .map(|c| &c[field]["current"])
            .unwrap_or(&Value::Null);
        let name = source["name"]
            .as_str()
            .or_else(|| source["metric"]["name"].as_str())
            .unwrap_or_default();
        let text = if let Some(want) = target["averageUtilization"].as_i64() {
            let now = current["averageUtilization"]
                .as_i64()
                .map_or("<unknown>".to_string(), |v| format!("{v}%"));
            format!("{now}/{want}%")
        } else {
            let want = target["averageValue"]
                .as_str()
                .or_else(|| target["value"].as_str())
                .unwrap_or("<unset>");
            let now = current["averageValue"]
                .as_str()
                .or_else(|| current["value"].as_str())
                .unwrap_or("<unknown>");
            format!("{now}/{want}")
        };
        parts.push(if name.is_empty() {
            text
        } else {
            format!("{name}: {text}")
        });
    }
    let more = parts.len().saturating_sub(2);
    parts.truncate(2);
    let mut out = parts.join(", ");
    if more > 0 {
        out.push_str(&format!(" + {more} more..."));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_duration_matches_upstream() {
        assert_eq!(human_duration(45), "45s");
        assert_eq!(human_duration(200), "3m20s");
        assert_eq!(human_duration(900), "15m");
        assert_eq!(human_duration(5 * 3600 + 600), "5h10m");
        assert_eq!(human_duration(20 * 3600), "20h");
        assert_eq!(human_duration(51 * 3600), "2d3h");
    }

    #[test]
    fn pod_status_column_shows_crashloopbackoff() {
        let pod = json!({"status": {"phase": "Running", "containerStatuses": [
            {"name": "c", "ready": false, "restartCount": 4, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
        ]}});
        assert_eq!(pod_status(&pod), "CrashLoopBackOff");
        let terminating = json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}, "status": {"phase": "Running"}});
        assert_eq!(pod_status(&terminating), "Terminating");
        let init = json!({"spec": {"initContainers": [{}, {}]}, "status": {"phase": "Pending", "initContainerStatuses": [
            {"state": {"terminated": {"exitCode": 0}}}, {"state": {"waiting": {"reason": "PodInitializing"}}}]}});
        assert_eq!(pod_status(&init), "Init:1/2");
    }
}
