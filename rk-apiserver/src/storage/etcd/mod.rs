//! The `etcd` backend: the trait mapped onto a real etcd v3 cluster, for
//! several API servers sharing one store.
//!
//! Keys are stored exactly as given (kube-apiserver's layout,
//! `/registry/<resource>/<namespace>/<name>`), behind an optional extra prefix
//! ([`EtcdOptions::prefix`], like kube-apiserver's `--etcd-prefix`). Revisions are
//! etcd's own. Writes are transactions comparing `mod_revision`; lists are range
//! reads at a revision with a limit; watches ask for previous values; a read or
//! watch below etcd's compaction revision fails with
//! [`StorageError::Compacted`].
//!
//! ```no_run
//! use bytes::Bytes;
//! use rk_apiserver::storage::Storage;
//! use rk_apiserver::storage::etcd::EtcdStorage;
//!
//! # async fn demo() -> Result<(), rk_apiserver::storage::StorageError> {
//! let store = EtcdStorage::connect(&["http://127.0.0.1:2379"]).await?;
//! let rev = store.create("/registry/namespaces/default", Bytes::from_static(b"{}")).await?;
//! store.delete("/registry/namespaces/default", Some(rev)).await?;
//! # Ok(()) }
//! ```

mod local;

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use etcd_client::{
    Client, CompactionOptions, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType,
    GetOptions, KvClient, Txn, TxnOp, TxnOpResponse, WatchOptions,
};
use futures::StreamExt;

pub use self::local::{LocalEtcd, LocalEtcdError};
use super::keys::{prefix_end, validate_key, validate_prefix};
use super::{
    Event, EventKind, KeyValue, ListOptions, ListResult, Revision, Storage, StorageError,
    WatchStream,
};

/// Settings of an [`EtcdStorage`].
#[derive(Clone, Debug)]
pub struct EtcdOptions {
    /// Prepended to every key in etcd (and stripped on the way out); empty by
    /// default, so keys are stored exactly as given.
    pub prefix: String,
    /// How long to wait for a connection.
    pub connect_timeout: Duration,
    /// The largest gRPC message accepted from etcd (lists of big objects).
    pub max_message_len: usize,
}

impl Default for EtcdOptions {
    fn default() -> Self {
        Self {
            prefix: String::new(),
            connect_timeout: Duration::from_secs(10),
            max_message_len: 256 * 1024 * 1024,
        }
    }
}

/// A revisioned store backed by etcd v3. See the [module docs](self).
#[derive(Clone)]
pub struct EtcdStorage {
    client: Client,
    options: EtcdOptions,
}

const COMPACTED: &str = "required revision has been compacted";
const FUTURE: &str = "required revision is a future revision";
const TOO_LARGE: &str = "request is too large";

/// Maps an etcd client error to a storage error.
fn backend(error: etcd_client::Error) -> StorageError {
    StorageError::Backend(format!("etcd: {error}"))
}

impl EtcdStorage {
    /// Connects to the etcd cluster at `endpoints` (`http://host:port`) with
    /// default options.
    pub async fn connect<E: AsRef<str>, S: AsRef<[E]>>(endpoints: S) -> Result<Self, StorageError> {
        Self::connect_with(endpoints, EtcdOptions::default()).await
    }

