//! One conformance suite for every storage backend.
//!
//! Each case is written once, as an async fn over `&dyn Storage`; the
//! `conformance!` macro instantiates all of them per backend. The etcd backend
//! runs only with `--features etcd`: each of its tests starts its own etcd on
//! loopback (random ports, temporary data directory) and kills it at the end.
//! No case assumes absolute revisions (an empty etcd is at revision 1, the
//! embedded backends at 0), only their order and spacing.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use rk_apiserver::storage::memory::MemoryStorage;
use rk_apiserver::storage::sqlite::{SqliteOptions, SqliteStorage};
use rk_apiserver::storage::{
    Event, EventKind, ListOptions, Revision, Storage, StorageError, WatchStream,
};

/// A store under test and whatever must live as long as it.
struct Harness {
    store: Arc<dyn Storage>,
    _guards: Vec<Box<dyn Any + Send>>,
}

async fn memory() -> Harness {
    Harness {
        store: Arc::new(MemoryStorage::new()),
        _guards: Vec::new(),
    }
}

async fn sqlite() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let options = SqliteOptions {
        compact_interval: None,
        ..SqliteOptions::default()
    };
    let store = SqliteStorage::open_with(dir.path().join("state.db"), options)
        .await
        .unwrap();
    // The store must close before its directory goes: guards drop after it.
    Harness {
        store: Arc::new(store),
        _guards: vec![Box::new(dir)],
    }
}

#[cfg(feature = "etcd")]
async fn etcd() -> Harness {
    use rk_apiserver::storage::etcd::{EtcdStorage, LocalEtcd};
    let etcd = tokio::task::spawn_blocking(LocalEtcd::start)
        .await
        .unwrap()
        .unwrap();
    let store = EtcdStorage::connect([etcd.endpoint()]).await.unwrap();
    Harness {
        store: Arc::new(store),
        _guards: vec![Box::new(etcd)],
    }
}

macro_rules! conformance {
    ($backend:ident) => {
        mod $backend {
            conformance!(@cases $backend;
                create_then_get_returns_the_value_and_revisions,
                create_of_an_existing_key_fails_with_key_exists,
                every_write_gets_the_next_revision,
                stale_update_is_rejected_with_conflict,
                update_of_a_missing_key_fails_with_not_found,
                delete_returns_the_last_value_and_the_delete_revision,
                stale_delete_is_rejected_with_conflict,
                delete_of_a_missing_key_fails_with_not_found,
                delete_then_recreate_resets_the_create_revision,
                list_returns_only_keys_under_the_prefix_in_key_order,
                list_at_a_past_revision_returns_the_state_of_that_revision,
                list_at_a_future_revision_fails_with_future_revision,
                pagination_across_concurrent_writes_reads_one_snapshot,
                watch_delivers_events_in_revision_order_with_previous_values,
                watch_from_now_sees_only_later_changes,
                watch_only_sees_keys_under_its_prefix,
                watch_resumes_after_a_revision_without_gaps_or_duplicates,
                watches_started_during_writes_see_every_later_revision_once,
                watch_from_a_compacted_revision_fails_with_compacted,
                watch_from_a_future_revision_fails_with_future_revision,
                list_below_the_compaction_revision_fails_with_compacted,
                compaction_keeps_the_current_state_readable,
                compact_to_a_future_revision_fails_with_future_revision,
                many_watchers_each_receive_every_event,
                values_of_1_5_mib_round_trip_through_writes_reads_and_watches,
                malformed_keys_are_rejected_with_invalid_key,
                concurrent_creates_of_one_key_have_exactly_one_winner,
                concurrent_updates_from_one_revision_have_exactly_one_winner,
            );
        }
    };
    (@cases $backend:ident; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let harness = super::$backend().await;
                super::cases::$case(&*harness.store).await;
            }
        )*
    };
}

conformance!(memory);
conformance!(sqlite);
#[cfg(feature = "etcd")]
conformance!(etcd);

/// How long a test waits for an event before failing (a safety net against
/// hangs; events normally arrive in microseconds).
const PATIENCE: Duration = Duration::from_secs(20);

