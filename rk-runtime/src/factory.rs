//! [`InformerFactory`]: hands every caller the same informer for the same
//! (kind, namespace, selectors), so controllers share one watch and one cache.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::future::BoxFuture;
use kube::api::{ApiResource, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::{Api, Client, Resource};

use crate::informer::{Informer, InformerConfig};
use crate::metrics::InformerMetrics;
use crate::watcher::{ApiObject, WatcherConfig};

/// Which objects an informer from the factory watches.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct InformerOptions {
    /// Only this namespace (all namespaces when `None`).
    pub namespace: Option<String>,
    /// Only objects matching this label selector.
    pub label_selector: Option<String>,
    /// Only objects matching this field selector.
    pub field_selector: Option<String>,
}

impl InformerOptions {
    /// Every object of the kind.
    pub fn all() -> Self {
        Self::default()
    }

    /// Only objects in `namespace`.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// Only objects matching the label selector `selector`.
    pub fn labels(mut self, selector: impl Into<String>) -> Self {
        self.label_selector = Some(selector.into());
        self
    }

    /// Only objects matching the field selector `selector`.
    pub fn fields(mut self, selector: impl Into<String>) -> Self {
        self.field_selector = Some(selector.into());
        self
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct InformerKey {
    type_id: TypeId,
    api_version: String,
    plural: String,
    options: InformerOptions,
}

/// What the factory and controllers need from an informer whatever its kind.
pub(crate) trait Managed: Send + Sync {
    fn start(&self);
    fn stop(&self);
    fn has_synced(&self) -> bool;
    fn wait_for_sync(&self) -> BoxFuture<'_, bool>;
}

impl<K: ApiObject> Managed for Arc<Informer<K>> {
    fn start(&self) {
        Informer::start(self);
    }
    fn stop(&self) {
        Informer::stop(self);
    }
    fn has_synced(&self) -> bool {
        Informer::has_synced(self)
    }
    fn wait_for_sync(&self) -> BoxFuture<'_, bool> {
        Box::pin(Informer::wait_for_sync(self))
    }
}

struct Entry {
    informer: Arc<dyn Any + Send + Sync>,
    managed: Arc<dyn Managed>,
    description: String,
}

struct Inner {
    client: Client,
    default_resync: Option<Duration>,
    watcher_defaults: WatcherConfig,
    informers: Mutex<HashMap<InformerKey, Entry>>,
    started: Mutex<bool>,
    metrics: Mutex<Option<InformerMetrics>>,
}

/// Creates and shares informers. Cloning shares the factory.
///
/// The first request for a (kind, [`InformerOptions`]) creates the informer;
/// later requests get the same one. [`InformerFactory::start`] starts every
/// informer created so far; informers created after it are started at once.
#[derive(Clone)]
pub struct InformerFactory {
    inner: Arc<Inner>,
}

impl InformerFactory {
    /// A factory making informers with `client` and no resync.
    pub fn new(client: Client) -> Self {
        Self::with_resync(client, None)
    }

    /// A factory whose informers resync every `resync`.
    pub fn with_resync(client: Client, resync: Option<Duration>) -> Self {
        Self::with_config(client, resync, WatcherConfig::default())
    }

