//! Storage benchmark: acknowledged writes per second and write latency for 1,
//! 16 and 64 concurrent writers on every backend, side by side, then watch
//! delivery delay with 100 watchers on the `sqlite` backend.
//!
//! ```text
//! cargo bench -p rk-apiserver --features etcd --bench storage
//! ```
//!
//! Two `sqlite` columns: `FULL` fsyncs every group commit (survives power
//! loss; the default), `NORMAL` leaves the WAL in the page cache (survives a
//! killed process, not a power loss). The etcd column needs the `etcd`
//! feature and an `etcd` binary on `PATH` (a single local member on loopback
//! is started and killed here). Each cell runs for `RK_BENCH_SECS` seconds
//! (default 3). The workload: every writer alternately creates a new key and
//! updates (compare-and-swap) the key it created last, with 1 KiB values,
//! waiting for each acknowledgement.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use rk_apiserver::storage::memory::MemoryStorage;
use rk_apiserver::storage::sqlite::{Durability, SqliteOptions, SqliteStorage};
use rk_apiserver::storage::{Revision, Storage};

const CONCURRENCY: [usize; 3] = [1, 16, 64];
const VALUE_LEN: usize = 1024;
const WATCHERS: usize = 100;
const WATCH_EVENTS: usize = 100_000;
const WATCH_WRITERS: usize = 16;

/// Throughput and latency of one run.
struct Cell {
    writes_per_sec: f64,
    p50: Duration,
    p99: Duration,
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(run());
}

async fn run() {
    let seconds = std::env::var("RK_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let duration = Duration::from_secs(seconds);
    let dir = tempfile::tempdir().expect("temporary directory");
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    println!("storage benchmark: {threads} CPUs, {seconds} s per cell, 1 KiB values");
    println!(
        "disk: 4 KiB write + fdatasync takes {:.2} ms (median of 50) in {}",
        fsync_latency(dir.path()).as_secs_f64() * 1000.0,
        dir.path().display()
    );
    println!("workload: each writer alternates create(new key) and update(CAS) of that key\n");

    let mut columns: Vec<(String, Vec<Cell>)> = Vec::new();

    let memory: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    columns.push((
        "memory".into(),
        measure_all(memory, "memory", duration).await,
    ));

    for (durability, label) in [
        (Durability::Full, "sqlite FULL"),
        (Durability::Process, "sqlite NORMAL"),
    ] {
        let options = SqliteOptions {
            durability,
            compact_interval: None,
            ..SqliteOptions::default()
        };
        let path = dir.path().join(format!("bench-{durability:?}.db"));
        let sqlite = SqliteStorage::open_with(path, options)
            .await
            .expect("open sqlite");
        let sqlite: Arc<dyn Storage> = Arc::new(sqlite);
        columns.push((label.into(), measure_all(sqlite, label, duration).await));
    }

    let etcd_column = etcd_column(duration).await;
    match etcd_column {
        Ok(cells) => columns.push(("etcd".into(), cells)),
        Err(reason) => println!("etcd: skipped ({reason})\n"),
    }

    print_table(&columns);

    let watch_dir = dir.path().join("watch.db");
    watch_delivery(&watch_dir).await;
}

#[cfg(feature = "etcd")]
async fn etcd_column(duration: Duration) -> Result<Vec<Cell>, String> {
    use rk_apiserver::storage::etcd::{EtcdStorage, LocalEtcd, LocalEtcdError};
    let etcd = match tokio::task::spawn_blocking(LocalEtcd::start).await {
        Ok(Ok(etcd)) => etcd,
        Ok(Err(LocalEtcdError::NotInstalled)) => return Err("not installed".into()),
        Ok(Err(error)) => return Err(error.to_string()),
        Err(error) => return Err(error.to_string()),
    };
    let store = EtcdStorage::connect([etcd.endpoint()])
        .await
        .map_err(|e| e.to_string())?;
    let cells = measure_all(Arc::new(store), "etcd", duration).await;
    drop(etcd);
    Ok(cells)
}

#[cfg(not(feature = "etcd"))]
async fn etcd_column(_duration: Duration) -> Result<Vec<Cell>, String> {
    Err("built without the `etcd` feature".into())
}

async fn measure_all(store: Arc<dyn Storage>, name: &str, duration: Duration) -> Vec<Cell> {
    let mut cells = Vec::new();
    for writers in CONCURRENCY {
        let cell = measure(
            store.clone(),
            &format!("{name}-{writers}"),
            writers,
            duration,
        )
        .await;
        eprintln!(
            "{name:>13} {writers:>2} writers: {:>8.0} writes/s  p50 {:>8.2?}  p99 {:>8.2?}",
            cell.writes_per_sec, cell.p50, cell.p99
        );
        cells.push(cell);
    }
    cells
}

async fn measure(store: Arc<dyn Storage>, run: &str, writers: usize, duration: Duration) -> Cell {
    let value = Bytes::from(vec![b'x'; VALUE_LEN]);
    let start = Instant::now();
    let deadline = start + duration;
    let tasks = (0..writers).map(|w| {
        let store = store.clone();
        let value = value.clone();
        let prefix = format!("/registry/bench/{run}/w{w}-");
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut last: Option<(String, Revision)> = None;
            let mut i = 0u64;
            while Instant::now() < deadline {
                let began = Instant::now();
                last = match last.take() {
                    Some((key, rev)) => {
                        store
                            .update(&key, value.clone(), rev)
                            .await
                            .expect("update");
                        None
                    }
                    None => {
                        let key = format!("{prefix}{i}");
                        let rev = store.create(&key, value.clone()).await.expect("create");
                        Some((key, rev))
                    }
                };
                latencies.push(began.elapsed());
                i += 1;
            }
            latencies
        })
    });
    let mut latencies = Vec::new();
    for task in futures::future::join_all(tasks).await {
        latencies.extend(task.expect("writer task"));
    }
    let elapsed = start.elapsed();
    latencies.sort_unstable();
    Cell {
        writes_per_sec: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
    }
}

