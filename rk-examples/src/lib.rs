//! rk-examples: complete operators built on [`rk_runtime`], to read and to
//! copy. Each is a module with its custom resource defined in Rust
//! (`kube::CustomResource` and `schemars`), a reconciler, and a `manager`
//! function that wires it into an [`rk_runtime::Manager`] with leader
//! election, events, a finalizer and metrics; and a binary of the same name
//! with two subcommands, `crd` (print the CRD as YAML) and `run`.
//!
//! - [`web_app`]: a `WebApp` owns a Deployment and a NodePort Service,
//!   reports readiness, and scales with `kubectl scale`.
//! - [`configmap_generator`]: a `ConfigMapGenerator` renders a ConfigMap from
//!   literal data and `{{key}}` templates and keeps it in sync.
//! - [`scheduled_backup`]: a `Backup` creates a Job on a cron schedule and
//!   keeps a bounded history of finished ones.
//!
//! Run one in-process (as the tests do, against
//! `rk_apiserver::TestServer`):
//!
//! ```no_run
//! use kube::CustomResourceExt;
//! use rk_examples::operator::{OperatorConfig, install_crd};
//! use rk_examples::web_app::{self, WebApp};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let client = kube::Client::try_default().await?;
//! install_crd(client.clone(), &WebApp::crd()).await?;
//! let manager = web_app::manager(client, &OperatorConfig { workers: 2, ..Default::default() });
//! let stop = manager.shutdown_token();
//! let running = tokio::spawn(manager.run());
//! // ... create WebApps ...
//! stop.cancel();
//! running.await??;
//! # Ok(()) }
//! ```
//!
//! Or as a binary against `rk up`:
//!
//! ```sh
//! cargo run -p rk-examples --bin web-app -- crd | kubectl apply -f -
//! cargo run -p rk-examples --bin web-app -- run --leader-elect
//! ```

#![warn(missing_docs)]

pub mod cli;
pub mod configmap_generator;
pub mod operator;
pub mod scheduled_backup;
pub mod web_app;
