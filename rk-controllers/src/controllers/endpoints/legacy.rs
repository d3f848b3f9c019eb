//! The Endpoints controller: a Service's endpoints as the core/v1
//! `Endpoints` object of the same name — one subset per port set, ready pods
//! in `addresses` and the others in `notReadyAddresses`, at most
//! [`MAX_ADDRESSES`] (beyond that the object is truncated and annotated
//! `endpoints.kubernetes.io/over-capacity: truncated`, as upstream).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Endpoints, Service};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::{Value, json};

use super::desired::{self, PodEndpoint};
use super::{ServicePods, split_key};
use crate::queue::{self, Requeue, WorkQueue};

/// The most addresses an Endpoints object holds.
pub const MAX_ADDRESSES: usize = 1000;
/// The annotation marking a truncated Endpoints object.
pub const OVER_CAPACITY: &str = "endpoints.kubernetes.io/over-capacity";

fn address(e: &PodEndpoint) -> Value {
    let mut v = json!({
        "ip": e.ip,
        "targetRef": {"kind": "Pod", "namespace": e.namespace, "name": e.pod_name, "uid": e.uid},
    });
    if let Some(n) = &e.node_name {
        v["nodeName"] = json!(n);
    }
    v
}

/// The subsets, labels and annotations `svc`'s Endpoints should have.
fn desired_object(svc: &Service, state: &ServicePods, ns: &str) -> (Value, HashSet<String>, bool) {
    let pods = state.pods_in(ns);
    let groups = desired::compute(svc, pods.iter().map(|p| p.as_ref()));
    let has_ports = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .is_some_and(|p| !p.is_empty());
    let mut members = HashSet::new();
    let mut subsets = Vec::new();
    let mut total = 0usize;
    let mut truncated = false;
    for (ports, eps) in groups {
        if has_ports && ports.is_empty() {
            continue;
        }
        let mut ready = Vec::new();
        let mut not_ready = Vec::new();
        for e in &eps {
            if total >= MAX_ADDRESSES {
                truncated = true;
                break;
            }
            total += 1;
            members.insert(e.pod_name.clone());
            if e.ready {
                ready.push(address(e));
            } else {
                not_ready.push(address(e));
            }
        }
        let mut subset = json!({});
        if !ready.is_empty() {
            subset["addresses"] = json!(ready);
        }
        if !not_ready.is_empty() {
            subset["notReadyAddresses"] = json!(not_ready);
        }
        if !ports.is_empty() {
            subset["ports"] = Value::Array(
                ports
                    .iter()
                    .map(|p| {
                        let mut v = json!({"port": p.port, "protocol": p.protocol});
                        if !p.name.is_empty() {
                            v["name"] = json!(p.name);
                        }
                        if let Some(a) = &p.app_protocol {
                            v["appProtocol"] = json!(a);
                        }
                        v
                    })
                    .collect(),
            );
        }
        if subset.get("addresses").is_some() || subset.get("notReadyAddresses").is_some() {
            subsets.push(subset);
        }
    }
    (Value::Array(subsets), members, truncated)
}

fn labels_for(svc: &Service) -> BTreeMap<String, String> {
    let mut labels = svc.metadata.labels.clone().unwrap_or_default();
    if svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None") {
        labels.insert("service.kubernetes.io/headless".into(), String::new());
    }
    labels
}

/// The controller's state.
pub struct Controller {
    client: kube::Client,
    state: ServicePods,
}

/// Errors of one sync.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// An API call failed.
    #[error("{0}")]
    Kube(#[from] kube::Error),
    /// The object could not be built.
    #[error("building Endpoints: {0}")]
    Build(#[from] serde_json::Error),
}

impl Controller {
    /// Bring the Endpoints of Service `ns/name` in line with its pods.
    pub async fn sync(&self, key: &str) -> Result<Requeue, SyncError> {
        let Some((ns, name)) = split_key(key) else {
            return Ok(None);
        };
        let api: Api<Endpoints> = Api::namespaced(self.client.clone(), ns);
        let Some(svc) = self.state.service(ns, name) else {
            // The Service is gone: so are its endpoints.
            self.state.set_members(key, HashSet::new());
            return match api.delete(name, &DeleteParams::default()).await {
                Ok(_) => Ok(None),
                Err(kube::Error::Api(e)) if e.code == 404 => Ok(None),
                Err(e) => Err(e.into()),
            };
        };
        if !desired::is_managed(&svc) {
            // Endpoints of selector-less Services belong to their users.
            return Ok(None);
        }
        let (subsets, members, truncated) = desired_object(&svc, &self.state, ns);
        self.state.set_members(key, members);
        let labels = labels_for(&svc);
        let current = match api.get_opt(name).await? {
            Some(c) => c,
            None => {
                let mut body = json!({
                    "metadata": {"name": name, "namespace": ns, "labels": labels},
                    "subsets": subsets,
                });
                if truncated {
                    body["metadata"]["annotations"] = json!({OVER_CAPACITY: "truncated"});
                }
                let obj: Endpoints = serde_json::from_value(body)?;
                match api.create(&PostParams::default(), &obj).await {
                    Ok(_) => return Ok(None),
                    // Created meanwhile: sync again against it.
                    Err(kube::Error::Api(e)) if e.code == 409 => {
                        return Ok(Some(std::time::Duration::from_millis(10)));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        };
        let have_subsets = serde_json::to_value(current.subsets.clone().unwrap_or_default())?;
        let mut annotations = current.metadata.annotations.clone().unwrap_or_default();
        let had_flag = annotations.contains_key(OVER_CAPACITY);
        if truncated {
            annotations.insert(OVER_CAPACITY.into(), "truncated".into());
        } else {
            annotations.remove(OVER_CAPACITY);
        }
        if have_subsets == subsets
            && current.metadata.labels.clone().unwrap_or_default() == labels
            && had_flag == truncated
        {
            return Ok(None);
        }
        let mut updated = current.clone();
        updated.subsets = serde_json::from_value(subsets)?;
        updated.metadata.labels = Some(labels);
        updated.metadata.annotations = Some(annotations).filter(|a| !a.is_empty());
        match api.replace(name, &PostParams::default(), &updated).await {
            Ok(_) => Ok(None),
            Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => {
                Ok(Some(std::time::Duration::from_millis(10)))
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// Run the Endpoints controller with `workers` concurrent syncs.
pub async fn run(client: kube::Client, workers: usize) {
    let informers = crate::watch::Informers::new(&client);
    run_shared(client, workers, informers).await
}

/// Run the Endpoints controller on `informers`' shared pods.
pub async fn run_shared(client: kube::Client, workers: usize, informers: crate::watch::Informers) {
    let queue = WorkQueue::new();
    let (state, driver) = super::watch(client.clone(), queue.clone(), &informers);
    let ctrl = Arc::new(Controller { client, state });
    let work = queue::run_workers("endpoints", queue, workers, move |key| {
        let ctrl = ctrl.clone();
        async move {
            crate::watch::store_ready(&ctrl.state.services).await;
            crate::watch::store_ready(&ctrl.state.pods).await;
            ctrl.sync(&key).await
        }
    });
    tokio::join!(driver, work);
}
