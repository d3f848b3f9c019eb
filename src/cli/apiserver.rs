//! `rk apiserver` and (until the other components land) `rk up`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use rk_apiserver::{ServerConfig, StorageConfig};

/// `rk apiserver` flags.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:6443")]
    pub bind: SocketAddr,
    /// `memory`, `sqlite:PATH` or `etcd:URL[,URL...]`. Defaults to
    /// `sqlite:DATA_DIR/state.db`.
    #[arg(long)]
    pub storage: Option<String>,
    /// Where state lives.
    #[arg(long, default_value = "rk-data")]
    pub data_dir: PathBuf,
}

/// `rk up` flags.
#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Where state and the kubeconfig live.
    #[arg(long, default_value = "rk-data")]
    pub data_dir: PathBuf,
    /// API server port.
    #[arg(long, default_value_t = 6443)]
    pub port: u16,
    /// Number of nodes (kubelets).
    #[arg(long, default_value_t = 1)]
    pub nodes: u32,
    /// Kubelet runtime: `process` or `sim`.
    #[arg(long, default_value = "process")]
    pub runtime: String,
}

async fn serve(
    bind: SocketAddr,
    storage: StorageConfig,
    data_dir: &std::path::Path,
    with_controllers: bool,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let server = rk_apiserver::start(ServerConfig {
        bind,
        storage,
        ..Default::default()
    })
    .await
    .context("starting the API server")?;
    let kubeconfig = data_dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        rk_apiserver::test_server::kubeconfig_for(&server.url()),
    )
    .with_context(|| format!("writing {}", kubeconfig.display()))?;
    let controllers = if with_controllers {
        // The controllers talk to the API server over HTTP, as separate
        // processes would.
        let client =
            rk_apiserver::test_server::client_for(&server.url()).map_err(anyhow::Error::msg)?;
        let selection: rk_controllers::controller_manager::Selection = "*".parse()?;
        Some(tokio::spawn(async move {
            if let Err(e) =
                rk_controllers::controller_manager::run(client, &selection, Default::default())
                    .await
            {
                tracing::error!(error = %e, "controller manager stopped");
            }
        }))
    } else {
        None
    };
    eprintln!(
        "rk: API server at {}; run: export KUBECONFIG={}",
        server.url(),
        absolute(&kubeconfig).display()
    );
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    eprintln!("rk: shutting down");
    if let Some(c) = controllers {
        c.abort();
    }
    server.shutdown().await;
    Ok(())
}

fn absolute(p: &std::path::Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Run `rk apiserver`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let storage = match &args.storage {
        Some(s) => s.parse::<StorageConfig>().map_err(anyhow::Error::msg)?,
        None => StorageConfig::Sqlite(args.data_dir.join("state.db")),
    };
    serve(args.bind, storage, &args.data_dir, false).await
}

/// Run `rk up`: the API server on the embedded store with the controller
/// manager; the scheduler, kubelets and proxy join as they land.
pub async fn up(args: UpArgs) -> anyhow::Result<()> {
    if args.nodes != 1 || args.runtime != "process" {
        tracing::warn!("kubelets are not implemented yet; --nodes and --runtime are ignored");
    }
    let bind = SocketAddr::from(([127, 0, 0, 1], args.port));
    serve(
        bind,
        StorageConfig::Sqlite(args.data_dir.join("state.db")),
        &args.data_dir,
        true,
    )
    .await
}
