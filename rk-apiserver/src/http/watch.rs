//! `WATCH`: a chunked stream of `{"type":...,"object":...}` lines served
//! from the watch cache, with resume from a resourceVersion, bookmarks,
//! `sendInitialEvents` streaming lists, timeouts and selector filtering.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderValue, Response, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use rk_core::catalogue::ResourceInfo;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream_shim::ReceiverStream;

use super::convert::{self, IncludeObject};
use super::list::Filter;
use super::response::{self, Body, Representation};
use crate::cache::{CachedEvent, EventType, WatchStartError};
use crate::error::ApiError;
use crate::request::Query;
use crate::state::ApiState;

/// How often bookmarks are sent to watchers that asked for them.
pub const BOOKMARK_INTERVAL: Duration = Duration::from_secs(10);

mod tokio_stream_shim {
    //! A stream over an mpsc receiver.
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// Adapts `tokio::sync::mpsc::Receiver` to `futures::Stream`.
    pub struct ReceiverStream<T>(pub tokio::sync::mpsc::Receiver<T>);

    impl<T> futures::Stream for ReceiverStream<T> {
        type Item = T;
        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
            self.0.poll_recv(cx)
        }
    }
}

struct Watcher {
    state: Arc<ApiState>,
    info: Arc<ResourceInfo>,
    key_prefix: String,
    filter: Filter,
    repr: Representation,
    include: IncludeObject,
}

impl Watcher {
    /// The frame for one event, as this watcher sees it (or nothing).
    async fn frame(&self, ev: &CachedEvent) -> Result<Option<Bytes>, ApiError> {
        if !ev.object.key.starts_with(&self.key_prefix) {
            return Ok(None);
        }
        let now = self.filter.matches(&ev.object);
        let before = ev.prev.as_ref().is_some_and(|p| self.filter.matches(p));
        let kind = match ev.kind {
            EventType::Added if now => EventType::Added,
            EventType::Deleted if now => EventType::Deleted,
            EventType::Modified if now && before => EventType::Modified,
            EventType::Modified if now => EventType::Added,
            EventType::Modified if before => EventType::Deleted,
            _ => return Ok(None),
        };
        self.encode(kind.as_str(), &ev.object.bytes).await.map(Some)
    }

    async fn encode(&self, kind: &str, bytes: &Bytes) -> Result<Bytes, ApiError> {
        let converts = self.state.converts(&self.info);
        Ok(match self.repr {
            Representation::Object if !converts => response::watch_frame(kind, bytes),
            _ => {
                let obj: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
                let obj = if converts {
                    crate::registry::conversion::one_to_version(&self.state, &self.info, obj)
                        .await?
                } else {
                    obj
                };
                let out = convert::single(&self.state, &self.info, obj, self.repr, self.include);
                response::watch_frame(kind, &serde_json::to_vec(&out).unwrap_or_default())
            }
        })
    }

    /// The frame to send for `ev`; `None` ends the watch (the client went
    /// away, or the event could not be converted: then an ERROR event is
    /// sent first, as kube-apiserver does).
    async fn send(&self, ev: &CachedEvent, tx: &mpsc::Sender<Bytes>) -> bool {
        match self.frame(ev).await {
            Ok(Some(f)) => tx.send(f).await.is_ok(),
            Ok(None) => true,
            Err(e) => {
                let _ = tx.send(error_frame(&e)).await;
                false
            }
        }
    }

    fn bookmark(&self, rev: i64, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": rev.to_string(), "creationTimestamp": null});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let obj = json!({"kind": self.info.kind, "apiVersion": self.info.api_version(), "metadata": meta});
        response::watch_frame(
            "BOOKMARK",
            &Bytes::from(serde_json::to_vec(&obj).unwrap_or_default()),
        )
    }
}

fn error_frame(err: &ApiError) -> Bytes {
    response::watch_frame(
        "ERROR",
        &Bytes::from(serde_json::to_vec(&err.to_status()).unwrap_or_default()),
    )
}

