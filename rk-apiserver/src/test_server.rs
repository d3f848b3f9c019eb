//! `TestServer`: an in-process API server on an ephemeral port with memory
//! storage, handing back a ready `kube::Client` — the envtest of rk, with no
//! binaries to install.

use std::sync::Arc;

use crate::server::{self, RunningServer, ServerConfig, ServerError, StorageConfig};
use crate::state::ApiState;

/// An in-process API server for tests.
pub struct TestServer {
    server: RunningServer,
    client: kube::Client,
}

impl TestServer {
    /// Start a server on `127.0.0.1:0` with memory storage.
    pub async fn start() -> Result<Self, ServerError> {
        Self::start_with(ServerConfig {
            bind: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            storage: StorageConfig::Memory,
            ..Default::default()
        })
        .await
    }

    /// Start a server with a custom configuration.
    pub async fn start_with(config: ServerConfig) -> Result<Self, ServerError> {
        let server = server::start(config).await?;
        let client = client_for(&server.url()).map_err(ServerError::Unsupported)?;
        Ok(Self { server, client })
    }

    /// A client for this server.
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// The server's base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// The server's shared state.
    pub fn state(&self) -> &Arc<ApiState> {
        &self.server.state
    }

    /// A kubeconfig that points kubectl at this server.
    pub fn kubeconfig(&self) -> String {
        kubeconfig_for(&self.url())
    }

    /// Stop the server.
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

/// A `kube::Client` for a plain-HTTP server URL.
pub fn client_for(url: &str) -> Result<kube::Client, String> {
    kube::Client::try_from(config_for(url)?).map_err(|e| e.to_string())
}

fn config_for(url: &str) -> Result<kube::Config, String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("bad server URL {url}: {e}"))?;
    Ok(kube::Config::new(uri))
}

/// [`client_for`] with a `User-Agent` naming `component` (`kubelet`,
/// `kube-scheduler`, ...), as upstream's components send: the server takes
/// its first part as the field manager of writes that name none, so
/// `managedFields` says which component wrote what.
pub fn component_client_for(url: &str, component: &str) -> Result<kube::Client, String> {
    let mut config = config_for(url)?;
    config.headers.push(user_agent(component)?);
    kube::Client::try_from(config).map_err(|e| e.to_string())
}

/// The `User-Agent` header of an rk component, in upstream's form
/// (`kubelet/v1.37.0-rk (linux/amd64) rk`).
pub fn user_agent(component: &str) -> Result<(http::HeaderName, http::HeaderValue), String> {
    let value = format!(
        "{component}/v1.37.0-rk ({}/{}) rk",
        std::env::consts::OS,
        std::env::consts::ARCH
    );
    let value = http::HeaderValue::from_str(&value)
        .map_err(|e| format!("bad component name {component:?}: {e}"))?;
    Ok((http::header::USER_AGENT, value))
}

/// A kubeconfig (YAML) for a plain-HTTP server URL. It says
/// `insecure-skip-tls-verify: true`, which means nothing without TLS but
/// which some clients (the JavaScript `@kubernetes/client-node` 2.x) demand
/// before they speak plain HTTP.
pub fn kubeconfig_for(url: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: rk\n  cluster:\n    server: {url}\n    insecure-skip-tls-verify: true\ncontexts:\n- name: rk\n  context:\n    cluster: rk\n    user: rk-admin\n    namespace: default\ncurrent-context: rk\nusers:\n- name: rk-admin\n  user: {{}}\n"
    )
}
