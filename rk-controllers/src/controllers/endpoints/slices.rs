//! The EndpointSlice controller: a Service's endpoints as
//! `discovery.k8s.io/v1` EndpointSlices of at most [`MAX_ENDPOINTS`] each,
//! one set of slices per port set and address family, owned by the Service
//! and labelled `kubernetes.io/service-name` and
//! `endpointslice.kubernetes.io/managed-by`. Slices are updated in place
//! when their port set still fits, so watchers see few changes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};

use super::desired::{self, PodEndpoint, ResolvedPort};
use super::{ServicePods, split_key};
use crate::queue::{self, Requeue, WorkQueue};

/// The most endpoints in one slice (upstream's `--max-endpoints-per-slice`).
pub const MAX_ENDPOINTS: usize = 100;
/// The managed-by label's key.
pub const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
/// The managed-by label's value for slices this controller writes.
pub const CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";
/// The label naming a slice's Service.
pub const SERVICE_NAME: &str = "kubernetes.io/service-name";

fn family(ip: &str) -> &'static str {
    if ip.contains(':') { "IPv6" } else { "IPv4" }
}

fn ports_json(ports: &[ResolvedPort]) -> Value {
    Value::Array(
        ports
            .iter()
            .map(|p| {
                let mut v = json!({"name": p.name, "port": p.port, "protocol": p.protocol});
                if let Some(a) = &p.app_protocol {
                    v["appProtocol"] = json!(a);
                }
                v
            })
            .collect(),
    )
}

fn endpoint_json(e: &PodEndpoint) -> Value {
    let mut v = json!({
        "addresses": [e.ip],
        "conditions": {"ready": e.ready, "serving": e.serving, "terminating": e.terminating},
        "targetRef": {"kind": "Pod", "namespace": e.namespace, "name": e.pod_name, "uid": e.uid},
    });
    if let Some(n) = &e.node_name {
        v["nodeName"] = json!(n);
    }
    v
}

/// The labels every slice of `svc` carries: the Service's own, plus the
/// service-name and managed-by labels (and `service.kubernetes.io/headless`
/// for headless Services).
pub fn slice_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels = svc.metadata.labels.clone().unwrap_or_default();
    labels.insert(
        SERVICE_NAME.into(),
        svc.metadata.name.clone().unwrap_or_default(),
    );
    labels.insert(MANAGED_BY.into(), CONTROLLER_NAME.into());
    if svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None") {
        labels.insert("service.kubernetes.io/headless".into(), String::new());
    }
    labels
}

/// One slice's worth of content.
struct Chunk {
    address_type: &'static str,
    ports: Value,
    endpoints: Value,
}

fn desired_chunks(svc: &Service, state: &ServicePods, ns: &str) -> (Vec<Chunk>, HashSet<String>) {
    let pods = state.pods_in(ns);
    let groups = desired::compute(svc, pods.iter().map(|p| p.as_ref()));
    let has_ports = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .is_some_and(|p| !p.is_empty());
    let mut members = HashSet::new();
    let mut chunks = Vec::new();
    for (ports, eps) in groups {
        if has_ports && ports.is_empty() {
            continue;
        }
        for fam in ["IPv4", "IPv6"] {
            let of_family: Vec<&PodEndpoint> =
                eps.iter().filter(|e| family(&e.ip) == fam).collect();
            for chunk in of_family.chunks(MAX_ENDPOINTS) {
                members.extend(chunk.iter().map(|e| e.pod_name.clone()));
                chunks.push(Chunk {
                    address_type: fam,
                    ports: ports_json(&ports),
                    endpoints: Value::Array(chunk.iter().map(|e| endpoint_json(e)).collect()),
                });
            }
        }
    }
    if chunks.is_empty() && has_ports {
        // A Service with no endpoints still has one (empty) slice, as upstream.
        let ports: Vec<ResolvedPort> = Vec::new();
        chunks.push(Chunk {
            address_type: "IPv4",
            ports: ports_json(&ports),
            endpoints: json!([]),
        });
    }
    (chunks, members)
}

fn owner_ref(svc: &Service) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "name": svc.metadata.name, "uid": svc.metadata.uid,
        "controller": true, "blockOwnerDeletion": true,
    })
}

