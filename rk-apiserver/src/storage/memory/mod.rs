//! The in-memory backend: an MVCC map for tests and single-process tools.
//!
//! Every key keeps its history (one version per write, deletes as tombstones),
//! so reads at a past revision see exactly the state of that revision until
//! [`compact`](Storage::compact) drops the history before it. A revision log
//! feeds watches: a watch from a past revision replays the log, then goes live
//! under the same lock, so nothing is missed or repeated. Each watcher has a
//! bounded buffer; one that falls behind ends with
//! [`StorageError::WatcherTooSlow`].
//!
//! ```
//! use bytes::Bytes;
//! use rk_apiserver::storage::{ListOptions, Storage, memory::MemoryStorage};
//!
//! # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
//! # rt.block_on(async {
//! let store = MemoryStorage::new();
//! let rev = store.create("/registry/pods/default/web-0", Bytes::from_static(b"{}")).await?;
//! store.update("/registry/pods/default/web-0", Bytes::from_static(b"{\"a\":1}"), rev).await?;
//! let page = store.list("/registry/pods/", ListOptions::default()).await?;
//! assert_eq!(page.kvs.len(), 1);
//! # Ok::<_, rk_apiserver::storage::StorageError>(())
//! # }).unwrap();
//! ```

pub(crate) mod fanout;

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::{Mutex, MutexGuard, PoisonError};

use bytes::Bytes;

use self::fanout::Watchers;
use super::keys::{DEFAULT_MAX_VALUE_LEN, validate_key, validate_prefix, validate_value};
use super::{
    Event, EventKind, KeyValue, ListOptions, ListResult, Revision, Storage, StorageError,
    WatchStream,
};

/// Settings of a [`MemoryStorage`].
#[derive(Clone, Debug)]
pub struct MemoryOptions {
    /// How many undelivered events a watcher may have before it is dropped with
    /// [`StorageError::WatcherTooSlow`].
    pub watch_buffer: usize,
    /// The largest value accepted, in bytes.
    pub max_value_len: usize,
}

impl Default for MemoryOptions {
    fn default() -> Self {
        Self {
            watch_buffer: 10_000,
            max_value_len: DEFAULT_MAX_VALUE_LEN,
        }
    }
}

/// A revisioned key-value store held in memory. See the [module docs](self).
pub struct MemoryStorage {
    state: Mutex<State>,
    max_value_len: usize,
}

/// One write of a key: its value, or `None` for a deletion.
#[derive(Clone, Debug)]
struct Version {
    create_revision: Revision,
    mod_revision: Revision,
    value: Option<Bytes>,
}

struct State {
    revision: Revision,
    /// The oldest readable revision (0: nothing compacted yet).
    compacted: Revision,
    keys: BTreeMap<String, Vec<Version>>,
    /// One event per revision, oldest first, from `compacted` on.
    log: VecDeque<Event>,
    watchers: Watchers,
}

impl Default for MemoryStorage {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStorage {
    /// An empty store with default options.
    pub fn new() -> Self {
        Self::with_options(MemoryOptions::default())
    }

    /// An empty store with the given options.
    pub fn with_options(options: MemoryOptions) -> Self {
        let state = State {
            revision: 0,
            compacted: 0,
            keys: BTreeMap::new(),
            log: VecDeque::new(),
            watchers: Watchers::new(options.watch_buffer),
        };
        Self {
            state: Mutex::new(state),
            max_value_len: options.max_value_len,
        }
    }

    /// The number of registered watchers (streams dropped since the last write
    /// may still be counted).
    pub fn watcher_count(&self) -> usize {
        self.lock().watchers.len()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every mutation completes before the guard is released, so a panic
        // elsewhere cannot leave the state half-written.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn to_kv(key: &str, version: &Version, value: Bytes) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value,
        create_revision: version.create_revision,
        mod_revision: version.mod_revision,
    }
}

impl State {
    /// The live version of `key`, if it exists now.
    fn live(&self, key: &str) -> Option<KeyValue> {
        let version = self.keys.get(key)?.last()?;
        version
            .value
            .clone()
            .map(|value| to_kv(key, version, value))
    }

    /// Records a write at the next revision and tells the watchers.
    fn commit(&mut self, key: &str, version: Version, event: Event) {
        self.revision = version.mod_revision;
        self.keys.entry(key.to_owned()).or_default().push(version);
        let batch = fanout::Batch::new(vec![event.clone()]);
        self.log.push_back(event);
        self.watchers.publish(&batch);
    }

