//! The scheduler's cache of nodes and the pods on them, including *assumed*
//! pods: a pod counts against its node from the moment the scheduler picks
//! the node, before the binding is written. When the binding's watch event
//! arrives the assumption is confirmed; when the binding fails the pod is
//! forgotten; an assumed pod whose binding finished but whose event never
//! came expires after [`ASSUMED_POD_TTL`].
//!
//! Each cycle works on a [`Snapshot`], brought up to date incrementally: only
//! nodes changed since the last update are copied (`Arc` swaps).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;

use super::types::{NodeInfo, PodInfo};

/// How long an assumed pod whose binding finished waits for its watch event.
///
/// Upstream's scheduler used 30 s until kubernetes#106361: on a loaded API
/// server the event can take longer, and expiring the pod too early frees
/// its resources on the node while it still runs there (double booking).
/// It moved to 15 minutes, the figure kept here.
pub const ASSUMED_POD_TTL: Duration = Duration::from_secs(15 * 60);

/// Errors of cache operations.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CacheError {
    /// The pod is already in the cache.
    #[error("pod {0} is already in the cache")]
    AlreadyPresent(String),
    /// The pod is not assumed.
    #[error("pod {0} is not assumed")]
    NotAssumed(String),
}

#[derive(Debug, Clone)]
struct PodState {
    info: Arc<PodInfo>,
    node: String,
    assumed: bool,
    deadline: Option<Instant>,
}

/// Nodes and the pods on them.
#[derive(Debug, Default)]
pub struct Cache {
    nodes: HashMap<String, Arc<NodeInfo>>,
    /// Pods whose node object is not (yet) known.
    orphan_nodes: HashMap<String, Arc<NodeInfo>>,
    pods: HashMap<String, PodState>,
    dirty: HashSet<String>,
    image_nodes: HashMap<String, usize>,
    images_changed: bool,
}

