//! The `sqlite` backend: the embedded default, one database file.
//!
//! Layout and write path follow kine: one row per write in a revision table
//! (see `schema.rs`), a single writer thread that group-commits every waiting
//! write in one transaction (see `writer.rs`), and an in-memory index of live keys
//! for the compare-and-swap checks. Reads run on a small pool of read-only
//! connections (WAL mode lets them proceed while the writer commits).
//!
//! Watches are fed in-process by the writer right after each commit, in revision
//! order, with no polling. Recent events are also kept in memory
//! ([`SqliteOptions::watch_history`]); a watch from an older revision replays
//! the table first and then continues with live events, without gaps.
//!
//! **Durability.** A write is acknowledged only after its transaction has
//! committed. With [`Durability::Full`] (the default) SQLite runs with
//! `synchronous=FULL`, so each group commit is fsynced before anyone hears about
//! it: acknowledged writes survive a killed process and a power loss. With
//! [`Durability::Process`] (`synchronous=NORMAL` in WAL mode) a commit is in the
//! operating system's page cache when acknowledged: it survives SIGKILL of the
//! process, not a crash of the machine.
//!
//! ```no_run
//! use bytes::Bytes;
//! use rk_apiserver::storage::Storage;
//! use rk_apiserver::storage::sqlite::{SqliteOptions, SqliteStorage};
//!
//! # async fn demo() -> Result<(), rk_apiserver::storage::StorageError> {
//! let store = SqliteStorage::open_with("/var/lib/rk/state.db", SqliteOptions::default()).await?;
//! let rev = store.create("/registry/configmaps/default/cfg", Bytes::from_static(b"{}")).await?;
//! assert_eq!(store.get("/registry/configmaps/default/cfg").await?.unwrap().mod_revision, rev);
//! # Ok(()) }
//! ```

mod checkpoint;
mod schema;
mod writer;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use rusqlite::Connection;
use tokio::sync::oneshot;

use self::schema::{EVENT_SELECT, backend, event_from_row};
use self::writer::{Command, Op, Outcome, Writer, WriterConfig};
use super::keys::{
    DEFAULT_MAX_VALUE_LEN, prefix_end, validate_key, validate_prefix, validate_value,
};
use super::memory::fanout::{Batch, Watchers};
use super::{
    Event, KeyValue, ListOptions, ListResult, Revision, Storage, StorageError, WatchStream,
};

/// How durable a write is when it is acknowledged. See the [module docs](self).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// `synchronous=FULL`: every group commit is fsynced before it is
    /// acknowledged. Survives process kills and power loss.
    #[default]
    Full,
    /// `synchronous=NORMAL` (WAL): the commit is written to the WAL file but
    /// fsynced only at checkpoints. Survives process kills, not power loss.
    Process,
}

/// Settings of a [`SqliteStorage`].
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    /// When a write is acknowledged.
    pub durability: Durability,
    /// The most writes committed in one transaction.
    pub max_batch: usize,
    /// How long the writer may wait for more writes to join a commit, when
    /// fewer are waiting than joined the last one (0 commits whatever is there).
    pub group_commit_wait: Duration,
    /// Idle read connections kept open.
    pub read_connections: usize,
    /// How often to compact in the background; `None` compacts only on request.
    pub compact_interval: Option<Duration>,
    /// Background compaction keeps this many most recent revisions.
    pub compact_retain: Revision,
    /// Recent events kept in memory so watches resuming from them need no read.
    pub watch_history: usize,
    /// How many undelivered commits a watcher may have before it is dropped with
    /// [`StorageError::WatcherTooSlow`].
    pub watch_buffer: usize,
    /// The largest value accepted, in bytes.
    pub max_value_len: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            durability: Durability::Full,
            max_batch: 1024,
            group_commit_wait: Duration::from_micros(500),
            read_connections: 4,
            compact_interval: Some(Duration::from_secs(300)),
            compact_retain: 1000,
            watch_history: 10_000,
            watch_buffer: 4096,
            max_value_len: DEFAULT_MAX_VALUE_LEN,
        }
    }
}

/// A revisioned key-value store in one SQLite file. See the [module docs](self).
///
/// Only one `SqliteStorage` may have a file open at a time (a lock file,
/// `<path>.lock`, enforces it). Dropping the store stops its writer thread after
/// the writes in flight.
pub struct SqliteStorage {
    commands: Option<mpsc::Sender<Command>>,
    writer: Option<JoinHandle<()>>,
    checkpointer: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
    max_value_len: usize,
    path: PathBuf,
    _lock: Mutex<Connection>,
}

