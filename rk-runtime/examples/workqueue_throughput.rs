//! Work queue throughput: add + get + done cycles per second, with
//! de-duplication on. Run with
//! `cargo run --release -p rk-runtime --example workqueue_throughput`.

use std::time::Instant;

use rk_runtime::workqueue::WorkQueue;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let cycles: u64 = 2_000_000;
    let queue: WorkQueue<u64> = WorkQueue::new("throughput");

    // One item at a time: add, take, finish.
    let started = Instant::now();
    for i in 0..cycles {
        let key = i % 1024;
        queue.add(key);
        queue.add(key); // de-duplicated
        if let Some(item) = queue.get().await {
            queue.done(&item);
        }
    }
    let elapsed = started.elapsed();
    println!(
        "sequential: {cycles} cycles in {elapsed:?}: {:.0} cycles/s",
        cycles as f64 / elapsed.as_secs_f64()
    );

    // Batches: add 1024 keys, then drain them.
    let started = Instant::now();
    let mut done = 0u64;
    while done < cycles {
        for key in 0..1024u64 {
            queue.add(key);
        }
        for _ in 0..1024 {
            if let Some(item) = queue.get().await {
                queue.done(&item);
                done += 1;
            }
        }
    }
    let elapsed = started.elapsed();
    println!(
        "batched: {done} cycles in {elapsed:?}: {:.0} cycles/s",
        done as f64 / elapsed.as_secs_f64()
    );
}
