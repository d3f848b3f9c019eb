//! [`ControllerBuilder`]: wires informers to a controller's work queue.

use std::sync::Arc;

use kube::Resource;
use kube::api::ObjectMeta;

use super::filter::{EventFilter, all_allow};
use super::{Controller, ControllerMetrics, Reconciler};
use crate::cache::{ObjectKey, Store};
use crate::factory::{InformerFactory, InformerOptions, Managed};
use crate::informer::EventHandler;
use crate::watcher::ApiObject;
use crate::workqueue::{RateLimiter, WorkQueue, WorkQueueMetrics, default_controller_rate_limiter};

type Mapper<K> = Arc<dyn Fn(&K) -> Vec<ObjectKey> + Send + Sync>;
type Connect = Box<dyn FnOnce(&WorkQueue<ObjectKey>, &Arc<Vec<EventFilter>>) + Send>;

/// Builds a [`Controller`] whose primary kind is `K`.
///
/// ```no_run
/// # async fn demo(client: kube::Client) -> Result<(), Box<dyn std::error::Error>> {
/// use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
/// use rk_runtime::controller::{Action, ControllerBuilder, EventFilter, ReconcileFn};
/// use rk_runtime::factory::{InformerFactory, InformerOptions};
/// let factory = InformerFactory::new(client);
/// let controller = ControllerBuilder::<Deployment>::new("deployment", &factory)
///     .owns::<ReplicaSet>(&InformerOptions::all())
///     .with_event_filter(EventFilter::GenerationChanged)
///     .workers(4)
///     .build(ReconcileFn(|key| async move {
///         println!("reconcile {key}");
///         Ok::<_, std::convert::Infallible>(Action::Done)
///     }));
/// controller.run(tokio_util::sync::CancellationToken::new()).await?;
/// # Ok(()) }
/// ```
pub struct ControllerBuilder<K: ApiObject> {
    name: String,
    factory: InformerFactory,
    dynamic_type: K::DynamicType,
    primary_options: InformerOptions,
    connects: Vec<Connect>,
    informers: Vec<Arc<dyn Managed>>,
    filters: Vec<EventFilter>,
    workers: usize,
    metrics: Option<ControllerMetrics>,
    queue_metrics: Option<WorkQueueMetrics>,
    rate_limiter: Option<Box<dyn RateLimiter<ObjectKey>>>,
}

impl<K> ControllerBuilder<K>
where
    K: ApiObject,
    K::DynamicType: Default,
{
    /// A controller named `name` for every object of kind `K`, with informers
    /// from `factory`.
    pub fn new(name: impl Into<String>, factory: &InformerFactory) -> Self {
        Self::new_with(name, factory, K::DynamicType::default())
    }
}

impl<K: ApiObject> ControllerBuilder<K> {
    /// As [`ControllerBuilder::new`] for a kind known at run time
    /// (`K = DynamicObject` with its `ApiResource`).
    pub fn new_with(
        name: impl Into<String>,
        factory: &InformerFactory,
        dynamic_type: K::DynamicType,
    ) -> Self {
        Self {
            name: name.into(),
            factory: factory.clone(),
            dynamic_type,
            primary_options: InformerOptions::all(),
            connects: Vec::new(),
            informers: Vec::new(),
            filters: Vec::new(),
            workers: 1,
            metrics: None,
            queue_metrics: None,
            rate_limiter: None,
        }
    }

    /// Watch only the primary objects that `options` selects.
    pub fn for_kind(mut self, options: InformerOptions) -> Self {
        self.primary_options = options;
        self
    }

    /// The store of the primary informer, for the reconciler to read from.
    pub fn store(&self) -> Store<K> {
        self.factory
            .informer_with::<K>(&self.dynamic_type, &self.primary_options)
            .store()
    }

    /// Also reconcile the primary object that controls a changed `C` (through
    /// the `C`'s owner reference with `controller: true` to a `K`).
    pub fn owns<C>(self, options: &InformerOptions) -> Self
    where
        C: ApiObject,
        C::DynamicType: Default,
    {
        self.owns_with::<C>(C::DynamicType::default(), options)
    }

