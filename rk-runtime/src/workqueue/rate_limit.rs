//! Rate limiters for [`WorkQueue::add_rate_limited`](super::WorkQueue::add_rate_limited),
//! with client-go's behaviour (`util/workqueue/default_rate_limiters.go`).
//!
//! A [`RateLimiter`] answers "how long should this item wait before it is
//! processed again?". Limiters compose: [`MaxOf`] waits as long as the
//! slowest of its parts, which is how [`default_controller_rate_limiter`]
//! combines a per-item exponential backoff with an overall token bucket.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Decides how long an item waits before it is retried.
pub trait RateLimiter<T>: Send + Sync {
    /// The delay before `item` may be processed again. Calling this counts
    /// as one more failure of `item`.
    fn when(&self, item: &T) -> Duration;
    /// Stop tracking `item`: its next failure starts again from the base delay.
    fn forget(&self, item: &T);
    /// How many times `item` has been rate-limited since it was last forgotten.
    fn num_requeues(&self, item: &T) -> u32;
}

/// Per-item exponential backoff: `base * 2^failures`, capped at `max`.
///
/// Each item's failure count grows with every [`RateLimiter::when`] and is
/// reset by [`RateLimiter::forget`].
pub struct ItemExponentialBackoff<T> {
    base: Duration,
    max: Duration,
    failures: Mutex<HashMap<T, u32>>,
}

impl<T> ItemExponentialBackoff<T> {
    /// A backoff from `base` doubling up to `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            failures: Mutex::new(HashMap::new()),
        }
    }
}

impl<T: Eq + Hash + Clone + Send> RateLimiter<T> for ItemExponentialBackoff<T> {
    fn when(&self, item: &T) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let count = failures.entry(item.clone()).or_insert(0);
        let exponent = *count;
        *count = count.saturating_add(1);
        // 2^exponent overflows quickly; once past 2^40 the cap always wins.
        if exponent >= 40 {
            return self.max;
        }
        let factor = 1u64 << exponent;
        let nanos = (self.base.as_nanos()).saturating_mul(u128::from(factor));
        let delay = Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
        delay.min(self.max)
    }

    fn forget(&self, item: &T) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(item);
    }

    fn num_requeues(&self, item: &T) -> u32 {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(item)
            .copied()
            .unwrap_or(0)
    }
}

/// A token bucket: `qps` tokens per second, holding at most `burst`.
///
/// [`TokenBucket::reserve`] always takes a token and returns how long the
/// caller must wait for it to be valid (zero while tokens remain), like
/// `golang.org/x/time/rate`'s `Reserve`. The bucket is shared by every item,
/// so `forget` and `num_requeues` do nothing.
#[derive(Debug)]
pub struct TokenBucket {
    qps: f64,
    burst: f64,
    state: Mutex<BucketState>,
}

#[derive(Debug)]
struct BucketState {
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket refilled at `qps` tokens per second, holding `burst`.
    /// A `qps` of zero or less means no limit.
    pub fn new(qps: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            qps,
            burst,
            state: Mutex::new(BucketState {
                tokens: burst,
                last: Instant::now(),
            }),
        }
    }

    /// Take one token; returns how long to wait before using it.
    pub fn reserve(&self) -> Duration {
        if self.qps <= 0.0 || !self.qps.is_finite() {
            return Duration::ZERO;
        }
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(state.last).as_secs_f64();
        state.last = now;
        state.tokens = (state.tokens + elapsed * self.qps).min(self.burst);
        state.tokens -= 1.0;
        if state.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-state.tokens / self.qps)
        }
    }

    /// Wait until a token is available, then take it.
    pub async fn acquire(&self) {
        let wait = self.reserve();
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

impl<T> RateLimiter<T> for TokenBucket {
    fn when(&self, _item: &T) -> Duration {
        self.reserve()
    }

    fn forget(&self, _item: &T) {}

    fn num_requeues(&self, _item: &T) -> u32 {
        0
    }
}

/// Waits as long as the slowest of its limiters; counts requeues as the
/// highest of them.
pub struct MaxOf<T> {
    limiters: Vec<Box<dyn RateLimiter<T>>>,
}

impl<T> MaxOf<T> {
    /// Combine `limiters`.
    pub fn new(limiters: Vec<Box<dyn RateLimiter<T>>>) -> Self {
        Self { limiters }
    }
}

impl<T> RateLimiter<T> for MaxOf<T> {
    fn when(&self, item: &T) -> Duration {
        // Every limiter must see the failure, so no short-circuiting.
        self.limiters
            .iter()
            .map(|l| l.when(item))
            .max()
            .unwrap_or(Duration::ZERO)
    }

    fn forget(&self, item: &T) {
        for l in &self.limiters {
            l.forget(item);
        }
    }

    fn num_requeues(&self, item: &T) -> u32 {
        self.limiters
            .iter()
            .map(|l| l.num_requeues(item))
            .max()
            .unwrap_or(0)
    }
}

/// client-go's `DefaultControllerRateLimiter`: per-item exponential backoff
/// from 5 ms to 1000 s, combined with an overall bucket of 10 qps, burst 100.
pub fn default_controller_rate_limiter<T>() -> MaxOf<T>
where
    T: Eq + Hash + Clone + Send + Sync + 'static,
{
    MaxOf::new(vec![
        Box::new(ItemExponentialBackoff::new(
            Duration::from_millis(5),
            Duration::from_secs(1000),
        )),
        Box::new(TokenBucket::new(10.0, 100)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_backoff_doubles_and_caps() {
        let l = ItemExponentialBackoff::new(Duration::from_millis(5), Duration::from_millis(30));
        assert_eq!(l.when(&"a"), Duration::from_millis(5));
        assert_eq!(l.when(&"a"), Duration::from_millis(10));
        assert_eq!(l.when(&"a"), Duration::from_millis(20));
        assert_eq!(l.when(&"a"), Duration::from_millis(30));
        assert_eq!(l.num_requeues(&"a"), 4);
        l.forget(&"a");
        assert_eq!(l.num_requeues(&"a"), 0);
        assert_eq!(l.when(&"a"), Duration::from_millis(5));
    }

    #[test]
    fn bucket_allows_burst_then_spaces_tokens() {
        let b = TokenBucket::new(10.0, 2);
        assert_eq!(b.reserve(), Duration::ZERO);
        assert_eq!(b.reserve(), Duration::ZERO);
        let third = b.reserve();
        assert!(third > Duration::from_millis(80) && third <= Duration::from_millis(100));
    }
}
