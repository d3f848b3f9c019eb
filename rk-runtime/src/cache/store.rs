//! [`Store`]: the thread-safe object cache behind every informer.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use kube::Resource;
use rk_core::labels::Selector;

use super::ObjectKey;
use super::index::{IndexFn, NAMESPACE_INDEX, by_namespace};

/// Rewrites an object before it is stored (client-go's `TransformFunc`).
pub type Transform<K> = Arc<dyn Fn(K) -> K + Send + Sync>;

/// Why a store query failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// No index of that name was added.
    #[error("no index named {0:?}")]
    NoSuchIndex(String),
}

/// The default transform: drops `metadata.managedFields`, which controllers
/// rarely read and which often outweighs the rest of the object.
pub fn drop_managed_fields<K: Resource>() -> Transform<K> {
    Arc::new(|mut obj: K| {
        obj.meta_mut().managed_fields = None;
        obj
    })
}

/// A concurrent cache of `Arc<K>` keyed by [`ObjectKey`], with named indexes.
///
/// Cloning shares the cache. Objects pass through the store's transform
/// (by default [`drop_managed_fields`]) before they are stored. Reads and
/// writes take one lock covering objects and indexes, so a reader never sees
/// an index that disagrees with the objects. Every store has the
/// [`NAMESPACE_INDEX`].
///
/// A relist ([`Store::begin_relist`], [`Store::apply_relisted`],
/// [`Store::finish_relist`]) replaces the contents object by object: objects
/// not seen again are removed at the end, so the store never holds two full
/// copies.
pub struct Store<K> {
    shared: Arc<Shared<K>>,
}

impl<K> Clone for Store<K> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

struct Shared<K> {
    state: RwLock<State<K>>,
    transform: Option<Transform<K>>,
}

struct State<K> {
    items: HashMap<ObjectKey, Entry<K>>,
    indexes: HashMap<String, Index<K>>,
    generation: u64,
}

struct Entry<K> {
    obj: Arc<K>,
    generation: u64,
}

struct Index<K> {
    func: IndexFn<K>,
    values: HashMap<String, HashSet<ObjectKey>>,
}

impl<K> Index<K> {
    fn insert(&mut self, key: &ObjectKey, obj: &K) {
        for value in (self.func)(obj) {
            self.values.entry(value).or_default().insert(key.clone());
        }
    }

    fn remove(&mut self, key: &ObjectKey, obj: &K) {
        for value in (self.func)(obj) {
            if let Some(set) = self.values.get_mut(&value) {
                set.remove(key);
                if set.is_empty() {
                    self.values.remove(&value);
                }
            }
        }
    }
}

/// The result of storing an object.
#[derive(Debug)]
pub struct Applied<K> {
    /// What the store held before, if anything.
    pub old: Option<Arc<K>>,
    /// What it holds now.
    pub new: Arc<K>,
}

/// A relist in progress; see [`Store::begin_relist`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Relist {
    generation: u64,
}

impl<K: Resource + Send + Sync + 'static> Default for Store<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Resource + Send + Sync + 'static> Store<K> {
    /// An empty store with the default transform.
    pub fn new() -> Self {
        Self::with_transform(Some(drop_managed_fields()))
    }

