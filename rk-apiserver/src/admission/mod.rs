//! Admission that needs cluster state, run after validation and before the
//! write: Service IP and NodePort allocation ([`service_ips`]), a pod's
//! service account ([`service_account`]), pod priority ([`priority`]), its RuntimeClass's
//! overhead and scheduling ([`runtime_class`]), LimitRange
//! defaults and bounds ([`limit_ranges`]), ResourceQuota enforcement
//! ([`quota`]), the cluster's `MutatingAdmissionPolicies`
//! ([`mutating_policies`]) and `ValidatingAdmissionPolicies` ([`policies`],
//! CEL from [`crate::cel`]) and the admission webhooks of its webhook
//! configurations ([`webhooks`]). Namespace lifecycle lives in the registry's create path.

pub mod limit_ranges;
pub mod mutating_policies;
mod parsed;
pub mod policies;
pub mod priority;
pub mod quota;
pub mod runtime_class;
pub mod service_account;
pub mod service_ips;
pub mod webhooks;

use rk_core::catalogue::ResourceInfo;
use serde_json::Value;

pub use service_ips::Allocations;

use crate::error::ApiError;
use crate::state::ApiState;

/// Held by a create until its write is stored, so quota checks of
/// concurrent creates in one namespace see each other.
pub type AdmissionGuard = Option<tokio::sync::OwnedMutexGuard<()>>;

/// Admission on create. Keep the returned guard until the object is stored.
pub async fn on_create(
    state: &ApiState,
    info: &ResourceInfo,
    obj: &mut Value,
) -> Result<AdmissionGuard, ApiError> {
    let core = info.group.is_empty();
    if core && info.kind == "Service" {
        service_ips::admit(state, obj, None).await?;
    }
    if core && info.kind == "Pod" {
        service_account::admit_pod(obj);
        priority::admit_pod(state, obj).await?;
        runtime_class::admit_pod(state, obj).await?;
        limit_ranges::admit_pod(state, obj).await?;
    }
    quota::admit(state, info, obj).await
}

/// Admission on update.
pub async fn on_update(
    state: &ApiState,
    info: &ResourceInfo,
    old: &Value,
    new: &mut Value,
) -> Result<(), ApiError> {
    if info.group.is_empty() && info.kind == "Service" && new["spec"] != old["spec"] {
        service_ips::admit(state, new, Some(old)).await?;
    }
    Ok(())
}
