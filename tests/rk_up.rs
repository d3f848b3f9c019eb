//! The README's main command, end to end: `rk up` starts a whole cluster;
//! the real kubectl creates a Deployment whose pods really run (the process
//! runtime), exposes it as a NodePort Service that really answers through
//! the proxy, reaches it with `kubectl exec` and `kubectl port-forward`,
//! scales it, deletes it; Ctrl-C stops everything, and a second
//! `rk up` on the same data directory resumes the same state.

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Up {
    child: Child,
}

impl Drop for Up {
    /// Ctrl-C (SIGINT), then SIGKILL if it has not stopped within 15 s.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn start_up_with(dir: &Path, port: u16, extra: &[&str]) -> Up {
    let log = std::fs::File::create(dir.join("up.log")).expect("log file");
    let child = Command::new(env!("CARGO_BIN_EXE_rk"))
        .args(["up", "--data-dir"])
        .arg(dir.join("data"))
        .args(["--port", &port.to_string()])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("rk up starts");
    Up { child }
}

fn kubectl(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let (code, out, err) = kubectl_with_input(dir, args, b"");
    (code == Some(0), out, err)
}

/// kubectl with `input` on its stdin; its exit code, stdout and stderr.
fn kubectl_with_input(dir: &Path, args: &[&str], input: &[u8]) -> (Option<i32>, String, String) {
    kubectl_with_input_env(dir, args, input, &[])
}

fn kubectl_with_input_env(
    dir: &Path,
    args: &[&str],
    input: &[u8],
    env: &[(&str, &str)],
) -> (Option<i32>, String, String) {
    let mut child = Command::new(common::kubectl_path())
        .args(args)
        .envs(env.iter().copied())
        .env("KUBECONFIG", dir.join("data/kubeconfig"))
        .env("KUBECACHEDIR", dir.join("kube-cache"))
        .env("HOME", dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl runs (set RK_KUBECTL or run scripts/test)");
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(input);
    }
    let out = child.wait_with_output().expect("kubectl finishes");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let (success, out, err) = kubectl(dir, args);
    assert!(success, "kubectl {args:?} failed:\n{out}\n{err}");
    out
}

fn eventually(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("timed out waiting for: {what}");
}

