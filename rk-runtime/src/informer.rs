//! [`Informer`]: one watch feeding one [`Store`] and any number of subscribers.
//!
//! An informer runs a [`Watcher`], applies every event to its store, then
//! tells each subscriber what changed: handler callbacks
//! ([`EventHandler::on_add`], [`EventHandler::on_update`] with the old and new
//! objects, [`EventHandler::on_delete`]) or an async stream
//! ([`Informer::subscribe`]). A handler added late is first told about every
//! object already cached, as an add. With a resync period, every cached object
//! is re-announced as an update (old and new the same) on each tick.
//!
//! Handlers run on the informer's task while it holds the dispatch lock: they
//! must be quick (typically, put a key on a work queue).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use futures::Stream;
use kube::Api;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::cache::{Applied, Relist, Store};
use crate::metrics::{InformerHandles, InformerMetrics};
use crate::watcher::{ApiObject, Event, Watcher, WatcherConfig};

/// A change an informer announces.
#[derive(Debug)]
pub enum InformerEvent<K> {
    /// An object appeared (or was cached before the subscriber arrived).
    Added(Arc<K>),
    /// An object changed (or was re-announced by a resync or relist).
    Updated {
        /// The cached state before.
        old: Arc<K>,
        /// The cached state now.
        new: Arc<K>,
    },
    /// An object was deleted (its last known state).
    Deleted(Arc<K>),
}

impl<K> Clone for InformerEvent<K> {
    fn clone(&self) -> Self {
        match self {
            Self::Added(o) => Self::Added(o.clone()),
            Self::Updated { old, new } => Self::Updated {
                old: old.clone(),
                new: new.clone(),
            },
            Self::Deleted(o) => Self::Deleted(o.clone()),
        }
    }
}

/// Callbacks for an informer's changes. Every method defaults to doing nothing.
pub trait EventHandler<K>: Send + Sync + 'static {
    /// An object appeared.
    fn on_add(&self, _obj: &Arc<K>) {}
    /// An object changed from `old` to `new`.
    fn on_update(&self, _old: &Arc<K>, _new: &Arc<K>) {}
    /// An object was deleted.
    fn on_delete(&self, _obj: &Arc<K>) {}
    /// Whether the handler wants no more events (it is then dropped).
    fn is_closed(&self) -> bool {
        false
    }
}

/// An [`EventHandler`] made of one closure taking an [`InformerEvent`].
pub struct HandlerFn<F>(pub F);

impl<K, F> EventHandler<K> for HandlerFn<F>
where
    K: Send + Sync + 'static,
    F: Fn(InformerEvent<K>) + Send + Sync + 'static,
{
    fn on_add(&self, obj: &Arc<K>) {
        (self.0)(InformerEvent::Added(obj.clone()));
    }
    fn on_update(&self, old: &Arc<K>, new: &Arc<K>) {
        (self.0)(InformerEvent::Updated {
            old: old.clone(),
            new: new.clone(),
        });
    }
    fn on_delete(&self, obj: &Arc<K>) {
        (self.0)(InformerEvent::Deleted(obj.clone()));
    }
}

struct ChannelHandler<K>(mpsc::UnboundedSender<InformerEvent<K>>);

impl<K: Send + Sync + 'static> EventHandler<K> for ChannelHandler<K> {
    fn on_add(&self, obj: &Arc<K>) {
        let _ = self.0.send(InformerEvent::Added(obj.clone()));
    }
    fn on_update(&self, old: &Arc<K>, new: &Arc<K>) {
        let _ = self.0.send(InformerEvent::Updated {
            old: old.clone(),
            new: new.clone(),
        });
    }
    fn on_delete(&self, obj: &Arc<K>) {
        let _ = self.0.send(InformerEvent::Deleted(obj.clone()));
    }
    fn is_closed(&self) -> bool {
        self.0.is_closed()
    }
}

/// How an [`Informer`] watches.
#[derive(Debug, Clone, Default)]
pub struct InformerConfig {
    /// Selectors, paging, timeouts and backoff of the underlying watch.
    pub watcher: WatcherConfig,
    /// Re-announce every cached object this often (none by default).
    pub resync: Option<Duration>,
}

/// A shared informer: one watch, one cache, many subscribers.
pub struct Informer<K: ApiObject> {
    api: Api<K>,
    config: InformerConfig,
    store: Store<K>,
    handlers: Mutex<Vec<Arc<dyn EventHandler<K>>>>,
    synced: watch::Sender<bool>,
    started: Mutex<bool>,
    stop: CancellationToken,
    lists: AtomicU64,
    metrics: OnceLock<InformerHandles>,
}

impl<K: ApiObject> Informer<K> {
    /// An informer over `api` with a default [`Store`] (which drops managedFields).
    pub fn new(api: Api<K>, config: InformerConfig) -> Arc<Self> {
        Self::with_store(api, config, Store::new())
    }

    /// An informer filling `store` (use it for a custom transform or indexes).
    pub fn with_store(api: Api<K>, config: InformerConfig, store: Store<K>) -> Arc<Self> {
        Arc::new(Self {
            api,
            config,
            store,
            handlers: Mutex::new(Vec::new()),
            synced: watch::channel(false).0,
            started: Mutex::new(false),
            stop: CancellationToken::new(),
            lists: AtomicU64::new(0),
            metrics: OnceLock::new(),
        })
    }

