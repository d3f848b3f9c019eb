//! `rk kubelet`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use rk_controllers::kubelet::{self, Config, NodeConfig, RuntimeKind};

use super::controller_manager::client_from_kubeconfig;

/// Which runtime runs containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Runtime {
    /// Host processes (command and args required).
    Process,
    /// Nothing runs; many nodes in one process, for scale tests.
    Sim,
}

/// `rk kubelet` flags.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Kubeconfig of the cluster to join.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: PathBuf,
    /// The Node's name (default: the host name). Ignored with `--runtime sim`.
    #[arg(long)]
    pub node_name: Option<String>,
    /// The container runtime.
    #[arg(long, value_enum, default_value = "process")]
    pub runtime: Runtime,
    /// Node capacity, e.g. `cpu=4,memory=8Gi,pods=110` (default: this machine's;
    /// for sim nodes `cpu=32,memory=256Gi,pods=110`).
    #[arg(long)]
    pub capacity: Option<String>,
    /// The kubelet's HTTP port (logs, metrics); 0 picks a free one.
    #[arg(long, default_value_t = 10250)]
    pub port: u16,
    /// The node's address: the InternalIP the Node reports and where the port listens.
    #[arg(long, default_value = "127.0.0.1")]
    pub address: IpAddr,
    /// Pod address range of this node (default: the Node's spec.podCIDR,
    /// else one /24 of 127.100.0.0/16 derived from the name).
    #[arg(long)]
    pub pod_cidr: Option<String>,
    /// Where pod volumes and logs live.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Number of sim nodes.
    #[arg(long, default_value_t = 1)]
    pub nodes: usize,
    /// Name prefix of sim nodes (`sim-0`, `sim-1`, ...).
    #[arg(long, default_value = "sim-")]
    pub node_prefix: String,
    /// How long a sim container takes to start, e.g. `500ms`.
    #[arg(long, default_value = "0s")]
    pub sim_start_delay: String,
    /// When the node reports pressure, as upstream's `--eviction-hard`:
    /// `memory.available<100Mi,nodefs.available<10%,...` (empty: never).
    #[arg(
        long,
        default_value = "memory.available<100Mi,nodefs.available<10%,nodefs.inodesFree<5%,pid.available<5%"
    )]
    pub eviction_hard: kubelet::eviction::EvictionThresholds,
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_lowercase())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "rk-node".to_owned())
}

/// Build the kubelet configuration from the flags.
pub fn config(args: &Args) -> anyhow::Result<Config> {
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("rk-kubelet"));
    let mut config = match args.runtime {
        Runtime::Process => {
            let capacity = match &args.capacity {
                Some(c) => kubelet::node_status::parse_capacity(c)?,
                None => kubelet::node_status::machine_capacity(),
            };
            let name = args.node_name.clone().unwrap_or_else(host_name);
            let mut node = NodeConfig::new(&name, capacity);
            node.pod_cidr = args.pod_cidr.clone();
            Config::process(node, data_dir.join(&name))
        }
        Runtime::Sim => {
            let capacity = kubelet::node_status::parse_capacity(
                args.capacity
                    .as_deref()
                    .unwrap_or("cpu=32,memory=256Gi,pods=110"),
            )?;
            let delay = kubelet::runtime::parse_duration(&args.sim_start_delay)
                .with_context(|| format!("invalid --sim-start-delay {:?}", args.sim_start_delay))?;
            let mut c = Config::sim(
                &args.node_prefix,
                args.nodes,
                capacity,
                data_dir.join("sim"),
            );
            c.runtime = RuntimeKind::Sim { start_delay: delay };
            c
        }
    };
    config.port = args.port;
    config.address = args.address;
    config.eviction_hard = args.eviction_hard.clone();
    Ok(config)
}

/// Run `rk kubelet` until Ctrl-C.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let config = config(&args)?;
    let client = client_from_kubeconfig(&args.kubeconfig, "kubelet").await?;
    let kubelet = kubelet::start(client, config)
        .await
        .context("starting the kubelet")?;
    eprintln!(
        "rk: kubelet running {} node(s), port {}",
        kubelet.node_names().len(),
        kubelet.port()
    );
    let _ = tokio::signal::ctrl_c().await;
    eprintln!("rk: kubelet shutting down");
    tokio::time::timeout(Duration::from_secs(10), kubelet.shutdown())
        .await
        .context("the kubelet did not stop in time")?;
    Ok(())
}
