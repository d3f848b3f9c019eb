//! Controller expectations: after a sync creates or deletes pods, the next
//! sync waits until the watch has shown those changes (or a timeout
//! passes), so a slow watch never makes the controller act twice.
//!
//! A pod's creation is observed the first time its uid is seen; its
//! deletion once, when it starts terminating or disappears, whichever
//! comes first.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long unmet expectations are trusted (upstream: 5 minutes).
pub const TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug)]
struct Expect {
    adds: i64,
    dels: i64,
    at: Instant,
}

#[derive(Default, Debug)]
struct Inner {
    per_key: HashMap<String, Expect>,
    known: HashSet<String>,
    leaving: HashSet<String>,
}

/// Pending creations and deletions per controller key.
#[derive(Default, Debug)]
pub struct Expectations {
    inner: Mutex<Inner>,
}

impl Expectations {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True when the key has no unmet expectations (or they timed out).
    pub fn satisfied(&self, key: &str) -> bool {
        match self.lock().per_key.get(key) {
            None => true,
            Some(e) => (e.adds <= 0 && e.dels <= 0) || e.at.elapsed() > TIMEOUT,
        }
    }

    /// Expect `n` creations.
    pub fn expect_creations(&self, key: &str, n: usize) {
        self.lock().per_key.insert(
            key.to_string(),
            Expect {
                adds: n as i64,
                dels: 0,
                at: Instant::now(),
            },
        );
    }

    /// Expect `n` deletions.
    pub fn expect_deletions(&self, key: &str, n: usize) {
        self.lock().per_key.insert(
            key.to_string(),
            Expect {
                adds: 0,
                dels: n as i64,
                at: Instant::now(),
            },
        );
    }

    /// A pod owned by `key` was seen; counts as a creation the first time.
    pub fn creation_observed(&self, key: &str, uid: &str) {
        let mut inner = self.lock();
        if inner.known.insert(uid.to_string())
            && let Some(e) = inner.per_key.get_mut(key)
        {
            e.adds -= 1;
        }
    }

    /// `n` expected creations will never happen (the create calls failed).
    pub fn creation_observed_n(&self, key: &str, n: usize) {
        if let Some(e) = self.lock().per_key.get_mut(key) {
            e.adds -= n as i64;
        }
    }

    /// A pod owned by `key` started terminating or disappeared; counts once.
    pub fn pod_leaving(&self, key: &str, uid: &str, gone: bool) {
        let mut inner = self.lock();
        let first = inner.leaving.insert(uid.to_string());
        if gone {
            inner.leaving.remove(uid);
            inner.known.remove(uid);
        }
        if first && let Some(e) = inner.per_key.get_mut(key) {
            e.dels -= 1;
        }
    }

    /// An expected deletion will not be observed (the delete call failed).
    pub fn deletion_observed(&self, key: &str) {
        if let Some(e) = self.lock().per_key.get_mut(key) {
            e.dels -= 1;
        }
    }

    /// Drop a key's expectations (its controller object is gone).
    pub fn forget(&self, key: &str) {
        self.lock().per_key.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creations_are_met_once_each_pod_is_seen_once() {
        let e = Expectations::default();
        e.expect_creations("ns/rs", 2);
        assert!(!e.satisfied("ns/rs"));
        e.creation_observed("ns/rs", "a");
        e.creation_observed("ns/rs", "a");
        assert!(
            !e.satisfied("ns/rs"),
            "an update of the same pod is not a second creation"
        );
        e.creation_observed("ns/rs", "b");
        assert!(e.satisfied("ns/rs"));
    }

    #[test]
    fn a_deletion_counts_once_whether_terminating_or_gone() {
        let e = Expectations::default();
        e.expect_deletions("k", 1);
        e.pod_leaving("k", "a", false);
        e.pod_leaving("k", "a", true);
        assert!(e.satisfied("k"));
        e.expect_deletions("k", 1);
        e.pod_leaving("k", "b", true);
        assert!(e.satisfied("k"));
    }
}
