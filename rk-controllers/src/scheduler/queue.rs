//! The scheduling queue, upstream's three sub-queues:
//!
//! - **active**: pods ready to be tried, a heap ordered by the profile's
//!   QueueSort (priority, then the time the pod entered the queue);
//! - **backoff**: pods that failed recently and wait out their backoff
//!   (1 s doubling per attempt, at most 10 s) before returning to active;
//! - **unschedulable**: pods no node could take. They move back (to active,
//!   or to backoff if still backing off) when a cluster event that could
//!   make them schedulable happens ([`ClusterEvent`]), as upstream's queueing
//!   hints decide, or after [`UNSCHEDULABLE_TIMEOUT`] in any case.
//!
//! Pods rejected by PreEnqueue (scheduling gates) wait in the unschedulable
//! map, flagged `gated`, until an update lets them in.
//!
//! A pod popped for scheduling is *in flight*; if a move event arrives while
//! it is in flight and it then fails, it goes to backoff rather than to the
//! unschedulable map (upstream's `moveRequestCycle`), so no event is lost.

use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::framework::Framework;
use super::types::PodInfo;

/// The first backoff after a failed attempt.
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// The longest backoff.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How long a pod may stay unschedulable before it is retried anyway.
pub const UNSCHEDULABLE_TIMEOUT: Duration = Duration::from_secs(300);

/// A pod in the queue with its scheduling history.
#[derive(Debug, Clone)]
pub struct QueuedPodInfo {
    /// The pod.
    pub info: Arc<PodInfo>,
    /// When the pod was (last) added to the queue.
    pub timestamp: Instant,
    /// When the pod first entered the queue.
    pub initial_attempt: Instant,
    /// Scheduling attempts so far.
    pub attempts: u32,
    /// When the last attempt failed.
    pub last_failure: Option<Instant>,
    /// Plugins that rejected the pod in its last attempt.
    pub rejected_by: HashSet<&'static str>,
    /// Whether PreEnqueue keeps the pod out of the active queue.
    pub gated: bool,
}

impl QueuedPodInfo {
    /// A new pod entering the queue now.
    pub fn new(info: Arc<PodInfo>, now: Instant) -> Self {
        Self {
            info,
            timestamp: now,
            initial_attempt: now,
            attempts: 0,
            last_failure: None,
            rejected_by: HashSet::new(),
            gated: false,
        }
    }

    /// The backoff after the last failure (1 s, 2 s, 4 s, ..., at most 10 s).
    pub fn backoff(&self) -> Duration {
        let exp = self.attempts.saturating_sub(1).min(16);
        INITIAL_BACKOFF.saturating_mul(1u32 << exp).min(MAX_BACKOFF)
    }

    /// When the backoff ends (`None`: not backing off).
    pub fn backoff_expiry(&self) -> Option<Instant> {
        self.last_failure.map(|t| t + self.backoff())
    }
}

/// A cluster change that may make unschedulable pods schedulable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClusterEvent {
    /// A node was added.
    NodeAdd,
    /// A node changed (labels, taints, allocatable, unschedulable, ...).
    NodeUpdate,
    /// A pod was assigned to a node (frees nothing, but satisfies affinity).
    AssignedPodAdd,
    /// An assigned pod changed.
    AssignedPodUpdate,
    /// An assigned pod was deleted (frees resources and ports).
    AssignedPodDelete,
    /// Periodic flush or an explicit request.
    Forced,
}

impl ClusterEvent {
    /// Whether this event may help a pod rejected by `plugin` (upstream's
    /// queueing hints, coarsely: node and deletion events help everyone, new
    /// assigned pods only help affinity and spreading).
    pub fn may_help(self, plugin: &str) -> bool {
        match self {
            Self::NodeAdd | Self::NodeUpdate | Self::AssignedPodDelete | Self::Forced => true,
            Self::AssignedPodAdd | Self::AssignedPodUpdate => {
                matches!(plugin, "InterPodAffinity" | "PodTopologySpread")
            }
        }
    }
}

