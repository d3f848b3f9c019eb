//! The single writer of the `sqlite` backend.
//!
//! A dedicated thread owns the write connection and the in-memory index of live
//! keys (`key -> (create_revision, mod_revision)`). It takes every write that is
//! waiting, checks each compare-and-swap against the index (plus the writes
//! already staged in the same batch), inserts the rows in one transaction and
//! commits it (group commit). Only then does it publish the events to watchers,
//! in revision order, and acknowledge each write. A write that fails its check is
//! answered with its error and leaves the rest of the batch alone.
//!
//! Compaction runs on the same thread in chunks of ids, one transaction each,
//! between write batches, so writes never wait for a whole compaction.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior};
use tokio::sync::oneshot;

use super::Shared;
use super::schema::{META_COMPACT_REVISION, META_COMPACT_SCANNED, backend, sql_error, write_meta};
use crate::storage::{Event, EventKind, KeyValue, Revision, StorageError};

/// How many ids one compaction transaction examines.
const COMPACT_CHUNK: Revision = 10_000;

/// Rows written between two nudges of the checkpoint thread.
const CHECKPOINT_EVERY_ROWS: usize = 1000;

/// A write as submitted by a caller (already validated).
pub(super) enum Op {
    Create {
        key: String,
        value: Bytes,
    },
    Update {
        key: String,
        value: Bytes,
        expected: Revision,
    },
    Delete {
        key: String,
        expected: Option<Revision>,
    },
}

/// What a successful write returns.
pub(super) enum Outcome {
    Written(Revision),
    Deleted(KeyValue, Revision),
}

pub(super) type Reply<T> = oneshot::Sender<Result<T, StorageError>>;

/// A request to the writer thread.
pub(super) enum Command {
    Write(Op, Reply<Outcome>),
    Compact(Revision, Reply<()>),
}

/// The writer's view of a live key: `(create_revision, mod_revision)`.
type IndexEntry = (Revision, Revision);

/// Settings the writer needs.
pub(super) struct WriterConfig {
    pub max_batch: usize,
    pub group_commit_wait: Duration,
    pub checkpoint: SyncSender<()>,
    pub compact_interval: Option<Duration>,
    pub compact_retain: Revision,
}

/// The state owned by the writer thread.
pub(super) struct Writer {
    conn: Connection,
    shared: Arc<Shared>,
    config: WriterConfig,
    index: HashMap<String, IndexEntry>,
    revision: Revision,
    compacted: Revision,
    /// Rows with an id below this have been examined by compaction.
    scanned: Revision,
    /// Callers waiting for the compaction in progress to finish.
    compact_waiters: Vec<Reply<()>>,
    /// Rows written since the checkpoint thread was last nudged.
    unchecked_rows: usize,
    /// The number of writes in the last batch.
    last_batch: usize,
}

/// The writes of one batch that are not committed yet.
struct Staged {
    /// Keys written in this batch: `Some` if live after it, `None` if deleted.
    overlay: HashMap<String, Option<(Revision, Revision, Bytes)>>,
    revision: Revision,
    events: Vec<Event>,
}

impl Writer {
    /// Loads the index and counters from `conn`.
    pub(super) fn load(
        conn: Connection,
        shared: Arc<Shared>,
        config: WriterConfig,
    ) -> rusqlite::Result<Self> {
        let mut index = HashMap::new();
        {
            let mut stmt = conn.prepare(
                "SELECT k.name, k.create_revision, k.id FROM kine AS k
                 JOIN (SELECT MAX(id) AS id FROM kine GROUP BY name) AS latest ON k.id = latest.id
                 WHERE k.deleted = 0",
            )?;
            let rows = stmt.query_map([], |row| Ok((row.get(0)?, (row.get(1)?, row.get(2)?))))?;
            for row in rows {
                let (name, entry): (String, IndexEntry) = row?;
                index.insert(name, entry);
            }
        }
        let max_id: Revision =
            conn.query_row("SELECT COALESCE(MAX(id), 0) FROM kine", [], |r| r.get(0))?;
        let compacted = super::schema::read_meta(&conn, META_COMPACT_REVISION)?;
        let scanned = super::schema::read_meta(&conn, META_COMPACT_SCANNED)?;
        let revision = max_id.max(compacted);
        tracing::info!(
            revision,
            compacted,
            keys = index.len(),
            "sqlite storage opened"
        );
        Ok(Self {
            conn,
            shared,
            config,
            index,
            revision,
            compacted,
            scanned,
            compact_waiters: Vec::new(),
            unchecked_rows: 0,
            last_batch: 0,
        })
    }

