//! `rk scheduler`.

use std::path::PathBuf;

use anyhow::Context as _;
use rk_controllers::scheduler::{self, Options, SchedulerConfiguration};

use super::controller_manager::{client_from_kubeconfig, default_identity, shutdown_signal};

/// `rk scheduler` flags.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Kubeconfig of the cluster to schedule for.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: PathBuf,
    /// A `KubeSchedulerConfiguration` file (YAML or JSON): profiles, plugins,
    /// plugin arguments, percentageOfNodesToScore.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Schedule only while holding the `kube-system/kube-scheduler` Lease,
    /// so several schedulers can run side by side.
    #[arg(long)]
    pub leader_elect: bool,
    /// Identity in the leader election (default: hostname and a suffix).
    #[arg(long)]
    pub leader_elect_identity: Option<String>,
}

/// Run `rk scheduler`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            SchedulerConfiguration::parse(&text)?
        }
        None => SchedulerConfiguration::default(),
    };
    let client = client_from_kubeconfig(&args.kubeconfig).await?;
    let options = Options {
        config,
        ..Options::default()
    };
    if !args.leader_elect {
        tokio::select! {
            r = scheduler::run(client, options) => r.context("scheduler")?,
            _ = shutdown_signal() => eprintln!("rk: scheduler shutting down"),
        }
        return Ok(());
    }
    // Leader election as kube-scheduler does it: wait for the Lease, schedule
    // while holding it, exit if it is lost.
    use rk_runtime::leader::{LeaderElectionConfig, LeaderElector, LeaseLock};
    let identity = args.leader_elect_identity.unwrap_or_else(default_identity);
    let lock = LeaseLock::new(client.clone(), "kube-system", "kube-scheduler");
    let elector = std::sync::Arc::new(LeaderElector::new(
        identity,
        std::sync::Arc::new(lock),
        LeaderElectionConfig::default(),
    )?);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let token = shutdown.clone();
    let e = elector.clone();
    let mut election = tokio::spawn(async move { e.run(token).await });
    let mut leading = elector.leading();
    tokio::select! {
        ok = async { leading.wait_for(|l| *l).await.is_ok() } => {
            if !ok { return Ok(()); }
        }
        _ = shutdown_signal() => { shutdown.cancel(); let _ = election.await; return Ok(()); }
        r = &mut election => { r?.context("leader election")?; return Ok(()); }
    }
    tokio::select! {
        r = scheduler::run(client, options) => r.context("scheduler")?,
        r = &mut election => r?.context("leader election lost")?,
        _ = shutdown_signal() => {
            eprintln!("rk: scheduler shutting down");
            shutdown.cancel();
            let _ = election.await;
        }
    }
    Ok(())
}
