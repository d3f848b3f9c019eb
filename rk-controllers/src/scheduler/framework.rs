//! The plugin framework: upstream's extension points as Rust traits, and a
//! [`Framework`] (one profile) that runs the plugins enabled at each point.
//!
//! A plugin is a type implementing [`Plugin`] plus the traits of the points
//! it serves; [`Plugin`]'s `as_*` methods tell the framework which those are.
//! Extension points, in the order a pod meets them:
//!
//! - [`PreEnqueuePlugin`]: may the pod enter the active queue at all
//!   (scheduling gates);
//! - [`QueueSortPlugin`]: the order of the active queue;
//! - [`PreFilterPlugin`] (with [`PreFilterPlugin::add_pod`] and
//!   [`PreFilterPlugin::remove_pod`], upstream's PreFilterExtensions, used by
//!   preemption's what-if runs), then [`FilterPlugin`] per node;
//! - [`PostFilterPlugin`] when no node fits (preemption);
//! - [`PreScorePlugin`], [`ScorePlugin`] per feasible node and its
//!   [`ScorePlugin::normalize`] (NormalizeScore);
//! - [`ReservePlugin`] (and unreserve on failure), [`PermitPlugin`];
//! - on the binding task: [`PreBindPlugin`], [`BindPlugin`], [`PostBindPlugin`].

use std::any::Any;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use futures::future::BoxFuture;

use super::cache::Snapshot;
use super::metrics::Metrics;
use super::queue::QueuedPodInfo;
use super::types::{NodeInfo, PodInfo};

/// The highest score a Score plugin may give after normalization.
pub const MAX_NODE_SCORE: i64 = 100;

/// The outcome class of a plugin call (upstream `framework.Code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// The plugin ran and the pod may proceed.
    Success,
    /// An internal error: the pod is retried with backoff.
    Error,
    /// The pod does not fit now; preemption may help.
    Unschedulable,
    /// The pod does not fit and preemption cannot help on this node.
    UnschedulableAndUnresolvable,
    /// Permit: wait before binding.
    Wait,
    /// PreFilter/PreScore: skip this plugin's Filter/Score for the cycle.
    Skip,
    /// PreEnqueue: the pod stays out of the active queue.
    Pending,
}

/// The result of a plugin call: a code and the reasons shown to users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The code.
    pub code: Code,
    /// Reasons, each counted separately in the FailedScheduling message.
    pub reasons: Vec<String>,
    /// The plugin that returned it (set by the framework).
    pub plugin: &'static str,
}

impl Status {
    /// Success, with no reasons.
    pub const fn success() -> Self {
        Self {
            code: Code::Success,
            reasons: Vec::new(),
            plugin: "",
        }
    }

    /// A status with one reason.
    pub fn new(code: Code, reason: impl Into<String>) -> Self {
        Self {
            code,
            reasons: vec![reason.into()],
            plugin: "",
        }
    }

    /// `Unschedulable` with one reason.
    pub fn unschedulable(reason: impl Into<String>) -> Self {
        Self::new(Code::Unschedulable, reason)
    }

    /// `UnschedulableAndUnresolvable` with one reason.
    pub fn unresolvable(reason: impl Into<String>) -> Self {
        Self::new(Code::UnschedulableAndUnresolvable, reason)
    }

    /// `Error` with one reason.
    pub fn error(reason: impl Into<String>) -> Self {
        Self::new(Code::Error, reason)
    }

    /// Whether the code is `Success`.
    pub fn is_success(&self) -> bool {
        self.code == Code::Success
    }

    /// Whether the code is one of the two unschedulable codes.
    pub fn is_rejected(&self) -> bool {
        matches!(
            self.code,
            Code::Unschedulable | Code::UnschedulableAndUnresolvable
        )
    }

    /// The reasons joined with `, `.
    pub fn message(&self) -> String {
        self.reasons.join(", ")
    }

    fn tagged(mut self, plugin: &'static str) -> Self {
        self.plugin = plugin;
        self
    }
}

