//! The Node: registration (capacity, allocatable, addresses, nodeInfo, the
//! kubelet's port, conditions), periodic status updates, re-registration
//! when the Node is deleted, and the per-node pod address pool.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;

use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};

use super::KubeletError;
use super::eviction::{EvictionThresholds, Pressures};

/// The kubelet version nodes report.
pub const KUBELET_VERSION: &str = "v1.37.0-rk";

/// One node a kubelet runs.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeConfig {
    /// The Node's name.
    pub name: String,
    /// Capacity (`cpu`, `memory`, `pods`, ...); allocatable is the same.
    pub capacity: BTreeMap<String, Quantity>,
    /// The pod address range (`127.100.3.0/24`); the Node's `spec.podCIDR`
    /// wins when node IPAM set one.
    pub pod_cidr: Option<String>,
    /// Extra labels.
    pub labels: BTreeMap<String, String>,
}

impl NodeConfig {
    /// A node with the given capacity.
    pub fn new(name: &str, capacity: BTreeMap<String, Quantity>) -> Self {
        Self {
            name: name.to_owned(),
            capacity,
            pod_cidr: None,
            labels: BTreeMap::new(),
        }
    }
}

/// Parse `cpu=4,memory=8Gi,pods=110`.
pub fn parse_capacity(s: &str) -> Result<BTreeMap<String, Quantity>, KubeletError> {
    let mut out = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').ok_or_else(|| {
            KubeletError::Config(format!("capacity entry {part:?} is not name=quantity"))
        })?;
        rk_core::quantity::ParsedQuantity::try_from(&Quantity(v.to_owned()))
            .map_err(|e| KubeletError::Config(format!("capacity {k}: {e}")))?;
        out.insert(k.trim().to_owned(), Quantity(v.trim().to_owned()));
    }
    Ok(out)
}

/// This machine's capacity: its CPUs, its memory and 110 pods.
pub fn machine_capacity() -> BTreeMap<String, Quantity> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let memory_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(4 * 1024 * 1024);
    BTreeMap::from([
        ("cpu".to_owned(), Quantity(cpus.to_string())),
        ("memory".to_owned(), Quantity(format!("{memory_kib}Ki"))),
        ("pods".to_owned(), Quantity("110".to_owned())),
        ("ephemeral-storage".to_owned(), Quantity("100Gi".to_owned())),
    ])
}

/// A per-node fallback pod range in `127.100.0.0/16` derived from the name.
pub fn fallback_pod_cidr(name: &str) -> String {
    let h = name.bytes().fold(2166136261u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(16777619)
    });
    format!("127.100.{}.0/24", h % 256)
}

/// A pod range with room for pods: a /8 to a /30.
fn parse_cidr(cidr: &str) -> Option<rk_core::cidr::Ipv4Cidr> {
    let range: rk_core::cidr::Ipv4Cidr = cidr.parse().ok()?;
    (8..=30).contains(&range.prefix()).then_some(range)
}

/// A node the kubelet runs: its config, its latest Node object and its pod
/// addresses.
pub struct NodeCtx {
    /// The node's name.
    pub name: String,
    /// The node's InternalIP (also where the kubelet serves).
    pub address: IpAddr,
    /// Its configuration.
    pub config: NodeConfig,
    node: Mutex<Option<Node>>,
    ips: Mutex<HashMap<String, Ipv4Addr>>,
    pressure: Option<(std::path::PathBuf, EvictionThresholds)>,
}

impl NodeCtx {
    /// A node not registered yet.
    pub fn new(config: NodeConfig, address: IpAddr) -> Self {
        Self {
            name: config.name.clone(),
            address,
            config,
            node: Mutex::new(None),
            ips: Mutex::new(HashMap::new()),
            pressure: None,
        }
    }

    /// Report the host's memory, disk (of `dir`) and PID pressure against
    /// `thresholds` in the node's conditions (real nodes; sim nodes never
    /// feel pressure).
    pub fn with_pressure_checks(
        mut self,
        dir: std::path::PathBuf,
        thresholds: EvictionThresholds,
    ) -> Self {
        self.pressure = Some((dir, thresholds));
        self
    }

