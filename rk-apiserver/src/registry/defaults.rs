//! Defaulting, as kube-apiserver's generated defaulters apply it
//! (`pkg/apis/*/v1/defaults.go`): fields a client left unset get the
//! value upstream would store, so `kubectl get -o yaml` shows the same.

use rk_core::catalogue::ResourceInfo;
use serde_json::{Map, Value, json};

fn set_default(obj: &mut Value, key: &str, value: Value) {
    if let Some(m) = obj.as_object_mut()
        && m.get(key).is_none_or(Value::is_null)
    {
        m.insert(key.to_string(), value);
    }
}

/// The elements of the array at `obj[key]`, if there is one. (Indexing a
/// `Value` mutably would insert a `null` for a missing key, which would then
/// be stored.)
fn items<'a>(obj: &'a mut Value, key: &str) -> impl Iterator<Item = &'a mut Value> {
    obj.get_mut(key)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
}

fn object<'a>(obj: &'a mut Value, key: &str) -> &'a mut Value {
    if !obj[key].is_object() {
        obj[key] = Value::Object(Map::new());
    }
    &mut obj[key]
}

fn image_pull_policy(image: &str) -> &'static str {
    // `latest` (explicit or implied) is pulled every time; digests and other
    // tags only when missing.
    let without_digest = image.split('@').next().unwrap_or(image);
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    match last.split_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

fn probe(p: &mut Value) {
    if !p.is_object() {
        return;
    }
    set_default(p, "timeoutSeconds", json!(1));
    set_default(p, "periodSeconds", json!(10));
    set_default(p, "successThreshold", json!(1));
    set_default(p, "failureThreshold", json!(3));
    if p["httpGet"].is_object() {
        set_default(&mut p["httpGet"], "path", json!("/"));
        set_default(&mut p["httpGet"], "scheme", json!("HTTP"));
    }
}

fn container(c: &mut Value) {
    if !c.is_object() {
        return;
    }
    let image = c["image"].as_str().unwrap_or("").to_string();
    set_default(c, "imagePullPolicy", json!(image_pull_policy(&image)));
    set_default(c, "terminationMessagePath", json!("/dev/termination-log"));
    set_default(c, "terminationMessagePolicy", json!("File"));
    set_default(c, "resources", json!({}));
    for port in items(c, "ports") {
        set_default(port, "protocol", json!("TCP"));
    }
    for key in ["livenessProbe", "readinessProbe", "startupProbe"] {
        probe(&mut c[key]);
    }
    if let Some(m) = c.as_object_mut() {
        for key in ["livenessProbe", "readinessProbe", "startupProbe"] {
            if m.get(key).is_some_and(Value::is_null) {
                m.remove(key);
            }
        }
    }
    for env in items(c, "env") {
        if env["valueFrom"]["fieldRef"].is_object() {
            set_default(&mut env["valueFrom"]["fieldRef"], "apiVersion", json!("v1"));
        }
    }
}

/// A pod's container without a request for a resource it has a limit for
/// requests the limit (upstream's `SetDefaults_Pod`; not for templates).
fn requests_from_limits(c: &mut Value) {
    let Some(limits) = c["resources"]["limits"].as_object().cloned() else {
        return;
    };
    if limits.is_empty() || !c["resources"].is_object() {
        return;
    }
    let requests = object(&mut c["resources"], "requests");
    for (name, q) in limits {
        set_default(requests, &name, q);
    }
}

/// Pod spec defaults (also applied to every pod template).
pub fn pod_spec(spec: &mut Value) {
    if !spec.is_object() {
        return;
    }
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    set_default(spec, "securityContext", json!({}));
    set_default(spec, "enableServiceLinks", json!(true));
    for key in ["containers", "initContainers", "ephemeralContainers"] {
        for c in items(spec, key) {
            container(c);
        }
    }
    for v in items(spec, "volumes") {
        for source in ["secret", "configMap", "downwardAPI", "projected"] {
            if v[source].is_object() {
                set_default(&mut v[source], "defaultMode", json!(420));
            }
        }
    }
    if let Some(m) = spec.as_object_mut()
        && m.get("serviceAccountName")
            .and_then(Value::as_str)
            .is_some()
        && m.get("serviceAccount").is_none()
    {
        let sa = m["serviceAccountName"].clone();
        m.insert("serviceAccount".into(), sa);
    }
}

