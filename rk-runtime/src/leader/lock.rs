//! [`ResourceLock`]: the object leader election contends for.

use async_trait::async_trait;

use super::LeaderElectionRecord;

/// Why a lock operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Someone else wrote the lock since we read it (HTTP 409), or created
    /// it first.
    #[error("the lock was changed by someone else")]
    Conflict,
    /// `update` was called before a successful `get` or `create`.
    #[error("the lock has not been read yet")]
    NotRead,
    /// The record in the lock does not parse.
    #[error("the lock holds an invalid record: {0}")]
    InvalidRecord(String),
    /// The API server refused or could not be reached.
    #[error("lock request failed: {0}")]
    Api(#[source] kube::Error),
}

impl From<kube::Error> for LockError {
    fn from(e: kube::Error) -> Self {
        match &e {
            kube::Error::Api(status) if status.code == 409 => Self::Conflict,
            _ => Self::Api(e),
        }
    }
}

/// An object holding a [`LeaderElectionRecord`] (client-go's
/// `resourcelock.Interface`).
///
/// `update` must be conditional on the resourceVersion that the last `get`
/// or `create` saw, so two contenders cannot both win one round.
#[async_trait]
pub trait ResourceLock: Send + Sync {
    /// Read the record; `None` when the lock object does not exist.
    async fn get(&self) -> Result<Option<LeaderElectionRecord>, LockError>;
    /// Create the lock object holding `record`.
    async fn create(&self, record: &LeaderElectionRecord) -> Result<(), LockError>;
    /// Replace the record, if the object is unchanged since it was last read.
    async fn update(&self, record: &LeaderElectionRecord) -> Result<(), LockError>;
    /// `kind namespace/name`, for logs.
    fn describe(&self) -> String;
}
