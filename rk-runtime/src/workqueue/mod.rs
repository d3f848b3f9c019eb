//! A de-duplicating work queue with client-go's semantics
//! (`k8s.io/client-go/util/workqueue`).
//!
//! # Semantics
//!
//! The queue keeps a *dirty* set (items waiting to be processed) and a
//! *processing* set (items handed out by [`WorkQueue::get`] and not yet
//! [`WorkQueue::done`]):
//!
//! - adding an item that is already dirty does nothing: it is processed once;
//! - an item is never handed to two workers at once: while it is processing,
//!   an add marks it dirty but does not queue it;
//! - when the worker calls `done`, an item that was re-added meanwhile is
//!   queued again, so the change that re-added it is not lost;
//! - [`WorkQueue::add_after`] adds once a delay has passed (a later call with
//!   an earlier deadline moves the item forward, never back);
//! - [`WorkQueue::add_rate_limited`] adds after the delay the queue's
//!   [`RateLimiter`] picks (by default [`default_controller_rate_limiter`]),
//!   [`WorkQueue::forget`] resets the item's backoff;
//! - after [`WorkQueue::shutdown`], adds are ignored, `get` keeps handing out
//!   what is already queued and then returns `None`;
//!   [`WorkQueue::shutdown_with_drain`] also waits for every item to be done.
//!
//! ```
//! # async fn demo() {
//! use rk_runtime::workqueue::WorkQueue;
//! let queue: WorkQueue<String> = WorkQueue::new("demo");
//! queue.add("default/web".to_owned());
//! queue.add("default/web".to_owned()); // de-duplicated
//! let item = queue.get().await.expect("queue is running");
//! // ... reconcile `item` ...
//! queue.forget(&item);
//! queue.done(&item);
//! # }
//! ```

mod metrics;
pub mod rate_limit;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use metrics::QueueMetrics;
pub use metrics::{QueueLabels, WorkQueueMetrics};
pub use rate_limit::{
    ItemExponentialBackoff, MaxOf, RateLimiter, TokenBucket, default_controller_rate_limiter,
};

/// What a queue item must be: cheap to clone, hashable, shareable.
pub trait QueueItem: Clone + Eq + Hash + Send + Sync + 'static {}
impl<T: Clone + Eq + Hash + Send + Sync + 'static> QueueItem for T {}

/// A de-duplicating, rate-limited, delaying work queue. Cloning shares it.
///
/// See the [module documentation](self) for the exact semantics.
pub struct WorkQueue<T: QueueItem> {
    shared: Arc<Shared<T>>,
}

impl<T: QueueItem> Clone for WorkQueue<T> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

struct Shared<T: QueueItem> {
    name: String,
    state: Mutex<State<T>>,
    /// Woken when an item is queued or the queue shuts down.
    ready: Notify,
    /// Woken when an item is done or the queue empties (for draining).
    idle: Notify,
    /// Woken when a delayed item is added with an earlier deadline.
    delayed_changed: Notify,
    limiter: Box<dyn RateLimiter<T>>,
    metrics: Option<QueueMetrics>,
}

struct State<T> {
    queue: VecDeque<T>,
    dirty: HashSet<T>,
    processing: HashSet<T>,
    shutting_down: bool,
    /// When each dirty item was added (only with metrics on).
    added_at: HashMap<T, Instant>,
    /// When each processing item was handed out (only with metrics on).
    started_at: HashMap<T, Instant>,
    /// Delayed items by deadline, with a sequence number for uniqueness.
    delayed: BTreeMap<(Instant, u64), T>,
    delayed_index: HashMap<T, (Instant, u64)>,
    delayed_seq: u64,
    background_started: bool,
}

impl<T: QueueItem> WorkQueue<T> {
    /// A queue named `name` (the name labels its metrics) with the default
    /// controller rate limiter and no metrics.
    pub fn new(name: impl Into<String>) -> Self {
        Self::build(
            name.into(),
            Box::new(default_controller_rate_limiter()),
            None,
        )
    }

    /// A queue with a custom rate limiter and, optionally, metrics.
    pub fn with_options(
        name: impl Into<String>,
        limiter: Box<dyn RateLimiter<T>>,
        metrics: Option<&WorkQueueMetrics>,
    ) -> Self {
        let name = name.into();
        let metrics = metrics.map(|m| m.for_queue(&name));
        Self::build(name, limiter, metrics)
    }

