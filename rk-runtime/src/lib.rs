//! rk-runtime: the control-loop SDK for writing Kubernetes controllers
//! against any API server through [`kube::Client`].
//!
//! Start with [`controller::ControllerBuilder`]: name the kind you reconcile,
//! the kinds it owns or watches, and a [`controller::Reconciler`]; run it, or
//! several sharing one [`factory::InformerFactory`] under one leader election,
//! in a [`manager::Manager`]. Every part is usable on its own: a
//! [`watcher::Watcher`] that never gives up, a [`cache::Store`] with indexes,
//! shared [`informer::Informer`]s, a client-go style [`workqueue::WorkQueue`],
//! [`leader`] election, an [`events::Recorder`], [`finalizer`] helpers,
//! [`expectations`] and a [`client_rate_limit`] layer.
//!
//! ```no_run
//! use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
//! use rk_runtime::cache::ObjectKey;
//! use rk_runtime::controller::{Action, ControllerBuilder, Reconciler};
//! use rk_runtime::factory::InformerOptions;
//! use rk_runtime::manager::{Manager, ManagerConfig};
//!
//! struct Scaler {
//!     deployments: rk_runtime::cache::Store<Deployment>,
//! }
//!
//! impl Reconciler for Scaler {
//!     type Error = kube::Error;
//!     async fn reconcile(&self, key: ObjectKey) -> Result<Action, kube::Error> {
//!         let Some(deployment) = self.deployments.get(&key) else {
//!             return Ok(Action::Done); // deleted
//!         };
//!         // ... compare what exists with deployment.spec, act, write status ...
//!         let _ = deployment;
//!         Ok(Action::Done)
//!     }
//! }
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let client = kube::Client::try_default().await?;
//! let mut manager = Manager::new(client, ManagerConfig {
//!     bind: Some(([0, 0, 0, 0], 8080).into()),
//!     handle_signals: true,
//!     ..ManagerConfig::default()
//! });
//! let builder = ControllerBuilder::<Deployment>::new("scaler", manager.factory())
//!     .owns::<ReplicaSet>(&InformerOptions::all())
//!     .workers(4)
//!     .metrics(manager.controller_metrics(), Some(manager.queue_metrics()));
//! let deployments = builder.store();
//! manager.add_controller(builder.build(Scaler { deployments }));
//! manager.run().await?;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod backoff;
pub mod cache;
pub mod client_rate_limit;
pub mod controller;
pub mod events;
pub mod expectations;
pub mod factory;
pub mod finalizer;
pub mod informer;
pub mod leader;
pub mod manager;
pub mod metrics;
pub mod watcher;
pub mod workqueue;

pub use cache::{ObjectKey, Store};
pub use controller::{Action, Controller, ControllerBuilder, Reconciler};
pub use factory::{InformerFactory, InformerOptions};
pub use informer::{EventHandler, Informer, InformerEvent};
pub use manager::{Manager, ManagerConfig};
pub use watcher::{ApiObject, Watcher, WatcherConfig};
pub use workqueue::WorkQueue;
