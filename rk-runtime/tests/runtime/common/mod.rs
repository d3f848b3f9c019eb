//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Poll `check` every 20 ms until it holds or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A ConfigMap named `name` in `default` with label `bucket=<bucket>`.
pub fn config_map(name: &str, bucket: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some("default".to_owned()),
            labels: Some([("bucket".to_owned(), bucket.to_owned())].into()),
            ..ObjectMeta::default()
        },
        ..ConfigMap::default()
    }
}

/// Create a ConfigMap in `default`.
pub async fn create_config_map(client: &Client, name: &str, bucket: &str) -> ConfigMap {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    match api
        .create(&PostParams::default(), &config_map(name, bucket))
        .await
    {
        Ok(cm) => cm,
        Err(e) => panic!("creating ConfigMap {name}: {e}"),
    }
}

/// A TCP proxy in front of a server, whose connections a test can cut and
/// whose door it can close, to simulate a network failure.
pub struct Proxy {
    addr: SocketAddr,
    accepting: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// A proxy forwarding to the server at `upstream_url` (`http://host:port`).
    pub async fn start(upstream_url: &str) -> Proxy {
        let upstream: SocketAddr = upstream_url
            .trim_start_matches("http://")
            .parse()
            .expect("test server URL is host:port");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let accepting = Arc::new(AtomicBool::new(true));
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let task = tokio::spawn({
            let accepting = accepting.clone();
            let connections = connections.clone();
            async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if !accepting.load(Ordering::SeqCst) {
                        drop(inbound);
                        continue;
                    }
                    let handle = tokio::spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    connections.lock().unwrap().push(handle);
                }
            }
        });
        Proxy {
            addr,
            accepting,
            connections,
            task,
        }
    }

    /// The proxy's URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A client that talks through the proxy.
    pub fn client(&self) -> Client {
        rk_apiserver::test_server::client_for(&self.url()).expect("client for proxy")
    }

    /// Drop every open connection and refuse new ones until [`Proxy::open`].
    pub fn cut_and_close(&self) {
        self.accepting.store(false, Ordering::SeqCst);
        for c in self.connections.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    /// Drop every open connection, still accepting new ones.
    pub fn cut(&self) {
        for c in self.connections.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    /// Accept connections again.
    pub fn open(&self) {
        self.accepting.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut();
    }
}
