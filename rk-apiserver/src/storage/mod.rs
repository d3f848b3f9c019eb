//! A revisioned key-value store with etcd's model.
//!
//! Every write gets the next global revision; an object's `resourceVersion` is
//! the revision of its last write (`mod_revision`). Writes are guarded by the
//! expected `mod_revision` (compare-and-swap). Watches deliver every change under
//! a prefix after a given revision, in revision order, with the previous value.
//!
//! Backends: [`memory`] (tests), [`sqlite`] (the embedded default) and, with the
//! `etcd` feature, `etcd` (a real etcd v3 cluster).

use std::pin::Pin;

use bytes::Bytes;
use futures::Stream;

#[cfg(feature = "etcd")]
pub mod etcd;
pub mod keys;
pub mod memory;
pub mod sqlite;

pub use keys::{validate_key, validate_prefix};

/// A global store revision. Revisions start at 1; 0 means "none" / "current".
pub type Revision = i64;

/// One stored key with its value and the revisions that describe it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    /// The full key, e.g. `/registry/pods/default/web-0`.
    pub key: String,
    /// The stored bytes (for the API server: the object's JSON).
    pub value: Bytes,
    /// Revision of the write that created this key (since its last deletion).
    pub create_revision: Revision,
    /// Revision of the last write to this key.
    pub mod_revision: Revision,
}

/// What happened to a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// Created or updated.
    Put,
    /// Deleted.
    Delete,
}

/// One change seen by a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Put or delete.
    pub kind: EventKind,
    /// For a put, the new key-value. For a delete, the key with the last value it
    /// held and `mod_revision` set to the revision of the delete.
    pub kv: KeyValue,
    /// The key-value before this change, if the key existed.
    pub prev: Option<KeyValue>,
}

impl Event {
    /// The revision at which this change happened.
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

/// Options for [`Storage::list`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// Read the state as of this revision; `None` (or `Some(0)`) means the
    /// current revision.
    pub revision: Option<Revision>,
    /// Return at most this many items; `None` (or `Some(0)`) means all.
    pub limit: Option<usize>,
    /// Start strictly after this key (the continuation point of a paged list).
    pub start_after: Option<String>,
}

/// The answer to [`Storage::list`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListResult {
    /// The items, ordered by key.
    pub kvs: Vec<KeyValue>,
    /// The revision the list was read at (pass it back for the next page).
    pub revision: Revision,
    /// True when more items follow the last one returned.
    pub more: bool,
}

/// A stream of watch events. It ends with an `Err` if the watch cannot go on
/// (the store closed, or the watcher fell too far behind); callers re-watch from
/// the last revision they saw.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<Event, StorageError>> + Send>>;

/// Errors from a storage backend.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum StorageError {
    /// `create` of a key that exists.
    #[error("key {key} already exists")]
    KeyExists {
        /// The key.
        key: String,
    },
    /// The key does not exist.
    #[error("key {key} not found")]
    NotFound {
        /// The key.
        key: String,
    },
    /// The key's `mod_revision` is not the expected one.
    #[error("key {key}: expected revision {expected}, found {actual}")]
    Conflict {
        /// The key.
        key: String,
        /// The revision the caller expected.
        expected: Revision,
        /// The revision the store holds. (A key that is gone yields
        /// [`StorageError::NotFound`] instead.)
        actual: Revision,
    },
    /// The requested revision has been compacted away.
    #[error("revision {requested} has been compacted (oldest available is {compacted})")]
    Compacted {
        /// The revision asked for.
        requested: Revision,
        /// The compaction revision: the oldest revision still readable.
        compacted: Revision,
    },
    /// The requested revision is newer than the store's current revision.
    #[error("revision {requested} is in the future (current is {current})")]
    FutureRevision {
        /// The revision asked for.
        requested: Revision,
        /// The current revision.
        current: Revision,
    },
    /// The key is malformed.
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey {
        /// The key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The value is too large for the backend.
    #[error("value for key {key} is too large ({size} bytes, limit {limit})")]
    ValueTooLarge {
        /// The key.
        key: String,
        /// Size of the value.
        size: usize,
        /// The backend's limit.
        limit: usize,
    },
    /// A watcher fell too far behind and was dropped.
    #[error("watcher fell behind at revision {revision}")]
    WatcherTooSlow {
        /// The last revision delivered.
        revision: Revision,
    },
    /// The store has been closed.
    #[error("storage is closed")]
    Closed,
    /// Any other backend failure (I/O, SQL, network).
    #[error("storage backend error: {0}")]
    Backend(String),
}

/// The revisioned store. All methods are safe to call concurrently.
#[async_trait::async_trait]
pub trait Storage: Send + Sync + 'static {
    /// Read one key at the current revision.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StorageError>;

    /// List keys starting with `prefix`, ordered by key. Fails with
    /// [`StorageError::FutureRevision`] or [`StorageError::Compacted`] if
    /// `opts.revision` is after the current revision or before the compaction
    /// revision.
    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult, StorageError>;

    /// Create `key`; fails with [`StorageError::KeyExists`] if it exists.
    /// Returns the new revision.
    async fn create(&self, key: &str, value: Bytes) -> Result<Revision, StorageError>;

    /// Replace the value of `key` if its `mod_revision` equals `expected`.
    /// Returns the new revision. Fails with [`StorageError::NotFound`] if the key
    /// does not exist and [`StorageError::Conflict`] if its `mod_revision`
    /// differs.
    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Revision,
    ) -> Result<Revision, StorageError>;

    /// Delete `key`, if `expected` is given only when its `mod_revision` equals it.
    /// Returns the deleted key-value (with its last value) and the delete revision.
    /// Fails with [`StorageError::NotFound`] if the key does not exist and
    /// [`StorageError::Conflict`] if `expected` differs from its `mod_revision`.
    async fn delete(
        &self,
        key: &str,
        expected: Option<Revision>,
    ) -> Result<(KeyValue, Revision), StorageError>;

    /// Watch every change under `prefix` with a revision greater than `after`.
    /// `after == 0` (or negative) means "from now". Fails with
    /// [`StorageError::Compacted`] if `after + 1` has been compacted and with
    /// [`StorageError::FutureRevision`] if `after` is past the current revision.
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StorageError>;

    /// The current (latest committed) revision.
    async fn current_revision(&self) -> Result<Revision, StorageError>;

    /// Forget history older than `revision`: reads and watches before it fail with
    /// [`StorageError::Compacted`]. Compacting to a revision at or below the
    /// current compaction revision does nothing; past the current revision fails
    /// with [`StorageError::FutureRevision`].
    async fn compact(&self, revision: Revision) -> Result<(), StorageError>;
}
