//! The kubelet against an in-process API server: node registration and
//! leases, pods on the process runtime (phases, restarts, probes, env,
//! volumes, logs, graceful deletion) and many sim nodes.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::Api;
use kube::api::{DeleteParams, LogParams, PostParams};
use rk_apiserver::test_server::TestServer;
use rk_controllers::kubelet::eviction::EvictionThresholds;
use rk_controllers::kubelet::{self, Config, Kubelet, NodeConfig};
use serde_json::json;

type Error = Box<dyn std::error::Error + Send + Sync>;

fn capacity() -> BTreeMap<String, Quantity> {
    kubelet::node_status::parse_capacity("cpu=4,memory=8Gi,pods=110").expect("valid capacity")
}

fn config(node: &str, dir: &std::path::Path) -> Config {
    let mut n = NodeConfig::new(node, capacity());
    n.pod_cidr = Some("127.100.50.0/24".to_owned());
    let mut c = Config::process(n, dir.to_owned());
    c.port = 0;
    c.lease_renew_interval = Duration::from_secs(1);
    c.backoff_initial = Duration::from_secs(1);
    // No pressure whatever the host's disk and memory (CI machines run with
    // full disks); `pressure_conditions_follow_the_eviction_thresholds`
    // checks the thresholds themselves.
    c.eviction_hard = EvictionThresholds::none();
    c
}

async fn start(node: &str) -> Result<(TestServer, Kubelet, tempfile::TempDir), Error> {
    let server = crate::support::test_server().await?;
    let dir = tempfile::tempdir()?;
    let kubelet = kubelet::start(server.client(), config(node, dir.path())).await?;
    Ok((server, kubelet, dir))
}

/// Poll `f` until it returns `Some`, or fail after `timeout`.
async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("timed out waiting for {what}").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn pod(name: &str, node: &str, spec: serde_json::Value) -> Pod {
    let mut spec = spec;
    spec["nodeName"] = json!(node);
    for list in ["containers", "initContainers"] {
        for c in spec[list].as_array_mut().into_iter().flatten() {
            if c.get("image").is_none() {
                c["image"] = json!("busybox");
            }
        }
    }
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    }))
    .expect("a valid pod")
}

fn sh(script: &str) -> serde_json::Value {
    json!(["sh", "-c", script])
}

async fn get_pod(api: &Api<Pod>, name: &str) -> Option<Pod> {
    api.get_opt(name).await.ok().flatten()
}

fn phase(p: &Pod) -> String {
    p.status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default()
}

fn condition(p: &Pod, type_: &str) -> Option<String> {
    p.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.clone())
}

