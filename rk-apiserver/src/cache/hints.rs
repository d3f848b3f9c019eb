//! Writes the registry announces to the dispatcher before making them.
//!
//! The registry holds each object it writes as a `Value`; the dispatcher
//! receives the same write from the storage watch as bytes. Rather than
//! parse those bytes again, the dispatcher takes the registry's object: the
//! registry announces the write (key, object, the exact stored buffer)
//! before it reaches storage, and whichever side has the revision first —
//! the dispatcher seeing the event, or the registry seeing the write
//! return — makes the cached bytes once, by splicing `resourceVersion` into
//! the stored buffer where the registry noted it goes (serializing the
//! object again only when it did not); the other side reuses those bytes. A storage that hands its watch a
//! different buffer (etcd) just never matches, and the dispatcher decodes
//! as before.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use serde_json::Value;

use super::CachedObject;
use super::object::{RvSlot, splice_rv};
use crate::storage::Revision;

/// Most announced writes kept waiting for their event.
const MAX_PENDING: usize = 65_536;

/// One announced write.
#[derive(Debug)]
pub struct PendingWrite {
    key: String,
    kind: String,
    /// The stored buffer, which the storage passes on to its watch event
    /// unchanged. Holding it keeps its address from being reused by
    /// another write while the announcement waits.
    stored: Bytes,
    /// Where `resourceVersion` goes in `stored`: the cached bytes are
    /// `stored` with it spliced in (`None`: the object has no `metadata`).
    rv_slot: Option<RvSlot>,
    /// The object as written, without `resourceVersion`; taken back by the
    /// registry once the cached object is built.
    object: Mutex<Option<Value>>,
    built: OnceLock<Option<Arc<CachedObject>>>,
}

impl PendingWrite {
    fn matches(&self, value: &Bytes) -> bool {
        self.stored.as_ptr() == value.as_ptr() && self.stored.len() == value.len()
    }

    /// The cached object at `rev`, built by whoever asks first. `None` only
    /// if the object was already taken back without being built.
    pub fn build(&self, rev: Revision) -> Option<Arc<CachedObject>> {
        self.built
            .get_or_init(|| {
                let object = self.object.lock().unwrap_or_else(|p| p.into_inner());
                let object = object.as_ref()?;
                let bytes = match self.rv_slot {
                    Some(slot) => splice_rv(&self.stored, slot, rev),
                    // No metadata to carry a resourceVersion: as stored.
                    None => Bytes::copy_from_slice(&self.stored),
                };
                Some(Arc::new(CachedObject::from_parts(
                    self.key.clone(),
                    &self.kind,
                    object,
                    bytes,
                    rev,
                )))
            })
            .clone()
    }
}

/// Announced writes by key.
#[derive(Debug, Default)]
pub struct PendingWrites {
    by_key: Mutex<HashMap<String, Arc<PendingWrite>>>,
}

impl PendingWrites {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<PendingWrite>>> {
        self.by_key.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Announce that `object` (without `resourceVersion`) is about to be
    /// stored under `key` as `stored`, with `resourceVersion`'s place in it
    /// if known.
    pub fn announce(
        &self,
        key: &str,
        kind: &str,
        stored: &Bytes,
        rv_slot: Option<RvSlot>,
        object: Value,
    ) -> Arc<PendingWrite> {
        let pending = Arc::new(PendingWrite {
            key: key.to_string(),
            kind: kind.to_string(),
            stored: stored.clone(),
            rv_slot,
            object: Mutex::new(Some(object)),
            built: OnceLock::new(),
        });
        let mut map = self.lock();
        if map.len() < MAX_PENDING || map.contains_key(key) {
            map.insert(key.to_string(), pending.clone());
        }
        pending
    }