/// Per-cycle data plugins pass from one extension point to the next (from
/// PreFilter to Filter, PreScore to Score). Cloned for preemption's
/// what-if runs, so values are shared (`Arc`) and replaced, not mutated.
#[derive(Clone, Default)]
pub struct CycleState {
    data: HashMap<&'static str, Arc<dyn Any + Send + Sync>>,
    /// Plugins whose Filter is skipped this cycle.
    pub skip_filter: HashSet<&'static str>,
    /// Plugins whose Score is skipped this cycle.
    pub skip_score: HashSet<&'static str>,
    /// `skip_filter` as bits over the profile's Filter plugins (fast path).
    filter_skip_mask: u64,
}

impl CycleState {
    /// Stores a value under a key (usually the plugin's name).
    pub fn write<T: Any + Send + Sync>(&mut self, key: &'static str, value: T) {
        self.data.insert(key, Arc::new(value));
    }

    /// Reads a value written earlier in the cycle.
    pub fn read<T: Any + Send + Sync>(&self, key: &'static str) -> Option<&T> {
        self.data.get(key)?.downcast_ref()
    }
}

/// A node's score from one plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeScore {
    /// Index of the node in the list being scored.
    pub index: usize,
    /// The score.
    pub score: i64,
}

/// The PodDisruptionBudgets the scheduler knows, by `namespace/name`.
pub type PdbLister =
    Arc<std::sync::RwLock<HashMap<String, Arc<k8s_openapi::api::policy::v1::PodDisruptionBudget>>>>;

/// What plugins may use beyond the pod and the snapshot.
#[derive(Clone, Default)]
pub struct Handle {
    /// The API client (`None` in unit tests without a server).
    pub client: Option<kube::Client>,
    /// PodDisruptionBudgets, kept up to date by the scheduler.
    pub pdbs: PdbLister,
}

impl Handle {
    /// A handle with this client and no PodDisruptionBudgets yet.
    pub fn new(client: Option<kube::Client>) -> Self {
        Self {
            client,
            pdbs: PdbLister::default(),
        }
    }
}

/// Every plugin: a name and the extension points it implements.
pub trait Plugin: Send + Sync {
    /// The plugin's name, as configuration files spell it.
    fn name(&self) -> &'static str;
    /// This plugin as a PreEnqueue plugin.
    fn as_pre_enqueue(&self) -> Option<&dyn PreEnqueuePlugin> {
        None
    }
    /// This plugin as a QueueSort plugin.
    fn as_queue_sort(&self) -> Option<&dyn QueueSortPlugin> {
        None
    }
    /// This plugin as a PreFilter plugin.
    fn as_pre_filter(&self) -> Option<&dyn PreFilterPlugin> {
        None
    }
    /// This plugin as a Filter plugin.
    fn as_filter(&self) -> Option<&dyn FilterPlugin> {
        None
    }
    /// This plugin as a PostFilter plugin.
    fn as_post_filter(&self) -> Option<&dyn PostFilterPlugin> {
        None
    }
    /// This plugin as a PreScore plugin.
    fn as_pre_score(&self) -> Option<&dyn PreScorePlugin> {
        None
    }
    /// This plugin as a Score plugin.
    fn as_score(&self) -> Option<&dyn ScorePlugin> {
        None
    }
    /// This plugin as a Reserve plugin.
    fn as_reserve(&self) -> Option<&dyn ReservePlugin> {
        None
    }
    /// This plugin as a Permit plugin.
    fn as_permit(&self) -> Option<&dyn PermitPlugin> {
        None
    }
    /// This plugin as a PreBind plugin.
    fn as_pre_bind(&self) -> Option<&dyn PreBindPlugin> {
        None
    }
    /// This plugin as a Bind plugin.
    fn as_bind(&self) -> Option<&dyn BindPlugin> {
        None
    }
    /// This plugin as a PostBind plugin.
    fn as_post_bind(&self) -> Option<&dyn PostBindPlugin> {
        None
    }
}

/// PreEnqueue: checked before a pod enters the active queue; anything but
/// success keeps it waiting until the pod changes.
pub trait PreEnqueuePlugin {
    /// Whether the pod may be queued.
    fn pre_enqueue(&self, pod: &PodInfo) -> Status;
}

/// QueueSort: the order of the active queue (one per profile).
pub trait QueueSortPlugin {
    /// Whether `a` is scheduled before `b`.
    fn less(&self, a: &QueuedPodInfo, b: &QueuedPodInfo) -> bool;
}

