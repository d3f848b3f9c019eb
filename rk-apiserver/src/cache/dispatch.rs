//! The set of watch caches and the one task that feeds them from storage.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;
use tokio::sync::{RwLock, watch};

use super::hints::{PendingWrite, PendingWrites};
use super::{CachedObject, EventType, WatchCache};
use crate::storage::{Event, EventKind, KeyValue, ListOptions, Revision, Storage, StorageError};

/// Every resource's watch cache, fed by one storage watch on `/registry/`.
pub struct CacheSet {
    storage: Arc<dyn Storage>,
    global: Arc<AtomicI64>,
    /// By storage prefix; every request asks for a few (its own resource's,
    /// the namespace's, admission configuration's), so foldhash.
    caches: RwLock<HashMap<String, Arc<WatchCache>, foldhash::fast::RandomState>>,
    progress: watch::Sender<Revision>,
    /// Writes the registry announced: the dispatcher takes their objects
    /// instead of decoding the stored bytes again.
    pending: PendingWrites,
}

/// Turn a stored value into the object clients see: JSON with
/// `metadata.resourceVersion` set to the revision.
pub fn decode_stored(kv_value: &[u8], revision: Revision) -> Result<Value, StorageError> {
    let mut value: Value = serde_json::from_slice(kv_value)
        .map_err(|e| StorageError::Backend(format!("stored object is not JSON: {e}")))?;
    if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert(
            "resourceVersion".into(),
            Value::String(revision.to_string()),
        );
    }
    Ok(value)
}

fn cached(kv: &KeyValue, kind: &str, revision: Revision) -> Option<Arc<CachedObject>> {
    match decode_stored(&kv.value, revision) {
        Ok(v) => Some(Arc::new(CachedObject::from_value(
            kv.key.clone(),
            kind,
            &v,
            revision,
        ))),
        Err(e) => {
            tracing::error!(key = %kv.key, error = %e, "skipping undecodable stored object");
            None
        }
    }
}

/// The prefix a key belongs to, among the registered ones: keys look like
/// `<prefix><namespace>/<name>` or `<prefix><name>`.
fn candidate_prefixes(key: &str) -> impl Iterator<Item = &str> {
    key.char_indices()
        .filter(|(_, c)| *c == '/')
        .map(move |(i, _)| &key[..=i])
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
}

impl CacheSet {
    /// Start the dispatcher from the store's current revision.
    pub async fn start(storage: Arc<dyn Storage>) -> Result<Arc<Self>, StorageError> {
        let rev = storage.current_revision().await?;
        // Open the storage watch before anyone can write, so no change made
        // after `rev` is missed even if the dispatcher task starts late.
        let first = storage.watch("/registry/", rev).await?;
        let (progress, _) = watch::channel(rev);
        let set = Arc::new(Self {
            storage,
            global: Arc::new(AtomicI64::new(rev)),
            caches: RwLock::new(HashMap::default()),
            progress,
            pending: Default::default(),
        });
        let weak = Arc::downgrade(&set);
        tokio::spawn(async move { dispatch_loop(weak, Some(first)).await });
        Ok(set)
    }

    /// The newest revision dispatched to every cache.
    pub fn revision(&self) -> Revision {
        self.global.load(Ordering::Acquire)
    }

    /// Register a cache for keys under `prefix` holding `kind` objects,
    /// initialised from storage at the current dispatch revision.
    pub async fn add(&self, prefix: &str, kind: &str) -> Result<Arc<WatchCache>, StorageError> {
        let mut caches = self.caches.write().await;
        if let Some(c) = caches.get(prefix) {
            return Ok(c.clone());
        }
        let rev = self.global.load(Ordering::Acquire);
        let list = self
            .storage
            .list(
                prefix,
                ListOptions {
                    revision: Some(rev).filter(|r| *r > 0),
                    ..Default::default()
                },
            )
            .await?;
        let items = list
            .kvs
            .iter()
            .filter_map(|kv| cached(kv, kind, kv.mod_revision))
            .collect();
        let cache = Arc::new(WatchCache::new(
            prefix.to_string(),
            kind.to_string(),
            items,
            rev,
            self.global.clone(),
        ));
        caches.insert(prefix.to_string(), cache.clone());
        Ok(cache)
    }

    /// Announce a write the registry is about to make: `object` (without
    /// `resourceVersion`) stored under `key` as the buffer `stored`. Hand
    /// the result to [`CacheSet::written`] or [`CacheSet::abandon`].
    pub fn announce(
        &self,
        key: &str,
        kind: &str,
        stored: &bytes::Bytes,
        rv_slot: Option<super::object::RvSlot>,
        object: Value,
    ) -> Arc<PendingWrite> {
        self.pending.announce(key, kind, stored, rv_slot, object)
    }

    /// The announced write is stored at `rev`: the object with its
    /// `resourceVersion`, and its bytes (serialized once for the client
    /// and the cache).
    pub fn written(
        &self,
        pending: &Arc<PendingWrite>,
        rev: Revision,
    ) -> Option<(Value, bytes::Bytes)> {
        self.pending.written(pending, rev, self.revision() >= rev)
    }

