//! Types and pure logic shared by every rk crate: no I/O, no async.
//!
//! Start with the [`catalogue`] (every kind rk serves and how it is addressed),
//! then the pieces the API server, controllers and scheduler share:
//! [`labels`] and [`fields`] selectors, exact [`quantity`] arithmetic, [`object`]
//! helpers (keys, owner references, conditions, pod readiness) and the
//! scheduling [`predicates`].
//!
//! The Kubernetes types come from `k8s-openapi` (feature `v1_37`) and
//! `kube-core`, re-exported here so every crate names one set of types.
//!
//! ```
//! use rk_core::catalogue::Catalogue;
//! use rk_core::k8s_openapi::api::apps::v1::Deployment;
//! use rk_core::k8s_openapi::Resource as _;
//!
//! let catalogue = Catalogue::builtin();
//! let info = catalogue
//!     .by_api_version_kind(Deployment::API_VERSION, Deployment::KIND)
//!     .expect("deployments are built in");
//! assert_eq!(info.storage_key(Some("default"), "web"), "/registry/deployments/default/web");
//! ```

pub use k8s_openapi;
pub use kube_core;

pub mod catalogue;
pub mod cidr;
pub mod fields;
pub mod labels;
pub mod object;
pub mod predicates;
pub mod quantity;
pub mod quota;