/// PreFilter: runs once per cycle before any Filter.
pub trait PreFilterPlugin {
    /// Prepares cycle state; `Ok(Some(names))` restricts the cycle to those
    /// nodes; a status with [`Code::Skip`] skips this plugin's Filter.
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
    ) -> Result<Option<HashSet<String>>, Status>;

    /// Updates the cycle state as if `added` were on `node` (preemption).
    fn add_pod(&self, _state: &mut CycleState, _pod: &PodInfo, _added: &PodInfo, _node: &NodeInfo) {
    }

    /// Updates the cycle state as if `removed` left `node` (preemption).
    fn remove_pod(
        &self,
        _state: &mut CycleState,
        _pod: &PodInfo,
        _removed: &PodInfo,
        _node: &NodeInfo,
    ) {
    }
}

/// Filter: whether the pod may run on one node.
pub trait FilterPlugin {
    /// Success, or why the node does not fit.
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status;
}

/// What a PostFilter plugin proposes (upstream `PostFilterResult` plus the
/// victims, which the scheduler deletes asynchronously).
#[derive(Debug, Clone, Default)]
pub struct PostFilterResult {
    /// The node to nominate for the pod.
    pub nominated_node: Option<String>,
    /// Pods to delete to make room.
    pub victims: Vec<Arc<PodInfo>>,
    /// Lower-priority pods nominated to the same node whose nomination is cleared.
    pub clear_nominations: Vec<Arc<PodInfo>>,
}

/// The per-node filter outcome of a failed cycle.
pub type NodeStatuses = HashMap<String, Status>;

/// PostFilter: runs when no node fits (preemption).
pub trait PostFilterPlugin {
    /// Proposes a remedy, with a message for the FailedScheduling event.
    fn post_filter(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
        statuses: &NodeStatuses,
        framework: &Framework,
    ) -> (PostFilterResult, Status);
}

/// PreScore: runs once before Score, with the feasible nodes.
pub trait PreScorePlugin {
    /// Prepares cycle state; a [`Code::Skip`] status skips this plugin's Score.
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        nodes: &[Arc<NodeInfo>],
        snapshot: &Snapshot,
    ) -> Status;
}

/// Score: ranks feasible nodes; normalized scores are in `0..=MAX_NODE_SCORE`.
pub trait ScorePlugin {
    /// The node's raw score.
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status>;

    /// NormalizeScore: rescales the raw scores of all nodes in place.
    fn normalize(&self, _state: &CycleState, _pod: &PodInfo, _scores: &mut [NodeScore]) {}
}

/// Reserve: the pod was assumed on a node; unreserve undoes it on failure.
pub trait ReservePlugin {
    /// Reserves.
    fn reserve(&self, state: &CycleState, pod: &PodInfo, node: &str) -> Status;
    /// Undoes [`ReservePlugin::reserve`].
    fn unreserve(&self, state: &CycleState, pod: &PodInfo, node: &str);
}

/// Permit: the last say before binding. rk supports success and rejection;
/// a [`Code::Wait`] is treated as success.
pub trait PermitPlugin {
    /// Approves or rejects the placement.
    fn permit(&self, state: &CycleState, pod: &PodInfo, node: &str) -> Status;
}

/// PreBind: runs on the binding task before Bind.
pub trait PreBindPlugin {
    /// Prepares the binding (volumes, ...).
    fn pre_bind<'a>(&'a self, pod: &'a PodInfo, node: &'a str) -> BoxFuture<'a, Status>;
}

/// Bind: writes the binding. The first plugin not returning [`Code::Skip`] wins.
pub trait BindPlugin {
    /// Binds the pod to the node.
    fn bind<'a>(&'a self, pod: &'a PodInfo, node: &'a str) -> BoxFuture<'a, Status>;
}

/// PostBind: told after a successful bind.
pub trait PostBindPlugin {
    /// Informational.
    fn post_bind(&self, pod: &PodInfo, node: &str);
}

