//! Starting and stopping an API server: storage, watch caches, the built-in
//! namespaces, the CRD controller and the HTTP listener.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use rk_core::catalogue::Catalogue;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::admission::service_ips::ServiceCidr;
use crate::cache::CacheSet;
use crate::metrics::Metrics;
use crate::state::{ApiState, Limits};
use crate::storage::{Storage, StorageError};

/// Which store the server keeps its state in.
#[derive(Clone, Debug)]
pub enum StorageConfig {
    /// In memory; gone on exit.
    Memory,
    /// An SQLite database file.
    Sqlite(PathBuf),
    /// An etcd cluster (requires the `etcd` feature).
    Etcd(Vec<String>),
}

impl std::str::FromStr for StorageConfig {
    type Err = String;

    /// `memory`, `sqlite:PATH` or `etcd:URL[,URL...]`.
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "memory" {
            return Ok(StorageConfig::Memory);
        }
        if let Some(p) = s.strip_prefix("sqlite:") {
            if p.is_empty() {
                return Err("sqlite: needs a path, e.g. sqlite:/var/lib/rk/state.db".into());
            }
            return Ok(StorageConfig::Sqlite(PathBuf::from(p)));
        }
        if let Some(urls) = s.strip_prefix("etcd:") {
            let urls: Vec<String> = urls
                .split(',')
                .filter(|u| !u.is_empty())
                .map(str::to_string)
                .collect();
            if urls.is_empty() {
                return Err(
                    "etcd: needs at least one endpoint, e.g. etcd:http://127.0.0.1:2379".into(),
                );
            }
            return Ok(StorageConfig::Etcd(urls));
        }
        Err(format!(
            "unknown storage {s:?}: use memory, sqlite:PATH or etcd:URL[,URL...]"
        ))
    }
}

/// Errors starting a server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The store could not be opened.
    #[error("opening storage: {0}")]
    Storage(#[from] StorageError),
    /// The listener could not be bound.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The storage kind is not compiled in.
    #[error("{0}")]
    Unsupported(String),
}

/// How to run a server.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Address to listen on (port 0 picks a free one).
    pub bind: SocketAddr,
    /// The store.
    pub storage: StorageConfig,
    /// Request limits.
    pub limits: Limits,
    /// The Service cluster IP range (`127.200.0.0/16` by default).
    pub service_cidr: ServiceCidr,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 6443)),
            storage: StorageConfig::Memory,
            limits: Limits::default(),
            service_cidr: ServiceCidr::default(),
        }
    }
}

/// Open the configured store.
pub async fn open_storage(cfg: &StorageConfig) -> Result<Arc<dyn Storage>, ServerError> {
    match cfg {
        StorageConfig::Memory => Ok(Arc::new(crate::storage::memory::MemoryStorage::new())),
        StorageConfig::Sqlite(path) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| StorageError::Backend(e.to_string()))?;
            }
            Ok(Arc::new(
                crate::storage::sqlite::SqliteStorage::open(path).await?,
            ))
        }
        #[cfg(feature = "etcd")]
        StorageConfig::Etcd(urls) => Ok(Arc::new(
            crate::storage::etcd::EtcdStorage::connect(urls).await?,
        )),
        #[cfg(not(feature = "etcd"))]
        StorageConfig::Etcd(_) => Err(ServerError::Unsupported(
            "this build has no etcd support: rebuild with `--features etcd`".into(),
        )),
    }
}

/// A running API server.
pub struct RunningServer {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// Its shared state (for in-process use and tests).
    pub state: Arc<ApiState>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    crd_task: JoinHandle<()>,
}

impl RunningServer {
    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stop accepting connections and wait for the listener to close.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        self.crd_task.abort();
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.crd_task.abort();
    }
}

/// Build the shared state over an open store.
pub async fn build_state(
    storage: Arc<dyn Storage>,
    limits: Limits,
    service_cidr: ServiceCidr,
) -> Result<Arc<ApiState>, ServerError> {
    let caches = CacheSet::start(storage.clone()).await?;
    let catalogue = Catalogue::builtin();
    let openapi = crate::openapi::OpenApiCache::new(&catalogue, &[]);
    let mut builtin = crate::state::BuiltinCaches::default();
    for info in catalogue.iter().filter(|i| i.stored) {
        let cache = caches.add(&info.storage_prefix(), &info.kind).await?;
        builtin.insert(info.clone(), cache);
    }
    let state = Arc::new(ApiState {
        storage,
        caches,
        catalogue: RwLock::new(catalogue.clone()),
        custom: RwLock::new(Default::default()),
        limits,
        metrics: Metrics::default(),
        openapi: RwLock::new(Arc::new(openapi)),
        service_cidr,
        allocations: Default::default(),
        allocation_lock: tokio::sync::Mutex::new(()),
        quota_lock: Arc::new(tokio::sync::Mutex::new(())),
        token_key: tokio::sync::OnceCell::new(),
        builtin,
    });
    crate::bootstrap::system_objects(&state).await;
    Ok(state)
}

/// Start a server.
pub async fn start(config: ServerConfig) -> Result<RunningServer, ServerError> {
    let storage = open_storage(&config.storage).await?;
    start_with_storage(storage, config).await
}

/// Start a server over an already open store.
pub async fn start_with_storage(
    storage: Arc<dyn Storage>,
    config: ServerConfig,
) -> Result<RunningServer, ServerError> {
    let listener = TcpListener::bind(config.bind)
        .await
        .map_err(|source| ServerError::Bind {
            addr: config.bind,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServerError::Bind {
        addr: config.bind,
        source,
    })?;
    let state = build_state(storage, config.limits, config.service_cidr).await?;
    crate::bootstrap::kubernetes_service(&state, addr).await;
    let crd_task = tokio::spawn(crate::crd::run_controller(state.clone()));
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(crate::http::serve(state.clone(), listener, async move {
        let _ = rx.await;
    }));
    tracing::info!(%addr, "rk-apiserver listening");
    Ok(RunningServer {
        addr,
        state,
        shutdown: Some(tx),
        task: Some(task),
        crd_task,
    })
}