fn bytes(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

async fn next_event(stream: &mut WatchStream) -> Event {
    match tokio::time::timeout(PATIENCE, stream.next()).await {
        Ok(Some(Ok(event))) => event,
        other => panic!("expected an event, got {other:?}"),
    }
}

async fn next_events(stream: &mut WatchStream, n: usize) -> Vec<Event> {
    let mut events = Vec::with_capacity(n);
    for _ in 0..n {
        events.push(next_event(stream).await);
    }
    events
}

fn revisions(events: &[Event]) -> Vec<Revision> {
    events.iter().map(Event::revision).collect()
}

mod cases {
    use super::*;

    pub async fn create_then_get_returns_the_value_and_revisions(store: &dyn Storage) {
        let key = "/registry/pods/default/web-0";
        let rev = store.create(key, bytes("v1")).await.unwrap();
        let kv = store.get(key).await.unwrap().unwrap();
        assert_eq!(kv.key, key);
        assert_eq!(kv.value, bytes("v1"));
        assert_eq!((kv.create_revision, kv.mod_revision), (rev, rev));
        assert_eq!(store.current_revision().await.unwrap(), rev);
        assert_eq!(
            store.get("/registry/pods/default/web-1").await.unwrap(),
            None
        );
    }

    pub async fn create_of_an_existing_key_fails_with_key_exists(store: &dyn Storage) {
        let key = "/registry/pods/default/a";
        let rev = store.create(key, bytes("v1")).await.unwrap();
        let err = store.create(key, bytes("v2")).await.unwrap_err();
        assert_eq!(err, StorageError::KeyExists { key: key.into() });
        assert_eq!(store.get(key).await.unwrap().unwrap().mod_revision, rev);
        assert_eq!(store.current_revision().await.unwrap(), rev);
    }

    pub async fn every_write_gets_the_next_revision(store: &dyn Storage) {
        let base = store.current_revision().await.unwrap();
        let r1 = store.create("/registry/a/x", bytes("1")).await.unwrap();
        let r2 = store.update("/registry/a/x", bytes("2"), r1).await.unwrap();
        let r3 = store.create("/registry/a/y", bytes("3")).await.unwrap();
        let (_, r4) = store.delete("/registry/a/x", Some(r2)).await.unwrap();
        assert_eq!([r1, r2, r3, r4], [base + 1, base + 2, base + 3, base + 4]);
        assert_eq!(store.current_revision().await.unwrap(), base + 4);
    }

    pub async fn stale_update_is_rejected_with_conflict(store: &dyn Storage) {
        let key = "/registry/configmaps/ns/cm";
        let r1 = store.create(key, bytes("v1")).await.unwrap();
        let r2 = store.update(key, bytes("v2"), r1).await.unwrap();
        let err = store.update(key, bytes("v3"), r1).await.unwrap_err();
        assert_eq!(
            err,
            StorageError::Conflict {
                key: key.into(),
                expected: r1,
                actual: r2
            }
        );
        let kv = store.get(key).await.unwrap().unwrap();
        assert_eq!(
            (kv.value, kv.mod_revision, kv.create_revision),
            (bytes("v2"), r2, r1)
        );
    }

    pub async fn update_of_a_missing_key_fails_with_not_found(store: &dyn Storage) {
        let key = "/registry/configmaps/ns/gone";
        let err = store.update(key, bytes("v"), 1).await.unwrap_err();
        assert_eq!(err, StorageError::NotFound { key: key.into() });
        let r1 = store.create(key, bytes("v1")).await.unwrap();
        store.delete(key, None).await.unwrap();
        let err = store.update(key, bytes("v2"), r1).await.unwrap_err();
        assert_eq!(err, StorageError::NotFound { key: key.into() });
        assert_eq!(store.get(key).await.unwrap(), None);
    }

    pub async fn delete_returns_the_last_value_and_the_delete_revision(store: &dyn Storage) {
        let key = "/registry/secrets/ns/s";
        let r1 = store.create(key, bytes("v1")).await.unwrap();
        let r2 = store.update(key, bytes("v2"), r1).await.unwrap();
        let (kv, r3) = store.delete(key, Some(r2)).await.unwrap();
        assert_eq!(kv.value, bytes("v2"));
        assert_eq!((kv.create_revision, kv.mod_revision), (r1, r2));
        assert!(r3 > r2);
        assert_eq!(store.current_revision().await.unwrap(), r3);
        assert_eq!(store.get(key).await.unwrap(), None);
    }

    pub async fn stale_delete_is_rejected_with_conflict(store: &dyn Storage) {
        let key = "/registry/secrets/ns/s";
        let r1 = store.create(key, bytes("v1")).await.unwrap();
        let r2 = store.update(key, bytes("v2"), r1).await.unwrap();
        let err = store.delete(key, Some(r1)).await.unwrap_err();
        assert_eq!(
            err,
            StorageError::Conflict {
                key: key.into(),
                expected: r1,
                actual: r2
            }
        );
        assert_eq!(store.get(key).await.unwrap().unwrap().value, bytes("v2"));
    }

    pub async fn delete_of_a_missing_key_fails_with_not_found(store: &dyn Storage) {
        let key = "/registry/secrets/ns/none";
        let before = store.current_revision().await.unwrap();
        assert_eq!(
            store.delete(key, None).await.unwrap_err(),
            StorageError::NotFound { key: key.into() }
        );
        assert_eq!(
            store.delete(key, Some(5)).await.unwrap_err(),
            StorageError::NotFound { key: key.into() }
        );
        assert_eq!(store.current_revision().await.unwrap(), before);
    }

    pub async fn delete_then_recreate_resets_the_create_revision(store: &dyn Storage) {
        let key = "/registry/pods/ns/p";
        let r1 = store.create(key, bytes("first")).await.unwrap();
        let (_, r2) = store.delete(key, Some(r1)).await.unwrap();
        let r3 = store.create(key, bytes("second")).await.unwrap();
        let kv = store.get(key).await.unwrap().unwrap();
        assert_eq!(
            (kv.create_revision, kv.mod_revision, kv.value),
            (r3, r3, bytes("second"))
        );
        let at = |revision| ListOptions {
            revision: Some(revision),
            ..ListOptions::default()
        };
        let then = store.list("/registry/pods/", at(r1)).await.unwrap();
        assert_eq!(then.kvs.len(), 1);
        assert_eq!(
            (then.kvs[0].create_revision, then.kvs[0].value.clone()),
            (r1, bytes("first"))
        );
        assert!(
            store
                .list("/registry/pods/", at(r2))
                .await
                .unwrap()
                .kvs
                .is_empty()
        );
    }

    pub async fn list_returns_only_keys_under_the_prefix_in_key_order(store: &dyn Storage) {
        for key in [
            "/registry/pods/ns-b/y",
            "/registry/podsx/ns/z",
            "/registry/pods/ns-a/x",
            "/registry/pod",
            "/registry/pods/ns-a/w",
        ] {
            store.create(key, bytes(key)).await.unwrap();
        }
        let list = store
            .list("/registry/pods/", ListOptions::default())
            .await
            .unwrap();
        let keys: Vec<_> = list.kvs.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "/registry/pods/ns-a/w",
                "/registry/pods/ns-a/x",
                "/registry/pods/ns-b/y"
            ]
        );
        assert!(list.kvs.iter().all(|kv| kv.value == bytes(&kv.key)));
        assert_eq!(list.revision, store.current_revision().await.unwrap());
        assert!(!list.more);
        let ns = store
            .list("/registry/pods/ns-a/", ListOptions::default())
            .await
            .unwrap();
        assert_eq!(ns.kvs.len(), 2);
        let all = store.list("/", ListOptions::default()).await.unwrap();
        assert_eq!(all.kvs.len(), 5);
    }

    pub async fn list_at_a_past_revision_returns_the_state_of_that_revision(store: &dyn Storage) {
        let a = store
            .create("/registry/cm/ns/a", bytes("a1"))
            .await
            .unwrap();
        let b = store
            .create("/registry/cm/ns/b", bytes("b1"))
            .await
            .unwrap();
        let past = store.current_revision().await.unwrap();
        store
            .update("/registry/cm/ns/a", bytes("a2"), a)
            .await
            .unwrap();
        store.delete("/registry/cm/ns/b", Some(b)).await.unwrap();
        store
            .create("/registry/cm/ns/c", bytes("c1"))
            .await
            .unwrap();

        let opts = ListOptions {
            revision: Some(past),
            ..ListOptions::default()
        };
        let then = store.list("/registry/cm/", opts).await.unwrap();
        assert_eq!(then.revision, past);
        let state: Vec<_> = then
            .kvs
            .iter()
            .map(|kv| (kv.key.as_str(), kv.value.clone()))
            .collect();
        assert_eq!(
            state,
            [
                ("/registry/cm/ns/a", bytes("a1")),
                ("/registry/cm/ns/b", bytes("b1"))
            ]
        );
        let opts = ListOptions {
            revision: Some(a),
            ..ListOptions::default()
        };
        assert_eq!(
            store.list("/registry/cm/", opts).await.unwrap().kvs.len(),
            1
        );

        let now = store
            .list("/registry/cm/", ListOptions::default())
            .await
            .unwrap();
        let state: Vec<_> = now
            .kvs
            .iter()
            .map(|kv| (kv.key.as_str(), kv.value.clone()))
            .collect();
        assert_eq!(
            state,
            [
                ("/registry/cm/ns/a", bytes("a2")),
                ("/registry/cm/ns/c", bytes("c1"))
            ]
        );
    }

    pub async fn list_at_a_future_revision_fails_with_future_revision(store: &dyn Storage) {
        store.create("/registry/cm/ns/a", bytes("a")).await.unwrap();
        let current = store.current_revision().await.unwrap();
        let opts = ListOptions {
            revision: Some(current + 10),
            ..ListOptions::default()
        };
        let err = store.list("/registry/cm/", opts).await.unwrap_err();
        assert_eq!(
            err,
            StorageError::FutureRevision {
                requested: current + 10,
                current
            }
        );
    }

    pub async fn pagination_across_concurrent_writes_reads_one_snapshot(store: &dyn Storage) {
        let prefix = "/registry/pods/ns/";
        let mut revs = Vec::new();
        for i in 0..20 {
            revs.push(
                store
                    .create(&format!("{prefix}p{i:02}"), bytes(&format!("v{i}")))
                    .await
                    .unwrap(),
            );
        }
        let snapshot = store.list(prefix, ListOptions::default()).await.unwrap();

        let first = ListOptions {
            limit: Some(6),
            ..ListOptions::default()
        };
        let mut page = store.list(prefix, first).await.unwrap();
        let revision = page.revision;
        assert_eq!(revision, snapshot.revision);
        let mut seen = page.kvs.clone();
        let mut round = 0;
        while page.more {
            // Writes between pages: update, delete and create keys on both sides
            // of the continuation point.
            round += 1;
            let i = 2 + round * 3;
            store
                .update(&format!("{prefix}p{i:02}"), bytes("changed"), revs[i])
                .await
                .unwrap();
            store
                .delete(&format!("{prefix}p{:02}", i + 1), None)
                .await
                .unwrap();
            store
                .create(&format!("{prefix}p{i:02}-new"), bytes("new"))
                .await
                .unwrap();
            store
                .create(&format!("{prefix}a{round}"), bytes("new"))
                .await
                .unwrap();

            let next = ListOptions {
                revision: Some(revision),
                limit: Some(6),
                start_after: seen.last().map(|kv| kv.key.clone()),
            };
            page = store.list(prefix, next).await.unwrap();
            assert_eq!(page.revision, revision);
            assert!(page.kvs.len() <= 6);
            seen.extend(page.kvs.iter().cloned());
        }
        assert_eq!(seen, snapshot.kvs);
        assert_eq!(seen.len(), 20);
    }

    pub async fn watch_delivers_events_in_revision_order_with_previous_values(store: &dyn Storage) {
        let key = "/registry/pods/ns/w";
        let from = store.current_revision().await.unwrap();
        let mut stream = store.watch("/registry/pods/", from).await.unwrap();
        let r1 = store.create(key, bytes("v1")).await.unwrap();
        let r2 = store.update(key, bytes("v2"), r1).await.unwrap();
        let (_, r3) = store.delete(key, Some(r2)).await.unwrap();
        let events = next_events(&mut stream, 3).await;
        assert_eq!(revisions(&events), [r1, r2, r3]);

        assert_eq!(events[0].kind, EventKind::Put);
        assert_eq!(
            (events[0].kv.value.clone(), events[0].kv.create_revision),
            (bytes("v1"), r1)
        );
        assert_eq!(events[0].prev, None);

        assert_eq!(events[1].kind, EventKind::Put);
        assert_eq!(
            (events[1].kv.value.clone(), events[1].kv.create_revision),
            (bytes("v2"), r1)
        );
        let prev = events[1].prev.clone().unwrap();
        assert_eq!(
            (prev.value, prev.mod_revision, prev.create_revision),
            (bytes("v1"), r1, r1)
        );

        assert_eq!(events[2].kind, EventKind::Delete);
        assert_eq!(events[2].kv.key, key);
        assert_eq!(
            (events[2].kv.value.clone(), events[2].kv.create_revision),
            (bytes("v2"), r1)
        );
        let prev = events[2].prev.clone().unwrap();
        assert_eq!((prev.value, prev.mod_revision), (bytes("v2"), r2));
    }

    pub async fn watch_from_now_sees_only_later_changes(store: &dyn Storage) {
        store
            .create("/registry/cm/ns/before", bytes("x"))
            .await
            .unwrap();
        let mut stream = store.watch("/registry/cm/", 0).await.unwrap();
        let rev = store
            .create("/registry/cm/ns/after", bytes("y"))
            .await
            .unwrap();
        let event = next_event(&mut stream).await;
        assert_eq!(
            (event.kv.key.as_str(), event.revision()),
            ("/registry/cm/ns/after", rev)
        );
    }

    pub async fn watch_only_sees_keys_under_its_prefix(store: &dyn Storage) {
        let from = store.current_revision().await.unwrap();
        let mut stream = store.watch("/registry/pods/ns-a/", from).await.unwrap();
        store
            .create("/registry/pods/ns-b/x", bytes("no"))
            .await
            .unwrap();
        store
            .create("/registry/pods/ns-ab/x", bytes("no"))
            .await
            .unwrap();
        store
            .create("/registry/services/ns-a/x", bytes("no"))
            .await
            .unwrap();
        let rev = store
            .create("/registry/pods/ns-a/x", bytes("yes"))
            .await
            .unwrap();
        let event = next_event(&mut stream).await;
        assert_eq!(
            (event.kv.key.as_str(), event.revision()),
            ("/registry/pods/ns-a/x", rev)
        );
    }

    pub async fn watch_resumes_after_a_revision_without_gaps_or_duplicates(store: &dyn Storage) {
        let key = "/registry/leases/ns/l";
        let mut revs = vec![store.create(key, bytes("0")).await.unwrap()];
        for i in 1..10 {
            let last = *revs.last().unwrap();
            revs.push(
                store
                    .update(key, bytes(&i.to_string()), last)
                    .await
                    .unwrap(),
            );
        }
        let mut stream = store.watch("/registry/leases/", revs[4]).await.unwrap();
        for i in 10..15 {
            let last = *revs.last().unwrap();
            revs.push(
                store
                    .update(key, bytes(&i.to_string()), last)
                    .await
                    .unwrap(),
            );
        }
        let events = next_events(&mut stream, 10).await;
        assert_eq!(revisions(&events), revs[5..]);
        for (i, event) in events.iter().enumerate() {
            assert_eq!(event.kv.value, bytes(&(i + 5).to_string()));
            assert_eq!(
                event.prev.as_ref().unwrap().value,
                bytes(&(i + 4).to_string())
            );
        }
        // Resuming from the last revision seen continues with the next write only.
        let mut resumed = store.watch("/registry/leases/", revs[14]).await.unwrap();
        let next = store.update(key, bytes("15"), revs[14]).await.unwrap();
        assert_eq!(next_event(&mut resumed).await.revision(), next);
        assert_eq!(next_event(&mut stream).await.revision(), next);
    }

    pub async fn watches_started_during_writes_see_every_later_revision_once(store: &dyn Storage) {
        const WRITES: i64 = 300;
        let prefix = "/registry/events/ns/";
        // A first write, so every watcher below can start from a real revision.
        let base = store
            .create(&format!("{prefix}first"), bytes("x"))
            .await
            .unwrap();
        let writer = async {
            for i in 0..WRITES {
                store
                    .create(&format!("{prefix}e{i:04}"), bytes("x"))
                    .await
                    .unwrap();
                if i % 20 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        };
        let watchers = async {
            let mut streams = Vec::new();
            for _ in 0..6 {
                let after = store.current_revision().await.unwrap();
                // Half resume from a little in the past, half from the current
                // revision.
                let after = if streams.len() % 2 == 0 {
                    (after - 5).max(base)
                } else {
                    after
                };
                streams.push((after, store.watch(prefix, after).await.unwrap()));
                tokio::task::yield_now().await;
            }
            streams
        };
        let ((), streams) = tokio::join!(writer, watchers);
        let last = base + WRITES;
        for (after, mut stream) in streams {
            let events = next_events(&mut stream, (last - after) as usize).await;
            let expected: Vec<Revision> = (after + 1..=last).collect();
            assert_eq!(revisions(&events), expected, "watch from {after}");
        }
    }

    pub async fn watch_from_a_compacted_revision_fails_with_compacted(store: &dyn Storage) {
        let key = "/registry/cm/ns/c";
        let mut revs = vec![store.create(key, bytes("0")).await.unwrap()];
        for i in 1..6 {
            let last = *revs.last().unwrap();
            revs.push(
                store
                    .update(key, bytes(&i.to_string()), last)
                    .await
                    .unwrap(),
            );
        }
        store.compact(revs[3]).await.unwrap();
        let err = store.watch("/registry/cm/", revs[1]).await.err().unwrap();
        assert!(
            matches!(err, StorageError::Compacted { requested, compacted }
                if requested == revs[2] && compacted == revs[3]),
            "{err:?}"
        );
        // The compaction revision itself is still watchable.
        let mut stream = store.watch("/registry/cm/", revs[2]).await.unwrap();
        let events = next_events(&mut stream, 3).await;
        assert_eq!(revisions(&events), revs[3..]);
        // etcd cannot give the previous value of the first event after the
        // compaction revision (it is compacted away); the others keep it.
        if let Some(prev) = &events[0].prev {
            assert_eq!(prev.value, bytes("2"));
        }
        assert_eq!(events[1].prev.as_ref().unwrap().value, bytes("3"));
    }

    pub async fn watch_from_a_future_revision_fails_with_future_revision(store: &dyn Storage) {
        store.create("/registry/cm/ns/a", bytes("a")).await.unwrap();
        let current = store.current_revision().await.unwrap();
        let err = store
            .watch("/registry/cm/", current + 5)
            .await
            .err()
            .unwrap();
        assert_eq!(
            err,
            StorageError::FutureRevision {
                requested: current + 5,
                current
            }
        );
    }

    pub async fn list_below_the_compaction_revision_fails_with_compacted(store: &dyn Storage) {
        let a = store.create("/registry/cm/ns/a", bytes("1")).await.unwrap();
        let b = store
            .update("/registry/cm/ns/a", bytes("2"), a)
            .await
            .unwrap();
        store
            .update("/registry/cm/ns/a", bytes("3"), b)
            .await
            .unwrap();
        store.compact(b).await.unwrap();
        let at = |revision| ListOptions {
            revision: Some(revision),
            ..ListOptions::default()
        };
        let err = store.list("/registry/cm/", at(a)).await.unwrap_err();
        assert!(
            matches!(err, StorageError::Compacted { requested, compacted } if requested == a && compacted == b),
            "{err:?}"
        );
        let then = store.list("/registry/cm/", at(b)).await.unwrap();
        assert_eq!(then.kvs[0].value, bytes("2"));
        // Compacting again to the same or an older revision is a no-op.
        store.compact(b).await.unwrap();
        store.compact(a).await.unwrap();
    }

    pub async fn compaction_keeps_the_current_state_readable(store: &dyn Storage) {
        let mut a = store
            .create("/registry/cm/ns/a", bytes("a0"))
            .await
            .unwrap();
        let b = store
            .create("/registry/cm/ns/b", bytes("b0"))
            .await
            .unwrap();
        let gone = store
            .create("/registry/cm/ns/gone", bytes("g"))
            .await
            .unwrap();
        for i in 1..20 {
            a = store
                .update("/registry/cm/ns/a", bytes(&format!("a{i}")), a)
                .await
                .unwrap();
        }
        store
            .delete("/registry/cm/ns/gone", Some(gone))
            .await
            .unwrap();
        let before = store
            .list("/registry/cm/", ListOptions::default())
            .await
            .unwrap();
        let current = store.current_revision().await.unwrap();
        store.compact(current).await.unwrap();

        let after = store
            .list("/registry/cm/", ListOptions::default())
            .await
            .unwrap();
        assert_eq!(after.kvs, before.kvs);
        let at = ListOptions {
            revision: Some(current),
            ..ListOptions::default()
        };
        assert_eq!(
            store.list("/registry/cm/", at).await.unwrap().kvs,
            before.kvs
        );
        assert_eq!(
            store.get("/registry/cm/ns/a").await.unwrap().unwrap().value,
            bytes("a19")
        );
        assert_eq!(store.get("/registry/cm/ns/gone").await.unwrap(), None);
        // Writes go on from the same revisions, with compare-and-swap intact.
        store
            .update("/registry/cm/ns/b", bytes("b1"), b)
            .await
            .unwrap();
        let again = store
            .create("/registry/cm/ns/gone", bytes("back"))
            .await
            .unwrap();
        assert_eq!(
            store
                .get("/registry/cm/ns/gone")
                .await
                .unwrap()
                .unwrap()
                .create_revision,
            again
        );
        assert_eq!(again, current + 2);
    }

    pub async fn compact_to_a_future_revision_fails_with_future_revision(store: &dyn Storage) {
        store.create("/registry/cm/ns/a", bytes("a")).await.unwrap();
        let current = store.current_revision().await.unwrap();
        let err = store.compact(current + 3).await.unwrap_err();
        assert!(
            matches!(err, StorageError::FutureRevision { requested, .. } if requested == current + 3),
            "{err:?}"
        );
    }

    pub async fn many_watchers_each_receive_every_event(store: &dyn Storage) {
        const WATCHERS: usize = 50;
        const WRITERS: usize = 4;
        const PER_WRITER: usize = 50;
        let from = store.current_revision().await.unwrap();
        let mut streams = Vec::new();
        for _ in 0..WATCHERS {
            streams.push(store.watch("/registry/pods/", from).await.unwrap());
        }
        let writes = (0..WRITERS).map(|w| async move {
            for i in 0..PER_WRITER {
                store
                    .create(&format!("/registry/pods/ns/w{w}-{i}"), bytes("x"))
                    .await
                    .unwrap();
            }
        });
        futures::future::join_all(writes).await;
        let total = WRITERS * PER_WRITER;
        let expected: Vec<Revision> = (from + 1..=from + total as i64).collect();
        let results =
            futures::future::join_all(streams.iter_mut().map(|stream| next_events(stream, total)))
                .await;
        for events in results {
            assert_eq!(revisions(&events), expected);
        }
    }

    pub async fn values_of_1_5_mib_round_trip_through_writes_reads_and_watches(
        store: &dyn Storage,
    ) {
        let big = |seed: u8| -> Bytes {
            (0..3 * 512 * 1024)
                .map(|i: usize| (i % 251) as u8 ^ seed)
                .collect::<Vec<u8>>()
                .into()
        };
        let key = "/registry/configmaps/ns/big";
        let from = store.current_revision().await.unwrap();
        let mut stream = store.watch("/registry/configmaps/", from).await.unwrap();
        let r1 = store.create(key, big(1)).await.unwrap();
        let r2 = store.update(key, big(2), r1).await.unwrap();
        assert_eq!(store.get(key).await.unwrap().unwrap().value, big(2));
        store
            .create("/registry/configmaps/ns/big2", big(3))
            .await
            .unwrap();
        let list = store
            .list("/registry/configmaps/", ListOptions::default())
            .await
            .unwrap();
        assert_eq!(list.kvs.len(), 2);
        assert_eq!(
            (list.kvs[0].value.clone(), list.kvs[1].value.clone()),
            (big(2), big(3))
        );
        let events = next_events(&mut stream, 3).await;
        assert_eq!(events[0].kv.value, big(1));
        assert_eq!(events[1].kv.value, big(2));
        assert_eq!(events[1].prev.as_ref().unwrap().value, big(1));
        let (deleted, _) = store.delete(key, Some(r2)).await.unwrap();
        assert_eq!(deleted.value, big(2));
    }

    pub async fn malformed_keys_are_rejected_with_invalid_key(store: &dyn Storage) {
        let invalid =
            |r: Result<_, StorageError>| matches!(r, Err(StorageError::InvalidKey { .. }));
        for key in [
            "",
            "registry/pods/x",
            "/registry//x",
            "/registry/pods/",
            "/registry/../x",
            "/a\0b",
        ] {
            assert!(
                invalid(store.create(key, bytes("v")).await.map(|_| ())),
                "create {key:?}"
            );
            assert!(invalid(store.get(key).await.map(|_| ())), "get {key:?}");
            assert!(
                invalid(store.update(key, bytes("v"), 1).await.map(|_| ())),
                "update {key:?}"
            );
            assert!(
                invalid(store.delete(key, None).await.map(|_| ())),
                "delete {key:?}"
            );
        }
        for prefix in ["", "registry/", "/registry//", "/x/./"] {
            assert!(
                invalid(store.list(prefix, ListOptions::default()).await.map(|_| ())),
                "{prefix:?}"
            );
            assert!(
                invalid(store.watch(prefix, 0).await.map(|_| ())),
                "watch {prefix:?}"
            );
        }
        assert_eq!(
            store.list("/", ListOptions::default()).await.unwrap().kvs,
            []
        );
    }

    pub async fn concurrent_creates_of_one_key_have_exactly_one_winner(store: &dyn Storage) {
        let key = "/registry/pods/ns/race";
        let attempts =
            (0..16).map(|i| async move { store.create(key, bytes(&i.to_string())).await });
        let results = futures::future::join_all(attempts).await;
        let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(winners.len(), 1, "{results:?}");
        for result in &results {
            if let Err(err) = result {
                assert_eq!(err, &StorageError::KeyExists { key: key.into() });
            }
        }
        assert_eq!(
            store.get(key).await.unwrap().unwrap().mod_revision,
            *winners[0]
        );
    }

    pub async fn concurrent_updates_from_one_revision_have_exactly_one_winner(store: &dyn Storage) {
        let key = "/registry/pods/ns/race";
        let r1 = store.create(key, bytes("start")).await.unwrap();
        let attempts =
            (0..16).map(|i| async move { store.update(key, bytes(&i.to_string()), r1).await });
        let results = futures::future::join_all(attempts).await;
        let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(winners.len(), 1, "{results:?}");
        for result in &results {
            if let Err(err) = result {
                assert_eq!(
                    err,
                    &StorageError::Conflict {
                        key: key.into(),
                        expected: r1,
                        actual: *winners[0]
                    }
                );
            }
        }
    }
}

