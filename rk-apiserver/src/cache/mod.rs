//! The watch cache: per resource, the current objects as serialized bytes (plus
//! the few fields selectors need) and a ring of recent events.
//!
//! One storage watch on `/registry/` feeds every resource's cache through the
//! [`dispatch`] task, so all caches advance together and any cache can tell the
//! newest revision it reflects. Lists with `resourceVersion=0`, `NotOlderThan`
//! and (after waiting for the cache to catch up) consistent lists are served
//! from here, as are all watches. Each event's object is serialized once and
//! the same bytes go to every watcher.

pub mod dispatch;
pub mod hints;
pub mod object;

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use tokio::sync::mpsc;

pub use dispatch::CacheSet;
pub use object::CachedObject;

use crate::storage::Revision;

/// Watch event types, as they appear on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// `ADDED`.
    Added,
    /// `MODIFIED`.
    Modified,
    /// `DELETED`.
    Deleted,
}

impl EventType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change to one object, shared by every watcher.
#[derive(Debug)]
pub struct CachedEvent {
    /// What happened.
    pub kind: EventType,
    /// The object after the change (for a delete: its last state, with the
    /// delete's resourceVersion).
    pub object: Arc<CachedObject>,
    /// The object before the change.
    pub prev: Option<Arc<CachedObject>>,
    /// The revision of the change.
    pub revision: Revision,
}

/// How many events a cache keeps for watches that resume from the past.
pub const DEFAULT_EVENT_CAPACITY: usize = 10_000;
/// Buffered events per watcher before it is dropped as too slow.
pub const WATCHER_BUFFER: usize = 10_000;

/// Why a watch could not start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchStartError {
    /// The revision asked for is older than the cache's history.
    TooOld {
        /// The revision asked for.
        requested: Revision,
        /// The oldest revision a watch can start after.
        oldest: Revision,
    },
}

struct Inner {
    objects: BTreeMap<String, Arc<CachedObject>>,
    events: VecDeque<Arc<CachedEvent>>,
    /// Revision of the last change applied to this resource.
    rev: Revision,
    /// A watch may start after any revision >= this one.
    oldest: Revision,
    watchers: Vec<mpsc::Sender<Arc<CachedEvent>>>,
    /// The dispatcher no longer feeds this cache (it was replaced or its
    /// resource removed): a watch that starts here ends at once, so its
    /// client comes back to the current cache.
    closed: bool,
}

/// The cache of one resource.
pub struct WatchCache {
    prefix: String,
    kind: String,
    capacity: usize,
    global: Arc<AtomicI64>,
    inner: RwLock<Inner>,
}

/// A consistent snapshot of a cache's objects.
pub struct Snapshot {
    /// Objects in key order.
    pub objects: Vec<Arc<CachedObject>>,
    /// The revision the snapshot reflects.
    pub revision: Revision,
}

/// A started watch: the events to replay first, then a live channel.
pub struct CacheWatch {
    /// Events to send before the live ones (replayed history or initial state).
    pub initial: Vec<Arc<CachedEvent>>,
    /// Live events. Closed when the watcher falls too far behind.
    pub live: mpsc::Receiver<Arc<CachedEvent>>,
    /// The revision the initial events bring the watcher to.
    pub revision: Revision,
}

impl WatchCache {
    /// A cache for keys under `prefix` holding objects of `kind`, initialised
    /// from `items` read at revision `rev`.
    pub fn new(
        prefix: String,
        kind: String,
        items: Vec<Arc<CachedObject>>,
        rev: Revision,
        global: Arc<AtomicI64>,
    ) -> Self {
        let objects = items.into_iter().map(|o| (o.key.clone(), o)).collect();
        Self {
            prefix,
            kind,
            capacity: DEFAULT_EVENT_CAPACITY,
            global,
            inner: RwLock::new(Inner {
                objects,
                events: VecDeque::new(),
                rev,
                oldest: rev,
                watchers: Vec::new(),
                closed: false,
            }),
        }
    }

    /// The key prefix this cache holds.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The kind of the cached objects.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The newest revision the cache reflects (its own last change, or the
    /// global dispatch revision if newer).
    pub fn revision(&self) -> Revision {
        let inner = self.read();
        inner.rev.max(self.global.load(Ordering::Acquire))
    }