    fn build(
        name: String,
        limiter: Box<dyn RateLimiter<T>>,
        metrics: Option<QueueMetrics>,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                name,
                state: Mutex::new(State {
                    queue: VecDeque::new(),
                    dirty: HashSet::new(),
                    processing: HashSet::new(),
                    shutting_down: false,
                    added_at: HashMap::new(),
                    started_at: HashMap::new(),
                    delayed: BTreeMap::new(),
                    delayed_index: HashMap::new(),
                    delayed_seq: 0,
                    background_started: false,
                }),
                ready: Notify::new(),
                idle: Notify::new(),
                delayed_changed: Notify::new(),
                limiter,
                metrics,
            }),
        }
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Add `item` unless it is already waiting. If it is being processed it
    /// is queued again once [`WorkQueue::done`] is called for it.
    pub fn add(&self, item: T) {
        let mut state = self.lock();
        self.add_locked(&mut state, item);
    }

    fn add_locked(&self, state: &mut State<T>, item: T) {
        if state.shutting_down || state.dirty.contains(&item) {
            return;
        }
        if let Some(m) = &self.shared.metrics {
            m.adds.inc();
            state.added_at.insert(item.clone(), Instant::now());
        }
        state.dirty.insert(item.clone());
        if state.processing.contains(&item) {
            return;
        }
        state.queue.push_back(item);
        if let Some(m) = &self.shared.metrics {
            m.depth.inc();
        }
        self.shared.ready.notify_one();
    }

    /// Wait for the next item. Returns `None` once the queue is shut down and
    /// empty. The caller must call [`WorkQueue::done`] with the item when it
    /// has finished with it.
    pub async fn get(&self) -> Option<T> {
        loop {
            let notified = self.shared.ready.notified();
            tokio::pin!(notified);
            // Register interest before looking, so an add between the look and
            // the wait is not missed.
            notified.as_mut().enable();
            {
                let mut state = self.lock();
                if let Some(item) = state.queue.pop_front() {
                    state.dirty.remove(&item);
                    state.processing.insert(item.clone());
                    if let Some(m) = &self.shared.metrics {
                        m.depth.dec();
                        let now = Instant::now();
                        if let Some(added) = state.added_at.remove(&item) {
                            m.queue_duration
                                .observe(now.saturating_duration_since(added).as_secs_f64());
                        }
                        state.started_at.insert(item.clone(), now);
                    }
                    // Another waiter may be able to take the next item.
                    if !state.queue.is_empty() {
                        self.shared.ready.notify_one();
                    }
                    return Some(item);
                }
                if state.shutting_down {
                    // Wake the other waiters so they also see the shutdown.
                    self.shared.ready.notify_waiters();
                    return None;
                }
            }
            notified.await;
        }
    }

    /// Mark `item` as processed. If it was added again while processing, it
    /// is queued now.
    pub fn done(&self, item: &T) {
        let mut state = self.lock();
        if !state.processing.remove(item) {
            return;
        }
        if let Some(m) = &self.shared.metrics
            && let Some(started) = state.started_at.remove(item)
        {
            m.work_duration.observe(started.elapsed().as_secs_f64());
        }
        if state.dirty.contains(item) {
            state.queue.push_back(item.clone());
            if let Some(m) = &self.shared.metrics {
                m.depth.inc();
            }
            self.shared.ready.notify_one();
        }
        if state.processing.is_empty() {
            self.shared.idle.notify_waiters();
        }
    }

    /// Add `item` after `delay` (immediately when `delay` is zero). Needs a
    /// Tokio runtime for delays; without one the item is added at once.
    pub fn add_after(&self, item: T, delay: Duration) {
        if delay.is_zero() {
            self.add(item);
            return;
        }
        let mut state = self.lock();
        if state.shutting_down {
            return;
        }
        let deadline = Instant::now() + delay;
        if let Some(existing) = state.delayed_index.get(&item).copied() {
            if existing.0 <= deadline {
                return;
            }
            state.delayed.remove(&existing);
        }
        if !state.background_started {
            match tokio::runtime::Handle::try_current() {
                Ok(handle) => {
                    state.background_started = true;
                    handle.spawn(delay_loop(self.shared.clone()));
                }
                Err(_) => {
                    tracing::warn!(queue = %self.shared.name, "no Tokio runtime: adding delayed item now");
                    self.add_locked(&mut state, item);
                    return;
                }
            }
        }
        state.delayed_seq += 1;
        let slot = (deadline, state.delayed_seq);
        state.delayed.insert(slot, item.clone());
        state.delayed_index.insert(item, slot);
        drop(state);
        self.shared.delayed_changed.notify_one();
    }

    /// Add `item` after the delay the rate limiter picks for it, counting a retry.
    pub fn add_rate_limited(&self, item: T) {
        let delay = self.shared.limiter.when(&item);
        if let Some(m) = &self.shared.metrics {
            m.retries.inc();
        }
        self.add_after(item, delay);
    }

    /// Reset `item`'s backoff (call after it was processed successfully).
    pub fn forget(&self, item: &T) {
        self.shared.limiter.forget(item);
    }

    /// How many times `item` was rate-limited since it was last forgotten.
    pub fn num_requeues(&self, item: &T) -> u32 {
        self.shared.limiter.num_requeues(item)
    }

    /// Items waiting to be handed out (not counting delayed or processing ones).
    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    /// Whether no item waits to be handed out.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Items currently handed out and not yet done.
    pub fn processing_len(&self) -> usize {
        self.lock().processing.len()
    }

    /// Whether the queue is shutting down.
    pub fn is_shutting_down(&self) -> bool {
        self.lock().shutting_down
    }

    /// Stop accepting adds; waiters get what is queued, then `None`. Delayed
    /// items are dropped.
    pub fn shutdown(&self) {
        let mut state = self.lock();
        state.shutting_down = true;
        state.delayed.clear();
        state.delayed_index.clear();
        drop(state);
        self.shared.ready.notify_waiters();
        self.shared.delayed_changed.notify_one();
        self.shared.idle.notify_waiters();
    }

    /// Shut down, then wait until every queued item has been handed out and
    /// every handed-out item is done.
    pub async fn shutdown_with_drain(&self) {
        self.shutdown();
        loop {
            let idle = self.shared.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            {
                let state = self.lock();
                if state.processing.is_empty() && state.queue.is_empty() {
                    return;
                }
            }
            // `done` wakes us; also re-check periodically in case the last
            // items were handed out and finished between checks.
            let _ = tokio::time::timeout(Duration::from_millis(50), idle).await;
        }
    }

    fn update_unfinished_work(&self) {
        let Some(m) = &self.shared.metrics else {
            return;
        };
        let state = self.lock();
        let now = Instant::now();
        let mut total = 0.0;
        let mut longest = 0.0f64;
        for started in state.started_at.values() {
            let secs = now.saturating_duration_since(*started).as_secs_f64();
            total += secs;
            longest = longest.max(secs);
        }
        m.unfinished_work.set(total);
        m.longest_running.set(longest);
    }
}