    fn check_read_revision(&self, requested: Revision) -> Result<(), StorageError> {
        if requested > self.revision {
            return Err(StorageError::FutureRevision {
                requested,
                current: self.revision,
            });
        }
        if requested < self.compacted {
            return Err(StorageError::Compacted {
                requested,
                compacted: self.compacted,
            });
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Storage for MemoryStorage {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StorageError> {
        validate_key(key)?;
        Ok(self.lock().live(key))
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult, StorageError> {
        validate_prefix(prefix)?;
        let state = self.lock();
        let revision = match opts.revision {
            None | Some(0) => state.revision,
            Some(requested) => {
                state.check_read_revision(requested)?;
                requested
            }
        };
        let start = match &opts.start_after {
            Some(after) if after.as_str() >= prefix => Bound::Excluded(after.as_str()),
            _ => Bound::Included(prefix),
        };
        let limit = opts.limit.filter(|&limit| limit > 0).unwrap_or(usize::MAX);
        let mut result = ListResult {
            kvs: Vec::new(),
            revision,
            more: false,
        };
        let range = state.keys.range::<str, _>((start, Bound::Unbounded));
        for (key, versions) in range.take_while(|(key, _)| key.starts_with(prefix)) {
            let Some(version) = versions.iter().rev().find(|v| v.mod_revision <= revision) else {
                continue;
            };
            let Some(value) = &version.value else {
                continue;
            };
            if result.kvs.len() == limit {
                result.more = true;
                break;
            }
            result.kvs.push(to_kv(key, version, value.clone()));
        }
        Ok(result)
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<Revision, StorageError> {
        validate_key(key)?;
        validate_value(key, &value, self.max_value_len)?;
        let mut state = self.lock();
        if state.live(key).is_some() {
            return Err(StorageError::KeyExists {
                key: key.to_owned(),
            });
        }
        let revision = state.revision + 1;
        let version = Version {
            create_revision: revision,
            mod_revision: revision,
            value: Some(value.clone()),
        };
        let event = Event {
            kind: EventKind::Put,
            kv: to_kv(key, &version, value),
            prev: None,
        };
        state.commit(key, version, event);
        Ok(revision)
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Revision,
    ) -> Result<Revision, StorageError> {
        validate_key(key)?;
        validate_value(key, &value, self.max_value_len)?;
        let mut state = self.lock();
        let prev = current_with_expected(&state, key, Some(expected))?;
        let revision = state.revision + 1;
        let version = Version {
            create_revision: prev.create_revision,
            mod_revision: revision,
            value: Some(value.clone()),
        };
        let event = Event {
            kind: EventKind::Put,
            kv: to_kv(key, &version, value),
            prev: Some(prev),
        };
        state.commit(key, version, event);
        Ok(revision)
    }

    async fn delete(
        &self,
        key: &str,
        expected: Option<Revision>,
    ) -> Result<(KeyValue, Revision), StorageError> {
        validate_key(key)?;
        let mut state = self.lock();
        let prev = current_with_expected(&state, key, expected)?;
        let revision = state.revision + 1;
        let version = Version {
            create_revision: prev.create_revision,
            mod_revision: revision,
            value: None,
        };
        let event = Event {
            kind: EventKind::Delete,
            kv: to_kv(key, &version, prev.value.clone()),
            prev: Some(prev.clone()),
        };
        state.commit(key, version, event);
        Ok((prev, revision))
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StorageError> {
        validate_prefix(prefix)?;
        let mut state = self.lock();
        if after <= 0 {
            let from = state.revision;
            return Ok(state
                .watchers
                .register(prefix)
                .into_stream(prefix, from, Vec::new()));
        }
        if after > state.revision {
            return Err(StorageError::FutureRevision {
                requested: after,
                current: state.revision,
            });
        }
        if after + 1 < state.compacted {
            return Err(StorageError::Compacted {
                requested: after + 1,
                compacted: state.compacted,
            });
        }
        let start = state.log.partition_point(|event| event.revision() <= after);
        let replay = state
            .log
            .range(start..)
            .filter(|event| event.kv.key.starts_with(prefix))
            .cloned()
            .collect();
        Ok(state
            .watchers
            .register(prefix)
            .into_stream(prefix, after, replay))
    }

    async fn current_revision(&self) -> Result<Revision, StorageError> {
        Ok(self.lock().revision)
    }

    async fn compact(&self, revision: Revision) -> Result<(), StorageError> {
        let mut state = self.lock();
        if revision > state.revision {
            return Err(StorageError::FutureRevision {
                requested: revision,
                current: state.revision,
            });
        }
        if revision <= state.compacted {
            return Ok(());
        }
        state.keys.retain(|_, versions| {
            // Keep the version visible at `revision` (unless it is a tombstone)
            // and everything after it.
            let newer = versions.partition_point(|v| v.mod_revision <= revision);
            let keep_from = match newer.checked_sub(1) {
                Some(visible) if versions[visible].value.is_some() => visible,
                Some(visible) => visible + 1,
                None => 0,
            };
            versions.drain(..keep_from);
            !versions.is_empty()
        });
        while state
            .log
            .front()
            .is_some_and(|event| event.revision() < revision)
        {
            state.log.pop_front();
        }
        state.compacted = revision;
        tracing::debug!(revision, "memory storage compacted");
        Ok(())
    }
}

/// The live key-value of `key`, checked against `expected`.
fn current_with_expected(
    state: &State,
    key: &str,
    expected: Option<Revision>,
) -> Result<KeyValue, StorageError> {
    let current = state.live(key).ok_or_else(|| StorageError::NotFound {
        key: key.to_owned(),
    })?;
    match expected {
        Some(expected) if expected != current.mod_revision => Err(StorageError::Conflict {
            key: key.to_owned(),
            expected,
            actual: current.mod_revision,
        }),
        _ => Ok(current),
    }
}