    /// The revision of the last committed write.
    pub(super) fn revision(&self) -> Revision {
        self.revision
    }

    /// The compaction revision.
    pub(super) fn compacted(&self) -> Revision {
        self.compacted
    }

    /// Serves commands until every sender is gone.
    pub(super) fn run(mut self, commands: Receiver<Command>) {
        let mut next_compaction = self
            .config
            .compact_interval
            .map(|every| Instant::now() + every);
        loop {
            let compacting = self.scanned < self.compacted;
            let timeout = if compacting {
                Duration::ZERO
            } else {
                next_compaction
                    .map(|at| at.saturating_duration_since(Instant::now()))
                    .unwrap_or(Duration::from_secs(3600))
            };
            let mut writes = Vec::new();
            match commands.recv_timeout(timeout) {
                Ok(command) => {
                    self.dispatch(command, &mut writes);
                    self.gather(&commands, &mut writes);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if !writes.is_empty() {
                self.commit(writes);
            }
            if let (Some(at), Some(every)) = (next_compaction, self.config.compact_interval)
                && Instant::now() >= at
            {
                next_compaction = Some(Instant::now() + every);
                let target = self.revision - self.config.compact_retain;
                if target > self.compacted {
                    tracing::debug!(target, "background compaction");
                    self.start_compaction(target, None);
                }
            }
            if self.scanned < self.compacted {
                self.compaction_step();
            }
        }
        tracing::debug!(revision = self.revision, "sqlite writer stopped");
    }

    /// Collects the writes waiting after the first one. Writers acknowledged by
    /// the last commit usually come straight back, so while fewer than that
    /// many are here, wait for them a little (at most `group_commit_wait`):
    /// one bigger commit beats two small ones.
    fn gather(&mut self, commands: &Receiver<Command>, writes: &mut Vec<(Op, Reply<Outcome>)>) {
        let expected = self.last_batch.min(self.config.max_batch);
        let deadline = Instant::now() + self.config.group_commit_wait;
        while writes.len() < self.config.max_batch {
            let command = match commands.try_recv() {
                Ok(command) => command,
                Err(TryRecvError::Empty) if writes.len() < expected => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    match commands.recv_timeout(left) {
                        Ok(command) => command,
                        Err(_) => break,
                    }
                }
                Err(_) => break,
            };
            self.dispatch(command, writes);
        }
    }

    fn dispatch(&mut self, command: Command, writes: &mut Vec<(Op, Reply<Outcome>)>) {
        match command {
            Command::Write(op, reply) => writes.push((op, reply)),
            Command::Compact(revision, reply) => {
                // Writes received before the compaction request commit first.
                if !writes.is_empty() {
                    self.commit(std::mem::take(writes));
                }
                self.start_compaction(revision, Some(reply));
            }
        }
    }

    /// Commits one batch of writes in one transaction, then publishes and
    /// acknowledges them.
    fn commit(&mut self, writes: Vec<(Op, Reply<Outcome>)>) {
        let mut staged = Staged {
            overlay: HashMap::new(),
            revision: self.revision,
            events: Vec::new(),
        };
        self.last_batch = writes.len();
        let mut answers: Vec<(Reply<Outcome>, Result<Outcome, StorageError>)> =
            Vec::with_capacity(writes.len());
        // IMMEDIATE takes the write lock up front (waiting out a checkpoint
        // if need be) instead of failing to upgrade a read snapshot later.
        let committed = (|| -> rusqlite::Result<()> {
            let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
            let mut writes = writes.into_iter();
            for (op, reply) in writes.by_ref() {
                match apply(&tx, &self.index, &mut staged, op) {
                    Ok(answer) => answers.push((reply, answer)),
                    Err(error) => {
                        let failed = backend(rusqlite::Error::SqliteFailure(
                            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ABORT),
                            Some(error.to_string()),
                        ));
                        answers.push((reply, Err(failed.clone())));
                        answers.extend(writes.map(|(_, reply)| (reply, Err(failed.clone()))));
                        return Err(error);
                    }
                }
            }
            tx.commit()
        })();
        if let Err(error) = committed {
            tracing::error!(%error, "sqlite write batch failed; rolled back");
            let error = backend(error);
            for (reply, answer) in answers {
                // Writes that failed their own check keep that answer.
                let _ = reply.send(answer.and(Err(error.clone())));
            }
            return;
        }
        for (key, entry) in staged.overlay {
            match entry {
                Some((create, modified, _)) => {
                    self.index.insert(key, (create, modified));
                }
                None => {
                    self.index.remove(&key);
                }
            }
        }
        self.unchecked_rows += staged.events.len();
        if self.unchecked_rows >= CHECKPOINT_EVERY_ROWS {
            self.unchecked_rows = 0;
            // Full: a checkpoint is already pending, which is as good.
            let _ = self.config.checkpoint.try_send(());
        }
        self.revision = staged.revision;
        self.shared.publish(staged.events, self.revision);
        for (reply, answer) in answers {
            // The caller may have given up waiting; the write stands regardless.
            let _ = reply.send(answer);
        }
    }