/// The median time to append 4 KiB to a file and fdatasync it: the floor
/// under any durable commit on this disk.
fn fsync_latency(dir: &std::path::Path) -> Duration {
    use std::io::Write;
    let path = dir.join("fsync-probe");
    let mut file = std::fs::File::create(&path).expect("probe file");
    let mut samples: Vec<Duration> = (0..50)
        .map(|_| {
            let began = Instant::now();
            file.write_all(&[0u8; 4096]).expect("probe write");
            file.sync_data().expect("probe fdatasync");
            began.elapsed()
        })
        .collect();
    drop(file);
    let _ = std::fs::remove_file(path);
    samples.sort_unstable();
    percentile(&samples, 0.5)
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

fn print_table(columns: &[(String, Vec<Cell>)]) {
    let mut header = String::from("| writers |");
    let mut rule = String::from("|---:|");
    for (name, _) in columns {
        header.push_str(&format!(" {name} writes/s | p50 ms | p99 ms |"));
        rule.push_str("---:|---:|---:|");
    }
    println!("{header}\n{rule}");
    for (row, writers) in CONCURRENCY.iter().enumerate() {
        let mut line = format!("| {writers} |");
        for (_, cells) in columns {
            let cell = &cells[row];
            line.push_str(&format!(
                " {:.0} | {} | {} |",
                cell.writes_per_sec,
                ms(cell.p50),
                ms(cell.p99)
            ));
        }
        println!("{line}");
    }
    println!();
}

/// 100 watchers on one prefix, 100,000 writes from 16 writers on `sqlite`;
/// every watcher must receive every event. The delay of an event is measured
/// from the moment its writer got the acknowledgement (just after the commit)
/// and, as an upper bound, from the moment the write was submitted.
async fn watch_delivery(path: &std::path::Path) {
    let options = SqliteOptions {
        compact_interval: None,
        ..SqliteOptions::default()
    };
    let store = Arc::new(
        SqliteStorage::open_with(path, options)
            .await
            .expect("open sqlite"),
    );
    let prefix = "/registry/watchbench/";
    let base = store.current_revision().await.expect("revision");
    let clock = Instant::now();
    let nanos = move || clock.elapsed().as_nanos() as u64;

    let mut watchers = Vec::new();
    for _ in 0..WATCHERS {
        let mut stream = store.watch(prefix, base).await.expect("watch");
        watchers.push(tokio::spawn(async move {
            // delivered[i] = when the event at revision base + 1 + i arrived.
            let mut delivered = vec![0u64; WATCH_EVENTS];
            let mut count = 0;
            while count < WATCH_EVENTS {
                match stream.next().await {
                    Some(Ok(event)) => {
                        let slot = (event.revision() - base - 1) as usize;
                        delivered[slot] = nanos();
                        count += 1;
                    }
                    Some(Err(error)) => panic!("watcher failed after {count} events: {error}"),
                    None => panic!("watch ended after {count} events"),
                }
            }
            delivered
        }));
    }

    let started = Instant::now();
    let per_writer = WATCH_EVENTS / WATCH_WRITERS;
    let writers = (0..WATCH_WRITERS).map(|w| {
        let store = store.clone();
        tokio::spawn(async move {
            let value = Bytes::from(vec![b'w'; VALUE_LEN]);
            // (revision, submitted, acknowledged)
            let mut times = Vec::with_capacity(per_writer);
            let mut last: Option<(String, Revision)> = None;
            for i in 0..per_writer {
                let submitted = nanos();
                let rev = match last.take() {
                    Some((key, rev)) => store
                        .update(&key, value.clone(), rev)
                        .await
                        .expect("update"),
                    None => {
                        let key = format!("{prefix}ns/w{w}-{i}");
                        let rev = store.create(&key, value.clone()).await.expect("create");
                        last = Some((key, rev));
                        rev
                    }
                };
                times.push((rev, submitted, nanos()));
            }
            times
        })
    });
    let mut written = vec![(0u64, 0u64); WATCH_EVENTS];
    for task in futures::future::join_all(writers).await {
        for (rev, submitted, acked) in task.expect("writer task") {
            written[(rev - base - 1) as usize] = (submitted, acked);
        }
    }
    let write_time = started.elapsed();
    let mut from_ack = Vec::with_capacity(WATCHERS * WATCH_EVENTS);
    let mut from_submit = Vec::with_capacity(WATCHERS * WATCH_EVENTS);
    for watcher in watchers {
        let delivered = watcher.await.expect("watcher task");
        for (slot, at) in delivered.into_iter().enumerate() {
            let (submitted, acked) = written[slot];
            from_ack.push(Duration::from_nanos(at.saturating_sub(acked)));
            from_submit.push(Duration::from_nanos(at.saturating_sub(submitted)));
        }
    }
    let all_delivered = started.elapsed();
    from_ack.sort_unstable();
    from_submit.sort_unstable();
    println!(
        "watch delivery (sqlite): {WATCHERS} watchers x {WATCH_EVENTS} events \
         ({WATCH_WRITERS} writers, {:.0} writes/s; all delivered after {:.2?})",
        WATCH_EVENTS as f64 / write_time.as_secs_f64(),
        all_delivered
    );
    println!("| delay | p50 ms | p99 ms | max ms |\n|---|---:|---:|---:|");
    for (name, delays) in [
        ("commit (ack) -> delivery", &from_ack),
        ("submit -> delivery", &from_submit),
    ] {
        println!(
            "| {name} | {} | {} | {} |",
            ms(percentile(delays, 0.50)),
            ms(percentile(delays, 0.99)),
            ms(*delays.last().unwrap_or(&Duration::ZERO))
        );
    }
}
