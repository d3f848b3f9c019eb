//! Leader election with a Lease: run two copies with different identities;
//! one leads (prints "leading" and does its work), the other waits. Kill the
//! leader with Ctrl-C and it releases the Lease, so the other takes over at
//! its next try (within `retry_period`, 2 s). Kill it with `kill -9` instead
//! and the other takes over once the lease expires (`lease_duration`, 15 s).
//!
//! Shows: `LeaseLock`, `LeaderElector`, the `leading()` watch, release on
//! shutdown.
//!
//! ```sh
//! export KUBECONFIG=$PWD/rk-data/kubeconfig
//! cargo run --example leader_election -- a &
//! cargo run --example leader_election -- b &
//! kubectl get lease example-leader -o jsonpath='{.spec.holderIdentity}'
//! kill %1    # b takes over
//! ```

use std::sync::Arc;
use std::time::Duration;

use rk::runtime::leader::{LeaderElectionConfig, LeaderElector, LeaseLock};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let identity = std::env::args()
        .nth(1)
        .unwrap_or_else(|| format!("pid-{}", std::process::id()));
    let client = kube::Client::try_default().await?;
    // ANCHOR: elector
    let lock = LeaseLock::new(client, "default", "example-leader");
    let elector = Arc::new(LeaderElector::new(
        identity.clone(),
        Arc::new(lock),
        LeaderElectionConfig::default(),
    )?);
    let shutdown = CancellationToken::new();
    let election = tokio::spawn({
        let (elector, shutdown) = (elector.clone(), shutdown.clone());
        async move { elector.run(shutdown).await }
    });
    // ANCHOR_END: elector

    // ANCHOR: work
    let mut leading = elector.leading();
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            changed = leading.changed() => {
                if changed.is_err() { break }
                println!("{identity}: {}", if *leading.borrow() { "leading" } else { "following" });
            }
            _ = ticks.tick() => {
                if elector.is_leader() {
                    println!("{identity}: doing the leader's work");
                }
            }
        }
    }
    // Cancelling releases the Lease, so the other copy takes over at once.
    shutdown.cancel();
    election.await??;
    // ANCHOR_END: work
    Ok(())
}
