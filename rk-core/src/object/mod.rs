//! Helpers over object metadata and common object shapes.
//!
//! - [`key`]: `namespace/name` keys, as client-go's `MetaNamespaceKeyFunc`;
//! - [`owner`]: owner and controller references;
//! - [`finalizers`]: add, remove and test finalizers;
//! - [`conditions`]: one [`set_condition`] for every `type/status/...` condition kind;
//! - [`pod`]: pod phase, readiness and availability;
//! - [`hash`]: the pod-template hash Deployments put in `pod-template-hash`.
//!
//! Everything works on `ObjectMeta` (reach it with `kube_core::Resource::meta`
//! / `meta_mut`) or on the concrete `k8s-openapi` types.

pub mod conditions;
pub mod finalizers;
pub mod hash;
pub mod key;
pub mod owner;
pub mod pod;

pub use conditions::{
    StatusCondition, find_condition, is_condition_true, remove_condition, set_condition,
};
pub use finalizers::{add_finalizer, has_finalizer, remove_finalizer};
pub use hash::{POD_TEMPLATE_HASH_LABEL, pod_template_hash, safe_encode_string};
pub use key::ObjectKey;
pub use owner::{
    add_owner_reference, controller_of, controller_ref_for, is_controlled_by, new_controller_ref,
    remove_owner_reference, set_controller_reference,
};
pub use pod::{
    is_pod_active, is_pod_available, is_pod_ready, is_pod_scheduled, is_pod_terminal,
    pod_condition, pod_phase, pod_ready_since, pod_restart_count,
};

/// Errors from the object helpers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ObjectError {
    /// A string is not a valid `namespace/name` or `name` key.
    #[error("invalid object key {key:?}: {reason}")]
    InvalidKey {
        /// The key as given.
        key: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// The owner lacks a field an owner reference needs.
    #[error("owner has no {0}")]
    MissingOwnerField(&'static str),
    /// The object already has a different controller.
    #[error("object is already controlled by {kind} {name:?} (uid {uid})")]
    AlreadyControlled {
        /// Kind of the existing controller.
        kind: String,
        /// Name of the existing controller.
        name: String,
        /// UID of the existing controller.
        uid: String,
    },
}
