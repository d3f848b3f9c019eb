//! LimitRange admission for pods: container defaults (`default` ->
//! limits, `defaultRequest` -> requests) and `min`/`max` bounds, refused
//! with 403 and upstream's message
//! (`minimum cpu usage per Container is 100m, but request is 50m`).

use rk_core::quantity::ParsedQuantity;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::state::ApiState;

fn quantity(v: &Value) -> Option<ParsedQuantity> {
    match v {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.to_string().parse().ok(),
        _ => None,
    }
}

/// Apply the namespace's LimitRanges to a pod.
pub async fn admit_pod(state: &ApiState, pod: &mut Value) -> Result<(), ApiError> {
    let Some(ns) = pod["metadata"]["namespace"].as_str().map(str::to_string) else {
        return Ok(());
    };
    let Some(resident) = state.builtin.get("", "v1", "limitranges") else {
        return Ok(());
    };
    let ranges: Vec<Value> = resident
        .cache(&state.caches)
        .await?
        .snapshot(&format!("{}{ns}/", resident.prefix))
        .objects
        .iter()
        .filter_map(|o| serde_json::from_slice(&o.bytes).ok())
        .collect();
    if ranges.is_empty() {
        return Ok(());
    }
    let name = pod["metadata"]["name"].as_str().unwrap_or("").to_string();
    let forbidden = |msg: String| ApiError::forbidden("", "pods", &name, &msg);
    for range in &ranges {
        for limit in range["spec"]["limits"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|l| l["type"] == "Container")
        {
            for list in ["containers", "initContainers"] {
                let Some(containers) = pod
                    .pointer_mut(&format!("/spec/{list}"))
                    .and_then(Value::as_array_mut)
                else {
                    continue;
                };
                for c in containers.iter_mut() {
                    let res = &mut c["resources"];
                    if !res.is_object() {
                        *res = json!({});
                    }
                    for (from, to) in [("default", "limits"), ("defaultRequest", "requests")] {
                        for (r, q) in limit[from].as_object().into_iter().flatten() {
                            if res[to].get(r).is_none() {
                                res[to][r] = q.clone();
                            }
                        }
                    }
                    // A request defaults to the limit when only the limit is set.
                    let limits = res["limits"].clone();
                    for (r, q) in limits.as_object().into_iter().flatten() {
                        if res["requests"].get(r).is_none() {
                            res["requests"][r] = q.clone();
                        }
                    }
                    for (r, min) in limit["min"].as_object().into_iter().flatten() {
                        let (Some(min), Some(req)) =
                            (quantity(min), res["requests"].get(r).and_then(quantity))
                        else {
                            continue;
                        };
                        if req < min {
                            return Err(forbidden(format!(
                                "minimum {r} usage per Container is {min}, but request is {req}"
                            )));
                        }
                    }
                    for (r, max) in limit["max"].as_object().into_iter().flatten() {
                        let Some(max) = quantity(max) else { continue };
                        match res["limits"].get(r).and_then(quantity) {
                            Some(lim) if lim > max => {
                                return Err(forbidden(format!(
                                    "maximum {r} usage per Container is {max}, but limit is {lim}"
                                )));
                            }
                            None => {
                                return Err(forbidden(format!(
                                    "maximum {r} usage per Container is {max}.  No limit is specified"
                                )));
                            }
                            _ => {}
                        }
                    }
                }
            }
        }
    }
    Ok(())
}
