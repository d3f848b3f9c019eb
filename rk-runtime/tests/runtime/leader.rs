//! Leader election: at most one leader at any instant, handover on graceful
//! stop and after a killed leader's lease expires.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::eventually;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{Api, Client};
use rk_apiserver::TestServer;
use rk_runtime::informer::{HandlerFn, Informer, InformerConfig, InformerEvent};
use rk_runtime::leader::{
    ConfigError, ConfigMapLock, LEADER_ANNOTATION, LeaderElectionConfig, LeaderElectionRecord,
    LeaderElector, LeaseLock, ResourceLock,
};
use tokio_util::sync::CancellationToken;

fn fast_timing() -> LeaderElectionConfig {
    LeaderElectionConfig {
        lease_duration: Duration::from_secs(2),
        renew_deadline: Duration::from_secs(1),
        retry_period: Duration::from_millis(200),
        release_on_cancel: true,
    }
}

struct Contender {
    elector: Arc<LeaderElector>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// Leaders now, by the contenders' own account; goes above 1 only if two
/// contenders believe they lead at once.
#[derive(Default)]
struct LeaderCount {
    now: AtomicI32,
    violated: AtomicBool,
}

fn contender(
    client: &Client,
    identity: &str,
    count: &Arc<LeaderCount>,
    lock: Arc<dyn ResourceLock>,
) -> Contender {
    let _ = client;
    let started = count.clone();
    let stopped = count.clone();
    let elector = LeaderElector::new(identity, lock, fast_timing())
        .expect("valid timing")
        .on_started_leading(move || {
            if started.now.fetch_add(1, Ordering::SeqCst) != 0 {
                started.violated.store(true, Ordering::SeqCst);
            }
        })
        .on_stopped_leading(move || {
            stopped.now.fetch_sub(1, Ordering::SeqCst);
        });
    let elector = Arc::new(elector);
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let elector = elector.clone();
        let stop = stop.clone();
        async move {
            let _ = elector.run(stop).await;
        }
    });
    Contender {
        elector,
        stop,
        task,
    }
}

fn lease_lock(client: &Client) -> Arc<dyn ResourceLock> {
    Arc::new(LeaseLock::new(client.clone(), "default", "election"))
}

async fn wait_for_leader(contenders: &[Contender], timeout: Duration) -> Option<usize> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let leaders: Vec<usize> = (0..contenders.len())
            .filter(|i| contenders[*i].elector.is_leader())
            .collect();
        if leaders.len() == 1 {
            return Some(leaders[0]);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_contenders_one_leader_handover_on_stop_and_on_expiry() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client();

    // Watch the Lease: every version it goes through, in order.
    let history: Arc<Mutex<Vec<LeaderElectionRecord>>> = Arc::default();
    let watch = Informer::new(
        Api::<Lease>::namespaced(client.clone(), "default"),
        InformerConfig::default(),
    );
    {
        let history = history.clone();
        watch.add_handler(Arc::new(HandlerFn(move |e: InformerEvent<Lease>| {
            let lease = match e {
                InformerEvent::Added(l) | InformerEvent::Updated { new: l, .. } => l,
                InformerEvent::Deleted(_) => return,
            };
            let spec = lease.spec.clone().unwrap_or_default();
            history.lock().unwrap().push(LeaderElectionRecord {
                holder_identity: spec.holder_identity.unwrap_or_default(),
                lease_duration_seconds: spec.lease_duration_seconds.unwrap_or(0),
                acquire_time: spec.acquire_time.map(|t| t.0),
                renew_time: spec.renew_time.map(|t| t.0),
                leader_transitions: spec.lease_transitions.unwrap_or(0),
            });
        })));
    }
    watch.start();
    assert!(watch.wait_for_sync().await);

    let count = Arc::new(LeaderCount::default());
    let mut contenders: Vec<Contender> = ["a", "b", "c"]
        .iter()
        .map(|id| contender(&client, id, &count, lease_lock(&client)))
        .collect();

    let first = wait_for_leader(&contenders, Duration::from_secs(10))
        .await
        .expect("a leader is elected");
    let first_id = contenders[first].elector.identity().to_owned();
    // Everybody agrees on who leads.
    let all_agree = eventually(Duration::from_secs(5), || {
        let watchers: Vec<_> = contenders.iter().map(|c| c.elector.leader()).collect();
        let first_id = first_id.clone();
        async move {
            watchers
                .iter()
                .all(|w| w.borrow().as_deref() == Some(first_id.as_str()))
        }
    })
    .await;
    assert!(
        all_agree,
        "every contender's leader channel names {first_id}"
    );

    // Graceful stop: the lock is released and another takes over quickly.
    let stopped_at = Instant::now();
    let c = contenders.remove(first);
    c.stop.cancel();
    c.task.await?;
    let second = wait_for_leader(&contenders, Duration::from_secs(5))
        .await
        .expect("a new leader after graceful stop");
    let handover = stopped_at.elapsed();
    assert!(
        handover < fast_timing().retry_period + Duration::from_secs(1),
        "graceful handover took {handover:?}"
    );

    // Kill the leader: no release; the last one waits for the lease to expire.
    let killed_at = Instant::now();
    let c = contenders.remove(second);
    c.task.abort();
    let _ = c.task.await;
    count.now.fetch_sub(1, Ordering::SeqCst); // its on_stopped never ran
    let third = wait_for_leader(&contenders, Duration::from_secs(10))
        .await
        .expect("a new leader after the killed leader's lease expires");
    let takeover = killed_at.elapsed();
    let timing = fast_timing();
    assert!(
        takeover >= timing.lease_duration - timing.retry_period,
        "took over before the lease could expire: {takeover:?}"
    );
    assert!(
        takeover < timing.lease_duration + timing.retry_period + Duration::from_secs(1),
        "takeover after kill took {takeover:?}"
    );
    assert!(
        contenders[third]
            .elector
            .check_health(Duration::ZERO)
            .is_ok()
    );
    assert!(
        !count.violated.load(Ordering::SeqCst),
        "two contenders led at once"
    );

    // As seen on the Lease: the holder only changes to someone else once the
    // previous holder released it or its lease ran out.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let history = history.lock().unwrap().clone();
    let mut holders: Vec<String> = history.iter().map(|r| r.holder_identity.clone()).collect();
    holders.dedup();
    assert!(holders.len() >= 4, "holders seen: {holders:?}");
    for pair in history.windows(2) {
        let (before, after) = (&pair[0], &pair[1]);
        // Releases (to nobody) and takeovers of a released lock are immediate.
        if before.holder_identity.is_empty()
            || after.holder_identity.is_empty()
            || before.holder_identity == after.holder_identity
        {
            continue;
        }
        let expires = before
            .renew_time
            .expect("renew time")
            .checked_add(Duration::from_secs(u64::try_from(
                before.lease_duration_seconds,
            )?))?;
        let acquired = after.acquire_time.expect("acquire time");
        assert!(
            acquired >= expires,
            "{} took over at {acquired} while {}'s lease ran to {expires}",
            after.holder_identity,
            before.holder_identity
        );
        assert_eq!(after.leader_transitions, before.leader_transitions + 1);
    }
    for c in &contenders {
        c.stop.cancel();
    }
    watch.stop();
    Ok(())
}

