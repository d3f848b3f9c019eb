//! [`ConfigMapLock`] and [`EndpointsLock`]: the record in the
//! `control-plane.alpha.kubernetes.io/leader` annotation, as client-go keeps it.

use std::fmt::Debug;
use std::sync::Mutex;

use async_trait::async_trait;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints};
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{LEADER_ANNOTATION, LeaderElectionRecord, LockError, ResourceLock};

/// A lock keeping its record in an annotation of a namespaced object.
pub struct AnnotationLock<K> {
    api: Api<K>,
    namespace: String,
    name: String,
    last: Mutex<Option<K>>,
}

/// A ConfigMap lock (client-go's `configmaps` lock kind).
pub type ConfigMapLock = AnnotationLock<ConfigMap>;

/// An Endpoints lock (client-go's `endpoints` lock kind).
pub type EndpointsLock = AnnotationLock<Endpoints>;

impl<K> AnnotationLock<K>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + Default
        + Serialize
        + DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    /// The object `name` in `namespace`.
    pub fn new(client: Client, namespace: &str, name: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            last: Mutex::new(None),
        }
    }

    fn remember(&self, obj: K) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(obj);
    }
}

fn encode(record: &LeaderElectionRecord) -> Result<String, LockError> {
    serde_json::to_string(record).map_err(|e| LockError::InvalidRecord(e.to_string()))
}

#[async_trait]
impl<K> ResourceLock for AnnotationLock<K>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + Default
        + Serialize
        + DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    async fn get(&self) -> Result<Option<LeaderElectionRecord>, LockError> {
        let Some(obj) = self.api.get_opt(&self.name).await? else {
            return Ok(None);
        };
        let record = match obj
            .meta()
            .annotations
            .as_ref()
            .and_then(|a| a.get(LEADER_ANNOTATION))
        {
            Some(raw) => {
                serde_json::from_str(raw).map_err(|e| LockError::InvalidRecord(e.to_string()))?
            }
            // The object exists without a record: an empty, unheld lock.
            None => LeaderElectionRecord::default(),
        };
        self.remember(obj);
        Ok(Some(record))
    }

    async fn create(&self, record: &LeaderElectionRecord) -> Result<(), LockError> {
        let mut obj = K::default();
        *obj.meta_mut() = ObjectMeta {
            name: Some(self.name.clone()),
            namespace: Some(self.namespace.clone()),
            annotations: Some([(LEADER_ANNOTATION.to_owned(), encode(record)?)].into()),
            ..ObjectMeta::default()
        };
        let created = self.api.create(&PostParams::default(), &obj).await?;
        self.remember(created);
        Ok(())
    }

    async fn update(&self, record: &LeaderElectionRecord) -> Result<(), LockError> {
        let mut obj = self
            .last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or(LockError::NotRead)?;
        obj.meta_mut()
            .annotations
            .get_or_insert_default()
            .insert(LEADER_ANNOTATION.to_owned(), encode(record)?);
        let updated = self
            .api
            .replace(&self.name, &PostParams::default(), &obj)
            .await?;
        self.remember(updated);
        Ok(())
    }

    fn describe(&self) -> String {
        format!("{} {}/{}", K::kind(&()), self.namespace, self.name)
    }
}
