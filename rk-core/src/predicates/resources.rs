//! What a pod requests and whether it fits on a node.
//!
//! Upstream: `k8s.io/component-helpers/resource` `PodRequests` and the
//! scheduler's `noderesources` fit plugin.
//!
//! A pod's request for a resource is the larger of
//! - the sum over its regular containers plus the sum over its restartable
//!   ("sidecar", `restartPolicy: Always`) init containers, and
//! - for each ordinary init container, its own request plus the requests of the
//!   sidecars declared before it (they are already running while it runs),
//!
//! then pod-level requests (`spec.resources`, for cpu, memory and hugepages)
//! replace the container aggregate, and `spec.overhead` is added on top.
//!
//! Where a container (or the pod level) sets a limit but no request for a
//! resource, the limit is used as the request, as API-server defaulting would
//! have recorded it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Node, Pod, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::{PredicateError, milli};

/// Resource name of CPU.
pub const CPU: &str = "cpu";
/// Resource name of memory.
pub const MEMORY: &str = "memory";
/// Resource name of local ephemeral storage.
pub const EPHEMERAL_STORAGE: &str = "ephemeral-storage";
/// Resource name of the pod count.
pub const PODS: &str = "pods";

/// CPU request (milli-CPU) assumed for scoring when a container sets none
/// (upstream `DefaultMilliCPURequest`).
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// Memory request (bytes) assumed for scoring when a container sets none
/// (upstream `DefaultMemoryRequest`, 200Mi).
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// An amount of each schedulable resource, as the scheduler accounts for it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    /// CPU in milli-CPU.
    pub milli_cpu: i64,
    /// Memory in bytes.
    pub memory: i64,
    /// Local ephemeral storage in bytes.
    pub ephemeral_storage: i64,
    /// Number of pods (1 for a pod's own request, the pod capacity for a node).
    pub pods: i64,
    /// Extended resources, hugepages and attachable volumes, in whole units.
    pub scalar: BTreeMap<String, i64>,
}

impl Resources {
    /// Adds `other` to `self`, saturating instead of overflowing.
    pub fn add(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.saturating_add(other.milli_cpu);
        self.memory = self.memory.saturating_add(other.memory);
        self.ephemeral_storage = self
            .ephemeral_storage
            .saturating_add(other.ephemeral_storage);
        self.pods = self.pods.saturating_add(other.pods);
        for (name, amount) in &other.scalar {
            let entry = self.scalar.entry(name.clone()).or_insert(0);
            *entry = entry.saturating_add(*amount);
        }
    }

    /// Builds resources from a resource list (`status.allocatable`, requests, ...).
    ///
    /// Names that are neither native (`cpu`, `memory`, `ephemeral-storage`,
    /// `pods`) nor scalar (extended, hugepages, attachable volumes) are ignored,
    /// as upstream does.
    pub fn from_resource_list(list: &BTreeMap<String, Quantity>) -> Result<Self, PredicateError> {
        let mut millis = BTreeMap::new();
        for (name, q) in list {
            millis.insert(name.clone(), milli(q)?);
        }
        let mut resources = Self::from_millis(&millis);
        resources.pods = millis.get(PODS).map_or(0, |m| ceil_units(*m));
        Ok(resources)
    }

    /// Resources from a per-resource milli-unit list; `pods` is left at 0.
    fn from_millis(millis: &BTreeMap<String, i64>) -> Self {
        let mut resources = Self::default();
        for (name, &m) in millis {
            match name.as_str() {
                CPU => resources.milli_cpu = m,
                MEMORY => resources.memory = ceil_units(m),
                EPHEMERAL_STORAGE => resources.ephemeral_storage = ceil_units(m),
                PODS => {}
                other if is_scalar_resource_name(other) => {
                    resources.scalar.insert(other.to_owned(), ceil_units(m));
                }
                _ => {}
            }
        }
        resources
    }
}

/// A resource the node lacks for a pod (upstream `InsufficientResource`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InsufficientResource {
    /// The resource name (`cpu`, `memory`, `pods`, `nvidia.com/gpu`, ...).
    pub resource_name: String,
    /// Upstream's reason: `Insufficient cpu`, `Too many pods`, ...
    pub reason: String,
    /// What the pod requests.
    pub requested: i64,
    /// What pods on the node already request.
    pub used: i64,
    /// What the node can allocate.
    pub capacity: i64,
}