/// Where a pod is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Location {
    Active,
    Backoff,
    Unschedulable,
}

struct Entry {
    qpi: QueuedPodInfo,
    location: Location,
    /// The generation of the entry in the active or backoff heap.
    seq: u64,
}

/// Lengths of the sub-queues.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PendingCounts {
    /// Active pods.
    pub active: usize,
    /// Pods backing off.
    pub backoff: usize,
    /// Unschedulable (and gated) pods.
    pub unschedulable: usize,
    /// Gated pods (counted in `unschedulable` too).
    pub gated: usize,
}

struct ActiveItem {
    qpi_key: String,
    seq: u64,
    priority: i32,
    timestamp: Instant,
}

impl PartialEq for ActiveItem {
    fn eq(&self, other: &Self) -> bool {
        self.seq == other.seq
    }
}
impl Eq for ActiveItem {}
impl PartialOrd for ActiveItem {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for ActiveItem {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // BinaryHeap pops the greatest: higher priority, then earlier time.
        self.priority
            .cmp(&other.priority)
            .then_with(|| other.timestamp.cmp(&self.timestamp))
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

struct BackoffItem {
    key: String,
    seq: u64,
    expiry: Instant,
}
impl PartialEq for BackoffItem {
    fn eq(&self, other: &Self) -> bool {
        self.seq == other.seq
    }
}
impl Eq for BackoffItem {}
impl PartialOrd for BackoffItem {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for BackoffItem {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other
            .expiry
            .cmp(&self.expiry)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

/// The scheduling queue. Not synchronized: the scheduler wraps it in a mutex.
///
/// The active heap orders by priority then queue time: the order of
/// PrioritySort, the QueueSort plugin upstream ships (and, as upstream
/// requires, one order for all profiles). Other QueueSort plugins can be
/// configured and are reported by [`Framework::describe`], but the heap
/// keeps this order.
pub struct SchedulingQueue {
    entries: HashMap<String, Entry>,
    active: BinaryHeap<ActiveItem>,
    backoff: BinaryHeap<BackoffItem>,
    in_flight: HashMap<String, Option<Arc<PodInfo>>>,
    /// Keys of the pods in the unschedulable map that are not gated.
    unschedulable: HashSet<String>,
    next_seq: u64,
    scheduling_cycle: u64,
    /// The scheduling cycle during which each kind of event last happened.
    event_cycles: HashMap<ClusterEvent, u64>,
}

impl Default for SchedulingQueue {
    fn default() -> Self {
        Self::new()
    }
}

impl SchedulingQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self {
            entries: HashMap::new(),
            active: BinaryHeap::new(),
            backoff: BinaryHeap::new(),
            in_flight: HashMap::new(),
            unschedulable: HashSet::new(),
            next_seq: 0,
            scheduling_cycle: 0,
            event_cycles: HashMap::new(),
        }
    }

    fn take(&mut self, key: &str) -> Option<Entry> {
        self.unschedulable.remove(key);
        self.entries.remove(key)
    }

    fn seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    fn push_active(&mut self, key: String, mut qpi: QueuedPodInfo) {
        let seq = self.seq();
        qpi.gated = false;
        self.active.push(ActiveItem {
            qpi_key: key.clone(),
            seq,
            priority: qpi.info.priority,
            timestamp: qpi.timestamp,
        });
        self.entries.insert(
            key,
            Entry {
                qpi,
                location: Location::Active,
                seq,
            },
        );
    }

    fn push_backoff(&mut self, key: String, qpi: QueuedPodInfo, expiry: Instant) {
        let seq = self.seq();
        self.backoff.push(BackoffItem {
            key: key.clone(),
            seq,
            expiry,
        });
        self.entries.insert(
            key,
            Entry {
                qpi,
                location: Location::Backoff,
                seq,
            },
        );
    }

