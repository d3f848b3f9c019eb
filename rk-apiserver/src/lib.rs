//! The rk API server: the Kubernetes API over a revisioned store.
//!
//! A request follows one path through the crate: [`http`] routes it, the
//! handler calls the [`registry`] (decoding, defaulting, validation, the
//! generic object flow), which writes to [`storage`]; reads and watches are
//! served from the [`cache`]. Start with [`server::start`], or, in tests,
//! [`TestServer`]: an in-process server on an ephemeral port handing back a
//! ready `kube::Client`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use k8s_openapi::api::core::v1::ConfigMap;
//! use kube::api::{Api, PostParams};
//!
//! let server = rk_apiserver::TestServer::start().await?;
//! let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
//! let mut cm = ConfigMap::default();
//! cm.metadata.name = Some("settings".into());
//! cms.create(&PostParams::default(), &cm).await?;
//! assert!(cms.get("settings").await?.metadata.resource_version.is_some());
//! # Ok(()) }
//! ```

// `ApiError` carries a whole `Status` (message, details, causes) and is only
// built on the cold error path; boxing it would add an allocation to every
// error for no gain on the success path.
#![allow(clippy::result_large_err)]

pub mod admission;
mod bootstrap;
pub mod cache;
pub mod cel;
pub mod crd;
pub mod error;
pub mod http;
pub mod metrics;
pub mod openapi;
pub mod patch;
pub mod protobuf;
pub mod registry;
pub mod request;
pub mod schema;
pub mod server;
pub mod state;
pub mod storage;
pub mod test_server;

pub use server::{RunningServer, ServerConfig, StorageConfig, start};
pub use test_server::TestServer;