    /// The informer's cache (a cheap, shared handle).
    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    fn handlers(&self) -> MutexGuard<'_, Vec<Arc<dyn EventHandler<K>>>> {
        self.handlers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Register `handler`. It is told about every already cached object as an
    /// add, then about every change.
    pub fn add_handler(&self, handler: Arc<dyn EventHandler<K>>) {
        let mut handlers = self.handlers();
        for obj in self.store.list() {
            handler.on_add(&obj);
        }
        handlers.push(handler);
    }

    /// An endless stream of changes, starting with every cached object as an add.
    pub fn subscribe(&self) -> impl Stream<Item = InformerEvent<K>> + Send + 'static {
        let (tx, mut rx) = mpsc::unbounded_channel();
        self.add_handler(Arc::new(ChannelHandler(tx)));
        futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }

    /// Start watching on the current Tokio runtime. Calling it again does nothing.
    pub fn start(self: &Arc<Self>) {
        let mut started = self.started.lock().unwrap_or_else(|p| p.into_inner());
        if *started || self.stop.is_cancelled() {
            return;
        }
        *started = true;
        let this = self.clone();
        tokio::spawn(async move { this.run().await });
    }

    /// Stop watching (the cache keeps its contents).
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// Count this informer's lists, events and objects in `metrics` under
    /// `resource`. Only the first call has an effect.
    pub fn instrument(&self, metrics: &InformerMetrics, resource: &str) {
        let _ = self.metrics.set(metrics.for_resource(resource));
    }

    /// How many times the informer has listed (1 after the first sync; more
    /// after relists, such as on 410 Gone).
    pub fn list_count(&self) -> u64 {
        self.lists.load(Ordering::Relaxed)
    }

    /// Whether the first list has been cached.
    pub fn has_synced(&self) -> bool {
        *self.synced.borrow()
    }

    /// Wait until the first list has been cached. Returns false if the
    /// informer stopped first.
    pub async fn wait_for_sync(&self) -> bool {
        let mut rx = self.synced.subscribe();
        tokio::select! {
            r = rx.wait_for(|s| *s) => r.is_ok(),
            _ = self.stop.cancelled() => self.has_synced(),
        }
    }

    async fn run(self: Arc<Self>) {
        let mut watcher = Watcher::new(self.api.clone(), self.config.watcher.clone());
        let mut relist: Option<Relist> = None;
        let resync = self.config.resync.filter(|d| !d.is_zero());
        let mut ticker = resync.map(|d| {
            let mut t = tokio::time::interval_at(tokio::time::Instant::now() + d, d);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => break,
                event = watcher.next() => {
                    self.handle(event, &mut relist);
                    self.update_object_gauge();
                }
                _ = async {
                    match ticker.as_mut() {
                        Some(t) => { t.tick().await; }
                        None => std::future::pending::<()>().await,
                    }
                } => self.resync(),
            }
        }
        tracing::debug!("informer stopped");
    }

    fn handle(&self, event: Event<K>, relist: &mut Option<Relist>) {
        let mut handlers = self.handlers();
        handlers.retain(|h| !h.is_closed());
        match event {
            Event::Init => {
                self.lists.fetch_add(1, Ordering::Relaxed);
                if let Some(m) = self.metrics.get() {
                    m.lists.inc();
                }
                *relist = Some(self.store.begin_relist());
            }
            Event::InitApply(obj) => {
                let applied = match relist {
                    Some(r) => self.store.apply_relisted(*r, obj),
                    None => self.store.apply(obj),
                };
                dispatch_applied(&handlers, &applied);
            }
            Event::InitDone => {
                if let Some(r) = relist.take() {
                    for gone in self.store.finish_relist(r) {
                        for h in handlers.iter() {
                            h.on_delete(&gone);
                        }
                    }
                }
                self.synced.send_replace(true);
            }
            Event::Apply(obj) => {
                if let Some(m) = self.metrics.get() {
                    m.applies.inc();
                }
                let applied = self.store.apply(obj);
                dispatch_applied(&handlers, &applied);
            }
            Event::Delete(obj) => {
                if let Some(m) = self.metrics.get() {
                    m.deletes.inc();
                }
                let gone = self.store.delete(&obj).unwrap_or_else(|| Arc::new(obj));
                for h in handlers.iter() {
                    h.on_delete(&gone);
                }
            }
        }
    }

    fn update_object_gauge(&self) {
        if let Some(m) = self.metrics.get() {
            m.objects
                .set(i64::try_from(self.store.len()).unwrap_or(i64::MAX));
        }
    }

    fn resync(&self) {
        let handlers = self.handlers();
        for obj in self.store.list() {
            for h in handlers.iter() {
                h.on_update(&obj, &obj);
            }
        }
    }
}

fn dispatch_applied<K: 'static>(handlers: &[Arc<dyn EventHandler<K>>], applied: &Applied<K>) {
    for h in handlers {
        match &applied.old {
            Some(old) => h.on_update(old, &applied.new),
            None => h.on_add(&applied.new),
        }
    }
}

impl<K: ApiObject> Drop for Informer<K> {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
