//! `rk up`: a whole cluster in one process — the API server on the sqlite
//! store, the controller manager, the scheduler, N kubelets and the proxy,
//! each talking to the API server over HTTP as separate binaries would.
//! State lives in `--data-dir`; running `rk up` again resumes it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};
use rk_apiserver::{ServerConfig, StorageConfig};
use rk_controllers::controllers::node_ipam::ClusterCidr;
use rk_controllers::kubelet::{self, NodeConfig, RuntimeKind};

use super::controller_manager::shutdown_signal;

/// Which runtime the kubelets use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Runtime {
    /// Containers are host processes (command and args required).
    Process,
    /// Nothing runs; pods become Running and Ready after a short delay.
    Sim,
}

/// `rk up` flags.
#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Where state, pod data and the kubeconfig live.
    #[arg(long, default_value = "rk-data")]
    pub data_dir: PathBuf,
    /// API server port on 127.0.0.1.
    #[arg(long, default_value_t = 6443)]
    pub port: u16,
    /// Number of nodes (kubelets).
    #[arg(long, default_value_t = 1)]
    pub nodes: usize,
    /// Kubelet runtime.
    #[arg(long, value_enum, default_value = "process")]
    pub runtime: Runtime,
    /// Capacity of each node, e.g. `cpu=4,memory=8Gi,pods=110` (default:
    /// this machine's for `process`, `cpu=32,memory=256Gi,pods=110` for `sim`).
    #[arg(long)]
    pub capacity: Option<String>,
    /// Give Service cluster IPs to the loopback interface so they answer on
    /// this machine (needs root; changes the host's `lo` addresses).
    #[arg(long)]
    pub proxy_add_addresses: bool,
    /// The Service cluster IP range (IPv4 CIDR). A second cluster on the
    /// same machine needs another one (e.g. `127.201.0.0/16`): both
    /// proxies would otherwise listen on `default/kubernetes`'s address.
    #[arg(long, default_value = "127.200.0.0/16")]
    pub service_cluster_ip_range: rk_apiserver::admission::service_ips::ServiceCidr,
    /// The pod range (IPv4 CIDR) every node's `/24` comes from: loopback
    /// addresses, so pod IPs answer on this machine with no network setup.
    /// A second cluster on the same machine needs another one (e.g.
    /// `127.101.0.0/16`).
    #[arg(long, default_value = "127.100.0.0/16")]
    pub cluster_cidr: String,
    /// Which controllers run, as kube-controller-manager's `--controllers`:
    /// `*` (all), `*,-name` (all but one), or a list of names.
    #[arg(long, env = "RK_CONTROLLERS", default_value = "*")]
    pub controllers: String,
}

/// `--cluster-cidr` split into the nodes' `/24`s; with the process runtime,
/// whose pods really listen on their addresses, room for every node is
/// required (simulated nodes past the range just get no `podCIDR`).
fn cluster_cidr(args: &UpArgs) -> anyhow::Result<ClusterCidr> {
    let cidr = ClusterCidr::new(&args.cluster_cidr, 24)
        .with_context(|| format!("--cluster-cidr {}", args.cluster_cidr))?;
    anyhow::ensure!(
        !matches!(args.runtime, Runtime::Process) || args.nodes as u64 <= cidr.capacity(),
        "--cluster-cidr {} holds {} node /24s, fewer than --nodes {}",
        args.cluster_cidr,
        cidr.capacity(),
        args.nodes
    );
    Ok(cidr)
}