#[tokio::test]
async fn configmap_lock_keeps_client_go_record_in_annotation() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client();
    let count = Arc::new(LeaderCount::default());
    let lock = Arc::new(ConfigMapLock::new(client.clone(), "default", "cm-election"));
    let c = contender(&client, "solo", &count, lock);
    assert!(
        wait_for_leader(std::slice::from_ref(&c), Duration::from_secs(5))
            .await
            .is_some()
    );
    let cm = Api::<ConfigMap>::namespaced(client.clone(), "default")
        .get("cm-election")
        .await?;
    let raw = cm
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(LEADER_ANNOTATION))
        .expect("leader annotation");
    let json: serde_json::Value = serde_json::from_str(raw)?;
    assert_eq!(json["holderIdentity"], "solo");
    assert_eq!(json["leaseDurationSeconds"], 2);
    assert_eq!(json["leaderTransitions"], 0);
    assert!(
        json["acquireTime"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    assert!(json["renewTime"].is_string());

    c.stop.cancel();
    c.task.await?;
    let cm = Api::<ConfigMap>::namespaced(client, "default")
        .get("cm-election")
        .await?;
    let raw = &cm.metadata.annotations.unwrap_or_default()[LEADER_ANNOTATION];
    let record: LeaderElectionRecord = serde_json::from_str(raw)?;
    assert_eq!(record.holder_identity, "", "released on graceful stop");
    Ok(())
}

#[test]
fn unsafe_timing_is_rejected_with_a_typed_error() {
    let server_less_lock: Arc<dyn ResourceLock> = Arc::new(NeverLock);
    let config = LeaderElectionConfig {
        lease_duration: Duration::from_secs(1),
        renew_deadline: Duration::from_secs(1),
        ..fast_timing()
    };
    let err = LeaderElector::new("x", server_less_lock, config).err();
    assert!(matches!(
        err,
        Some(ConfigError::LeaseNotAboveRenewDeadline { .. })
    ));
}

struct NeverLock;

#[async_trait::async_trait]
impl ResourceLock for NeverLock {
    async fn get(&self) -> Result<Option<LeaderElectionRecord>, rk_runtime::leader::LockError> {
        Ok(None)
    }
    async fn create(&self, _: &LeaderElectionRecord) -> Result<(), rk_runtime::leader::LockError> {
        Err(rk_runtime::leader::LockError::Conflict)
    }
    async fn update(&self, _: &LeaderElectionRecord) -> Result<(), rk_runtime::leader::LockError> {
        Err(rk_runtime::leader::LockError::Conflict)
    }
    fn describe(&self) -> String {
        "never".into()
    }
}

/// A lock that can be created once and then refuses every write.
struct BreakingLock {
    created: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl ResourceLock for BreakingLock {
    async fn get(&self) -> Result<Option<LeaderElectionRecord>, rk_runtime::leader::LockError> {
        Ok(None)
    }
    async fn create(&self, _: &LeaderElectionRecord) -> Result<(), rk_runtime::leader::LockError> {
        if self.created.swap(true, Ordering::SeqCst) {
            Err(rk_runtime::leader::LockError::Conflict)
        } else {
            Ok(())
        }
    }
    async fn update(&self, _: &LeaderElectionRecord) -> Result<(), rk_runtime::leader::LockError> {
        Err(rk_runtime::leader::LockError::Conflict)
    }
    fn describe(&self) -> String {
        "breaking".into()
    }
}

#[tokio::test]
async fn leader_steps_down_when_it_cannot_renew_within_the_deadline() {
    let lock = Arc::new(BreakingLock {
        created: std::sync::atomic::AtomicBool::new(false),
    });
    let elector =
        Arc::new(LeaderElector::new("lonely", lock, fast_timing()).expect("valid timing"));
    let run = tokio::spawn({
        let elector = elector.clone();
        async move { elector.run(CancellationToken::new()).await }
    });
    let mut leading = elector.leading();
    tokio::time::timeout(Duration::from_secs(2), leading.wait_for(|l| *l))
        .await
        .expect("leads after creating the lock")
        .expect("elector alive");
    let became = Instant::now();
    let outcome = tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .expect("run returns once renewal fails")
        .expect("task");
    assert!(outcome.is_err(), "leadership lost is an error");
    assert!(!elector.is_leader());
    let held = became.elapsed();
    let timing = fast_timing();
    assert!(
        held < timing.lease_duration,
        "stepped down after {held:?}, before others could take over"
    );
    assert!(
        held >= timing.renew_deadline,
        "kept trying for the renew deadline: {held:?}"
    );
}

#[tokio::test]
async fn multi_lock_writes_both_kinds_so_old_contenders_see_the_leader() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client();
    let count = Arc::new(LeaderCount::default());
    // The new version contends through Lease + ConfigMap ...
    let migrating: Arc<dyn ResourceLock> = Arc::new(rk_runtime::leader::MultiLock::new(
        Box::new(LeaseLock::new(client.clone(), "default", "migrating")),
        Box::new(ConfigMapLock::new(client.clone(), "default", "migrating")),
    ));
    let new = contender(&client, "new", &count, migrating);
    assert!(
        wait_for_leader(std::slice::from_ref(&new), Duration::from_secs(5))
            .await
            .is_some()
    );
    // ... while an old version still uses the ConfigMap only.
    let old = contender(
        &client,
        "old",
        &count,
        Arc::new(ConfigMapLock::new(client.clone(), "default", "migrating")),
    );
    let sees_new = eventually(Duration::from_secs(5), || {
        let leader = old.elector.leader();
        async move { leader.borrow().as_deref() == Some("new") }
    })
    .await;
    assert!(
        sees_new,
        "the ConfigMap-only contender sees the multi-lock holder"
    );
    tokio::time::sleep(fast_timing().lease_duration + Duration::from_millis(500)).await;
    assert!(
        !old.elector.is_leader(),
        "the old contender never takes over a renewed lock"
    );
    assert!(!count.violated.load(Ordering::SeqCst));

    let lease = Api::<Lease>::namespaced(client.clone(), "default")
        .get("migrating")
        .await?;
    assert_eq!(
        lease.spec.and_then(|s| s.holder_identity).as_deref(),
        Some("new")
    );
    new.stop.cancel();
    old.stop.cancel();
    Ok(())
}

#[tokio::test]
async fn endpoints_lock_works_like_the_configmap_lock() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client();
    let count = Arc::new(LeaderCount::default());
    let lock = Arc::new(rk_runtime::leader::EndpointsLock::new(
        client.clone(),
        "default",
        "ep-election",
    ));
    let c = contender(&client, "ep", &count, lock);
    assert!(
        wait_for_leader(std::slice::from_ref(&c), Duration::from_secs(5))
            .await
            .is_some()
    );
    let ep = Api::<k8s_openapi::api::core::v1::Endpoints>::namespaced(client, "default")
        .get("ep-election")
        .await?;
    let raw = &ep.metadata.annotations.unwrap_or_default()[LEADER_ANNOTATION];
    let record: LeaderElectionRecord = serde_json::from_str(raw)?;
    assert_eq!(record.holder_identity, "ep");
    c.stop.cancel();
    c.task.await?;
    Ok(())
}
