//! The command line every example operator binary shares:
//! `<operator> crd` prints the CRD as YAML; `<operator> run` runs the
//! operator against the cluster in `KUBECONFIG` (or in-cluster).

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use rk_runtime::manager::Manager;

use crate::operator::{LeaseSettings, OperatorConfig, OperatorError, default_identity};

/// An example operator.
#[derive(Debug, Parser)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the CustomResourceDefinition as YAML (`| kubectl apply -f -`).
    Crd,
    /// Run the operator until SIGTERM or Ctrl-C.
    Run(RunArgs),
}

/// Flags of `run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Serve `/healthz`, `/readyz` and `/metrics` on this address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub metrics_bind: SocketAddr,
    /// Contend for a Lease so that only one replica reconciles.
    #[arg(long)]
    pub leader_elect: bool,
    /// The Lease's namespace.
    #[arg(long, default_value = "default")]
    pub lease_namespace: String,
    /// This replica's identity (default: `$POD_NAME`, else host name and pid).
    #[arg(long)]
    pub identity: Option<String>,
    /// Create or update the CRD before starting.
    #[arg(long)]
    pub install_crd: bool,
    /// How many objects are reconciled at once.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
}

impl RunArgs {
    /// The operator configuration these flags describe; `lease` names the Lease.
    pub fn config(&self, lease: &str) -> OperatorConfig {
        OperatorConfig {
            metrics_bind: Some(self.metrics_bind),
            leader_election: self.leader_elect.then(|| LeaseSettings {
                namespace: self.lease_namespace.clone(),
                name: lease.to_owned(),
                identity: self.identity.clone().unwrap_or_else(default_identity),
            }),
            handle_signals: true,
            workers: self.workers,
        }
    }
}

/// Run an operator binary: `name` names its Lease and logs, `crd` is its CRD
/// and `build` makes its manager.
pub async fn main(
    name: &str,
    crd: CustomResourceDefinition,
    build: fn(kube::Client, &OperatorConfig) -> Manager,
) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(name, crd, build, cli.command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(operator = name, error = %e, "stopped");
            eprintln!("{name}: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(
    name: &str,
    crd: CustomResourceDefinition,
    build: fn(kube::Client, &OperatorConfig) -> Manager,
    command: Command,
) -> Result<(), OperatorError> {
    match command {
        Command::Crd => {
            print!("{}", serde_yaml::to_string(&crd)?);
            Ok(())
        }
        Command::Run(args) => {
            let client = kube::Client::try_default()
                .await
                .map_err(|e| OperatorError::Config(e.to_string()))?;
            if args.install_crd {
                crate::operator::install_crd(client.clone(), &crd).await?;
            }
            let config = args.config(name);
            tracing::info!(operator = name, leader_elect = args.leader_elect, metrics = %args.metrics_bind, "starting");
            build(client, &config).run().await?;
            Ok(())
        }
    }
}
