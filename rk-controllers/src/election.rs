//! Running a component only while it holds a leader-election Lease, as
//! kube-controller-manager and kube-scheduler do with `--leader-elect`:
//! wait to be elected, work, and stop (with an error the caller turns into
//! an exit) if the Lease is lost.

use std::future::Future;
use std::sync::Arc;

use rk_runtime::leader::{LeaderElector, LeaseLock};
use tokio_util::sync::CancellationToken;

/// Which Lease to hold, as whom, with which timings.
#[derive(Clone, Debug)]
pub struct LeaderElection {
    /// This instance's identity (upstream: hostname plus a unique suffix).
    pub identity: String,
    /// Namespace of the Lease (`kube-system`).
    pub namespace: String,
    /// Name of the Lease (`kube-controller-manager`, `kube-scheduler`).
    pub name: String,
    /// Timings; the defaults are client-go's (15 s / 10 s / 2 s).
    pub config: rk_runtime::leader::LeaderElectionConfig,
}

impl LeaderElection {
    /// The controller manager's lock (`kube-system/kube-controller-manager`).
    pub fn new(identity: impl Into<String>) -> Self {
        Self::for_lease(identity, "kube-controller-manager")
    }

    /// The lock `kube-system/<name>` for `identity`.
    pub fn for_lease(identity: impl Into<String>, name: &str) -> Self {
        Self {
            identity: identity.into(),
            namespace: "kube-system".into(),
            name: name.into(),
            config: Default::default(),
        }
    }
}

/// Errors of a leader-elected component whose own errors are `E`.
#[derive(Debug, thiserror::Error)]
pub enum ElectedError<E: std::error::Error + 'static> {
    /// The leader election settings are invalid.
    #[error("leader election: {0}")]
    Config(#[from] rk_runtime::leader::ConfigError),
    /// Leadership was lost: the work must stop (upstream exits).
    #[error("leader election lost: {0}")]
    Lost(#[from] rk_runtime::leader::LeaderElectionError),
    /// The election task itself failed.
    #[error("leader election task: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The work failed.
    #[error(transparent)]
    Work(E),
}

/// Run `work` only while holding the Lease of `election`. Returns when
/// `shutdown` is cancelled (the Lease is released), when `work` ends, or
/// with [`ElectedError::Lost`] when leadership is lost — `work` is dropped
/// then, so it must stop everything it started when dropped.
pub async fn while_leading<F, E>(
    client: kube::Client,
    election: LeaderElection,
    shutdown: CancellationToken,
    work: F,
) -> Result<(), ElectedError<E>>
where
    F: Future<Output = Result<(), E>>,
    E: std::error::Error + 'static,
{
    let lock = LeaseLock::new(client, &election.namespace, &election.name);
    let elector = Arc::new(LeaderElector::new(
        election.identity.clone(),
        Arc::new(lock),
        election.config.clone(),
    )?);
    let mut leading = elector.leading();
    let e = elector.clone();
    let token = shutdown.clone();
    let mut election_task = tokio::spawn(async move { e.run(token).await });
    tokio::select! {
        ok = async { leading.wait_for(|l| *l).await.is_ok() } => {
            if !ok {
                return Ok(());
            }
        }
        _ = shutdown.cancelled() => {
            election_task.await??;
            return Ok(());
        }
        r = &mut election_task => {
            r??;
            return Ok(());
        }
    }
    tracing::info!(identity = %election.identity, lease = %election.name, "leading: starting work");
    tokio::select! {
        r = work => r.map_err(ElectedError::Work),
        r = &mut election_task => {
            r??;
            Ok(())
        }
    }
}