    fn push_unschedulable(&mut self, key: String, qpi: QueuedPodInfo) {
        if !qpi.gated {
            self.unschedulable.insert(key.clone());
        }
        self.entries.insert(
            key,
            Entry {
                qpi,
                location: Location::Unschedulable,
                seq: 0,
            },
        );
    }

    /// Active if the backoff is over, backoff otherwise.
    fn requeue(&mut self, key: String, qpi: QueuedPodInfo, now: Instant) {
        match qpi.backoff_expiry() {
            Some(expiry) if expiry > now => self.push_backoff(key, qpi, expiry),
            _ => self.push_active(key, qpi),
        }
    }

    /// Adds a new pending pod (or updates it if already queued).
    pub fn add(&mut self, framework: &Framework, info: Arc<PodInfo>, now: Instant) {
        let key = info.key.clone();
        if let Some(slot) = self.in_flight.get_mut(&key) {
            *slot = Some(info);
            return;
        }
        if self.entries.contains_key(&key) {
            self.update(framework, info, now);
            return;
        }
        let mut qpi = QueuedPodInfo::new(info, now);
        if !framework.run_pre_enqueue(&qpi.info).is_success() {
            qpi.gated = true;
            self.push_unschedulable(key, qpi);
            return;
        }
        self.push_active(key, qpi);
    }

    /// A pending pod changed. An unschedulable (or gated) pod whose spec,
    /// labels or annotations changed is retried.
    pub fn update(&mut self, framework: &Framework, info: Arc<PodInfo>, now: Instant) {
        let key = info.key.clone();
        if let Some(slot) = self.in_flight.get_mut(&key) {
            *slot = Some(info);
            return;
        }
        let Some(entry) = self.entries.get_mut(&key) else {
            self.add(framework, info, now);
            return;
        };
        let old = entry.qpi.info.pod.clone();
        let meaningful = old.spec != info.pod.spec
            || old.metadata.labels != info.pod.metadata.labels
            || old.metadata.annotations != info.pod.metadata.annotations;
        entry.qpi.info = info;
        if entry.location != Location::Unschedulable || !meaningful {
            return;
        }
        let Some(entry) = self.take(&key) else {
            return;
        };
        let mut qpi = entry.qpi;
        if !framework.run_pre_enqueue(&qpi.info).is_success() {
            qpi.gated = true;
            self.push_unschedulable(key, qpi);
            return;
        }
        if qpi.gated {
            qpi.gated = false;
            self.push_active(key, qpi);
        } else {
            self.requeue(key, qpi, now);
        }
    }

    /// A pod was deleted or got a node: forget it.
    pub fn delete(&mut self, key: &str) {
        self.take(key);
        self.in_flight.remove(key);
    }

    /// Whether the pod is queued (in any sub-queue) or in flight.
    pub fn contains(&self, key: &str) -> bool {
        self.entries.contains_key(key) || self.in_flight.contains_key(key)
    }

    /// Takes the next active pod, if any, marking it in flight.
    pub fn pop(&mut self) -> Option<QueuedPodInfo> {
        while let Some(item) = self.active.pop() {
            let live = self
                .entries
                .get(&item.qpi_key)
                .is_some_and(|e| e.location == Location::Active && e.seq == item.seq);
            if !live {
                continue;
            }
            let entry = self.take(&item.qpi_key)?;
            let mut qpi = entry.qpi;
            qpi.attempts += 1;
            self.scheduling_cycle += 1;
            self.in_flight.insert(item.qpi_key, None);
            return Some(qpi);
        }
        None
    }

    /// The number of the current scheduling cycle.
    pub fn scheduling_cycle(&self) -> u64 {
        self.scheduling_cycle
    }

    /// The pod finished its cycle successfully (it is assumed and binding).
    pub fn done(&mut self, key: &str) {
        self.in_flight.remove(key);
    }

