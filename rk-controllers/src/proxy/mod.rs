//! The service proxy: serves Services from their EndpointSlices with a
//! userspace TCP and UDP proxy.
//!
//! For every port of a ClusterIP Service the proxy listens on
//! `clusterIP:port`; for NodePort (and LoadBalancer) Services also on each
//! node address at the `nodePort`. Connections go round-robin to ready
//! endpoints (with `ClientIP` session affinity when the Service asks), a
//! failed backend connection is retried on the next endpoint, and an
//! endpoint that leaves its EndpointSlice gets no new connections from then
//! on.
//!
//! # Addresses
//!
//! rk allocates cluster IPs from `127.200.0.0/16`, inside the loopback
//! network, which Linux routes to `lo` as a whole: the proxy binds
//! `clusterIP:port` directly, without root and without touching the host's
//! network configuration. For a cluster whose service range is not on
//! loopback, [`Config::add_loopback_addresses`] (root only) adds each cluster
//! IP to `lo` as a /32 (`ip addr add <ip>/32 dev lo`) before binding and
//! removes it on shutdown. Ports below 1024 need root (or
//! `CAP_NET_BIND_SERVICE`); a port that cannot be bound is logged, counted
//! in `rk_proxy_bind_errors_total`, and retried on the next resync.
//!
//! ```no_run
//! # async fn demo(client: kube::Client) -> Result<(), rk_controllers::proxy::ProxyError> {
//! let proxy = rk_controllers::proxy::start(client, rk_controllers::proxy::Config::default()).await?;
//! println!("{}", proxy.metrics_text());
//! proxy.shutdown().await;
//! # Ok(()) }
//! ```

pub mod affinity;
pub mod endpoints;
mod tcp;
mod udp;

pub use tcp::Forwarding;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};

use endpoints::{DesiredPort, PortKey, SERVICE_NAME_LABEL, ServicePort};

/// What can stop the proxy from starting.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The metrics port could not be bound.
    #[error("binding the proxy metrics address {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
}

/// The proxy's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where NodePorts listen (the nodes' addresses; default `127.0.0.1`).
    pub node_addresses: Vec<IpAddr>,
    /// Add cluster IPs that are not local to `lo` (needs root).
    pub add_loopback_addresses: bool,
    /// How long to wait for a backend connection before trying the next.
    pub connect_timeout: Duration,
    /// How TCP bytes move through the proxy.
    pub forwarding: Forwarding,
    /// How long a UDP session lives without traffic.
    pub udp_idle_timeout: Duration,
    /// Serve `/metrics` and `/healthz` here (none by default).
    pub metrics_address: Option<SocketAddr>,
    /// How often every service is synced again (retries failed binds).
    pub resync_interval: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            node_addresses: vec![IpAddr::from([127, 0, 0, 1])],
            add_loopback_addresses: false,
            connect_timeout: Duration::from_secs(2),
            forwarding: Forwarding::default(),
            udp_idle_timeout: Duration::from_secs(60),
            metrics_address: None,
            resync_interval: Duration::from_secs(10),
        }
    }
}

use crate::task::AbortOnDrop;

struct Served {
    port: Arc<ServicePort>,
    desired: DesiredPort,
    listeners: HashMap<SocketAddr, AbortOnDrop>,
}

#[derive(Default)]
struct Table {
    services: HashMap<(String, String), Service>,
    slices: HashMap<(String, String), EndpointSlice>,
    served: BTreeMap<PortKey, Served>,
    added_addresses: HashSet<IpAddr>,
}

struct Shared {
    config: Config,
    table: Mutex<Table>,
    bind_errors: AtomicU64,
    /// Addresses a failed listen was already logged for at `warn` (each
    /// resync tries again; the repeats go to `debug`).
    bind_warned: Mutex<HashSet<SocketAddr>>,
    syncs: AtomicU64,
}