    /// Connects to the etcd cluster at `endpoints` with `options`.
    pub async fn connect_with<E: AsRef<str>, S: AsRef<[E]>>(
        endpoints: S,
        options: EtcdOptions,
    ) -> Result<Self, StorageError> {
        let connect = ConnectOptions::new()
            .with_connect_timeout(options.connect_timeout)
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(10));
        let client = Client::connect(endpoints, Some(connect))
            .await
            .map_err(backend)?;
        let store = Self { client, options };
        // Fail now, not at the first request, if nobody answers.
        store.current_revision().await?;
        Ok(store)
    }

    fn kv(&self) -> KvClient {
        self.client
            .kv_client()
            .max_decoding_message_size(self.options.max_message_len)
    }

    fn full_key(&self, key: &str) -> String {
        format!("{}{key}", self.options.prefix)
    }

    fn to_kv(&self, kv: &etcd_client::KeyValue) -> Result<KeyValue, StorageError> {
        let key = kv.key_str().map_err(backend)?;
        let key = key
            .strip_prefix(self.options.prefix.as_str())
            .unwrap_or(key);
        Ok(KeyValue {
            key: key.to_owned(),
            value: Bytes::copy_from_slice(kv.value()),
            create_revision: kv.create_revision(),
            mod_revision: kv.mod_revision(),
        })
    }

    /// Maps an error of a read at `requested`.
    async fn read_error(&self, error: etcd_client::Error, requested: Revision) -> StorageError {
        let message = error.to_string();
        if message.contains(COMPACTED) {
            let compacted = self.compaction_revision(requested).await;
            return StorageError::Compacted {
                requested,
                compacted,
            };
        }
        if message.contains(FUTURE) {
            let current = self.current_revision().await.unwrap_or(0);
            return StorageError::FutureRevision { requested, current };
        }
        backend(error)
    }

    /// etcd's compaction revision, learned by watching from a revision known to
    /// be compacted (etcd answers with the compaction revision). Returns
    /// `requested + 1` if etcd does not say.
    async fn compaction_revision(&self, requested: Revision) -> Revision {
        let probe = async {
            let options = WatchOptions::new().with_start_revision(requested.max(1));
            let key = self.full_key("/\u{0}compaction-probe");
            let mut stream = self
                .client
                .watch_client()
                .watch(key, Some(options))
                .await
                .ok()?;
            while let Ok(Some(response)) = stream.message().await {
                if response.compact_revision() > 0 {
                    return Some(response.compact_revision());
                }
                if response.canceled() {
                    break;
                }
            }
            None
        };
        match tokio::time::timeout(Duration::from_secs(5), probe).await {
            Ok(Some(revision)) => revision,
            _ => requested + 1,
        }
    }

    /// Runs a compare-and-swap transaction: `ops` if every compare holds,
    /// otherwise a read of `key`. Returns the response or the current key-value.
    async fn guarded(
        &self,
        key: &str,
        size: usize,
        compares: Vec<Compare>,
        ops: Vec<TxnOp>,
    ) -> Result<Result<etcd_client::TxnResponse, Option<KeyValue>>, StorageError> {
        let full = self.full_key(key);
        let txn = Txn::new()
            .when(compares)
            .and_then(ops)
            .or_else(vec![TxnOp::get(full, None)]);
        let response = self.kv().txn(txn).await.map_err(|error| {
            if error.to_string().contains(TOO_LARGE) {
                // etcd does not say its limit (`--max-request-bytes`).
                StorageError::ValueTooLarge {
                    key: key.to_owned(),
                    size,
                    limit: 0,
                }
            } else {
                backend(error)
            }
        })?;
        if response.succeeded() {
            return Ok(Ok(response));
        }
        for op in response.op_responses() {
            if let TxnOpResponse::Get(get) = op {
                return get
                    .kvs()
                    .first()
                    .map(|kv| self.to_kv(kv))
                    .transpose()
                    .map(Err);
            }
        }
        Ok(Err(None))
    }
}

fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> Result<Revision, StorageError> {
    header
        .map(etcd_client::ResponseHeader::revision)
        .ok_or_else(|| StorageError::Backend("etcd: response without a header".to_owned()))
}

/// The error for a failed compare: the key is gone or at another revision.
fn cas_failure(key: &str, expected: Revision, current: Option<KeyValue>) -> StorageError {
    match current {
        None => StorageError::NotFound {
            key: key.to_owned(),
        },
        Some(current) => StorageError::Conflict {
            key: key.to_owned(),
            expected,
            actual: current.mod_revision,
        },
    }
}

