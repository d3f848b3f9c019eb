//! The `process` runtime: every container is a host process.
//!
//! Each container runs in its own process group, so signals reach everything
//! it forks; when its main process exits, the rest of the group is killed
//! (as a container's PID namespace would be). The runtime remembers every
//! group it started and kills them all on [`Runtime::shutdown`] and when it is
//! dropped, and each main process is told to die with the kubelet
//! (`PR_SET_PDEATHSIG`, armed from a spawner thread that lives as long as
//! the runtime), so no process outlives the kubelet.
//!
//! The environment is the container's own plus a few host variables a
//! process needs to find its tools (`PATH`, `HOME`, `LANG`, ...).
//!
//! With mount namespaces on (the default when the kubelet runs as root),
//! a container with volume mounts starts under `unshare --mount` in a
//! private mount namespace where each volume is bind-mounted at its
//! `mountPath` (read-only when asked); a missing mount point is created
//! on the host as an empty directory (or file). Exec probes and hooks run
//! outside that namespace. Without mount namespaces, containers find their
//! volumes through the `RK_MOUNT_*` variables (see the volumes module).

use std::collections::HashSet;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::watch;

use super::{
    ContainerControl, ContainerSpec, ExecSession, ExecSpec, ExecTarget, Exit, Runtime,
    RuntimeError, Signal, Started,
};
use crate::kubelet::logs::{DEFAULT_MAX_LOG_BYTES, LogWriter, Stream};

/// Host variables passed through to containers.
const HOST_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "TMPDIR",
    "PYENV_ROOT",
    "USER",
];

/// Runs containers as host processes.
pub struct ProcessRuntime {
    groups: Arc<Mutex<HashSet<i32>>>,
    closed: AtomicBool,
    mount_namespaces: bool,
    spawner: Option<Spawner>,
}

type SpawnJob = (
    tokio::process::Command,
    tokio::sync::oneshot::Sender<std::io::Result<tokio::process::Child>>,
);

/// Starts processes from one long-lived thread. `PR_SET_PDEATHSIG` fires
/// when the *thread* that forked a process exits, so containers are forked
/// from a thread that lives exactly as long as the runtime.
struct Spawner {
    jobs: std::sync::mpsc::Sender<SpawnJob>,
}

