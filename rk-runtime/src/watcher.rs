//! [`Watcher`]: a list-then-watch loop that never gives up.
//!
//! It lists in pages, then watches from the list's resourceVersion, resuming
//! every watch from the last resourceVersion it saw (objects and bookmarks).
//! When the server answers 410 Gone (the version is too old) it lists again;
//! on any other error it backs off with jitter and retries. Consumers see a
//! relist as [`Event::Init`], one [`Event::InitApply`] per object and
//! [`Event::InitDone`], so a cache can replace its contents without holding
//! two copies.
//!
//! With [`InitialList::Streaming`] the initial state comes as a watch with
//! `sendInitialEvents=true` (a streaming list) instead of list pages; if the
//! server refuses it, the watcher falls back to paged lists for good.
//!
//! For metadata only, watch `kube::core::PartialObjectMeta<K>` (its `Api`
//! asks the server for `PartialObjectMetadata`).

use std::collections::VecDeque;
use std::fmt::Debug;

use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use kube::api::{ListParams, WatchEvent, WatchParams};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;

use crate::backoff::Backoff;

/// What an object must be for rk-runtime to list, watch and cache it.
pub trait ApiObject: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static {}
impl<K> ApiObject for K where K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static {}

/// How a [`Watcher`] lists and watches.
#[derive(Debug, Clone)]
pub struct WatcherConfig {
    /// Only objects whose labels match (`labelSelector`).
    pub label_selector: Option<String>,
    /// Only objects whose fields match (`fieldSelector`).
    pub field_selector: Option<String>,
    /// Objects per list page (`limit`); 0 lists in one page.
    pub page_size: u32,
    /// How long the server keeps each watch open (`timeoutSeconds`).
    pub watch_timeout_secs: u32,
    /// Ask for bookmarks, so resuming after a quiet period is cheap.
    pub bookmarks: bool,
    /// Delays between retries after errors.
    pub backoff: Backoff,
    /// How the initial state (and every relist) is fetched.
    pub initial_list: InitialList,
}

/// How a [`Watcher`] fetches the full state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InitialList {
    /// `list` calls of `page_size` objects, then a watch.
    #[default]
    Paged,
    /// One watch with `sendInitialEvents=true`: the objects arrive as adds,
    /// then a bookmark marks the end, and the same watch goes on.
    Streaming,
}

impl Default for WatcherConfig {
    fn default() -> Self {
        Self {
            label_selector: None,
            field_selector: None,
            page_size: 500,
            watch_timeout_secs: 290,
            bookmarks: true,
            backoff: Backoff::default(),
            initial_list: InitialList::Paged,
        }
    }
}

impl WatcherConfig {
    /// Watch only objects matching the label selector `selector`.
    pub fn labels(mut self, selector: impl Into<String>) -> Self {
        self.label_selector = Some(selector.into());
        self
    }

    /// Watch only objects matching the field selector `selector`.
    pub fn fields(mut self, selector: impl Into<String>) -> Self {
        self.field_selector = Some(selector.into());
        self
    }
}

/// What a [`Watcher`] reports.
#[derive(Debug)]
pub enum Event<K> {
    /// A (re)list starts: what follows replaces what was known.
    Init,
    /// An object seen by the list in progress.
    InitApply(K),
    /// The list is complete; objects not seen since `Init` are gone.
    InitDone,
    /// An object was added or modified.
    Apply(K),
    /// An object was deleted (its last state).
    Delete(K),
}

enum State<K> {
    /// Nothing known: list next.
    Empty,
    /// Listing, with the page being handed out.
    Listing {
        continue_token: Option<String>,
        page: VecDeque<K>,
        /// Set once the last page is fetched.
        resource_version: Option<String>,
    },
    /// Streaming the initial state; `stream` is `None` until the watch opens.
    Streaming {
        stream: Option<BoxStream<'static, kube::Result<WatchEvent<K>>>>,
    },
    /// Listed; open a watch from `resource_version`.
    Resume { resource_version: String },
    /// Watching.
    Watching {
        resource_version: String,
        stream: BoxStream<'static, kube::Result<WatchEvent<K>>>,
    },
}

/// Lists then watches one kind through a [`kube::Api`], forever.
pub struct Watcher<K: ApiObject> {
    api: Api<K>,
    config: WatcherConfig,
    state: State<K>,
    backoff: Backoff,
    /// Set when the server refused a streaming list.
    streaming_refused: bool,
    /// When the current backoff ends; kept across cancelled `next` calls.
    retry_at: Option<tokio::time::Instant>,
}

