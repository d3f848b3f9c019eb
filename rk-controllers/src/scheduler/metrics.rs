//! Scheduler metrics, named as upstream's: scheduling attempts by result,
//! the end-to-end scheduling duration (queue entry to binding), pending pods
//! per sub-queue and plugin execution durations. [`Metrics::render`] writes
//! the Prometheus text format.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use super::queue::PendingCounts;

/// Histogram bucket bounds in seconds (upstream's exponential buckets from 1 ms).
const BUCKETS: [f64; 15] = [
    0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096,
    8.192, 16.384,
];

/// A cumulative histogram.
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&mut self, d: Duration) {
        let s = d.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if s <= *b {
                self.counts[i] += 1;
            }
        }
        self.count += 1;
        self.sum += s;
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.count
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {}",
                self.counts[i]
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

#[derive(Debug, Default)]
struct Inner {
    attempts: BTreeMap<&'static str, u64>,
    e2e: Histogram,
    attempt_duration: BTreeMap<&'static str, Histogram>,
    plugins: BTreeMap<(&'static str, &'static str), Histogram>,
    pending: PendingCounts,
    preemption_victims: u64,
    e2e_samples: Vec<f64>,
    attempt_samples: Vec<f64>,
}

/// Raw samples kept for percentiles (per kind; older samples are dropped).
const MAX_SAMPLES: usize = 1 << 20;

fn push_sample(samples: &mut Vec<f64>, d: Duration) {
    if samples.len() >= MAX_SAMPLES {
        samples.drain(..MAX_SAMPLES / 2);
    }
    samples.push(d.as_secs_f64());
}

/// The scheduler's metrics; cheap to update from the scheduling loop.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

/// Result label: the pod was scheduled.
pub const SCHEDULED: &str = "scheduled";
/// Result label: no node fits.
pub const UNSCHEDULABLE: &str = "unschedulable";
/// Result label: an error.
pub const ERROR: &str = "error";

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One scheduling attempt ended with `result` after `d`.
    pub fn attempt(&self, result: &'static str, d: Duration) {
        let mut m = self.lock();
        *m.attempts.entry(result).or_insert(0) += 1;
        m.attempt_duration.entry(result).or_default().observe(d);
        push_sample(&mut m.attempt_samples, d);
    }

    /// A pod was bound `d` after it first entered the queue.
    pub fn scheduled_e2e(&self, d: Duration) {
        let mut m = self.lock();
        m.e2e.observe(d);
        push_sample(&mut m.e2e_samples, d);
    }

    /// Pods bound so far.
    pub fn bound(&self) -> u64 {
        self.lock().e2e.count()
    }

    /// Recent end-to-end durations (queue entry to bound), in seconds.
    pub fn e2e_samples(&self) -> Vec<f64> {
        self.lock().e2e_samples.clone()
    }

    /// Recent scheduling attempt durations (one cycle), in seconds.
    pub fn attempt_samples(&self) -> Vec<f64> {
        self.lock().attempt_samples.clone()
    }

    /// Forgets the raw samples (a benchmark starting its measured phase).
    pub fn clear_samples(&self) {
        let mut m = self.lock();
        m.e2e_samples.clear();
        m.attempt_samples.clear();
    }

    /// A plugin at an extension point ran for `d`.
    pub fn observe_plugin(&self, point: &'static str, plugin: &'static str, d: Duration) {
        self.lock()
            .plugins
            .entry((point, plugin))
            .or_default()
            .observe(d);
    }

    /// The current queue sizes.
    pub fn set_pending(&self, pending: PendingCounts) {
        self.lock().pending = pending;
    }

    /// Preemption deleted `n` victims.
    pub fn victims(&self, n: usize) {
        self.lock().preemption_victims += n as u64;
    }

    /// Attempts so far with this result.
    pub fn attempts(&self, result: &str) -> u64 {
        self.lock().attempts.get(result).copied().unwrap_or(0)
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let m = self.lock();
        let mut out = String::new();
        out.push_str("# TYPE scheduler_schedule_attempts_total counter\n");
        for (result, n) in &m.attempts {
            let _ = writeln!(
                out,
                "scheduler_schedule_attempts_total{{result=\"{result}\",profile=\"default-scheduler\"}} {n}"
            );
        }
        out.push_str("# TYPE scheduler_scheduling_attempt_duration_seconds histogram\n");
        for (result, h) in &m.attempt_duration {
            h.render(
                &mut out,
                "scheduler_scheduling_attempt_duration_seconds",
                &format!("result=\"{result}\""),
            );
        }
        out.push_str("# TYPE scheduler_pod_scheduling_sli_duration_seconds histogram\n");
        m.e2e.render(
            &mut out,
            "scheduler_pod_scheduling_sli_duration_seconds",
            "",
        );
        out.push_str("# TYPE scheduler_pending_pods gauge\n");
        for (queue, n) in [
            ("active", m.pending.active),
            ("backoff", m.pending.backoff),
            ("unschedulable", m.pending.unschedulable - m.pending.gated),
            ("gated", m.pending.gated),
        ] {
            let _ = writeln!(out, "scheduler_pending_pods{{queue=\"{queue}\"}} {n}");
        }
        out.push_str("# TYPE scheduler_plugin_execution_duration_seconds histogram\n");
        for ((point, plugin), h) in &m.plugins {
            h.render(
                &mut out,
                "scheduler_plugin_execution_duration_seconds",
                &format!("extension_point=\"{point}\",plugin=\"{plugin}\",status=\"Success\""),
            );
        }
        out.push_str("# TYPE scheduler_preemption_victims_total counter\n");
        let _ = writeln!(
            out,
            "scheduler_preemption_victims_total {}",
            m.preemption_victims
        );
        out
    }
}