    /// The announced write failed: the object back.
    pub fn abandon(&self, pending: &Arc<PendingWrite>) -> Option<Value> {
        self.pending.abandon(pending)
    }

    /// Estimated memory of every cache and the JSON bytes of their objects.
    pub async fn memory(&self) -> (usize, usize) {
        let caches: Vec<Arc<WatchCache>> = self.caches.read().await.values().cloned().collect();
        caches
            .iter()
            .map(|c| c.memory())
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    }

    /// Drop the cache for `prefix`; its watchers' streams end.
    pub async fn remove(&self, prefix: &str) {
        if let Some(c) = self.caches.write().await.remove(prefix) {
            c.close_watchers();
        }
    }

    /// The cache for `prefix`.
    pub async fn get(&self, prefix: &str) -> Option<Arc<WatchCache>> {
        self.caches.read().await.get(prefix).cloned()
    }

    /// Wait until every change up to `rev` has been dispatched. Returns false
    /// on timeout.
    pub async fn wait_for(&self, rev: Revision, timeout: Duration) -> bool {
        if self.revision() >= rev {
            return true;
        }
        let mut rx = self.progress.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|r| *r >= rev))
            .await
            .map(|r| r.is_ok())
            .unwrap_or(false)
    }

    /// Wait until the caches reflect the store's current revision.
    pub async fn sync_with_storage(&self, timeout: Duration) -> Result<bool, StorageError> {
        let rev = self.storage.current_revision().await?;
        Ok(self.wait_for(rev, timeout).await)
    }

    async fn apply(&self, event: Event) {
        let rev = event.revision();
        let caches = self.caches.read().await;
        let cache = candidate_prefixes(&event.kv.key).find_map(|p| caches.get(p));
        tracing::trace!(key = %event.kv.key, rev, cached = cache.is_some(), "dispatch");
        // Taken whether or not a cache wants it, so no announcement waits
        // for an event that has passed.
        let announced = self.pending.take(
            &event.kv.key,
            &event.kv.value,
            event.kind == EventKind::Delete,
        );
        if let Some(cache) = cache {
            let kind = match event.kind {
                EventKind::Put => EventType::Modified,
                EventKind::Delete => EventType::Deleted,
            };
            // For a delete, the event carries the key's last value.
            if let Some(obj) = announced
                .and_then(|p| p.build(rev))
                .or_else(|| cached(&event.kv, cache.kind(), rev))
            {
                cache.apply(kind, obj, rev);
            }
        }
        self.global.store(rev, Ordering::Release);
        drop(caches);
        self.progress.send_replace(rev);
    }

    async fn rebuild_all(&self) -> Result<(), StorageError> {
        let mut caches = self.caches.write().await;
        self.pending.clear();
        let rev = self.storage.current_revision().await?;
        for (prefix, cache) in caches.iter_mut() {
            let list = self
                .storage
                .list(
                    prefix,
                    ListOptions {
                        revision: Some(rev),
                        ..Default::default()
                    },
                )
                .await?;
            let items = list
                .kvs
                .iter()
                .filter_map(|kv| cached(kv, cache.kind(), kv.mod_revision))
                .collect();
            cache.close_watchers();
            *cache = Arc::new(WatchCache::new(
                prefix.clone(),
                cache.kind().to_string(),
                items,
                rev,
                self.global.clone(),
            ));
        }
        self.global.store(rev, Ordering::Release);
        self.progress.send_replace(rev);
        Ok(())
    }
}

async fn dispatch_loop(
    set: std::sync::Weak<CacheSet>,
    mut first: Option<crate::storage::WatchStream>,
) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let stream = match first.take() {
            Some(st) => Ok(st),
            None => {
                let Some(s) = set.upgrade() else { return };
                let after = s.revision();
                s.storage.watch("/registry/", after).await
            }
        };
        let mut stream = match stream {
            Ok(st) => st,
            Err(StorageError::Compacted { .. }) => {
                tracing::warn!("watch cache fell behind compaction; rebuilding every cache");
                if let Some(s) = set.upgrade()
                    && let Err(e) = s.rebuild_all().await
                {
                    tracing::error!(error = %e, "rebuilding watch caches failed");
                }
                continue;
            }
            Err(StorageError::Closed) => return,
            Err(e) => {
                tracing::error!(error = %e, "watch cache: storage watch failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(50);
        while let Some(item) = stream.next().await {
            let Some(s) = set.upgrade() else { return };
            match item {
                Ok(ev) => s.apply(ev).await,
                Err(StorageError::Closed) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "watch cache: storage watch ended; resuming");
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidate_prefixes_go_from_longest_to_shortest() {
        let v: Vec<&str> = candidate_prefixes("/registry/pods/ns/a").collect();
        assert_eq!(
            v,
            vec!["/registry/pods/ns/", "/registry/pods/", "/registry/", "/"]
        );
    }
}
