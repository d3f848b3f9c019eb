//! Leader election with client-go's algorithm and timing
//! (`k8s.io/client-go/tools/leaderelection`).
//!
//! Contenders share a [`ResourceLock`] ([`LeaseLock`], [`ConfigMapLock`],
//! [`EndpointsLock`], or a [`MultiLock`] during a migration). Every
//! `retry_period` each tries to acquire or renew it:
//!
//! - a lock held by someone else is left alone until `lease_duration` has
//!   passed *on our clock* since we last saw its record change;
//! - every write is conditional on the resourceVersion read, so only one
//!   contender wins a round;
//! - the leader renews every `retry_period`, and gives up leadership when it
//!   has not managed to renew for `renew_deadline`, which is shorter than
//!   `lease_duration`, so it stops before anyone else may start;
//! - on graceful shutdown the leader releases the lock (empty holder,
//!   1-second lease), so the next contender takes over on its next try.
//!
//! ```no_run
//! # async fn demo(client: kube::Client) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use rk_runtime::leader::{LeaderElectionConfig, LeaderElector, LeaseLock};
//! let lock = LeaseLock::new(client, "kube-system", "my-controller");
//! let elector = LeaderElector::new(
//!     "pod-a",
//!     Arc::new(lock),
//!     LeaderElectionConfig::default(),
//! )?;
//! let mut leading = elector.leading();
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! tokio::spawn(async move { leading.wait_for(|l| *l).await.ok(); println!("leading") });
//! elector.run(shutdown).await?;
//! # Ok(()) }
//! ```

mod annotation_lock;
mod lease_lock;
mod lock;
mod multi_lock;
mod record;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;
use rand::Rng;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use annotation_lock::{AnnotationLock, ConfigMapLock, EndpointsLock};
pub use lease_lock::LeaseLock;
pub use lock::{LockError, ResourceLock};
pub use multi_lock::MultiLock;
pub use record::{LEADER_ANNOTATION, LeaderElectionRecord};

/// Timing of leader election; the defaults are client-go's.
#[derive(Debug, Clone)]
pub struct LeaderElectionConfig {
    /// How long others wait after the last renewal before taking over (15 s).
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before it gives up (10 s).
    pub renew_deadline: Duration,
    /// How often contenders try to acquire and the leader renews (2 s).
    pub retry_period: Duration,
    /// Release the lock when shut down gracefully (default true).
    pub release_on_cancel: bool,
}

impl Default for LeaderElectionConfig {
    fn default() -> Self {
        Self {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
            release_on_cancel: true,
        }
    }
}

/// A timing that would let two leaders overlap, rejected as client-go does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `lease_duration` must be greater than `renew_deadline`.
    #[error("leaseDuration ({lease:?}) must be greater than renewDeadline ({renew:?})")]
    LeaseNotAboveRenewDeadline {
        /// The lease duration.
        lease: Duration,
        /// The renew deadline.
        renew: Duration,
    },
    /// `renew_deadline` must be greater than 1.2 × `retry_period`.
    #[error(
        "renewDeadline ({renew:?}) must be greater than retryPeriod*JitterFactor ({retry:?} * 1.2)"
    )]
    RenewDeadlineNotAboveRetry {
        /// The renew deadline.
        renew: Duration,
        /// The retry period.
        retry: Duration,
    },
    /// A duration is zero.
    #[error("{0} must be greater than zero")]
    Zero(&'static str),
    /// The identity is empty.
    #[error("leader election requires a non-empty identity")]
    EmptyIdentity,
}

/// client-go's `JitterFactor`.
const JITTER_FACTOR: f64 = 1.2;

impl LeaderElectionConfig {
    /// Check the timing rules client-go enforces.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.lease_duration.is_zero() {
            return Err(ConfigError::Zero("leaseDuration"));
        }
        if self.renew_deadline.is_zero() {
            return Err(ConfigError::Zero("renewDeadline"));
        }
        if self.retry_period.is_zero() {
            return Err(ConfigError::Zero("retryPeriod"));
        }
        if self.lease_duration <= self.renew_deadline {
            return Err(ConfigError::LeaseNotAboveRenewDeadline {
                lease: self.lease_duration,
                renew: self.renew_deadline,
            });
        }
        if self.renew_deadline.as_secs_f64() <= JITTER_FACTOR * self.retry_period.as_secs_f64() {
            return Err(ConfigError::RenewDeadlineNotAboveRetry {
                renew: self.renew_deadline,
                retry: self.retry_period,
            });
        }
        Ok(())
    }
}

/// Why [`LeaderElector::run`] returned an error.
#[derive(Debug, thiserror::Error)]
pub enum LeaderElectionError {
    /// The leader could not renew within the renew deadline.
    #[error("lost leadership of {0}: could not renew within the renew deadline")]
    LeadershipLost(String),
}

