//! Serving one stored object at several API versions.
//!
//! Two cases share storage between versions: `events.k8s.io/v1` `Event` is
//! stored as core `v1` `Event` (as kube-apiserver does) and converted field by
//! field; custom resources with several served versions are stored at
//! whatever version wrote them and served with the requested `apiVersion`
//! (conversion strategy `None`).

use rk_core::catalogue::ResourceInfo;
use serde_json::{Map, Value};

/// (core v1 field, events.k8s.io/v1 field) pairs that differ only in name.
const EVENT_RENAMES: &[(&str, &str)] = &[
    ("message", "note"),
    ("involvedObject", "regarding"),
    ("reportingComponent", "reportingController"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
];

fn is_events_v1(info: &ResourceInfo) -> bool {
    info.group == "events.k8s.io" && info.kind == "Event"
}

/// True if objects read for `info` may need converting before they are
/// served (so the zero-copy paths must not be used).
pub fn needs_conversion(info: &ResourceInfo, is_custom: bool) -> bool {
    is_events_v1(info) || is_custom
}

fn rename(obj: &mut Value, pairs: impl Iterator<Item = (&'static str, &'static str)>) {
    let Some(map) = obj.as_object_mut() else {
        return;
    };
    let mut moved = Map::new();
    for (from, to) in pairs {
        if let Some(v) = map.remove(from) {
            moved.insert(to.to_string(), v);
        }
    }
    map.extend(moved);
}

/// Convert a stored object to the version `info` serves.
pub fn to_served(info: &ResourceInfo, mut obj: Value) -> Value {
    if is_events_v1(info) {
        if obj["apiVersion"] == "events.k8s.io/v1" {
            return obj;
        }
        rename(&mut obj, EVENT_RENAMES.iter().map(|(a, b)| (*a, *b)));
    }
    if obj.get("apiVersion").and_then(Value::as_str) != Some(&info.api_version()) {
        obj["apiVersion"] = Value::String(info.api_version());
    }
    obj
}

/// Convert an object written at `info`'s version to the stored form.
pub fn to_stored(info: &ResourceInfo, mut obj: Value) -> Value {
    if is_events_v1(info) {
        rename(&mut obj, EVENT_RENAMES.iter().map(|(a, b)| (*b, *a)));
        obj["apiVersion"] = Value::String("v1".into());
    }
    obj
}

#[cfg(test)]
mod tests {
    use super::*;
    use rk_core::catalogue::Catalogue;
    use serde_json::json;

    #[test]
    fn events_v1_round_trips_through_core_storage() {
        let cat = Catalogue::builtin();
        let info = cat.get("events.k8s.io", "v1", "events").unwrap();
        let v1 = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"},
            "note": "pulled", "regarding": {"kind": "Pod", "name": "p"}, "reason": "Pulled", "reportingController": "kubelet", "type": "Normal"});
        let stored = to_stored(&info, v1.clone());
        assert_eq!(stored["apiVersion"], "v1");
        assert_eq!(stored["message"], "pulled");
        assert_eq!(stored["involvedObject"]["name"], "p");
        assert_eq!(stored["reportingComponent"], "kubelet");
        assert_eq!(to_served(&info, stored), v1);
    }

    #[test]
    fn custom_resources_are_served_at_the_requested_version() {
        let mut info = (*Catalogue::builtin()
            .get("apps", "v1", "deployments")
            .unwrap())
        .clone();
        info.group = "example.com".into();
        info.version = "v2".into();
        let obj = json!({"apiVersion": "example.com/v1", "kind": "Deployment"});
        assert_eq!(to_served(&info, obj)["apiVersion"], "example.com/v2");
    }
}