/// Whether `name` is a scalar resource: an extended resource (`example.com/foo`,
/// outside `kubernetes.io/`), hugepages or attachable volumes.
pub fn is_scalar_resource_name(name: &str) -> bool {
    if name.starts_with("hugepages-") || name.starts_with("attachable-volumes-") {
        return true;
    }
    let native = !name.contains('/') || name.contains("kubernetes.io/");
    !native && !name.starts_with("requests.")
}

/// What the pod requests (upstream `PodRequests`, overhead included); `pods` is 1.
///
/// Errors on a malformed quantity anywhere in the pod's requests, limits or
/// overhead.
pub fn pod_requests(pod: &Pod) -> Result<Resources, PredicateError> {
    requests_with(pod, false)
}

/// What the pod requests with upstream's non-zero defaults for scoring
/// (`GetNonzeroRequests`): a container that sets no CPU request counts as
/// [`DEFAULT_MILLI_CPU_REQUEST`], one with no memory request as
/// [`DEFAULT_MEMORY_REQUEST`]. An explicit zero stays zero.
pub fn pod_nonzero_requests(pod: &Pod) -> Result<Resources, PredicateError> {
    requests_with(pod, true)
}

/// What the node can allocate to pods (`status.allocatable`; empty when absent).
pub fn node_allocatable(node: &Node) -> Result<Resources, PredicateError> {
    match node.status.as_ref().and_then(|s| s.allocatable.as_ref()) {
        Some(list) => Resources::from_resource_list(list),
        None => Ok(Resources::default()),
    }
}

/// The sum of [`pod_requests`] over the pods that still hold resources on a
/// node (terminal pods, `Succeeded` or `Failed`, are skipped); `pods` is
/// their count.
pub fn requested_by_pods<'a>(
    pods: impl IntoIterator<Item = &'a Pod>,
) -> Result<Resources, PredicateError> {
    let mut total = Resources::default();
    for pod in pods {
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed")) {
            continue;
        }
        total.add(&pod_requests(pod)?);
    }
    Ok(total)
}

/// Which resources the node lacks for the pod, in upstream's order (pods,
/// cpu, memory, ephemeral-storage, then scalar resources by name); empty when
/// the pod fits.
///
/// `pod` is the pod's request ([`pod_requests`]), `allocatable` the node's
/// ([`node_allocatable`]) and `requested` the sum over pods already on the
/// node ([`requested_by_pods`], whose `pods` is their count).
pub fn fits(
    pod: &Resources,
    allocatable: &Resources,
    requested: &Resources,
) -> Vec<InsufficientResource> {
    let mut insufficient = Vec::new();
    let insufficient_of =
        |name: &str, reason: String, req: i64, used: i64, cap: i64| InsufficientResource {
            resource_name: name.to_owned(),
            reason,
            requested: req,
            used,
            capacity: cap,
        };
    let wanted_pods = pod.pods.max(1);
    if requested.pods.saturating_add(wanted_pods) > allocatable.pods {
        insufficient.push(insufficient_of(
            PODS,
            "Too many pods".to_owned(),
            wanted_pods,
            requested.pods,
            allocatable.pods,
        ));
    }
    if pod.milli_cpu == 0
        && pod.memory == 0
        && pod.ephemeral_storage == 0
        && pod.scalar.values().all(|v| *v == 0)
    {
        return insufficient;
    }
    let native = [
        (
            CPU,
            pod.milli_cpu,
            requested.milli_cpu,
            allocatable.milli_cpu,
        ),
        (MEMORY, pod.memory, requested.memory, allocatable.memory),
        (
            EPHEMERAL_STORAGE,
            pod.ephemeral_storage,
            requested.ephemeral_storage,
            allocatable.ephemeral_storage,
        ),
    ];
    for (name, want, used, cap) in native {
        if want > 0 && want > cap.saturating_sub(used) {
            insufficient.push(insufficient_of(
                name,
                format!("Insufficient {name}"),
                want,
                used,
                cap,
            ));
        }
    }
    for (name, &want) in &pod.scalar {
        if want == 0 {
            continue;
        }
        let used = requested.scalar.get(name).copied().unwrap_or(0);
        let cap = allocatable.scalar.get(name).copied().unwrap_or(0);
        if want > cap.saturating_sub(used) {
            insufficient.push(insufficient_of(
                name,
                format!("Insufficient {name}"),
                want,
                used,
                cap,
            ));
        }
    }
    insufficient
}

