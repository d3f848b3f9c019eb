//! A throw-away single-member etcd on loopback, for tests and benchmarks.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

/// Why a [`LocalEtcd`] could not start.
#[derive(Debug, thiserror::Error)]
pub enum LocalEtcdError {
    /// No `etcd` binary on `PATH` (Debian: `apt-get install etcd-server`).
    #[error("etcd is not installed (no `etcd` on PATH)")]
    NotInstalled,
    /// Starting the process or preparing its data directory failed.
    #[error("starting etcd: {0}")]
    Io(#[from] std::io::Error),
    /// The process exited or stayed silent instead of becoming ready.
    #[error("etcd did not become ready: {0}")]
    NotReady(String),
}

/// A single-member etcd on random loopback ports with a temporary data
/// directory. Dropping it kills the process (by its pid) and removes the data.
///
/// ```no_run
/// use rk_apiserver::storage::etcd::{EtcdStorage, LocalEtcd};
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let etcd = LocalEtcd::start()?;
/// let store = EtcdStorage::connect([etcd.endpoint()]).await?;
/// # Ok(()) }
/// ```
pub struct LocalEtcd {
    child: Child,
    data_dir: PathBuf,
    endpoint: String,
}

/// The name of the etcd binary, looked up on `PATH`.
const BINARY: &str = "etcd";
/// Requests up to this size are accepted (values of several MiB).
const MAX_REQUEST_BYTES: &str = "16777216";

impl LocalEtcd {
    /// Whether an `etcd` binary is on `PATH`.
    pub fn is_installed() -> bool {
        find_binary().is_some()
    }

    /// Starts etcd and waits until it serves clients (at most 30 s).
    pub fn start() -> Result<Self, LocalEtcdError> {
        let binary = find_binary().ok_or(LocalEtcdError::NotInstalled)?;
        let mut last_error = LocalEtcdError::NotReady("no attempt made".to_owned());
        // A port picked free can be taken before etcd binds it; try again then.
        for _ in 0..3 {
            match Self::try_start(&binary) {
                Ok(etcd) => return Ok(etcd),
                Err(error) => {
                    tracing::warn!(%error, "local etcd failed to start; retrying");
                    last_error = error;
                }
            }
        }
        Err(last_error)
    }

    fn try_start(binary: &Path) -> Result<Self, LocalEtcdError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let data_dir = std::env::temp_dir().join(format!(
            "rk-etcd-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&data_dir)?;
        let (client_port, peer_port) = free_ports()?;
        let client = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let spawned = Command::new(binary)
            .arg("--name=rk")
            .arg(format!("--data-dir={}", data_dir.display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=rk={peer}"))
            .arg(format!("--max-request-bytes={MAX_REQUEST_BYTES}"))
            .arg("--quota-backend-bytes=8589934592")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(error) => {
                let _ = std::fs::remove_dir_all(&data_dir);
                return Err(error.into());
            }
        };
        let stderr = child.stderr.take();
        // From here on, dropping `etcd` kills the process and removes its data.
        let etcd = Self {
            child,
            data_dir,
            endpoint: client,
        };
        let Some(stderr) = stderr else {
            return Err(LocalEtcdError::NotReady("no stderr pipe".to_owned()));
        };
        // etcd logs to stderr; the reader thread signals readiness, then keeps
        // draining so etcd never blocks on a full pipe.
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("rk-local-etcd-log".to_owned())
            .spawn(move || {
                let mut tail = Vec::new();
                let mut ready = Some(ready_tx);
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if line.contains("ready to serve client requests") {
                        if let Some(ready) = ready.take() {
                            let _ = ready.send(Ok(()));
                        }
                    } else if ready.is_some() {
                        tail.push(line);
                        if tail.len() > 20 {
                            tail.remove(0);
                        }
                    }
                }
                if let Some(ready) = ready {
                    let _ = ready.send(Err(tail.join("\n")));
                }
            })?;
        match ready_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(())) => {
                tracing::debug!(endpoint = %etcd.endpoint, pid = etcd.child.id(), "local etcd ready");
                Ok(etcd)
            }
            Ok(Err(log)) => Err(LocalEtcdError::NotReady(format!("etcd exited:\n{log}"))),
            Err(_) => Err(LocalEtcdError::NotReady(
                "no ready message within 30 s".to_owned(),
            )),
        }
    }

    /// The client URL, `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for LocalEtcd {
    fn drop(&mut self) {
        // `Child::kill` sends SIGKILL to this child's pid only.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

fn find_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(BINARY))
        .find(|candidate| candidate.is_file())
}

fn free_ports() -> std::io::Result<(u16, u16)> {
    let a = TcpListener::bind("127.0.0.1:0")?;
    let b = TcpListener::bind("127.0.0.1:0")?;
    Ok((a.local_addr()?.port(), b.local_addr()?.port()))
}
