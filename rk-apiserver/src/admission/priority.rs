//! Pod priority, as upstream's `Priority` admission plugin sets it on a
//! create: a pod naming a `PriorityClass` gets its value and preemption
//! policy (an unknown class is refused); a pod naming none gets the class
//! marked `globalDefault` if there is one (and its name), else priority 0
//! and `PreemptLowerPriority`. A priority or preemption policy the pod
//! states itself must agree with what the class gives.

use serde_json::{Value, json};

use crate::error::ApiError;
use crate::state::ApiState;

const DEFAULT_PREEMPTION: &str = "PreemptLowerPriority";

/// Set `pod`'s priority and preemption policy.
pub async fn admit_pod(state: &ApiState, pod: &mut Value) -> Result<(), ApiError> {
    if !pod["spec"].is_object() {
        return Ok(());
    }
    let name = pod["metadata"]["name"].as_str().unwrap_or("").to_string();
    let forbidden = |msg: String| ApiError::forbidden("", "pods", &name, &msg);
    let classes = super::parsed::all(state, "scheduling.k8s.io", "v1", "priorityclasses").await?;
    let named = pod["spec"]["priorityClassName"]
        .as_str()
        .filter(|n| !n.is_empty())
        .map(str::to_string);
    let (class_name, priority, preemption) = match &named {
        Some(wanted) => {
            let Some(class) = classes
                .iter()
                .find(|c| c["metadata"]["name"].as_str() == Some(wanted))
            else {
                return Err(forbidden(format!(
                    "no PriorityClass with name {wanted} was found"
                )));
            };
            (
                None,
                class["value"].as_i64().unwrap_or(0),
                preemption_of(class),
            )
        }
        None => {
            let default = classes
                .iter()
                .filter(|c| c["globalDefault"] == json!(true))
                .max_by_key(|c| c["value"].as_i64().unwrap_or(0));
            match default {
                Some(class) => (
                    class["metadata"]["name"].as_str().map(str::to_string),
                    class["value"].as_i64().unwrap_or(0),
                    preemption_of(class),
                ),
                None => (None, 0, DEFAULT_PREEMPTION.to_string()),
            }
        }
    };
    if let Some(stated) = pod["spec"]["priority"].as_i64()
        && stated != priority
    {
        return Err(forbidden(format!(
            "the integer value of priority ({stated}) must not be provided in pod spec; priority admission controller computed {priority} from the given PriorityClass name"
        )));
    }
    if let Some(stated) = pod["spec"]["preemptionPolicy"].as_str()
        && stated != preemption
    {
        return Err(forbidden(format!(
            "the string value of PreemptionPolicy ({stated}) must not be provided in pod spec; priority admission controller computed {preemption} from the given PriorityClass name"
        )));
    }
    let spec = &mut pod["spec"];
    if let Some(class_name) = class_name {
        spec["priorityClassName"] = json!(class_name);
    }
    spec["priority"] = json!(priority);
    spec["preemptionPolicy"] = json!(preemption);
    Ok(())
}

fn preemption_of(class: &Value) -> String {
    class["preemptionPolicy"]
        .as_str()
        .unwrap_or(DEFAULT_PREEMPTION)
        .to_string()
}