/// The leader's renewals are overdue: it may no longer be the leader.
#[derive(Debug, Clone, thiserror::Error)]
#[error("leader election lease expired {overdue:?} ago without renewal")]
pub struct LeaderHealthError {
    /// How long past the lease duration the last renewal is.
    pub overdue: Duration,
}

type Callback = Arc<dyn Fn() + Send + Sync>;

struct Observed {
    record: Option<LeaderElectionRecord>,
    /// When (our clock) the record last changed.
    at: Instant,
    /// When we last renewed successfully.
    renewed: Option<Instant>,
}

/// One contender in a leader election.
pub struct LeaderElector {
    identity: String,
    lock: Arc<dyn ResourceLock>,
    config: LeaderElectionConfig,
    observed: Mutex<Observed>,
    leader: watch::Sender<Option<String>>,
    leading: watch::Sender<bool>,
    on_started: Option<Callback>,
    on_stopped: Option<Callback>,
}

impl LeaderElector {
    /// A contender named `identity` for `lock`, after checking `config`.
    pub fn new(
        identity: impl Into<String>,
        lock: Arc<dyn ResourceLock>,
        config: LeaderElectionConfig,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let identity = identity.into();
        if identity.is_empty() {
            return Err(ConfigError::EmptyIdentity);
        }
        Ok(Self {
            identity,
            lock,
            config,
            observed: Mutex::new(Observed {
                record: None,
                at: Instant::now(),
                renewed: None,
            }),
            leader: watch::channel(None).0,
            leading: watch::channel(false).0,
            on_started: None,
            on_stopped: None,
        })
    }

    /// Call `f` when this contender becomes leader.
    pub fn on_started_leading(mut self, f: impl Fn() + Send + Sync + 'static) -> Self {
        self.on_started = Some(Arc::new(f));
        self
    }

    /// Call `f` when this contender stops leading (released or lost).
    pub fn on_stopped_leading(mut self, f: impl Fn() + Send + Sync + 'static) -> Self {
        self.on_stopped = Some(Arc::new(f));
        self
    }

    /// This contender's identity.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The current leader's identity as last observed (`None` when unknown or
    /// released).
    pub fn leader(&self) -> watch::Receiver<Option<String>> {
        self.leader.subscribe()
    }

    /// Whether this contender leads, updated as it starts and stops.
    pub fn leading(&self) -> watch::Receiver<bool> {
        self.leading.subscribe()
    }

    /// Whether this contender leads now.
    pub fn is_leader(&self) -> bool {
        *self.leading.borrow()
    }

    fn observed(&self) -> MutexGuard<'_, Observed> {
        self.observed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Healthy unless this contender leads and its last renewal is older than
    /// the lease duration plus `tolerance` (client-go's `HealthzAdaptor`).
    pub fn check_health(&self, tolerance: Duration) -> Result<(), LeaderHealthError> {
        if !self.is_leader() {
            return Ok(());
        }
        let observed = self.observed();
        let since = observed.renewed.map_or(Duration::MAX, |r| r.elapsed());
        let limit = self.config.lease_duration + tolerance;
        if since > limit {
            return Err(LeaderHealthError {
                overdue: since.saturating_sub(limit),
            });
        }
        Ok(())
    }

    fn publish_leader(&self, holder: &str) {
        let holder = (!holder.is_empty()).then(|| holder.to_owned());
        self.leader.send_if_modified(|current| {
            if *current != holder {
                *current = holder;
                true
            } else {
                false
            }
        });
    }

    /// Contend until `shutdown` is cancelled (then release the lock if
    /// leading and configured to) or until leadership is lost.
    pub async fn run(&self, shutdown: CancellationToken) -> Result<(), LeaderElectionError> {
        // Acquire.
        loop {
            if self.try_acquire_or_renew().await {
                break;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(self.jittered_retry()) => {}
            }
        }
        tracing::info!(identity = %self.identity, lock = %self.lock.describe(), "became leader");
        self.leading.send_replace(true);
        if let Some(f) = &self.on_started {
            f();
        }
        // Renew.
        let outcome = loop {
            tokio::select! {
                _ = shutdown.cancelled() => break Ok(()),
                _ = tokio::time::sleep(self.config.retry_period) => {}
            }
            if !self.renew_within_deadline(&shutdown).await {
                if shutdown.is_cancelled() {
                    break Ok(());
                }
                tracing::warn!(identity = %self.identity, lock = %self.lock.describe(), "failed to renew within the renew deadline; stepping down");
                break Err(LeaderElectionError::LeadershipLost(self.lock.describe()));
            }
        };
        if outcome.is_ok() && self.config.release_on_cancel {
            self.release().await;
        }
        self.leading.send_replace(false);
        if let Some(f) = &self.on_stopped {
            f();
        }
        tracing::info!(identity = %self.identity, "stopped leading");
        outcome
    }