impl Cache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of nodes.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Number of pods (assumed included).
    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }

    /// Whether the pod is assumed and not yet confirmed.
    pub fn is_assumed(&self, key: &str) -> bool {
        self.pods.get(key).is_some_and(|p| p.assumed)
    }

    /// The node a cached pod is on.
    pub fn node_of(&self, key: &str) -> Option<&str> {
        self.pods.get(key).map(|p| p.node.as_str())
    }

    /// Adds or replaces a node.
    pub fn add_or_update_node(&mut self, node: Arc<Node>) {
        let name = node.metadata.name.clone().unwrap_or_default();
        let old_images = self.nodes.get(&name).map(|n| n.images.clone());
        let entry = match self.nodes.remove(&name) {
            Some(mut info) => {
                Arc::make_mut(&mut info).set_node(node);
                info
            }
            None => match self.orphan_nodes.remove(&name) {
                Some(mut info) => {
                    Arc::make_mut(&mut info).set_node(node);
                    info
                }
                None => Arc::new(NodeInfo::new(node)),
            },
        };
        if old_images.as_ref() != Some(&entry.images) {
            for image in old_images.iter().flat_map(|m| m.keys()) {
                if let Some(c) = self.image_nodes.get_mut(image) {
                    *c = c.saturating_sub(1);
                }
            }
            for image in entry.images.keys() {
                *self.image_nodes.entry(image.clone()).or_insert(0) += 1;
            }
            self.images_changed = true;
        }
        self.nodes.insert(name.clone(), entry);
        self.dirty.insert(name);
    }

    /// Removes a node; its pods stay cached until they are deleted.
    pub fn remove_node(&mut self, name: &str) {
        if let Some(info) = self.nodes.remove(name) {
            for image in info.images.keys() {
                if let Some(c) = self.image_nodes.get_mut(image) {
                    *c = c.saturating_sub(1);
                }
            }
            self.images_changed = true;
            if !info.pods.is_empty() {
                self.orphan_nodes.insert(name.to_owned(), info);
            }
            self.dirty.insert(name.to_owned());
        }
    }

    /// Names of all nodes.
    pub fn node_names(&self) -> Vec<String> {
        self.nodes.keys().cloned().collect()
    }

    fn node_mut(&mut self, name: &str) -> &mut NodeInfo {
        self.dirty.insert(name.to_owned());
        if let Some(info) = self.nodes.get_mut(name) {
            return Arc::make_mut(info);
        }
        let info = self.orphan_nodes.entry(name.to_owned()).or_insert_with(|| {
            let node = Node {
                metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                    name: Some(name.to_owned()),
                    ..Default::default()
                },
                ..Node::default()
            };
            Arc::new(NodeInfo::new(Arc::new(node)))
        });
        Arc::make_mut(info)
    }

    fn detach(&mut self, key: &str, node: &str) {
        self.dirty.insert(node.to_owned());
        if let Some(info) = self.nodes.get_mut(node) {
            Arc::make_mut(info).remove_pod(key);
        } else if let Some(info) = self.orphan_nodes.get_mut(node) {
            Arc::make_mut(info).remove_pod(key);
            if info.pods.is_empty() {
                self.orphan_nodes.remove(node);
            }
        }
    }

    /// Counts `pod` against `node` before its binding is written.
    pub fn assume_pod(&mut self, pod: Arc<PodInfo>, node: &str) -> Result<(), CacheError> {
        if self.pods.contains_key(&pod.key) {
            return Err(CacheError::AlreadyPresent(pod.key.clone()));
        }
        self.node_mut(node).add_pod(pod.clone());
        self.pods.insert(
            pod.key.clone(),
            PodState {
                info: pod,
                node: node.to_owned(),
                assumed: true,
                deadline: None,
            },
        );
        Ok(())
    }

    /// The binding of an assumed pod was written: start its expiry clock.
    pub fn finish_binding(&mut self, key: &str, now: Instant) {
        if let Some(p) = self.pods.get_mut(key)
            && p.assumed
        {
            p.deadline = Some(now + ASSUMED_POD_TTL);
        }
    }

    /// The binding of an assumed pod failed: forget the assumption.
    pub fn forget_pod(&mut self, key: &str) -> Result<(), CacheError> {
        match self.pods.get(key) {
            Some(p) if p.assumed => {
                let node = p.node.clone();
                self.pods.remove(key);
                self.detach(key, &node);
                Ok(())
            }
            _ => Err(CacheError::NotAssumed(key.to_owned())),
        }
    }

    /// A pod assigned to a node was seen (added or updated): confirms an
    /// assumption or records the pod.
    pub fn add_or_update_pod(&mut self, pod: Arc<PodInfo>, node: &str) {
        if let Some(existing) = self.pods.get(&pod.key) {
            let old_node = existing.node.clone();
            let same = old_node == node
                && existing.info.requests == pod.requests
                && existing.info.host_ports == pod.host_ports
                && existing.info.pod.metadata.labels == pod.pod.metadata.labels
                && existing.info.pod.metadata.deletion_timestamp
                    == pod.pod.metadata.deletion_timestamp;
            if same && !existing.assumed {
                // Nothing that the scheduler accounts for changed. Keep the
                // cached pod (the node holds the same `Arc`: replacing it
                // here alone would keep two copies) unless its phase or
                // start time moved, which preemption reads.
                let status = |p: &PodInfo| {
                    p.pod
                        .status
                        .as_ref()
                        .map(|s| (s.phase.clone(), s.start_time.clone()))
                };
                if status(&existing.info) == status(&pod) {
                    return;
                }
                let node = self.node_mut(node);
                if let Some(slot) = node.pods.iter_mut().find(|p| p.key == pod.key) {
                    *slot = pod.clone();
                    node.generation += 1;
                }
                if let Some(p) = self.pods.get_mut(&pod.key) {
                    p.info = pod;
                }
                return;
            }
            self.detach(&pod.key, &old_node);
        }
        self.node_mut(node).add_pod(pod.clone());
        self.pods.insert(
            pod.key.clone(),
            PodState {
                info: pod,
                node: node.to_owned(),
                assumed: false,
                deadline: None,
            },
        );
    }

    /// A pod was deleted (or became terminal): it no longer holds resources.
    pub fn remove_pod(&mut self, key: &str) -> Option<Arc<PodInfo>> {
        let p = self.pods.remove(key)?;
        self.detach(key, &p.node);
        Some(p.info)
    }

    /// Expires assumed pods whose binding finished before `now - TTL`;
    /// returns their keys.
    pub fn cleanup_expired(&mut self, now: Instant) -> Vec<String> {
        let expired: Vec<String> = self
            .pods
            .iter()
            .filter(|(_, p)| p.assumed && p.deadline.is_some_and(|d| d <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for key in &expired {
            tracing::warn!(pod = %key, "assumed pod expired: its binding was never observed");
            self.remove_pod(key);
        }
        expired
    }

    /// Brings `snapshot` up to date with the nodes changed since its last update.
    pub fn update_snapshot(&mut self, snapshot: &mut Snapshot) {
        for name in self.dirty.drain() {
            match self.nodes.get(&name) {
                Some(info) => {
                    snapshot.count(info, 1);
                    match snapshot.index.get(&name) {
                        Some(&i) => {
                            let old = std::mem::replace(&mut snapshot.nodes[i], info.clone());
                            snapshot.count(&old, -1);
                            snapshot.record(Some(old), Some(info.clone()));
                        }
                        None => {
                            snapshot.index.insert(name, snapshot.nodes.len());
                            snapshot.nodes.push(info.clone());
                            snapshot.record(None, Some(info.clone()));
                        }
                    }
                }
                None => {
                    if let Some(i) = snapshot.index.remove(&name) {
                        let old = snapshot.nodes.swap_remove(i);
                        snapshot.count(&old, -1);
                        snapshot.record(Some(old), None);
                        if let Some(moved) = snapshot.nodes.get(i) {
                            snapshot.index.insert(moved.name.clone(), i);
                        }
                    }
                }
            }
        }
        if self.images_changed {
            self.image_nodes.retain(|_, c| *c > 0);
            snapshot.image_nodes = Arc::new(self.image_nodes.clone());
            self.images_changed = false;
        }
    }
}

/// A consistent view of the nodes for one scheduling cycle.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    nodes: Vec<Arc<NodeInfo>>,
    index: HashMap<String, usize>,
    image_nodes: Arc<HashMap<String, usize>>,
    with_affinity: i64,
    with_required_anti_affinity: i64,
    /// Bumped per node change; `log` holds the recent changes (old, new).
    version: u64,
    log: VecDeque<NodeChange>,
}

