//! WAL checkpoints on their own thread.
//!
//! SQLite's automatic checkpoint runs inside the committing connection, so a
//! writer that commits continuously would stall on it (copying pages into the
//! database file and, with `synchronous=FULL`, fsyncing it). The writer turns
//! it off and nudges this thread instead; a passive checkpoint runs alongside
//! the writer, and only when the WAL has grown past [`RESTART_FRAMES`] does a
//! restarting checkpoint briefly hold writes back so the file can start over.

use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

use super::Durability;

/// Past this many WAL frames (64 MiB with 4 KiB pages) the WAL is restarted.
const RESTART_FRAMES: i64 = 16_384;

/// Starts the checkpoint thread. Nudge it through the returned sender (a full
/// channel means a checkpoint is already due); it stops when the sender drops.
pub(super) fn spawn(
    path: &Path,
    durability: Durability,
) -> rusqlite::Result<(SyncSender<()>, JoinHandle<()>)> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    let synchronous = match durability {
        Durability::Full => "FULL",
        Durability::Process => "NORMAL",
    };
    conn.execute_batch(&format!("PRAGMA synchronous = {synchronous};"))?;
    let (nudge, nudges) = sync_channel(1);
    let handle = std::thread::Builder::new()
        .name("rk-sqlite-checkpoint".to_owned())
        .spawn(move || run(&conn, &nudges))
        .map_err(|e| {
            super::schema::sql_error(
                rusqlite::ffi::SQLITE_ERROR,
                format!("checkpoint thread: {e}"),
            )
        })?;
    Ok((nudge, handle))
}

fn run(conn: &Connection, nudges: &Receiver<()>) {
    while nudges.recv().is_ok() {
        match checkpoint(conn, "PASSIVE") {
            Ok(frames) if frames > RESTART_FRAMES => {
                if let Err(error) = checkpoint(conn, "RESTART") {
                    tracing::warn!(%error, "restarting WAL checkpoint failed");
                }
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "WAL checkpoint failed"),
        }
    }
}

/// Runs one checkpoint; returns the WAL's size in frames.
fn checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<i64> {
    let (busy, frames, done): (i64, i64, i64) =
        conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })?;
    tracing::trace!(mode, busy, frames, done, "WAL checkpoint");
    Ok(frames)
}
