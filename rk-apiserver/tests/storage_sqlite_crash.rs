//! Crash safety of the `sqlite` backend: a child process writes in a loop and
//! is killed with SIGKILL; every write it acknowledged must be in the reopened
//! file, with its revision.
//!
//! The child is this test binary again, running only `crash_child_writer`
//! with `RK_STORAGE_CRASH_CHILD_DB` set; without that variable the child test
//! returns at once.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use bytes::Bytes;
use rk_apiserver::storage::Storage;
use rk_apiserver::storage::sqlite::{SqliteOptions, SqliteStorage};

const CHILD_DB: &str = "RK_STORAGE_CRASH_CHILD_DB";
const WRITERS: usize = 16;
/// Kill the child once it has acknowledged this many writes.
const KILL_AFTER: usize = 3000;

/// Child mode: each writer task creates fresh keys and, every fourth step,
/// updates its own counter key; every acknowledged write is printed as
/// `ACK <writer> <key> <revision>` before the next one starts.
#[test]
fn crash_child_writer() {
    let Some(path) = std::env::var_os(CHILD_DB) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let options = SqliteOptions {
            compact_interval: None,
            ..SqliteOptions::default()
        };
        let store = std::sync::Arc::new(SqliteStorage::open_with(path, options).await.unwrap());
        let tasks = (0..WRITERS).map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let counter = format!("/registry/counters/ns/w{w}");
                let mut counter_rev = store
                    .create(&counter, Bytes::from_static(b"0"))
                    .await
                    .unwrap();
                ack(w, &counter, counter_rev);
                for i in 0u64.. {
                    let (key, rev) = if i % 4 == 3 {
                        let value = Bytes::from(i.to_string());
                        counter_rev = store.update(&counter, value, counter_rev).await.unwrap();
                        (counter.clone(), counter_rev)
                    } else {
                        let key = format!("/registry/items/ns/w{w}-{i}");
                        let value = Bytes::from(format!("{{\"writer\":{w},\"i\":{i}}}"));
                        (key.clone(), store.create(&key, value).await.unwrap())
                    };
                    ack(w, &key, rev);
                }
            })
        });
        futures::future::join_all(tasks).await;
    });
}

fn ack(writer: usize, key: &str, revision: i64) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "ACK {writer} {key} {revision}").unwrap();
    out.flush().unwrap();
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash_child_writer",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DB, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut acks: Vec<(usize, String, i64)> = Vec::new();
    let mut lines = stdout.lines();
    for line in lines.by_ref() {
        if let Some(ack) = parse_ack(&line.unwrap()) {
            acks.push(ack);
            if acks.len() == KILL_AFTER {
                break;
            }
        }
    }
    assert_eq!(acks.len(), KILL_AFTER, "the child stopped early");
    // SIGKILL, by pid, with writes in flight.
    child.kill().unwrap();
    child.wait().unwrap();
    // Acknowledgements printed before the kill are still in the pipe.
    acks.extend(
        lines
            .map_while(Result::ok)
            .filter_map(|line| parse_ack(&line)),
    );

    let conn = rusqlite::Connection::open(&path).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let rows: HashMap<i64, String> = conn
        .prepare("SELECT id, name FROM kine")
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();

    let mut per_writer: BTreeMap<usize, Vec<i64>> = BTreeMap::new();
    let mut seen = HashMap::new();
    for (writer, key, revision) in &acks {
        assert_eq!(
            rows.get(revision),
            Some(key),
            "acknowledged write {key}@{revision} is missing"
        );
        assert!(
            seen.insert(*revision, key).is_none(),
            "revision {revision} acknowledged twice"
        );
        per_writer.entry(*writer).or_default().push(*revision);
    }
    for (writer, revisions) in &per_writer {
        assert!(
            revisions.windows(2).all(|w| w[0] < w[1]),
            "writer {writer}: revisions not increasing"
        );
    }
    // Each counter's rows form one chain: every update names the row before it.
    let chains: Vec<(String, i64, i64)> = conn
        .prepare("SELECT name, id, prev_revision FROM kine WHERE name LIKE '/registry/counters/%' ORDER BY name, id")
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for pair in chains.windows(2) {
        if pair[0].0 == pair[1].0 {
            assert_eq!(pair[1].2, pair[0].1, "broken chain for {}", pair[1].0);
        }
    }
    drop(conn);

    // The reopened store resumes after the last durable revision.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = SqliteStorage::open(&path).await.unwrap();
        let current = store.current_revision().await.unwrap();
        let max_acked = acks.iter().map(|a| a.2).max().unwrap();
        let max_row = rows.keys().copied().max().unwrap();
        assert!(current >= max_acked);
        assert_eq!(current, max_row);
        let (writer, key, revision) = acks.iter().rfind(|a| a.1.contains("/items/")).unwrap();
        let kv = store.get(key).await.unwrap().unwrap();
        assert_eq!(kv.mod_revision, *revision, "writer {writer}");
        let next = store
            .create("/registry/items/ns/after", Bytes::new())
            .await
            .unwrap();
        assert_eq!(next, current + 1);
    });
}

fn parse_ack(line: &str) -> Option<(usize, String, i64)> {
    let mut parts = line.strip_prefix("ACK ")?.split(' ');
    let writer = parts.next()?.parse().ok()?;
    let key = parts.next()?.to_owned();
    let revision = parts.next()?.parse().ok()?;
    Some((writer, key, revision))
}
