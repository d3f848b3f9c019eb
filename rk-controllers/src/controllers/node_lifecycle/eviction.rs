//! The taint eviction controller: deletes pods bound to nodes with
//! `NoExecute` taints they do not tolerate — at once for a taint with no
//! matching toleration, or `tolerationSeconds` after the taint was added
//! (the API server gives every pod 300 s for `not-ready` and `unreachable`).
//! A pod tolerating the taint with no `tolerationSeconds` stays. Evicted
//! pods get the `DisruptionTarget` condition (`DeletionByTaintManager`)
//! before they are deleted, and an Event.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod, Taint};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use serde_json::json;

use crate::events::Recorder;

/// When a pod on nodes with these taints must go: `Some(now-or-past)` to
/// evict, a future time to wait, `None` to stay.
pub fn eviction_time(pod: &Pod, taints: &[Taint], now: jiff::Timestamp) -> Option<jiff::Timestamp> {
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.clone())
        .unwrap_or_default();
    let mut at: Option<jiff::Timestamp> = None;
    for taint in taints.iter().filter(|t| t.effect == "NoExecute") {
        let matching: Vec<_> = tolerations
            .iter()
            .filter(|t| rk_core::predicates::taints::toleration_tolerates_taint(t, taint))
            .collect();
        if matching.is_empty() {
            return Some(now);
        }
        // The shortest tolerationSeconds of the matching ones, as upstream;
        // only if none sets a limit is the taint tolerated forever.
        let Some(secs) = matching.iter().filter_map(|t| t.toleration_seconds).min() else {
            continue;
        };
        let secs = secs.max(0);
        let added = taint.time_added.as_ref().map(|t| t.0).unwrap_or(now);
        let when = added
            .checked_add(jiff::SignedDuration::from_secs(secs))
            .unwrap_or(now);
        at = Some(at.map_or(when, |a| a.min(when)));
    }
    at
}

/// The controller's state.
pub struct Controller {
    client: kube::Client,
    nodes: Store<Node>,
    pods: Store<Pod>,
    recorder: Recorder,
}

impl Controller {
    /// Evict every pod that is due; returns how long until the next one is.
    pub async fn pass(&self) -> Option<Duration> {
        let now = jiff::Timestamp::now();
        let mut next: Option<Duration> = None;
        // Only pods on nodes with NoExecute taints can be due: index those
        // nodes once, and skip the pods entirely when there are none.
        let nodes = self.nodes.state();
        let tainted: HashMap<&str, Vec<Taint>> = nodes
            .iter()
            .filter_map(|n| {
                let taints: Vec<Taint> = n
                    .spec
                    .as_ref()?
                    .taints
                    .iter()
                    .flatten()
                    .filter(|t| t.effect == "NoExecute")
                    .cloned()
                    .collect();
                (!taints.is_empty()).then_some((n.metadata.name.as_deref()?, taints))
            })
            .collect();
        if tainted.is_empty() {
            return None;
        }
        for pod in self.pods.state() {
            if pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let Some(taints) = pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .and_then(|node| tainted.get(node))
            else {
                continue;
            };
            let Some(at) = eviction_time(&pod, taints, now) else {
                continue;
            };
            if at <= now {
                self.evict(&pod).await;
            } else {
                let wait = Duration::from_secs((at.as_second() - now.as_second()).max(0) as u64);
                next = Some(next.map_or(wait, |n| n.min(wait)));
            }
        }
        next
    }

    async fn evict(&self, pod: &Pod) {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        tracing::info!(pod = %format!("{ns}/{name}"), "evicting pod from a tainted node");
        let now = jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        let mut conditions: Vec<serde_json::Value> = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .filter(|c| c.type_ != "DisruptionTarget")
            .filter_map(|c| serde_json::to_value(c).ok())
            .collect();
        conditions.push(json!({"type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager",
                               "message": "Taint manager: deleting due to NoExecute taint", "lastTransitionTime": now}));
        let _ = api
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"conditions": conditions}})),
            )
            .await;
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {
                self.recorder
                    .record(
                        "v1",
                        "Pod",
                        &pod.metadata,
                        "Normal",
                        "TaintManagerEviction",
                        &format!("Marking for deletion Pod {ns}/{name}"),
                    )
                    .await;
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => tracing::warn!(error = %e, pod = %name, "evicting a pod failed"),
        }
    }
}

/// Run the taint eviction controller: a pass whenever a node or pod changes,
/// and when the next toleration runs out.
pub async fn run(client: kube::Client) {
    let informers = crate::watch::Informers::new(&client);
    run_shared(client, informers).await
}

/// Run the taint eviction controller on `informers`' shared pods and nodes.
pub async fn run_shared(client: kube::Client, informers: crate::watch::Informers) {
    let nodes = informers.nodes.store();
    let pods = informers.pods.store();
    let changed = Arc::new(tokio::sync::Notify::new());
    let n = changed.clone();
    let node_watch = informers.nodes.subscribe().for_each(move |_| {
        n.notify_one();
        futures::future::ready(())
    });
    let p = changed.clone();
    let pod_watch = informers.pods.subscribe().for_each(move |ev| {
        // Only a pod newly bound to a node can be affected.
        if let Ok(watcher::Event::Apply(pod)) = ev
            && pod.spec.as_ref().is_some_and(|s| s.node_name.is_some())
        {
            p.notify_one();
        }
        futures::future::ready(())
    });
    let ctrl = Controller {
        client: client.clone(),
        nodes,
        pods,
        recorder: Recorder::new(client, "taint-eviction-controller"),
    };
    let work = async move {
        crate::watch::store_ready(&ctrl.nodes).await;
        crate::watch::store_ready(&ctrl.pods).await;
        loop {
            let next = ctrl.pass().await.unwrap_or(Duration::from_secs(30));
            // Coalesce bursts of changes; wake at the next deadline at the latest.
            tokio::select! {
                _ = changed.notified() => tokio::time::sleep(Duration::from_millis(100)).await,
                _ = tokio::time::sleep(next.max(Duration::from_millis(200))) => {}
            }
        }
    };
    tokio::join!(node_watch, pod_watch, work);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(tolerations: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"containers": [], "tolerations": tolerations}}))
            .unwrap()
    }

    fn taint(key: &str, added: jiff::Timestamp) -> Taint {
        Taint {
            key: key.into(),
            effect: "NoExecute".into(),
            value: None,
            time_added: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(added)),
        }
    }

    #[test]
    fn untolerated_taints_evict_now_and_toleration_seconds_delay() {
        let now = jiff::Timestamp::now();
        let t = [taint("node.kubernetes.io/unreachable", now)];
        assert_eq!(eviction_time(&pod(json!([])), &t, now), Some(now));
        let limited = pod(
            json!([{"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                                  "effect": "NoExecute", "tolerationSeconds": 300}]),
        );
        assert_eq!(
            eviction_time(&limited, &t, now).map(|a| a.as_second() - now.as_second()),
            Some(300)
        );
        let forever = pod(json!([{"operator": "Exists"}]));
        assert_eq!(eviction_time(&forever, &t, now), None);
    }
}