    /// The latest Node object seen.
    pub fn node(&self) -> Option<Node> {
        self.node.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Record the latest Node object.
    pub fn set_node(&self, node: Option<Node>) {
        *self.node.lock().unwrap_or_else(|p| p.into_inner()) = node;
    }

    /// What the node can allocate.
    pub fn allocatable(&self) -> BTreeMap<String, Quantity> {
        self.node()
            .and_then(|n| n.status.and_then(|s| s.allocatable))
            .unwrap_or_else(|| self.config.capacity.clone())
    }

    fn pod_cidr(&self) -> String {
        self.node()
            .and_then(|n| n.spec.and_then(|s| s.pod_cidr))
            .or_else(|| self.config.pod_cidr.clone())
            .unwrap_or_else(|| fallback_pod_cidr(&self.name))
    }

    /// An address for the pod with this uid (the same one if it has one).
    pub fn allocate_ip(&self, uid: &str) -> Result<Ipv4Addr, String> {
        let cidr = self.pod_cidr();
        let range = parse_cidr(&cidr).ok_or_else(|| format!("invalid pod CIDR {cidr:?}"))?;
        let mut ips = self.ips.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(ip) = ips.get(uid) {
            return Ok(*ip);
        }
        let used: std::collections::HashSet<Ipv4Addr> = ips.values().copied().collect();
        // .0 is the network, .1 the gateway by convention, the last the broadcast.
        for ip in (2..range.size() - 1).filter_map(|offset| range.nth(offset)) {
            if !used.contains(&ip) {
                ips.insert(uid.to_owned(), ip);
                return Ok(ip);
            }
        }
        Err(format!("no free pod address in {cidr}"))
    }

    /// Give back the pod's address.
    pub fn release_ip(&self, uid: &str) {
        self.ips
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(uid);
    }
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

fn os_image() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_owned())
        })
        .unwrap_or_else(|| "Linux".to_owned())
}

fn node_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: &Time,
) -> NodeCondition {
    NodeCondition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: Some(reason.to_owned()),
        message: Some(message.to_owned()),
        last_heartbeat_time: Some(now.clone()),
        last_transition_time: Some(now.clone()),
    }
}

/// The node's status, keeping transition times of unchanged conditions
/// from `previous`.
pub fn build_status(
    ctx: &NodeCtx,
    port: u16,
    runtime_version: &str,
    previous: Option<&NodeStatus>,
) -> NodeStatus {
    let now = Time(jiff::Timestamp::now());
    let Pressures { memory, disk, pids } = match &ctx.pressure {
        Some((dir, thresholds)) => thresholds.pressures(dir),
        None => Pressures::default(),
    };
    let pressure = |type_: &str, on: bool, ok: (&str, &str), bad: (&str, &str)| {
        let (reason, message) = if on { bad } else { ok };
        node_condition(
            type_,
            if on { "True" } else { "False" },
            reason,
            message,
            &now,
        )
    };
    let mut conditions = vec![
        pressure(
            "MemoryPressure",
            memory,
            (
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            ),
            (
                "KubeletHasInsufficientMemory",
                "kubelet has insufficient memory available",
            ),
        ),
        pressure(
            "DiskPressure",
            disk,
            ("KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            ("KubeletHasDiskPressure", "kubelet has disk pressure"),
        ),
        pressure(
            "PIDPressure",
            pids,
            (
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
            ),
            (
                "KubeletHasInsufficientPID",
                "kubelet has insufficient PID available",
            ),
        ),
        node_condition(
            "Ready",
            "True",
            "KubeletReady",
            "kubelet is posting ready status",
            &now,
        ),
    ];
    for c in &mut conditions {
        if let Some(p) = previous
            .and_then(|p| p.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|p| p.type_ == c.type_))
            && p.status == c.status
        {
            c.last_transition_time = p.last_transition_time.clone();
        }
    }
    let machine_id = read_trim("/etc/machine-id");
    NodeStatus {
        capacity: Some(ctx.config.capacity.clone()),
        allocatable: Some(ctx.config.capacity.clone()),
        conditions: Some(conditions),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".to_owned(),
                address: ctx.address.to_string(),
            },
            NodeAddress {
                type_: "Hostname".to_owned(),
                address: ctx.name.clone(),
            },
        ]),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint {
                port: i32::from(port),
            }),
        }),
        node_info: Some(NodeSystemInfo {
            architecture: arch().to_owned(),
            boot_id: read_trim("/proc/sys/kernel/random/boot_id"),
            container_runtime_version: runtime_version.to_owned(),
            kernel_version: read_trim("/proc/sys/kernel/osrelease"),
            kube_proxy_version: String::new(),
            kubelet_version: KUBELET_VERSION.to_owned(),
            machine_id: machine_id.clone(),
            operating_system: "linux".to_owned(),
            os_image: os_image(),
            system_uuid: format!("{machine_id}-{}", ctx.name),
            ..NodeSystemInfo::default()
        }),
        phase: None,
        ..NodeStatus::default()
    }
}

