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
    /// Run only while holding the `kube-system/kube-controller-manager`
    /// Lease, so several instances can run side by side.
    #[arg(long)]
    pub leader_elect: bool,
    /// Identity in the leader election (default: hostname and a random
    /// suffix, as upstream).
    #[arg(long)]
    pub leader_elect_identity: Option<String>,
    /// How long a Lease is valid without renewal.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub leader_elect_lease_duration: std::time::Duration,
    /// How long the leader keeps trying to renew before stepping down.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub leader_elect_renew_deadline: std::time::Duration,
    /// How often contenders retry.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub leader_elect_retry_period: std::time::Duration,
    /// Serve `/metrics` (reconcile metrics) and `/healthz` here; empty to
    /// disable.
    #[arg(long, default_value = "127.0.0.1:10257")]
    pub metrics_bind_address: String,
    /// Seconds without a node heartbeat before the node is Unknown.
    #[arg(long, default_value = "40s", value_parser = parse_duration)]
    pub node_monitor_grace_period: std::time::Duration,
}

/// Parse `15s`, `500ms`, `2m` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: f64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => {
            return Err(format!(
                "invalid duration unit in {s:?} (use ms, s, m or h)"
            ));
        }
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("invalid duration {s:?}"));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

/// A leader election identity: hostname and a random suffix.
pub fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "rk".into());
    format!("{host}_{:08x}", rand_suffix())
}

fn rand_suffix() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    t ^ std::process::id().rotate_left(16)
}

/// A client from a kubeconfig file, its `User-Agent` naming `component`.
pub async fn client_from_kubeconfig(
    path: &std::path::Path,
    component: &str,
) -> anyhow::Result<kube::Client> {
    let kubeconfig = kube::config::Kubeconfig::read_from(path)
        .with_context(|| format!("reading {}", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .context("loading the kubeconfig")?;
    let mut config = config;
    config
        .headers
        .push(rk_apiserver::test_server::user_agent(component).map_err(anyhow::Error::msg)?);
    kube::Client::try_from(config).context("building the client")
}

/// Run `rk controller-manager`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let selection: Selection = args.controllers.parse()?;
    let client = client_from_kubeconfig(&args.kubeconfig, "kube-controller-manager").await?;
    if !args.metrics_bind_address.is_empty() {
        let addr: std::net::SocketAddr = args.metrics_bind_address.parse().with_context(|| {
            format!(
                "invalid --metrics-bind-address {:?}",
                args.metrics_bind_address
            )
        })?;
        let bound = super::metrics_server::serve(addr, rk_controllers::metrics::render).await?;
        tracing::info!(address = %bound, "serving /metrics and /healthz");
    }
    let mut options = Options::default();
    options.node_lifecycle.grace_period = args.node_monitor_grace_period;
    if !args.leader_elect {
        tokio::select! {
            r = controller_manager::run(client, &selection, options) => r.context("controller manager")?,
            _ = shutdown_signal() => eprintln!("rk: controller manager shutting down"),
        }
        return Ok(());
    }
    let mut election = controller_manager::LeaderElection::new(
        args.leader_elect_identity.unwrap_or_else(default_identity),
    );
    election.config.lease_duration = args.leader_elect_lease_duration;
    election.config.renew_deadline = args.leader_elect_renew_deadline;
    election.config.retry_period = args.leader_elect_retry_period;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let token = shutdown.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        eprintln!("rk: controller manager shutting down");
        token.cancel();
    });
    controller_manager::run_elected(client, &selection, options, election, shutdown)
        .await
        .context("controller manager")?;
    Ok(())
}

/// Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
