//! [`Expectations`]: what a controller is waiting to see in its caches
//! (`pkg/controller`'s `ControllerExpectations`).
//!
//! A controller that creates or deletes objects records how many adds and
//! deletes it expects for the owner's key; the informer's handlers lower the
//! counts as they observe them. Until the counts reach zero (or the record is
//! older than the timeout), the caches are known to be stale for that owner
//! and the controller should not act again, or it would create twice.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long expectations are trusted before they are treated as satisfied
/// (upstream's `ExpectationsTimeout`: 5 minutes).
pub const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(5 * 60);

#[derive(Debug, Clone, Copy)]
struct Record {
    adds: i64,
    deletes: i64,
    set_at: Instant,
}

/// Expected adds and deletes per controller key.
pub struct Expectations<T> {
    records: Mutex<HashMap<T, Record>>,
    timeout: Duration,
}

impl<T: Eq + Hash + Clone> Default for Expectations<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Eq + Hash + Clone> Expectations<T> {
    /// Expectations with upstream's 5-minute timeout.
    pub fn new() -> Self {
        Self::with_timeout(EXPECTATIONS_TIMEOUT)
    }

    /// Expectations that expire after `timeout`.
    pub fn with_timeout(timeout: Duration) -> Self {
        Self {
            records: Mutex::new(HashMap::new()),
            timeout,
        }
    }

    fn records(&self) -> MutexGuard<'_, HashMap<T, Record>> {
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the controller may act for `key`: no record, every expected
    /// add and delete observed, or the record expired.
    pub fn satisfied(&self, key: &T) -> bool {
        match self.records().get(key) {
            None => true,
            Some(r) => (r.adds <= 0 && r.deletes <= 0) || r.set_at.elapsed() > self.timeout,
        }
    }

    /// Expect `adds` creations and `deletes` deletions for `key`, replacing
    /// whatever was expected.
    pub fn set(&self, key: T, adds: i64, deletes: i64) {
        self.records().insert(
            key,
            Record {
                adds,
                deletes,
                set_at: Instant::now(),
            },
        );
    }

    /// Expect `adds` creations for `key`.
    pub fn expect_creations(&self, key: T, adds: i64) {
        self.set(key, adds, 0);
    }

    /// Expect `deletes` deletions for `key`.
    pub fn expect_deletions(&self, key: T, deletes: i64) {
        self.set(key, 0, deletes);
    }

    /// Raise the expected counts (without resetting the timestamp).
    pub fn raise(&self, key: &T, adds: i64, deletes: i64) {
        if let Some(r) = self.records().get_mut(key) {
            r.adds += adds;
            r.deletes += deletes;
        }
    }

    /// Lower the expected counts: something was observed, or a request failed
    /// and will never be observed.
    pub fn lower(&self, key: &T, adds: i64, deletes: i64) {
        if let Some(r) = self.records().get_mut(key) {
            r.adds -= adds;
            r.deletes -= deletes;
        }
    }

    /// An expected creation was observed.
    pub fn creation_observed(&self, key: &T) {
        self.lower(key, 1, 0);
    }

    /// An expected deletion was observed.
    pub fn deletion_observed(&self, key: &T) {
        self.lower(key, 0, 1);
    }

    /// Forget `key` (its owner was deleted).
    pub fn delete(&self, key: &T) {
        self.records().remove(key);
    }

    /// The outstanding (adds, deletes) for `key`, if any are recorded.
    pub fn pending(&self, key: &T) -> Option<(i64, i64)> {
        self.records().get(key).map(|r| (r.adds, r.deletes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn satisfied_once_every_expected_event_is_observed() {
        let e = Expectations::new();
        assert!(e.satisfied(&"rs"));
        e.expect_creations("rs", 2);
        assert!(!e.satisfied(&"rs"));
        e.creation_observed(&"rs");
        assert!(!e.satisfied(&"rs"));
        e.creation_observed(&"rs");
        assert!(e.satisfied(&"rs"));
    }

    #[test]
    fn expired_expectations_count_as_satisfied() {
        let e = Expectations::with_timeout(Duration::ZERO);
        e.expect_deletions("rs", 3);
        std::thread::sleep(Duration::from_millis(2));
        assert!(e.satisfied(&"rs"));
    }
}