fn pods_json(dir: &Path, selector: &str) -> Vec<serde_json::Value> {
    let (_, out, _) = kubectl(dir, &["get", "pods", "-l", selector, "-o", "json"]);
    serde_json::from_str::<serde_json::Value>(&out)
        .ok()
        .and_then(|v| v["items"].as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .collect()
}

fn running(pods: &[serde_json::Value]) -> usize {
    pods.iter()
        .filter(|p| p["status"]["phase"] == "Running")
        .count()
}

fn http_get_at(addr: (&str, u16)) -> Option<String> {
    http_get_path(addr, "/")
}

/// `GET path` over HTTP/1.0 at `addr`: the whole answer.
fn http_get_path(addr: (&str, u16), path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// `kubectl port-forward TARGET LOCAL:REMOTE` on a free local port, with
/// `env` set; the running kubectl and the local port, once it forwards.
fn port_forward(dir: &Path, target: &str, remote: u16, env: &[(&str, &str)]) -> (Child, u16) {
    let local = free_port();
    let mut cmd = Command::new(common::kubectl_path());
    cmd.args(["port-forward", target, &format!("{local}:{remote}")])
        .env("KUBECONFIG", dir.join("data/kubeconfig"))
        .env("KUBECACHEDIR", dir.join("kube-cache"))
        .env("HOME", dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("kubectl runs");
    let mut stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    let _ = std::io::BufRead::read_line(&mut stdout, &mut line);
    // Keep reading: kubectl writes a line per connection, and a closed
    // pipe would end it.
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    assert!(
        line.starts_with(&format!("Forwarding from 127.0.0.1:{local}")),
        "kubectl port-forward {target}: {line:?}"
    );
    (child, local)
}

/// The Python client's port-forward (`v4.channel.k8s.io`): argv is the
/// kubeconfig and the pod; prints the answer of the pod's port 8080 and the
/// error the kubelet reported for it.
const PYTHON_PORT_FORWARD: &str = r#"
import sys
from kubernetes import client, config
from kubernetes.stream import portforward
config.load_kube_config(sys.argv[1])
api = client.CoreV1Api()
pf = portforward(api.connect_get_namespaced_pod_portforward, sys.argv[2], "default", ports="8080")
s = pf.socket(8080)
s.setblocking(True)
s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
data = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
print(data.decode(errors="replace"))
print("error=%s" % pf.error(8080))
"#;

fn ready_endpoint_ips(dir: &Path) -> Vec<String> {
    let out = ok(
        dir,
        &[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=web",
            "-o",
            "json",
        ],
    );
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let mut ips = Vec::new();
    for s in v["items"].as_array().into_iter().flatten() {
        for e in s["endpoints"].as_array().into_iter().flatten() {
            if e["conditions"]["ready"] == true {
                ips.push(e["addresses"][0].as_str().unwrap_or_default().to_string());
            }
        }
    }
    ips.sort();
    ips
}

const DAEMONSET: &str = r#"
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      containers:
      - {name: agent, image: busybox, command: [sleep, "3600"]}
"#;

#[test]
fn rk_up_runs_a_three_node_cluster_end_to_end_and_resumes_after_restart() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    let port = free_port();
    let up = start_up_with(dir, port, &["--nodes", "3"]);
    eventually("three Ready nodes", Duration::from_secs(60), || {
        let (success, out, _) = kubectl(dir, &["get", "nodes", "--no-headers"]);
        success && out.lines().filter(|l| l.contains(" Ready ")).count() == 3
    });

    // A Deployment of web servers behind a NodePort Service. Each pod has its
    // own loopback IP (POD_IP), so the replicas share a port.
    ok(
        dir,
        &[
            "create",
            "deployment",
            "web",
            "--image=python:3",
            "--replicas=3",
            "--",
            "sh",
            "-c",
            "exec python3 -m http.server 8080 --bind $POD_IP",
        ],
    );
    ok(
        dir,
        &[
            "expose",
            "deployment",
            "web",
            "--port=80",
            "--target-port=8080",
            "--type=NodePort",
        ],
    );
    ok(
        dir,
        &["rollout", "status", "deployment/web", "--timeout=90s"],
    );
    let svc: serde_json::Value =
        serde_json::from_str(&ok(dir, &["get", "service", "web", "-o", "json"])).expect("json");
    let node_port = svc["spec"]["ports"][0]["nodePort"]
        .as_u64()
        .expect("nodePort") as u16;
    let cluster_ip = svc["spec"]["clusterIP"]
        .as_str()
        .expect("clusterIP")
        .to_string();
    eventually(
        "the app answers through its NodePort",
        Duration::from_secs(30),
        || http_get_at(("127.0.0.1", node_port)).is_some_and(|r| r.starts_with("HTTP/1.0 200")),
    );
    eventually(
        "the app answers through its ClusterIP",
        Duration::from_secs(30),
        || http_get_at((cluster_ip.as_str(), 80)).is_some_and(|r| r.starts_with("HTTP/1.0 200")),
    );
    eventually("three ready endpoints", Duration::from_secs(30), || {
        ready_endpoint_ips(dir).len() == 3
    });
    // The servers' own output: http.server logs each request it answered.
    for _ in 0..6 {
        let _ = http_get_at(("127.0.0.1", node_port));
    }
    let logs: String = pods_json(dir, "app=web")
        .iter()
        .map(|p| {
            let name = p["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            kubectl(dir, &["logs", &name]).1
        })
        .collect();
    assert!(logs.contains("\"GET / HTTP/1.0\" 200"), "{logs}");

    // kubectl exec: the command runs in the pod's context (its POD_IP),
    // both output streams come back, stdin goes in and its end closes it,
    // and the command's exit code is kubectl's. Over a WebSocket (kubectl's
    // first choice) and over SPDY (its fallback, client-go's SPDY executor).
    let first = &pods_json(dir, "app=web")[0];
    let pod = first["metadata"]["name"].as_str().unwrap_or_default();
    let pod_ip = first["status"]["podIP"].as_str().unwrap_or_default();
    for env in [
        &[][..],
        &[("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")][..],
    ] {
        let (code, out, err) = kubectl_with_input_env(
            dir,
            &[
                "exec",
                pod,
                "--",
                "sh",
                "-c",
                "echo ip=$POD_IP; echo oops >&2",
            ],
            b"",
            env,
        );
        assert_eq!(code, Some(0), "{env:?}: {out}\n{err}");
        assert_eq!(out.trim(), format!("ip={pod_ip}"), "{env:?}");
        assert!(err.contains("oops"), "{env:?}: {err}");
        let (code, out, _) = kubectl_with_input_env(
            dir,
            &["exec", "-i", pod, "--", "wc", "-l"],
            b"one\ntwo\n",
            env,
        );
        assert_eq!((code, out.trim()), (Some(0), "2"), "{env:?}");
        let (code, _, err) =
            kubectl_with_input_env(dir, &["exec", pod, "--", "sh", "-c", "exit 3"], b"", env);
        assert_eq!(code, Some(3), "{env:?}: {err}");
        assert!(
            err.contains("command terminated with exit code 3"),
            "{env:?}: {err}"
        );
    }

    // kubectl debug: an ephemeral container added to the running pod runs
    // once, reports its status and keeps its logs.
    ok(
        dir,
        &[
            "debug",
            pod,
            "--image=busybox",
            "--container=dbg",
            "--",
            "sh",
            "-c",
            "echo debugging",
        ],
    );
    let mut state = String::new();
    for _ in 0..100 {
        state = ok(
            dir,
            &[
                "get",
                "pod",
                pod,
                "-o",
                "jsonpath={.status.ephemeralContainerStatuses[0].state.terminated.reason}",
            ],
        );
        if state == "Completed" {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(state, "Completed");
    assert_eq!(ok(dir, &["logs", pod, "-c", "dbg"]).trim(), "debugging");

    // kubectl port-forward, through the API server and the pod's kubelet:
    // SPDY tunnelled in a WebSocket (kubectl's first choice), plain SPDY
    // (its fallback), and the Python client's WebSocket channels. The
    // answer comes from the pod's server.
    for env in [&[][..], &[("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false")][..]] {
        let (mut child, local) = port_forward(dir, "deployment/web", 8080, env);
        let replies: Vec<String> = (0..3)
            .map(|_| http_get_at(("127.0.0.1", local)).unwrap_or_default())
            .collect();
        let _ = child.kill();
        let _ = child.wait();
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        for reply in replies {
            assert!(
                reply.starts_with("HTTP/1.0 200") && reply.contains("Directory listing"),
                "{env:?}: {reply}\n{err}"
            );
        }
    }
    let py = Command::new("python3")
        .args(["-c", PYTHON_PORT_FORWARD])
        .arg(dir.join("data/kubeconfig"))
        .arg(pod)
        .output()
        .expect("python3 runs");
    let (py_out, py_err) = (
        String::from_utf8_lossy(&py.stdout),
        String::from_utf8_lossy(&py.stderr),
    );
    assert!(
        py.status.success()
            && py_out.contains("Directory listing")
            && py_out.contains("error=None"),
        "{py_out}\n{py_err}"
    );
    // Nothing listens on the pod's port 9: kubectl reports the kubelet's
    // error for that connection and ends the session.
    let (mut child, local) = port_forward(dir, &format!("pod/{pod}"), 9, &[]);
    let reply = http_get_at(("127.0.0.1", local)).unwrap_or_default();
    assert!(reply.is_empty(), "{reply}");
    let status = child.wait().expect("kubectl port-forward ends");
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    assert!(!status.success());
    assert!(
        err.contains("error forwarding port 9") && err.contains("Connection refused"),
        "{err}"
    );

    // kubectl top: usage the kubelets sample, served as metrics.k8s.io.
    eventually(
        "kubectl top shows the web pods",
        Duration::from_secs(40),
        || {
            let (success, out, _) = kubectl(dir, &["top", "pod", "-l", "app=web", "--no-headers"]);
            success
                && out.lines().count() == 3
                && out
                    .lines()
                    .all(|l| l.starts_with("web-") && l.contains("Mi"))
        },
    );
    eventually(
        "kubectl top shows the nodes",
        Duration::from_secs(20),
        || {
            let (success, out, _) = kubectl(dir, &["top", "node", "--no-headers"]);
            success && out.lines().filter(|l| l.starts_with("rk-node-")).count() == 3
        },
    );

    // kubectl autoscale: the autoscaler reads those metrics; these pods
    // request no CPU, so it says why it cannot scale on utilization.
    ok(
        dir,
        &[
            "autoscale",
            "deployment",
            "web",
            "--cpu=50%",
            "--min=3",
            "--max=3",
        ],
    );
    eventually(
        "the autoscaler reports the missing request",
        Duration::from_secs(30),
        || {
            let (success, out, _) = kubectl(dir, &["describe", "hpa", "web"]);
            success
                && out.contains("FailedGetResourceMetric")
                && out.contains("missing request for cpu")
        },
    );
    let table = ok(dir, &["get", "hpa", "web", "--no-headers"]);
    assert!(
        table.contains("Deployment/web") && table.contains("cpu: <unknown>/50%"),
        "{table}"
    );
    ok(dir, &["delete", "hpa", "web"]);

    // kubectl attach, as `kubectl run --rm -i` uses it: the command's
    // output as it runs, its exit code as kubectl's, the pod removed after.
    let (code, out, err) = kubectl_with_input(
        dir,
        &[
            "run",
            "once",
            "--rm",
            "-i",
            "--restart=Never",
            "--image=busybox",
            "--command",
            "--",
            "sh",
            "-c",
            "sleep 2; echo from-attach; exit 3",
        ],
        b"",
    );
    assert_eq!(code, Some(3), "{out}\n{err}");
    assert!(out.contains("from-attach"), "{out}\n{err}");
    // kubectl falls back to the pod's logs when it cannot attach.
    assert!(!err.contains("falling back"), "{err}");
    // With input: `run -i` asks for stdin (and stdinOnce); what kubectl
    // reads goes to the container, and its end is the container's end of
    // file. Over a WebSocket and over SPDY (client-go's SPDY executor).
    for (name, env) in [
        ("feed", &[][..]),
        (
            "feed-spdy",
            &[("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")][..],
        ),
    ] {
        let (code, out, err) = kubectl_with_input_env(
            dir,
            &[
                "run",
                name,
                "--rm",
                "-i",
                "--restart=Never",
                "--image=busybox",
                "--",
                "sh",
                "-c",
                "read first; echo first=$first; wc -l",
            ],
            b"one\ntwo\nthree\n",
            env,
        );
        assert_eq!(code, Some(0), "{env:?}: {out}\n{err}");
        assert!(
            out.contains("first=one") && out.lines().any(|l| l.trim() == "2"),
            "{env:?}: {out}\n{err}"
        );
        assert!(!err.contains("falling back"), "{env:?}: {err}");
    }

    // Scale to 6 and back.
    ok(dir, &["scale", "deployment", "web", "--replicas=6"]);
    ok(
        dir,
        &["rollout", "status", "deployment/web", "--timeout=90s"],
    );
    eventually("six running", Duration::from_secs(30), || {
        running(&pods_json(dir, "app=web")) == 6
    });
    ok(dir, &["scale", "deployment", "web", "--replicas=3"]);
    eventually("three running", Duration::from_secs(30), || {
        let pods = pods_json(dir, "app=web");
        pods.len() == 3 && running(&pods) == 3
    });

    // A killed container is restarted in place.
    let pods = pods_json(dir, "app=web");
    let victim = pods[0]["metadata"]["name"]
        .as_str()
        .expect("name")
        .to_string();
    let ip = pods[0]["status"]["podIP"]
        .as_str()
        .expect("podIP")
        .to_string();
    let killed = Command::new("pkill")
        .args(["-KILL", "-f", &format!("http.server 8080 --bind {ip}$")])
        .status()
        .expect("pkill runs");
    assert!(killed.success(), "no process served {ip}");
    eventually("restartCount 1", Duration::from_secs(30), || {
        let (_, out, _) = kubectl(
            dir,
            &[
                "get",
                "pod",
                &victim,
                "-o",
                "jsonpath={.status.containerStatuses[0].restartCount}",
            ],
        );
        out.trim() == "1"
    });

    // A deleted pod is replaced.
    ok(dir, &["delete", "pod", &victim]);
    eventually("a replacement pod", Duration::from_secs(30), || {
        let pods = pods_json(dir, "app=web");
        running(&pods) == 3
            && pods
                .iter()
                .all(|p| p["metadata"]["name"] != victim.as_str())
    });

    // A failing readiness probe takes a pod out of the Service's endpoints.
    let marker = dir.join("ready");
    std::fs::write(&marker, "").expect("marker");
    let probe_pod = format!(
        r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "probed", "labels": {{"app": "web"}}}},
            "spec": {{"containers": [{{"name": "c", "image": "x",
                "command": ["sh", "-c", "exec python3 -m http.server 8080 --bind $POD_IP"],
                "readinessProbe": {{"exec": {{"command": ["test", "-f", "{}"]}}, "periodSeconds": 1}}}}]}}}}"#,
        marker.display()
    );
    std::fs::write(dir.join("probed.json"), probe_pod).expect("pod file");
    ok(
        dir,
        &[
            "apply",
            "-f",
            &dir.join("probed.json").display().to_string(),
        ],
    );
    eventually(
        "the probed pod ready in the endpoints",
        Duration::from_secs(30),
        || ready_endpoint_ips(dir).len() == 4,
    );
    std::fs::remove_file(&marker).expect("remove marker");
    eventually(
        "the probed pod out of the ready endpoints",
        Duration::from_secs(30),
        || ready_endpoint_ips(dir).len() == 3,
    );
    ok(dir, &["delete", "pod", "probed", "--wait=false"]);

    // A Job runs to completion.
    ok(
        dir,
        &[
            "create",
            "job",
            "hello",
            "--image=busybox",
            "--",
            "sh",
            "-c",
            "echo hello from a job",
        ],
    );
    ok(
        dir,
        &[
            "wait",
            "--for=condition=complete",
            "job/hello",
            "--timeout=60s",
        ],
    );
    assert!(ok(dir, &["logs", "job/hello"]).contains("hello from a job"));

    // A DaemonSet puts one pod on each node.
    std::fs::write(dir.join("ds.yaml"), DAEMONSET).expect("ds file");
    ok(
        dir,
        &["apply", "-f", &dir.join("ds.yaml").display().to_string()],
    );
    eventually("one agent per node", Duration::from_secs(60), || {
        let pods = pods_json(dir, "app=agent");
        let nodes: std::collections::HashSet<String> = pods
            .iter()
            .filter(|p| p["status"]["phase"] == "Running")
            .filter_map(|p| p["spec"]["nodeName"].as_str().map(String::from))
            .collect();
        pods.len() == 3 && nodes.len() == 3
    });

    // Draining a node moves its pods elsewhere.
    // A budget over the web pods: drain's evictions respect it (one at a
    // time, each once the replacement is Ready), and its status follows.
    ok(
        dir,
        &[
            "create",
            "poddisruptionbudget",
            "web",
            "--selector=app=web",
            "--min-available=2",
        ],
    );
    let pdb_allows = |dir: &Path, want: &str| {
        let (success, out, _) = kubectl(
            dir,
            &[
                "get",
                "pdb",
                "web",
                "-o",
                "jsonpath={.status.disruptionsAllowed}/{.status.currentHealthy}",
            ],
        );
        success && out.trim() == want
    };
    eventually(
        "the budget allows one disruption",
        Duration::from_secs(30),
        || pdb_allows(dir, "1/3"),
    );
    ok(
        dir,
        &[
            "drain",
            "rk-node-1",
            "--ignore-daemonsets",
            "--force",
            "--delete-emptydir-data",
            "--timeout=90s",
        ],
    );
    eventually(
        "web pods off the drained node",
        Duration::from_secs(60),
        || {
            let pods = pods_json(dir, "app=web");
            running(&pods) == 3
                && pods.len() == 3
                && pods.iter().all(|p| p["spec"]["nodeName"] != "rk-node-1")
        },
    );
    eventually("the budget is whole again", Duration::from_secs(30), || {
        pdb_allows(dir, "1/3")
    });

    // Stop with Ctrl-C and start again: the same objects come back, and the
    // pods run again.
    drop(up);
    let up = start_up_with(dir, port, &["--nodes", "3"]);
    eventually(
        "the Deployment is back and available",
        Duration::from_secs(60),
        || {
            let (success, out, _) = kubectl(
                dir,
                &[
                    "get",
                    "deployment",
                    "web",
                    "-o",
                    "jsonpath={.status.availableReplicas}",
                ],
            );
            success && out.trim() == "3"
        },
    );
    eventually("the app answers again", Duration::from_secs(30), || {
        http_get_at(("127.0.0.1", node_port)).is_some_and(|r| r.starts_with("HTTP/1.0 200"))
    });

    ok(dir, &["delete", "deployment", "web"]);
    eventually("pods garbage collected", Duration::from_secs(60), || {
        pods_json(dir, "app=web").is_empty()
    });
    drop(up);
}

#[test]
fn two_clusters_on_one_machine_keep_to_their_own_service_and_pod_ranges() {
    // Ranges of their own, so this test never meets the default-range
    // cluster of the test above when both run at once.
    let clusters = [
        ("127.202.0.0/16", "127.102.0.0/16", "127.202.0.1"),
        ("127.203.0.0/16", "127.103.0.0/16", "127.203.0.1"),
    ];
    let tmp = [
        tempfile::tempdir().expect("temp dir"),
        tempfile::tempdir().expect("temp dir"),
    ];
    let ups: Vec<Up> = clusters
        .iter()
        .zip(&tmp)
        .map(|((services, pods, _), t)| {
            start_up_with(
                t.path(),
                free_port(),
                &[
                    "--service-cluster-ip-range",
                    services,
                    "--cluster-cidr",
                    pods,
                ],
            )
        })
        .collect();
    for ((_, pods, kubernetes_ip), t) in clusters.iter().zip(&tmp) {
        let dir = t.path();
        eventually("a Ready node", Duration::from_secs(60), || {
            let (success, out, _) = kubectl(dir, &["get", "nodes", "--no-headers"]);
            success && out.lines().any(|l| l.contains(" Ready "))
        });
        let ip = ok(
            dir,
            &[
                "get",
                "service",
                "kubernetes",
                "-o",
                "jsonpath={.spec.clusterIP}",
            ],
        );
        assert_eq!(ip.trim(), *kubernetes_ip);
        let cidr = ok(
            dir,
            &["get", "node", "rk-node-0", "-o", "jsonpath={.spec.podCIDR}"],
        );
        let prefix = pods.trim_end_matches("0.0/16");
        assert!(cidr.starts_with(prefix), "{cidr} not in {pods}");
        // Each cluster's proxy forwards its own `kubernetes` Service to its
        // own API server: the answer names the address asked.
        eventually(
            "the kubernetes Service answers through its cluster IP",
            Duration::from_secs(30),
            || {
                http_get_path(
                    (kubernetes_ip, 443),
                    "/api/v1/namespaces/default/services/kubernetes",
                )
                .is_some_and(|r| r.contains(&format!("\"clusterIP\":\"{kubernetes_ip}\"")))
            },
        );
    }
    // A range that cannot be used stops `rk up` before anything starts.
    let bad = tempfile::tempdir().expect("temp dir");
    let out = Command::new(env!("CARGO_BIN_EXE_rk"))
        .args(["up", "--data-dir"])
        .arg(bad.path().join("data"))
        .args(["--port", &free_port().to_string()])
        .args(["--service-cluster-ip-range", "127.0.0.0/8"])
        .output()
        .expect("rk up runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("between 12 and 30"), "{err}");
    drop(ups);
}