fn same_content(slice: &EndpointSlice, chunk: &Chunk, labels: &BTreeMap<String, String>) -> bool {
    let eps =
        serde_json::to_value(slice.endpoints.clone().unwrap_or_default()).unwrap_or(Value::Null);
    let ports =
        serde_json::to_value(slice.ports.clone().unwrap_or_default()).unwrap_or(Value::Null);
    let want_eps = chunk.endpoints.clone();
    eps == want_eps
        && ports == chunk.ports
        && slice.metadata.labels.as_ref() == Some(labels)
        && slice.address_type == chunk.address_type
}

/// Writes of one sync not yet seen in the cache: when they began, and each
/// slice's name with the resourceVersion written (`None`: deleted).
type PendingWrites = (std::time::Instant, Vec<(String, Option<u64>)>);

/// The controller's state.
pub struct Controller {
    client: kube::Client,
    state: ServicePods,
    slices: Store<EndpointSlice>,
    /// Per Service, the slices this controller wrote (name and the
    /// resourceVersion it got back, `None` for a deletion) that the cache
    /// has not shown yet: until it has, a sync would act on stale state.
    written: Mutex<HashMap<String, PendingWrites>>,
}

/// Errors of one sync.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// An API call failed.
    #[error("{0}")]
    Kube(#[from] kube::Error),
    /// A slice could not be built.
    #[error("building an EndpointSlice: {0}")]
    Build(#[from] serde_json::Error),
}

fn rv(s: &EndpointSlice) -> u64 {
    s.metadata
        .resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

impl Controller {
    /// True once the cache shows every write of the last sync of `key`.
    fn cache_caught_up(&self, key: &str, ns: &str) -> bool {
        let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        let Some((since, list)) = written.get(key) else {
            return true;
        };
        // A write the cache never shows (the slice was deleted meanwhile)
        // holds the Service back for a few seconds at most.
        let seen = since.elapsed() > Duration::from_secs(5)
            || list.iter().all(|(name, want)| {
                let cached = self.slices.state().into_iter().find(|s| {
                    s.metadata.namespace.as_deref() == Some(ns)
                        && s.metadata.name.as_deref() == Some(name.as_str())
                });
                match (want, cached) {
                    (Some(v), Some(s)) => rv(&s) >= *v,
                    (Some(_), None) => false,
                    (None, cached) => cached.is_none(),
                }
            });
        if seen {
            written.remove(key);
        }
        seen
    }

    fn record(&self, key: &str, name: String, version: Option<u64>) {
        self.written
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key.to_string())
            .or_insert_with(|| (std::time::Instant::now(), Vec::new()))
            .1
            .push((name, version));
    }

    fn managed_slices(&self, ns: &str, svc: &str) -> Vec<Arc<EndpointSlice>> {
        let mut out: Vec<Arc<EndpointSlice>> = self
            .slices
            .state()
            .into_iter()
            .filter(|s| s.metadata.namespace.as_deref() == Some(ns))
            .filter(|s| {
                let l = s.metadata.labels.as_ref();
                l.and_then(|l| l.get(SERVICE_NAME)).map(String::as_str) == Some(svc)
                    && l.and_then(|l| l.get(MANAGED_BY)).map(String::as_str)
                        == Some(CONTROLLER_NAME)
            })
            .collect();
        out.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        out
    }

    /// Bring the slices of Service `ns/name` in line with its pods.
    pub async fn sync(&self, key: &str) -> Result<Requeue, SyncError> {
        let Some((ns, name)) = split_key(key) else {
            return Ok(None);
        };
        if !self.cache_caught_up(key, ns) {
            return Ok(Some(Duration::from_millis(50)));
        }
        let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), ns);
        let existing = self.managed_slices(ns, name);
        let svc = self.state.service(ns, name);
        let Some(svc) = svc.filter(|s| desired::is_managed(s)) else {
            self.state.set_members(key, HashSet::new());
            for s in existing {
                if let Some(n) = &s.metadata.name {
                    ignore_not_found(api.delete(n, &DeleteParams::default()).await)?;
                    self.record(key, n.clone(), None);
                }
            }
            return Ok(None);
        };
        let (chunks, members) = desired_chunks(&svc, &self.state, ns);
        self.state.set_members(key, members);
        let labels = slice_labels(&svc);
        let mut unused: Vec<Arc<EndpointSlice>> = existing;
        let mut to_write: Vec<(Option<Arc<EndpointSlice>>, Chunk)> = Vec::new();
        // Slices that already hold a chunk exactly stay as they are.
        let mut pending = Vec::new();
        for chunk in chunks {
            if let Some(i) = unused.iter().position(|s| same_content(s, &chunk, &labels)) {
                unused.remove(i);
            } else {
                pending.push(chunk);
            }
        }
        // The rest reuse slices of the same port set and family, else new ones.
        for chunk in pending {
            let reuse = unused.iter().position(|s| {
                serde_json::to_value(s.ports.clone().unwrap_or_default())
                    .ok()
                    .as_ref()
                    == Some(&chunk.ports)
                    && s.address_type == chunk.address_type
            });
            to_write.push((reuse.map(|i| unused.remove(i)), chunk));
        }
        for (slice, chunk) in to_write {
            let mut body = json!({
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "namespace": ns,
                    "labels": labels,
                    "ownerReferences": [owner_ref(&svc)],
                },
                "addressType": chunk.address_type,
                "endpoints": chunk.endpoints,
                "ports": chunk.ports,
            });
            match slice {
                Some(s) => {
                    body["metadata"]["name"] = json!(s.metadata.name);
                    body["metadata"]["resourceVersion"] = json!(s.metadata.resource_version);
                    let obj: EndpointSlice = serde_json::from_value(body)?;
                    let n = s.metadata.name.clone().unwrap_or_default();
                    match api.replace(&n, &PostParams::default(), &obj).await {
                        Ok(new) => self.record(key, n, Some(rv(&new))),
                        Err(kube::Error::Api(e)) if e.code == 404 => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                None => {
                    body["metadata"]["generateName"] = json!(format!("{name}-"));
                    let obj: EndpointSlice = serde_json::from_value(body)?;
                    let new = api.create(&PostParams::default(), &obj).await?;
                    self.record(
                        key,
                        new.metadata.name.clone().unwrap_or_default(),
                        Some(rv(&new)),
                    );
                }
            }
        }
        for s in unused {
            if let Some(n) = &s.metadata.name {
                ignore_not_found(api.delete(n, &DeleteParams::default()).await)?;
                self.record(key, n.clone(), None);
            }
        }
        Ok(None)
    }
}

