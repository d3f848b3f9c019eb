//! What the scheduler knows about a pod and a node, precomputed once so the
//! per-node work of a scheduling cycle is arithmetic, not parsing.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod, Taint, WeightedPodAffinityTerm};
use rk_core::predicates::{
    AffinityTerm, HostPort, HostPortSet, PredicateError, Resources, node_allocatable,
    pod_host_ports, pod_nonzero_requests, pod_requests,
};

/// The key of a namespaced object, `namespace/name`.
pub fn pod_key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

/// Drop what no scheduling decision reads from a pod's containers: commands,
/// environment, mounts, probes, hooks (kept: name, image, ports, resources,
/// resize and restart policies).
fn slim_containers(pod: &mut Pod) {
    fn slim(c: &mut k8s_openapi::api::core::v1::Container) {
        *c = k8s_openapi::api::core::v1::Container {
            name: std::mem::take(&mut c.name),
            image: c.image.take(),
            ports: c.ports.take(),
            resources: c.resources.take(),
            resize_policy: c.resize_policy.take(),
            restart_policy: c.restart_policy.take(),
            ..Default::default()
        };
    }
    if let Some(spec) = pod.spec.as_mut() {
        spec.containers.iter_mut().for_each(slim);
        spec.init_containers.iter_mut().flatten().for_each(slim);
        spec.ephemeral_containers = None;
    }
}

/// The part of a pod bound to a node that the scheduler keeps: everything
/// but what only the kubelet uses — the containers' commands, environment,
/// mounts, probes and hooks, and the status beyond `phase` and
/// `startTime`. The scheduler caches every pod of the cluster, so this is
/// most of its memory (a pod's status alone is larger than its spec).
pub fn slim_assigned(pod: Pod) -> Pod {
    slim(pod, false)
}

/// The scheduling view of a pod bound to a node: [`slim_assigned`], its
/// requests, host ports and affinity terms computed once from its
/// containers, which are then dropped. No decision reads a bound pod's
/// containers again (fit, ports and preemption use the computed values;
/// affinity and spreading read its labels), and a `Container` is 2.3 KB
/// before any of its strings — for every pod of the cluster.
pub fn assigned_pod_info(pod: Pod) -> PodInfo {
    let mut info = PodInfo::new(Arc::new(slim_assigned(pod)));
    if let Some(spec) = Arc::get_mut(&mut info.pod).and_then(|p| p.spec.as_mut()) {
        spec.containers = Vec::new();
        spec.init_containers = None;
    }
    info
}

/// The part of a pod waiting to be scheduled that the scheduler keeps: as
/// [`slim_assigned`], but with the status's conditions (the scheduler
/// reads its own `PodScheduled` condition back). A burst of pending pods
/// sits in the queue, so they are kept small too.
pub fn slim_pending(pod: Pod) -> Pod {
    slim(pod, true)
}

/// The pod with slim containers and, of its status, the phase, start time,
/// nominated node and (if `conditions`) its conditions.
fn slim(mut pod: Pod, conditions: bool) -> Pod {
    slim_containers(&mut pod);
    if let Some(status) = pod.status.take() {
        pod.status = Some(k8s_openapi::api::core::v1::PodStatus {
            phase: status.phase,
            start_time: status.start_time,
            nominated_node_name: status.nominated_node_name,
            conditions: status.conditions.filter(|_| conditions),
            ..Default::default()
        });
    }
    pod
}

/// A pod with everything the plugins compute from it parsed once.
#[derive(Debug, Clone)]
pub struct PodInfo {
    /// The pod.
    pub pod: Arc<Pod>,
    /// `namespace/name`.
    pub key: String,
    /// `spec.priority` (0 when unset).
    pub priority: i32,
    /// What the pod requests (upstream `PodRequests`).
    pub requests: Resources,
    /// Requests with the scoring defaults for missing cpu/memory.
    pub nonzero_requests: Resources,
    /// Host ports the pod wants.
    pub host_ports: Vec<HostPort>,
    /// Required pod affinity terms.
    pub required_affinity: Vec<AffinityTerm>,
    /// Required pod anti-affinity terms.
    pub required_anti_affinity: Vec<AffinityTerm>,
    /// Preferred pod affinity terms with their weights.
    pub preferred_affinity: Vec<(i64, AffinityTerm)>,
    /// Preferred pod anti-affinity terms with their weights.
    pub preferred_anti_affinity: Vec<(i64, AffinityTerm)>,
    /// Why the pod's spec could not be evaluated, if it could not.
    pub parse_error: Option<String>,
}