fn absolute(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

fn node_name(i: usize) -> String {
    format!("rk-node-{i}")
}

fn kubelet_configs(
    args: &UpArgs,
    pod_range: &ClusterCidr,
    data_dir: &Path,
) -> anyhow::Result<Vec<kubelet::Config>> {
    match args.runtime {
        Runtime::Process => {
            let capacity = match &args.capacity {
                Some(c) => kubelet::node_status::parse_capacity(c)?,
                None => kubelet::node_status::machine_capacity(),
            };
            Ok((0..args.nodes)
                .map(|i| {
                    let name = node_name(i);
                    let mut node = NodeConfig::new(&name, capacity.clone());
                    node.pod_cidr = Some(pod_range.block(i as u64));
                    let mut c =
                        kubelet::Config::process(node, data_dir.join("kubelet").join(&name));
                    c.port = 0;
                    c
                })
                .collect())
        }
        Runtime::Sim => {
            let capacity = kubelet::node_status::parse_capacity(
                args.capacity
                    .as_deref()
                    .unwrap_or("cpu=32,memory=256Gi,pods=110"),
            )?;
            let mut c =
                kubelet::Config::sim("rk-node-", args.nodes, capacity, data_dir.join("kubelet"));
            c.runtime = RuntimeKind::Sim {
                start_delay: Duration::from_millis(200),
            };
            c.port = 0;
            Ok(vec![c])
        }
    }
}

async fn wait_for_ready_nodes(client: &kube::Client, want: usize, timeout: Duration) -> usize {
    let api: Api<Node> = Api::all(client.clone());
    let deadline = Instant::now() + timeout;
    loop {
        let ready = api
            .list(&ListParams::default())
            .await
            .map(|l| {
                l.items
                    .iter()
                    .filter(|n| {
                        n.status
                            .as_ref()
                            .and_then(|s| s.conditions.as_ref())
                            .is_some_and(|cs| {
                                cs.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                            })
                    })
                    .count()
            })
            .unwrap_or(0);
        if ready >= want || Instant::now() > deadline {
            return ready;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Run `rk up` until Ctrl-C or SIGTERM.
pub async fn up(args: UpArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    if args.nodes == 0 {
        anyhow::bail!("--nodes must be at least 1");
    }
    // Checked before anything starts.
    let pod_range = cluster_cidr(&args)?;
    let data_dir = &args.data_dir;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let server = rk_apiserver::start(ServerConfig {
        bind: SocketAddr::from(([127, 0, 0, 1], args.port)),
        storage: StorageConfig::Sqlite(data_dir.join("state.db")),
        service_cidr: args.service_cluster_ip_range,
        ..Default::default()
    })
    .await
    .context("starting the API server")?;
    let url = server.url();
    let kubeconfig = data_dir.join("kubeconfig");
    std::fs::write(&kubeconfig, rk_apiserver::test_server::kubeconfig_for(&url))
        .with_context(|| format!("writing {}", kubeconfig.display()))?;
    // Every component gets its own client, as separate processes would.
    let client = |component: &str| {
        rk_apiserver::test_server::component_client_for(&url, component).map_err(anyhow::Error::msg)
    };

    let mut tasks = tokio::task::JoinSet::new();
    let selection: rk_controllers::controller_manager::Selection = args.controllers.parse()?;
    let options = rk_controllers::controller_manager::Options {
        cluster_cidr: pod_range.clone(),
        ..Default::default()
    };
    let cm_client = client("kube-controller-manager")?;
    tasks.spawn(async move {
        if let Err(e) =
            rk_controllers::controller_manager::run(cm_client, &selection, options).await
        {
            tracing::error!(error = %e, "controller manager stopped");
        }
    });
    let sched_client = client("kube-scheduler")?;
    tasks.spawn(async move {
        if let Err(e) = rk_controllers::scheduler::run(sched_client, Default::default()).await {
            tracing::error!(error = %e, "scheduler stopped");
        }
    });
    let mut kubelets = Vec::new();
    for config in kubelet_configs(&args, &pod_range, data_dir)? {
        kubelets.push(
            kubelet::start(client("kubelet")?, config)
                .await
                .context("starting a kubelet")?,
        );
    }
    let proxy_config = rk_controllers::proxy::Config {
        add_loopback_addresses: args.proxy_add_addresses,
        ..Default::default()
    };
    let proxy = rk_controllers::proxy::start(client("kube-proxy")?, proxy_config)
        .await
        .context("starting the proxy")?;

    let ready = wait_for_ready_nodes(&client("rk")?, args.nodes, Duration::from_secs(30)).await;
    crate::release_freed_memory();
    eprintln!(
        "rk: cluster up in {:.1}s ({ready}/{} nodes Ready, API server {url}); run: export KUBECONFIG={}",
        started.elapsed().as_secs_f64(),
        args.nodes,
        absolute(&kubeconfig).display()
    );
    tokio::select! {
        _ = shutdown_signal() => {}
        Some(r) = tasks.join_next() => {
            if let Err(e) = r {
                tracing::error!(error = %e, "a component failed");
            }
        }
    }
    eprintln!("rk: shutting down");
    for k in kubelets {
        k.shutdown().await;
    }
    proxy.shutdown().await;
    tasks.shutdown().await;
    server.shutdown().await;
    Ok(())
}
