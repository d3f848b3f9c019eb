//! [`LeaseLock`]: a `coordination.k8s.io/v1` Lease as the lock.

use std::sync::Mutex;

use async_trait::async_trait;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

use super::{LeaderElectionRecord, LockError, ResourceLock};

/// A Lease lock: the record lives in the Lease's spec.
pub struct LeaseLock {
    api: Api<Lease>,
    namespace: String,
    name: String,
    last: Mutex<Option<Lease>>,
}

impl LeaseLock {
    /// The Lease `name` in `namespace`.
    pub fn new(client: Client, namespace: &str, name: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            last: Mutex::new(None),
        }
    }

    fn remember(&self, lease: Lease) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(lease);
    }
}

fn spec_of(record: &LeaderElectionRecord) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(record.holder_identity.clone()),
        lease_duration_seconds: Some(record.lease_duration_seconds),
        acquire_time: record.acquire_time.map(MicroTime),
        renew_time: record.renew_time.map(MicroTime),
        lease_transitions: Some(record.leader_transitions),
        ..LeaseSpec::default()
    }
}

fn record_of(spec: Option<&LeaseSpec>) -> LeaderElectionRecord {
    let Some(spec) = spec else {
        return LeaderElectionRecord::default();
    };
    LeaderElectionRecord {
        holder_identity: spec.holder_identity.clone().unwrap_or_default(),
        lease_duration_seconds: spec.lease_duration_seconds.unwrap_or(0),
        acquire_time: spec.acquire_time.as_ref().map(|t| t.0),
        renew_time: spec.renew_time.as_ref().map(|t| t.0),
        leader_transitions: spec.lease_transitions.unwrap_or(0),
    }
}

#[async_trait]
impl ResourceLock for LeaseLock {
    async fn get(&self) -> Result<Option<LeaderElectionRecord>, LockError> {
        let Some(lease) = self.api.get_opt(&self.name).await? else {
            return Ok(None);
        };
        let record = record_of(lease.spec.as_ref());
        self.remember(lease);
        Ok(Some(record))
    }

    async fn create(&self, record: &LeaderElectionRecord) -> Result<(), LockError> {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(self.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(spec_of(record)),
        };
        let created = self.api.create(&PostParams::default(), &lease).await?;
        self.remember(created);
        Ok(())
    }

    async fn update(&self, record: &LeaderElectionRecord) -> Result<(), LockError> {
        let mut lease = self
            .last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or(LockError::NotRead)?;
        lease.spec = Some(spec_of(record));
        // `replace` sends the resourceVersion we read: a 409 if it moved on.
        let updated = self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await?;
        self.remember(updated);
        Ok(())
    }

    fn describe(&self) -> String {
        format!("Lease {}/{}", self.namespace, self.name)
    }
}
