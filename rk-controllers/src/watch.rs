//! The watches every rk component opens: kube-runtime's watcher with the
//! objects trimmed before anyone keeps them.
//!
//! `metadata.managedFields` (server-side apply bookkeeping) is often half an
//! object's size, and far more once parsed into `serde_json::Value` trees;
//! no controller, the scheduler, the kubelet or the proxy reads it. With
//! a dozen caches of every pod in `rk up`, dropping it as events arrive is
//! most of their memory.
//!
//! [`SharedWatch`] goes further: one watch and one cache of a kind for every
//! controller of a process (the controller manager's pods and nodes), each
//! controller receiving the events as if it had its own watch.
//!
//! ```no_run
//! # async fn demo(client: kube::Client) {
//! use futures::StreamExt;
//! use k8s_openapi::api::core::v1::Pod;
//! use kube::runtime::{WatchStreamExt, reflector, watcher};
//! let (store, writer) = reflector::store::<Pod>();
//! let api = kube::Api::<Pod>::all(client);
//! let events = reflector::reflector(
//!     writer,
//!     rk_controllers::watch::lean_watcher(api, watcher::Config::default()),
//! )
//! .default_backoff();
//! # drop((store, events));
//! # }
//! ```

use std::fmt::Debug;
use std::hash::Hash;
use std::sync::{Arc, Mutex, OnceLock};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Resource;
use kube::api::Api;
use kube::runtime::reflector::{self, Store, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use crate::task::AbortOnDrop;

/// Drop the parts of an object no rk component reads (managedFields).
pub fn trim<K: Resource>(obj: &mut K) {
    obj.meta_mut().managed_fields = None;
}

/// `kube::runtime::watcher(api, config)`, with every object trimmed
/// ([`trim`]) as it arrives.
pub fn lean_watcher<K>(
    api: Api<K>,
    config: watcher::Config,
) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    watcher(api, config).modify(trim::<K>)
}

/// What a [`SharedWatch`] subscriber receives: the watch's events with the
/// cached object itself (`Arc`), not a copy per subscriber.
pub type SharedEvent<K> = watcher::Event<Arc<K>>;

type Item<K> = Result<SharedEvent<K>, watcher::Error>;

/// The watch task's side of a [`SharedWatch`]: the cache's writer and the
/// subscribers, behind one lock so a new subscriber's snapshot and the live
/// events it receives afterwards never overlap or leave a gap.
struct Hub<K: Resource + Clone + 'static>
where
    K::DynamicType: Eq + Hash + Clone,
{
    writer: Writer<K>,
    /// Whether the cache holds a complete list (an `InitDone` was seen).
    listed: bool,
    subscribers: Vec<mpsc::UnboundedSender<Item<K>>>,
    /// Subscribers waiting for the first complete list.
    waiting: Vec<mpsc::UnboundedSender<Item<K>>>,
}

impl<K> Hub<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone + Default,
{
    /// Send the whole cache as a relist (`Init`, `InitApply`s, `InitDone`).
    fn replay(store: &Store<K>, to: &mpsc::UnboundedSender<Item<K>>) -> bool {
        let mut ok = to.send(Ok(watcher::Event::Init)).is_ok();
        for obj in store.state() {
            ok &= to.send(Ok(watcher::Event::InitApply(obj))).is_ok();
        }
        ok && to.send(Ok(watcher::Event::InitDone)).is_ok()
    }

    fn dispatch(&mut self, store: &Store<K>, event: watcher::Event<K>) {
        self.writer.apply_watcher_event(&event);
        if matches!(event, watcher::Event::InitDone) && !self.listed {
            self.listed = true;
            for tx in std::mem::take(&mut self.waiting) {
                if Self::replay(store, &tx) {
                    self.subscribers.push(tx);
                }
            }
            return;
        }
        if self.subscribers.is_empty() {
            return;
        }
        // The cached object itself (applied above), shared by every
        // subscriber; a deleted object is wrapped once.
        let cached = |obj: K| {
            store
                .get(&reflector::ObjectRef::from_obj(&obj))
                .unwrap_or_else(|| Arc::new(obj))
        };
        let shared = match event {
            watcher::Event::Apply(obj) => watcher::Event::Apply(cached(obj)),
            watcher::Event::InitApply(obj) => watcher::Event::InitApply(cached(obj)),
            watcher::Event::Delete(obj) => watcher::Event::Delete(Arc::new(obj)),
            watcher::Event::Init => watcher::Event::Init,
            watcher::Event::InitDone => watcher::Event::InitDone,
        };
        self.subscribers
            .retain(|tx| tx.send(Ok(shared.clone())).is_ok());
    }
}

/// Wait until `store` holds a complete list; `false` if its writer is gone.
///
/// Use this instead of `Store::wait_until_ready` wherever more than one
/// task may wait at once (every worker of a controller, every controller
/// of a shared cache): kube-runtime's readiness signal keeps one waker, so
/// of several tasks waiting together only the last one is woken and the
/// others wait forever. Here each wait is renewed every 100 ms, so a lost
/// wake-up costs at most that.
pub async fn store_ready<K>(store: &Store<K>) -> bool
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    loop {
        if let Ok(ready) = tokio::time::timeout(READY_POLL, store.wait_until_ready()).await {
            return ready.is_ok();
        }
    }
}