fn process_alive(pid: i32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.contains(") Z "))
            .unwrap_or(true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubelet_registers_a_ready_node_and_renews_its_lease() -> Result<(), Error> {
    let (server, kubelet, _dir) = start("node-a").await?;
    let nodes: Api<Node> = Api::all(server.client());
    let node = wait_for("a Ready node", Duration::from_secs(10), || async {
        let n = nodes.get_opt("node-a").await.ok().flatten()?;
        let ready = n
            .status
            .as_ref()?
            .conditions
            .as_ref()?
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        ready.then_some(n)
    })
    .await?;
    let status = node.status.clone().unwrap_or_default();
    let port = status
        .daemon_endpoints
        .and_then(|d| d.kubelet_endpoint)
        .map(|e| e.port);
    assert_eq!(port, Some(i32::from(kubelet.port())));
    assert_eq!(
        status.capacity.unwrap_or_default()["cpu"],
        Quantity("4".into())
    );
    for t in ["MemoryPressure", "DiskPressure", "PIDPressure"] {
        let c = status.conditions.iter().flatten().find(|c| c.type_ == t);
        assert_eq!(c.map(|c| c.status.as_str()), Some("False"), "{t}");
    }

    let leases: Api<Lease> = Api::namespaced(server.client(), "kube-node-lease");
    let first = wait_for("the lease", Duration::from_secs(5), || async {
        leases
            .get_opt("node-a")
            .await
            .ok()
            .flatten()?
            .spec?
            .renew_time
    })
    .await?;
    wait_for("a renewal", Duration::from_secs(10), || async {
        let t = leases
            .get_opt("node-a")
            .await
            .ok()
            .flatten()?
            .spec?
            .renew_time?;
        (t > first).then_some(())
    })
    .await?;

    // A deleted Node comes back.
    nodes.delete("node-a", &DeleteParams::default()).await?;
    wait_for("the node to come back", Duration::from_secs(10), || async {
        nodes.get_opt("node-a").await.ok().flatten()
    })
    .await?;
    kubelet.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pressure_conditions_follow_the_eviction_thresholds() -> Result<(), Error> {
    let server = crate::support::test_server().await?;
    let dir = tempfile::tempdir()?;
    let mut c = config("node-p", dir.path());
    // Less than all of a filesystem is always free: disk pressure.
    c.eviction_hard = "nodefs.available<100%,memory.available<0".parse()?;
    let kubelet = kubelet::start(server.client(), c).await?;
    let nodes: Api<Node> = Api::all(server.client());
    let conditions = wait_for("the node's conditions", Duration::from_secs(10), || async {
        nodes
            .get_opt("node-p")
            .await
            .ok()
            .flatten()?
            .status?
            .conditions
    })
    .await?;
    let find = |t: &str| conditions.iter().find(|c| c.type_ == t).cloned();
    let disk = find("DiskPressure").ok_or("no DiskPressure condition")?;
    assert_eq!(disk.status, "True");
    assert_eq!(disk.reason.as_deref(), Some("KubeletHasDiskPressure"));
    let memory = find("MemoryPressure").ok_or("no MemoryPressure condition")?;
    assert_eq!(memory.status, "False");
    assert_eq!(memory.reason.as_deref(), Some("KubeletHasSufficientMemory"));
    kubelet.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_runs_to_succeeded_with_exit_code_zero() -> Result<(), Error> {
    let (server, kubelet, _dir) = start("node-b").await?;
    let pods: Api<Pod> = Api::namespaced(server.client(), "default");
    let p = pod(
        "once",
        "node-b",
        json!({"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox", "command": sh("echo hello from $POD_IP; sleep 1")}]}),
    );
    pods.create(&PostParams::default(), &p).await?;
    let running = wait_for("Running", Duration::from_secs(10), || async {
        let p = get_pod(&pods, "once").await?;
        (phase(&p) == "Running").then_some(p)
    })
    .await?;
    let ip = running
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .unwrap_or_default();
    assert!(ip.starts_with("127.100.50."), "pod IP {ip}");
    assert!(
        running
            .status
            .as_ref()
            .and_then(|s| s.start_time.clone())
            .is_some()
    );
    let done = wait_for("Succeeded", Duration::from_secs(10), || async {
        let p = get_pod(&pods, "once").await?;
        (phase(&p) == "Succeeded").then_some(p)
    })
    .await?;
    let status = done.status.unwrap_or_default();
    let cs = &status.container_statuses.unwrap_or_default()[0];
    let terminated = cs
        .state
        .clone()
        .and_then(|s| s.terminated)
        .ok_or("not terminated")?;
    assert_eq!(terminated.exit_code, 0);
    assert_eq!(terminated.reason.as_deref(), Some("Completed"));
    assert_eq!(
        condition(&done_pod(&pods, "once").await?, "Ready").as_deref(),
        Some("False")
    );

    // The log is served, through the API server as kubectl reads it.
    let log = pods.logs("once", &LogParams::default()).await?;
    assert_eq!(log, format!("hello from {ip}\n"));
    kubelet.shutdown().await;
    Ok(())
}

async fn done_pod(pods: &Api<Pod>, name: &str) -> Result<Pod, Error> {
    Ok(pods.get(name).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_container_goes_into_crash_loop_back_off() -> Result<(), Error> {
    let (server, kubelet, _dir) = start("node-c").await?;
    let pods: Api<Pod> = Api::namespaced(server.client(), "default");
    let p = pod(
        "crashy",
        "node-c",
        json!({"containers": [{"name": "main", "command": sh("echo attempt; exit 3")}]}),
    );
    pods.create(&PostParams::default(), &p).await?;
    let saw_back_off = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let p = wait_for("two restarts", Duration::from_secs(20), || {
        let pods = pods.clone();
        let saw = saw_back_off.clone();
        async move {
            let p = get_pod(&pods, "crashy").await?;
            let cs = p.status.clone()?.container_statuses?.first()?.clone();
            if cs.state.as_ref()?.waiting.as_ref()?.reason.as_deref() == Some("CrashLoopBackOff") {
                saw.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            (cs.restart_count >= 2 && saw.load(std::sync::atomic::Ordering::Relaxed)).then_some(p)
        }
    })
    .await?;
    let cs = p
        .status
        .and_then(|s| s.container_statuses)
        .unwrap_or_default()[0]
        .clone();
    let last = cs
        .last_state
        .and_then(|s| s.terminated)
        .ok_or("no last state")?;
    assert_eq!(last.exit_code, 3);
    assert_eq!(last.reason.as_deref(), Some("Error"));
    assert_eq!(phase(&pods.get("crashy").await?), "Running");

    // The previous instance's log is there too.
    let previous = pods
        .logs(
            "crashy",
            &LogParams {
                previous: true,
                ..LogParams::default()
            },
        )
        .await?;
    assert_eq!(previous, "attempt\n");
    kubelet.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_readiness_probe_gates_ready() -> Result<(), Error> {
    let (server, kubelet, dir) = start("node-d").await?;
    let flag = dir.path().join("ready-flag");
    let pods: Api<Pod> = Api::namespaced(server.client(), "default");
    let p = pod(
        "gated",
        "node-d",
        json!({"containers": [{
            "name": "main",
            "command": sh("exec sleep 600"),
            "readinessProbe": {"exec": {"command": ["test", "-f", flag.display().to_string()]}, "periodSeconds": 1, "failureThreshold": 1},
        }]}),
    );
    pods.create(&PostParams::default(), &p).await?;
    wait_for("Running", Duration::from_secs(10), || async {
        let p = get_pod(&pods, "gated").await?;
        (phase(&p) == "Running").then_some(())
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let p = pods.get("gated").await?;
    assert_eq!(condition(&p, "Ready").as_deref(), Some("False"));
    assert_eq!(condition(&p, "ContainersReady").as_deref(), Some("False"));
    std::fs::write(&flag, b"")?;
    wait_for("Ready", Duration::from_secs(10), || async {
        let p = get_pod(&pods, "gated").await?;
        (condition(&p, "Ready").as_deref() == Some("True")).then_some(())
    })
    .await?;
    std::fs::remove_file(&flag)?;
    wait_for("not Ready again", Duration::from_secs(10), || async {
        let p = get_pod(&pods, "gated").await?;
        (condition(&p, "Ready").as_deref() == Some("False")).then_some(())
    })
    .await?;
    kubelet.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_sources_and_config_map_volumes_reach_the_process() -> Result<(), Error> {
    let (server, kubelet, _dir) = start("node-e").await?;
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "settings"},
        "data": {"greeting": "hello", "file.txt": "from the volume"}
    }))?;
    cms.create(&PostParams::default(), &cm).await?;
    let pods: Api<Pod> = Api::namespaced(server.client(), "default");
    let p = pod(
        "envy",
        "node-e",
        json!({
            "restartPolicy": "Never",
            "volumes": [{"name": "cfg", "configMap": {"name": "settings"}}],
            "containers": [{
                "name": "main",
                "command": sh("echo \"$GREETING $MY_NAME $COMBINED $CPU_LIMIT\"; cat \"$RK_MOUNT_ETC_CFG/file.txt\"; echo; echo $(GREETING)"),
                "env": [
                    {"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "greeting"}}},
                    {"name": "MY_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "COMBINED", "value": "$(GREETING)-$(MY_NAME)"},
                    {"name": "CPU_LIMIT", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1m"}}},
                ],
                "resources": {"limits": {"cpu": "500m"}},
                "volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg"}],
            }],
        }),
    );
    pods.create(&PostParams::default(), &p).await?;
    wait_for("Succeeded", Duration::from_secs(10), || async {
        let p = get_pod(&pods, "envy").await?;
        (phase(&p) == "Succeeded").then_some(())
    })
    .await?;
    let log = pods.logs("envy", &LogParams::default()).await?;
    assert_eq!(log, "hello envy hello-envy 500\nfrom the volume\nhello\n");

    // The kubelet's own port serves the same, with tailLines.
    let url = format!(
        "http://127.0.0.1:{}/containerLogs/default/envy/main?tailLines=1",
        kubelet.port()
    );
    let body = http_get(&url).await?;
    assert_eq!(body, "hello\n");
    kubelet.shutdown().await;
    Ok(())
}

/// Upstream's service links: every container learns the cluster IP and
/// ports of its namespace's Services and of `default/kubernetes`; a pod
/// with `enableServiceLinks: false` only of the latter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_variables_reach_the_process() -> Result<(), Error> {
    use k8s_openapi::api::core::v1::Service;
    let (server, kubelet, _dir) = start("node-sv").await?;
    let services: Api<Service> = Api::namespaced(server.client(), "default");
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "my-web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 8080}]}
    }))?;
    let ip = services
        .create(&PostParams::default(), &svc)
        .await?
        .spec
        .and_then(|s| s.cluster_ip)
        .ok_or("no cluster IP")?;
    let pods: Api<Pod> = Api::namespaced(server.client(), "default");
    let script = "echo \"$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT_HTTPS $MY_WEB_PORT_8080_TCP ${MY_WEB_SERVICE_HOST:-none}\"";
    for (name, links) in [("linked", true), ("unlinked", false)] {
        let p = pod(
            name,
            "node-sv",
            json!({"restartPolicy": "Never", "enableServiceLinks": links,
                "containers": [{"name": "main", "command": sh(script)}]}),
        );
        pods.create(&PostParams::default(), &p).await?;
    }
    for name in ["linked", "unlinked"] {
        wait_for("Succeeded", Duration::from_secs(10), || async {
            let p = get_pod(&pods, name).await?;
            (phase(&p) == "Succeeded").then_some(())
        })
        .await?;
    }
    let linked = pods.logs("linked", &LogParams::default()).await?;
    assert_eq!(linked, format!("127.200.0.1:443 tcp://{ip}:8080 {ip}\n"));
    let unlinked = pods.logs("unlinked", &LogParams::default()).await?;
    assert_eq!(unlinked, "127.200.0.1:443  none\n");
    kubelet.shutdown().await;
    Ok(())
}

async fn http_get(url: &str) -> Result<String, Error> {
    let uri: http::Uri = url.parse()?;
    let host = uri.host().ok_or("no host")?.to_owned();
    let port = uri.port_u16().ok_or("no port")?;
    let stream = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
    let (mut tx, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = http::Request::get(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
        .header("host", format!("{host}:{port}"))
        .body(http_body_util::Empty::<bytes::Bytes>::new())?;
    let resp = tx.send_request(req).await?;
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await?
        .to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_delete_stops_the_process_and_removes_the_pod() -> Result<(), Error> {
    let (server, kubelet, dir) = start("node-f").await?;
    let pid_file = dir.path().join("pid");
    let pods: Api<Pod> = Api::namespaced(server.client(), "default");
    let p = pod(
        "sleeper",
        "node-f",
        json!({"terminationGracePeriodSeconds": 5, "containers": [{"name": "main", "command": sh(&format!("echo $$$$ > {}; exec sleep 600", pid_file.display()))}]}),
    );
    pods.create(&PostParams::default(), &p).await?;
    let pid: i32 = wait_for("the pid", Duration::from_secs(10), || async {
        std::fs::read_to_string(&pid_file).ok()?.trim().parse().ok()
    })
    .await?;
    assert!(process_alive(pid));
    pods.delete("sleeper", &DeleteParams::default()).await?;
    wait_for("the pod to be gone", Duration::from_secs(10), || async {
        get_pod(&pods, "sleeper").await.is_none().then_some(())
    })
    .await?;
    assert!(!process_alive(pid), "process {pid} survived deletion");
    kubelet.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubelet_shutdown_leaves_no_process_behind() -> Result<(), Error> {
    let (server, kubelet, dir) = start("node-g").await?;
    let pid_file = dir.path().join("pid");
    let pods: Api<Pod> = Api::namespaced(server.client(), "default");
    // The shell forks a child, so the whole process group must go.
    let script = format!("sleep 600 & echo $! > {}; wait", pid_file.display());
    pods.create(
        &PostParams::default(),
        &pod(
            "forker",
            "node-g",
            json!({"containers": [{"name": "main", "command": sh(&script)}]}),
        ),
    )
    .await?;
    let pid: i32 = wait_for("the pid", Duration::from_secs(10), || async {
        std::fs::read_to_string(&pid_file).ok()?.trim().parse().ok()
    })
    .await?;
    assert!(process_alive(pid));
    wait_for("Running", Duration::from_secs(10), || async {
        let p = get_pod(&pods, "forker").await?;
        (phase(&p) == "Running").then_some(())
    })
    .await?;
    kubelet.shutdown().await;
    wait_for("the child to die", Duration::from_secs(5), || async {
        (!process_alive(pid)).then_some(())
    })
    .await?;
    // The pod is left alone in the API, to run again with the next kubelet.
    assert_eq!(phase(&pods.get("forker").await?), "Running");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_that_does_not_fit_is_rejected_out_of_cpu() -> Result<(), Error> {
    let (server, kubelet, _dir) = start("node-h").await?;
    let pods: Api<Pod> = Api::namespaced(server.client(), "default");
    let p = pod(
        "greedy",
        "node-h",
        json!({"containers": [{"name": "main", "command": sh("sleep 1"), "resources": {"requests": {"cpu": "64"}}}]}),
    );
    pods.create(&PostParams::default(), &p).await?;
    let p = wait_for("Failed", Duration::from_secs(10), || async {
        let p = get_pod(&pods, "greedy").await?;
        (phase(&p) == "Failed").then_some(p)
    })
    .await?;
    assert_eq!(p.status.and_then(|s| s.reason).as_deref(), Some("OutOfcpu"));
    kubelet.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_without_a_command_waits_with_a_config_error() -> Result<(), Error> {
    let (server, kubelet, _dir) = start("node-i").await?;
    let pods: Api<Pod> = Api::namespaced(server.client(), "default");
    pods.create(
        &PostParams::default(),
        &pod(
            "imageonly",
            "node-i",
            json!({"containers": [{"name": "main", "image": "nginx"}]}),
        ),
    )
    .await?;
    let waiting = wait_for(
        "CreateContainerConfigError",
        Duration::from_secs(10),
        || async {
            let p = get_pod(&pods, "imageonly").await?;
            let w = p
                .status?
                .container_statuses?
                .first()?
                .state
                .clone()?
                .waiting?;
            (w.reason.as_deref() == Some("CreateContainerConfigError")).then_some(w)
        },
    )
    .await?;
    assert!(waiting.message.unwrap_or_default().contains("command"));
    assert_eq!(phase(&pods.get("imageonly").await?), "Pending");
    kubelet.shutdown().await;
    Ok(())
}

/// One kubelet, many nodes: admission counts only the pods of the node in
/// question, and a deleted pod frees its node's room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_nodes_admit_against_their_own_pods_only() -> Result<(), Error> {
    let server = crate::support::test_server().await?;
    let dir = tempfile::tempdir()?;
    let config = Config::sim("adm-", 2, capacity(), dir.path().to_owned());
    let kubelet = kubelet::start(server.client(), config).await?;
    let pods: Api<Pod> = Api::namespaced(server.client(), "default");
    // Each asks for 3 of a node's 4 CPUs.
    let big = |name: &str, node: &str| {
        pod(
            name,
            node,
            json!({"containers": [{"name": "main", "image": "x", "resources": {"requests": {"cpu": "3"}}}]}),
        )
    };
    let running = |name: &'static str| {
        let pods = pods.clone();
        async move {
            wait_for(
                &format!("{name} Running"),
                Duration::from_secs(10),
                || async {
                    let p = get_pod(&pods, name).await?;
                    (phase(&p) == "Running").then_some(())
                },
            )
            .await
        }
    };
    pods.create(&PostParams::default(), &big("first", "adm-0"))
        .await?;
    running("first").await?;
    // The same size on the other node fits: adm-0's pod does not count there.
    pods.create(&PostParams::default(), &big("other", "adm-1"))
        .await?;
    running("other").await?;
    // A second on adm-0 does not.
    pods.create(&PostParams::default(), &big("second", "adm-0"))
        .await?;
    let p = wait_for("second Failed", Duration::from_secs(10), || async {
        let p = get_pod(&pods, "second").await?;
        (phase(&p) == "Failed").then_some(p)
    })
    .await?;
    assert_eq!(p.status.and_then(|s| s.reason).as_deref(), Some("OutOfcpu"));
    // Once `first` is gone its room is free again.
    pods.delete("first", &DeleteParams::default()).await?;
    wait_for("first removed", Duration::from_secs(10), || async {
        get_pod(&pods, "first").await.is_none().then_some(())
    })
    .await?;
    // The kubelet itself lets go of it (its worker leaves the node's map).
    let listed = format!("http://127.0.0.1:{}/pods", kubelet.port());
    wait_for(
        "first gone from the kubelet",
        Duration::from_secs(10),
        || async {
            let list = http_get(&listed).await.ok()?;
            (list.contains("\"other\"") && !list.contains("\"first\"")).then_some(())
        },
    )
    .await?;
    pods.create(&PostParams::default(), &big("third", "adm-0"))
        .await?;
    running("third").await?;
    kubelet.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_sim_nodes_run_pods() -> Result<(), Error> {
    let server = crate::support::test_server().await?;
    let dir = tempfile::tempdir()?;
    let config = Config::sim("sim-", 100, capacity(), dir.path().to_owned());
    let kubelet = kubelet::start(server.client(), config).await?;
    let nodes: Api<Node> = Api::all(server.client());
    assert_eq!(nodes.list(&Default::default()).await?.items.len(), 100);
    let pods: Api<Pod> = Api::namespaced(server.client(), "default");
    for i in 0..50 {
        let node = format!("sim-{}", i * 2);
        let p = pod(
            &format!("p{i}"),
            &node,
            json!({"containers": [{"name": "main", "image": "pause"}]}),
        );
        pods.create(&PostParams::default(), &p).await?;
    }
    let p: Pod = serde_json::from_value(json!({
        "metadata": {"name": "job", "namespace": "default", "annotations": {"rk.dev/sim-complete-after": "300ms", "rk.dev/sim-exit-code": "1"}},
        "spec": {"nodeName": "sim-99", "restartPolicy": "Never", "containers": [{"name": "main", "image": "x"}]},
    }))?;
    pods.create(&PostParams::default(), &p).await?;
    wait_for(
        "50 Running and Ready pods",
        Duration::from_secs(20),
        || async {
            let list = pods.list(&Default::default()).await.ok()?;
            let ready = list
                .items
                .iter()
                .filter(|p| {
                    phase(p) == "Running" && condition(p, "Ready").as_deref() == Some("True")
                })
                .count();
            (ready == 50).then_some(())
        },
    )
    .await?;
    wait_for("the sim job to fail", Duration::from_secs(10), || async {
        let p = get_pod(&pods, "job").await?;
        (phase(&p) == "Failed").then_some(())
    })
    .await?;
    kubelet.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn following_a_log_streams_lines_as_they_are_written() -> Result<(), Error> {
    use futures::AsyncBufReadExt;
    let (server, kubelet, _dir) = start("node-j").await?;
    let pods: Api<Pod> = Api::namespaced(server.client(), "default");
    let script = "for i in 1 2 3 4 5; do echo line $i; sleep 0.2; done";
    pods.create(
        &PostParams::default(),
        &pod("talker", "node-j", json!({"restartPolicy": "Never", "containers": [{"name": "main", "command": sh(script)}]})),
    )
    .await?;
    wait_for("Running", Duration::from_secs(10), || async {
        let p = get_pod(&pods, "talker").await?;
        (phase(&p) == "Running").then_some(())
    })
    .await?;
    let stream = pods
        .log_stream(
            "talker",
            &LogParams {
                follow: true,
                ..LogParams::default()
            },
        )
        .await?;
    let lines: Vec<String> = tokio::time::timeout(Duration::from_secs(10), async {
        let mut lines = stream.lines();
        let mut out = Vec::new();
        while let Some(Ok(line)) = futures::StreamExt::next(&mut lines).await {
            out.push(line);
        }
        out
    })
    .await?;
    assert_eq!(
        lines,
        vec!["line 1", "line 2", "line 3", "line 4", "line 5"]
    );
    kubelet.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_liveness_probe_restarts_the_container() -> Result<(), Error> {
    let (server, kubelet, _dir) = start("node-k").await?;
    let pods: Api<Pod> = Api::namespaced(server.client(), "default");
    pods.create(
        &PostParams::default(),
        &pod(
            "unhealthy",
            "node-k",
            json!({"terminationGracePeriodSeconds": 1, "containers": [{
                "name": "main",
                "command": sh("exec sleep 600"),
                "livenessProbe": {"exec": {"command": ["false"]}, "periodSeconds": 1, "failureThreshold": 1},
            }]}),
        ),
    )
    .await?;
    let cs = wait_for("a restart", Duration::from_secs(15), || async {
        let p = get_pod(&pods, "unhealthy").await?;
        let cs = p.status?.container_statuses?.first()?.clone();
        (cs.restart_count >= 1).then_some(cs)
    })
    .await?;
    let last = cs
        .last_state
        .and_then(|s| s.terminated)
        .ok_or("no last state")?;
    assert!(
        last.message
            .unwrap_or_default()
            .contains("failed liveness probe")
    );
    kubelet.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_containers_run_in_order_before_the_app_and_sidecars_keep_running() -> Result<(), Error>
{
    let (server, kubelet, dir) = start("node-l").await?;
    let trace = dir.path().join("trace");
    let t = trace.display().to_string();
    let pods: Api<Pod> = Api::namespaced(server.client(), "default");
    pods.create(
        &PostParams::default(),
        &pod(
            "ordered",
            "node-l",
            json!({
                "restartPolicy": "Never",
                "initContainers": [
                    {"name": "first", "command": sh(&format!("echo first >> {t}"))},
                    {
                        "name": "sidecar",
                        "restartPolicy": "Always",
                        "command": sh(&format!("echo sidecar >> {t}; exec sleep 600")),
                        // The next init container waits for the sidecar's startup probe.
                        "startupProbe": {"exec": {"command": ["grep", "-q", "sidecar", t.clone()]}, "periodSeconds": 1},
                    },
                    {"name": "second", "command": sh(&format!("echo second >> {t}"))},
                ],
                "containers": [{"name": "app", "command": sh(&format!("echo app >> {t}"))}],
            }),
        ),
    )
    .await?;
    let p = wait_for("Succeeded", Duration::from_secs(15), || async {
        let p = get_pod(&pods, "ordered").await?;
        (phase(&p) == "Succeeded").then_some(p)
    })
    .await?;
    assert_eq!(
        std::fs::read_to_string(&trace)?,
        "first\nsidecar\nsecond\napp\n"
    );
    assert_eq!(condition(&p, "Initialized").as_deref(), Some("True"));
    let init = p
        .status
        .and_then(|s| s.init_container_statuses)
        .unwrap_or_default();
    let reasons: Vec<Option<String>> = init
        .iter()
        .map(|s| {
            s.state
                .clone()
                .and_then(|s| s.terminated)
                .and_then(|t| t.reason)
        })
        .collect();
    assert_eq!(reasons[0].as_deref(), Some("Completed"));
    assert!(
        reasons[1].is_some(),
        "the sidecar is stopped once the app is done"
    );
    let metrics = http_get(&format!("http://127.0.0.1:{}/metrics", kubelet.port())).await?;
    assert!(
        metrics.contains("kubelet_containers_started_total 4"),
        "{metrics}"
    );
    let list = http_get(&format!("http://127.0.0.1:{}/pods", kubelet.port())).await?;
    assert!(list.contains("\"ordered\""));
    kubelet.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_root_volumes_appear_at_their_mount_paths() -> Result<(), Error> {
    if !kubelet::runtime::process::ProcessRuntime::can_use_mount_namespaces() {
        eprintln!("skipped: needs root and unshare");
        return Ok(());
    }
    let (server, kubelet, dir) = start("node-m").await?;
    // Mount points inside the test's directory, so the host is left alone.
    let mount_path = dir.path().join("mnt").join("cfg");
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let cm: ConfigMap = serde_json::from_value(
        json!({"metadata": {"name": "files"}, "data": {"a.txt": "mounted"}}),
    )?;
    cms.create(&PostParams::default(), &cm).await?;
    let pods: Api<Pod> = Api::namespaced(server.client(), "default");
    let script = format!(
        "cat {m}/a.txt; echo; touch {m}/b 2>/dev/null || echo read-only",
        m = mount_path.display()
    );
    pods.create(
        &PostParams::default(),
        &pod(
            "mounter",
            "node-m",
            json!({
                "restartPolicy": "Never",
                "volumes": [{"name": "cfg", "configMap": {"name": "files"}}],
                "containers": [{
                    "name": "main",
                    "command": sh(&script),
                    "volumeMounts": [{"name": "cfg", "mountPath": mount_path.display().to_string(), "readOnly": true}],
                }],
            }),
        ),
    )
    .await?;
    wait_for("Succeeded", Duration::from_secs(10), || async {
        let p = get_pod(&pods, "mounter").await?;
        (phase(&p) == "Succeeded").then_some(())
    })
    .await?;
    assert_eq!(
        pods.logs("mounter", &LogParams::default()).await?,
        "mounted\nread-only\n"
    );
    // Outside the container's namespace the mount point is an empty directory.
    assert!(!mount_path.join("a.txt").exists());
    kubelet.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_server_on_its_pod_ip_passes_http_and_tcp_probes() -> Result<(), Error> {
    if std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: needs python3");
        return Ok(());
    }
    let (server, kubelet, _dir) = start("node-n").await?;
    let pods: Api<Pod> = Api::namespaced(server.client(), "default");
    pods.create(
        &PostParams::default(),
        &pod(
            "web",
            "node-n",
            json!({"containers": [{
                "name": "web",
                "command": ["python3", "-m", "http.server", "8000", "--bind", "$(POD_IP)"],
                "ports": [{"name": "http", "containerPort": 8000}],
                "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1},
                "livenessProbe": {"tcpSocket": {"port": 8000}, "periodSeconds": 1},
            }]}),
        ),
    )
    .await?;
    let ready = wait_for("Ready", Duration::from_secs(20), || async {
        let p = get_pod(&pods, "web").await?;
        (condition(&p, "Ready").as_deref() == Some("True")).then_some(p)
    })
    .await;
    let p = match ready {
        Ok(p) => p,
        Err(e) => {
            let status = pods.get("web").await?.status;
            let log = pods
                .logs("web", &LogParams::default())
                .await
                .unwrap_or_default();
            return Err(format!("{e}: {status:?}; log: {log}").into());
        }
    };
    let ip = p.status.and_then(|s| s.pod_ip).ok_or("no pod IP")?;
    let page = match http_get(&format!("http://{ip}:8000/")).await {
        Ok(p) => p,
        Err(e) => {
            let status = pods.get("web").await?.status;
            let log = pods
                .logs("web", &LogParams::default())
                .await
                .unwrap_or_default();
            return Err(format!("{e}: {ip} {status:?}; log: {log}").into());
        }
    };
    assert!(page.contains("Directory listing"), "{page}");
    // kube-rs's port-forward (a WebSocket with a channel pair per port),
    // through the API server to this kubelet and on to the pod's port.
    let mut forwarder = pods.portforward("web", &[8000]).await?;
    let mut conn = forwarder
        .take_stream(8000)
        .ok_or("no stream for port 8000")?;
    conn.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").await?;
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    // Up to the page's end; then this side closes first, as kube-rs
    // expects (it fails `join` when the server's close came first).
    while !String::from_utf8_lossy(&reply).contains("</html>") {
        let n = conn.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        reply.extend_from_slice(&buf[..n]);
    }
    let reply = String::from_utf8_lossy(&reply);
    assert!(
        reply.starts_with("HTTP/1.0 200") && reply.contains("Directory listing"),
        "{reply}"
    );
    drop(conn);
    forwarder.join().await?;
    let events: Api<k8s_openapi::api::core::v1::Event> =
        Api::namespaced(server.client(), "default");
    wait_for("a Started event", Duration::from_secs(5), || async {
        let list = events.list(&Default::default()).await.ok()?;
        list.items
            .iter()
            .any(|e| {
                e.reason.as_deref() == Some("Started")
                    && e.involved_object.name.as_deref() == Some("web")
            })
            .then_some(())
    })
    .await?;
    let restarts = pods
        .get("web")
        .await?
        .status
        .and_then(|s| s.container_statuses)
        .unwrap_or_default()[0]
        .restart_count;
    assert_eq!(restarts, 0);
    kubelet.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_ignoring_sigterm_is_killed_after_the_grace_period() -> Result<(), Error> {
    let (server, kubelet, dir) = start("node-o").await?;
    let pid_file = dir.path().join("pid");
    let pods: Api<Pod> = Api::namespaced(server.client(), "default");
    let script = format!(
        "trap '' TERM; echo $$$$ > {}; while true; do sleep 0.2; done",
        pid_file.display()
    );
    pods.create(
        &PostParams::default(),
        &pod("stubborn", "node-o", json!({"terminationGracePeriodSeconds": 2, "containers": [{"name": "main", "command": sh(&script)}]})),
    )
    .await?;
    let pid: i32 = wait_for("the pid", Duration::from_secs(10), || async {
        std::fs::read_to_string(&pid_file).ok()?.trim().parse().ok()
    })
    .await?;
    let deleted_at = std::time::Instant::now();
    pods.delete("stubborn", &DeleteParams::default()).await?;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(
        process_alive(pid),
        "SIGTERM is ignored, so it runs until the grace period ends"
    );
    wait_for("the pod to be gone", Duration::from_secs(10), || async {
        get_pod(&pods, "stubborn").await.is_none().then_some(())
    })
    .await?;
    assert!(deleted_at.elapsed() >= Duration::from_secs(2));
    assert!(!process_alive(pid));
    kubelet.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_past_its_active_deadline_fails_with_deadline_exceeded() -> Result<(), Error> {
    let (server, kubelet, _dir) = start("node-p").await?;
    let pods: Api<Pod> = Api::namespaced(server.client(), "default");
    pods.create(
        &PostParams::default(),
        &pod(
            "late",
            "node-p",
            json!({"activeDeadlineSeconds": 1, "terminationGracePeriodSeconds": 1, "containers": [{"name": "main", "command": sh("exec sleep 600")}]}),
        ),
    )
    .await?;
    let p = wait_for("Failed", Duration::from_secs(10), || async {
        let p = get_pod(&pods, "late").await?;
        (phase(&p) == "Failed").then_some(p)
    })
    .await?;
    assert_eq!(
        p.status.and_then(|s| s.reason).as_deref(),
        Some("DeadlineExceeded")
    );
    kubelet.shutdown().await;
    Ok(())
}