    /// A factory whose informers resync every `resync` and watch as
    /// `watcher` says (paging, streaming lists, timeouts, backoff); the
    /// selectors in `watcher` are ignored in favour of each informer's options.
    pub fn with_config(client: Client, resync: Option<Duration>, watcher: WatcherConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                client,
                default_resync: resync,
                watcher_defaults: watcher,
                informers: Mutex::new(HashMap::new()),
                started: Mutex::new(false),
                metrics: Mutex::new(None),
            }),
        }
    }

    /// The client informers use.
    pub fn client(&self) -> Client {
        self.inner.client.clone()
    }

    fn informers(&self) -> MutexGuard<'_, HashMap<InformerKey, Entry>> {
        self.inner
            .informers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn metrics(&self) -> Option<InformerMetrics> {
        self.inner
            .metrics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Count every informer's lists, events and objects in `metrics` (those
    /// created so far are not instrumented: call this first).
    pub fn instrument(&self, metrics: &InformerMetrics) {
        *self.inner.metrics.lock().unwrap_or_else(|p| p.into_inner()) = Some(metrics.clone());
    }

    fn is_started(&self) -> bool {
        *self.inner.started.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The shared informer for a typed kind (a k8s-openapi type or a CRD type).
    pub fn informer<K>(&self, options: &InformerOptions) -> Arc<Informer<K>>
    where
        K: ApiObject,
        K::DynamicType: Default,
    {
        self.informer_with::<K>(&K::DynamicType::default(), options)
    }

    /// The shared informer for dynamic objects of `resource` (any kind the
    /// server serves, CRDs included).
    pub fn dynamic(
        &self,
        resource: &ApiResource,
        options: &InformerOptions,
    ) -> Arc<Informer<DynamicObject>> {
        self.informer_with::<DynamicObject>(resource, options)
    }

    /// The shared informer caching only the metadata of `K` objects
    /// (`PartialObjectMetadata`): far less memory when specs are not needed.
    pub fn metadata_informer<K>(
        &self,
        options: &InformerOptions,
    ) -> Arc<Informer<PartialObjectMeta<K>>>
    where
        K: Resource + Clone + std::fmt::Debug + Send + Sync + 'static,
        K::DynamicType: Default + Send + Sync,
    {
        self.informer_with::<PartialObjectMeta<K>>(&K::DynamicType::default(), options)
    }

    /// The shared informer for `K` described by `dynamic_type`.
    pub fn informer_with<K: ApiObject>(
        &self,
        dynamic_type: &K::DynamicType,
        options: &InformerOptions,
    ) -> Arc<Informer<K>> {
        let key = InformerKey {
            type_id: TypeId::of::<K>(),
            api_version: K::api_version(dynamic_type).into_owned(),
            plural: K::plural(dynamic_type).into_owned(),
            options: options.clone(),
        };
        let started = self.is_started();
        let mut informers = self.informers();
        if let Some(entry) = informers.get(&key)
            && let Ok(informer) = entry.informer.clone().downcast::<Informer<K>>()
        {
            return informer;
        }
        let api: Api<K> = Api::all_with(self.inner.client.clone(), dynamic_type);
        // `Api::namespaced_with` is only for namespaced scopes known at compile
        // time; the namespace field selector works for every kind.
        let field_selector = match (&options.namespace, &options.field_selector) {
            (Some(ns), Some(f)) => Some(format!("metadata.namespace={ns},{f}")),
            (Some(ns), None) => Some(format!("metadata.namespace={ns}")),
            (None, f) => f.clone(),
        };
        let config = InformerConfig {
            watcher: WatcherConfig {
                label_selector: options.label_selector.clone(),
                field_selector,
                ..self.inner.watcher_defaults.clone()
            },
            resync: self.inner.default_resync,
        };
        let informer = Informer::new(api, config);
        let description = format!("{}/{} {:?}", key.api_version, key.plural, key.options);
        if let Some(metrics) = self.metrics() {
            informer.instrument(&metrics, &format!("{}/{}", key.api_version, key.plural));
        }
        tracing::debug!(informer = %description, "created informer");
        informers.insert(
            key,
            Entry {
                informer: informer.clone(),
                managed: Arc::new(informer.clone()),
                description,
            },
        );
        if started {
            informer.start();
        }
        informer
    }

    /// Start every informer (and, from now on, each new one at creation).
    pub fn start(&self) {
        *self.inner.started.lock().unwrap_or_else(|p| p.into_inner()) = true;
        let managed: Vec<Arc<dyn Managed>> = self
            .informers()
            .values()
            .map(|e| e.managed.clone())
            .collect();
        for m in managed {
            m.start();
        }
    }

    /// Wait until every informer created so far has synced. Returns false
    /// if one stopped first.
    pub async fn wait_for_cache_sync(&self) -> bool {
        let managed: Vec<Arc<dyn Managed>> = self
            .informers()
            .values()
            .map(|e| e.managed.clone())
            .collect();
        for m in managed {
            if !m.wait_for_sync().await {
                return false;
            }
        }
        true
    }

    /// Whether every informer created so far has synced.
    pub fn has_synced(&self) -> bool {
        self.informers().values().all(|e| e.managed.has_synced())
    }

    /// The informers not yet synced, described for logs and `/readyz`.
    pub fn unsynced(&self) -> Vec<String> {
        self.informers()
            .values()
            .filter(|e| !e.managed.has_synced())
            .map(|e| e.description.clone())
            .collect()
    }

    /// Stop every informer.
    pub fn shutdown(&self) {
        for e in self.informers().values() {
            e.managed.stop();
        }
    }
}
