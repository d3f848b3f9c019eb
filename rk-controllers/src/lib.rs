//! rk's applications: the controllers of the controller manager (and, as
//! they land, the scheduler, kubelet and proxy), each a thin program over
//! the Kubernetes API.
//!
//! Start with [`controllers`]: every controller is a module with a `run`
//! function taking a `kube::Client`; [`controller_manager`] runs a chosen set.
//!
//! ```no_run
//! # async fn demo(client: kube::Client) -> Result<(), Box<dyn std::error::Error>> {
//! use rk_controllers::controller_manager::{self, Selection};
//! let selection: Selection = "*".parse()?;
//! controller_manager::run(client, &selection, controller_manager::Options::default()).await?;
//! # Ok(()) }
//! ```

pub mod controller_manager;
pub mod controllers;
pub mod discovery;
pub mod election;
pub mod events;
pub mod kubelet;
pub mod metrics;
pub mod owners;
pub mod proxy;
pub mod queue;
pub mod scheduler;
mod task;
pub mod watch;
