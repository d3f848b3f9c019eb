//! Admission configuration (webhook configurations, admission policies and
//! their bindings) parsed once per version of each object. Every write
//! consults it, and the watch cache holds it as bytes.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use serde_json::Value;

use crate::cache::CachedObject;
use crate::error::ApiError;
use crate::state::ApiState;

/// Most objects kept parsed; past it the memo starts over.
const MAX_KEPT: usize = 4096;

/// The parsed form of each cached object, by storage key. Holding the
/// cached object keeps its identity: a newer version of the key, or the same
/// key in another server of this process, is another `Arc`.
type Memo = HashMap<String, (Arc<CachedObject>, Arc<Value>)>;

static MEMO: LazyLock<Mutex<Memo>> = LazyLock::new(|| Mutex::new(HashMap::new()));

/// `cached` parsed; `None` if its bytes are not JSON.
pub(crate) fn parsed(cached: &Arc<CachedObject>) -> Option<Arc<Value>> {
    {
        let memo = MEMO.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((seen, value)) = memo.get(&cached.key)
            && Arc::ptr_eq(seen, cached)
        {
            return Some(value.clone());
        }
    }
    let value = Arc::new(serde_json::from_slice::<Value>(&cached.bytes).ok()?);
    let mut memo = MEMO.lock().unwrap_or_else(|p| p.into_inner());
    if memo.len() >= MAX_KEPT {
        memo.clear();
    }
    memo.insert(cached.key.clone(), (cached.clone(), value.clone()));
    Some(value)
}

/// Every stored object of the cluster-wide resource `group/version/plural`,
/// parsed, from the watch cache (none if the resource is not served).
pub(crate) async fn all(
    state: &ApiState,
    group: &str,
    version: &str,
    plural: &str,
) -> Result<Vec<Arc<Value>>, ApiError> {
    let snapshot = match state.builtin.get(group, version, plural) {
        Some(resident) => resident
            .cache(&state.caches)
            .await?
            .snapshot(&resident.prefix),
        None => {
            let Some(info) = state.resource(group, version, plural) else {
                return Ok(Vec::new());
            };
            state.cache(&info).await?.snapshot(&info.storage_prefix())
        }
    };
    Ok(snapshot.objects.iter().filter_map(parsed).collect())
}