/// One profile: the plugins enabled at each extension point, with weights
/// for Score plugins.
pub struct Framework {
    /// The `spec.schedulerName` this profile serves.
    pub scheduler_name: String,
    /// `percentageOfNodesToScore` of this profile (`None`: the global value).
    pub percentage_of_nodes_to_score: Option<i32>,
    pub(crate) pre_enqueue: Vec<Arc<dyn Plugin>>,
    pub(crate) queue_sort: Option<Arc<dyn Plugin>>,
    pub(crate) pre_filter: Vec<Arc<dyn Plugin>>,
    pub(crate) filter: Vec<Arc<dyn Plugin>>,
    pub(crate) post_filter: Vec<Arc<dyn Plugin>>,
    pub(crate) pre_score: Vec<Arc<dyn Plugin>>,
    pub(crate) score: Vec<(Arc<dyn Plugin>, i64)>,
    pub(crate) reserve: Vec<Arc<dyn Plugin>>,
    pub(crate) permit: Vec<Arc<dyn Plugin>>,
    pub(crate) pre_bind: Vec<Arc<dyn Plugin>>,
    pub(crate) bind: Vec<Arc<dyn Plugin>>,
    pub(crate) post_bind: Vec<Arc<dyn Plugin>>,
    pub(crate) metrics: Option<Arc<Metrics>>,
}

impl Framework {
    /// An empty profile for `scheduler_name`; add plugins with the `with_*`
    /// methods or build one from configuration ([`super::config`]).
    pub fn new(scheduler_name: impl Into<String>) -> Self {
        Self {
            scheduler_name: scheduler_name.into(),
            percentage_of_nodes_to_score: None,
            pre_enqueue: Vec::new(),
            queue_sort: None,
            pre_filter: Vec::new(),
            filter: Vec::new(),
            post_filter: Vec::new(),
            pre_score: Vec::new(),
            score: Vec::new(),
            reserve: Vec::new(),
            permit: Vec::new(),
            pre_bind: Vec::new(),
            bind: Vec::new(),
            post_bind: Vec::new(),
            metrics: None,
        }
    }

    /// Enables `plugin` at every extension point it implements (Score with
    /// `weight`).
    pub fn with_plugin(mut self, plugin: Arc<dyn Plugin>, weight: i64) -> Self {
        self.add_plugin(plugin, weight);
        self
    }

    /// Enables `plugin` at every extension point it implements.
    pub fn add_plugin(&mut self, plugin: Arc<dyn Plugin>, weight: i64) {
        let p = plugin.as_ref();
        if p.as_pre_enqueue().is_some() {
            self.pre_enqueue.push(plugin.clone());
        }
        if p.as_queue_sort().is_some() && self.queue_sort.is_none() {
            self.queue_sort = Some(plugin.clone());
        }
        if p.as_pre_filter().is_some() {
            self.pre_filter.push(plugin.clone());
        }
        if p.as_filter().is_some() {
            self.filter.push(plugin.clone());
        }
        if p.as_post_filter().is_some() {
            self.post_filter.push(plugin.clone());
        }
        if p.as_pre_score().is_some() {
            self.pre_score.push(plugin.clone());
        }
        if p.as_score().is_some() && weight > 0 {
            self.score.push((plugin.clone(), weight));
        }
        if p.as_reserve().is_some() {
            self.reserve.push(plugin.clone());
        }
        if p.as_permit().is_some() {
            self.permit.push(plugin.clone());
        }
        if p.as_pre_bind().is_some() {
            self.pre_bind.push(plugin.clone());
        }
        if p.as_bind().is_some() {
            self.bind.push(plugin.clone());
        }
        if p.as_post_bind().is_some() {
            self.post_bind.push(plugin);
        }
    }

    /// Names of the enabled plugins per extension point (for logs and tests).
    pub fn describe(&self) -> Vec<(&'static str, Vec<&'static str>)> {
        let names = |v: &[Arc<dyn Plugin>]| v.iter().map(|p| p.name()).collect::<Vec<_>>();
        vec![
            ("preEnqueue", names(&self.pre_enqueue)),
            (
                "queueSort",
                self.queue_sort.iter().map(|p| p.name()).collect(),
            ),
            ("preFilter", names(&self.pre_filter)),
            ("filter", names(&self.filter)),
            ("postFilter", names(&self.post_filter)),
            ("preScore", names(&self.pre_score)),
            ("score", self.score.iter().map(|(p, _)| p.name()).collect()),
            ("reserve", names(&self.reserve)),
            ("permit", names(&self.permit)),
            ("preBind", names(&self.pre_bind)),
            ("bind", names(&self.bind)),
            ("postBind", names(&self.post_bind)),
        ]
    }