    /// Records a new compaction revision (durably) and queues the deletion of the
    /// rows it makes unreachable.
    fn start_compaction(&mut self, target: Revision, reply: Option<Reply<()>>) {
        let answer = if target > self.revision {
            Err(StorageError::FutureRevision {
                requested: target,
                current: self.revision,
            })
        } else if target <= self.compacted {
            Ok(())
        } else {
            match write_meta(&self.conn, META_COMPACT_REVISION, target) {
                Ok(()) => {
                    self.compacted = target;
                    self.shared.set_compacted(target);
                    if let Some(reply) = reply {
                        self.compact_waiters.push(reply);
                    }
                    return;
                }
                Err(error) => Err(backend(error)),
            }
        };
        if let Some(reply) = reply {
            let _ = reply.send(answer);
        }
    }

    /// Deletes the dead rows among the next chunk of ids below the compaction
    /// revision: rows superseded by a write at or below it, and deletion rows
    /// (tombstones) below it.
    fn compaction_step(&mut self) {
        let target = self.compacted;
        let low = self.scanned;
        let high = (low + COMPACT_CHUNK).min(target + 1);
        let done = (|| -> rusqlite::Result<usize> {
            let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
            let mut deleted = tx
                .prepare_cached(
                    "DELETE FROM kine WHERE id IN (
                        SELECT prev_revision FROM kine
                        WHERE id >= ?1 AND id < ?2 AND prev_revision > 0)",
                )?
                .execute((low, high))?;
            deleted += tx
                .prepare_cached("DELETE FROM kine WHERE deleted = 1 AND id >= ?1 AND id < ?2")?
                .execute((low, high.min(target)))?;
            // The row at `target` stays unexamined so the next compaction
            // looks at it again (its tombstone, if any, is still needed).
            write_meta(&tx, META_COMPACT_SCANNED, high.min(target))?;
            tx.commit()?;
            Ok(deleted)
        })();
        match done {
            Ok(deleted) => {
                tracing::trace!(low, high, deleted, "compaction chunk");
                self.scanned = high.min(target);
                if high >= target {
                    self.finish_compaction(Ok(()));
                }
            }
            Err(error) => {
                tracing::error!(%error, "compaction chunk failed");
                // Skip the rest of this run rather than retry in a hot loop: the
                // rows left behind are unreachable garbage, not wrong answers.
                self.scanned = self.compacted;
                self.finish_compaction(Err(backend(error)));
            }
        }
    }

    fn finish_compaction(&mut self, answer: Result<(), StorageError>) {
        tracing::debug!(revision = self.compacted, "sqlite compaction finished");
        for reply in self.compact_waiters.drain(..) {
            let _ = reply.send(answer.clone());
        }
    }
}

