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
    let client = client_from_kubeconfig(&args.kubeconfig, "kube-scheduler").await?;
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
    // Leader election as kube-scheduler does it: schedule while holding
    // kube-system/kube-scheduler, exit if it is lost.
    let election = rk_controllers::election::LeaderElection::for_lease(
        args.leader_elect_identity.unwrap_or_else(default_identity),
        "kube-scheduler",
    );
    let shutdown = tokio_util::sync::CancellationToken::new();
    let token = shutdown.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        eprintln!("rk: scheduler shutting down");
        token.cancel();
    });
    rk_controllers::election::while_leading(
        client.clone(),
        election,
        shutdown,
        scheduler::run(client, options),
    )
    .await
    .context("scheduler")?;
    Ok(())
}