/// The annotation on the bookmark that ends a streaming list's initial events.
const INITIAL_EVENTS_END: &str = "k8s.io/initial-events-end";

/// Status codes meaning "this server does not do streaming lists".
fn refuses_streaming(code: u16) -> bool {
    matches!(code, 400 | 403 | 405 | 415 | 422 | 501)
}

fn is_gone(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(status) if status.code == 410)
}

impl<K: ApiObject> Watcher<K> {
    /// A watcher over `api` (which fixes the namespace, or all namespaces).
    pub fn new(api: Api<K>, config: WatcherConfig) -> Self {
        let backoff = config.backoff.clone();
        Self {
            api,
            config,
            state: State::Empty,
            backoff,
            streaming_refused: false,
            retry_at: None,
        }
    }

    /// The resourceVersion the watcher would resume from, once listed.
    pub fn resource_version(&self) -> Option<&str> {
        match &self.state {
            State::Resume { resource_version }
            | State::Watching {
                resource_version, ..
            } => Some(resource_version),
            _ => None,
        }
    }

    /// Whether the server refused a streaming list, so this watcher now
    /// lists in pages.
    pub fn streaming_refused(&self) -> bool {
        self.streaming_refused
    }

    async fn back_off(&mut self) {
        let delay = self.backoff.next_delay();
        self.retry_at = Some(tokio::time::Instant::now() + delay);
        self.wait_for_retry().await;
    }

    /// Finish a backoff, even one a cancelled `next` call started.
    async fn wait_for_retry(&mut self) {
        if let Some(at) = self.retry_at {
            tokio::time::sleep_until(at).await;
            self.retry_at = None;
        }
    }

    fn list_params(&self, continue_token: Option<String>) -> ListParams {
        ListParams {
            label_selector: self.config.label_selector.clone(),
            field_selector: self.config.field_selector.clone(),
            limit: (self.config.page_size > 0).then_some(self.config.page_size),
            continue_token,
            ..ListParams::default()
        }
    }

    fn watch_params(&self) -> WatchParams {
        WatchParams {
            label_selector: self.config.label_selector.clone(),
            field_selector: self.config.field_selector.clone(),
            timeout: Some(self.config.watch_timeout_secs.clamp(1, 295)),
            bookmarks: self.config.bookmarks,
            ..WatchParams::default()
        }
    }