    /// An empty store with `transform` (`None` stores objects as received).
    pub fn with_transform(transform: Option<Transform<K>>) -> Self {
        let mut indexes = HashMap::new();
        indexes.insert(
            NAMESPACE_INDEX.to_owned(),
            Index {
                func: by_namespace(),
                values: HashMap::new(),
            },
        );
        Self {
            shared: Arc::new(Shared {
                state: RwLock::new(State {
                    items: HashMap::new(),
                    indexes,
                    generation: 0,
                }),
                transform,
            }),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, State<K>> {
        self.shared.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State<K>> {
        self.shared.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Add (or replace) the index `name`, filing every stored object in it.
    pub fn add_index(&self, name: impl Into<String>, func: IndexFn<K>) {
        let mut state = self.write();
        let mut index = Index {
            func,
            values: HashMap::new(),
        };
        for (key, entry) in &state.items {
            index.insert(key, &entry.obj);
        }
        state.indexes.insert(name.into(), index);
    }

    /// Transform and store `obj`, replacing any object with the same key.
    pub fn apply(&self, obj: K) -> Applied<K> {
        let obj = self.transform(obj);
        let mut state = self.write();
        let generation = state.generation;
        Self::insert_locked(&mut state, obj, generation)
    }

    fn transform(&self, obj: K) -> K {
        match &self.shared.transform {
            Some(t) => t(obj),
            None => obj,
        }
    }

    fn insert_locked(state: &mut State<K>, obj: K, generation: u64) -> Applied<K> {
        let key = ObjectKey::of(&obj);
        let new = Arc::new(obj);
        let old = state.items.insert(
            key.clone(),
            Entry {
                obj: new.clone(),
                generation,
            },
        );
        for index in state.indexes.values_mut() {
            if let Some(old) = &old {
                index.remove(&key, &old.obj);
            }
            index.insert(&key, &new);
        }
        Applied {
            old: old.map(|e| e.obj),
            new,
        }
    }

    /// Remove the object with `obj`'s key; returns what was stored.
    pub fn delete(&self, obj: &K) -> Option<Arc<K>> {
        self.delete_key(&ObjectKey::of(obj))
    }

    /// Remove the object stored under `key`; returns it.
    pub fn delete_key(&self, key: &ObjectKey) -> Option<Arc<K>> {
        let mut state = self.write();
        Self::remove_locked(&mut state, key)
    }

    fn remove_locked(state: &mut State<K>, key: &ObjectKey) -> Option<Arc<K>> {
        let old = state.items.remove(key)?;
        for index in state.indexes.values_mut() {
            index.remove(key, &old.obj);
        }
        Some(old.obj)
    }

    /// Start replacing the contents: objects not passed to
    /// [`Store::apply_relisted`] before [`Store::finish_relist`] are removed.
    pub fn begin_relist(&self) -> Relist {
        let mut state = self.write();
        state.generation += 1;
        Relist {
            generation: state.generation,
        }
    }

    /// Store an object seen by the relist `relist`.
    pub fn apply_relisted(&self, relist: Relist, obj: K) -> Applied<K> {
        let obj = self.transform(obj);
        let mut state = self.write();
        Self::insert_locked(&mut state, obj, relist.generation)
    }

    /// End the relist: remove and return every object it did not see.
    pub fn finish_relist(&self, relist: Relist) -> Vec<Arc<K>> {
        let mut state = self.write();
        let stale: Vec<ObjectKey> = state
            .items
            .iter()
            .filter(|(_, e)| e.generation < relist.generation)
            .map(|(k, _)| k.clone())
            .collect();
        stale
            .iter()
            .filter_map(|k| Self::remove_locked(&mut state, k))
            .collect()
    }

    /// The object stored under `key`.
    pub fn get(&self, key: &ObjectKey) -> Option<Arc<K>> {
        self.read().items.get(key).map(|e| e.obj.clone())
    }

    /// The object `name` in `namespace` (`None` for cluster-scoped kinds).
    pub fn get_named(&self, namespace: Option<&str>, name: &str) -> Option<Arc<K>> {
        self.get(&ObjectKey {
            namespace: namespace.map(str::to_owned),
            name: name.to_owned(),
        })
    }

    /// Every stored object, in no particular order.
    pub fn list(&self) -> Vec<Arc<K>> {
        self.read().items.values().map(|e| e.obj.clone()).collect()
    }

    /// Every stored key.
    pub fn keys(&self) -> Vec<ObjectKey> {
        self.read().items.keys().cloned().collect()
    }

    /// The objects in `namespace`.
    pub fn list_namespace(&self, namespace: &str) -> Vec<Arc<K>> {
        self.by_index(NAMESPACE_INDEX, namespace)
            .unwrap_or_default()
    }

    /// The objects filed under `value` in the index `index`.
    pub fn by_index(&self, index: &str, value: &str) -> Result<Vec<Arc<K>>, StoreError> {
        let state = self.read();
        let idx = state
            .indexes
            .get(index)
            .ok_or_else(|| StoreError::NoSuchIndex(index.to_owned()))?;
        Ok(idx
            .values
            .get(value)
            .into_iter()
            .flatten()
            .filter_map(|k| state.items.get(k).map(|e| e.obj.clone()))
            .collect())
    }

    /// The keys filed under `value` in the index `index`.
    pub fn index_keys(&self, index: &str, value: &str) -> Result<Vec<ObjectKey>, StoreError> {
        let state = self.read();
        let idx = state
            .indexes
            .get(index)
            .ok_or_else(|| StoreError::NoSuchIndex(index.to_owned()))?;
        Ok(idx
            .values
            .get(value)
            .into_iter()
            .flatten()
            .cloned()
            .collect())
    }

    /// The values the index `index` has objects under.
    pub fn index_values(&self, index: &str) -> Result<Vec<String>, StoreError> {
        let state = self.read();
        let idx = state
            .indexes
            .get(index)
            .ok_or_else(|| StoreError::NoSuchIndex(index.to_owned()))?;
        Ok(idx.values.keys().cloned().collect())
    }

    /// The objects whose labels match `selector`, in `namespace` if given.
    pub fn list_selected(&self, selector: &Selector, namespace: Option<&str>) -> Vec<Arc<K>> {
        let candidates = match namespace {
            Some(ns) => self.list_namespace(ns),
            None => self.list(),
        };
        candidates
            .into_iter()
            .filter(|o| {
                let labels = &o.meta().labels;
                selector
                    .matches_with(|k| labels.as_ref().and_then(|l| l.get(k)).map(String::as_str))
            })
            .collect()
    }

    /// How many objects are stored.
    pub fn len(&self) -> usize {
        self.read().items.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::index;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::ObjectMeta;

    fn cm(ns: &str, name: &str, app: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                labels: Some([("app".to_owned(), app.to_owned())].into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn index_follows_label_changes() {
        let store = Store::<ConfigMap>::new();
        store.add_index("app", index::by_label("app"));
        store.apply(cm("a", "x", "web"));
        store.apply(cm("a", "x", "db"));
        assert!(store.by_index("app", "web").unwrap().is_empty());
        assert_eq!(store.by_index("app", "db").unwrap().len(), 1);
        assert_eq!(store.list_namespace("a").len(), 1);
    }

    #[test]
    fn relist_removes_unseen_objects() {
        let store = Store::<ConfigMap>::new();
        store.apply(cm("a", "x", "web"));
        store.apply(cm("a", "y", "web"));
        let r = store.begin_relist();
        store.apply_relisted(r, cm("a", "y", "web"));
        let gone = store.finish_relist(r);
        assert_eq!(gone.len(), 1);
        assert_eq!(store.keys(), vec![ObjectKey::namespaced("a", "y")]);
    }
}