/// State shared by the handle, the readers and the writer thread.
struct Shared {
    hub: Mutex<Hub>,
    /// The last committed and published revision.
    revision: AtomicI64,
    /// The compaction revision: the oldest readable revision.
    compacted: AtomicI64,
    readers: Readers,
}

/// Watchers and the recent events they can resume from.
struct Hub {
    watchers: Watchers,
    recent: VecDeque<Batch>,
    recent_events: usize,
    history: usize,
}

/// A pool of read-only connections.
struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    max_idle: usize,
}

impl SqliteStorage {
    /// Opens (or creates) the store in the file at `path` with default options,
    /// resuming its revision counter and index of live keys.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StorageError> {
        Self::open_with(path, SqliteOptions::default()).await
    }

    /// Opens (or creates) the store in the file at `path`, resuming its revision
    /// counter and index of live keys (read on the blocking thread pool).
    pub async fn open_with(
        path: impl AsRef<Path>,
        options: SqliteOptions,
    ) -> Result<Self, StorageError> {
        let path = path.as_ref().to_path_buf();
        tokio::task::spawn_blocking(move || Self::open_blocking(path, options))
            .await
            .map_err(|e| StorageError::Backend(format!("sqlite open task failed: {e}")))?
    }

    /// [`open_with`](Self::open_with) for synchronous code: blocks while it reads the index.
    pub fn open_blocking(
        path: impl AsRef<Path>,
        options: SqliteOptions,
    ) -> Result<Self, StorageError> {
        let path = path.as_ref().to_path_buf();
        let lock = schema::lock_file(&path)?;
        let conn = schema::open_writer(&path, options.durability).map_err(backend)?;
        let shared = Arc::new(Shared {
            hub: Mutex::new(Hub {
                watchers: Watchers::new(options.watch_buffer),
                recent: VecDeque::new(),
                recent_events: 0,
                history: options.watch_history,
            }),
            revision: AtomicI64::new(0),
            compacted: AtomicI64::new(0),
            readers: Readers {
                path: path.clone(),
                idle: Mutex::new(Vec::new()),
                max_idle: options.read_connections.max(1),
            },
        });
        let (checkpoint, checkpointer) =
            checkpoint::spawn(&path, options.durability).map_err(backend)?;
        let config = WriterConfig {
            max_batch: options.max_batch.max(1),
            group_commit_wait: options.group_commit_wait,
            checkpoint,
            compact_interval: options.compact_interval,
            compact_retain: options.compact_retain.max(0),
        };
        let writer = Writer::load(conn, shared.clone(), config).map_err(backend)?;
        shared.revision.store(writer.revision(), Ordering::Release);
        shared
            .compacted
            .store(writer.compacted(), Ordering::Release);
        let (commands, receiver) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("rk-sqlite-writer".to_owned())
            .spawn(move || writer.run(receiver))
            .map_err(|e| StorageError::Backend(format!("cannot start the sqlite writer: {e}")))?;
        Ok(Self {
            commands: Some(commands),
            writer: Some(handle),
            checkpointer: Some(checkpointer),
            shared,
            max_value_len: options.max_value_len,
            path,
            _lock: Mutex::new(lock),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The number of registered watchers (streams dropped since the last commit
    /// may still be counted).
    pub fn watcher_count(&self) -> usize {
        self.shared.lock_hub().watchers.len()
    }

    async fn submit(&self, op: Op) -> Result<Outcome, StorageError> {
        let (reply, answer) = oneshot::channel();
        let commands = self.commands.as_ref().ok_or(StorageError::Closed)?;
        commands
            .send(Command::Write(op, reply))
            .map_err(|_| StorageError::Closed)?;
        answer.await.map_err(|_| StorageError::Closed)?
    }

    /// Runs `read` on a pooled read connection on the blocking thread pool.
    async fn read<T, F>(&self, read: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || shared.readers.with(read))
            .await
            .map_err(|e| StorageError::Backend(format!("sqlite read task failed: {e}")))?
    }

    /// Fails unless `requested` is between the compaction revision and now.
    fn check_read_revision(&self, requested: Revision) -> Result<(), StorageError> {
        let current = self.shared.revision.load(Ordering::Acquire);
        if requested > current {
            return Err(StorageError::FutureRevision { requested, current });
        }
        self.check_not_compacted(requested)
    }

    fn check_not_compacted(&self, requested: Revision) -> Result<(), StorageError> {
        let compacted = self.shared.compacted.load(Ordering::Acquire);
        if requested < compacted {
            return Err(StorageError::Compacted {
                requested,
                compacted,
            });
        }
        Ok(())
    }
}

impl Drop for SqliteStorage {
    fn drop(&mut self) {
        self.commands = None;
        // The writer owns the checkpoint thread's sender: join it first.
        for thread in [self.writer.take(), self.checkpointer.take()]
            .into_iter()
            .flatten()
        {
            if thread.join().is_err() {
                tracing::error!(path = %self.path.display(), "sqlite storage thread panicked");
            }
        }
    }
}

impl Shared {
    fn lock_hub(&self) -> MutexGuard<'_, Hub> {
        // Hub updates complete under the lock; a panic cannot leave one half-done.
        self.hub.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Called by the writer after each commit: remember the events, hand them to
    /// watchers, then move the current revision.
    fn publish(&self, events: Vec<Event>, revision: Revision) {
        let mut hub = self.lock_hub();
        if !events.is_empty() {
            let batch = Batch::new(events);
            hub.watchers.publish(&batch);
            hub.recent_events += batch.len();
            hub.recent.push_back(batch);
            while let Some(oldest) = hub.recent.front() {
                if hub.recent_events - oldest.len() < hub.history {
                    break;
                }
                hub.recent_events -= oldest.len();
                hub.recent.pop_front();
            }
        }
        self.revision.store(revision, Ordering::Release);
    }

    fn set_compacted(&self, revision: Revision) {
        let _hub = self.lock_hub();
        self.compacted.store(revision, Ordering::Release);
    }
}

impl Hub {
    /// The events after `after` under `prefix`, if the in-memory history reaches
    /// back that far.
    fn replay(&self, prefix: &str, after: Revision, current: Revision) -> Option<Vec<Event>> {
        let oldest = self
            .recent
            .front()
            .and_then(|batch| batch.first())
            .map(Event::revision);
        let covered = match oldest {
            Some(oldest) => oldest <= after + 1,
            None => after >= current,
        };
        if !covered {
            return None;
        }
        let events = self
            .recent
            .iter()
            .flat_map(|batch| batch.iter())
            .filter(|event| event.revision() > after && event.kv.key.starts_with(prefix))
            .cloned()
            .collect();
        Some(events)
    }
}

impl Readers {
    fn with<T>(
        &self,
        read: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StorageError> {
        let pooled = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => schema::open_reader(&self.path).map_err(backend)?,
        };
        let result = read(&conn).map_err(backend);
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < self.max_idle {
            idle.push(conn);
        }
        result
    }
}

/// The SQL bounds of a prefix scan: `name >= ?lo` (or `> ?lo` after a
/// continuation key) and `name < ?hi`.
fn key_range(prefix: &str, start_after: Option<&str>) -> (String, bool, String) {
    let hi = prefix_end(prefix).unwrap_or_else(|| char::MAX.to_string());
    match start_after {
        Some(after) if after >= prefix => (after.to_owned(), true, hi),
        _ => (prefix.to_owned(), false, hi),
    }
}

#[async_trait::async_trait]
impl Storage for SqliteStorage {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StorageError> {
        validate_key(key)?;
        let key = key.to_owned();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, create_revision, deleted, value FROM kine
                 WHERE name = ?1 ORDER BY id DESC LIMIT 1",
            )?;
            let mut rows = stmt.query([&key])?;
            let Some(row) = rows.next()? else {
                return Ok(None);
            };
            if row.get::<_, bool>(2)? {
                return Ok(None);
            }
            let value: Option<Vec<u8>> = row.get(3)?;
            Ok(Some(KeyValue {
                key: key.clone(),
                value: value.map(Bytes::from).unwrap_or_default(),
                create_revision: row.get(1)?,
                mod_revision: row.get(0)?,
            }))
        })
        .await
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult, StorageError> {
        validate_prefix(prefix)?;
        let revision = match opts.revision {
            None | Some(0) => self.shared.revision.load(Ordering::Acquire),
            Some(requested) => {
                self.check_read_revision(requested)?;
                requested
            }
        };
        let (lo, exclusive, hi) = key_range(prefix, opts.start_after.as_deref());
        let limit = opts.limit.filter(|&limit| limit > 0);
        let fetch = limit.map_or(-1, |limit| i64::try_from(limit).unwrap_or(i64::MAX - 1) + 1);
        let mut kvs = self
            .read(move |conn| {
                let op = if exclusive { ">" } else { ">=" };
                let sql = format!(
                    "SELECT k.id, k.name, k.create_revision, k.value
                     FROM (SELECT MAX(id) AS id FROM kine
                           WHERE name {op} ?1 AND name < ?2 AND id <= ?3 GROUP BY name) AS latest
                     JOIN kine AS k ON k.id = latest.id
                     WHERE k.deleted = 0
                     ORDER BY k.name
                     LIMIT ?4"
                );
                let mut stmt = conn.prepare_cached(&sql)?;
                let rows = stmt.query_map((&lo, &hi, revision, fetch), |row| {
                    let value: Option<Vec<u8>> = row.get(3)?;
                    Ok(KeyValue {
                        key: row.get(1)?,
                        value: value.map(Bytes::from).unwrap_or_default(),
                        create_revision: row.get(2)?,
                        mod_revision: row.get(0)?,
                    })
                })?;
                rows.collect::<rusqlite::Result<Vec<_>>>()
            })
            .await?;
        // A compaction that began during the read may have removed rows it needed.
        self.check_not_compacted(revision)?;
        let more = limit.is_some_and(|limit| kvs.len() > limit);
        if let Some(limit) = limit {
            kvs.truncate(limit);
        }
        Ok(ListResult {
            kvs,
            revision,
            more,
        })
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<Revision, StorageError> {
        validate_key(key)?;
        validate_value(key, &value, self.max_value_len)?;
        match self
            .submit(Op::Create {
                key: key.to_owned(),
                value,
            })
            .await?
        {
            Outcome::Written(revision) | Outcome::Deleted(_, revision) => Ok(revision),
        }
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Revision,
    ) -> Result<Revision, StorageError> {
        validate_key(key)?;
        validate_value(key, &value, self.max_value_len)?;
        match self
            .submit(Op::Update {
                key: key.to_owned(),
                value,
                expected,
            })
            .await?
        {
            Outcome::Written(revision) | Outcome::Deleted(_, revision) => Ok(revision),
        }
    }

    async fn delete(
        &self,
        key: &str,
        expected: Option<Revision>,
    ) -> Result<(KeyValue, Revision), StorageError> {
        validate_key(key)?;
        match self
            .submit(Op::Delete {
                key: key.to_owned(),
                expected,
            })
            .await?
        {
            Outcome::Deleted(prev, revision) => Ok((prev, revision)),
            Outcome::Written(_) => Err(StorageError::Backend(
                "sqlite writer answered a delete with a put".to_owned(),
            )),
        }
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StorageError> {
        validate_prefix(prefix)?;
        let (subscription, upto) = {
            let mut hub = self.shared.lock_hub();
            let current = self.shared.revision.load(Ordering::Acquire);
            if after <= 0 {
                return Ok(hub
                    .watchers
                    .register(prefix)
                    .into_stream(prefix, current, Vec::new()));
            }
            if after > current {
                return Err(StorageError::FutureRevision {
                    requested: after,
                    current,
                });
            }
            self.check_not_compacted(after + 1)?;
            if let Some(replay) = hub.replay(prefix, after, current) {
                return Ok(hub
                    .watchers
                    .register(prefix)
                    .into_stream(prefix, after, replay));
            }
            // Live events after `current` queue up in the channel while the
            // table supplies (after, current].
            (hub.watchers.register(prefix), current)
        };
        let (lo, _, hi) = key_range(prefix, None);
        let replay = self
            .read(move |conn| {
                let sql = format!(
                    "{EVENT_SELECT}
                     WHERE k.id > ?1 AND k.id <= ?2 AND k.name >= ?3 AND k.name < ?4
                     ORDER BY k.id"
                );
                let mut stmt = conn.prepare_cached(&sql)?;
                let rows = stmt.query_map((after, upto, &lo, &hi), event_from_row)?;
                rows.collect::<rusqlite::Result<Vec<_>>>()
            })
            .await?;
        self.check_not_compacted(after + 1)?;
        tracing::debug!(
            prefix,
            after,
            upto,
            replayed = replay.len(),
            "watch replayed from table"
        );
        Ok(subscription.into_stream(prefix, after, replay))
    }

    async fn current_revision(&self) -> Result<Revision, StorageError> {
        Ok(self.shared.revision.load(Ordering::Acquire))
    }

    async fn compact(&self, revision: Revision) -> Result<(), StorageError> {
        let (reply, answer) = oneshot::channel();
        let commands = self.commands.as_ref().ok_or(StorageError::Closed)?;
        commands
            .send(Command::Compact(revision, reply))
            .map_err(|_| StorageError::Closed)?;
        answer.await.map_err(|_| StorageError::Closed)?
    }
}
