//! Command-line parsing and dispatch to each component.

mod apiserver;
mod bench;
mod controller_manager;
mod kubelet;
mod metrics_server;
mod proxy;
mod scheduler;
mod up;

use clap::{Parser, Subcommand};

/// rk: a Kubernetes control plane in Rust.
#[derive(Debug, Parser)]
#[command(name = "rk", version, about, long_about = None)]
pub struct Cli {
    /// Log more (repeat for more detail); `RUST_LOG` overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// The component to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The components.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the API server.
    Apiserver(apiserver::Args),
    /// Run a whole cluster in one process (API server, controllers,
    /// scheduler, kubelets and proxy).
    Up(up::UpArgs),
    /// Run the controller manager.
    ControllerManager(controller_manager::Args),
    /// Run the scheduler.
    Scheduler(scheduler::Args),
    /// Run a kubelet.
    Kubelet(kubelet::Args),
    /// Run the service proxy.
    Proxy(proxy::Args),
    /// Benchmarks (run from a release build).
    #[command(subcommand)]
    Bench(bench::Bench),
}

/// Set up logging.
pub fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Run the chosen component.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Apiserver(args) => apiserver::run(args).await,
        Command::Up(args) => up::up(args).await,
        Command::ControllerManager(args) => controller_manager::run(args).await,
        Command::Scheduler(args) => scheduler::run(args).await,
        Command::Kubelet(args) => kubelet::run(args).await,
        Command::Proxy(args) => proxy::run(args).await,
        Command::Bench(b) => bench::run(b).await,
    }
}
