//! [`Recorder`]: publishes Kubernetes Events about objects.
//!
//! Events go to `events.k8s.io/v1`; if the server does not serve that API,
//! the recorder falls back to core `v1` Events for good. A repeat of the same
//! event (same object, type, reason, action and note) within six minutes is
//! not a new Event: the existing one's series count and last-observed time
//! are bumped instead, as client-go's events broadcaster does.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event as CoreEvent, EventSource, ObjectReference};
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource};
use tokio::sync::Mutex;

/// How long a repeat joins an existing event's series (client-go: 6 minutes).
pub const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);

/// Who reports events.
#[derive(Debug, Clone)]
pub struct Reporter {
    /// The controller's name (`reportingController`), e.g. `rk.io/replicaset`.
    pub controller: String,
    /// This instance (`reportingInstance`), e.g. the pod name.
    pub instance: Option<String>,
}

/// An event's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// Something expected happened.
    Normal,
    /// Something may need attention.
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "Normal",
            Self::Warning => "Warning",
        }
    }
}

/// What to record.
#[derive(Debug, Clone)]
pub struct EventInput {
    /// Normal or Warning.
    pub type_: EventType,
    /// Why, in CamelCase (`FailedCreate`).
    pub reason: String,
    /// What was done (`Create`).
    pub action: String,
    /// A human-readable description.
    pub note: Option<String>,
}

/// Why publishing an event failed.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// The API server refused or could not be reached.
    #[error("publishing event failed: {0}")]
    Api(#[from] kube::Error),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SeriesKey {
    regarding: (
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    ),
    type_: EventType,
    reason: String,
    action: String,
    note: Option<String>,
}

#[derive(Debug, Clone)]
struct SeriesEntry {
    namespace: String,
    name: String,
    count: i32,
    last: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServedApi {
    EventsV1,
    CoreV1,
}

#[derive(Debug)]
struct State {
    api: ServedApi,
    series: HashMap<SeriesKey, SeriesEntry>,
}

/// Records events for one reporter. Share it behind an `Arc`.
pub struct Recorder {
    client: Client,
    reporter: Reporter,
    state: Mutex<State>,
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

impl Recorder {
    /// A recorder publishing with `client` as `reporter`.
    pub fn new(client: Client, reporter: Reporter) -> Self {
        Self {
            client,
            reporter,
            state: Mutex::new(State {
                api: ServedApi::EventsV1,
                series: HashMap::new(),
            }),
        }
    }

    /// Record `input` about `obj`.
    pub async fn publish_for<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        input: &EventInput,
    ) -> Result<(), EventError> {
        self.publish(&obj.object_ref(&()), input).await
    }

    /// Record `input` about the object `regarding` refers to.
    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        input: &EventInput,
    ) -> Result<(), EventError> {
        let key = SeriesKey {
            regarding: (
                regarding.namespace.clone(),
                regarding.name.clone(),
                regarding.uid.clone(),
                regarding.kind.clone(),
            ),
            type_: input.type_,
            reason: input.reason.clone(),
            action: input.action.clone(),
            note: input.note.clone(),
        };
        let mut state = self.state.lock().await;
        state.series.retain(|_, e| e.last.elapsed() < SERIES_WINDOW);
        if let Some(entry) = state.series.get(&key).cloned() {
            let count = entry.count + 1;
            match self.bump(state.api, &entry, count).await {
                Ok(()) => {
                    state.series.insert(
                        key,
                        SeriesEntry {
                            count,
                            last: Instant::now(),
                            ..entry
                        },
                    );
                    return Ok(());
                }
                // The event expired on the server: start a new one.
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let namespace = regarding
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".to_owned());
        let name = format!(
            "{}.{:x}",
            regarding.name.as_deref().unwrap_or("event"),
            Timestamp::now().as_nanosecond()
        );
        if state.api == ServedApi::EventsV1 {
            match self.create_v1(&namespace, &name, regarding, input).await {
                Ok(()) => {}
                Err(e) if is_not_found(&e) => {
                    tracing::info!("events.k8s.io/v1 not served; falling back to core/v1 events");
                    state.api = ServedApi::CoreV1;
                }
                Err(e) => return Err(e.into()),
            }
        }
        if state.api == ServedApi::CoreV1 {
            self.create_core(&namespace, &name, regarding, input)
                .await?;
        }
        state.series.insert(
            key,
            SeriesEntry {
                namespace,
                name,
                count: 1,
                last: Instant::now(),
            },
        );
        Ok(())
    }

    async fn create_v1(
        &self,
        namespace: &str,
        name: &str,
        regarding: &ObjectReference,
        input: &EventInput,
    ) -> Result<(), kube::Error> {
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some(namespace.to_owned()),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(Timestamp::now())),
            action: Some(input.action.clone()),
            reason: Some(input.reason.clone()),
            note: input.note.clone(),
            type_: Some(input.type_.as_str().to_owned()),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(self.reporter.controller.clone()),
            reporting_instance: Some(
                self.reporter
                    .instance
                    .clone()
                    .unwrap_or_else(|| self.reporter.controller.clone()),
            ),
            ..Event::default()
        };
        Api::<Event>::namespaced(self.client.clone(), namespace)
            .create(&PostParams::default(), &event)
            .await
            .map(|_| ())
    }

    async fn create_core(
        &self,
        namespace: &str,
        name: &str,
        regarding: &ObjectReference,
        input: &EventInput,
    ) -> Result<(), kube::Error> {
        let now = Timestamp::now();
        let event = CoreEvent {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some(namespace.to_owned()),
                ..ObjectMeta::default()
            },
            involved_object: regarding.clone(),
            reason: Some(input.reason.clone()),
            message: input.note.clone(),
            type_: Some(input.type_.as_str().to_owned()),
            action: Some(input.action.clone()),
            count: Some(1),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            source: Some(EventSource {
                component: Some(self.reporter.controller.clone()),
                host: None,
            }),
            reporting_component: Some(self.reporter.controller.clone()),
            reporting_instance: self.reporter.instance.clone(),
            ..CoreEvent::default()
        };
        Api::<CoreEvent>::namespaced(self.client.clone(), namespace)
            .create(&PostParams::default(), &event)
            .await
            .map(|_| ())
    }

    async fn bump(
        &self,
        api: ServedApi,
        entry: &SeriesEntry,
        count: i32,
    ) -> Result<(), kube::Error> {
        let params = PatchParams::default();
        match api {
            ServedApi::EventsV1 => {
                let series = EventSeries {
                    count,
                    last_observed_time: MicroTime(Timestamp::now()),
                };
                let patch = serde_json::json!({ "series": series });
                Api::<Event>::namespaced(self.client.clone(), &entry.namespace)
                    .patch(&entry.name, &params, &Patch::Merge(&patch))
                    .await
                    .map(|_| ())
            }
            ServedApi::CoreV1 => {
                let patch = serde_json::json!({
                    "count": count,
                    "lastTimestamp": Time(Timestamp::now()),
                });
                Api::<CoreEvent>::namespaced(self.client.clone(), &entry.namespace)
                    .patch(&entry.name, &params, &Patch::Merge(&patch))
                    .await
                    .map(|_| ())
            }
        }
    }
}