#[async_trait::async_trait]
impl Storage for EtcdStorage {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StorageError> {
        validate_key(key)?;
        let response = self
            .kv()
            .get(self.full_key(key), None)
            .await
            .map_err(backend)?;
        response.kvs().first().map(|kv| self.to_kv(kv)).transpose()
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult, StorageError> {
        validate_prefix(prefix)?;
        let full_prefix = self.full_key(prefix);
        let start = match &opts.start_after {
            Some(after) if after.as_str() >= prefix => format!("{}\0", self.full_key(after)),
            _ => full_prefix.clone(),
        };
        let end = prefix_end(&full_prefix)
            .ok_or_else(|| StorageError::Backend("etcd: prefix has no range end".to_owned()))?;
        let requested = opts.revision.unwrap_or(0);
        let mut options = GetOptions::new().with_range(end).with_revision(requested);
        if let Some(limit) = opts.limit.filter(|&limit| limit > 0) {
            options = options.with_limit(i64::try_from(limit).unwrap_or(i64::MAX));
        }
        let response = match self.kv().get(start, Some(options)).await {
            Ok(response) => response,
            Err(error) => return Err(self.read_error(error, requested).await),
        };
        let revision = if requested > 0 {
            requested
        } else {
            header_revision(response.header())?
        };
        let kvs = response
            .kvs()
            .iter()
            .map(|kv| self.to_kv(kv))
            .collect::<Result<_, _>>()?;
        Ok(ListResult {
            kvs,
            revision,
            more: response.more(),
        })
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<Revision, StorageError> {
        validate_key(key)?;
        let full = self.full_key(key);
        let compares = vec![Compare::create_revision(full.clone(), CompareOp::Equal, 0)];
        let ops = vec![TxnOp::put(full, value.to_vec(), None)];
        match self.guarded(key, value.len(), compares, ops).await? {
            Ok(response) => header_revision(response.header()),
            // The compare failed, so the key existed when etcd checked.
            Err(_) => Err(StorageError::KeyExists {
                key: key.to_owned(),
            }),
        }
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Revision,
    ) -> Result<Revision, StorageError> {
        validate_key(key)?;
        let full = self.full_key(key);
        let compares = vec![
            Compare::version(full.clone(), CompareOp::Greater, 0),
            Compare::mod_revision(full.clone(), CompareOp::Equal, expected),
        ];
        let ops = vec![TxnOp::put(full, value.to_vec(), None)];
        match self.guarded(key, value.len(), compares, ops).await? {
            Ok(response) => header_revision(response.header()),
            Err(current) => Err(cas_failure(key, expected, current)),
        }
    }

    async fn delete(
        &self,
        key: &str,
        expected: Option<Revision>,
    ) -> Result<(KeyValue, Revision), StorageError> {
        validate_key(key)?;
        let full = self.full_key(key);
        let mut compares = vec![Compare::version(full.clone(), CompareOp::Greater, 0)];
        if let Some(expected) = expected {
            compares.push(Compare::mod_revision(
                full.clone(),
                CompareOp::Equal,
                expected,
            ));
        }
        let ops = vec![TxnOp::delete(
            full,
            Some(DeleteOptions::new().with_prev_key()),
        )];
        let response = match self.guarded(key, 0, compares, ops).await? {
            Ok(response) => response,
            Err(current) => {
                return Err(match expected {
                    Some(expected) => cas_failure(key, expected, current),
                    None => StorageError::NotFound {
                        key: key.to_owned(),
                    },
                });
            }
        };
        let revision = header_revision(response.header())?;
        for op in response.op_responses() {
            if let TxnOpResponse::Delete(deleted) = op
                && let Some(prev) = deleted.prev_kvs().first()
            {
                return Ok((self.to_kv(prev)?, revision));
            }
        }
        Err(StorageError::Backend(
            "etcd: delete returned no previous value".to_owned(),
        ))
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StorageError> {
        validate_prefix(prefix)?;
        let full_prefix = self.full_key(prefix);
        let end = prefix_end(&full_prefix)
            .ok_or_else(|| StorageError::Backend("etcd: prefix has no range end".to_owned()))?;
        let mut options = WatchOptions::new().with_range(end.clone()).with_prev_key();
        if after > 0 {
            let current = self.current_revision().await?;
            if after > current {
                return Err(StorageError::FutureRevision {
                    requested: after,
                    current,
                });
            }
            if after < current {
                // A read at `after + 1` fails exactly when the watch would.
                let probe = GetOptions::new()
                    .with_range(end)
                    .with_revision(after + 1)
                    .with_count_only();
                if let Err(error) = self.kv().get(full_prefix.clone(), Some(probe)).await {
                    return Err(self.read_error(error, after + 1).await);
                }
            }
            options = options.with_start_revision(after + 1);
        }
        let stream = self
            .client
            .watch_client()
            .max_decoding_message_size(self.options.max_message_len)
            .watch(full_prefix, Some(options))
            .await
            .map_err(backend)?;
        let state = WatchState {
            store: self.clone(),
            stream,
            pending: VecDeque::new(),
            next: after + 1,
            done: false,
        };
        Ok(Box::pin(futures::stream::unfold(
            state,
            WatchState::next_item,
        )))
    }

    async fn current_revision(&self) -> Result<Revision, StorageError> {
        let options = GetOptions::new().with_count_only();
        let response = self
            .kv()
            .get(self.full_key("/"), Some(options))
            .await
            .map_err(backend)?;
        header_revision(response.header())
    }

    async fn compact(&self, revision: Revision) -> Result<(), StorageError> {
        let options = CompactionOptions::new().with_physical();
        match self.kv().compact(revision, Some(options)).await {
            Ok(_) => Ok(()),
            // Compacting to a revision at or below the current compaction is a no-op.
            Err(error) if error.to_string().contains(COMPACTED) => Ok(()),
            Err(error) => Err(self.read_error(error, revision).await),
        }
    }
}

/// The state of one watch stream.
struct WatchState {
    store: EtcdStorage,
    stream: etcd_client::WatchStream,
    pending: VecDeque<Event>,
    /// The revision the next event may have (for the `Compacted` error).
    next: Revision,
    done: bool,
}

impl WatchState {
    async fn next_item(mut self) -> Option<(Result<Event, StorageError>, Self)> {
        loop {
            if self.done {
                return None;
            }
            if let Some(event) = self.pending.pop_front() {
                self.next = event.revision() + 1;
                return Some((Ok(event), self));
            }
            let response = match self.stream.next().await {
                Some(Ok(response)) => response,
                Some(Err(error)) => {
                    self.done = true;
                    return Some((Err(backend(error)), self));
                }
                None => {
                    self.done = true;
                    return Some((Err(StorageError::Closed), self));
                }
            };
            if response.compact_revision() > 0 {
                self.done = true;
                let error = StorageError::Compacted {
                    requested: self.next,
                    compacted: response.compact_revision(),
                };
                return Some((Err(error), self));
            }
            if response.canceled() {
                self.done = true;
                let reason = format!("etcd canceled the watch: {}", response.cancel_reason());
                return Some((Err(StorageError::Backend(reason)), self));
            }
            for event in response.events() {
                match self.store.convert_event(event) {
                    Ok(event) => self.pending.push_back(event),
                    Err(error) => {
                        self.done = true;
                        return Some((Err(error), self));
                    }
                }
            }
        }
    }
}

impl EtcdStorage {
    fn convert_event(&self, event: &etcd_client::Event) -> Result<Event, StorageError> {
        let kv = event
            .kv()
            .ok_or_else(|| StorageError::Backend("etcd: watch event without a key".to_owned()))?;
        let kv = self.to_kv(kv)?;
        let prev = event.prev_kv().map(|prev| self.to_kv(prev)).transpose()?;
        Ok(match event.event_type() {
            EventType::Put => Event {
                kind: EventKind::Put,
                kv,
                prev,
            },
            EventType::Delete => {
                let (value, create_revision) = prev
                    .as_ref()
                    .map(|p| (p.value.clone(), p.create_revision))
                    .unwrap_or_default();
                let kv = KeyValue {
                    value,
                    create_revision,
                    ..kv
                };
                Event {
                    kind: EventKind::Delete,
                    kv,
                    prev,
                }
            }
        })
    }
}
