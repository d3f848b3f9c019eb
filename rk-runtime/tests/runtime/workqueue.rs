//! Work queue semantics: one worker per key, re-adds not lost, backoff.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::registry::Registry;
use rk_runtime::workqueue::{ItemExponentialBackoff, WorkQueue, WorkQueueMetrics};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_is_never_processed_by_two_workers_at_once() {
    let queue: WorkQueue<u32> = WorkQueue::new("exclusive");
    let keys = 8u32;
    let in_flight: Arc<Vec<AtomicBool>> =
        Arc::new((0..keys).map(|_| AtomicBool::new(false)).collect());
    let overlaps = Arc::new(AtomicUsize::new(0));
    // Per key: the latest add's sequence number, and the sequence number the
    // latest processing started after.
    let last_add: Arc<Mutex<HashMap<u32, u64>>> = Arc::default();
    let last_seen: Arc<Mutex<HashMap<u32, u64>>> = Arc::default();
    let seq = Arc::new(std::sync::atomic::AtomicU64::new(0));

    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let queue = queue.clone();
        let in_flight = in_flight.clone();
        let overlaps = overlaps.clone();
        let last_seen = last_seen.clone();
        let seq = seq.clone();
        workers.spawn(async move {
            while let Some(key) = queue.get().await {
                let slot = &in_flight[key as usize];
                if slot.swap(true, Ordering::SeqCst) {
                    overlaps.fetch_add(1, Ordering::SeqCst);
                }
                // Everything added before this point is covered by this run.
                let now = seq.fetch_add(1, Ordering::SeqCst);
                last_seen.lock().unwrap().insert(key, now);
                tokio::time::sleep(Duration::from_micros(200)).await;
                slot.store(false, Ordering::SeqCst);
                queue.done(&key);
            }
        });
    }
    let mut producers = tokio::task::JoinSet::new();
    for p in 0..4u32 {
        let queue = queue.clone();
        let last_add = last_add.clone();
        let seq = seq.clone();
        producers.spawn(async move {
            for i in 0..500u32 {
                let key = (i + p) % keys;
                {
                    let mut adds = last_add.lock().unwrap();
                    adds.insert(key, seq.fetch_add(1, Ordering::SeqCst));
                    queue.add(key);
                }
                if i % 16 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        });
    }
    while producers.join_next().await.is_some() {}
    queue.shutdown_with_drain().await;
    while workers.join_next().await.is_some() {}

    assert_eq!(
        overlaps.load(Ordering::SeqCst),
        0,
        "a key was handed to two workers at once"
    );
    let adds = last_add.lock().unwrap();
    let seen = last_seen.lock().unwrap();
    for (key, added) in adds.iter() {
        let processed = seen.get(key).copied().unwrap_or(0);
        assert!(
            processed > *added,
            "key {key}: last add {added} was never processed after (last run {processed})"
        );
    }
}

/// How long `add_rate_limited` takes to bring the item back.
async fn rate_limited_delay(queue: &WorkQueue<&'static str>, item: &'static str) -> Duration {
    let started = Instant::now();
    queue.add_rate_limited(item);
    let got = queue.get().await;
    assert_eq!(got, Some(item));
    queue.done(&item);
    started.elapsed()
}

#[tokio::test]
async fn backoff_grows_per_failure_and_forget_resets_it() {
    let limiter = ItemExponentialBackoff::new(Duration::from_millis(20), Duration::from_secs(10));
    let queue: WorkQueue<&'static str> =
        WorkQueue::with_options("backoff", Box::new(limiter), None);

    let mut delays = Vec::new();
    for _ in 0..4 {
        delays.push(rate_limited_delay(&queue, "k").await);
    }
    assert_eq!(queue.num_requeues(&"k"), 4);
    // 20, 40, 80, 160 ms: each at least its nominal delay and growing.
    for (i, d) in delays.iter().enumerate() {
        let nominal = Duration::from_millis(20 << i);
        assert!(
            *d >= nominal,
            "retry {i} waited {d:?}, less than {nominal:?}"
        );
    }
    assert!(delays[3] > delays[0] * 4, "{delays:?}");
    // Another key has its own backoff.
    assert_eq!(queue.num_requeues(&"other"), 0);

    queue.forget(&"k");
    assert_eq!(queue.num_requeues(&"k"), 0);
    let after_forget = rate_limited_delay(&queue, "k").await;
    assert!(
        after_forget < Duration::from_millis(100),
        "forget resets the backoff: {after_forget:?}"
    );
}

#[tokio::test]
async fn add_after_moves_earlier_never_later_and_deduplicates() {
    let queue: WorkQueue<&'static str> = WorkQueue::new("delay");
    let started = Instant::now();
    queue.add_after("x", Duration::from_secs(30));
    queue.add_after("x", Duration::from_millis(50));
    queue.add_after("x", Duration::from_secs(60));
    assert_eq!(queue.get().await, Some("x"));
    assert!(started.elapsed() < Duration::from_secs(5));
    queue.done(&"x");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        queue.is_empty(),
        "the later deadlines were merged into the first"
    );
}

#[tokio::test]
async fn metrics_count_adds_depth_and_retries() {
    let mut registry = Registry::default();
    let metrics = WorkQueueMetrics::new(&mut registry);
    let queue: WorkQueue<u32> = WorkQueue::with_options(
        "measured",
        Box::new(ItemExponentialBackoff::new(
            Duration::from_millis(1),
            Duration::from_millis(10),
        )),
        Some(&metrics),
    );
    queue.add(1);
    queue.add(1);
    queue.add(2);
    let item = queue.get().await.unwrap();
    queue.add_rate_limited(item);
    queue.done(&item);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(
        text.contains("workqueue_adds_total{name=\"measured\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("workqueue_retries_total{name=\"measured\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("workqueue_depth{name=\"measured\"}"),
        "{text}"
    );
    assert!(
        text.contains("workqueue_queue_duration_seconds_count{name=\"measured\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("workqueue_work_duration_seconds_count{name=\"measured\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn shutdown_with_drain_waits_for_items_in_progress() {
    let queue: WorkQueue<u32> = WorkQueue::new("drain");
    queue.add(1);
    let item = queue.get().await.unwrap();
    let finished = Arc::new(AtomicBool::new(false));
    let worker = {
        let queue = queue.clone();
        let finished = finished.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            finished.store(true, Ordering::SeqCst);
            queue.done(&item);
        })
    };
    queue.shutdown_with_drain().await;
    assert!(
        finished.load(Ordering::SeqCst),
        "drain returned before the item was done"
    );
    assert_eq!(queue.get().await, None);
    worker.await.unwrap();
}
