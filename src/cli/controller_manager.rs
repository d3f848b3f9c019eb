//! `rk controller-manager`.

use std::path::PathBuf;

use anyhow::Context as _;
use rk_controllers::controller_manager::{self, Options, Selection};

/// `rk controller-manager` flags.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Kubeconfig of the cluster to manage.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: PathBuf,
    /// Controllers to run: `*` for all, `-name` to leave one out.
    #[arg(long, default_value = "*")]
    pub controllers: String,
}

/// A client from a kubeconfig file.
pub async fn client_from_kubeconfig(path: &std::path::Path) -> anyhow::Result<kube::Client> {
    let kubeconfig = kube::config::Kubeconfig::read_from(path)
        .with_context(|| format!("reading {}", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .context("loading the kubeconfig")?;
    kube::Client::try_from(config).context("building the client")
}

/// Run `rk controller-manager`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let selection: Selection = args.controllers.parse()?;
    let client = client_from_kubeconfig(&args.kubeconfig).await?;
    tokio::select! {
        r = controller_manager::run(client, &selection, Options::default()) => r.context("controller manager")?,
        _ = tokio::signal::ctrl_c() => eprintln!("rk: controller manager shutting down"),
    }
    Ok(())
}