impl PodInfo {
    /// Precomputes the scheduling view of `pod`. A malformed spec does not
    /// fail: the error is kept in [`PodInfo::parse_error`] and the pod is
    /// reported unschedulable.
    pub fn new(pod: Arc<Pod>) -> Self {
        let mut errors = Vec::new();
        let mut keep = |r: Result<Resources, PredicateError>| {
            r.unwrap_or_else(|e| {
                errors.push(e.to_string());
                Resources::default()
            })
        };
        let requests = keep(pod_requests(&pod));
        let nonzero_requests = keep(pod_nonzero_requests(&pod));
        let affinity = pod.spec.as_ref().and_then(|s| s.affinity.as_ref());
        let pod_affinity = affinity.and_then(|a| a.pod_affinity.as_ref());
        let pod_anti = affinity.and_then(|a| a.pod_anti_affinity.as_ref());
        let mut compile = |terms: Option<&Vec<k8s_openapi::api::core::v1::PodAffinityTerm>>| {
            let mut out = Vec::new();
            for t in terms.into_iter().flatten() {
                match AffinityTerm::new(&pod, t) {
                    Ok(c) => out.push(c),
                    Err(e) => errors.push(e.to_string()),
                }
            }
            out
        };
        let required_affinity = compile(pod_affinity.and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        }));
        let required_anti_affinity = compile(pod_anti.and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        }));
        let mut weighted = |terms: Option<&Vec<WeightedPodAffinityTerm>>| {
            let mut out = Vec::new();
            for t in terms.into_iter().flatten() {
                match AffinityTerm::new(&pod, &t.pod_affinity_term) {
                    Ok(c) => out.push((i64::from(t.weight), c)),
                    Err(e) => errors.push(e.to_string()),
                }
            }
            out
        };
        let preferred_affinity = weighted(pod_affinity.and_then(|a| {
            a.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        }));
        let preferred_anti_affinity = weighted(pod_anti.and_then(|a| {
            a.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        }));
        Self {
            key: pod_key(&pod),
            priority: pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0),
            host_ports: pod_host_ports(&pod),
            requests,
            nonzero_requests,
            required_affinity,
            required_anti_affinity,
            preferred_affinity,
            preferred_anti_affinity,
            parse_error: (!errors.is_empty()).then(|| errors.join("; ")),
            pod,
        }
    }

    /// The pod's namespace.
    pub fn namespace(&self) -> &str {
        self.pod.metadata.namespace.as_deref().unwrap_or_default()
    }

    /// The pod's uid.
    pub fn uid(&self) -> &str {
        self.pod.metadata.uid.as_deref().unwrap_or_default()
    }

    /// Whether the pod has any pod affinity or anti-affinity term.
    pub fn has_affinity(&self) -> bool {
        !self.required_affinity.is_empty()
            || !self.required_anti_affinity.is_empty()
            || !self.preferred_affinity.is_empty()
            || !self.preferred_anti_affinity.is_empty()
    }

    /// The pod's tolerations.
    pub fn tolerations(&self) -> &[k8s_openapi::api::core::v1::Toleration] {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.tolerations.as_deref())
            .unwrap_or_default()
    }

    /// `spec.schedulerName`, `default-scheduler` when unset.
    pub fn scheduler_name(&self) -> &str {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.scheduler_name.as_deref())
            .filter(|s| !s.is_empty())
            .unwrap_or(super::DEFAULT_SCHEDULER_NAME)
    }
}

/// A node and the pods assigned (or assumed) to it, with running totals.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// The node.
    pub node: Arc<Node>,
    /// The node's name.
    pub name: String,
    /// What the node can allocate.
    pub allocatable: Resources,
    /// The sum of the pods' requests (`pods` is their count).
    pub requested: Resources,
    /// The sum of the pods' requests with scoring defaults.
    pub nonzero_requested: Resources,
    /// The pods on the node.
    pub pods: Vec<Arc<PodInfo>>,
    /// How many of the pods have pod affinity or anti-affinity terms.
    pub pods_with_affinity: usize,
    /// How many of the pods have required anti-affinity terms.
    pub pods_with_required_anti_affinity: usize,
    /// Host ports in use.
    pub used_ports: HostPortSet,
    /// The node's images: normalized name to size in bytes.
    pub images: HashMap<String, i64>,
    /// `spec.unschedulable` (copied here so filters stay on this struct).
    pub unschedulable: bool,
    /// `spec.taints` (copied here so filters stay on this struct).
    pub taints: Vec<Taint>,
    /// Bumped on every change.
    pub generation: u64,
}

impl NodeInfo {
    /// A node with no pods.
    pub fn new(node: Arc<Node>) -> Self {
        let mut info = Self {
            name: node.metadata.name.clone().unwrap_or_default(),
            allocatable: Resources::default(),
            requested: Resources::default(),
            nonzero_requested: Resources::default(),
            pods: Vec::new(),
            pods_with_affinity: 0,
            pods_with_required_anti_affinity: 0,
            used_ports: HostPortSet::new(),
            images: HashMap::new(),
            unschedulable: false,
            taints: Vec::new(),
            generation: 0,
            node: node.clone(),
        };
        info.set_node(node);
        info
    }

