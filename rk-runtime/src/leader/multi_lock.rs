//! [`MultiLock`]: writes two locks, for migrating from one lock kind to another.

use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;

use super::{LeaderElectionRecord, LockError, ResourceLock};

/// Reads the primary lock and writes both (client-go's `MultiLock`), so
/// contenders still on the old kind and those on the new see one leader.
/// When the two records differ the primary's is reported.
pub struct MultiLock {
    primary: Box<dyn ResourceLock>,
    secondary: Box<dyn ResourceLock>,
    primary_exists: AtomicBool,
    secondary_exists: AtomicBool,
}

impl MultiLock {
    /// Combine `primary` (read and written) with `secondary` (written).
    pub fn new(primary: Box<dyn ResourceLock>, secondary: Box<dyn ResourceLock>) -> Self {
        Self {
            primary,
            secondary,
            primary_exists: AtomicBool::new(false),
            secondary_exists: AtomicBool::new(false),
        }
    }
}

#[async_trait]
impl ResourceLock for MultiLock {
    async fn get(&self) -> Result<Option<LeaderElectionRecord>, LockError> {
        let primary = self.primary.get().await?;
        let secondary = self.secondary.get().await?;
        self.primary_exists
            .store(primary.is_some(), Ordering::Release);
        self.secondary_exists
            .store(secondary.is_some(), Ordering::Release);
        match (primary, secondary) {
            (Some(p), _) => Ok(Some(p)),
            // Only the old lock exists: honour its holder until it expires.
            (None, Some(s)) if !s.holder_identity.is_empty() => Ok(Some(s)),
            (None, _) => Ok(None),
        }
    }

    async fn create(&self, record: &LeaderElectionRecord) -> Result<(), LockError> {
        self.primary.create(record).await?;
        self.primary_exists.store(true, Ordering::Release);
        if self.secondary_exists.load(Ordering::Acquire) {
            self.secondary.update(record).await?;
        } else {
            self.secondary.create(record).await?;
            self.secondary_exists.store(true, Ordering::Release);
        }
        Ok(())
    }

    async fn update(&self, record: &LeaderElectionRecord) -> Result<(), LockError> {
        if self.primary_exists.load(Ordering::Acquire) {
            self.primary.update(record).await?;
        } else {
            self.primary.create(record).await?;
            self.primary_exists.store(true, Ordering::Release);
        }
        if self.secondary_exists.load(Ordering::Acquire) {
            self.secondary.update(record).await
        } else {
            self.secondary.create(record).await?;
            self.secondary_exists.store(true, Ordering::Release);
            Ok(())
        }
    }

    fn describe(&self) -> String {
        format!(
            "{} + {}",
            self.primary.describe(),
            self.secondary.describe()
        )
    }
}
