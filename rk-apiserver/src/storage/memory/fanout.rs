//! In-process watch fan-out, shared by the `memory` and `sqlite` backends.
//!
//! A writer publishes each committed group of events once, as one shared
//! [`Batch`]; every watcher whose prefix matches gets the same `Arc` through its
//! own bounded channel, so fan-out costs one channel send per watcher per commit,
//! not per event. A watcher whose channel is full is dropped on the spot: its
//! stream delivers what is already buffered, then ends with
//! [`StorageError::WatcherTooSlow`]. When the store goes away the streams end with
//! [`StorageError::Closed`].
//!
//! The caller serialises `register` with `publish` (both take `&mut self`, so the
//! owner's lock does it), which is what makes "replay, then live" gapless: events
//! committed before registration come from the replay, events after it from the
//! channel, and the stream drops anything at or below the last revision it
//! yielded.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use futures::Stream;
use tokio::sync::mpsc;

use crate::storage::{Event, Revision, StorageError, WatchStream};

/// Events of one commit (or several), in revision order.
pub(crate) type Batch = Arc<Vec<Event>>;

/// The registered watchers of one store.
pub(crate) struct Watchers {
    slots: Vec<Slot>,
    capacity: usize,
}

struct Slot {
    prefix: String,
    tx: mpsc::Sender<Batch>,
    overflowed: Arc<AtomicBool>,
}

/// A registered watcher that has not been turned into a stream yet.
pub(crate) struct Subscription {
    rx: mpsc::Receiver<Batch>,
    overflowed: Arc<AtomicBool>,
}

impl Watchers {
    /// Watchers with per-watcher channels holding up to `capacity` batches.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            slots: Vec::new(),
            capacity: capacity.max(1),
        }
    }

    /// Registers a watcher on `prefix`; it receives every batch published from now on.
    pub(crate) fn register(&mut self, prefix: &str) -> Subscription {
        self.slots.retain(|slot| !slot.tx.is_closed());
        let (tx, rx) = mpsc::channel(self.capacity);
        let overflowed = Arc::new(AtomicBool::new(false));
        self.slots.push(Slot {
            prefix: prefix.to_owned(),
            tx,
            overflowed: overflowed.clone(),
        });
        Subscription { rx, overflowed }
    }

    /// Hands `batch` to every watcher with a matching event; drops watchers that
    /// are gone or whose channel is full.
    pub(crate) fn publish(&mut self, batch: &Batch) {
        self.slots.retain(|slot| {
            if !batch
                .iter()
                .any(|event| event.kv.key.starts_with(&slot.prefix))
            {
                return !slot.tx.is_closed();
            }
            match slot.tx.try_send(batch.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::warn!(prefix = %slot.prefix, "watcher fell behind; dropping it");
                    slot.overflowed.store(true, Ordering::Release);
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
    }

    /// The number of registered watchers (including ones not yet noticed gone).
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }
}

impl Subscription {
    /// The stream of events under `prefix`: `replay` first (events already
    /// committed, in revision order), then live batches, skipping anything at or
    /// below `after` or below the last revision yielded.
    pub(crate) fn into_stream(
        self,
        prefix: &str,
        after: Revision,
        replay: Vec<Event>,
    ) -> WatchStream {
        Box::pin(FanoutStream {
            prefix: prefix.to_owned(),
            last: after,
            replay: replay.into(),
            batch: None,
            rx: self.rx,
            overflowed: self.overflowed,
            done: false,
        })
    }
}

struct FanoutStream {
    prefix: String,
    last: Revision,
    replay: VecDeque<Event>,
    batch: Option<(Batch, usize)>,
    rx: mpsc::Receiver<Batch>,
    overflowed: Arc<AtomicBool>,
    done: bool,
}

impl Stream for FanoutStream {
    type Item = Result<Event, StorageError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        while let Some(event) = this.replay.pop_front() {
            if event.revision() > this.last {
                this.last = event.revision();
                return Poll::Ready(Some(Ok(event)));
            }
        }
        loop {
            if let Some((batch, next)) = &mut this.batch {
                while let Some(event) = batch.get(*next) {
                    *next += 1;
                    if event.revision() > this.last && event.kv.key.starts_with(&this.prefix) {
                        this.last = event.revision();
                        return Poll::Ready(Some(Ok(event.clone())));
                    }
                }
                this.batch = None;
            }
            match this.rx.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(batch)) => this.batch = Some((batch, 0)),
                Poll::Ready(None) => {
                    this.done = true;
                    let error = if this.overflowed.load(Ordering::Acquire) {
                        StorageError::WatcherTooSlow {
                            revision: this.last,
                        }
                    } else {
                        StorageError::Closed
                    };
                    return Poll::Ready(Some(Err(error)));
                }
            }
        }
    }
}