mod memory_only {
    use super::*;
    use rk_apiserver::storage::memory::MemoryOptions;

    #[tokio::test]
    async fn a_watcher_that_falls_behind_ends_with_watcher_too_slow() {
        let options = MemoryOptions {
            watch_buffer: 3,
            ..MemoryOptions::default()
        };
        let store = MemoryStorage::with_options(options);
        let mut stream = store.watch("/registry/", 0).await.unwrap();
        let mut revs = Vec::new();
        for i in 0..10 {
            revs.push(
                store
                    .create(&format!("/registry/cm/ns/{i}"), bytes("x"))
                    .await
                    .unwrap(),
            );
        }
        let delivered = next_events(&mut stream, 3).await;
        assert_eq!(revisions(&delivered), revs[..3]);
        let end = stream.next().await.unwrap().unwrap_err();
        assert_eq!(end, StorageError::WatcherTooSlow { revision: revs[2] });
        assert!(stream.next().await.is_none());
        // The store drops it and serves new watchers as usual.
        let mut fresh = store.watch("/registry/", revs[9]).await.unwrap();
        let next = store
            .create("/registry/cm/ns/next", bytes("x"))
            .await
            .unwrap();
        assert_eq!(next_event(&mut fresh).await.revision(), next);
        assert_eq!(store.watcher_count(), 1);
    }

    #[tokio::test]
    async fn dropping_the_store_ends_watches_with_closed() {
        let store = MemoryStorage::new();
        let mut stream = store.watch("/registry/", 0).await.unwrap();
        drop(store);
        assert_eq!(
            stream.next().await.unwrap().unwrap_err(),
            StorageError::Closed
        );
    }
}