/// Milli-units to whole units, rounding up.
fn ceil_units(m: i64) -> i64 {
    m.div_euclid(1000) + i64::from(m.rem_euclid(1000) != 0)
}

fn requests_with(pod: &Pod, nonzero: bool) -> Result<Resources, PredicateError> {
    let mut millis = BTreeMap::new();
    if let Some(spec) = pod.spec.as_ref() {
        millis = aggregate_containers(&spec.containers, spec.init_containers.as_deref(), nonzero)?;
        if let Some(pod_level) = spec.resources.as_ref() {
            for (name, m) in effective_requests(pod_level)? {
                if name == CPU || name == MEMORY || name.starts_with("hugepages-") {
                    millis.insert(name, m);
                }
            }
        }
        for (name, q) in spec.overhead.iter().flatten() {
            add_milli(&mut millis, name, milli(q)?);
        }
    }
    let mut resources = Resources::from_millis(&millis);
    resources.pods = 1;
    Ok(resources)
}

fn aggregate_containers(
    containers: &[Container],
    init_containers: Option<&[Container]>,
    nonzero: bool,
) -> Result<BTreeMap<String, i64>, PredicateError> {
    let mut total = BTreeMap::new();
    for c in containers {
        for (name, m) in container_requests(c, nonzero)? {
            add_milli(&mut total, &name, m);
        }
    }
    let mut sidecars = BTreeMap::new();
    let mut init_peak = BTreeMap::new();
    for c in init_containers.unwrap_or_default() {
        let own = container_requests(c, nonzero)?;
        let in_use = if c.restart_policy.as_deref() == Some("Always") {
            for (name, &m) in &own {
                add_milli(&mut total, name, m);
                add_milli(&mut sidecars, name, m);
            }
            sidecars.clone()
        } else {
            let mut in_use = own;
            for (name, &m) in &sidecars {
                add_milli(&mut in_use, name, m);
            }
            in_use
        };
        max_into(&mut init_peak, &in_use);
    }
    max_into(&mut total, &init_peak);
    Ok(total)
}

/// A container's requests in milli-units, limits standing in for missing
/// requests, with the scoring defaults applied when `nonzero`.
fn container_requests(
    c: &Container,
    nonzero: bool,
) -> Result<BTreeMap<String, i64>, PredicateError> {
    let mut reqs = match c.resources.as_ref() {
        Some(r) => effective_requests(r)?,
        None => BTreeMap::new(),
    };
    if nonzero {
        reqs.entry(CPU.to_owned())
            .or_insert(DEFAULT_MILLI_CPU_REQUEST);
        reqs.entry(MEMORY.to_owned())
            .or_insert(DEFAULT_MEMORY_REQUEST * 1000);
    }
    Ok(reqs)
}

/// Requests, with limits standing in for resources that have no request.
fn effective_requests(r: &ResourceRequirements) -> Result<BTreeMap<String, i64>, PredicateError> {
    let mut reqs = BTreeMap::new();
    for (name, q) in r.limits.iter().flatten() {
        reqs.insert(name.clone(), milli(q)?);
    }
    for (name, q) in r.requests.iter().flatten() {
        reqs.insert(name.clone(), milli(q)?);
    }
    Ok(reqs)
}

fn add_milli(list: &mut BTreeMap<String, i64>, name: &str, m: i64) {
    let entry = list.entry(name.to_owned()).or_insert(0);
    *entry = entry.saturating_add(m);
}

