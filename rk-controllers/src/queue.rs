//! A small de-duplicating work queue with client-go's core semantics, shared
//! by the controllers of this crate: a key waiting in the queue is held once
//! however often it is added, a key is never handed to two workers at once,
//! and a key added while it is being processed runs again afterwards.
//! Failed keys come back with per-key exponential backoff.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

#[derive(Default)]
struct State {
    queue: VecDeque<String>,
    dirty: HashSet<String>,
    processing: HashSet<String>,
    failures: HashMap<String, u32>,
}

/// The queue. Cheap to clone; clones share the queue.
#[derive(Clone, Default)]
pub struct WorkQueue {
    state: Arc<Mutex<State>>,
    ready: Arc<Notify>,
}

/// The first retry delay of a failing key; it doubles per failure.
const BASE_DELAY: Duration = Duration::from_millis(5);
/// The longest retry delay.
const MAX_DELAY: Duration = Duration::from_secs(1000);

impl WorkQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Add `key`; a no-op if it is already waiting.
    pub fn add(&self, key: impl Into<String>) {
        let key = key.into();
        let mut s = self.lock();
        if !s.dirty.insert(key.clone()) {
            return;
        }
        if !s.processing.contains(&key) {
            s.queue.push_back(key);
            drop(s);
            self.ready.notify_one();
        }
    }

    /// Add `key` after `delay`.
    pub fn add_after(&self, key: impl Into<String>, delay: Duration) {
        let key = key.into();
        if delay.is_zero() {
            return self.add(key);
        }
        let q = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            q.add(key);
        });
    }

    /// Add `key` after its backoff: 5 ms doubling per consecutive failure,
    /// up to 1000 s.
    pub fn add_rate_limited(&self, key: impl Into<String>) {
        let key = key.into();
        let n = {
            let mut s = self.lock();
            let n = s.failures.entry(key.clone()).or_insert(0);
            *n += 1;
            *n
        };
        let delay = BASE_DELAY
            .saturating_mul(1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX))
            .min(MAX_DELAY);
        self.add_after(key, delay);
    }

    /// Reset `key`'s backoff.
    pub fn forget(&self, key: &str) {
        self.lock().failures.remove(key);
    }

    /// The next key to process; waits until there is one.
    pub async fn get(&self) -> String {
        loop {
            let notified = self.ready.notified();
            {
                let mut s = self.lock();
                if let Some(key) = s.queue.pop_front() {
                    s.dirty.remove(&key);
                    s.processing.insert(key.clone());
                    let more = !s.queue.is_empty();
                    drop(s);
                    if more {
                        self.ready.notify_one();
                    }
                    return key;
                }
            }
            notified.await;
        }
    }

    /// Mark `key` processed; if it was added meanwhile it is queued again.
    pub fn done(&self, key: &str) {
        let mut s = self.lock();
        s.processing.remove(key);
        if s.dirty.contains(key) {
            s.queue.push_back(key.to_string());
            drop(s);
            self.ready.notify_one();
        }
    }

    /// Keys waiting to be processed.
    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    /// True if no key is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a sync asks for when it succeeds.
pub type Requeue = Option<Duration>;

/// Run `workers` concurrent workers over `queue`, calling `sync` for each
/// key: success forgets the key's backoff (and requeues it after the
/// returned delay, if any); an error is logged and retried with backoff.
pub async fn run_workers<F, Fut, E>(name: &'static str, queue: WorkQueue, workers: usize, sync: F)
where
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Requeue, E>> + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    let sync = Arc::new(sync);
    let metrics = crate::metrics::controllers();
    let workers = workers.max(1);
    let busy = Arc::new(std::sync::atomic::AtomicI64::new(0));
    metrics.set_workers(name, workers as i64, 0);
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let queue = queue.clone();
        let sync = sync.clone();
        let busy = busy.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let key = queue.get().await;
                let started = std::time::Instant::now();
                let now_busy = busy.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                metrics.set_workers(name, workers as i64, now_busy);
                let result = sync(key.clone()).await;
                let now_busy = busy.fetch_sub(1, std::sync::atomic::Ordering::Relaxed) - 1;
                metrics.set_workers(name, workers as i64, now_busy);
                let outcome = match &result {
                    Ok(None) => "success",
                    Ok(Some(_)) => "requeue_after",
                    Err(_) => "error",
                };
                metrics.observe(name, outcome, started.elapsed().as_secs_f64());
                tracing::debug!(controller = name, key = %key, outcome, "synced");
                queue.done(&key);
                match result {
                    Ok(requeue) => {
                        queue.forget(&key);
                        if let Some(after) = requeue {
                            queue.add_after(key, after);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(controller = name, key = %key, error = %e, "sync failed; retrying");
                        queue.add_rate_limited(key);
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn duplicates_collapse_and_a_key_in_flight_runs_again_after() {
        let q = WorkQueue::new();
        q.add("a");
        q.add("a");
        q.add("b");
        assert_eq!(q.len(), 2);
        let a = q.get().await;
        assert_eq!(a, "a");
        q.add("a"); // while processing: not handed out again yet
        assert_eq!(q.get().await, "b");
        assert!(q.is_empty());
        q.done("a");
        assert_eq!(q.get().await, "a");
    }

    #[tokio::test]
    async fn backoff_grows_and_forget_resets_it() {
        let q = WorkQueue::new();
        for _ in 0..3 {
            q.add_rate_limited("k");
        }
        assert_eq!(q.lock().failures.get("k"), Some(&3));
        q.forget("k");
        assert!(!q.lock().failures.contains_key("k"));
    }
}