/// The tolerations the DefaultTolerationSeconds admission plugin adds.
fn default_tolerations(spec: &mut Value) {
    let list = spec["tolerations"].as_array().cloned().unwrap_or_default();
    let mut out = list.clone();
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        let has = list.iter().any(|t| {
            (t["key"] == key || (t["key"].is_null() && t["operator"] == "Exists"))
                && (t["effect"] == "NoExecute" || t["effect"].is_null())
        });
        if !has {
            out.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
        }
    }
    spec["tolerations"] = Value::Array(out);
}

fn template(obj: &mut Value, path: &[&str]) {
    let mut cur = obj;
    for p in path {
        if !cur[*p].is_object() {
            return;
        }
        cur = &mut cur[*p];
    }
    pod_spec(&mut cur["spec"]);
}

/// What a new object gets after its fields were recorded for its manager
/// and the server set its own (uid): a Job's generated selector (upstream
/// makes it in the Job's validation, once the uid exists), and what
/// upstream's admission plugins add to a pod — its default tolerations
/// (`DefaultTolerationSeconds`); its priority comes from
/// [`crate::admission::priority`].
pub fn on_create(info: &ResourceInfo, obj: &mut Value) {
    match (info.group.as_str(), info.kind.as_str()) {
        ("", "Pod") if obj["spec"].is_object() => {
            default_tolerations(&mut obj["spec"]);
        }
        ("batch", "Job") if obj["spec"].is_object() => job_selector(obj),
        _ => {}
    }
}