fn max_into(list: &mut BTreeMap<String, i64>, other: &BTreeMap<String, i64>) {
    for (name, &m) in other {
        let entry = list.entry(name.clone()).or_insert(m);
        *entry = (*entry).max(m);
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{NodeStatus, PodSpec, PodStatus};

    use super::*;

    const MI: i64 = 1024 * 1024;

    fn list(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, Quantity>> {
        Some(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned())))
                .collect(),
        )
    }

    fn container(name: &str, requests: &[(&str, &str)]) -> Container {
        Container {
            name: name.into(),
            resources: Some(ResourceRequirements {
                requests: list(requests),
                ..ResourceRequirements::default()
            }),
            ..Container::default()
        }
    }

    fn sidecar(name: &str, requests: &[(&str, &str)]) -> Container {
        Container {
            restart_policy: Some("Always".into()),
            ..container(name, requests)
        }
    }

    fn pod(containers: Vec<Container>, init: Vec<Container>) -> Pod {
        Pod {
            spec: Some(PodSpec {
                containers,
                init_containers: Some(init),
                ..PodSpec::default()
            }),
            ..Pod::default()
        }
    }

    fn requests(pod: &Pod) -> Resources {
        match pod_requests(pod) {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn regular_containers_are_summed() {
        let p = pod(
            vec![
                container("a", &[("cpu", "100m"), ("memory", "64Mi")]),
                container("b", &[("cpu", "200m"), ("memory", "128Mi")]),
            ],
            vec![],
        );
        let r = requests(&p);
        assert_eq!((r.milli_cpu, r.memory, r.pods), (300, 192 * MI, 1));
    }

    #[test]
    fn a_larger_init_container_sets_the_request() {
        let p = pod(
            vec![container("a", &[("cpu", "100m"), ("memory", "1Gi")])],
            vec![container("init", &[("cpu", "500m"), ("memory", "10Mi")])],
        );
        let r = requests(&p);
        // cpu: max(100, 500); memory: max(1024Mi, 10Mi)
        assert_eq!((r.milli_cpu, r.memory), (500, 1024 * MI));
    }

    #[test]
    fn sidecars_add_to_containers_and_to_init_containers_started_after_them() {
        let p = pod(
            vec![container("app", &[("cpu", "100m"), ("memory", "100Mi")])],
            vec![
                sidecar("proxy", &[("cpu", "200m"), ("memory", "50Mi")]),
                container("migrate", &[("cpu", "250m"), ("memory", "300Mi")]),
            ],
        );
        let r = requests(&p);
        // steady state: 100+200 = 300m, 100+50 = 150Mi
        // while `migrate` runs: 250+200 = 450m, 300+50 = 350Mi
        assert_eq!((r.milli_cpu, r.memory), (450, 350 * MI));
    }

    #[test]
    fn sidecars_declared_after_an_init_container_do_not_add_to_it() {
        let p = pod(
            vec![container("app", &[("cpu", "100m")])],
            vec![
                container("migrate", &[("cpu", "250m")]),
                sidecar("proxy", &[("cpu", "200m")]),
            ],
        );
        // steady state 100+200 = 300m beats `migrate` alone (250m).
        assert_eq!(requests(&p).milli_cpu, 300);
    }

    #[test]
    fn overhead_is_added_on_top() {
        let mut p = pod(
            vec![container("app", &[("cpu", "100m"), ("memory", "64Mi")])],
            vec![container("init", &[("cpu", "400m")])],
        );
        if let Some(spec) = p.spec.as_mut() {
            spec.overhead = list(&[("cpu", "50m"), ("memory", "32Mi")]);
        }
        let r = requests(&p);
        // max(100, 400) + 50 = 450m; 64Mi + 32Mi = 96Mi
        assert_eq!((r.milli_cpu, r.memory), (450, 96 * MI));
    }

    #[test]
    fn pod_level_requests_replace_the_container_aggregate_for_cpu_and_memory() {
        let mut p = pod(
            vec![container(
                "app",
                &[
                    ("cpu", "100m"),
                    ("memory", "64Mi"),
                    ("ephemeral-storage", "1Gi"),
                ],
            )],
            vec![],
        );
        if let Some(spec) = p.spec.as_mut() {
            spec.resources = Some(ResourceRequirements {
                requests: list(&[("cpu", "1")]),
                ..ResourceRequirements::default()
            });
        }
        let r = requests(&p);
        assert_eq!(
            (r.milli_cpu, r.memory, r.ephemeral_storage),
            (1000, 64 * MI, 1024 * MI)
        );
    }

    #[test]
    fn a_limit_without_a_request_counts_as_the_request() {
        let c = Container {
            name: "app".into(),
            resources: Some(ResourceRequirements {
                limits: list(&[("cpu", "2"), ("memory", "1Gi")]),
                requests: list(&[("memory", "512Mi")]),
                ..ResourceRequirements::default()
            }),
            ..Container::default()
        };
        let r = requests(&pod(vec![c], vec![]));
        assert_eq!((r.milli_cpu, r.memory), (2000, 512 * MI));
    }

    #[test]
    fn extended_resources_are_scalar_and_unknown_native_names_are_ignored() {
        let p = pod(
            vec![container(
                "a",
                &[
                    ("nvidia.com/gpu", "2"),
                    ("hugepages-2Mi", "4Mi"),
                    ("foo", "3"),
                ],
            )],
            vec![],
        );
        let r = requests(&p);
        assert_eq!(r.scalar.get("nvidia.com/gpu"), Some(&2));
        assert_eq!(r.scalar.get("hugepages-2Mi"), Some(&(4 * MI)));
        assert!(!r.scalar.contains_key("foo"));
    }

    #[test]
    fn nonzero_requests_default_missing_cpu_and_memory_per_container() {
        let p = pod(
            vec![
                container("a", &[]),
                container("b", &[("cpu", "0"), ("memory", "1Gi")]),
            ],
            vec![],
        );
        let Ok(r) = pod_nonzero_requests(&p) else {
            panic!("valid pod rejected");
        };
        // a: 100m + 200Mi defaults; b: explicit 0 cpu stays 0, 1Gi
        assert_eq!((r.milli_cpu, r.memory), (100, 200 * MI + 1024 * MI));
        assert_eq!(requests(&p).milli_cpu, 0);
    }

    #[test]
    fn malformed_quantity_is_an_error() {
        let p = pod(vec![container("a", &[("cpu", "lots")])], vec![]);
        assert!(matches!(
            pod_requests(&p),
            Err(PredicateError::InvalidQuantity(_))
        ));
    }

    fn node(allocatable: &[(&str, &str)]) -> Node {
        Node {
            status: Some(NodeStatus {
                allocatable: list(allocatable),
                ..NodeStatus::default()
            }),
            ..Node::default()
        }
    }

    #[test]
    fn fits_reports_every_insufficient_resource_in_upstream_order() {
        let Ok(alloc) = node_allocatable(&node(&[("cpu", "1"), ("memory", "1Gi"), ("pods", "2")]))
        else {
            panic!("valid node rejected");
        };
        let existing = [
            pod(
                vec![container("a", &[("cpu", "600m"), ("memory", "512Mi")])],
                vec![],
            ),
            pod(vec![container("b", &[("cpu", "100m")])], vec![]),
        ];
        let Ok(used) = requested_by_pods(&existing) else {
            panic!("valid pods rejected");
        };
        let incoming = requests(&pod(
            vec![container(
                "c",
                &[
                    ("cpu", "500m"),
                    ("memory", "256Mi"),
                    ("example.com/dongle", "1"),
                ],
            )],
            vec![],
        ));
        let reasons: Vec<String> = fits(&incoming, &alloc, &used)
            .into_iter()
            .map(|i| i.reason)
            .collect();
        assert_eq!(
            reasons,
            [
                "Too many pods",
                "Insufficient cpu",
                "Insufficient example.com/dongle"
            ]
        );
    }

    #[test]
    fn terminal_pods_hold_no_resources() {
        let mut done = pod(vec![container("a", &[("cpu", "1")])], vec![]);
        done.status = Some(PodStatus {
            phase: Some("Succeeded".into()),
            ..PodStatus::default()
        });
        assert_eq!(requested_by_pods([&done]), Ok(Resources::default()));
    }

    #[test]
    fn a_pod_without_requests_only_needs_a_pod_slot() {
        let Ok(alloc) = node_allocatable(&node(&[("pods", "1")])) else {
            panic!("valid node rejected");
        };
        let incoming = requests(&pod(vec![container("a", &[])], vec![]));
        assert!(fits(&incoming, &alloc, &Resources::default()).is_empty());
        let full = Resources {
            pods: 1,
            ..Resources::default()
        };
        assert_eq!(fits(&incoming, &alloc, &full).len(), 1);
    }
}