/// A node as it was and as it is after one snapshot change.
pub type NodeChange = (Option<Arc<NodeInfo>>, Option<Arc<NodeInfo>>);

/// Node changes kept for incremental consumers (plugins memoizing counts).
const MAX_LOG: usize = 8192;

impl Snapshot {
    /// An empty snapshot.
    pub fn new() -> Self {
        Self::default()
    }

    /// A snapshot of exactly these nodes (tests and what-if runs).
    pub fn from_nodes(nodes: Vec<NodeInfo>) -> Self {
        let mut cache = Cache::new();
        let mut snapshot = Self::new();
        for n in nodes {
            let name = n.name.clone();
            for image in n.images.keys() {
                *cache.image_nodes.entry(image.clone()).or_insert(0) += 1;
            }
            cache.images_changed = true;
            cache.nodes.insert(name.clone(), Arc::new(n));
            cache.dirty.insert(name);
        }
        cache.update_snapshot(&mut snapshot);
        snapshot.nodes.sort_by(|a, b| a.name.cmp(&b.name));
        snapshot.index = snapshot
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.clone(), i))
            .collect();
        snapshot
    }

    fn record(&mut self, old: Option<Arc<NodeInfo>>, new: Option<Arc<NodeInfo>>) {
        self.version += 1;
        self.log.push_back((old, new));
        if self.log.len() > MAX_LOG {
            self.log.pop_front();
        }
    }

    /// The number of node changes applied so far.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The node changes after `version` (as returned by [`Snapshot::version`]
    /// earlier), oldest first; `None` when they are no longer all kept.
    pub fn changes_since(&self, version: u64) -> Option<impl Iterator<Item = &NodeChange>> {
        let behind = usize::try_from(self.version.checked_sub(version)?).ok()?;
        if behind > self.log.len() {
            return None;
        }
        Some(self.log.iter().skip(self.log.len() - behind))
    }

    fn count(&mut self, node: &NodeInfo, delta: i64) {
        if node.pods_with_affinity > 0 {
            self.with_affinity += delta;
        }
        if node.pods_with_required_anti_affinity > 0 {
            self.with_required_anti_affinity += delta;
        }
    }

    /// How many nodes have pods with pod affinity or anti-affinity terms.
    pub fn nodes_with_affinity(&self) -> usize {
        self.with_affinity.max(0) as usize
    }

    /// How many nodes have pods with required anti-affinity terms.
    pub fn nodes_with_required_anti_affinity(&self) -> usize {
        self.with_required_anti_affinity.max(0) as usize
    }

    /// All nodes.
    pub fn nodes(&self) -> &[Arc<NodeInfo>] {
        &self.nodes
    }

    /// A node by name.
    pub fn get(&self, name: &str) -> Option<&Arc<NodeInfo>> {
        self.index.get(name).map(|&i| &self.nodes[i])
    }

    /// On how many nodes each (normalized) image is present.
    pub fn image_nodes(&self) -> &HashMap<String, usize> {
        &self.image_nodes
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Pod;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn node(name: &str) -> Arc<Node> {
        Arc::new(Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            ..Node::default()
        })
    }

    fn pod(name: &str) -> Arc<PodInfo> {
        Arc::new(PodInfo::new(Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                ..ObjectMeta::default()
            },
            ..Pod::default()
        })))
    }

    #[test]
    fn assumed_pods_count_until_forgotten_or_confirmed() {
        let mut cache = Cache::new();
        cache.add_or_update_node(node("n1"));
        let mut snap = Snapshot::new();
        cache.assume_pod(pod("a"), "n1").unwrap_or_default();
        cache.update_snapshot(&mut snap);
        assert_eq!(snap.get("n1").map(|n| n.pods.len()), Some(1));
        assert!(cache.is_assumed("ns/a"));
        cache.add_or_update_pod(pod("a"), "n1");
        assert!(!cache.is_assumed("ns/a"));
        assert_eq!(
            cache.forget_pod("ns/a"),
            Err(CacheError::NotAssumed("ns/a".into()))
        );
        cache.assume_pod(pod("b"), "n1").unwrap_or_default();
        assert_eq!(cache.forget_pod("ns/b"), Ok(()));
        cache.update_snapshot(&mut snap);
        assert_eq!(snap.get("n1").map(|n| n.pods.len()), Some(1));
    }

    #[test]
    fn assumed_pods_expire_after_their_binding_finished() {
        let mut cache = Cache::new();
        cache.add_or_update_node(node("n1"));
        cache.assume_pod(pod("a"), "n1").unwrap_or_default();
        let now = Instant::now();
        assert!(cache.cleanup_expired(now + ASSUMED_POD_TTL * 2).is_empty());
        cache.finish_binding("ns/a", now);
        assert_eq!(
            cache.cleanup_expired(now + ASSUMED_POD_TTL),
            vec!["ns/a".to_owned()]
        );
        assert_eq!(cache.pod_count(), 0);
    }

    #[test]
    fn snapshot_follows_node_removal() {
        let mut cache = Cache::new();
        let mut snap = Snapshot::new();
        for n in ["a", "b", "c"] {
            cache.add_or_update_node(node(n));
        }
        cache.update_snapshot(&mut snap);
        cache.remove_node("a");
        cache.update_snapshot(&mut snap);
        let mut names: Vec<&str> = snap.nodes().iter().map(|n| n.name.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["b", "c"]);
        assert!(snap.get("c").is_some_and(|n| n.name == "c"));
    }
}