/// Checks `op` against the index and the batch so far and, if it holds, inserts
/// its row. The outer error aborts the batch; the inner one answers this write.
fn apply(
    conn: &Connection,
    index: &HashMap<String, IndexEntry>,
    staged: &mut Staged,
    op: Op,
) -> rusqlite::Result<Result<Outcome, StorageError>> {
    let lookup = |key: &str| -> Option<(Revision, Revision, Option<Bytes>)> {
        match staged.overlay.get(key) {
            Some(entry) => entry.clone().map(|(c, m, v)| (c, m, Some(v))),
            None => index.get(key).map(|&(c, m)| (c, m, None)),
        }
    };
    let revision = staged.revision + 1;
    let mut insert = conn.prepare_cached(
        "INSERT INTO kine (id, name, created, deleted, create_revision, prev_revision, value, old_value)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    match op {
        Op::Create { key, value } => {
            if lookup(&key).is_some() {
                return Ok(Err(StorageError::KeyExists { key }));
            }
            insert.execute((
                revision,
                &key,
                true,
                false,
                revision,
                0,
                &value[..],
                None::<&[u8]>,
            ))?;
            let kv = KeyValue {
                key: key.clone(),
                value: value.clone(),
                create_revision: revision,
                mod_revision: revision,
            };
            staged
                .overlay
                .insert(key, Some((revision, revision, value)));
            staged.events.push(Event {
                kind: EventKind::Put,
                kv,
                prev: None,
            });
            staged.revision = revision;
            Ok(Ok(Outcome::Written(revision)))
        }
        Op::Update {
            key,
            value,
            expected,
        } => {
            let prev = match checked(conn, &key, lookup(&key), Some(expected))? {
                Ok(prev) => prev,
                Err(error) => return Ok(Err(error)),
            };
            insert.execute((
                revision,
                &key,
                false,
                false,
                prev.create_revision,
                prev.mod_revision,
                &value[..],
                // The previous value is in the row `prev_revision` names.
                None::<&[u8]>,
            ))?;
            let kv = KeyValue {
                key: key.clone(),
                value: value.clone(),
                create_revision: prev.create_revision,
                mod_revision: revision,
            };
            staged
                .overlay
                .insert(key, Some((prev.create_revision, revision, value)));
            staged.events.push(Event {
                kind: EventKind::Put,
                kv,
                prev: Some(prev),
            });
            staged.revision = revision;
            Ok(Ok(Outcome::Written(revision)))
        }
        Op::Delete { key, expected } => {
            let prev = match checked(conn, &key, lookup(&key), expected)? {
                Ok(prev) => prev,
                Err(error) => return Ok(Err(error)),
            };
            insert.execute((
                revision,
                &key,
                false,
                true,
                prev.create_revision,
                prev.mod_revision,
                None::<&[u8]>,
                &prev.value[..],
            ))?;
            let kv = KeyValue {
                mod_revision: revision,
                ..prev.clone()
            };
            staged.overlay.insert(key, None);
            staged.events.push(Event {
                kind: EventKind::Delete,
                kv,
                prev: Some(prev.clone()),
            });
            staged.revision = revision;
            Ok(Ok(Outcome::Deleted(prev, revision)))
        }
    }
}

/// The live key-value of `key` if it matches `expected`, reading its value from
/// the table when the batch does not hold it.
fn checked(
    conn: &Connection,
    key: &str,
    current: Option<(Revision, Revision, Option<Bytes>)>,
    expected: Option<Revision>,
) -> rusqlite::Result<Result<KeyValue, StorageError>> {
    let Some((create_revision, mod_revision, value)) = current else {
        return Ok(Err(StorageError::NotFound {
            key: key.to_owned(),
        }));
    };
    if let Some(expected) = expected.filter(|&e| e != mod_revision) {
        return Ok(Err(StorageError::Conflict {
            key: key.to_owned(),
            expected,
            actual: mod_revision,
        }));
    }
    let value = match value {
        Some(value) => value,
        None => {
            let stored: Option<Option<Vec<u8>>> = conn
                .prepare_cached("SELECT value FROM kine WHERE id = ?1")?
                .query_row([mod_revision], |row| row.get(0))
                .optional()?;
            match stored {
                Some(value) => Bytes::from(value.unwrap_or_default()),
                None => {
                    return Err(sql_error(
                        rusqlite::ffi::SQLITE_CORRUPT,
                        format!(
                            "index names row {mod_revision} for {key}; the table has no such row"
                        ),
                    ));
                }
            }
        }
    };
    Ok(Ok(KeyValue {
        key: key.to_owned(),
        value,
        create_revision,
        mod_revision,
    }))
}