/// Apply upstream's defaults to an object of `info`.
pub fn apply_defaults(info: &ResourceInfo, obj: &mut Value) {
    match (info.group.as_str(), info.kind.as_str()) {
        ("", "Pod") => {
            let spec = object(obj, "spec");
            pod_spec(spec);
            for key in ["containers", "initContainers"] {
                for c in items(spec, key) {
                    requests_from_limits(c);
                }
            }
        }
        ("", "PodTemplate") => template(obj, &["template"]),
        ("", "ReplicationController") => {
            let spec = object(obj, "spec");
            set_default(spec, "replicas", json!(1));
            let labels = spec["template"]["metadata"]["labels"].clone();
            if spec["selector"].as_object().is_none_or(Map::is_empty) && labels.is_object() {
                spec["selector"] = labels.clone();
            }
            if obj["metadata"]["labels"]
                .as_object()
                .is_none_or(Map::is_empty)
                && labels.is_object()
            {
                obj["metadata"]["labels"] = labels;
            }
            template(obj, &["spec", "template"]);
        }
        ("apps", "Deployment") => {
            let spec = object(obj, "spec");
            set_default(spec, "replicas", json!(1));
            set_default(spec, "revisionHistoryLimit", json!(10));
            set_default(spec, "progressDeadlineSeconds", json!(600));
            let strategy = object(spec, "strategy");
            set_default(strategy, "type", json!("RollingUpdate"));
            if strategy["type"] == "RollingUpdate" {
                let r = object(strategy, "rollingUpdate");
                set_default(r, "maxUnavailable", json!("25%"));
                set_default(r, "maxSurge", json!("25%"));
            }
            template(obj, &["spec", "template"]);
        }
        ("apps", "ReplicaSet") => {
            set_default(object(obj, "spec"), "replicas", json!(1));
            template(obj, &["spec", "template"]);
        }
        ("apps", "DaemonSet") => {
            let spec = object(obj, "spec");
            set_default(spec, "revisionHistoryLimit", json!(10));
            let strategy = object(spec, "updateStrategy");
            set_default(strategy, "type", json!("RollingUpdate"));
            if strategy["type"] == "RollingUpdate" {
                let r = object(strategy, "rollingUpdate");
                set_default(r, "maxUnavailable", json!(1));
                set_default(r, "maxSurge", json!(0));
            }
            template(obj, &["spec", "template"]);
        }
        ("apps", "StatefulSet") => {
            let spec = object(obj, "spec");
            set_default(spec, "replicas", json!(1));
            set_default(spec, "podManagementPolicy", json!("OrderedReady"));
            set_default(spec, "revisionHistoryLimit", json!(10));
            let strategy = object(spec, "updateStrategy");
            set_default(strategy, "type", json!("RollingUpdate"));
            if strategy["type"] == "RollingUpdate" {
                set_default(strategy, "rollingUpdate", json!({"partition": 0}));
            }
            set_default(
                spec,
                "persistentVolumeClaimRetentionPolicy",
                json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
            );
            for pvc in items(spec, "volumeClaimTemplates") {
                set_default(object(pvc, "spec"), "volumeMode", json!("Filesystem"));
            }
            template(obj, &["spec", "template"]);
        }
        ("batch", "Job") => {
            job_spec(object(obj, "spec"));
            job_selector(obj);
        }
        ("batch", "CronJob") => {
            let spec = object(obj, "spec");
            set_default(spec, "concurrencyPolicy", json!("Allow"));
            set_default(spec, "suspend", json!(false));
            set_default(spec, "successfulJobsHistoryLimit", json!(3));
            set_default(spec, "failedJobsHistoryLimit", json!(1));
            if spec["jobTemplate"].is_object() {
                job_spec(object(&mut spec["jobTemplate"], "spec"));
            }
        }
        ("", "Service") => {
            let spec = object(obj, "spec");
            set_default(spec, "type", json!("ClusterIP"));
            set_default(spec, "sessionAffinity", json!("None"));
            if spec["type"] != "ExternalName" {
                set_default(spec, "internalTrafficPolicy", json!("Cluster"));
                set_default(spec, "ipFamilyPolicy", json!("SingleStack"));
                set_default(spec, "ipFamilies", json!(["IPv4"]));
            }
            if matches!(
                spec["type"].as_str(),
                Some("NodePort") | Some("LoadBalancer")
            ) {
                set_default(spec, "externalTrafficPolicy", json!("Cluster"));
            }
            for p in items(spec, "ports") {
                set_default(p, "protocol", json!("TCP"));
                if p["targetPort"].is_null() {
                    p["targetPort"] = p["port"].clone();
                }
            }
        }
        ("", "Namespace") => {
            // Upstream's defaulting (and its strategy's Canonicalize, for a
            // generated name): the namespace's name as a label, always.
            if let Some(name) = obj["metadata"]["name"].as_str().map(str::to_string)
                && !name.is_empty()
            {
                let labels = object(object(obj, "metadata"), "labels");
                labels["kubernetes.io/metadata.name"] = json!(name);
            }
        }
        ("", "Secret") => {
            set_default(obj, "type", json!("Opaque"));
            // `stringData` is write-only: it is merged into `data`, base64-encoded.
            if let Some(Value::Object(string_data)) =
                obj.as_object_mut().and_then(|m| m.remove("stringData"))
            {
                use base64::Engine as _;
                let data = object(obj, "data");
                for (k, v) in string_data {
                    let text = v.as_str().unwrap_or_default();
                    data[k.as_str()] =
                        json!(base64::engine::general_purpose::STANDARD.encode(text));
                }
            }
        }
        ("", "PersistentVolumeClaim") => {
            set_default(object(obj, "spec"), "volumeMode", json!("Filesystem"));
        }
        ("", "PersistentVolume") => {
            let spec = object(obj, "spec");
            set_default(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
            set_default(spec, "volumeMode", json!("Filesystem"));
        }
        ("scheduling.k8s.io", "PriorityClass") => {
            set_default(obj, "preemptionPolicy", json!("PreemptLowerPriority"))
        }
        (
            "admissionregistration.k8s.io",
            kind @ ("MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration"),
        ) => {
            let mutating = kind == "MutatingWebhookConfiguration";
            for webhook in obj["webhooks"].as_array_mut().into_iter().flatten() {
                webhook_defaults(webhook, mutating);
            }
        }
        (
            "admissionregistration.k8s.io",
            "ValidatingAdmissionPolicy" | "MutatingAdmissionPolicy",
        ) => {
            let spec = &mut obj["spec"];
            if spec.is_object() {
                set_default(spec, "failurePolicy", json!("Fail"));
                let constraints = &mut spec["matchConstraints"];
                if constraints.is_object() {
                    set_default(constraints, "matchPolicy", json!("Equivalent"));
                    set_default(constraints, "namespaceSelector", json!({}));
                    set_default(constraints, "objectSelector", json!({}));
                }
            }
        }
        ("discovery.k8s.io", "EndpointSlice") => {
            for p in items(obj, "ports") {
                set_default(p, "protocol", json!("TCP"));
            }
        }
        ("", "Endpoints") => {
            for s in items(obj, "subsets") {
                for p in items(s, "ports") {
                    set_default(p, "protocol", json!("TCP"));
                }
            }
        }
        ("networking.k8s.io", "NetworkPolicy") => {
            let spec = object(obj, "spec");
            if spec["policyTypes"].is_null() {
                let mut types = vec![json!("Ingress")];
                if spec["egress"].is_array() {
                    types.push(json!("Egress"));
                }
                spec["policyTypes"] = Value::Array(types);
            }
        }
        ("policy", "PodDisruptionBudget") => {}
        _ => {}
    }
}

fn job_spec(spec: &mut Value) {
    if !spec.is_object() {
        return;
    }
    let completions_set = !spec["completions"].is_null();
    let parallelism_set = !spec["parallelism"].is_null();
    if !completions_set && !parallelism_set {
        spec["completions"] = json!(1);
        spec["parallelism"] = json!(1);
    } else {
        set_default(spec, "parallelism", json!(1));
    }
    set_default(spec, "backoffLimit", json!(6));
    set_default(spec, "completionMode", json!("NonIndexed"));
    set_default(spec, "suspend", json!(false));
    set_default(spec, "manualSelector", Value::Null);
    if let Some(m) = spec.as_object_mut()
        && m.get("manualSelector").is_some_and(Value::is_null)
    {
        m.remove("manualSelector");
    }
    set_default(spec, "podReplacementPolicy", json!("TerminatingOrFailed"));
    if spec["template"].is_object() {
        pod_spec(object(&mut spec["template"], "spec"));
    }
}

/// Upstream's `generateSelector`: a Job without `manualSelector: true` and
/// without a selector selects its pods by its uid, and its template gets the
/// uid and name labels (current and legacy spellings), unless already set.
fn job_selector(obj: &mut Value) {
    let uid = obj["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let name = obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let spec = &mut obj["spec"];
    if uid.is_empty() || spec["manualSelector"] == json!(true) || !spec["selector"].is_null() {
        return;
    }
    let labels = object(object(object(spec, "template"), "metadata"), "labels");
    for (key, value) in [
        ("batch.kubernetes.io/controller-uid", &uid),
        ("controller-uid", &uid),
        ("batch.kubernetes.io/job-name", &name),
        ("job-name", &name),
    ] {
        set_default(labels, key, json!(value));
    }
    spec["selector"] = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
}

/// A webhook of an admission webhook configuration, as upstream's v1
/// `SetDefaults_ValidatingWebhook`/`SetDefaults_MutatingWebhook`.
fn webhook_defaults(webhook: &mut Value, mutating: bool) {
    if !webhook.is_object() {
        return;
    }
    set_default(webhook, "failurePolicy", json!("Fail"));
    set_default(webhook, "matchPolicy", json!("Equivalent"));
    set_default(webhook, "namespaceSelector", json!({}));
    set_default(webhook, "objectSelector", json!({}));
    set_default(webhook, "timeoutSeconds", json!(10));
    if mutating {
        set_default(webhook, "reinvocationPolicy", json!("Never"));
    }
    for rule in webhook["rules"].as_array_mut().into_iter().flatten() {
        set_default(rule, "scope", json!("*"));
    }
    if webhook["clientConfig"]["service"].is_object() {
        set_default(&mut webhook["clientConfig"]["service"], "port", json!(443));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rk_core::catalogue::Catalogue;

    fn info(group: &str, plural: &str) -> std::sync::Arc<ResourceInfo> {
        let cat = Catalogue::builtin();
        let version = if group == "autoscaling" { "v2" } else { "v1" };
        cat.get(group, version, plural).unwrap()
    }

    #[test]
    fn pod_defaults_match_upstream() {
        let mut pod = json!({"spec": {"containers": [{"name": "c", "image": "nginx", "ports": [{"containerPort": 80}]},
                                                     {"name": "d", "image": "nginx:1.27"}]}});
        apply_defaults(&info("", "pods"), &mut pod);
        let spec = &pod["spec"];
        assert_eq!(spec["restartPolicy"], "Always");
        assert_eq!(spec["dnsPolicy"], "ClusterFirst");
        assert_eq!(spec["terminationGracePeriodSeconds"], 30);
        assert_eq!(spec["schedulerName"], "default-scheduler");
        assert_eq!(spec["containers"][0]["imagePullPolicy"], "Always");
        assert_eq!(spec["containers"][1]["imagePullPolicy"], "IfNotPresent");
        assert_eq!(spec["containers"][0]["ports"][0]["protocol"], "TCP");
        assert_eq!(
            spec["containers"][0]["terminationMessagePath"],
            "/dev/termination-log"
        );
        // Tolerations come from admission, on create only.
        assert!(spec["tolerations"].is_null());
        on_create(&info("", "pods"), &mut pod);
        assert_eq!(pod["spec"]["tolerations"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn deployment_strategy_defaults_to_rolling_update_25_percent() {
        let mut d = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "x:1"}]}}}});
        apply_defaults(&info("apps", "deployments"), &mut d);
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
        assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
        assert_eq!(d["spec"]["progressDeadlineSeconds"], 600);
        assert_eq!(d["spec"]["template"]["spec"]["restartPolicy"], "Always");
    }

    #[test]
    fn service_target_port_defaults_to_port() {
        let mut s = json!({"spec": {"ports": [{"port": 80}]}});
        apply_defaults(&info("", "services"), &mut s);
        assert_eq!(s["spec"]["ports"][0]["targetPort"], 80);
        assert_eq!(s["spec"]["type"], "ClusterIP");
    }

    #[test]
    fn job_with_neither_completions_nor_parallelism_gets_one_of_each() {
        let mut j = json!({"spec": {"template": {"spec": {"containers": []}}}});
        apply_defaults(&info("batch", "jobs"), &mut j);
        assert_eq!(j["spec"]["completions"], 1);
        assert_eq!(j["spec"]["parallelism"], 1);
        assert_eq!(j["spec"]["backoffLimit"], 6);
    }

    #[test]
    fn job_selector_is_generated_from_the_uid_unless_manual() {
        let mut j = json!({"metadata": {"name": "pi", "uid": "u1"},
                           "spec": {"template": {"spec": {"containers": []}}}});
        apply_defaults(&info("batch", "jobs"), &mut j);
        assert_eq!(
            j["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"],
            "u1"
        );
        let labels = &j["spec"]["template"]["metadata"]["labels"];
        assert_eq!(labels["batch.kubernetes.io/job-name"], "pi");
        assert_eq!(labels["job-name"], "pi");
        assert_eq!(labels["controller-uid"], "u1");
        let mut m = json!({"metadata": {"name": "pi", "uid": "u1"},
                           "spec": {"manualSelector": true, "template": {"spec": {"containers": []}}}});
        apply_defaults(&info("batch", "jobs"), &mut m);
        assert!(m["spec"]["selector"].is_null());
    }

    /// Defaulting adds values, never `null`s for the lists it walks
    /// (upstream stores no `env: null` on a pod that had no env).
    #[test]
    fn defaulting_a_bare_pod_adds_no_nulls() {
        let mut p = json!({"spec": {"containers": [{"name": "c", "image": "x"}]}});
        apply_defaults(&info("", "pods"), &mut p);
        fn has_null(v: &Value) -> bool {
            match v {
                Value::Null => true,
                Value::Array(a) => a.iter().any(has_null),
                Value::Object(m) => m.values().any(has_null),
                _ => false,
            }
        }
        assert!(!has_null(&p), "{p:#}");
        assert_eq!(p["spec"]["containers"][0]["imagePullPolicy"], "Always");
    }
}
