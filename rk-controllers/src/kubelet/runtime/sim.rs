//! The `sim` runtime: nothing runs. A container "starts" after a configurable
//! delay and, when the pod says so (annotation `rk.dev/sim-complete-after`),
//! exits with the code of `rk.dev/sim-exit-code` — the kwok model, for scale
//! tests with many nodes in one process.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{
    ContainerControl, ContainerSpec, ExecSession, ExecSpec, ExecTarget, Exit, Runtime,
    RuntimeError, Signal, Started,
};

/// Pretends to run containers.
#[derive(Debug, Clone, Default)]
pub struct SimRuntime {
    start_delay: Duration,
}

impl SimRuntime {
    /// A sim runtime whose containers take `start_delay` to start.
    pub fn new(start_delay: Duration) -> Self {
        Self { start_delay }
    }
}

struct SimControl {
    exit: watch::Sender<Option<Exit>>,
}

impl ContainerControl for SimControl {
    fn signal(&self, signal: Signal) {
        let code = match signal {
            Signal::Term => 0,
            Signal::Kill => 137,
        };
        self.exit.send_if_modified(|e| {
            if e.is_some() {
                return false;
            }
            *e = Some(Exit {
                code,
                signal: (signal == Signal::Kill).then_some(9),
                finished_at: jiff::Timestamp::now(),
            });
            true
        });
    }
}

#[async_trait::async_trait]
impl Runtime for SimRuntime {
    fn version(&self) -> String {
        format!("sim://{}", env!("CARGO_PKG_VERSION"))
    }

    fn runs_probes(&self) -> bool {
        false
    }

    async fn start(&self, spec: ContainerSpec) -> Result<Started, RuntimeError> {
        if !self.start_delay.is_zero() {
            tokio::time::sleep(self.start_delay).await;
        }
        let (tx, rx) = watch::channel(None);
        let control = Arc::new(SimControl { exit: tx });
        if let Some(after) = spec.sim.complete_after {
            let control = control.clone();
            let code = spec.sim.exit_code;
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                control.exit.send_if_modified(|e| {
                    if e.is_some() {
                        return false;
                    }
                    *e = Some(Exit {
                        code,
                        signal: None,
                        finished_at: jiff::Timestamp::now(),
                    });
                    true
                });
            });
        }
        Ok(Started {
            id: spec.id,
            started_at: jiff::Timestamp::now(),
            exit: rx,
            control,
            pid: None,
            stdin: None,
        })
    }

    async fn exec(&self, _spec: ExecSpec) -> Result<(i32, String), RuntimeError> {
        Ok((0, String::new()))
    }

    /// Nothing runs, so nothing is printed: the command "exits" 0.
    async fn exec_stream(&self, _target: ExecTarget) -> Result<ExecSession, RuntimeError> {
        Ok(ExecSession {
            stdin: Box::pin(tokio::io::sink()),
            stdout: Box::pin(tokio::io::empty()),
            stderr: Box::pin(tokio::io::empty()),
            exit: Box::pin(async { 0 }),
            kill: Box::new(|| {}),
        })
    }

    async fn shutdown(&self) {}

    fn kill_all_now(&self) {}
}
