//! The Endpoints and EndpointSlice controllers: for every Service with a
//! selector, the addresses of its pods, ready and not ready, with the ports
//! they serve.
//!
//! [`desired`] computes what a Service's endpoints should be; [`slices`]
//! writes them as `discovery.k8s.io/v1` EndpointSlices (at most 100
//! endpoints each, labelled as managed by this controller) and [`legacy`] as
//! the core/v1 `Endpoints` object of the same name. Both react to Services
//! and to pods joining, leaving, or changing readiness.

pub mod desired;
pub mod legacy;
pub mod slices;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};

use crate::queue::WorkQueue;

/// Services and pods as the controllers see them, and which pods each
/// Service counted last time (so a pod whose labels stop matching still
/// triggers a sync of the Service it left).
#[derive(Clone)]
pub struct ServicePods {
    /// Every Service.
    pub services: Store<Service>,
    /// Every pod.
    pub pods: Store<Pod>,
    /// Service key -> names of the pods in its last computed endpoints.
    members: Arc<Mutex<HashMap<String, HashSet<String>>>>,
}

impl ServicePods {
    /// The Service `ns/name`, if it exists.
    pub fn service(&self, ns: &str, name: &str) -> Option<Arc<Service>> {
        self.services.state().into_iter().find(|s| {
            s.metadata.namespace.as_deref() == Some(ns) && s.metadata.name.as_deref() == Some(name)
        })
    }

    /// The pods of namespace `ns`.
    pub fn pods_in(&self, ns: &str) -> Vec<Arc<Pod>> {
        self.pods
            .state()
            .into_iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(ns))
            .collect()
    }

    /// Record which pods a Service's endpoints hold now.
    pub fn set_members(&self, key: &str, pods: HashSet<String>) {
        let mut m = self.members.lock().unwrap_or_else(|p| p.into_inner());
        if pods.is_empty() {
            m.remove(key);
        } else {
            m.insert(key.to_string(), pods);
        }
    }

    fn services_for_pod(&self, pod: &Pod) -> Vec<String> {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let mut keys: Vec<String> = self
            .services
            .state()
            .iter()
            .filter(|s| desired::selects(s, pod))
            .filter_map(|s| s.metadata.name.as_ref().map(|n| format!("{ns}/{n}")))
            .collect();
        let members = self.members.lock().unwrap_or_else(|p| p.into_inner());
        for (key, pods) in members.iter() {
            if key.starts_with(&format!("{ns}/")) && pods.contains(&name) && !keys.contains(key) {
                keys.push(key.clone());
            }
        }
        keys
    }
}

/// Watch Services and pods, enqueueing `ns/name` of every Service whose
/// endpoints may have changed. Returns the caches and the future that
/// drives the watches.
pub fn watch(
    client: kube::Client,
    queue: WorkQueue,
    informers: &crate::watch::Informers,
) -> (ServicePods, impl std::future::Future<Output = ()> + Send) {
    let (services, svc_writer) = reflector::store::<Service>();
    let pods = informers.pods.store();
    let state = ServicePods {
        services,
        pods,
        members: Default::default(),
    };
    let q = queue.clone();
    let svc_events = reflector::reflector(
        svc_writer,
        crate::watch::lean_watcher(
            Api::<Service>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .for_each(move |ev| {
        if let Ok(
            watcher::Event::Apply(s) | watcher::Event::InitApply(s) | watcher::Event::Delete(s),
        ) = ev
            && let (Some(ns), Some(n)) = (&s.metadata.namespace, &s.metadata.name)
        {
            q.add(format!("{ns}/{n}"));
        }
        futures::future::ready(())
    });
    let st = state.clone();
    let pod_events = informers.pods.subscribe().for_each(move |ev| {
        if let Ok(
            watcher::Event::Apply(p) | watcher::Event::InitApply(p) | watcher::Event::Delete(p),
        ) = ev
        {
            for key in st.services_for_pod(&p) {
                queue.add(key);
            }
        }
        futures::future::ready(())
    });
    let driver = async move {
        tokio::join!(svc_events, pod_events);
    };
    (state, driver)
}

/// Split `ns/name`.
pub(crate) fn split_key(key: &str) -> Option<(&str, &str)> {
    key.split_once('/')
}
