//! The watches every rk component opens: kube-runtime's watcher with the
//! objects trimmed before anyone keeps them.
//!
//! `metadata.managedFields` (server-side apply bookkeeping) is often half an
//! object's size, and far more once parsed into `serde_json::Value` trees;
//! no controller, the scheduler, the kubelet or the proxy reads it. With
//! a dozen caches of every pod in `rk up`, dropping it as events arrive is
//! most of their memory.
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

use futures::Stream;
use kube::Resource;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use serde::de::DeserializeOwned;

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