impl Spawner {
    fn new() -> Option<Self> {
        let handle = tokio::runtime::Handle::try_current().ok()?;
        let (jobs, rx) = std::sync::mpsc::channel::<SpawnJob>();
        std::thread::Builder::new()
            .name("rk-container-spawner".to_owned())
            .spawn(move || {
                let _runtime = handle.enter();
                while let Ok((mut cmd, reply)) = rx.recv() {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .ok()?;
        Some(Self { jobs })
    }

    async fn spawn(&self, cmd: tokio::process::Command) -> std::io::Result<tokio::process::Child> {
        let gone = || std::io::Error::other("the container spawner thread is gone");
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.jobs.send((cmd, reply)).map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

impl ProcessRuntime {
    /// A runtime with nothing running; `mount_namespaces` gives containers
    /// their volumes at their mount paths (needs root).
    pub fn new(mount_namespaces: bool) -> Self {
        Self {
            groups: Arc::default(),
            closed: AtomicBool::new(false),
            mount_namespaces,
            spawner: Spawner::new(),
        }
    }

    /// Whether this process may create mount namespaces (it runs as root
    /// and `unshare` is installed).
    pub fn can_use_mount_namespaces() -> bool {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        root && ["/usr/bin/unshare", "/bin/unshare"]
            .iter()
            .any(|p| std::path::Path::new(p).exists())
    }

    async fn spawn(
        &self,
        mut cmd: tokio::process::Command,
    ) -> std::io::Result<tokio::process::Child> {
        match &self.spawner {
            Some(s) => s.spawn(cmd).await,
            None => cmd.spawn(),
        }
    }

    fn kill_all(&self) {
        let groups: Vec<i32> = self
            .groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .collect();
        for pgid in groups {
            signal_group(pgid, libc::SIGKILL);
        }
    }
}

impl Drop for ProcessRuntime {
    fn drop(&mut self) {
        self.kill_all();
    }
}

fn signal_group(pgid: i32, signal: i32) {
    if pgid <= 1 {
        return;
    }
    // SAFETY: `kill` has no memory-safety preconditions; a negative pid
    // addresses the process group we created for the container.
    unsafe {
        libc::kill(-pgid, signal);
    }
}

struct GroupControl {
    pgid: i32,
}

impl ContainerControl for GroupControl {
    fn signal(&self, signal: Signal) {
        let sig = match signal {
            Signal::Term => libc::SIGTERM,
            Signal::Kill => libc::SIGKILL,
        };
        signal_group(self.pgid, sig);
    }
}

fn command(
    argv: &[String],
    env: &[(String, String)],
    working_dir: Option<&std::path::Path>,
) -> Result<tokio::process::Command, RuntimeError> {
    let Some((program, args)) = argv.split_first() else {
        return Err(RuntimeError::Config(
            "the process runtime needs a command: set command (and args) on the container"
                .to_owned(),
        ));
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args).env_clear();
    for name in HOST_ENV {
        if let Ok(value) = std::env::var(name) {
            cmd.env(name, value);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    if let Some(dir) = working_dir {
        cmd.current_dir(dir);
    }
    cmd.stdin(Stdio::null()).process_group(0);
    // SAFETY: the closure runs in the child between fork and exec and only
    // calls `prctl`, which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
            Ok(())
        });
    }
    Ok(cmd)
}

/// Mounts each volume, then runs the container's command.
const MOUNT_SCRIPT: &str = r#"while [ "$1" != "--" ]; do
  if [ -d "$1" ]; then mkdir -p "$2" || exit 111
  else mkdir -p "$(dirname "$2")" && { [ -e "$2" ] || : > "$2"; } || exit 111
  fi
  mount --bind "$1" "$2" || { echo "rk: cannot mount $1 at $2" >&2; exit 111; }
  if [ "$3" = ro ]; then mount -o remount,bind,ro "$2" || exit 111; fi
  shift 3
done
shift
exec "$@""#;

/// `argv` wrapped to run in a private mount namespace with `mounts`.
fn with_mounts(mounts: &[super::Mount], argv: &[String]) -> Vec<String> {
    let mut out: Vec<String> = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "--",
        "/bin/sh",
        "-c",
        MOUNT_SCRIPT,
        "rk-mounts",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    for m in mounts {
        out.push(m.source.display().to_string());
        out.push(m.target.display().to_string());
        out.push(if m.read_only { "ro" } else { "rw" }.to_owned());
    }
    out.push("--".to_owned());
    out.extend(argv.iter().cloned());
    out
}

fn exit_of(status: std::io::Result<std::process::ExitStatus>) -> Exit {
    use std::os::unix::process::ExitStatusExt;
    let finished_at = jiff::Timestamp::now();
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => Exit {
                code,
                signal: None,
                finished_at,
            },
            (None, Some(sig)) => Exit {
                code: 128 + sig,
                signal: Some(sig),
                finished_at,
            },
            (None, None) => Exit {
                code: 1,
                signal: None,
                finished_at,
            },
        },
        Err(_) => Exit {
            code: 1,
            signal: None,
            finished_at,
        },
    }
}

fn pump(reader: impl AsyncRead + Unpin + Send + 'static, log: Arc<LogWriter>, stream: Stream) {
    tokio::spawn(async move {
        let mut reader = BufReader::new(reader);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if buf.last() == Some(&b'\n') {
                        buf.pop();
                    }
                    log.write_line(stream, &buf);
                }
            }
        }
    });
}

#[async_trait::async_trait]
impl Runtime for ProcessRuntime {
    fn version(&self) -> String {
        format!("process://{}", env!("CARGO_PKG_VERSION"))
    }

    fn runs_probes(&self) -> bool {
        true
    }

