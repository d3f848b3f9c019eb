//! Container runtimes behind one trait.
//!
//! A runtime starts one container instance from a fully resolved
//! [`ContainerSpec`] (argv, environment, working directory, log file) and
//! hands back a [`Started`] container: a channel that reports its exit and a
//! control to signal it. Everything Kubernetes-specific (restart policy,
//! probes, status) lives in the pod worker above it.
//!
//! - [`process`]: every container is a host process in its own process group;
//! - [`sim`]: nothing runs; containers "run" and exit as pod annotations say.

pub mod process;
pub mod sim;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

use tokio::sync::watch;

/// The annotation that makes a sim container exit after a duration (`5s`,
/// `250ms`, `2m`).
pub const SIM_COMPLETE_AFTER: &str = "rk.dev/sim-complete-after";
/// The annotation with the exit code of a sim container that completes
/// (default 0).
pub const SIM_EXIT_CODE: &str = "rk.dev/sim-exit-code";

/// Why a runtime could not start or run something.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The container's configuration cannot be run (status reason
    /// `CreateContainerConfigError`).
    #[error("{0}")]
    Config(String),
    /// Starting the container failed (status reason `RunContainerError`).
    #[error("{0}")]
    Start(String),
    /// A command run in the container's context timed out.
    #[error("command timed out after {0:?}")]
    Timeout(Duration),
}

/// How a sim container behaves (read from the pod's annotations).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimBehaviour {
    /// Exit after this long; run until stopped when `None`.
    pub complete_after: Option<Duration>,
    /// The exit code when it completes.
    pub exit_code: i32,
}

/// One container instance to start, fully resolved.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    /// A unique id for this instance (`<pod uid>-<container>-<restart>`).
    pub id: String,
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub pod: String,
    /// The container's name.
    pub container: String,
    /// The command line: `command` then `args`, `$(VAR)` already expanded.
    pub argv: Vec<String>,
    /// The environment, in order.
    pub env: Vec<(String, String)>,
    /// The working directory.
    pub working_dir: Option<PathBuf>,
    /// Where the container's stdout and stderr go (CRI log format).
    pub log_path: PathBuf,
    /// Volume mounts (used by runtimes with mount namespaces).
    pub mounts: Vec<Mount>,
    /// Sim behaviour (ignored by real runtimes).
    pub sim: SimBehaviour,
    /// Keep a pipe open to the container's standard input (`stdin: true`);
    /// otherwise it reads nothing.
    pub stdin: bool,
}

/// A directory or file of the host to show at a path inside the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// What to mount (a volume's directory, or a path inside it).
    pub source: PathBuf,
    /// Where the container sees it (`mountPath`).
    pub target: PathBuf,
    /// Mounted read-only.
    pub read_only: bool,
}

/// A command to run in a container's context (exec probes and hooks).
#[derive(Debug, Clone)]
pub struct ExecSpec {
    /// The command line.
    pub argv: Vec<String>,
    /// The container's environment.
    pub env: Vec<(String, String)>,
    /// The container's working directory.
    pub working_dir: Option<PathBuf>,
    /// Kill the command after this long.
    pub timeout: Duration,
}

/// A command started in a running container (`kubectl exec`), with its
/// standard streams.
pub struct ExecSession {
    /// Its standard input.
    pub stdin: Pin<Box<dyn AsyncWrite + Send>>,
    /// Its standard output.
    pub stdout: Pin<Box<dyn AsyncRead + Send>>,
    /// Its standard error.
    pub stderr: Pin<Box<dyn AsyncRead + Send>>,
    /// Resolves to its exit code once it ended.
    pub exit: Pin<Box<dyn Future<Output = i32> + Send>>,
    /// Kills it (when the client goes away).
    pub kill: Box<dyn Fn() + Send + Sync>,
}

/// Where a streaming exec runs.
#[derive(Debug, Clone, Default)]
pub struct ExecTarget {
    /// The command line.
    pub argv: Vec<String>,
    /// The container's environment.
    pub env: Vec<(String, String)>,
    /// The container's working directory.
    pub working_dir: Option<PathBuf>,
    /// The container's main process, whose mount namespace to enter.
    pub pid: Option<u32>,
}

/// How a container instance ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    /// The exit code (128 + signal number when killed by a signal).
    pub code: i32,
    /// The signal that killed it, if any.
    pub signal: Option<i32>,
    /// When it ended.
    pub finished_at: jiff::Timestamp,
}

