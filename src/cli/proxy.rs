//! `rk proxy`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use rk_controllers::proxy::{self, Config};

use super::controller_manager::client_from_kubeconfig;

/// `rk proxy` flags.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Kubeconfig of the cluster to serve.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: PathBuf,
    /// Node addresses NodePorts listen on (repeat or comma-separate).
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1")]
    pub node_address: Vec<IpAddr>,
    /// Add cluster IPs that are not on loopback to `lo` (needs root); rk's
    /// own service range, 127.200.0.0/16, never needs it.
    #[arg(long)]
    pub add_loopback_addresses: bool,
    /// Where `/metrics` and `/healthz` are served (empty to disable).
    #[arg(long, default_value = "127.0.0.1:10249")]
    pub metrics_bind_address: String,
    /// How long to wait for a backend before trying the next, e.g. `2s`.
    #[arg(long, default_value = "2s")]
    pub connect_timeout: String,
    /// Move TCP bytes with splice(2) instead of copying them (Linux; copying
    /// is faster on loopback, splice can win on real NICs).
    #[arg(long)]
    pub splice: bool,
}

/// Build the proxy configuration from the flags.
pub fn config(args: &Args) -> anyhow::Result<Config> {
    let metrics_address: Option<SocketAddr> = if args.metrics_bind_address.is_empty() {
        None
    } else {
        Some(args.metrics_bind_address.parse().with_context(|| {
            format!(
                "invalid --metrics-bind-address {:?}",
                args.metrics_bind_address
            )
        })?)
    };
    let connect_timeout: Duration =
        rk_controllers::kubelet::runtime::parse_duration(&args.connect_timeout)
            .with_context(|| format!("invalid --connect-timeout {:?}", args.connect_timeout))?;
    Ok(Config {
        node_addresses: args.node_address.clone(),
        add_loopback_addresses: args.add_loopback_addresses,
        connect_timeout,
        forwarding: if args.splice {
            proxy::Forwarding::Splice
        } else {
            proxy::Forwarding::Copy
        },
        metrics_address,
        ..Config::default()
    })
}

/// Run `rk proxy` until Ctrl-C.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let config = config(&args)?;
    let client = client_from_kubeconfig(&args.kubeconfig, "kube-proxy").await?;
    let proxy = proxy::start(client, config)
        .await
        .context("starting the proxy")?;
    eprintln!("rk: proxy running");
    let _ = tokio::signal::ctrl_c().await;
    eprintln!("rk: proxy shutting down");
    proxy.shutdown().await;
    Ok(())
}