/// Serve a watch request.
pub async fn watch(
    state: Arc<ApiState>,
    info: Arc<ResourceInfo>,
    namespace: Option<&str>,
    name: Option<&str>,
    q: &Query,
    repr: Representation,
) -> Result<Response<Body>, ApiError> {
    let mut filter = Filter::from_query(&info, q)?;
    if let Some(n) = name {
        // `kubectl get -w NAME` watches one object through a field selector;
        // the legacy `/watch/.../NAME` path does the same.
        filter = Filter::from_query(
            &info,
            &Query::parse(Some(&format!("fieldSelector=metadata.name%3D{n}"))),
        )?;
    }
    let bookmarks = q.flag("allowWatchBookmarks");
    let send_initial = q.get("sendInitialEvents").map(|v| v == "true");
    let rv = match q.get("resourceVersion") {
        None => None,
        Some(r) => Some(
            r.parse::<i64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {r:?}")))?,
        ),
    };
    if send_initial == Some(true) && q.get("resourceVersionMatch") != Some("NotOlderThan") {
        return Err(ApiError::invalid(
            "ListOptions",
            "meta.k8s.io",
            "",
            vec![crate::error::StatusCause {
                reason: "FieldValueForbidden".into(),
                message: "Forbidden: sendInitialEvents is forbidden for watch unless resourceVersionMatch is set to NotOlderThan".into(),
                field: "sendInitialEvents".into(),
            }],
        ));
    }
    let timeout = match q.int("timeoutSeconds")? {
        Some(t) if t > 0 => Duration::from_secs(t as u64).min(state.limits.max_watch_timeout),
        // Upstream's timer for a negative timeout fires at once.
        Some(t) if t < 0 => Duration::ZERO,
        _ => state.limits.max_watch_timeout,
    };
    let cache = state.cache(&info).await?;
    // Where the watch starts.
    let initial_state = match (send_initial, rv) {
        (Some(true), _) => true,
        (Some(false), _) => false,
        (None, None) | (None, Some(0)) => true,
        (None, Some(_)) => false,
    };
    let after = if initial_state { None } else { rv };
    match rv.filter(|r| *r > 0) {
        Some(r) => {
            state.caches.wait_for(r, Duration::from_secs(3)).await;
        }
        None if rv.is_none() => {
            let _ = state.caches.sync_with_storage(Duration::from_secs(3)).await;
        }
        None => {}
    }
    let key_prefix = match namespace {
        Some(ns) if info.scope.is_namespaced() => format!("{}{ns}/", info.storage_prefix()),
        _ => info.storage_prefix(),
    };
    let watcher = Watcher {
        state: state.clone(),
        info: info.clone(),
        key_prefix,
        filter,
        repr,
        include: IncludeObject::parse(q.get("includeObject")),
    };
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let start_after = if initial_state {
        None
    } else {
        Some(after.filter(|r| *r > 0).unwrap_or_else(|| cache.revision()))
    };
    match cache.watch(start_after) {
        Err(WatchStartError::TooOld { requested, oldest }) => {
            let err = ApiError::gone(format!("too old resource version: {requested} ({oldest})"));
            let _ = tx.send(error_frame(&err)).await;
        }
        Ok(w) => {
            tracing::debug!(
                resource = %info.plural,
                after = ?start_after,
                replayed = w.initial.len(),
                revision = w.revision,
                "watch started"
            );
            let state2 = state.clone();
            tokio::spawn(async move {
                state2.metrics.watches.inc();
                run(
                    watcher,
                    cache,
                    w,
                    tx,
                    timeout,
                    bookmarks,
                    send_initial == Some(true),
                )
                .await;
                state2.metrics.watches.dec();
            });
        }
    }
    let stream = ReceiverStream(rx).map(|b| Ok::<_, std::convert::Infallible>(Frame::data(b)));
    let mut resp = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    Ok(resp)
}

async fn run(
    w: Watcher,
    cache: Arc<crate::cache::WatchCache>,
    start: crate::cache::CacheWatch,
    tx: mpsc::Sender<Bytes>,
    timeout: Duration,
    bookmarks: bool,
    initial_end: bool,
) {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last_rev = start.revision;
    for ev in &start.initial {
        if !w.send(ev, &tx).await {
            return;
        }
    }
    if initial_end && tx.send(w.bookmark(start.revision, true)).await.is_err() {
        return;
    }
    let mut live = start.live;
    let mut tick = tokio::time::interval(BOOKMARK_INTERVAL);
    tick.tick().await;
    // As upstream, one more bookmark shortly before the watch times out, so
    // the client resumes from a recent revision however short the watch.
    let mut last_call = Some(deadline - Duration::from_secs(2).min(timeout / 2));
    loop {
        tokio::select! {
            ev = live.recv() => {
                let Some(ev) = ev else {
                    // Dropped as too slow, or the resource went away: end the
                    // stream; the client resumes from its last revision.
                    return;
                };
                last_rev = ev.revision;
                if !w.send(&ev, &tx).await {
                    return;
                }
            }
            _ = tick.tick(), if bookmarks => {
                if let Some(rev) = cache.bookmark_revision(&live)
                    && rev > 0 && rev >= last_rev && tx.send(w.bookmark(rev, false)).await.is_err() {
                        return;
                    }
            }
            _ = tokio::time::sleep_until(last_call.unwrap_or(deadline)), if bookmarks && last_call.is_some() => {
                last_call = None;
                if let Some(rev) = cache.bookmark_revision(&live)
                    && rev > 0 && rev >= last_rev && tx.send(w.bookmark(rev, false)).await.is_err() {
                        return;
                    }
            }
            _ = tx.closed() => return,
            _ = tokio::time::sleep_until(deadline) => return,
        }
    }
}