fn slice_service(slice: &EndpointSlice) -> Option<String> {
    slice
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(SERVICE_NAME_LABEL))
        .cloned()
}

fn is_local(ip: IpAddr) -> bool {
    ip.is_loopback() || std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

fn add_loopback_address(ip: IpAddr) -> bool {
    let prefix = if ip.is_ipv4() { 32 } else { 128 };
    match std::process::Command::new("ip")
        .args(["addr", "add", &format!("{ip}/{prefix}"), "dev", "lo"])
        .output()
    {
        Ok(out) if out.status.success() => true,
        Ok(out) => {
            tracing::warn!(%ip, error = %String::from_utf8_lossy(&out.stderr).trim(), "adding a cluster IP to lo failed");
            false
        }
        Err(e) => {
            tracing::warn!(%ip, error = %e, "running `ip` failed");
            false
        }
    }
}

impl Shared {
    fn bind(
        &self,
        table: &mut Table,
        addr: SocketAddr,
        port: &Arc<ServicePort>,
        protocol: &str,
    ) -> Option<AbortOnDrop> {
        if self.config.add_loopback_addresses
            && !is_local(addr.ip())
            && !table.added_addresses.contains(&addr.ip())
            && add_loopback_address(addr.ip())
        {
            table.added_addresses.insert(addr.ip());
        }
        let result = if protocol == "UDP" {
            std::net::UdpSocket::bind(addr)
                .and_then(|s| {
                    s.set_nonblocking(true)?;
                    tokio::net::UdpSocket::from_std(s)
                })
                .map(|s| {
                    AbortOnDrop(tokio::spawn(udp::serve(
                        s,
                        port.clone(),
                        self.config.udp_idle_timeout,
                    )))
                })
        } else {
            let socket = if addr.is_ipv4() {
                tokio::net::TcpSocket::new_v4()
            } else {
                tokio::net::TcpSocket::new_v6()
            };
            socket
                .and_then(|s| {
                    s.set_reuseaddr(true)?;
                    s.bind(addr)?;
                    s.listen(1024)
                })
                .map(|l| {
                    AbortOnDrop(tokio::spawn(tcp::serve(
                        l,
                        port.clone(),
                        self.config.connect_timeout,
                        self.config.forwarding,
                    )))
                })
        };
        match result {
            Ok(task) => {
                tracing::info!(service = %port.name, %addr, protocol, "listening");
                Some(task)
            }
            Err(e) => {
                self.bind_errors.fetch_add(1, Ordering::Relaxed);
                let first = self
                    .bind_warned
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(addr);
                if first && e.kind() == std::io::ErrorKind::AddrInUse {
                    // Most likely another cluster on this machine with the
                    // same Service range.
                    tracing::warn!(service = %port.name, %addr, protocol, error = %e,
                        "cannot listen for a service port: another process holds it (a second cluster on this machine needs its own --service-cluster-ip-range)");
                } else if first {
                    tracing::warn!(service = %port.name, %addr, protocol, error = %e, "cannot listen for a service port");
                } else {
                    tracing::debug!(service = %port.name, %addr, protocol, error = %e, "cannot listen for a service port");
                }
                None
            }
        }
    }

    /// Bring one service's ports in line with its Service and slices.
    fn sync_service(&self, table: &mut Table, namespace: &str, name: &str) {
        self.syncs.fetch_add(1, Ordering::Relaxed);
        let desired: Vec<DesiredPort> = table
            .services
            .get(&(namespace.to_owned(), name.to_owned()))
            .map(|s| endpoints::desired_ports(s, &self.config.node_addresses))
            .unwrap_or_default();
        let wanted: HashSet<PortKey> = desired.iter().map(|d| d.key.clone()).collect();
        table
            .served
            .retain(|k, _| !(k.namespace == namespace && k.service == name) || wanted.contains(k));
        let slices: Vec<EndpointSlice> = table
            .slices
            .iter()
            .filter(|((ns, _), s)| ns == namespace && slice_service(s).as_deref() == Some(name))
            .map(|(_, s)| s.clone())
            .collect();
        for d in desired {
            let backends = endpoints::backends(&slices, &d.key);
            let mut served = match table.served.remove(&d.key) {
                Some(s) => s,
                None => {
                    let label = if d.key.port_name.is_empty() {
                        d.port.to_string()
                    } else {
                        d.key.port_name.clone()
                    };
                    Served {
                        port: Arc::new(ServicePort {
                            name: format!("{namespace}/{name}:{label}"),
                            ..ServicePort::default()
                        }),
                        desired: d.clone(),
                        listeners: HashMap::new(),
                    }
                }
            };
            served.port.balancer.set_backends(backends);
            served.port.balancer.set_affinity(d.affinity);
            served
                .listeners
                .retain(|addr, _| d.frontends.contains(addr));
            for addr in &d.frontends {
                if !served.listeners.contains_key(addr)
                    && let Some(task) = self.bind(table, *addr, &served.port, &d.key.protocol)
                {
                    served.listeners.insert(*addr, task);
                }
            }
            served.desired = d.clone();
            table.served.insert(d.key.clone(), served);
        }
    }

    fn metrics_text(&self) -> String {
        let table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        let counters: [(&str, &str, MetricGetter); 7] = [
            (
                "rk_proxy_connections_total",
                "TCP connections accepted.",
                |m| &m.connections,
            ),
            (
                "rk_proxy_active_connections",
                "TCP connections open.",
                |m| &m.active,
            ),
            (
                "rk_proxy_backend_errors_total",
                "Backend connections that failed.",
                |m| &m.connect_errors,
            ),
            (
                "rk_proxy_no_endpoints_total",
                "Clients turned away for lack of endpoints.",
                |m| &m.no_endpoints,
            ),
            (
                "rk_proxy_bytes_in_total",
                "Bytes from clients to backends.",
                |m| &m.bytes_in,
            ),
            (
                "rk_proxy_bytes_out_total",
                "Bytes from backends to clients.",
                |m| &m.bytes_out,
            ),
            (
                "rk_proxy_udp_packets_total",
                "UDP datagrams received.",
                |m| &m.packets,
            ),
        ];
        for (metric, help, get) in counters {
            let kind = if metric.ends_with("_total") {
                "counter"
            } else {
                "gauge"
            };
            out.push_str(&format!("# HELP {metric} {help}\n# TYPE {metric} {kind}\n"));
            for s in table.served.values() {
                out.push_str(&format!(
                    "{metric}{{service=\"{}\",protocol=\"{}\"}} {}\n",
                    s.port.name,
                    s.desired.key.protocol,
                    get(&s.port.metrics).load(Ordering::Relaxed)
                ));
            }
        }
        out.push_str("# HELP rk_proxy_endpoints Ready endpoints per service port.\n# TYPE rk_proxy_endpoints gauge\n");
        for s in table.served.values() {
            out.push_str(&format!(
                "rk_proxy_endpoints{{service=\"{}\",protocol=\"{}\"}} {}\n",
                s.port.name,
                s.desired.key.protocol,
                s.port.balancer.backends().len()
            ));
        }
        out.push_str(&format!(
            "# HELP rk_proxy_bind_errors_total Frontends that could not be bound.\n# TYPE rk_proxy_bind_errors_total counter\nrk_proxy_bind_errors_total {}\n\
             # HELP rk_proxy_syncs_total Service syncs.\n# TYPE rk_proxy_syncs_total counter\nrk_proxy_syncs_total {}\n",
            self.bind_errors.load(Ordering::Relaxed),
            self.syncs.load(Ordering::Relaxed)
        ));
        out
    }
}

/// A running proxy.
pub struct Proxy {
    shared: Arc<Shared>,
    tasks: Vec<AbortOnDrop>,
}

impl Proxy {
    /// Prometheus text of the proxy's counters.
    pub fn metrics_text(&self) -> String {
        self.shared.metrics_text()
    }

    /// Every address the proxy listens on, with its service port
    /// (`namespace/service:port`).
    pub fn listening(&self) -> Vec<(String, SocketAddr)> {
        let table = self.shared.table.lock().unwrap_or_else(|p| p.into_inner());
        table
            .served
            .values()
            .flat_map(|s| s.listeners.keys().map(|a| (s.port.name.clone(), *a)))
            .collect()
    }

    /// Stop listening, and remove addresses added to `lo`.
    pub async fn shutdown(mut self) {
        self.tasks.clear();
        let added: Vec<IpAddr> = {
            let mut table = self.shared.table.lock().unwrap_or_else(|p| p.into_inner());
            table.served.clear();
            table.added_addresses.drain().collect()
        };
        for ip in added {
            let prefix = if ip.is_ipv4() { 32 } else { 128 };
            let _ = tokio::process::Command::new("ip")
                .args(["addr", "del", &format!("{ip}/{prefix}"), "dev", "lo"])
                .output()
                .await;
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.tasks.clear();
        self.shared
            .table
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .served
            .clear();
    }
}

/// Reads one counter of a service port.
type MetricGetter = fn(&endpoints::PortMetrics) -> &AtomicU64;

enum Change {
    Service(Box<watcher::Event<Service>>),
    Slice(Box<watcher::Event<EndpointSlice>>),
    Resync,
}

fn key_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> (String, String) {
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

async fn run_sync(shared: Arc<Shared>, client: kube::Client) {
    let services = crate::watch::lean_watcher(
        Api::<Service>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .filter_map(|e| async move { e.ok().map(|e| Change::Service(Box::new(e))) });
    let slices = crate::watch::lean_watcher(
        Api::<EndpointSlice>::all(client),
        watcher::Config::default().labels(SERVICE_NAME_LABEL),
    )
    .default_backoff()
    .filter_map(|e| async move { e.ok().map(|e| Change::Slice(Box::new(e))) });
    let interval = shared.config.resync_interval;
    let ticks = futures::stream::unfold((), move |()| async move {
        tokio::time::sleep(interval).await;
        Some((Change::Resync, ()))
    });
    let mut changes = futures::stream::select(
        futures::stream::select(services.boxed(), slices.boxed()),
        ticks.boxed(),
    );
    let mut init_services: Option<HashSet<(String, String)>> = None;
    let mut init_slices: Option<HashSet<(String, String)>> = None;
    // As upstream's kube-proxy, nothing is served before both initial lists
    // are in: a Service whose endpoints are not known yet would turn its
    // first clients away.
    let (mut services_listed, mut slices_listed) = (false, false);
    while let Some(change) = changes.next().await {
        let was_listed = services_listed && slices_listed;
        let mut table = shared.table.lock().unwrap_or_else(|p| p.into_inner());
        let mut touched: HashSet<(String, String)> = HashSet::new();
        match change {
            Change::Service(event) => match *event {
                watcher::Event::Init => init_services = Some(HashSet::new()),
                watcher::Event::InitApply(s) | watcher::Event::Apply(s) => {
                    let key = key_of(&s.metadata);
                    if let Some(seen) = init_services.as_mut() {
                        seen.insert(key.clone());
                    }
                    table.services.insert(key.clone(), s);
                    touched.insert(key);
                }
                watcher::Event::Delete(s) => {
                    let key = key_of(&s.metadata);
                    table.services.remove(&key);
                    touched.insert(key);
                }
                watcher::Event::InitDone => {
                    services_listed = true;
                    let seen = init_services.take().unwrap_or_default();
                    let gone: Vec<(String, String)> = table
                        .services
                        .keys()
                        .filter(|k| !seen.contains(*k))
                        .cloned()
                        .collect();
                    for k in gone {
                        table.services.remove(&k);
                        touched.insert(k);
                    }
                }
            },
            Change::Slice(event) => {
                let service_key = |s: &EndpointSlice| {
                    slice_service(s)
                        .map(|svc| (s.metadata.namespace.clone().unwrap_or_default(), svc))
                };
                match *event {
                    watcher::Event::Init => init_slices = Some(HashSet::new()),
                    watcher::Event::InitApply(s) | watcher::Event::Apply(s) => {
                        let key = key_of(&s.metadata);
                        if let Some(seen) = init_slices.as_mut() {
                            seen.insert(key.clone());
                        }
                        if let Some(old) = table.slices.get(&key).and_then(service_key) {
                            touched.insert(old);
                        }
                        if let Some(svc) = service_key(&s) {
                            touched.insert(svc);
                        }
                        table.slices.insert(key, s);
                    }
                    watcher::Event::Delete(s) => {
                        table.slices.remove(&key_of(&s.metadata));
                        if let Some(svc) = service_key(&s) {
                            touched.insert(svc);
                        }
                    }
                    watcher::Event::InitDone => {
                        slices_listed = true;
                        let seen = init_slices.take().unwrap_or_default();
                        let gone: Vec<(String, String)> = table
                            .slices
                            .keys()
                            .filter(|k| !seen.contains(*k))
                            .cloned()
                            .collect();
                        for k in gone {
                            if let Some(s) = table.slices.remove(&k)
                                && let Some(svc) = service_key(&s)
                            {
                                touched.insert(svc);
                            }
                        }
                    }
                }
            }
            Change::Resync => {
                touched.extend(table.services.keys().cloned());
                touched.extend(
                    table
                        .served
                        .keys()
                        .map(|k| (k.namespace.clone(), k.service.clone())),
                );
            }
        }
        if !(services_listed && slices_listed) {
            continue;
        }
        if !was_listed {
            touched.extend(table.services.keys().cloned());
        }
        for (ns, name) in touched {
            shared.sync_service(&mut table, &ns, &name);
        }
    }
}

async fn serve_metrics(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let shared = shared.clone();
                    async move {
                        let (status, body) = match req.uri().path() {
                            "/metrics" => (http::StatusCode::OK, shared.metrics_text()),
                            "/healthz" | "/livez" | "/readyz" => {
                                (http::StatusCode::OK, "ok".to_owned())
                            }
                            _ => (
                                http::StatusCode::NOT_FOUND,
                                "404 page not found\n".to_owned(),
                            ),
                        };
                        let mut resp = http::Response::new(http_body_util::Full::new(
                            bytes::Bytes::from(body),
                        ));
                        *resp.status_mut() = status;
                        Ok::<_, Infallible>(resp)
                    }
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Start the proxy: watch Services and EndpointSlices and serve them in the
/// background until [`Proxy::shutdown`].
pub async fn start(client: kube::Client, config: Config) -> Result<Proxy, ProxyError> {
    let metrics_listener = match config.metrics_address {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| ProxyError::Bind { addr, source })?,
        ),
        None => None,
    };
    let shared = Arc::new(Shared {
        config,
        table: Mutex::new(Table::default()),
        bind_errors: AtomicU64::new(0),
        bind_warned: Mutex::new(HashSet::new()),
        syncs: AtomicU64::new(0),
    });
    let mut tasks = vec![AbortOnDrop(tokio::spawn(run_sync(shared.clone(), client)))];
    if let Some(l) = metrics_listener {
        tasks.push(AbortOnDrop(tokio::spawn(serve_metrics(l, shared.clone()))));
    }
    tracing::info!("proxy started");
    Ok(Proxy { shared, tasks })
}

/// Run the proxy until `shutdown` completes.
pub async fn run(
    client: kube::Client,
    config: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ProxyError> {
    let proxy = start(client, config).await?;
    shutdown.await;
    proxy.shutdown().await;
    Ok(())
}
