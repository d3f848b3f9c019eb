//! Whole-system tests: the real kubectl 1.37 against an rk API server.

mod common;

use common::Cluster;

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web, tier: front}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: server
        image: python:3.12
        command: ["python3", "-m", "http.server"]
        ports:
        - containerPort: 8000
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_creates_then_updates_and_get_shows_table() {
    let c = Cluster::start().await;
    let out = c.kubectl_in(&["apply", "-f", "-"], Some(DEPLOYMENT)).await;
    assert_eq!(out.trim(), "deployment.apps/web created");
    let out = c.kubectl_in(&["apply", "-f", "-"], Some(DEPLOYMENT)).await;
    assert_eq!(out.trim(), "deployment.apps/web unchanged");
    let changed = DEPLOYMENT.replace("replicas: 2", "replicas: 5");
    let out = c.kubectl_in(&["apply", "-f", "-"], Some(&changed)).await;
    assert_eq!(out.trim(), "deployment.apps/web configured");
    let d = c.get_json(&["deployment", "web"]).await;
    assert_eq!(d["spec"]["replicas"], 5);
    assert_eq!(d["metadata"]["generation"], 2);
    // Defaults were applied as upstream applies them.
    assert_eq!(d["spec"]["strategy"]["type"], "RollingUpdate");
    assert_eq!(d["spec"]["template"]["spec"]["restartPolicy"], "Always");
    assert!(
        d["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .is_string()
    );
    let table = c.kubectl(&["get", "deployments"]).await;
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        vec!["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    );
    assert!(table.lines().nth(1).unwrap().starts_with("web "), "{table}");
    let wide = c.kubectl(&["get", "deploy", "-o", "wide"]).await;
    assert!(wide.lines().next().unwrap().contains("SELECTOR"), "{wide}");
    assert!(wide.contains("python:3.12"), "{wide}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_apply_records_managers_and_reports_conflicts() {
    let c = Cluster::start().await;
    let out = c
        .kubectl_in(&["apply", "--server-side", "-f", "-"], Some(DEPLOYMENT))
        .await;
    assert_eq!(out.trim(), "deployment.apps/web serverside-applied");
    let d = c
        .get_json(&["deployment", "web", "--show-managed-fields"])
        .await;
    let managers: Vec<&str> = d["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["manager"].as_str())
        .collect();
    assert!(managers.contains(&"kubectl"), "{managers:?}");
    // Another manager changes replicas; applying a different value conflicts.
    c.kubectl(&["scale", "deployment", "web", "--replicas=7"])
        .await;
    let changed = DEPLOYMENT.replace("replicas: 2", "replicas: 3");
    let out = c
        .kubectl_output(&["apply", "--server-side", "-f", "-"], Some(&changed), &[])
        .await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("conflict"), "{err}");
    let out = c
        .kubectl_in(
            &["apply", "--server-side", "--force-conflicts", "-f", "-"],
            Some(&changed),
        )
        .await;
    assert!(out.contains("serverside-applied"));
    assert_eq!(
        c.get_json(&["deployment", "web"]).await["spec"]["replicas"],
        3
    );
    // An object exported with its status applies cleanly: the status
    // someone else wrote is neither a conflict nor overwritten.
    c.kubectl(&[
        "patch",
        "deployment",
        "web",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"replicas":3,"readyReplicas":1}}"#,
    ])
    .await;
    let exported = c
        .kubectl(&["get", "deployment", "web", "-o", "yaml"])
        .await
        .replace("readyReplicas: 1", "readyReplicas: 9");
    let out = c
        .kubectl_in(&["apply", "--server-side", "-f", "-"], Some(&exported))
        .await;
    assert!(out.contains("serverside-applied"), "{out}");
    let d = c.get_json(&["deployment", "web"]).await;
    assert_eq!(d["status"]["readyReplicas"], 1);
    let out = c
        .kubectl_output(&["diff", "--server-side", "-f", "-"], Some(&exported), &[])
        .await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_formats_selectors_and_raw() {
    let c = Cluster::start().await;
    c.kubectl(&["create", "configmap", "a", "--from-literal=k=v"])
        .await;
    c.kubectl(&["create", "configmap", "b", "--from-literal=k=w"])
        .await;
    c.kubectl(&["label", "configmap", "a", "team=blue"]).await;
    c.kubectl(&["annotate", "configmap", "a", "note=hello"])
        .await;
    let names = c
        .kubectl(&[
            "get",
            "cm",
            "-l",
            "team=blue",
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ])
        .await;
    assert_eq!(names, "a");
    let names = c
        .kubectl(&[
            "get",
            "cm",
            "-l",
            "team!=blue",
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ])
        .await;
    assert_eq!(names, "b");
    let names = c
        .kubectl(&[
            "get",
            "cm",
            "--field-selector",
            "metadata.name=b",
            "-o",
            "name",
        ])
        .await;
    assert_eq!(names.trim(), "configmap/b");
    let yaml = c.kubectl(&["get", "cm", "a", "-o", "yaml"]).await;
    assert!(
        yaml.contains("note: hello") && yaml.contains("team: blue") && yaml.contains("k: v"),
        "{yaml}"
    );
    let raw = c
        .kubectl(&["get", "--raw", "/api/v1/namespaces/default/configmaps/a"])
        .await;
    let v: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(v["data"]["k"], "v");
    let err = c
        .kubectl_fails(&["get", "cm", "--field-selector", "spec.nope=1"])
        .await;
    assert!(err.contains("field label not supported"), "{err}");
    let err = c.kubectl_fails(&["get", "cm", "missing"]).await;
    assert!(err.contains("configmaps \"missing\" not found"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_types_label_annotate_and_edit() {
    let c = Cluster::start().await;
    c.kubectl_in(&["apply", "-f", "-"], Some(DEPLOYMENT)).await;
    // Strategic merge: containers merge by name.
    c.kubectl(&["patch", "deployment", "web", "-p", r#"{"spec":{"template":{"spec":{"containers":[{"name":"server","image":"python:3.13"}]}}}}"#]).await;
    let d = c.get_json(&["deployment", "web"]).await;
    let containers = d["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    assert_eq!(containers.len(), 1);
    assert_eq!(containers[0]["image"], "python:3.13");
    assert_eq!(containers[0]["command"][0], "python3");
    // Merge patch.
    c.kubectl(&[
        "patch",
        "deployment",
        "web",
        "--type",
        "merge",
        "-p",
        r#"{"metadata":{"labels":{"tier":null,"x":"y"}}}"#,
    ])
    .await;
    let d = c.get_json(&["deployment", "web"]).await;
    assert!(d["metadata"]["labels"]["tier"].is_null());
    assert_eq!(d["metadata"]["labels"]["x"], "y");
    // JSON patch.
    c.kubectl(&[
        "patch",
        "deployment",
        "web",
        "--type",
        "json",
        "-p",
        r#"[{"op":"replace","path":"/spec/replicas","value":4}]"#,
    ])
    .await;
    assert_eq!(
        c.get_json(&["deployment", "web"]).await["spec"]["replicas"],
        4
    );
    // A failing JSON patch test is refused.
    let err = c
        .kubectl_fails(&[
            "patch",
            "deployment",
            "web",
            "--type",
            "json",
            "-p",
            r#"[{"op":"test","path":"/spec/replicas","value":9}]"#,
        ])
        .await;
    assert!(!err.is_empty());
    // Edit with a scripted editor.
    let editor = c.dir.path().join("editor.sh");
    std::fs::write(
        &editor,
        "#!/bin/sh\nsed -i 's/replicas: 4/replicas: 6/' \"$1\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = c
        .kubectl_output(
            &["edit", "deployment", "web"],
            None,
            &[("KUBE_EDITOR", editor.to_str().unwrap())],
        )
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        c.get_json(&["deployment", "web"]).await["spec"]["replicas"],
        6
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_create_and_delete_variants() {
    let c = Cluster::start().await;
    c.kubectl(&["create", "namespace", "shop"]).await;
    c.kubectl(&[
        "create",
        "deployment",
        "api",
        "--image=python:3.12",
        "-n",
        "shop",
        "--replicas=2",
    ])
    .await;
    c.kubectl(&[
        "create",
        "secret",
        "generic",
        "creds",
        "--from-literal=password=s3cret",
        "-n",
        "shop",
    ])
    .await;
    let s = c.get_json(&["secret", "creds", "-n", "shop"]).await;
    assert_eq!(s["type"], "Opaque");
    assert_eq!(s["data"]["password"], "czNjcmV0");
    let out = c
        .kubectl(&["scale", "deployment", "api", "-n", "shop", "--replicas=5"])
        .await;
    assert_eq!(out.trim(), "deployment.apps/api scaled");
    assert_eq!(
        c.get_json(&["deployment", "api", "-n", "shop"]).await["spec"]["replicas"],
        5
    );
    // Orphan deletion leaves the orphan finalizer for the garbage collector.
    let out = c
        .kubectl(&[
            "delete",
            "deployment",
            "api",
            "-n",
            "shop",
            "--cascade=orphan",
            "--wait=false",
        ])
        .await;
    // kubectl 1.37 adds " from shop namespace"; older ones stop at "deleted".
    assert!(
        out.trim().starts_with("deployment.apps \"api\" deleted"),
        "{out}"
    );
    let d = c.get_json(&["deployment", "api", "-n", "shop"]).await;
    assert!(d["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(d["metadata"]["finalizers"][0], "orphan");
    // Removing the finalizer finishes the deletion.
    c.kubectl(&[
        "patch",
        "deployment",
        "api",
        "-n",
        "shop",
        "--type",
        "json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ])
    .await;
    c.kubectl_fails(&["get", "deployment", "api", "-n", "shop"])
        .await;
    // Background deletion is immediate for objects without finalizers.
    c.kubectl(&[
        "delete",
        "secret",
        "creds",
        "-n",
        "shop",
        "--cascade=background",
    ])
    .await;
    c.kubectl_fails(&["get", "secret", "creds", "-n", "shop"])
        .await;
    // Foreground deletion records its finalizer.
    c.kubectl(&["create", "configmap", "fg", "-n", "shop"])
        .await;
    c.kubectl(&[
        "delete",
        "configmap",
        "fg",
        "-n",
        "shop",
        "--cascade=foreground",
        "--wait=false",
    ])
    .await;
    let cm = c.get_json(&["configmap", "fg", "-n", "shop"]).await;
    assert_eq!(cm["metadata"]["finalizers"][0], "foregroundDeletion");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_explain_auth_and_wait() {
    let c = Cluster::start().await;
    let res = c.kubectl(&["api-resources"]).await;
    assert!(
        res.lines().any(|l| l.starts_with("deployments ")
            && l.contains("deploy")
            && l.contains("apps/v1")),
        "{res}"
    );
    assert!(
        res.lines()
            .any(|l| l.starts_with("pods ") && l.contains("po")),
        "{res}"
    );
    let versions = c.kubectl(&["api-versions"]).await;
    assert!(versions.lines().any(|l| l == "apps/v1"));
    assert!(versions.lines().any(|l| l == "v1"));
    let explain = c.kubectl(&["explain", "deployment.spec.replicas"]).await;
    assert!(
        explain.contains("replicas") && explain.contains("integer"),
        "{explain}"
    );
    let yes = c.kubectl(&["auth", "can-i", "create", "pods"]).await;
    assert_eq!(yes.trim(), "yes");
    // kubectl create token: a JWT for the service account, 10 minutes at least.
    c.kubectl(&["create", "serviceaccount", "robot"]).await;
    let token = c
        .kubectl(&["create", "token", "robot", "--duration=20m"])
        .await;
    assert_eq!(token.trim().split('.').count(), 3, "{token}");
    let short = c
        .kubectl_fails(&["create", "token", "robot", "--duration=1m"])
        .await;
    assert!(short.contains("less than 10 minutes"), "{short}");
    let v = c.kubectl(&["version", "-o", "json"]).await;
    let v: serde_json::Value = serde_json::from_str(&v).unwrap();
    assert_eq!(v["serverVersion"]["minor"], "37");
    c.kubectl(&["create", "configmap", "w"]).await;
    c.kubectl(&["label", "configmap", "w", "ready=yes"]).await;
    let out = c
        .kubectl(&[
            "wait",
            "--for=jsonpath={.metadata.labels.ready}=yes",
            "configmap/w",
            "--timeout=10s",
        ])
        .await;
    assert!(out.contains("condition met"), "{out}");
    let out = c.kubectl(&["describe", "configmap", "w"]).await;
    assert!(out.contains("Name:") && out.contains("ready=yes"), "{out}");
}

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: webapps.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: webapps, singular: webapp, kind: WebApp, shortNames: [wa]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
      scale: {specReplicasPath: .spec.replicas, statusReplicasPath: .status.replicas}
    additionalPrinterColumns:
    - {name: Replicas, type: integer, jsonPath: .spec.replicas}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [image]
            properties:
              image: {type: string}
              replicas: {type: integer, minimum: 0}
          status:
            type: object
            properties:
              replicas: {type: integer}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crd_then_custom_resource() {
    let c = Cluster::start().await;
    let out = c.kubectl_in(&["apply", "-f", "-"], Some(CRD)).await;
    assert!(
        out.contains("customresourcedefinition.apiextensions.k8s.io/webapps.example.com created"),
        "{out}"
    );
    let wa = "apiVersion: example.com/v1\nkind: WebApp\nmetadata: {name: shop}\nspec: {image: nginx, replicas: 2, extra: dropped}\n";
    // kubectl validates strictly by default: the server refuses unknown fields...
    let out = c.kubectl_output(&["apply", "-f", "-"], Some(wa), &[]).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("strict decoding error: unknown field \"spec.extra\""),
        "{err}"
    );
    // ...and without validation it prunes them.
    let out = c
        .kubectl_in(&["apply", "--validate=false", "-f", "-"], Some(wa))
        .await;
    assert!(out.contains("webapp.example.com/shop created"), "{out}");
    let obj = c.get_json(&["wa", "shop"]).await;
    assert_eq!(obj["spec"]["replicas"], 2);
    assert!(obj["spec"]["extra"].is_null(), "unknown fields are pruned");
    let table = c.kubectl(&["get", "webapps"]).await;
    assert!(
        table.lines().next().unwrap().contains("REPLICAS"),
        "{table}"
    );
    c.kubectl(&["scale", "webapp", "shop", "--replicas=4"])
        .await;
    assert_eq!(c.get_json(&["wa", "shop"]).await["spec"]["replicas"], 4);
    let bad =
        "apiVersion: example.com/v1\nkind: WebApp\nmetadata: {name: bad}\nspec: {replicas: -1}\n";
    let out = c
        .kubectl_output(&["apply", "-f", "-"], Some(bad), &[])
        .await;
    assert!(!out.status.success());
    let crd = c.get_json(&["crd", "webapps.example.com"]).await;
    let established = crd["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["type"] == "Established" && c["status"] == "True");
    assert!(established);
    c.kubectl(&["delete", "crd", "webapps.example.com"]).await;
    // kubectl's discovery cache may still name the kind; either way the
    // server no longer serves it.
    let err = c.kubectl_fails(&["get", "webapps"]).await;
    assert!(
        err.contains("the server doesn't have a resource type")
            || err.contains("the server could not find the requested resource"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_watch_streams_changes() {
    let c = Cluster::start().await;
    c.kubectl(&["create", "configmap", "first"]).await;
    let kubeconfig = c.kubeconfig.clone();
    let cache = c.dir.path().join("kube-cache");
    let mut child = tokio::process::Command::new(common::kubectl_path())
        .args(["get", "configmaps", "-w", "--output-watch-events"])
        .env("KUBECONFIG", &kubeconfig)
        .env("KUBECACHEDIR", &cache)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut created = false;
    while let Ok(Ok(Some(line))) = tokio::time::timeout_at(deadline, lines.next_line()).await {
        seen.push(line.clone());
        if line.contains("first") && !created {
            created = true;
            c.kubectl(&["create", "configmap", "second"]).await;
        }
        if line.contains("second") && line.contains("ADDED") {
            break;
        }
    }
    let _ = child.kill().await;
    assert!(
        seen.iter()
            .any(|l| l.contains("ADDED") && l.contains("second")),
        "{seen:?}"
    );
}

/// `kubectl exec` reaches the API server's `pods/exec`, which checks the pod
/// before it looks for a kubelet: no node yet, a container the pod does not
/// have, or a finished pod are clear errors (a running pod's exec is tested
/// with a kubelet in `rk_up.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_is_refused_with_upstreams_reasons_before_a_kubelet_is_needed() {
    let c = Cluster::start().await;
    c.kubectl(&["run", "idle", "--image=busybox", "--", "sleep", "3600"])
        .await;
    let err = c.kubectl_fails(&["exec", "idle", "--", "true"]).await;
    assert!(
        err.contains("pod idle does not have a host assigned"),
        "{err}"
    );
    let err = c
        .kubectl_fails(&["exec", "idle", "-c", "other", "--", "true"])
        .await;
    assert!(err.contains("container other is not valid"), "{err}");
    let patch = r#"{"status":{"phase":"Succeeded"}}"#;
    c.kubectl(&[
        "patch",
        "pod",
        "idle",
        "--subresource=status",
        "--type=merge",
        "-p",
        patch,
    ])
    .await;
    let err = c.kubectl_fails(&["exec", "idle", "--", "true"]).await;
    assert!(
        err.contains("cannot exec into a container in a completed pod; current phase is Succeeded"),
        "{err}"
    );
}

const WEBHOOK_CONFIGURATION: &str = r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata:
  name: policy
webhooks:
- name: pods.policy.example.com
  clientConfig:
    service: {namespace: policy-system, name: policy-webhook, path: /validate}
  rules:
  - apiGroups: [""]
    apiVersions: [v1]
    resources: [pods]
    operations: [CREATE]
  namespaceSelector:
    matchLabels: {policy: enforced}
  sideEffects: None
  admissionReviewVersions: [v1]
- name: services.policy.example.com
  clientConfig:
    url: https://127.0.0.1:1/validate
  rules:
  - apiGroups: [""]
    apiVersions: [v1]
    resources: [services]
    operations: [CREATE]
  sideEffects: None
  admissionReviewVersions: [v1]
  failurePolicy: Ignore
---
apiVersion: storage.k8s.io/v1
kind: CSIDriver
metadata:
  name: hostpath.csi.example.com
spec:
  attachRequired: false
---
apiVersion: flowcontrol.apiserver.k8s.io/v1
kind: PriorityLevelConfiguration
metadata:
  name: operators
spec:
  type: Limited
  limited:
    nominalConcurrencyShares: 10
    limitResponse: {type: Reject}
"#;

/// The manifests operators ship (webhook configurations, CSI drivers,
/// flow control) apply; a webhook only applies where its selector says, and
/// one that cannot be reached under `failurePolicy: Ignore` blocks nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_manifests_with_webhook_configurations_apply() {
    let c = Cluster::start().await;
    let out = c
        .kubectl_in(&["apply", "-f", "-"], Some(WEBHOOK_CONFIGURATION))
        .await;
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        vec![
            "validatingwebhookconfiguration.admissionregistration.k8s.io/policy created",
            "csidriver.storage.k8s.io/hostpath.csi.example.com created",
            "prioritylevelconfiguration.flowcontrol.apiserver.k8s.io/operators created",
        ],
        "{out}"
    );
    let table = c.kubectl(&["get", "validatingwebhookconfigurations"]).await;
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0], vec!["NAME", "WEBHOOKS", "AGE"], "{table}");
    assert_eq!(&rows[1][..2], &["policy", "2"], "{table}");
    let config = c
        .get_json(&["validatingwebhookconfiguration", "policy"])
        .await;
    let first = &config["webhooks"][0];
    assert_eq!(first["failurePolicy"], "Fail");
    assert_eq!(first["timeoutSeconds"], 10);
    assert_eq!(first["clientConfig"]["service"]["port"], 443);
    let resources = c
        .kubectl(&[
            "api-resources",
            "--api-group=admissionregistration.k8s.io",
            "-o",
            "name",
        ])
        .await;
    for want in [
        "mutatingwebhookconfigurations.admissionregistration.k8s.io",
        "validatingwebhookconfigurations.admissionregistration.k8s.io",
    ] {
        assert!(resources.lines().any(|l| l == want), "{resources}");
    }
    // Pods in namespaces the selector does not pick are not sent to the
    // (missing) webhook; a Service goes past the unreachable Ignore one.
    let pod = c
        .kubectl(&[
            "run",
            "free",
            "--image=busybox",
            "--restart=Never",
            "--",
            "sleep",
            "1",
        ])
        .await;
    assert_eq!(pod.trim(), "pod/free created");
    c.kubectl(&["create", "service", "clusterip", "svc", "--tcp=80:8080"])
        .await;
    // In a namespace it picks, the webhook's Service does not exist, and
    // failurePolicy Fail refuses the pod.
    c.kubectl(&["create", "namespace", "strict"]).await;
    c.kubectl(&["label", "namespace", "strict", "policy=enforced"])
        .await;
    let run = [
        "run",
        "held",
        "-n",
        "strict",
        "--image=busybox",
        "--restart=Never",
    ];
    let refused = c
        .first_refusal(
            &run,
            &["delete", "pod", "held", "-n", "strict", "--wait=false"],
        )
        .await;
    assert!(
        refused.contains(
            "failed calling webhook \"pods.policy.example.com\": failed to call webhook: service \"policy-webhook\" not found"
        ),
        "{refused}"
    );
}

/// Upstream's documented example policy (replicas at most 5 in namespaces
/// labelled `environment=test`), a parameterised one reading its limit
/// from a ConfigMap, and a `Warn` binding.
const ADMISSION_POLICIES: &str = r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: demo-policy.example.com
spec:
  matchConstraints:
    resourceRules:
    - apiGroups: ["apps"]
      apiVersions: ["v1"]
      operations: ["CREATE", "UPDATE"]
      resources: ["deployments"]
  validations:
  - expression: "object.spec.replicas <= 5"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: demo-binding-test.example.com
spec:
  policyName: demo-policy.example.com
  validationActions: [Deny]
  matchResources:
    namespaceSelector:
      matchLabels:
        environment: test
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: limits
  namespace: default
data:
  maxReplicas: "3"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: param-policy.example.com
spec:
  paramKind:
    apiVersion: v1
    kind: ConfigMap
  matchConstraints:
    resourceRules:
    - apiGroups: ["apps"]
      apiVersions: ["v1"]
      operations: ["CREATE", "UPDATE"]
      resources: ["deployments"]
  variables:
  - name: limit
    expression: "int(params.data.maxReplicas)"
  validations:
  - expression: "object.spec.replicas <= variables.limit"
    messageExpression: "'replicas must be at most ' + string(variables.limit) + ', not ' + string(object.spec.replicas)"
    reason: Forbidden
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: param-binding.example.com
spec:
  policyName: param-policy.example.com
  validationActions: [Warn]
  paramRef:
    name: limits
    namespace: default
    parameterNotFoundAction: Deny
"#;

#[tokio::test]
async fn validating_admission_policies_deny_and_warn() {
    let c = Cluster::start().await;
    c.kubectl(&["create", "namespace", "test"]).await;
    c.kubectl(&["label", "namespace", "test", "environment=test"])
        .await;
    c.kubectl_in(&["apply", "-f", "-"], Some(ADMISSION_POLICIES))
        .await;
    let policy = c
        .get_json(&["validatingadmissionpolicy", "demo-policy.example.com"])
        .await;
    assert_eq!(policy["spec"]["failurePolicy"], "Fail");
    assert_eq!(
        policy["spec"]["matchConstraints"]["matchPolicy"],
        "Equivalent"
    );
    let rows = |table: String| -> Vec<Vec<String>> {
        table
            .lines()
            .map(|l| l.split_whitespace().map(str::to_string).collect())
            .collect()
    };
    let policies = rows(c.kubectl(&["get", "validatingadmissionpolicies"]).await);
    assert_eq!(policies[0], ["NAME", "VALIDATIONS", "PARAMKIND", "AGE"]);
    assert_eq!(
        policies[1][..3],
        ["demo-policy.example.com", "1", "<unset>"]
    );
    assert_eq!(
        policies[2][..3],
        ["param-policy.example.com", "1", "v1/ConfigMap"]
    );
    let bindings = rows(
        c.kubectl(&["get", "validatingadmissionpolicybindings"])
            .await,
    );
    assert_eq!(bindings[0], ["NAME", "POLICYNAME", "PARAMREF", "AGE"]);
    assert_eq!(
        bindings[2][..3],
        [
            "param-binding.example.com",
            "param-policy.example.com",
            "default/limits"
        ]
    );

    // The policy is read from the watch cache: wait for it to be in force.
    let create = [
        "create",
        "deployment",
        "big",
        "-n",
        "test",
        "--image=nginx",
        "--replicas=6",
    ];
    let refused = c
        .first_refusal(&create, &["delete", "deployment", "big", "-n", "test"])
        .await;
    assert!(
        refused.contains(
            "ValidatingAdmissionPolicy 'demo-policy.example.com' with binding 'demo-binding-test.example.com' denied request: failed expression: object.spec.replicas <= 5"
        ),
        "{refused}"
    );
    assert!(refused.contains("is invalid"), "{refused}");

    // Outside the selected namespace only the Warn binding speaks: the
    // deployment is created and kubectl prints the warning.
    let out = c
        .kubectl_output(
            &[
                "create",
                "deployment",
                "wide",
                "--image=nginx",
                "--replicas=6",
            ],
            None,
            &[],
        )
        .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "Validation failed for ValidatingAdmissionPolicy 'param-policy.example.com' with binding 'param-binding.example.com': replicas must be at most 3, not 6"
        ),
        "{stderr}"
    );
    // Within both limits nothing is said.
    let out = c
        .kubectl_output(
            &[
                "create",
                "deployment",
                "small",
                "-n",
                "test",
                "--image=nginx",
                "--replicas=2",
            ],
            None,
            &[],
        )
        .await;
    assert!(out.status.success());
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("Validation failed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // An update is judged too: scaling past the limit is refused.
    let scaled = c
        .kubectl_fails(&["scale", "deployment", "small", "-n", "test", "--replicas=7"])
        .await;
    assert!(scaled.contains("denied request"), "{scaled}");

    // A policy whose expression does not compile is refused when written.
    let broken = r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: broken.example.com
spec:
  matchConstraints:
    resourceRules:
    - apiGroups: [""]
      apiVersions: ["v1"]
      operations: ["CREATE"]
      resources: ["pods"]
  validations:
  - expression: "object.spec.("
"#;
    let out = c
        .kubectl_output(&["apply", "-f", "-"], Some(broken), &[])
        .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("spec.validations[0].expression") && stderr.contains("compilation failed"),
        "{stderr}"
    );
}

/// Upstream's sidecar example of a `MutatingAdmissionPolicy` (an init
/// container, labels from a variable, an annotation by JSON patch) bound to
/// labelled namespaces, and a policy that tries to set an atomic field.
const MUTATING_POLICIES: &str = r#"
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingAdmissionPolicy
metadata:
  name: sidecar.example.com
spec:
  matchConstraints:
    resourceRules:
    - apiGroups: [""]
      apiVersions: ["v1"]
      operations: ["CREATE"]
      resources: ["pods"]
  matchConditions:
  - name: no-sidecar-yet
    expression: "!has(object.spec.initContainers) || !object.spec.initContainers.exists(c, c.name == 'mesh-proxy')"
  variables:
  - name: team
    expression: "has(object.metadata.labels) && 'team' in object.metadata.labels ? object.metadata.labels['team'] : 'none'"
  reinvocationPolicy: IfNeeded
  mutations:
  - patchType: ApplyConfiguration
    applyConfiguration:
      expression: >
        Object{
          metadata: Object.metadata{labels: {"mesh": "on", "owner": variables.team}},
          spec: Object.spec{
            initContainers: [
              Object.spec.initContainers{name: "mesh-proxy", image: "mesh/proxy:v1", restartPolicy: "Always"}
            ]
          }
        }
  - patchType: JSONPatch
    jsonPatch:
      expression: >
        has(object.metadata.annotations) ?
        [JSONPatch{op: "add", path: "/metadata/annotations/" + jsonpatch.escapeKey("mesh.example.com/injected"), value: "true"}] :
        [JSONPatch{op: "add", path: "/metadata/annotations", value: {"mesh.example.com/injected": "true"}}]
---
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingAdmissionPolicyBinding
metadata:
  name: sidecar-binding.example.com
spec:
  policyName: sidecar.example.com
  matchResources:
    namespaceSelector:
      matchLabels:
        mesh: enabled
---
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingAdmissionPolicy
metadata:
  name: selector.example.com
spec:
  matchConstraints:
    resourceRules:
    - apiGroups: ["apps"]
      apiVersions: ["v1"]
      operations: ["CREATE"]
      resources: ["deployments"]
  reinvocationPolicy: Never
  mutations:
  - patchType: ApplyConfiguration
    applyConfiguration:
      expression: "Object{spec: Object.spec{selector: Object.spec.selector{matchLabels: {'x': 'y'}}}}"
---
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingAdmissionPolicyBinding
metadata:
  name: selector-binding.example.com
spec:
  policyName: selector.example.com
  matchResources:
    namespaceSelector:
      matchLabels:
        mesh: enabled
"#;

#[tokio::test]
async fn mutating_admission_policies_mutate_creates() {
    let c = Cluster::start().await;
    c.kubectl(&["create", "namespace", "mesh"]).await;
    c.kubectl(&["label", "namespace", "mesh", "mesh=enabled"])
        .await;
    c.kubectl_in(&["apply", "-f", "-"], Some(MUTATING_POLICIES))
        .await;
    let policy = c
        .get_json(&["mutatingadmissionpolicy", "sidecar.example.com"])
        .await;
    assert_eq!(policy["spec"]["failurePolicy"], "Fail");
    assert_eq!(
        policy["spec"]["matchConstraints"]["matchPolicy"],
        "Equivalent"
    );
    let names = c
        .kubectl(&["get", "mutatingadmissionpolicybindings", "-o", "name"])
        .await;
    assert!(names.contains("sidecar-binding.example.com"), "{names}");

    // Policies are read from the watch cache: create pods until one is
    // mutated.
    let mut pod = serde_json::Value::Null;
    for i in 0..50 {
        let name = format!("web-{i}");
        c.kubectl(&[
            "run",
            &name,
            "-n",
            "mesh",
            "--image=nginx",
            "-l",
            "team=blue",
        ])
        .await;
        pod = c.get_json(&["pod", &name, "-n", "mesh"]).await;
        if pod["spec"]["initContainers"].is_array() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let sidecar = &pod["spec"]["initContainers"][0];
    assert_eq!(sidecar["name"], "mesh-proxy", "{pod}");
    assert_eq!(sidecar["image"], "mesh/proxy:v1");
    assert_eq!(sidecar["restartPolicy"], "Always");
    // The mutated pod is defaulted as any other.
    assert_eq!(sidecar["imagePullPolicy"], "IfNotPresent");
    assert_eq!(sidecar["terminationMessagePath"], "/dev/termination-log");
    assert_eq!(pod["spec"]["containers"][0]["image"], "nginx");
    let labels = &pod["metadata"]["labels"];
    assert_eq!(
        (&labels["mesh"], &labels["owner"], &labels["team"]),
        (&"on".into(), &"blue".into(), &"blue".into()),
        "{labels}"
    );
    assert_eq!(
        pod["metadata"]["annotations"]["mesh.example.com/injected"],
        "true"
    );

    // Outside the selected namespaces nothing changes.
    c.kubectl(&["run", "plain", "--image=nginx"]).await;
    let plain = c.get_json(&["pod", "plain"]).await;
    assert!(plain["spec"]["initContainers"].is_null(), "{plain}");
    assert!(plain["metadata"]["labels"]["mesh"].is_null(), "{plain}");

    // Setting an atomic field is refused, as upstream refuses it.
    let refused = c
        .kubectl_fails(&["create", "deployment", "web", "-n", "mesh", "--image=nginx"])
        .await;
    assert!(
        refused.contains(
            "policy 'selector.example.com' with binding 'selector-binding.example.com' denied request: error applying patch: invalid ApplyConfiguration: may not mutate atomic arrays, maps or structs: .spec.selector"
        ),
        "{refused}"
    );

    // A policy without a reinvocation policy or with an unknown patch type
    // is refused when written.
    let broken = r#"
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingAdmissionPolicy
metadata:
  name: broken.example.com
spec:
  matchConstraints:
    resourceRules:
    - apiGroups: [""]
      apiVersions: ["v1"]
      operations: ["DELETE"]
      resources: ["pods"]
  mutations:
  - patchType: StrategicMerge
"#;
    let out = c
        .kubectl_output(&["apply", "-f", "-"], Some(broken), &[])
        .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    for expected in [
        "spec.reinvocationPolicy: Required value",
        "spec.mutations[0].patchType: Unsupported value: \"StrategicMerge\"",
        "spec.matchConstraints.resourceRules[0].operations[0]: Unsupported value: \"DELETE\"",
    ] {
        assert!(stderr.contains(expected), "{expected} in {stderr}");
    }
}

const GATEWAY_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gates.example.com
spec:
  group: example.com
  names: {kind: Gate, plural: gates, singular: gate}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            x-kubernetes-validations:
            - rule: "self.minReplicas <= self.maxReplicas"
              message: "minReplicas must not exceed maxReplicas"
            properties:
              className:
                type: string
                x-kubernetes-validations:
                - rule: "self == oldSelf"
                  message: "Value is immutable"
              minReplicas: {type: integer}
              maxReplicas: {type: integer}
              memory:
                type: string
                x-kubernetes-validations:
                - rule: "isQuantity(self) && quantity(self).compareTo(quantity('1Gi')) <= 0"
                  message: "memory must be a quantity of at most 1Gi"
              ports:
                type: array
                items: {type: integer}
                x-kubernetes-validations:
                - rule: "self.isSorted() && self.all(p, self.indexOf(p) == self.lastIndexOf(p))"
                  message: "ports must be sorted and unique"
"#;

/// `x-kubernetes-validations` rules of a CRD, the immutability idiom
/// (`self == oldSelf`) included, as kubectl users meet them.
#[tokio::test]
async fn crd_validation_rules_refuse_what_they_say() {
    let c = Cluster::start().await;
    c.kubectl_in(&["apply", "-f", "-"], Some(GATEWAY_CRD)).await;
    let gate = |min: u32, class: &str| {
        format!(
            "apiVersion: example.com/v1\nkind: Gate\nmetadata: {{name: g}}\nspec: {{className: {class}, minReplicas: {min}, maxReplicas: 3}}\n"
        )
    };
    let mut created = String::new();
    for _ in 0..50 {
        let out = c
            .kubectl_output(&["apply", "-f", "-"], Some(&gate(1, "gold")), &[])
            .await;
        if out.status.success() {
            created = String::from_utf8_lossy(&out.stdout).into_owned();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(created.contains("gate.example.com/g created"), "{created}");
    let out = c
        .kubectl_output(&["apply", "-f", "-"], Some(&gate(5, "gold")), &[])
        .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("spec: Invalid value: \"object\": minReplicas must not exceed maxReplicas"),
        "{err}"
    );
    let out = c
        .kubectl_output(&["apply", "-f", "-"], Some(&gate(2, "silver")), &[])
        .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("spec.className: Invalid value: \"string\": Value is immutable"),
        "{err}"
    );
    let out = c
        .kubectl_in(&["apply", "-f", "-"], Some(&gate(2, "gold")))
        .await;
    assert!(out.contains("gate.example.com/g configured"), "{out}");
    assert_eq!(c.get_json(&["gate", "g"]).await["spec"]["minReplicas"], 2);
    // Kubernetes' quantity and list libraries.
    let other = |memory: &str, ports: &str| {
        format!(
            "apiVersion: example.com/v1\nkind: Gate\nmetadata: {{name: h}}\nspec: {{minReplicas: 1, maxReplicas: 1, memory: {memory}, ports: {ports}}}\n"
        )
    };
    let out = c
        .kubectl_output(&["apply", "-f", "-"], Some(&other("2Gi", "[80, 443]")), &[])
        .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("memory must be a quantity of at most 1Gi"),
        "{err}"
    );
    let out = c
        .kubectl_output(
            &["apply", "-f", "-"],
            Some(&other("512Mi", "[443, 80]")),
            &[],
        )
        .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("ports must be sorted and unique"), "{err}");
    let out = c
        .kubectl_in(&["apply", "-f", "-"], Some(&other("1024Mi", "[80, 443]")))
        .await;
    assert!(out.contains("gate.example.com/h created"), "{out}");
}

/// The Service every cluster has, as kubectl shows it, and upstream's
/// warning for the deprecated v1 Endpoints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubernetes_service_and_the_endpoints_deprecation_warning() {
    let c = Cluster::start().await;
    let out = c.kubectl(&["get", "service", "kubernetes"]).await;
    assert!(out.contains("127.200.0.1"), "{out}");
    assert!(out.contains("443/TCP"), "{out}");
    let out = c
        .kubectl_output(&["get", "endpoints", "kubernetes"], None, &[])
        .await;
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "Warning: v1 Endpoints is deprecated in v1.33+; use discovery.k8s.io/v1 EndpointSlice"
        ),
        "{stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("127.0.0.1:"), "{stdout}");
}