/// How often [`store_ready`] renews its wait.
const READY_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// One watch and one cache of a kind shared by many consumers.
///
/// [`store`](Self::store) is the cache; each [`subscribe`](Self::subscribe)
/// is a stream of the watch's events, delivered after the cache has applied
/// them, starting with a relist of the whole cache, exactly as a private
/// `reflector(writer, watcher(..))` would. The watch starts with the first
/// subscriber and stops when the `SharedWatch` and every subscription are
/// gone.
pub struct SharedWatch<K: Resource + Clone + 'static>
where
    K::DynamicType: Eq + Hash + Clone,
{
    api: Api<K>,
    config: watcher::Config,
    store: Store<K>,
    hub: Arc<Mutex<Hub<K>>>,
    task: OnceLock<AbortOnDrop>,
}

impl<K> SharedWatch<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Default + Send + Sync,
{
    /// A shared watch of `api` (not started until the first subscriber).
    pub fn new(api: Api<K>, config: watcher::Config) -> Arc<Self> {
        let (store, writer) = reflector::store::<K>();
        Arc::new(Self {
            api,
            config,
            store,
            hub: Arc::new(Mutex::new(Hub {
                writer,
                listed: false,
                subscribers: Vec::new(),
                waiting: Vec::new(),
            })),
            task: OnceLock::new(),
        })
    }

    /// The shared cache (ready once the first list is complete).
    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// Start the watch (if no subscriber has) and wait until the cache
    /// holds a complete list: for readers of the cache that need no events.
    /// `false` if the watch is gone.
    pub async fn ready(&self) -> bool {
        self.start();
        store_ready(&self.store).await
    }

    /// The events, from a relist of the current cache on.
    pub fn subscribe(self: &Arc<Self>) -> impl Stream<Item = Item<K>> + Send + 'static {
        let (tx, rx) = mpsc::unbounded_channel();
        {
            let mut hub = self.hub.lock().unwrap_or_else(|p| p.into_inner());
            if hub.listed {
                if Hub::replay(&self.store, &tx) {
                    hub.subscribers.push(tx);
                }
            } else {
                hub.waiting.push(tx);
            }
        }
        self.start();
        let keep_alive = self.clone();
        futures::stream::unfold((rx, keep_alive), |(mut rx, keep)| async move {
            let item = rx.recv().await?;
            Some((item, (rx, keep)))
        })
    }

    fn start(&self) {
        self.task.get_or_init(|| {
            let hub = self.hub.clone();
            let store = self.store.clone();
            let events = lean_watcher(self.api.clone(), self.config.clone()).default_backoff();
            AbortOnDrop(tokio::spawn(async move {
                futures::pin_mut!(events);
                while let Some(item) = events.next().await {
                    match item {
                        Ok(event) => hub
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .dispatch(&store, event),
                        Err(e) => tracing::warn!(error = %e, "shared watch error; retrying"),
                    }
                }
            }))
        });
    }
}

/// The shared watches of a controller manager: every pod and every node,
/// watched once for all its controllers.
#[derive(Clone)]
pub struct Informers {
    /// Every pod.
    pub pods: Arc<SharedWatch<Pod>>,
    /// Every node.
    pub nodes: Arc<SharedWatch<Node>>,
}

impl Informers {
    /// Shared watches over `client` (started by their first subscriber).
    pub fn new(client: &kube::Client) -> Self {
        Self {
            pods: SharedWatch::new(Api::all(client.clone()), watcher::Config::default()),
            nodes: SharedWatch::new(Api::all(client.clone()), watcher::Config::default()),
        }
    }
}

/// The namespaces due for a sync of a namespace-wide status (quota usage,
/// disruption budgets): those the events already queued name (at most
/// 10,000 at once), or every one of `owned()` when `resync` ticks first;
/// always only namespaces in `owned()`, those holding such objects. `None`
/// once the events end.
pub(crate) async fn namespaces_due<S>(
    events: &mut S,
    resync: &mut tokio::time::Interval,
    owned: impl Fn() -> std::collections::BTreeSet<String>,
) -> Option<Vec<String>>
where
    S: Stream<Item = String> + Unpin,
{
    use futures::FutureExt;
    let mut changed = std::collections::BTreeSet::new();
    tokio::select! {
        ns = events.next() => {
            changed.insert(ns?);
            while changed.len() < 10_000
                && let Some(Some(ns)) = events.next().now_or_never()
            {
                changed.insert(ns);
            }
        }
        _ = resync.tick() => {}
    }
    let owned = owned();
    Some(if changed.is_empty() {
        owned.into_iter().collect()
    } else {
        changed.intersection(&owned).cloned().collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_task_waiting_for_a_store_wakes_when_it_is_listed() {
        let (store, mut writer) = reflector::store::<ConfigMap>();
        let waiters: Vec<_> = (0..4)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move { store_ready(&store).await })
            })
            .collect();
        // Every waiter is parked before the list completes (kube-runtime's
        // own wait wakes only the last of them).
        tokio::time::sleep(Duration::from_millis(50)).await;
        writer.apply_watcher_event(&watcher::Event::Init);
        writer.apply_watcher_event(&watcher::Event::InitDone);
        for w in waiters {
            let ready = tokio::time::timeout(Duration::from_secs(5), w)
                .await
                .expect("a waiter was never woken")
                .expect("waiter task");
            assert!(ready);
        }
    }
}
