//! Behaviour specific to the `sqlite` backend: reopening, group commit,
//! replay from the table, compaction and slow watchers.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use rk_apiserver::storage::sqlite::{SqliteOptions, SqliteStorage};
use rk_apiserver::storage::{Event, ListOptions, Revision, Storage, StorageError, WatchStream};

const PATIENCE: Duration = Duration::from_secs(20);

fn options() -> SqliteOptions {
    SqliteOptions {
        compact_interval: None,
        ..SqliteOptions::default()
    }
}

async fn open(path: &Path, options: SqliteOptions) -> SqliteStorage {
    SqliteStorage::open_with(path, options).await.unwrap()
}

fn bytes(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

async fn next_events(stream: &mut WatchStream, n: usize) -> Vec<Event> {
    let mut events = Vec::with_capacity(n);
    for _ in 0..n {
        match tokio::time::timeout(PATIENCE, stream.next()).await {
            Ok(Some(Ok(event))) => events.push(event),
            other => panic!("expected event {} of {n}, got {other:?}", events.len() + 1),
        }
    }
    events
}

fn row_count(path: &Path) -> i64 {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row("SELECT COUNT(*) FROM kine", [], |row| row.get(0))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopening_resumes_the_revision_counter_and_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let (a, gone) = {
        let store = open(&path, options()).await;
        let a = store
            .create("/registry/cm/ns/a", bytes("a1"))
            .await
            .unwrap();
        let a = store
            .update("/registry/cm/ns/a", bytes("a2"), a)
            .await
            .unwrap();
        let gone = store
            .create("/registry/cm/ns/gone", bytes("g"))
            .await
            .unwrap();
        store
            .delete("/registry/cm/ns/gone", Some(gone))
            .await
            .unwrap();
        (a, gone)
    };
    let store = open(&path, options()).await;
    assert_eq!(store.current_revision().await.unwrap(), gone + 1);
    assert_eq!(
        store
            .create("/registry/cm/ns/a", bytes("again"))
            .await
            .unwrap_err(),
        StorageError::KeyExists {
            key: "/registry/cm/ns/a".into()
        }
    );
    assert!(matches!(
        store
            .update("/registry/cm/ns/a", bytes("stale"), a - 1)
            .await,
        Err(StorageError::Conflict { .. })
    ));
    let next = store
        .update("/registry/cm/ns/a", bytes("a3"), a)
        .await
        .unwrap();
    assert_eq!(next, gone + 2);
    let recreated = store
        .create("/registry/cm/ns/gone", bytes("back"))
        .await
        .unwrap();
    assert_eq!(recreated, gone + 3);
    let past = ListOptions {
        revision: Some(a),
        ..ListOptions::default()
    };
    assert_eq!(
        store.list("/registry/cm/", past).await.unwrap().kvs[0].value,
        bytes("a2")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_store_on_the_same_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let _store = open(&path, options()).await;
    let err = SqliteStorage::open_with(&path, options())
        .await
        .err()
        .unwrap();
    assert!(
        matches!(err, StorageError::Backend(ref m) if m.contains("already open")),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_compare_in_a_batch_does_not_abort_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("state.db"), options()).await;
    let mut revs = Vec::new();
    for i in 0..64 {
        revs.push(
            store
                .create(&format!("/registry/cm/ns/k{i}"), bytes("0"))
                .await
                .unwrap(),
        );
    }
    let base = store.current_revision().await.unwrap();
    // Even keys carry the right revision, odd keys a stale one; all in flight at once.
    let store = &store;
    let revs = &revs;
    let writes = (0..64).map(|i| async move {
        let expected = if i % 2 == 0 { revs[i] } else { revs[i] - 1 };
        store
            .update(&format!("/registry/cm/ns/k{i}"), bytes("1"), expected)
            .await
    });
    let results = futures::future::join_all(writes).await;
    for (i, result) in results.iter().enumerate() {
        if i % 2 == 0 {
            assert!(result.is_ok(), "k{i}: {result:?}");
        } else {
            assert!(
                matches!(result, Err(StorageError::Conflict { .. })),
                "k{i}: {result:?}"
            );
        }
    }
    let mut written: Vec<Revision> = results.iter().filter_map(|r| r.clone().ok()).collect();
    written.sort_unstable();
    assert_eq!(written, (base + 1..=base + 32).collect::<Vec<_>>());
    assert_eq!(store.current_revision().await.unwrap(), base + 32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_older_than_the_memory_history_replays_the_table_then_goes_live() {
    let dir = tempfile::tempdir().unwrap();
    let history = SqliteOptions {
        watch_history: 8,
        ..options()
    };
    let store = open(&dir.path().join("state.db"), history).await;
    let key = "/registry/leases/ns/l";
    let mut rev = store.create(key, bytes("0")).await.unwrap();
    let first = rev;
    for i in 1..100 {
        rev = store.update(key, bytes(&i.to_string()), rev).await.unwrap();
    }
    store
        .create("/registry/other/ns/x", bytes("not watched"))
        .await
        .unwrap();
    let mut stream = store.watch("/registry/leases/", first + 4).await.unwrap();
    // Writes racing with the hand-over from table to live events.
    let writer = async {
        let mut rev = rev;
        for i in 100..150 {
            rev = store.update(key, bytes(&i.to_string()), rev).await.unwrap();
        }
        rev
    };
    let (last, events) = tokio::join!(writer, next_events(&mut stream, 145));
    assert_eq!(events.last().unwrap().revision(), last);
    for (offset, event) in events.iter().enumerate() {
        let i = offset + 5;
        assert_eq!(event.kv.value, bytes(&i.to_string()));
        assert_eq!(
            event.prev.as_ref().unwrap().value,
            bytes(&(i - 1).to_string())
        );
    }
    let revs: Vec<Revision> = events.iter().map(Event::revision).collect();
    assert!(revs.windows(2).all(|w| w[0] < w[1]), "{revs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_deletes_superseded_rows_and_old_tombstones_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let store = open(&path, options()).await;
    let mut a = store
        .create("/registry/cm/ns/a", bytes("a0"))
        .await
        .unwrap();
    for i in 1..10 {
        a = store
            .update("/registry/cm/ns/a", bytes(&format!("a{i}")), a)
            .await
            .unwrap();
    }
    let b = store.create("/registry/cm/ns/b", bytes("b")).await.unwrap();
    store.delete("/registry/cm/ns/b", Some(b)).await.unwrap();
    store.create("/registry/cm/ns/c", bytes("c")).await.unwrap();
    assert_eq!(row_count(&path), 13);

    let current = store.current_revision().await.unwrap();
    store.compact(current).await.unwrap();
    // Left: the latest row of `a` and of `c`; `b` and its tombstone are gone.
    assert_eq!(row_count(&path), 2);
    let list = store
        .list("/registry/cm/", ListOptions::default())
        .await
        .unwrap();
    let keys: Vec<_> = list.kvs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["/registry/cm/ns/a", "/registry/cm/ns/c"]);
    // Updating after compaction still reports the previous value.
    let mut stream = store.watch("/registry/cm/", current).await.unwrap();
    store
        .update("/registry/cm/ns/a", bytes("a10"), a)
        .await
        .unwrap();
    let event = next_events(&mut stream, 1).await.remove(0);
    assert_eq!(event.prev.unwrap().value, bytes("a9"));
    // And a reopened store agrees.
    drop(stream);
    drop(store);
    let store = open(&path, options()).await;
    let past = ListOptions {
        revision: Some(current - 1),
        ..ListOptions::default()
    };
    assert!(matches!(
        store.list("/registry/cm/", past).await,
        Err(StorageError::Compacted { .. })
    ));
    assert_eq!(
        store.get("/registry/cm/ns/a").await.unwrap().unwrap().value,
        bytes("a10")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_compaction_keeps_the_configured_number_of_revisions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let background = SqliteOptions {
        compact_interval: Some(Duration::from_millis(20)),
        compact_retain: 10,
        ..options()
    };
    let store = open(&path, background).await;
    let mut rev = store.create("/registry/cm/ns/a", bytes("0")).await.unwrap();
    for i in 1..100 {
        rev = store
            .update("/registry/cm/ns/a", bytes(&i.to_string()), rev)
            .await
            .unwrap();
    }
    // Compaction runs on a timer (perhaps already during the writes): wait,
    // bounded, until a run has happened after the last write.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let first = ListOptions {
            revision: Some(1),
            ..ListOptions::default()
        };
        match store.list("/registry/cm/", first).await {
            Err(StorageError::Compacted { compacted, .. }) if compacted == rev - 10 => break,
            Err(StorageError::Compacted { compacted, .. }) => assert!(compacted < rev - 10),
            Ok(_) => {}
            Err(err) => panic!("{err:?}"),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no compaction to {}",
            rev - 10
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let recent = ListOptions {
        revision: Some(rev - 10),
        ..ListOptions::default()
    };
    assert_eq!(
        store.list("/registry/cm/", recent).await.unwrap().kvs[0].value,
        bytes("89")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_that_falls_behind_ends_with_watcher_too_slow() {
    let dir = tempfile::tempdir().unwrap();
    let small = SqliteOptions {
        watch_buffer: 3,
        ..options()
    };
    let store = open(&dir.path().join("state.db"), small).await;
    let mut stream = store.watch("/registry/", 0).await.unwrap();
    let mut revs = Vec::new();
    for i in 0..10 {
        // One at a time, so each write is its own commit.
        revs.push(
            store
                .create(&format!("/registry/cm/ns/{i}"), bytes("x"))
                .await
                .unwrap(),
        );
    }
    let delivered = next_events(&mut stream, 3).await;
    assert_eq!(
        delivered.iter().map(Event::revision).collect::<Vec<_>>(),
        revs[..3]
    );
    let end = stream.next().await.unwrap().unwrap_err();
    assert_eq!(end, StorageError::WatcherTooSlow { revision: revs[2] });
    assert!(stream.next().await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_over_the_limit_are_rejected_with_value_too_large() {
    let dir = tempfile::tempdir().unwrap();
    let small = SqliteOptions {
        max_value_len: 10,
        ..options()
    };
    let store = open(&dir.path().join("state.db"), small).await;
    let err = store
        .create("/registry/cm/ns/a", Bytes::from(vec![0; 11]))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        StorageError::ValueTooLarge {
            key: "/registry/cm/ns/a".into(),
            size: 11,
            limit: 10
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_store_ends_watches_with_closed() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("state.db"), options()).await;
    let mut stream = store.watch("/registry/", 0).await.unwrap();
    drop(store);
    assert_eq!(
        stream.next().await.unwrap().unwrap_err(),
        StorageError::Closed
    );
}
