//! One container's life inside its pod: start it, run its hooks and probes,
//! restart it by the restart policy with CrashLoopBackOff delays (10 s
//! doubling to 5 min, reset after it runs cleanly for twice the maximum),
//! and stop it gracefully (preStop hook, SIGTERM, grace period, SIGKILL).

use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Pod, Probe};
use tokio::sync::{mpsc, oneshot, watch};

use super::env::{self, Sources};
use super::logs::log_path;
use super::pod_worker::PodCtx;
use super::probes::{self, ProbeEvent, ProbeKind, Target};
use super::runtime::{
    ContainerSpec, ContainerStdin, ExecSpec, ExecTarget, Exit, RuntimeError, Signal, Started,
};
use super::status::CState;
use super::volumes;

/// What kind of container this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// An init container that runs to completion before the next one.
    Init,
    /// An init container with `restartPolicy: Always`: runs beside the app
    /// containers for the pod's whole life.
    Sidecar,
    /// An app container.
    App,
    /// An ephemeral container (`kubectl debug`): added to a running pod,
    /// run once, never restarted.
    Ephemeral,
}

/// How a container's supervision ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exited 0 and will not restart.
    Completed,
    /// Exited non-zero and will not restart.
    Failed,
    /// Stopped because the pod is stopping.
    Stopped,
}

/// The CrashLoopBackOff delay sequence.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Option<Duration>,
}

impl Backoff {
    /// Delays start at `initial` and double up to `max`; the first restart
    /// is immediate.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            next: None,
        }
    }

    /// The delay before the next restart.
    pub fn next_delay(&mut self) -> Duration {
        match self.next {
            None => {
                self.next = Some(self.initial);
                Duration::ZERO
            }
            Some(d) => {
                self.next = Some((d * 2).min(self.max));
                d
            }
        }
    }

    /// Forget past failures.
    pub fn reset(&mut self) {
        self.next = None;
    }
}

/// Supervises one container of a pod.
pub struct Supervisor {
    pub(crate) pod: Arc<PodCtx>,
    pub(crate) role: Role,
    pub(crate) index: usize,
    /// The pod object the container comes from (shared, not copied: a
    /// supervisor lives as long as its container).
    pub(crate) source: Arc<Pod>,
    /// An ephemeral container's spec as a container's (the pod holds it as
    /// an `EphemeralContainer`).
    pub(crate) ephemeral: Option<Arc<Container>>,
}

enum Ended {
    Exited(Exit, Option<String>),
    Stopped,
}

/// What starting a container came to.
enum Launch {
    /// Its config is wrong: try again after the delay.
    ConfigError(Duration),
    /// The runtime could not start it.
    Failed(Ended, String),
    /// It runs.
    Started {
        container: Started,
        env: Vec<(String, String)>,
        id: String,
        working_dir: Option<std::path::PathBuf>,
    },
}

