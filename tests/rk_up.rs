//! The README's main command, end to end: `rk up` starts a whole cluster;
//! the real kubectl creates a Deployment whose pods really run (the process
//! runtime), exposes it as a NodePort Service that really answers through
//! the proxy, scales it, deletes it; Ctrl-C stops everything, and a second
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

fn running_pods(dir: &Path) -> usize {
    let (_, out, _) = kubectl(dir, &["get", "pods", "-o", "json"]);
    serde_json::from_str::<serde_json::Value>(&out)
        .ok()
        .and_then(|v| {
            v["items"].as_array().map(|items| {
                items
                    .iter()
                    .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
                    .filter(|p| p["status"]["phase"] == "Running")
                    .count()
            })
        })
        .unwrap_or(0)
}

#[test]
fn rk_up_runs_a_deployment_behind_a_service_and_resumes_after_restart() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    let port = free_port();
    let up = start_up(dir, port);
    eventually("a Ready node", Duration::from_secs(60), || {
        let (success, out, _) = kubectl(dir, &["get", "nodes"]);
        success && out.contains(" Ready ")
    });
    // Each pod has its own loopback IP (POD_IP), so replicas share a port.
    ok(
        dir,
        &[
            "create",
            "deployment",
            "web",
            "--image=python:3",
            "--replicas=2",
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
    let node_port: u16 = ok(
        dir,
        &[
            "get",
            "service",
            "web",
            "-o",
            "jsonpath={.spec.ports[0].nodePort}",
        ],
    )
    .trim()
    .parse()
    .expect("a nodePort");
    eventually(
        "the app answers through the Service",
        Duration::from_secs(30),
        || http_get(node_port).is_some_and(|r| r.starts_with("HTTP/1.0 200")),
    );
    let endpoints = ok(
        dir,
        &[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=web",
            "-o",
            "jsonpath={.items[*].endpoints[*].addresses[0]}",
        ],
    );
    assert_eq!(endpoints.split_whitespace().count(), 2, "{endpoints}");

    ok(dir, &["scale", "deployment", "web", "--replicas=3"]);
    ok(
        dir,
        &["rollout", "status", "deployment/web", "--timeout=90s"],
    );
    eventually("three running pods", Duration::from_secs(30), || {
        running_pods(dir) == 3
    });

    // Stop with Ctrl-C and start again: the same objects come back, and the
    // pods run again.
    drop(up);
    let up = start_up(dir, port);
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
        http_get(node_port).is_some_and(|r| r.starts_with("HTTP/1.0 200"))
    });

    ok(dir, &["delete", "deployment", "web"]);
    eventually("pods garbage collected", Duration::from_secs(60), || {
        let (_, out, _) = kubectl(dir, &["get", "pods", "-o", "name"]);
        out.trim().is_empty()
    });
    drop(up);
}