    /// Replaces the node object, keeping the pods.
    pub fn set_node(&mut self, node: Arc<Node>) {
        self.allocatable = node_allocatable(&node).unwrap_or_default();
        self.images.clear();
        for image in node
            .status
            .as_ref()
            .and_then(|s| s.images.as_deref())
            .unwrap_or_default()
        {
            for name in image.names.iter().flatten() {
                self.images
                    .insert(normalize_image_name(name), image.size_bytes.unwrap_or(0));
            }
        }
        let spec = node.spec.as_ref();
        self.unschedulable = spec.and_then(|s| s.unschedulable).unwrap_or(false);
        self.taints = spec.and_then(|s| s.taints.clone()).unwrap_or_default();
        self.node = node;
        self.generation += 1;
    }

    /// The node's taints.
    pub fn taints(&self) -> &[Taint] {
        &self.taints
    }

    /// The node's value of a label.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.node
            .metadata
            .labels
            .as_ref()?
            .get(key)
            .map(String::as_str)
    }

    /// Adds a pod's requests and ports.
    pub fn add_pod(&mut self, pod: Arc<PodInfo>) {
        self.requested.add(&pod.requests);
        self.nonzero_requested.add(&pod.nonzero_requests);
        for port in &pod.host_ports {
            self.used_ports.insert(port.clone());
        }
        if pod.has_affinity() {
            self.pods_with_affinity += 1;
        }
        if !pod.required_anti_affinity.is_empty() {
            self.pods_with_required_anti_affinity += 1;
        }
        self.pods.push(pod);
        self.generation += 1;
    }

    /// Removes the pod with this key; false when it is not here.
    pub fn remove_pod(&mut self, key: &str) -> bool {
        let Some(index) = self.pods.iter().position(|p| p.key == key) else {
            return false;
        };
        let pod = self.pods.swap_remove(index);
        subtract(&mut self.requested, &pod.requests);
        subtract(&mut self.nonzero_requested, &pod.nonzero_requests);
        if pod.has_affinity() {
            self.pods_with_affinity -= 1;
        }
        if !pod.required_anti_affinity.is_empty() {
            self.pods_with_required_anti_affinity -= 1;
        }
        if !pod.host_ports.is_empty() {
            self.used_ports = HostPortSet::new();
            for p in &self.pods {
                for port in &p.host_ports {
                    self.used_ports.insert(port.clone());
                }
            }
        }
        self.generation += 1;
        true
    }
}

fn subtract(total: &mut Resources, r: &Resources) {
    total.milli_cpu -= r.milli_cpu;
    total.memory -= r.memory;
    total.ephemeral_storage -= r.ephemeral_storage;
    total.pods -= r.pods;
    for (name, amount) in &r.scalar {
        if let Some(v) = total.scalar.get_mut(name) {
            *v -= amount;
        }
    }
}

/// Upstream's image name normalization: a name without a registry gets
/// `docker.io/` (and `library/` for single-component names), a name without
/// a tag or digest gets `:latest`.
pub fn normalize_image_name(name: &str) -> String {
    let (repo, rest) = match name.find('@') {
        Some(at) => (&name[..at], &name[at..]),
        None => (name, ""),
    };
    let last = repo.rsplit('/').next().unwrap_or(repo);
    let has_tag = last.contains(':');
    let first = repo.split('/').next().unwrap_or(repo);
    let has_registry =
        repo.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let mut out = String::with_capacity(name.len() + 24);
    if !has_registry {
        out.push_str("docker.io/");
        if !repo.contains('/') {
            out.push_str("library/");
        }
    }
    out.push_str(repo);
    if !has_tag && rest.is_empty() {
        out.push_str(":latest");
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bound_pods_info_keeps_its_requests_and_ports_but_not_its_containers() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "default", "labels": {"app": "a"}},
            "spec": {
                "nodeName": "n1",
                "containers": [{
                    "name": "c",
                    "image": "busybox",
                    "command": ["sleep", "3600"],
                    "ports": [{"containerPort": 80, "hostPort": 8080}],
                    "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}}
                }]
            }
        }))
        .expect("a valid pod");
        let full = PodInfo::new(Arc::new(pod.clone()));
        let bound = assigned_pod_info(pod);
        assert_eq!(bound.requests, full.requests);
        assert_eq!(bound.nonzero_requests, full.nonzero_requests);
        assert_eq!(bound.host_ports, full.host_ports);
        assert!(bound.requests.milli_cpu > 0);
        assert_eq!(bound.host_ports.len(), 1);
        let spec = bound.pod.spec.as_ref().expect("the spec stays");
        assert!(spec.containers.is_empty());
        assert_eq!(spec.node_name.as_deref(), Some("n1"));
        assert_eq!(bound.pod.metadata.labels, full.pod.metadata.labels);
    }

    #[test]
    fn image_names_are_normalized_like_upstream() {
        assert_eq!(
            normalize_image_name("nginx"),
            "docker.io/library/nginx:latest"
        );
        assert_eq!(normalize_image_name("me/app:1"), "docker.io/me/app:1");
        assert_eq!(
            normalize_image_name("registry.k8s.io/pause:3.10"),
            "registry.k8s.io/pause:3.10"
        );
        assert_eq!(
            normalize_image_name("localhost:5000/app"),
            "localhost:5000/app:latest"
        );
    }
}