    fn jittered_retry(&self) -> Duration {
        // client-go waits retry * (1 + rand * 1.2); capped here at one extra
        // second so a released lock is taken over quickly.
        let extra = (self.config.retry_period.as_secs_f64() * JITTER_FACTOR).min(1.0);
        let jitter = rand::rng().random::<f64>() * extra * 0.5;
        self.config.retry_period + Duration::from_secs_f64(jitter)
    }

    /// Keep trying to renew until success or the renew deadline since the
    /// last renewal has passed.
    async fn renew_within_deadline(&self, shutdown: &CancellationToken) -> bool {
        let last = self.observed().renewed.unwrap_or_else(Instant::now);
        let deadline = last + self.config.renew_deadline;
        loop {
            let attempt = tokio::time::timeout_at(deadline.into(), self.try_acquire_or_renew());
            match attempt.await {
                Ok(true) => return true,
                Ok(false) => {}
                Err(_) => return false,
            }
            let now = Instant::now();
            if now >= deadline || shutdown.is_cancelled() {
                return false;
            }
            let wait = self.config.retry_period.min(deadline - now);
            tokio::select! {
                _ = shutdown.cancelled() => return false,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn try_acquire_or_renew(&self) -> bool {
        let now = Timestamp::now();
        let lease_secs =
            i32::try_from(self.config.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX);
        let mut record = LeaderElectionRecord {
            holder_identity: self.identity.clone(),
            lease_duration_seconds: lease_secs,
            acquire_time: Some(now),
            renew_time: Some(now),
            leader_transitions: 0,
        };
        let current = match self.lock.get().await {
            Ok(current) => current,
            Err(e) => {
                tracing::debug!(identity = %self.identity, error = %e, "reading the lock failed");
                return false;
            }
        };
        let Some(old) = current else {
            return match self.lock.create(&record).await {
                Ok(()) => {
                    self.record_success(record);
                    true
                }
                Err(e) => {
                    tracing::debug!(identity = %self.identity, error = %e, "creating the lock failed");
                    false
                }
            };
        };
        {
            let mut observed = self.observed();
            if observed.record.as_ref() != Some(&old) {
                observed.record = Some(old.clone());
                observed.at = Instant::now();
            }
            let held_by_other =
                !old.holder_identity.is_empty() && old.holder_identity != self.identity;
            let lease =
                Duration::from_secs(u64::try_from(old.lease_duration_seconds.max(0)).unwrap_or(0));
            if held_by_other && observed.at + lease > Instant::now() {
                drop(observed);
                self.publish_leader(&old.holder_identity);
                return false;
            }
        }
        if old.holder_identity == self.identity {
            record.acquire_time = old.acquire_time;
            record.leader_transitions = old.leader_transitions;
        } else {
            record.leader_transitions = old.leader_transitions.saturating_add(1);
        }
        match self.lock.update(&record).await {
            Ok(()) => {
                self.record_success(record);
                true
            }
            Err(e) => {
                tracing::debug!(identity = %self.identity, error = %e, "updating the lock failed");
                false
            }
        }
    }

    fn record_success(&self, record: LeaderElectionRecord) {
        let now = Instant::now();
        let holder = record.holder_identity.clone();
        {
            let mut observed = self.observed();
            observed.record = Some(record);
            observed.at = now;
            observed.renewed = Some(now);
        }
        self.publish_leader(&holder);
    }

    /// Give the lock up: empty holder, 1-second lease.
    async fn release(&self) {
        let Some(old) = self.observed().record.clone() else {
            return;
        };
        if old.holder_identity != self.identity {
            return;
        }
        let now = Timestamp::now();
        let record = LeaderElectionRecord {
            holder_identity: String::new(),
            lease_duration_seconds: 1,
            acquire_time: Some(now),
            renew_time: Some(now),
            leader_transitions: old.leader_transitions,
        };
        match self.lock.update(&record).await {
            Ok(()) => {
                self.observed().record = Some(record);
                self.publish_leader("");
                tracing::info!(identity = %self.identity, "released the lock");
            }
            Err(e) => {
                tracing::warn!(identity = %self.identity, error = %e, "releasing the lock failed")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_go_defaults_are_valid_and_unsafe_timings_rejected() {
        assert!(LeaderElectionConfig::default().validate().is_ok());
        let bad = LeaderElectionConfig {
            lease_duration: Duration::from_secs(10),
            ..LeaderElectionConfig::default()
        };
        assert!(matches!(
            bad.validate(),
            Err(ConfigError::LeaseNotAboveRenewDeadline { .. })
        ));
        let bad = LeaderElectionConfig {
            renew_deadline: Duration::from_millis(2400),
            ..LeaderElectionConfig::default()
        };
        assert!(matches!(
            bad.validate(),
            Err(ConfigError::RenewDeadlineNotAboveRetry { .. })
        ));
    }
}
