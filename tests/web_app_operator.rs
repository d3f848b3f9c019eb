//! The `web-app` example operator against a whole cluster: `rk up` runs the
//! cluster, the operator runs in this process against its kubeconfig (with
//! leader election on a Lease), and the real kubectl drives it: apply a
//! WebApp, see its Deployment and Service appear, get an answer from the app
//! through the Service's NodePort, `kubectl scale webapp`, then delete the
//! WebApp and see everything it owned garbage collected.
//!
//! tests/rk_up.rs runs another `rk up` at the same time. The two clusters
//! share the loopback pod range, so pods of both may get the same
//! `127.100.0.x` address: this test's app listens on port 18234 (that one on
//! 8080), and its Service asks for NodePort 31234 (that one's is allocated
//! at random, as upstream's: one chance in 2,768 of the same port).

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kube::CustomResourceExt;
use rk_examples::operator::{LeaseSettings, OperatorConfig, install_crd};
use rk_examples::web_app::{self, WebApp};

const APP_PORT: u16 = 18234;
const NODE_PORT: u16 = 31234;

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

fn start_up(dir: &Path, port: u16) -> Up {
    let log = std::fs::File::create(dir.join("up.log")).expect("log file");
    let child = Command::new(env!("CARGO_BIN_EXE_rk"))
        .args(["up", "--data-dir"])
        .arg(dir.join("data"))
        .args(["--port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("rk up starts");
    Up { child }
}

fn kubectl(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(common::kubectl_path())
        .args(args)
        .env("KUBECONFIG", dir.join("data/kubeconfig"))
        .env("KUBECACHEDIR", dir.join("kube-cache"))
        .env("HOME", dir)
        .output()
        .expect("kubectl runs (set RK_KUBECTL or run scripts/test)");
    (
        out.status.success(),
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

fn http_get(port: u16) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

fn get(dir: &Path, what: &[&str], jsonpath: &str) -> String {
    let mut args = vec!["get"];
    args.extend_from_slice(what);
    let path = format!("jsonpath={jsonpath}");
    args.extend_from_slice(&["-o", &path]);
    let (_, out, err) = kubectl(dir, &args);
    if !err.trim().is_empty() {
        eprintln!("kubectl {args:?}: {err}");
    }
    out.trim().to_owned()
}

fn pods(dir: &Path) -> usize {
    let (_, out, _) = kubectl(
        dir,
        &[
            "get",
            "pods",
            "-l",
            "examples.rk.dev/webapp=hello",
            "-o",
            "name",
        ],
    );
    out.lines().filter(|l| !l.trim().is_empty()).count()
}

/// The server URL in the kubeconfig `rk up` wrote.
fn server_url(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join("data/kubeconfig")).expect("kubeconfig");
    text.lines()
        .find_map(|l| l.trim().strip_prefix("server:"))
        .expect("a server line")
        .trim()
        .to_owned()
}

const WEB_APP: &str = r#"
# ANCHOR: manifest
apiVersion: examples.rk.dev/v1
kind: WebApp
metadata:
  name: hello
spec:
  image: python:3
  command: ["sh", "-c"]
  args: ["exec python3 -m http.server $PORT --bind $POD_IP"]
  replicas: 2
  port: 18234
  nodePort: 31234
# ANCHOR_END: manifest
"#;

#[test]
fn web_app_operator_runs_a_web_app_on_rk_up_scales_it_and_cleans_up() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    let up = start_up(dir, free_port());
    eventually("a Ready node", Duration::from_secs(60), || {
        let (success, out, _) = kubectl(dir, &["get", "nodes"]);
        success && out.contains(" Ready ")
    });

    // The operator, in this process, leading through a Lease.
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let client = {
        // kube's client spawns its buffer task: build it inside the runtime.
        let _entered = runtime.enter();
        rk::apiserver::test_server::client_for(&server_url(dir)).expect("a client")
    };
    runtime
        .block_on(install_crd(client.clone(), &WebApp::crd()))
        .expect("the CRD is established");
    let config = OperatorConfig {
        leader_election: Some(LeaseSettings {
            namespace: "default".into(),
            name: "web-app".into(),
            identity: "web-app-test".into(),
        }),
        workers: 2,
        ..OperatorConfig::default()
    };
    let manager = runtime.block_on(async { web_app::manager(client, &config) });
    let stop = manager.shutdown_token();
    let operator = runtime.spawn(manager.run());

    std::fs::write(dir.join("webapp.yaml"), WEB_APP).expect("manifest");
    let manifest = dir.join("webapp.yaml");
    ok(
        dir,
        &["apply", "-f", manifest.to_str().expect("utf-8 path")],
    );

    // The Deployment and the Service appear, owned by the WebApp.
    eventually(
        "the Deployment and the Service",
        Duration::from_secs(30),
        || {
            get(
                dir,
                &["deployment", "hello"],
                "{.metadata.ownerReferences[0].kind}",
            ) == "WebApp"
                && get(
                    dir,
                    &["service", "hello"],
                    "{.metadata.ownerReferences[0].kind}",
                ) == "WebApp"
        },
    );
    eventually(
        "the Service's NodePort and the container port",
        Duration::from_secs(30),
        || {
            get(dir, &["service", "hello"], "{.spec.ports[0].nodePort}") == NODE_PORT.to_string()
                && get(
                    dir,
                    &["deployment", "hello"],
                    "{.spec.template.spec.containers[0].ports[0].containerPort}",
                ) == APP_PORT.to_string()
        },
    );

    // The app answers through the Service, and the WebApp reports Ready.
    eventually(
        "the app answers on the NodePort",
        Duration::from_secs(90),
        || http_get(NODE_PORT).is_some_and(|r| r.starts_with("HTTP/1.0 200")),
    );
    eventually(
        "status Ready with 2 ready replicas",
        Duration::from_secs(60),
        || {
            get(dir, &["webapp", "hello"], "{.status.readyReplicas}") == "2"
                && get(
                    dir,
                    &["webapp", "hello"],
                    r#"{.status.conditions[?(@.type=="Ready")].status}"#,
                ) == "True"
        },
    );
    assert_eq!(
        get(dir, &["lease", "web-app"], "{.spec.holderIdentity}"),
        "web-app-test"
    );

    // `kubectl scale` goes through the WebApp's scale subresource.
    ok(dir, &["scale", "webapp", "hello", "--replicas=3"]);
    eventually("three replicas", Duration::from_secs(90), || {
        get(dir, &["deployment", "hello"], "{.spec.replicas}") == "3"
            && get(dir, &["webapp", "hello"], "{.status.readyReplicas}") == "3"
    });

    // Deleting the WebApp (the operator runs its finalizer) removes
    // everything it owned.
    ok(dir, &["delete", "webapp", "hello", "--timeout=60s"]);
    eventually(
        "the Deployment, Service and pods gone",
        Duration::from_secs(90),
        || {
            let (_, d, _) = kubectl(
                dir,
                &[
                    "get",
                    "deployment,service",
                    "-l",
                    "examples.rk.dev/webapp=hello",
                    "-o",
                    "name",
                ],
            );
            d.trim().is_empty() && pods(dir) == 0
        },
    );
    assert!(http_get(NODE_PORT).is_none_or(|r| !r.starts_with("HTTP/1.0 200")));

    stop.cancel();
    runtime
        .block_on(operator)
        .expect("the operator task")
        .expect("the operator stops cleanly");
    drop(up);
}
