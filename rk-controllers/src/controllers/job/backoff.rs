//! Exponential back-off before replacing failed pods: 10 s after the first
//! failure since the last success, doubling per further failure, capped at
//! 6 minutes (upstream `DefaultJobPodFailureBackOff`/`MaxJobPodFailureBackOff`).
//!
//! Records live in memory, per Job (and per index for
//! `backoffLimitPerIndex`); a success resets its record.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use jiff::Timestamp;

/// The delay after the first failure.
pub const DEFAULT_BASE: Duration = Duration::from_secs(10);
/// The longest delay.
pub const DEFAULT_MAX: Duration = Duration::from_secs(360);

/// The delay after `failures` consecutive failures: none for zero, then
/// `base`, `2 * base`, ... up to `max`.
pub fn delay(failures: u32, base: Duration, max: Duration) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let factor = 1u32.checked_shl(failures - 1).unwrap_or(u32::MAX);
    base.saturating_mul(factor).min(max)
}

#[derive(Clone, Copy, Debug)]
struct Record {
    failures: u32,
    last_failure: Timestamp,
}

/// Failure records by key (`ns/job`, or `ns/job#index`).
#[derive(Debug, Default)]
pub struct Records {
    inner: Mutex<HashMap<String, Record>>,
}

impl Records {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Record>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One more failure of `key`, observed `at`.
    pub fn failure(&self, key: &str, at: Timestamp) {
        let mut map = self.lock();
        let r = map.entry(key.to_string()).or_insert(Record {
            failures: 0,
            last_failure: at,
        });
        r.failures = r.failures.saturating_add(1);
        r.last_failure = r.last_failure.max(at);
    }

    /// A success of `key`: its failures no longer delay anything.
    pub fn success(&self, key: &str) {
        self.lock().remove(key);
    }

    /// How long `key` must still wait at `now` before a new pod.
    pub fn remaining(&self, key: &str, now: Timestamp, base: Duration, max: Duration) -> Duration {
        let Some(r) = self.lock().get(key).copied() else {
            return Duration::ZERO;
        };
        let wait = delay(r.failures, base, max);
        let elapsed = now.duration_since(r.last_failure);
        let elapsed = Duration::try_from(elapsed).unwrap_or(Duration::ZERO);
        wait.saturating_sub(elapsed)
    }

    /// Drop every record of the Job `key` (and of its indexes).
    pub fn forget(&self, key: &str) {
        let prefix = format!("{key}#");
        self.lock()
            .retain(|k, _| k != key && !k.starts_with(&prefix));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_doubles_from_ten_seconds_up_to_six_minutes() {
        let d = |n| delay(n, DEFAULT_BASE, DEFAULT_MAX).as_secs();
        assert_eq!(d(0), 0);
        assert_eq!(d(1), 10);
        assert_eq!(d(2), 20);
        assert_eq!(d(3), 40);
        assert_eq!(d(6), 320);
        assert_eq!(d(7), 360);
        assert_eq!(d(40), 360);
    }

    #[test]
    fn remaining_counts_down_and_success_resets() {
        let r = Records::default();
        let t0 = Timestamp::from_second(1_000).unwrap_or(Timestamp::UNIX_EPOCH);
        r.failure("ns/j", t0);
        let later = Timestamp::from_second(1_004).unwrap_or(Timestamp::UNIX_EPOCH);
        assert_eq!(
            r.remaining("ns/j", later, DEFAULT_BASE, DEFAULT_MAX),
            Duration::from_secs(6)
        );
        r.failure("ns/j", later);
        assert_eq!(
            r.remaining("ns/j", later, DEFAULT_BASE, DEFAULT_MAX),
            Duration::from_secs(20)
        );
        r.success("ns/j");
        assert_eq!(
            r.remaining("ns/j", later, DEFAULT_BASE, DEFAULT_MAX),
            Duration::ZERO
        );
    }
}