    /// The pod failed with an error: retry after backoff. Does nothing if the
    /// pod was deleted meanwhile.
    pub fn add_backoff(&mut self, mut qpi: QueuedPodInfo, now: Instant) {
        let key = qpi.info.key.clone();
        let Some(updated) = self.in_flight.remove(&key) else {
            return;
        };
        if let Some(info) = updated {
            qpi.info = info;
        }
        qpi.last_failure = Some(now);
        qpi.timestamp = now;
        let expiry = now + qpi.backoff();
        self.push_backoff(key, qpi, expiry);
    }

    /// No node fits the pod: park it until a cluster event may help (or in
    /// backoff, if such an event already came during its cycle). Does
    /// nothing if the pod was deleted meanwhile.
    pub fn add_unschedulable(&mut self, mut qpi: QueuedPodInfo, cycle: u64, now: Instant) {
        let key = qpi.info.key.clone();
        let Some(updated) = self.in_flight.remove(&key) else {
            return;
        };
        let changed = updated.is_some();
        if let Some(info) = updated {
            qpi.info = info;
        }
        qpi.last_failure = Some(now);
        qpi.timestamp = now;
        let missed_event = self.event_cycles.iter().any(|(event, at)| {
            *at >= cycle
                && (qpi.rejected_by.is_empty() || qpi.rejected_by.iter().any(|p| event.may_help(p)))
        });
        if missed_event || changed {
            let expiry = now + qpi.backoff();
            self.push_backoff(key, qpi, expiry);
        } else {
            self.push_unschedulable(key, qpi);
        }
    }

    /// A cluster event happened: move the unschedulable pods it may help.
    /// Returns how many moved.
    pub fn move_all(&mut self, event: ClusterEvent, now: Instant) -> usize {
        self.event_cycles.insert(event, self.scheduling_cycle);
        if self.unschedulable.is_empty() {
            return 0;
        }
        let keys: Vec<String> = self
            .unschedulable
            .iter()
            .filter(|k| {
                self.entries.get(*k).is_some_and(|e| {
                    e.qpi.rejected_by.is_empty()
                        || e.qpi.rejected_by.iter().any(|p| event.may_help(p))
                })
            })
            .cloned()
            .collect();
        for key in &keys {
            if let Some(entry) = self.take(key) {
                self.requeue(key.clone(), entry.qpi, now);
            }
        }
        keys.len()
    }

    /// Moves pods whose backoff is over to active, and pods unschedulable for
    /// longer than [`UNSCHEDULABLE_TIMEOUT`] back to the queue.
    pub fn flush(&mut self, now: Instant) {
        while let Some(top) = self.backoff.peek() {
            if top.expiry > now {
                break;
            }
            let Some(item) = self.backoff.pop() else {
                break;
            };
            let live = self
                .entries
                .get(&item.key)
                .is_some_and(|e| e.location == Location::Backoff && e.seq == item.seq);
            if live && let Some(entry) = self.take(&item.key) {
                self.push_active(item.key, entry.qpi);
            }
        }
        let stale: Vec<String> = self
            .unschedulable
            .iter()
            .filter(|k| {
                self.entries.get(*k).is_some_and(|e| {
                    now.saturating_duration_since(e.qpi.timestamp) >= UNSCHEDULABLE_TIMEOUT
                })
            })
            .cloned()
            .collect();
        for key in stale {
            if let Some(entry) = self.take(&key) {
                self.requeue(key, entry.qpi, now);
            }
        }
    }

    /// When the earliest backoff ends.
    pub fn next_backoff_expiry(&self) -> Option<Instant> {
        self.backoff.peek().map(|b| b.expiry)
    }

    /// Whether a pod is ready to pop.
    pub fn has_active(&self) -> bool {
        self.entries
            .values()
            .any(|e| e.location == Location::Active)
    }