    /// As [`ControllerBuilder::owns`] for a kind known at run time.
    pub fn owns_with<C: ApiObject>(
        mut self,
        dynamic_type: C::DynamicType,
        options: &InformerOptions,
    ) -> Self {
        let kind = K::kind(&self.dynamic_type).into_owned();
        let group = K::group(&self.dynamic_type).into_owned();
        let owner_namespaced = !is_cluster_scoped::<K>();
        let mapper: Mapper<C> =
            Arc::new(move |child: &C| owner_key(child.meta(), &kind, &group, owner_namespaced));
        let informer = self.factory.informer_with::<C>(&dynamic_type, options);
        self.informers.push(Arc::new(informer.clone()));
        self.connects.push(Box::new(move |queue, filters| {
            informer.add_handler(Arc::new(Source {
                queue: queue.clone(),
                filters: filters.clone(),
                mapper,
            }));
        }));
        self
    }

    /// Also reconcile the primary keys `mapper` returns for a changed `W`.
    pub fn watches<W, F>(self, options: &InformerOptions, mapper: F) -> Self
    where
        W: ApiObject,
        W::DynamicType: Default,
        F: Fn(&W) -> Vec<ObjectKey> + Send + Sync + 'static,
    {
        self.watches_with::<W, F>(W::DynamicType::default(), options, mapper)
    }

    /// As [`ControllerBuilder::watches`] for a kind known at run time.
    pub fn watches_with<W, F>(
        mut self,
        dynamic_type: W::DynamicType,
        options: &InformerOptions,
        mapper: F,
    ) -> Self
    where
        W: ApiObject,
        F: Fn(&W) -> Vec<ObjectKey> + Send + Sync + 'static,
    {
        let mapper: Mapper<W> = Arc::new(mapper);
        let informer = self.factory.informer_with::<W>(&dynamic_type, options);
        self.informers.push(Arc::new(informer.clone()));
        self.connects.push(Box::new(move |queue, filters| {
            informer.add_handler(Arc::new(Source {
                queue: queue.clone(),
                filters: filters.clone(),
                mapper,
            }));
        }));
        self
    }

    /// Ignore updates `filter` rejects, on every watched kind (adds and
    /// deletes always pass). Several filters must all pass.
    pub fn with_event_filter(mut self, filter: EventFilter) -> Self {
        self.filters.push(filter);
        self
    }

    /// Reconcile up to `workers` keys at once (default 1).
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers.max(1);
        self
    }

    /// Count reconciles in `metrics` (and the queue in `queue_metrics`).
    pub fn metrics(
        mut self,
        metrics: &ControllerMetrics,
        queue_metrics: Option<&WorkQueueMetrics>,
    ) -> Self {
        self.metrics = Some(metrics.clone());
        self.queue_metrics = queue_metrics.cloned();
        self
    }

    /// Retry failed keys after the delays `limiter` picks (default: client-go's
    /// controller rate limiter, 5 ms..1000 s per key and 10/s overall).
    pub fn rate_limiter(mut self, limiter: Box<dyn RateLimiter<ObjectKey>>) -> Self {
        self.rate_limiter = Some(limiter);
        self
    }

    /// Connect the informers to a new work queue and return the controller.
    pub fn build<R: Reconciler>(self, reconciler: R) -> Controller<R> {
        let limiter = self
            .rate_limiter
            .unwrap_or_else(|| Box::new(default_controller_rate_limiter()));
        let queue =
            WorkQueue::with_options(self.name.clone(), limiter, self.queue_metrics.as_ref());
        let filters = Arc::new(self.filters);
        let primary = self
            .factory
            .informer_with::<K>(&self.dynamic_type, &self.primary_options);
        primary.add_handler(Arc::new(Source::<K> {
            queue: queue.clone(),
            filters: filters.clone(),
            mapper: Arc::new(|obj: &K| vec![ObjectKey::of(obj)]),
        }));
        for connect in self.connects {
            connect(&queue, &filters);
        }
        let mut informers = self.informers;
        informers.push(Arc::new(primary));
        Controller {
            name: self.name,
            queue,
            reconciler: Arc::new(reconciler),
            workers: self.workers,
            factory: self.factory,
            informers,
            metrics: self.metrics.unwrap_or_else(ControllerMetrics::unregistered),
        }
    }
}

