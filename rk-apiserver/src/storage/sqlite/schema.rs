//! The on-disk layout of the `sqlite` backend and its row decoding.
//!
//! One table in the style of kine: every write is a row whose `id` is its
//! revision. A put row holds the new `value`; a delete row has `deleted = 1` and
//! the last value in `old_value`. `prev_revision` is the revision of the row the
//! write superseded (0 for a create): an update's previous value is read from
//! that row rather than stored twice (after compaction removed it, the event
//! has no previous value, as with etcd), and compaction follows it to find dead
//! rows.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use rusqlite::{Connection, OpenFlags, Row};

use super::Durability;
use crate::storage::{Event, EventKind, KeyValue, Revision, StorageError};

/// Tables and indexes, created if missing.
pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS kine (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    created INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    create_revision INTEGER NOT NULL,
    prev_revision INTEGER NOT NULL,
    value BLOB,
    old_value BLOB
);
CREATE INDEX IF NOT EXISTS kine_name_id ON kine (name, id);
CREATE TABLE IF NOT EXISTS kine_meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO kine_meta (key, value) VALUES ('compact_revision', 0);
INSERT OR IGNORE INTO kine_meta (key, value) VALUES ('compact_scanned', 0);
";

/// Meta key: the compaction revision (oldest readable revision).
pub(super) const META_COMPACT_REVISION: &str = "compact_revision";
/// Meta key: rows with an id below this have been examined by compaction.
pub(super) const META_COMPACT_SCANNED: &str = "compact_scanned";

/// The rows [`event_from_row`] reads: `k` is the write, `p` the row it
/// superseded. Add a `WHERE` on `k`.
pub(super) const EVENT_SELECT: &str = "SELECT k.id, k.name, k.created, k.deleted,
    k.create_revision, k.prev_revision, k.value, COALESCE(k.old_value, p.value)
    FROM kine AS k LEFT JOIN kine AS p ON p.id = k.prev_revision AND k.prev_revision > 0";

/// Opens the connection that writes: WAL mode, the chosen `synchronous` level,
/// schema created.
pub(super) fn open_writer(path: &Path, durability: Durability) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(sql_error(
            rusqlite::ffi::SQLITE_CANTOPEN,
            format!(
                "could not switch {} to WAL mode (got {mode})",
                path.display()
            ),
        ));
    }
    let synchronous = match durability {
        Durability::Full => "FULL",
        Durability::Process => "NORMAL",
    };
    conn.execute_batch(&format!(
        "PRAGMA synchronous = {synchronous};
         PRAGMA cache_size = -8192;
         PRAGMA journal_size_limit = 67108864;
         PRAGMA wal_autocheckpoint = 0;
         PRAGMA foreign_keys = OFF;"
    ))?;
    conn.execute_batch(SCHEMA)?;
    Ok(conn)
}

/// Opens a connection for reads only.
pub(super) fn open_reader(path: &Path) -> rusqlite::Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.execute_batch("PRAGMA cache_size = -16384;")?;
    Ok(conn)
}

/// Takes an exclusive lock on `<path>.lock` for as long as the returned
/// connection lives, so two stores (in this process or another) never write the
/// same file with separate in-memory indexes.
pub(super) fn lock_file(path: &Path) -> Result<Connection, StorageError> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let conn = Connection::open(&lock_path).map_err(backend)?;
    conn.busy_timeout(Duration::ZERO).map_err(backend)?;
    let locked = conn.execute_batch(
        "PRAGMA locking_mode = EXCLUSIVE;
         CREATE TABLE IF NOT EXISTS owner (id INTEGER);
         BEGIN EXCLUSIVE; DELETE FROM owner; COMMIT;",
    );
    match locked {
        Ok(()) => Ok(conn),
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::DatabaseBusy =>
        {
            Err(StorageError::Backend(format!(
                "{} is already open in another store",
                path.display()
            )))
        }
        Err(e) => Err(backend(e)),
    }
}

/// Reads one value of the meta table.
pub(super) fn read_meta(conn: &Connection, key: &str) -> rusqlite::Result<Revision> {
    conn.query_row("SELECT value FROM kine_meta WHERE key = ?1", [key], |row| {
        row.get(0)
    })
}

/// Writes one value of the meta table.
pub(super) fn write_meta(conn: &Connection, key: &str, value: Revision) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE kine_meta SET value = ?2 WHERE key = ?1")?
        .execute((key, value))?;
    Ok(())
}

/// An SQLite error with the given primary result code and message.
pub(super) fn sql_error(code: std::ffi::c_int, message: String) -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), Some(message))
}

/// Maps an SQLite error to [`StorageError::Backend`].
pub(super) fn backend(error: rusqlite::Error) -> StorageError {
    StorageError::Backend(format!("sqlite: {error}"))
}

fn blob(row: &Row<'_>, index: usize) -> rusqlite::Result<Option<Bytes>> {
    Ok(row.get::<_, Option<Vec<u8>>>(index)?.map(Bytes::from))
}

/// Decodes a row selected with [`EVENT_SELECT`] into the event it recorded.
pub(super) fn event_from_row(row: &Row<'_>) -> rusqlite::Result<Event> {
    let id: Revision = row.get(0)?;
    let name: String = row.get(1)?;
    let created: bool = row.get(2)?;
    let deleted: bool = row.get(3)?;
    let create_revision: Revision = row.get(4)?;
    let prev_revision: Revision = row.get(5)?;
    let old_value = blob(row, 7)?;
    let prev = match (&old_value, created) {
        (Some(value), false) => Some(KeyValue {
            key: name.clone(),
            value: value.clone(),
            create_revision,
            mod_revision: prev_revision,
        }),
        _ => None,
    };
    if deleted {
        let value = old_value.unwrap_or_default();
        let kv = KeyValue {
            key: name,
            value,
            create_revision,
            mod_revision: id,
        };
        return Ok(Event {
            kind: EventKind::Delete,
            kv,
            prev,
        });
    }
    let value = blob(row, 6)?.unwrap_or_default();
    let kv = KeyValue {
        key: name,
        value,
        create_revision,
        mod_revision: id,
    };
    Ok(Event {
        kind: EventKind::Put,
        kv,
        prev,
    })
}