fn ignore_not_found<T>(r: Result<T, kube::Error>) -> Result<(), kube::Error> {
    match r {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Run the EndpointSlice controller with `workers` concurrent syncs.
pub async fn run(client: kube::Client, workers: usize) {
    let informers = crate::watch::Informers::new(&client);
    run_shared(client, workers, informers).await
}

/// Run the EndpointSlice controller on `informers`' shared pods.
pub async fn run_shared(client: kube::Client, workers: usize, informers: crate::watch::Informers) {
    let queue = WorkQueue::new();
    let (state, services_and_pods) = super::watch(client.clone(), queue.clone(), &informers);
    let (slices, slice_writer) = reflector::store::<EndpointSlice>();
    let q = queue.clone();
    let slice_events = reflector::reflector(
        slice_writer,
        crate::watch::lean_watcher(
            Api::<EndpointSlice>::all(client.clone()),
            watcher::Config::default().labels(&format!("{MANAGED_BY}={CONTROLLER_NAME}")),
        ),
    )
    .default_backoff()
    .for_each(move |ev| {
        // A slice changed or removed by someone else is put right again.
        if let Ok(watcher::Event::Apply(s) | watcher::Event::Delete(s)) = ev
            && let (Some(ns), Some(svc)) = (
                &s.metadata.namespace,
                s.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME)),
            )
        {
            q.add(format!("{ns}/{svc}"));
        }
        futures::future::ready(())
    });
    let ctrl = Arc::new(Controller {
        client,
        state,
        slices,
        written: Mutex::default(),
    });
    let work = queue::run_workers("endpointslice", queue, workers, move |key| {
        let ctrl = ctrl.clone();
        async move {
            // Wait for the caches before the first sync, so nothing is
            // deleted for want of having seen it.
            crate::watch::store_ready(&ctrl.state.services).await;
            crate::watch::store_ready(&ctrl.state.pods).await;
            crate::watch::store_ready(&ctrl.slices).await;
            ctrl.sync(&key).await
        }
    });
    tokio::join!(services_and_pods, slice_events, work);
}