    /// The sizes of the sub-queues.
    pub fn pending(&self) -> PendingCounts {
        let mut c = PendingCounts::default();
        for e in self.entries.values() {
            match e.location {
                Location::Active => c.active += 1,
                Location::Backoff => c.backoff += 1,
                Location::Unschedulable => {
                    c.unschedulable += 1;
                    if e.qpi.gated {
                        c.gated += 1;
                    }
                }
            }
        }
        c
    }

    /// Pods nominated to a node, for preemption bookkeeping: (key, node).
    pub fn nominated(&self) -> Vec<(Arc<PodInfo>, String)> {
        self.entries
            .values()
            .filter_map(|e| {
                let node = e
                    .qpi
                    .info
                    .pod
                    .status
                    .as_ref()?
                    .nominated_node_name
                    .clone()
                    .filter(|n| !n.is_empty())?;
                Some((e.qpi.info.clone(), node))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{Pod, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn info(name: &str, priority: i32) -> Arc<PodInfo> {
        Arc::new(PodInfo::new(Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                priority: Some(priority),
                ..PodSpec::default()
            }),
            ..Pod::default()
        })))
    }

    fn fw() -> Framework {
        Framework::new("default-scheduler")
    }

    #[test]
    fn pops_by_priority_then_arrival() {
        let mut q = SchedulingQueue::new();
        let t = Instant::now();
        q.add(&fw(), info("low", 0), t);
        q.add(&fw(), info("high", 10), t + Duration::from_millis(1));
        q.add(&fw(), info("low2", 0), t + Duration::from_millis(2));
        let order: Vec<String> =
            std::iter::from_fn(|| q.pop().map(|p| p.info.key.clone())).collect();
        assert_eq!(order, ["ns/high", "ns/low", "ns/low2"]);
    }

    #[test]
    fn backoff_doubles_from_one_to_ten_seconds() {
        let mut qpi = QueuedPodInfo::new(info("a", 0), Instant::now());
        let mut seen = Vec::new();
        for attempts in 1..=6 {
            qpi.attempts = attempts;
            seen.push(qpi.backoff().as_secs());
        }
        assert_eq!(seen, [1, 2, 4, 8, 10, 10]);
    }

    #[test]
    fn unschedulable_pods_move_on_node_add_and_respect_backoff() {
        let mut q = SchedulingQueue::new();
        let t = Instant::now();
        q.add(&fw(), info("a", 0), t);
        let Some(mut p) = q.pop() else {
            panic!("empty")
        };
        let cycle = q.scheduling_cycle();
        p.rejected_by.insert("NodeResourcesFit");
        q.add_unschedulable(p, cycle, t);
        assert_eq!(q.pending().unschedulable, 1);
        // a new assigned pod does not help a resource-rejected pod
        assert_eq!(q.move_all(ClusterEvent::AssignedPodAdd, t), 0);
        assert_eq!(q.move_all(ClusterEvent::NodeAdd, t), 1);
        // still within its 1 s backoff
        assert!(q.pop().is_none());
        q.flush(t + Duration::from_secs(1));
        assert_eq!(q.pop().map(|p| p.attempts), Some(2));
    }

    #[test]
    fn an_event_during_the_cycle_sends_the_failed_pod_to_backoff() {
        let mut q = SchedulingQueue::new();
        let t = Instant::now();
        q.add(&fw(), info("a", 0), t);
        let Some(p) = q.pop() else { panic!("empty") };
        let cycle = q.scheduling_cycle();
        q.move_all(ClusterEvent::NodeAdd, t);
        q.add_unschedulable(p, cycle, t);
        let c = q.pending();
        assert_eq!((c.backoff, c.unschedulable), (1, 0));
    }

    #[test]
    fn a_pod_deleted_while_in_flight_is_not_requeued() {
        let mut q = SchedulingQueue::new();
        let t = Instant::now();
        q.add(&fw(), info("a", 0), t);
        let Some(p) = q.pop() else { panic!("empty") };
        q.delete("ns/a");
        q.add_backoff(p, t);
        assert_eq!(q.pending(), PendingCounts::default());
    }
}