    async fn start(&self, spec: ContainerSpec) -> Result<Started, RuntimeError> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(RuntimeError::Start(
                "the kubelet is shutting down".to_owned(),
            ));
        }
        if spec.argv.is_empty() {
            return Err(RuntimeError::Config(
                "the process runtime needs a command: set command (and args) on the container"
                    .to_owned(),
            ));
        }
        let argv = if self.mount_namespaces && !spec.mounts.is_empty() {
            with_mounts(&spec.mounts, &spec.argv)
        } else {
            spec.argv.clone()
        };
        let mut cmd = command(&argv, &spec.env, spec.working_dir.as_deref())?;
        let log = LogWriter::create(&spec.log_path, DEFAULT_MAX_LOG_BYTES).map_err(|e| {
            RuntimeError::Start(format!(
                "creating the log file {}: {e}",
                spec.log_path.display()
            ))
        })?;
        let log = Arc::new(log);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        if spec.stdin {
            cmd.stdin(Stdio::piped());
        }
        let mut child = self.spawn(cmd).await.map_err(|e| {
            RuntimeError::Start(format!(
                "starting {:?}: {e}",
                spec.argv.first().map(String::as_str).unwrap_or_default()
            ))
        })?;
        let started_at = jiff::Timestamp::now();
        let pgid = child
            .id()
            .and_then(|p| i32::try_from(p).ok())
            .unwrap_or_default();
        self.groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(pgid);
        if let Some(out) = child.stdout.take() {
            pump(out, log.clone(), Stream::Stdout);
        }
        if let Some(err) = child.stderr.take() {
            pump(err, log, Stream::Stderr);
        }
        let stdin = child
            .stdin
            .take()
            .map(|w| Box::pin(w) as Pin<Box<dyn tokio::io::AsyncWrite + Send>>);
        let (tx, rx) = watch::channel(None);
        let groups = self.groups.clone();
        let id = spec.id.clone();
        tokio::spawn(async move {
            let exit = exit_of(child.wait().await);
            // Whatever the main process left behind goes with it.
            signal_group(pgid, libc::SIGKILL);
            groups
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&pgid);
            tracing::debug!(container = %id, code = exit.code, "container process exited");
            let _ = tx.send(Some(exit));
        });
        Ok(Started {
            id: spec.id,
            started_at,
            exit: rx,
            control: Arc::new(GroupControl { pgid }),
            pid: u32::try_from(pgid).ok().filter(|p| *p > 1),
            stdin,
        })
    }

    async fn exec(&self, spec: ExecSpec) -> Result<(i32, String), RuntimeError> {
        let mut cmd = command(&spec.argv, &spec.env, spec.working_dir.as_deref())?;
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let child = self
            .spawn(cmd)
            .await
            .map_err(|e| RuntimeError::Start(format!("starting {:?}: {e}", spec.argv)))?;
        let pgid = child
            .id()
            .and_then(|p| i32::try_from(p).ok())
            .unwrap_or_default();
        match tokio::time::timeout(spec.timeout, child.wait_with_output()).await {
            Ok(Ok(out)) => {
                signal_group(pgid, libc::SIGKILL);
                let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
                text.push_str(&String::from_utf8_lossy(&out.stderr));
                text.truncate(10 * 1024);
                Ok((exit_of(Ok(out.status)).code, text))
            }
            Ok(Err(e)) => Err(RuntimeError::Start(e.to_string())),
            Err(_) => {
                signal_group(pgid, libc::SIGKILL);
                Err(RuntimeError::Timeout(spec.timeout))
            }
        }
    }

    async fn exec_stream(&self, target: ExecTarget) -> Result<ExecSession, RuntimeError> {
        if target.argv.is_empty() {
            return Err(RuntimeError::Config("no command given".to_owned()));
        }
        // A container with volumes runs in its own mount namespace: the
        // command joins it, so it sees the volumes where the container does.
        let argv = match target.pid.filter(|_| self.mount_namespaces) {
            Some(pid) => ["nsenter", "--target", &pid.to_string(), "--mount", "--"]
                .iter()
                .map(|s| (*s).to_owned())
                .chain(target.argv.iter().cloned())
                .collect(),
            None => target.argv.clone(),
        };
        let mut cmd = command(&argv, &target.env, target.working_dir.as_deref())?;
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = self
            .spawn(cmd)
            .await
            .map_err(|e| RuntimeError::Start(format!("starting {:?}: {e}", target.argv)))?;
        let pgid = child
            .id()
            .and_then(|p| i32::try_from(p).ok())
            .unwrap_or_default();
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(RuntimeError::Start(
                "the command's pipes are missing".to_owned(),
            ));
        };
        Ok(ExecSession {
            stdin: Box::pin(stdin),
            stdout: Box::pin(stdout),
            stderr: Box::pin(stderr),
            exit: Box::pin(async move {
                let code = exit_of(child.wait().await).code;
                signal_group(pgid, libc::SIGKILL);
                code
            }),
            kill: Box::new(move || signal_group(pgid, libc::SIGKILL)),
        })
    }

    fn kill_all_now(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.kill_all();
    }

    async fn shutdown(&self) {
        self.closed.store(true, Ordering::Relaxed);
        let groups: Vec<i32> = self
            .groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .copied()
            .collect();
        for pgid in &groups {
            signal_group(*pgid, libc::SIGTERM);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while tokio::time::Instant::now() < deadline {
            if self
                .groups
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_empty()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.kill_all();
    }
}