    /// The next event. Errors are logged and retried with backoff, so this
    /// only returns events.
    ///
    /// Cancel-safe: dropping the future loses no event, and a backoff that
    /// was under way is finished by the next call.
    pub async fn next(&mut self) -> Event<K> {
        loop {
            self.wait_for_retry().await;
            match &mut self.state {
                State::Empty => {
                    self.state = if self.config.initial_list == InitialList::Streaming
                        && !self.streaming_refused
                    {
                        State::Streaming { stream: None }
                    } else {
                        State::Listing {
                            continue_token: None,
                            page: VecDeque::new(),
                            resource_version: None,
                        }
                    };
                    return Event::Init;
                }
                State::Streaming { stream: None } => {
                    let params = WatchParams {
                        send_initial_events: true,
                        bookmarks: true,
                        ..self.watch_params()
                    };
                    match self.api.watch(&params, "").await {
                        Ok(stream) => {
                            self.state = State::Streaming {
                                stream: Some(stream.boxed()),
                            };
                        }
                        Err(kube::Error::Api(status)) if refuses_streaming(status.code) => {
                            tracing::info!(
                                code = status.code,
                                "server refused a streaming list; using paged lists"
                            );
                            self.streaming_refused = true;
                            self.state = State::Empty;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "streaming list failed; backing off");
                            self.back_off().await;
                        }
                    }
                }
                State::Streaming {
                    stream: Some(stream),
                } => match stream.next().await {
                    Some(Ok(WatchEvent::Added(obj) | WatchEvent::Modified(obj))) => {
                        return Event::InitApply(obj);
                    }
                    Some(Ok(WatchEvent::Deleted(_))) => {}
                    Some(Ok(WatchEvent::Bookmark(bookmark))) => {
                        let end = bookmark
                            .metadata
                            .annotations
                            .get(INITIAL_EVENTS_END)
                            .is_some_and(|v| v == "true");
                        if end {
                            self.backoff.reset();
                            let rv = bookmark.metadata.resource_version;
                            if let State::Streaming { stream } = &mut self.state
                                && let Some(stream) = stream.take()
                            {
                                self.state = State::Watching {
                                    resource_version: rv,
                                    stream,
                                };
                            }
                            return Event::InitDone;
                        }
                    }
                    Some(Ok(WatchEvent::Error(status))) => {
                        if refuses_streaming(status.code) {
                            tracing::info!(code = status.code, message = %status.message, "server refused a streaming list; using paged lists");
                            self.streaming_refused = true;
                        } else {
                            tracing::warn!(code = status.code, message = %status.message, "streaming list failed; backing off");
                            self.back_off().await;
                        }
                        self.state = State::Empty;
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "streaming list failed; backing off");
                        self.state = State::Empty;
                        self.back_off().await;
                    }
                    None => {
                        tracing::warn!(
                            "streaming list ended before its end bookmark; listing again"
                        );
                        self.state = State::Empty;
                        self.back_off().await;
                    }
                },
                State::Listing {
                    continue_token,
                    page,
                    resource_version,
                } => {
                    if let Some(obj) = page.pop_front() {
                        return Event::InitApply(obj);
                    }
                    if let Some(rv) = resource_version.take() {
                        self.state = State::Resume {
                            resource_version: rv,
                        };
                        return Event::InitDone;
                    }
                    let token = continue_token.clone();
                    let params = self.list_params(token);
                    match self.api.list(&params).await {
                        Ok(list) => {
                            self.backoff.reset();
                            if let State::Listing {
                                continue_token,
                                page,
                                resource_version,
                            } = &mut self.state
                            {
                                *page = list.items.into();
                                match list.metadata.continue_.filter(|c| !c.is_empty()) {
                                    Some(c) => *continue_token = Some(c),
                                    None => {
                                        *continue_token = None;
                                        *resource_version = Some(
                                            list.metadata.resource_version.unwrap_or_default(),
                                        );
                                    }
                                }
                            }
                        }
                        Err(e) if is_gone(&e) => {
                            // The continue token expired: page again from the start.
                            tracing::info!(error = %e, "list continue token expired; listing again");
                            if let State::Listing { continue_token, .. } = &mut self.state {
                                *continue_token = None;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "list failed; backing off");
                            self.back_off().await;
                        }
                    }
                }
                State::Resume { resource_version } => {
                    let rv = resource_version.clone();
                    let params = self.watch_params();
                    match self.api.watch(&params, &rv).await {
                        Ok(stream) => {
                            self.state = State::Watching {
                                resource_version: rv,
                                stream: stream.boxed(),
                            };
                        }
                        Err(e) if is_gone(&e) => {
                            tracing::info!(resource_version = %rv, "watch answered 410 Gone; relisting");
                            self.state = State::Empty;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "watch failed; backing off");
                            self.back_off().await;
                        }
                    }
                }
                State::Watching {
                    resource_version,
                    stream,
                } => match stream.next().await {
                    Some(Ok(WatchEvent::Added(obj) | WatchEvent::Modified(obj))) => {
                        if let Some(rv) = obj.meta().resource_version.clone() {
                            *resource_version = rv;
                        }
                        self.backoff.reset();
                        return Event::Apply(obj);
                    }
                    Some(Ok(WatchEvent::Deleted(obj))) => {
                        if let Some(rv) = obj.meta().resource_version.clone() {
                            *resource_version = rv;
                        }
                        self.backoff.reset();
                        return Event::Delete(obj);
                    }
                    Some(Ok(WatchEvent::Bookmark(bookmark))) => {
                        *resource_version = bookmark.metadata.resource_version;
                    }
                    Some(Ok(WatchEvent::Error(status))) if status.code == 410 => {
                        tracing::info!(message = %status.message, "watch expired (410 Gone); relisting");
                        self.state = State::Empty;
                    }
                    Some(Ok(WatchEvent::Error(status))) => {
                        tracing::warn!(code = status.code, message = %status.message, "watch error; backing off");
                        let rv = std::mem::take(resource_version);
                        self.state = State::Resume {
                            resource_version: rv,
                        };
                        self.back_off().await;
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "watch stream failed; backing off");
                        let rv = std::mem::take(resource_version);
                        self.state = State::Resume {
                            resource_version: rv,
                        };
                        self.back_off().await;
                    }
                    None => {
                        // The server closed the watch (timeout): resume.
                        tracing::debug!(resource_version = %resource_version, "watch closed; resuming");
                        let rv = std::mem::take(resource_version);
                        self.state = State::Resume {
                            resource_version: rv,
                        };
                    }
                },
            }
        }
    }

    /// The watcher as an endless stream of events.
    pub fn into_stream(self) -> impl Stream<Item = Event<K>> + Send {
        futures::stream::unfold(self, |mut w| async move {
            let event = w.next().await;
            Some((event, w))
        })
    }
}