    /// Apply one change. Called by the dispatcher, in revision order.
    pub fn apply(&self, kind: EventType, object: Arc<CachedObject>, revision: Revision) {
        let mut inner = self.write();
        let prev = match kind {
            EventType::Deleted => inner.objects.remove(&object.key),
            _ => inner.objects.insert(object.key.clone(), object.clone()),
        };
        let kind = match (kind, &prev) {
            (EventType::Deleted, _) => EventType::Deleted,
            (_, Some(_)) => EventType::Modified,
            (_, None) => EventType::Added,
        };
        let event = Arc::new(CachedEvent {
            kind,
            object,
            prev,
            revision,
        });
        inner.rev = revision;
        if inner.events.len() >= self.capacity
            && let Some(old) = inner.events.pop_front()
        {
            inner.oldest = old.revision;
        }
        inner.events.push_back(event.clone());
        inner.watchers.retain(|w| match w.try_send(event.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(prefix = %self.prefix, "dropping a watcher that fell behind");
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
    }

    /// Objects under `key_prefix` (the resource prefix, or a namespace within
    /// it), in key order, with the revision they reflect.
    pub fn snapshot(&self, key_prefix: &str) -> Snapshot {
        let inner = self.read();
        let objects = inner
            .objects
            .range(key_prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(key_prefix))
            .map(|(_, v)| v.clone())
            .collect();
        Snapshot {
            objects,
            revision: inner.rev.max(self.global.load(Ordering::Acquire)),
        }
    }

    /// One object by key.
    pub fn get(&self, key: &str) -> Option<Arc<CachedObject>> {
        self.read().objects.get(key).cloned()
    }

    /// Whether [`Self::close_watchers`] retired this cache (the cache set
    /// dropped or rebuilt it; its objects are no longer kept current).
    pub fn is_closed(&self) -> bool {
        self.read().closed
    }

    /// Number of cached objects.
    pub fn len(&self) -> usize {
        self.read().objects.len()
    }

    /// True when the cache holds no objects.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held by cached objects' serialized forms.
    pub fn object_bytes(&self) -> usize {
        self.read().objects.values().map(|o| o.bytes.len()).sum()
    }

    /// Start a watch. With `after = None`, the watch begins with a synthetic
    /// `ADDED` for every current object; otherwise it replays every change
    /// after that revision, or fails if the history no longer reaches back.
    pub fn watch(&self, after: Option<Revision>) -> Result<CacheWatch, WatchStartError> {
        let (tx, rx) = mpsc::channel(WATCHER_BUFFER);
        let mut inner = self.write();
        let current = inner.rev.max(self.global.load(Ordering::Acquire));
        let initial = match after {
            None => inner
                .objects
                .values()
                .map(|o| {
                    Arc::new(CachedEvent {
                        kind: EventType::Added,
                        object: o.clone(),
                        prev: None,
                        revision: o.revision,
                    })
                })
                .collect(),
            Some(rev) if rev >= current => Vec::new(),
            Some(rev) if rev < inner.oldest => {
                return Err(WatchStartError::TooOld {
                    requested: rev,
                    oldest: inner.oldest,
                });
            }
            Some(rev) => {
                let start = inner.events.partition_point(|e| e.revision <= rev);
                inner.events.range(start..).cloned().collect()
            }
        };
        if !inner.closed {
            inner.watchers.push(tx);
        }
        Ok(CacheWatch {
            initial,
            live: rx,
            revision: current,
        })
    }

    /// The revision a bookmark may carry for a watcher whose channel is empty:
    /// every change up to it has been delivered. Returns `None` if events are
    /// still queued for the watcher.
    pub fn bookmark_revision(&self, live: &mpsc::Receiver<Arc<CachedEvent>>) -> Option<Revision> {
        let inner = self.read();
        if !live.is_empty() {
            return None;
        }
        Some(inner.rev.max(self.global.load(Ordering::Acquire)))
    }

    /// Estimated memory of the cache (current objects, plus older versions
    /// and event records kept only by the event ring) and the JSON bytes of
    /// the current objects, for comparing the two.
    pub fn memory(&self) -> (usize, usize) {
        let inner = self.read();
        let mut total: usize = inner.objects.values().map(|o| o.memory_bytes() + 64).sum();
        let json: usize = inner.objects.values().map(|o| o.bytes.len()).sum();
        for e in &inner.events {
            total += std::mem::size_of::<CachedEvent>() + 16 + 8;
            let current = inner
                .objects
                .get(&e.object.key)
                .is_some_and(|o| Arc::ptr_eq(o, &e.object));
            if !current {
                total += e.object.memory_bytes();
            }
        }
        (total, json)
    }

    /// Number of live watchers.
    pub fn watcher_count(&self) -> usize {
        self.read()
            .watchers
            .iter()
            .filter(|w| !w.is_closed())
            .count()
    }

    /// Drop every watcher (their streams end) and end any watch started
    /// later at once — used when the resource goes away or the cache is
    /// rebuilt (a request may still hold this cache).
    pub fn close_watchers(&self) {
        let mut inner = self.write();
        inner.watchers.clear();
        inner.closed = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(key: &str, rev: Revision) -> Arc<CachedObject> {
        let v = serde_json::json!({"metadata": {"name": key.rsplit('/').next().unwrap_or(""), "namespace": "ns", "resourceVersion": rev.to_string(), "labels": {"app": "x"}}});
        Arc::new(CachedObject::from_value(
            key.to_string(),
            "ConfigMap",
            &v,
            rev,
        ))
    }

    fn cache() -> WatchCache {
        WatchCache::new(
            "/registry/configmaps/".into(),
            "ConfigMap".into(),
            vec![],
            1,
            Arc::new(AtomicI64::new(1)),
        )
    }

    #[test]
    fn watch_replays_history_after_revision_then_goes_live() {
        let c = cache();
        c.apply(EventType::Added, obj("/registry/configmaps/ns/a", 2), 2);
        c.apply(EventType::Added, obj("/registry/configmaps/ns/b", 3), 3);
        let mut w = c.watch(Some(2)).unwrap();
        assert_eq!(w.initial.len(), 1);
        assert_eq!(w.initial[0].revision, 3);
        c.apply(EventType::Modified, obj("/registry/configmaps/ns/a", 4), 4);
        let ev = w.live.try_recv().unwrap();
        assert_eq!((ev.kind, ev.revision), (EventType::Modified, 4));
        assert!(ev.prev.is_some());
    }

    #[test]
    fn a_watch_started_on_a_closed_cache_ends_at_once() {
        let c = cache();
        c.close_watchers();
        let mut w = c.watch(Some(1)).unwrap();
        c.apply(EventType::Added, obj("/registry/configmaps/ns/late", 9), 9);
        assert!(w.live.try_recv().is_err());
        assert!(
            w.live.is_closed(),
            "nothing feeds the watch: its stream ends"
        );
    }

    #[test]
    fn watch_from_before_history_is_too_old() {
        let c = WatchCache {
            capacity: 2,
            ..cache()
        };
        for r in 2..6 {
            c.apply(
                EventType::Added,
                obj(&format!("/registry/configmaps/ns/o{r}"), r),
                r,
            );
        }
        assert!(matches!(
            c.watch(Some(2)),
            Err(WatchStartError::TooOld { .. })
        ));
        assert!(c.watch(Some(4)).is_ok());
    }

    #[test]
    fn snapshot_is_limited_to_the_namespace_prefix() {
        let c = cache();
        c.apply(EventType::Added, obj("/registry/configmaps/ns/a", 2), 2);
        c.apply(EventType::Added, obj("/registry/configmaps/ns2/b", 3), 3);
        let s = c.snapshot("/registry/configmaps/ns/");
        assert_eq!(s.objects.len(), 1);
        assert_eq!(s.revision, 3);
    }

    #[test]
    fn delete_then_add_reports_added_again() {
        let c = cache();
        c.apply(EventType::Added, obj("/registry/configmaps/ns/a", 2), 2);
        c.apply(EventType::Deleted, obj("/registry/configmaps/ns/a", 3), 3);
        let mut w = c.watch(Some(3)).unwrap();
        c.apply(EventType::Modified, obj("/registry/configmaps/ns/a", 4), 4);
        assert_eq!(w.live.try_recv().unwrap().kind, EventType::Added);
    }
}