fn node_object(ctx: &NodeCtx, runtime_label: &str) -> Node {
    let mut labels = BTreeMap::from([
        ("kubernetes.io/hostname".to_owned(), ctx.name.clone()),
        ("kubernetes.io/os".to_owned(), "linux".to_owned()),
        ("kubernetes.io/arch".to_owned(), arch().to_owned()),
        ("beta.kubernetes.io/os".to_owned(), "linux".to_owned()),
        ("beta.kubernetes.io/arch".to_owned(), arch().to_owned()),
        ("rk.dev/runtime".to_owned(), runtime_label.to_owned()),
    ]);
    labels.extend(ctx.config.labels.clone());
    Node {
        metadata: ObjectMeta {
            name: Some(ctx.name.clone()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        spec: Some(NodeSpec {
            pod_cidr: ctx.config.pod_cidr.clone(),
            pod_cidrs: ctx.config.pod_cidr.clone().map(|c| vec![c]),
            ..NodeSpec::default()
        }),
        status: None,
    }
}

/// Create the Node if it does not exist, then write its status.
pub async fn register(
    client: &kube::Client,
    ctx: &NodeCtx,
    port: u16,
    runtime_version: &str,
    runtime_label: &str,
) -> Result<(), kube::Error> {
    let api: Api<Node> = Api::all(client.clone());
    let mut node = node_object(ctx, runtime_label);
    node.status = Some(build_status(ctx, port, runtime_version, None));
    let existing = match api.create(&PostParams::default(), &node).await {
        Ok(n) => {
            tracing::info!(node = %ctx.name, "node registered");
            let has_status = n
                .status
                .as_ref()
                .is_some_and(|s| s.conditions.as_ref().is_some_and(|c| !c.is_empty()));
            ctx.set_node(Some(n));
            if has_status {
                return Ok(());
            }
            None
        }
        Err(kube::Error::Api(e)) if e.code == 409 => api.get_opt(&ctx.name).await?,
        Err(e) => return Err(e),
    };
    if existing.is_some() {
        ctx.set_node(existing);
    }
    update_status(client, ctx, port, runtime_version).await
}

/// Write the node's status (conditions with a fresh heartbeat).
pub async fn update_status(
    client: &kube::Client,
    ctx: &NodeCtx,
    port: u16,
    runtime_version: &str,
) -> Result<(), kube::Error> {
    let api: Api<Node> = Api::all(client.clone());
    let previous = ctx.node().and_then(|n| n.status);
    let status = build_status(ctx, port, runtime_version, previous.as_ref());
    let patch = serde_json::json!({ "status": status });
    let node = api
        .patch_status(&ctx.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    ctx.set_node(Some(node));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_flags_parse_and_reject_garbage() {
        let c = parse_capacity("cpu=4,memory=8Gi,pods=110").unwrap();
        assert_eq!(c["memory"], Quantity("8Gi".into()));
        assert!(parse_capacity("cpu").is_err());
        assert!(parse_capacity("cpu=lots").is_err());
    }

    #[test]
    fn pod_addresses_come_from_the_range_and_are_reused_per_pod() {
        let mut config = NodeConfig::new("n", BTreeMap::new());
        config.pod_cidr = Some("127.100.7.0/24".into());
        let ctx = NodeCtx::new(config, IpAddr::from([127, 0, 0, 1]));
        let a = ctx.allocate_ip("a").unwrap();
        assert_eq!(a, Ipv4Addr::new(127, 100, 7, 2));
        assert_eq!(ctx.allocate_ip("a").unwrap(), a);
        assert_eq!(ctx.allocate_ip("b").unwrap(), Ipv4Addr::new(127, 100, 7, 3));
        ctx.release_ip("a");
        assert_eq!(ctx.allocate_ip("c").unwrap(), a);
    }
}