/// The next probe result; never, for a container without probes.
async fn next_probe_event(events: &mut Option<mpsc::Receiver<ProbeEvent>>) -> Option<ProbeEvent> {
    match events {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

fn grace_of(pod: &PodCtx, requested: Option<Duration>) -> Duration {
    requested.unwrap_or_else(|| pod.termination_grace())
}

impl Supervisor {
    /// The container's spec: `index` in the pod's init or app containers.
    fn container(&self) -> &Container {
        static NONE: LazyLock<Container> = LazyLock::new(Container::default);
        let spec = self.source.spec.as_ref();
        let list = match self.role {
            Role::App => spec.map(|s| &s.containers),
            Role::Init | Role::Sidecar => spec.and_then(|s| s.init_containers.as_ref()),
            Role::Ephemeral => return self.ephemeral.as_deref().unwrap_or(&NONE),
        };
        list.and_then(|l| l.get(self.index)).unwrap_or(&NONE)
    }

    fn set_state(&self, f: impl FnOnce(&mut super::status::ContainerRecord)) {
        self.pod.state.update(|r| {
            if let Some(c) = r.container_mut(self.role, self.index) {
                f(c);
            }
        });
    }

    async fn spec(
        &self,
        restart_count: i32,
    ) -> Result<(ContainerSpec, Vec<(String, String)>), String> {
        let pod = self.pod.pod();
        let mut sources = Sources::new(self.pod.shared.client.clone(), &self.pod.namespace);
        let mut env =
            env::container_env(&pod, self.container(), &self.pod.net, &mut sources).await?;
        env.extend(volumes::mount_env(self.container(), &self.pod.volumes)?);
        let argv = env::argv(self.container(), &env);
        let mounts = volumes::mounts(self.container(), &self.pod.volumes)?;
        let sim = self.pod.sim_behaviour();
        let spec = ContainerSpec {
            id: format!("{}-{}-{restart_count}", self.pod.uid, self.container().name),
            namespace: self.pod.namespace.clone(),
            pod: self.pod.name.clone(),
            container: self.container().name.clone(),
            argv,
            env: env.clone(),
            working_dir: self
                .container()
                .working_dir
                .as_ref()
                .filter(|d| !d.is_empty())
                .map(Into::into)
                .or_else(|| Some(self.pod.dir.clone())),
            log_path: log_path(&self.pod.dir, &self.container().name, restart_count),
            mounts,
            sim,
            stdin: self.container().stdin == Some(true),
        };
        Ok((spec, env))
    }

    /// Run the container until it completes for good or `stop` says the pod
    /// is stopping (with the grace period to use, `None` for the pod's own).
    /// `started` fires once the container runs and passed its startup probe.
    pub async fn run(
        self,
        mut stop: watch::Receiver<Option<Option<Duration>>>,
        mut started: Option<oneshot::Sender<()>>,
    ) -> Outcome {
        let shared = self.pod.shared.clone();
        let mut backoff = Backoff::new(shared.config.backoff_initial, shared.config.backoff_max);
        // Continue the count of an earlier kubelet (its log files too).
        let mut restart_count = self.pod.state.read(|r| {
            r.records(self.role)
                .get(self.index)
                .map_or(0, |c| c.restart_count)
        });
        loop {
            if stop.borrow().is_some() {
                return Outcome::Stopped;
            }
            let run_started = Instant::now();
            // Boxed: the spec and the runtime's start are done with once the
            // container runs, and would otherwise take room in the task for
            // the container's whole life.
            let (ended, id) = match Box::pin(self.launch(restart_count)).await {
                Launch::ConfigError(delay) => {
                    if wait_or_stop(&mut stop, delay).await {
                        return Outcome::Stopped;
                    }
                    continue;
                }
                Launch::Failed(ended, id) => (ended, id),
                Launch::Started {
                    container,
                    env,
                    id,
                    working_dir,
                } => {
                    let ended = self
                        .running(container, env, &id, working_dir, &mut stop, &mut started)
                        .await;
                    (ended, id)
                }
            };
            let (exit, message) = match ended {
                Ended::Stopped => return Outcome::Stopped,
                Ended::Exited(exit, message) => (exit, message),
            };
            let reason = if exit.code == 0 { "Completed" } else { "Error" };
            let terminated = CState::Terminated {
                exit_code: exit.code,
                signal: exit.signal,
                reason: if message
                    .as_deref()
                    .is_some_and(|m| m.starts_with("RunContainerError"))
                {
                    "StartError".to_owned()
                } else {
                    reason.to_owned()
                },
                message,
                started_at: None,
                finished_at: exit.finished_at,
                id: Some(id.clone()),
            };
            let started_at = self.pod.state.read(|r| {
                r.records(self.role)
                    .get(self.index)
                    .and_then(|c| match c.state {
                        CState::Running { started_at } => Some(started_at),
                        _ => None,
                    })
            });
            let terminated = match terminated {
                CState::Terminated {
                    exit_code,
                    signal,
                    reason,
                    message,
                    finished_at,
                    id,
                    ..
                } => CState::Terminated {
                    exit_code,
                    signal,
                    reason,
                    message,
                    started_at,
                    finished_at,
                    id,
                },
                other => other,
            };
            self.set_state(|c| {
                c.state = terminated.clone();
                c.ready = false;
            });
            let restart = match (self.role, self.pod.restart_policy.as_str()) {
                (Role::Sidecar, _) => true,
                (Role::Init, "Never") => false,
                (Role::Init, _) => exit.code != 0,
                (Role::App, "Always") => true,
                (Role::App, "OnFailure") => exit.code != 0,
                (Role::App, _) => false,
                (Role::Ephemeral, _) => false,
            };
            if !restart {
                return if exit.code == 0 {
                    Outcome::Completed
                } else {
                    Outcome::Failed
                };
            }
            if run_started.elapsed() > shared.config.backoff_max * 2 {
                backoff.reset();
            }
            let delay = backoff.next_delay();
            if !delay.is_zero() {
                let message = format!(
                    "back-off {}s restarting failed container={} pod={}_{}({})",
                    delay.as_secs(),
                    self.container().name,
                    self.pod.name,
                    self.pod.namespace,
                    self.pod.uid
                );
                shared.pod_event(
                    &self.pod.pod(),
                    "Warning",
                    "BackOff",
                    format!(
                        "Back-off restarting failed container {} in pod {}_{}({})",
                        self.container().name,
                        self.pod.name,
                        self.pod.namespace,
                        self.pod.uid
                    ),
                );
                self.set_state(|c| {
                    c.last_state = Some(terminated.clone());
                    c.state = CState::waiting("CrashLoopBackOff", Some(message));
                });
                if wait_or_stop(&mut stop, delay).await {
                    self.set_state(|c| {
                        c.state = terminated.clone();
                    });
                    return Outcome::Stopped;
                }
            }
            restart_count += 1;
            shared
                .metrics
                .container_restarts
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.set_state(|c| {
                c.last_state = Some(terminated.clone());
                c.restart_count = restart_count;
            });
        }
    }

    /// Build the container's spec and start it.
    async fn launch(&self, restart_count: i32) -> Launch {
        let shared = &self.pod.shared;
        let (spec, env) = match self.spec(restart_count).await {
            Ok(s) => s,
            Err(message) => {
                tracing::info!(pod = %self.pod.key(), container = %self.container().name, %message, "container config error");
                self.set_state(|c| {
                    c.state = CState::waiting("CreateContainerConfigError", Some(message))
                });
                return Launch::ConfigError(Duration::from_secs(2));
            }
        };
        // The runtime takes the spec; the supervisor keeps what it needs.
        let id = spec.id.clone();
        let working_dir = spec.working_dir.clone();
        match shared.runtime.start(spec).await {
            Err(RuntimeError::Config(message)) => {
                shared.pod_event(
                    &self.pod.pod(),
                    "Warning",
                    "Failed",
                    format!("Error: {message}"),
                );
                self.set_state(|c| {
                    c.state = CState::waiting("CreateContainerConfigError", Some(message))
                });
                Launch::ConfigError(Duration::from_secs(5))
            }
            Err(e) => Launch::Failed(
                Ended::Exited(
                    Exit {
                        code: 128,
                        signal: None,
                        finished_at: jiff::Timestamp::now(),
                    },
                    Some(format!("RunContainerError: {e}")),
                ),
                id,
            ),
            Ok(container) => {
                shared
                    .metrics
                    .containers_started
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                shared.pod_event(
                    &self.pod.pod(),
                    "Normal",
                    "Started",
                    format!("Started container {}", self.container().name),
                );
                Launch::Started {
                    container,
                    env,
                    id,
                    working_dir,
                }
            }
        }
    }

    /// The container's postStart hook, if it has one.
    async fn post_start(&self, target: &Target) -> Result<(), String> {
        match self
            .container()
            .lifecycle
            .as_ref()
            .and_then(|l| l.post_start.as_ref())
        {
            Some(hook) => self.hook(hook, target).await,
            None => Ok(()),
        }
    }

    /// A started container until it exits (or is stopped).
    async fn running(
        &self,
        mut container: Started,
        env: Vec<(String, String)>,
        id: &str,
        working_dir: Option<std::path::PathBuf>,
        stop: &mut watch::Receiver<Option<Option<Duration>>>,
        started: &mut Option<oneshot::Sender<()>>,
    ) -> Ended {
        let shared = &self.pod.shared;
        let probes_on = shared.runtime.runs_probes();
        let has_readiness = probes_on && self.container().readiness_probe.is_some();
        let has_startup = probes_on && self.container().startup_probe.is_some();
        let started_at = container.started_at;
        let runtime_id = container.id.clone();
        let exec = probes_on.then(|| {
            Arc::new(ExecTarget {
                argv: Vec::new(),
                env: env.clone(),
                working_dir: working_dir.clone(),
                pid: container.pid,
            })
        });
        let once = self.container().stdin_once == Some(true);
        let stdin = container
            .stdin
            .take()
            .map(|w| Arc::new(ContainerStdin::new(w, once)));
        self.set_state(|c| {
            c.state = CState::Running { started_at };
            c.id = Some(runtime_id);
            c.exec = exec;
            c.stdin = stdin;
            c.started = !has_startup;
            c.ready = !has_readiness && !has_startup;
        });
        let target = Target {
            runtime: shared.runtime.clone(),
            pod_ip: self.pod.net.pod_ip.clone(),
            env,
            working_dir,
            ports: self.container().ports.clone().unwrap_or_default(),
        };
        // postStart runs before the container counts as started.
        if probes_on && let Err(e) = Box::pin(self.post_start(&target)).await {
            tracing::info!(pod = %self.pod.key(), container = %self.container().name, error = %e, "postStart hook failed");
            container.control.signal(Signal::Kill);
            let exit = container.wait().await;
            return Ended::Exited(exit, Some(format!("PostStartHookError: {e}")));
        }
        // A channel for probe results only where there are probes (most
        // containers on sim nodes have none; a channel is ~1.5 KB).
        let has_probes = {
            let c = self.container();
            c.liveness_probe.is_some() || c.readiness_probe.is_some() || c.startup_probe.is_some()
        };
        let (tx, mut events) = match probes_on && has_probes {
            true => {
                let (tx, rx) = mpsc::channel::<ProbeEvent>(8);
                (Some(tx), Some(rx))
            }
            false => (None, None),
        };
        let mut probe_tasks: Vec<AbortOnDrop> = Vec::new();
        let spawn_probe = |kind: ProbeKind, probe: &Option<Probe>, tasks: &mut Vec<AbortOnDrop>| {
            if let Some(p) = probe.clone().filter(|_| probes_on)
                && let Some(tx) = &tx
            {
                tasks.push(AbortOnDrop(tokio::spawn(probes::run(
                    kind,
                    p,
                    target.clone(),
                    tx.clone(),
                ))));
            }
        };
        if has_startup {
            spawn_probe(
                ProbeKind::Startup,
                &self.container().startup_probe,
                &mut probe_tasks,
            );
        } else {
            spawn_probe(
                ProbeKind::Liveness,
                &self.container().liveness_probe,
                &mut probe_tasks,
            );
            spawn_probe(
                ProbeKind::Readiness,
                &self.container().readiness_probe,
                &mut probe_tasks,
            );
            if let Some(s) = started.take() {
                let _ = s.send(());
            }
        }
        loop {
            tokio::select! {
                exit = container.wait() => return Ended::Exited(exit, None),
                changed = stop.changed() => {
                    let requested = match changed {
                        Ok(()) => match *stop.borrow() {
                            Some(g) => g,
                            None => continue,
                        },
                        Err(_) => Some(Duration::ZERO),
                    };
                    let grace = grace_of(&self.pod, requested);
                    drop(probe_tasks);
                    Box::pin(self.stop_gracefully(&mut container, &target, grace)).await;
                    let exit = container.wait().await;
                    let reason = if exit.code == 0 { "Completed" } else { "Error" };
                    let started_at = Some(started_at);
                    let finished = CState::Terminated {
                        exit_code: exit.code,
                        signal: exit.signal,
                        reason: reason.to_owned(),
                        message: None,
                        started_at,
                        finished_at: exit.finished_at,
                        id: Some(id.to_owned()),
                    };
                    self.set_state(|c| {
                        c.state = finished;
                        c.ready = false;
                    });
                    return Ended::Stopped;
                }
                Some(event) = next_probe_event(&mut events) => {
                    match (event.kind, event.healthy) {
                        (ProbeKind::Startup, true) => {
                            self.set_state(|c| {
                                c.started = true;
                                c.ready = !has_readiness;
                            });
                            spawn_probe(ProbeKind::Liveness, &self.container().liveness_probe, &mut probe_tasks);
                            spawn_probe(ProbeKind::Readiness, &self.container().readiness_probe, &mut probe_tasks);
                            if let Some(s) = started.take() {
                                let _ = s.send(());
                            }
                        }
                        (ProbeKind::Readiness, healthy) => {
                            tracing::debug!(pod = %self.pod.key(), container = %self.container().name, healthy, "readiness changed");
                            if !healthy {
                                shared.pod_event(
                                    &self.pod.pod(),
                                    "Warning",
                                    "Unhealthy",
                                    format!("Readiness probe failed: {}", event.message),
                                );
                            }
                            self.set_state(|c| c.ready = healthy);
                        }
                        (ProbeKind::Liveness, true) => {}
                        (kind, _) => {
                            shared.metrics.probe_failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let message = format!(
                                "Container {} failed {} probe, will be restarted: {}",
                                self.container().name,
                                kind.name().to_lowercase(),
                                event.message
                            );
                            tracing::info!(pod = %self.pod.key(), %message);
                            shared.pod_event(
                                &self.pod.pod(),
                                "Warning",
                                "Unhealthy",
                                format!("{} probe failed: {}", kind.name(), event.message),
                            );
                            shared.pod_event(&self.pod.pod(), "Normal", "Killing", message.clone());
                            let probe = match kind {
                                ProbeKind::Startup => self.container().startup_probe.as_ref(),
                                _ => self.container().liveness_probe.as_ref(),
                            };
                            let grace = probe
                                .and_then(|p| p.termination_grace_period_seconds)
                                .map(|s| Duration::from_secs(s.max(0) as u64))
                                .unwrap_or_else(|| self.pod.termination_grace());
                            drop(probe_tasks);
                            Box::pin(self.stop_gracefully(&mut container, &target, grace)).await;
                            let exit = container.wait().await;
                            return Ended::Exited(exit, Some(message));
                        }
                    }
                }
            }
        }
    }

    async fn hook(&self, hook: &LifecycleHandler, target: &Target) -> Result<(), String> {
        if let Some(exec) = &hook.exec {
            let spec = ExecSpec {
                argv: exec.command.clone().unwrap_or_default(),
                env: target.env.clone(),
                working_dir: target.working_dir.clone(),
                timeout: self.pod.termination_grace().max(Duration::from_secs(30)),
            };
            return match self.pod.shared.runtime.exec(spec).await {
                Ok((0, _)) => Ok(()),
                Ok((code, out)) => Err(format!("command exited with {code}: {}", out.trim())),
                Err(e) => Err(e.to_string()),
            };
        }
        if let Some(sleep) = &hook.sleep {
            tokio::time::sleep(Duration::from_secs(sleep.seconds.max(0) as u64)).await;
            return Ok(());
        }
        let probe = Probe {
            http_get: hook.http_get.clone(),
            tcp_socket: hook.tcp_socket.clone(),
            timeout_seconds: Some(10),
            ..Probe::default()
        };
        probes::probe_once(&probe, target).await
    }

    /// preStop, SIGTERM, wait out the grace period, SIGKILL.
    async fn stop_gracefully(&self, container: &mut Started, target: &Target, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        if self.pod.shared.runtime.runs_probes()
            && let Some(hook) = self
                .container()
                .lifecycle
                .as_ref()
                .and_then(|l| l.pre_stop.clone())
        {
            let exited = container.exit.clone();
            tokio::select! {
                r = self.hook(&hook, target) => {
                    if let Err(e) = r {
                        tracing::info!(pod = %self.pod.key(), container = %self.container().name, error = %e, "preStop hook failed");
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {}
                _ = wait_exit(exited) => return,
            }
        }
        if self.pod.state.pod().metadata.deletion_timestamp.is_some() {
            self.pod.shared.pod_event(
                &self.pod.pod(),
                "Normal",
                "Killing",
                format!("Stopping container {}", self.container().name),
            );
        }
        container.control.signal(Signal::Term);
        if tokio::time::timeout_at(deadline, container.wait())
            .await
            .is_err()
        {
            tracing::debug!(pod = %self.pod.key(), container = %self.container().name, "grace period over, killing");
            container.control.signal(Signal::Kill);
        }
    }
}

async fn wait_exit(mut exit: watch::Receiver<Option<Exit>>) {
    while exit.borrow_and_update().is_none() {
        if exit.changed().await.is_err() {
            return;
        }
    }
}

/// Sleep for `d` unless `stop` fires first; true when stopped.
async fn wait_or_stop(stop: &mut watch::Receiver<Option<Option<Duration>>>, d: Duration) -> bool {
    if stop.borrow().is_some() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        r = stop.changed() => r.is_err() || stop.borrow().is_some(),
    }
}

pub(crate) use crate::task::AbortOnDrop;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_starts_immediately_then_doubles_to_the_cap() {
        let mut b = Backoff::new(Duration::from_secs(10), Duration::from_secs(300));
        let delays: Vec<u64> = (0..8).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(delays, vec![0, 10, 20, 40, 80, 160, 300, 300]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::ZERO);
    }
}
