//! `rk scheduler`.

use std::path::PathBuf;

use anyhow::Context as _;
use rk_controllers::scheduler::{self, Options, SchedulerConfiguration};

use super::controller_manager::client_from_kubeconfig;

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
    tokio::select! {
        r = scheduler::run(client, options) => r.context("scheduler")?,
        _ = tokio::signal::ctrl_c() => eprintln!("rk: scheduler shutting down"),
    }
    Ok(())
}
