//! Recording core/v1 Events about objects, the way `kubectl describe` shows
//! them (`Normal ScalingReplicaSet  Scaled up replica set web-5d8f to 3`).
//! Failures to record are logged and otherwise ignored: an Event is never
//! worth failing a sync for.
//!
//! Repeats are aggregated as client-go's event correlator does: the same
//! reason and message about the same object within ten minutes bumps the
//! existing Event's `count` and `lastTimestamp` instead of writing a new
//! one, so `kubectl describe` shows `(x3 over 10s)`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::core::ObjectMeta;
use serde_json::json;

/// How long a repeat is folded into the Event it repeats (client-go: 10 min).
const AGGREGATION_WINDOW: Duration = Duration::from_secs(600);
/// Events remembered for aggregation before the oldest are forgotten.
const REMEMBERED: usize = 4096;

/// An Event already written, for repeats to bump.
struct Written {
    namespace: String,
    name: String,
    count: i32,
    first_timestamp: String,
    at: Instant,
}

/// Records Events on behalf of one component (clones share the
/// aggregation state).
#[derive(Clone)]
pub struct Recorder {
    client: kube::Client,
    component: String,
    written: Arc<Mutex<HashMap<String, Written>>>,
}

impl Recorder {
    /// A recorder writing as `component` (e.g. `deployment-controller`).
    pub fn new(client: kube::Client, component: impl Into<String>) -> Self {
        Self {
            client,
            component: component.into(),
            written: Arc::default(),
        }
    }

    /// Record an Event of `type_` (`Normal` or `Warning`) about the object
    /// `kind`/`meta` (its apiVersion given).
    pub async fn record(
        &self,
        api_version: &str,
        kind: &str,
        meta: &ObjectMeta,
        type_: &str,
        reason: &str,
        message: &str,
    ) {
        let ns = meta.namespace.clone().unwrap_or_else(|| "default".into());
        let name = meta.name.clone().unwrap_or_default();
        let now = jiff::Timestamp::now();
        let stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        let key = format!(
            "{}/{kind}/{ns}/{name}/{}/{type_}/{reason}/{message}",
            self.component,
            meta.uid.as_deref().unwrap_or_default()
        );

        // A repeat: bump the Event it repeats.
        let repeat = {
            let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
            match written.get_mut(&key) {
                Some(w) if w.at.elapsed() < AGGREGATION_WINDOW => {
                    w.count += 1;
                    Some((
                        w.namespace.clone(),
                        w.name.clone(),
                        w.count,
                        w.first_timestamp.clone(),
                    ))
                }
                _ => None,
            }
        };
        if let Some((event_ns, event_name, count, first)) = repeat {
            let api: Api<Event> = Api::namespaced(self.client.clone(), &event_ns);
            let patch = json!({"count": count, "lastTimestamp": stamp, "firstTimestamp": first});
            match api
                .patch(&event_name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => return,
                // Gone (expired or deleted): write it anew below.
                Err(e) => tracing::debug!(error = %e, reason, "bumping an event failed"),
            }
        }

        let event_name = format!("{name}.{:x}", now.as_nanosecond());
        let body = json!({
            "metadata": {
                "name": event_name,
                "namespace": ns,
            },
            "involvedObject": {
                "apiVersion": api_version, "kind": kind, "name": name, "namespace": meta.namespace,
                "uid": meta.uid, "resourceVersion": meta.resource_version,
            },
            "reason": reason,
            "message": message,
            "type": type_,
            "source": {"component": self.component},
            "reportingComponent": self.component,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        });
        let event: Event = match serde_json::from_value(body) {
            Ok(e) => e,
            Err(e) => {
                tracing::debug!(error = %e, "building an event failed");
                return;
            }
        };
        match api.create(&PostParams::default(), &event).await {
            Ok(_) => {
                let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
                if written.len() >= REMEMBERED {
                    written.retain(|_, w| w.at.elapsed() < AGGREGATION_WINDOW);
                    if written.len() >= REMEMBERED {
                        written.clear();
                    }
                }
                written.insert(
                    key,
                    Written {
                        namespace: ns,
                        name: event_name,
                        count: 1,
                        first_timestamp: stamp,
                        at: Instant::now(),
                    },
                );
            }
            Err(e) => tracing::debug!(error = %e, reason, "recording an event failed"),
        }
    }
}