/// Whether `K` is a cluster-scoped k8s-openapi type. Dynamic kinds count as
/// namespaced: their owners are looked up in the child's namespace.
fn is_cluster_scoped<K: ApiObject>() -> bool
where
    K::Scope: 'static,
{
    std::any::TypeId::of::<K::Scope>()
        == std::any::TypeId::of::<k8s_openapi::ClusterResourceScope>()
}

/// The key of the object of kind `kind` in `group` that controls `meta`'s
/// object; owners of namespaced kinds live in the child's namespace.
fn owner_key(meta: &ObjectMeta, kind: &str, group: &str, owner_namespaced: bool) -> Vec<ObjectKey> {
    meta.owner_references
        .iter()
        .flatten()
        .filter(|o| o.controller == Some(true) && o.kind == kind)
        .filter(|o| {
            let owner_group = o.api_version.rsplit_once('/').map_or("", |(g, _)| g);
            owner_group == group
        })
        .map(|o| ObjectKey {
            namespace: meta
                .namespace
                .clone()
                .filter(|n| owner_namespaced && !n.is_empty()),
            name: o.name.clone(),
        })
        .collect()
}

/// Turns an informer's changes into keys on a controller's queue.
struct Source<T> {
    queue: WorkQueue<ObjectKey>,
    filters: Arc<Vec<EventFilter>>,
    mapper: Mapper<T>,
}

impl<T: Resource + Send + Sync + 'static> EventHandler<T> for Source<T> {
    fn on_add(&self, obj: &Arc<T>) {
        for key in (self.mapper)(obj) {
            self.queue.add(key);
        }
    }

    fn on_update(&self, old: &Arc<T>, new: &Arc<T>) {
        if !all_allow(&self.filters, old.meta(), new.meta()) {
            return;
        }
        // Both: an owned object may have changed owner.
        for key in (self.mapper)(old).into_iter().chain((self.mapper)(new)) {
            self.queue.add(key);
        }
    }

    fn on_delete(&self, obj: &Arc<T>) {
        for key in (self.mapper)(obj) {
            self.queue.add(key);
        }
    }

    fn is_closed(&self) -> bool {
        self.queue.is_shutting_down()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::Node;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    fn owned_by(api_version: &str, kind: &str, controller: bool) -> ObjectMeta {
        ObjectMeta {
            namespace: Some("ns".into()),
            owner_references: Some(vec![OwnerReference {
                api_version: api_version.into(),
                kind: kind.into(),
                name: "owner".into(),
                uid: "u".into(),
                controller: Some(controller),
                block_owner_deletion: None,
            }]),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn only_the_controller_owner_of_the_right_group_and_kind_counts() {
        let meta = owned_by("apps/v1", "Deployment", true);
        assert_eq!(
            owner_key(&meta, "Deployment", "apps", true),
            vec![ObjectKey::namespaced("ns", "owner")]
        );
        assert!(owner_key(&meta, "Deployment", "extensions", true).is_empty());
        assert!(
            owner_key(
                &owned_by("apps/v1", "Deployment", false),
                "Deployment",
                "apps",
                true
            )
            .is_empty()
        );
        assert_eq!(
            owner_key(&owned_by("v1", "Node", true), "Node", "", false),
            vec![ObjectKey::cluster("owner")]
        );
    }

    #[test]
    fn scope_is_read_from_the_type() {
        assert!(is_cluster_scoped::<Node>());
        assert!(!is_cluster_scoped::<Deployment>());
    }
}
