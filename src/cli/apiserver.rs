//! `rk apiserver`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use rk_apiserver::admission::service_ips::ServiceCidr;
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
    /// The Service cluster IP range (IPv4 CIDR); give a second cluster on
    /// the same machine another one, e.g. `127.201.0.0/16`.
    #[arg(long, default_value = "127.200.0.0/16")]
    pub service_cluster_ip_range: ServiceCidr,
}

async fn serve(
    bind: SocketAddr,
    storage: StorageConfig,
    data_dir: &std::path::Path,
    service_cidr: ServiceCidr,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let server = rk_apiserver::start(ServerConfig {
        bind,
        storage,
        service_cidr,
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
    crate::release_freed_memory();
    eprintln!(
        "rk: API server at {}; run: export KUBECONFIG={}",
        server.url(),
        absolute(&kubeconfig).display()
    );
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    eprintln!("rk: shutting down");
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
    serve(
        args.bind,
        storage,
        &args.data_dir,
        args.service_cluster_ip_range,
    )
    .await
}