/// A signal to send to a running container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Ask it to stop (SIGTERM).
    Term,
    /// Stop it now (SIGKILL).
    Kill,
}

/// Sends signals to a running container.
pub trait ContainerControl: Send + Sync {
    /// Deliver `signal` to every process of the container.
    fn signal(&self, signal: Signal);
}

/// A started container instance.
pub struct Started {
    /// The runtime's id for it.
    pub id: String,
    /// When it started.
    pub started_at: jiff::Timestamp,
    /// Becomes `Some` when it exits.
    pub exit: watch::Receiver<Option<Exit>>,
    /// Signals it.
    pub control: Arc<dyn ContainerControl>,
    /// Its main process, where there is one (`kubectl exec` enters its mount
    /// namespace).
    pub pid: Option<u32>,
    /// Its standard input, when the spec asked for one and the runtime
    /// runs something.
    pub stdin: Option<Pin<Box<dyn AsyncWrite + Send>>>,
}

/// A running container's standard input, which `kubectl attach -i` writes
/// to. Writes from several sessions are serialized; once closed the
/// container reads end of file.
pub struct ContainerStdin {
    writer: tokio::sync::Mutex<Option<Pin<Box<dyn AsyncWrite + Send>>>>,
    once: bool,
}

impl ContainerStdin {
    /// `writer` is the container's stdin; `once` (the container's
    /// `stdinOnce`) closes it when the first attach session ends.
    pub fn new(writer: Pin<Box<dyn AsyncWrite + Send>>, once: bool) -> Self {
        Self {
            writer: tokio::sync::Mutex::new(Some(writer)),
            once,
        }
    }

    /// Write `data`; false once stdin is closed or the container is gone.
    pub async fn write(&self, data: &[u8]) -> bool {
        use tokio::io::AsyncWriteExt;
        let mut writer = self.writer.lock().await;
        let Some(w) = writer.as_mut() else {
            return false;
        };
        if w.write_all(data).await.is_ok() && w.flush().await.is_ok() {
            return true;
        }
        *writer = None;
        false
    }

    /// An attach session stopped sending input: with `stdinOnce` the
    /// container's stdin is closed.
    pub async fn session_ended(&self) {
        if self.once {
            self.writer.lock().await.take();
        }
    }
}

impl std::fmt::Debug for ContainerStdin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerStdin")
            .field("once", &self.once)
            .finish_non_exhaustive()
    }
}

impl Started {
    /// Wait for the container to exit.
    pub async fn wait(&mut self) -> Exit {
        loop {
            if let Some(exit) = self.exit.borrow_and_update().clone() {
                return exit;
            }
            if self.exit.changed().await.is_err() {
                // The runtime dropped the sender without reporting: treat as
                // killed.
                return Exit {
                    code: 137,
                    signal: Some(9),
                    finished_at: jiff::Timestamp::now(),
                };
            }
        }
    }
}

/// A container runtime.
#[async_trait::async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// The runtime's name and version, as `nodeInfo.containerRuntimeVersion`
    /// shows it (`process://0.1.0`).
    fn version(&self) -> String;
    /// Whether probes and hooks really run (false for sim: they always pass).
    fn runs_probes(&self) -> bool;
    /// Start one container instance.
    async fn start(&self, spec: ContainerSpec) -> Result<Started, RuntimeError>;
    /// Run a command in a container's context; returns its exit code and
    /// (truncated) output.
    async fn exec(&self, spec: ExecSpec) -> Result<(i32, String), RuntimeError>;
    /// Start a command in a container's context with its standard streams
    /// piped (`kubectl exec`).
    async fn exec_stream(&self, target: ExecTarget) -> Result<ExecSession, RuntimeError>;
    /// Stop everything this runtime started (SIGTERM, then SIGKILL after
    /// a short wait) and refuse to start more.
    async fn shutdown(&self);
    /// Kill everything this runtime started, without waiting.
    fn kill_all_now(&self);
}

/// A duration as Kubernetes tools write them: `500ms`, `5s`, `2m`, `1h`,
/// `1m30s`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Ok(secs) = s.parse::<f64>() {
        return (secs >= 0.0 && secs.is_finite()).then(|| Duration::from_secs_f64(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let value: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += Duration::from_secs_f64(value * factor);
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_go() {
        assert_eq!(parse_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_duration("soon"), None);
        assert_eq!(parse_duration("5x"), None);
    }
}
