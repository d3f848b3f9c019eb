//! Exponential backoff with jitter, for retrying failed requests.

use std::time::Duration;

use rand::Rng;

/// Exponential backoff: `initial * factor^n`, capped at `max`, each delay
/// stretched by a random fraction up to `jitter` (client-go's `wait.Backoff`).
#[derive(Debug, Clone)]
pub struct Backoff {
    /// The first delay.
    pub initial: Duration,
    /// The largest delay before jitter.
    pub max: Duration,
    /// Growth per attempt.
    pub factor: f64,
    /// Extra random delay, as a fraction of the delay (0 for none).
    pub jitter: f64,
    attempt: u32,
}

impl Default for Backoff {
    /// 800 ms doubling to 30 s with up to 100% jitter, as client-go's reflector.
    fn default() -> Self {
        Self::new(Duration::from_millis(800), Duration::from_secs(30))
    }
}

impl Backoff {
    /// A doubling backoff from `initial` to `max` with up to 100% jitter.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            factor: 2.0,
            jitter: 1.0,
            attempt: 0,
        }
    }

    /// The next delay; each call grows it.
    pub fn next_delay(&mut self) -> Duration {
        let exponent = i32::try_from(self.attempt).unwrap_or(i32::MAX);
        self.attempt = self.attempt.saturating_add(1);
        let base = self.initial.as_secs_f64() * self.factor.max(1.0).powi(exponent);
        let base = base.min(self.max.as_secs_f64());
        let jitter = if self.jitter > 0.0 {
            rand::rng().random::<f64>() * self.jitter * base
        } else {
            0.0
        };
        // A user-set NaN or infinite factor must not panic: fall back to `max`.
        Duration::try_from_secs_f64((base + jitter).max(0.0)).unwrap_or(self.max)
    }

    /// Start again from the initial delay (after a success).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(10), Duration::from_millis(50));
        b.jitter = 0.0;
        let delays: Vec<_> = (0..5).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, [10, 20, 40, 50, 50]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(10));
    }

    #[test]
    fn jitter_stays_within_its_fraction() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        for _ in 0..100 {
            b.reset();
            let d = b.next_delay();
            assert!(
                d >= Duration::from_millis(100) && d <= Duration::from_millis(200),
                "{d:?}"
            );
        }
    }

    #[test]
    fn nonsense_settings_do_not_panic() {
        let mut b = Backoff::new(Duration::from_millis(1), Duration::from_secs(1));
        b.jitter = f64::NAN;
        assert!(b.next_delay() <= Duration::from_secs(1));
        b.factor = f64::INFINITY;
        b.jitter = 0.0;
        b.next_delay();
        assert_eq!(b.next_delay(), Duration::from_secs(1));
    }
}