    /// The write failed: forget it and hand the object back.
    pub fn abandon(&self, pending: &Arc<PendingWrite>) -> Option<Value> {
        let mut map = self.lock();
        if map
            .get(&pending.key)
            .is_some_and(|p| Arc::ptr_eq(p, pending))
        {
            map.remove(&pending.key);
        }
        drop(map);
        pending
            .object
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// The write is stored at `rev`: the object with its
    /// `resourceVersion` and its bytes. `dispatched` says whether the
    /// dispatcher is already past `rev` (then it will not come for the
    /// announcement and it is dropped here).
    pub fn written(
        &self,
        pending: &Arc<PendingWrite>,
        rev: Revision,
        dispatched: bool,
    ) -> Option<(Value, Bytes)> {
        let cached = pending.build(rev);
        if dispatched {
            let mut map = self.lock();
            if map
                .get(&pending.key)
                .is_some_and(|p| Arc::ptr_eq(p, pending))
            {
                map.remove(&pending.key);
            }
        }
        let mut object = pending
            .object
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()?;
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".into(), Value::String(rev.to_string()));
        }
        Some((object, cached?.bytes.clone()))
    }

    /// The dispatcher's side: the announcement of the write a stored event
    /// of `key` reports, if the registry made one. Any announcement for the
    /// key that the event does not match is left alone (a newer write's),
    /// except on delete, which ends them all.
    pub fn take(&self, key: &str, value: &Bytes, delete: bool) -> Option<Arc<PendingWrite>> {
        let pending = {
            let mut map = self.lock();
            match map.get(key) {
                Some(p) if !delete && p.matches(value) => map.remove(key),
                Some(_) if delete => {
                    map.remove(key);
                    None
                }
                _ => None,
            }
        }?;
        Some(pending)
    }

    /// Forget every announcement (the dispatcher rebuilt from storage).
    pub fn clear(&self) {
        self.lock().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the registry announces: the bytes it stores and where their
    /// resourceVersion goes.
    fn stored(object: &Value) -> (Bytes, Option<RvSlot>) {
        crate::cache::object::json_bytes_marking_rv(object).unwrap()
    }

    fn pod() -> Value {
        serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "n", "labels": {"a": "b"}}})
    }

    #[test]
    fn the_dispatcher_reuses_an_announced_write_and_the_registry_its_bytes() {
        let writes = PendingWrites::default();
        let (stored, slot) = stored(&pod());
        let pending = writes.announce("/registry/pods/n/p", "Pod", &stored, slot, pod());
        // The event carries the same buffer: the dispatcher takes it.
        let taken = writes
            .take("/registry/pods/n/p", &stored.clone(), false)
            .expect("announced");
        let cached = taken.build(7).expect("built");
        assert_eq!(cached.labels.get("a").map(String::as_str), Some("b"));
        let (object, bytes) = writes.written(&pending, 7, true).expect("written");
        assert_eq!(object["metadata"]["resourceVersion"], "7");
        assert_eq!(bytes, cached.bytes);
        assert_eq!(bytes, Bytes::from(serde_json::to_vec(&object).unwrap()));
        assert!(writes.lock().is_empty());
    }

    #[test]
    fn an_equal_but_different_buffer_is_not_the_announced_write() {
        let writes = PendingWrites::default();
        let (stored, slot) = stored(&pod());
        let pending = writes.announce("/registry/pods/n/p", "Pod", &stored, slot, pod());
        let copy = Bytes::from(stored.to_vec());
        assert!(writes.take("/registry/pods/n/p", &copy, false).is_none());
        // The registry finishes first; the announcement waits for its event.
        let (object, _) = writes.written(&pending, 9, false).expect("written");
        assert_eq!(object["metadata"]["resourceVersion"], "9");
        let taken = writes
            .take("/registry/pods/n/p", &stored, false)
            .expect("still there");
        assert_eq!(taken.build(9).expect("built").revision, 9);
    }

    #[test]
    fn abandoned_and_deleted_announcements_are_dropped() {
        let writes = PendingWrites::default();
        let stored = Bytes::from_static(b"{}");
        let pending = writes.announce("/k", "Pod", &stored, None, pod());
        assert_eq!(writes.abandon(&pending), Some(pod()));
        assert!(writes.lock().is_empty());
        writes.announce("/k", "Pod", &stored, None, pod());
        assert!(writes.take("/k", &stored, true).is_none());
        assert!(writes.lock().is_empty());
    }
}