/// Moves delayed items into the queue when their time comes, and refreshes
/// the unfinished-work gauges. Ends when the queue is dropped or shut down.
async fn delay_loop<T: QueueItem>(shared: Arc<Shared<T>>) {
    let queue = WorkQueue { shared };
    loop {
        // Only this task holds the queue: nobody can add or get any more.
        if Arc::strong_count(&queue.shared) <= 1 {
            return;
        }
        let changed = queue.shared.delayed_changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let next = {
            let mut state = queue.lock();
            if state.shutting_down {
                return;
            }
            let now = Instant::now();
            while let Some(entry) = state.delayed.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                let item = entry.remove();
                state.delayed_index.remove(&item);
                queue.add_locked(&mut state, item);
            }
            state.delayed.keys().next().map(|k| k.0)
        };
        queue.update_unfinished_work();
        // Wake at the next deadline, at most every 500 ms for the gauges.
        let cap = Instant::now() + Duration::from_millis(500);
        let wake = next.map_or(cap, |n| n.min(cap));
        tokio::select! {
            _ = tokio::time::sleep_until(wake.into()) => {}
            _ = &mut changed => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn re_added_while_processing_runs_again_after_done() {
        let q: WorkQueue<&str> = WorkQueue::new("t");
        q.add("a");
        let a = q.get().await;
        assert_eq!(a, Some("a"));
        q.add("a");
        assert!(q.is_empty(), "a processing item is not queued twice");
        q.done(&"a");
        assert_eq!(q.len(), 1);
        assert_eq!(q.get().await, Some("a"));
    }

    #[tokio::test]
    async fn shutdown_hands_out_queued_items_then_none() {
        let q: WorkQueue<u32> = WorkQueue::new("t");
        q.add(1);
        q.shutdown();
        q.add(2);
        assert_eq!(q.get().await, Some(1));
        assert_eq!(q.get().await, None);
    }
}