    fn observe(&self, point: &'static str, plugin: &'static str, start: Instant) {
        if let Some(m) = &self.metrics {
            m.observe_plugin(point, plugin, start.elapsed());
        }
    }

    /// Runs the PreEnqueue plugins; the first failure is returned.
    pub fn run_pre_enqueue(&self, pod: &PodInfo) -> Status {
        for p in &self.pre_enqueue {
            if let Some(pe) = p.as_pre_enqueue() {
                let s = pe.pre_enqueue(pod);
                if !s.is_success() {
                    return s.tagged(p.name());
                }
            }
        }
        Status::success()
    }

    /// Whether `a` goes before `b` in the active queue (PrioritySort when no
    /// QueueSort plugin is enabled).
    pub fn less(&self, a: &QueuedPodInfo, b: &QueuedPodInfo) -> bool {
        match self.queue_sort.as_ref().and_then(|p| p.as_queue_sort()) {
            Some(qs) => qs.less(a, b),
            None => super::plugins::queue_sort::priority_less(a, b),
        }
    }

    /// Runs the PreFilter plugins; returns the node names the cycle is
    /// restricted to (intersection of the plugins' answers), or the first
    /// rejection.
    pub fn run_pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
    ) -> Result<Option<HashSet<String>>, Status> {
        let mut restrict: Option<HashSet<String>> = None;
        for p in &self.pre_filter {
            let Some(pf) = p.as_pre_filter() else {
                continue;
            };
            let start = Instant::now();
            let result = pf.pre_filter(state, pod, snapshot);
            self.observe("PreFilter", p.name(), start);
            match result {
                Ok(Some(names)) => {
                    restrict = Some(match restrict {
                        Some(r) => r.intersection(&names).cloned().collect(),
                        None => names,
                    });
                }
                Ok(None) => {}
                Err(s) if s.code == Code::Skip => {
                    state.skip_filter.insert(p.name());
                    if let Some(i) = self.filter.iter().position(|f| f.name() == p.name())
                        && i < 64
                    {
                        state.filter_skip_mask |= 1 << i;
                    }
                }
                Err(s) => return Err(s.tagged(p.name())),
            }
        }
        Ok(restrict)
    }

    /// Runs the PreFilter extensions for a pod added to a node.
    pub fn run_pre_filter_add_pod(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        added: &PodInfo,
        node: &NodeInfo,
    ) {
        for p in &self.pre_filter {
            if let Some(pf) = p.as_pre_filter()
                && !state.skip_filter.contains(p.name())
            {
                pf.add_pod(state, pod, added, node);
            }
        }
    }

    /// Runs the PreFilter extensions for a pod removed from a node.
    pub fn run_pre_filter_remove_pod(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        removed: &PodInfo,
        node: &NodeInfo,
    ) {
        for p in &self.pre_filter {
            if let Some(pf) = p.as_pre_filter()
                && !state.skip_filter.contains(p.name())
            {
                pf.remove_pod(state, pod, removed, node);
            }
        }
    }

    /// Runs the Filter plugins on one node, stopping at the first rejection.
    pub fn run_filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        for (i, p) in self.filter.iter().enumerate() {
            let skipped = if i < 64 {
                state.filter_skip_mask & (1 << i) != 0
            } else {
                state.skip_filter.contains(p.name())
            };
            if skipped {
                continue;
            }
            if let Some(f) = p.as_filter() {
                let s = f.filter(state, pod, node);
                if !s.is_success() {
                    return s.tagged(p.name());
                }
            }
        }
        Status::success()
    }

    /// Runs the PostFilter plugins until one nominates a node.
    pub fn run_post_filter(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
        statuses: &NodeStatuses,
    ) -> (PostFilterResult, Option<Status>) {
        let mut last = None;
        for p in &self.post_filter {
            if let Some(pf) = p.as_post_filter() {
                let start = Instant::now();
                let (result, status) = pf.post_filter(state, pod, snapshot, statuses, self);
                self.observe("PostFilter", p.name(), start);
                if status.is_success() {
                    return (result, None);
                }
                last = Some(status.tagged(p.name()));
            }
        }
        (PostFilterResult::default(), last)
    }

    /// Whether any Score plugin is enabled.
    pub fn has_score_plugins(&self) -> bool {
        !self.score.is_empty()
    }

    /// Runs PreScore, Score and NormalizeScore; returns each node's weighted
    /// total, in the order of `nodes`.
    pub fn run_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        nodes: &[Arc<NodeInfo>],
        snapshot: &Snapshot,
    ) -> Result<Vec<i64>, Status> {
        for p in &self.pre_score {
            if let Some(ps) = p.as_pre_score() {
                let start = Instant::now();
                let s = ps.pre_score(state, pod, nodes, snapshot);
                self.observe("PreScore", p.name(), start);
                match s.code {
                    Code::Success => {}
                    Code::Skip => {
                        state.skip_score.insert(p.name());
                    }
                    _ => return Err(s.tagged(p.name())),
                }
            }
        }
        let mut totals = vec![0i64; nodes.len()];
        let mut scores: Vec<NodeScore> = Vec::with_capacity(nodes.len());
        for (p, weight) in &self.score {
            if state.skip_score.contains(p.name()) {
                continue;
            }
            let Some(sp) = p.as_score() else { continue };
            let start = Instant::now();
            scores.clear();
            for (index, node) in nodes.iter().enumerate() {
                let score = sp.score(state, pod, node).map_err(|s| s.tagged(p.name()))?;
                scores.push(NodeScore { index, score });
            }
            sp.normalize(state, pod, &mut scores);
            for s in &scores {
                totals[s.index] += s.score.clamp(0, MAX_NODE_SCORE) * weight;
            }
            self.observe("Score", p.name(), start);
        }
        Ok(totals)
    }

    /// Runs Reserve; on a failure, unreserves the plugins already run.
    pub fn run_reserve(&self, state: &CycleState, pod: &PodInfo, node: &str) -> Status {
        for (i, p) in self.reserve.iter().enumerate() {
            if let Some(r) = p.as_reserve() {
                let s = r.reserve(state, pod, node);
                if !s.is_success() {
                    for q in self.reserve[..i].iter().rev() {
                        if let Some(r) = q.as_reserve() {
                            r.unreserve(state, pod, node);
                        }
                    }
                    return s.tagged(p.name());
                }
            }
        }
        Status::success()
    }

    /// Runs Unreserve in reverse order.
    pub fn run_unreserve(&self, state: &CycleState, pod: &PodInfo, node: &str) {
        for p in self.reserve.iter().rev() {
            if let Some(r) = p.as_reserve() {
                r.unreserve(state, pod, node);
            }
        }
    }

    /// Runs Permit; the first rejection is returned.
    pub fn run_permit(&self, state: &CycleState, pod: &PodInfo, node: &str) -> Status {
        for p in &self.permit {
            if let Some(pm) = p.as_permit() {
                let s = pm.permit(state, pod, node);
                if s.is_rejected() || s.code == Code::Error {
                    return s.tagged(p.name());
                }
            }
        }
        Status::success()
    }

    /// Runs PreBind, Bind and PostBind (on the binding task).
    pub async fn run_binding(&self, pod: &PodInfo, node: &str) -> Status {
        for p in &self.pre_bind {
            if let Some(pb) = p.as_pre_bind() {
                let s = pb.pre_bind(pod, node).await;
                if !s.is_success() {
                    return s.tagged(p.name());
                }
            }
        }
        let mut bound = false;
        for p in &self.bind {
            if let Some(b) = p.as_bind() {
                let s = b.bind(pod, node).await;
                match s.code {
                    Code::Skip => continue,
                    Code::Success => {
                        bound = true;
                        break;
                    }
                    _ => return s.tagged(p.name()),
                }
            }
        }
        if !bound {
            return Status::error("no Bind plugin bound the pod");
        }
        for p in &self.post_bind {
            if let Some(pb) = p.as_post_bind() {
                pb.post_bind(pod, node);
            }
        }
        Status::success()
    }
}
