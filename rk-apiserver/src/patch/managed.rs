//! Field management: `metadata.managedFields`, server-side apply and the
//! bookkeeping of ordinary writes, as
//! k8s.io/apimachinery/pkg/util/managedfields and
//! sigs.k8s.io/structured-merge-diff `merge` do it.

use serde_json::{Map, Value, json};

use super::fieldset::{FieldSet, display_path, field_pe};
use super::typed::{compare, created_fields_v1, merge, prune, to_field_set};
use super::{FieldConflict, PatchError, PatchSchema, depth_of, patch_strategy_for};

const APPLY: &str = "Apply";
const UPDATE: &str = "Update";
const BEFORE_FIRST_APPLY: &str = "before-first-apply";

/// One `managedFields` entry.
#[derive(Clone, Debug)]
struct Entry {
    manager: String,
    operation: String,
    api_version: String,
    subresource: String,
    time: Option<String>,
    set: FieldSet,
}

impl Entry {
    /// Upstream's manager identity: appliers are one manager whatever the
    /// version they apply with; updaters are one per version.
    fn is(&self, manager: &str, operation: &str, api_version: &str, subresource: &str) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource == subresource
            && (operation == APPLY || self.api_version == api_version)
    }

    fn same_identity(&self, other: &Entry) -> bool {
        self.manager == other.manager
            && self.operation == other.operation
            && self.subresource == other.subresource
            && (self.operation == APPLY || self.api_version == other.api_version)
    }

    /// How upstream names this manager in conflicts.
    fn describe(&self) -> String {
        let mut out = format!("{:?}", self.manager);
        if !self.subresource.is_empty() {
            out.push_str(&format!(" with subresource {:?}", self.subresource));
        }
        if self.operation == UPDATE {
            out.push_str(&format!(" using {}", self.api_version));
        }
        out
    }

    fn into_json(mut self) -> Value {
        let fields = std::mem::take(&mut self.set).into_fields_v1();
        self.into_json_with(fields)
    }

    /// The entry's JSON with `fields_v1` in place of its set.
    fn into_json_with(self, fields_v1: Value) -> Value {
        let mut m = Map::new();
        m.insert("manager".into(), Value::String(self.manager));
        m.insert("operation".into(), Value::String(self.operation));
        m.insert("apiVersion".into(), Value::String(self.api_version));
        if let Some(time) = self.time {
            m.insert("time".into(), Value::String(time));
        }
        m.insert("fieldsType".into(), json!("FieldsV1"));
        m.insert("fieldsV1".into(), fields_v1);
        if !self.subresource.is_empty() {
            m.insert("subresource".into(), Value::String(self.subresource));
        }
        Value::Object(m)
    }
}

fn managed_fields(obj: &Value) -> Option<&Value> {
    obj.get("metadata")
        .and_then(|m| m.get("managedFields"))
        .filter(|v| !v.is_null())
}

/// `managedFields: []` or `[{}]`: the writer asks to clear them.
fn is_reset(list: &Value) -> bool {
    match list.as_array().map(Vec::as_slice) {
        Some([]) => true,
        Some([only]) => only.as_object().is_some_and(Map::is_empty),
        _ => false,
    }
}

/// Reads the entries of an object; entries of the same manager are merged.
fn decode(obj: &Value) -> Result<Vec<Entry>, String> {
    let Some(list) = managed_fields(obj) else {
        return Ok(Vec::new());
    };
    let Value::Array(list) = list else {
        return Err("metadata.managedFields must be a list".into());
    };
    let mut entries: Vec<Entry> = Vec::new();
    for raw in list {
        let text = |k: &str| {
            raw.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let set = match raw.get("fieldsV1") {
            Some(v) if !v.is_null() => FieldSet::from_fields_v1(v, 0)?,
            _ => FieldSet::default(),
        };
        let fields_type = text("fieldsType");
        if !fields_type.is_empty() && fields_type != "FieldsV1" {
            return Err(format!("unsupported fieldsType {fields_type:?}"));
        }
        let entry = Entry {
            manager: text("manager"),
            operation: text("operation"),
            api_version: text("apiVersion"),
            subresource: text("subresource"),
            time: raw.get("time").and_then(Value::as_str).map(str::to_string),
            set,
        };
        match entries.iter_mut().find(|e| e.same_identity(&entry)) {
            Some(existing) => existing.set = existing.set.union(&entry.set),
            None => entries.push(entry),
        }
    }
    Ok(entries)
}

fn seconds(time: Option<&str>) -> i64 {
    time.and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .map_or(0, |t| t.as_second())
}

/// Writes the entries into `obj` in upstream's order (operation, time,
/// manager, apiVersion, subresource); none removes the field.
fn encode(obj: &mut Value, mut entries: Vec<Entry>) {
    entries.retain(|e| !e.set.is_empty());
    entries.sort_by(|p, q| {
        (
            p.operation.as_str(),
            seconds(p.time.as_deref()),
            &p.manager,
            &p.api_version,
            &p.subresource,
        )
            .cmp(&(
                q.operation.as_str(),
                seconds(q.time.as_deref()),
                &q.manager,
                &q.api_version,
                &q.subresource,
            ))
    });
    let Some(obj) = obj.as_object_mut() else {
        return;
    };
    if entries.is_empty() {
        if let Some(Value::Object(meta)) = obj.get_mut("metadata") {
            meta.remove("managedFields");
        }
        return;
    }
    let list = entries.into_iter().map(Entry::into_json).collect();
    set_managed_fields(obj, list);
}

/// Puts `list` in `obj`'s `metadata.managedFields`, making the metadata if
/// need be.
fn set_managed_fields(obj: &mut Map<String, Value>, list: Vec<Value>) {
    let meta = obj
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(meta) = meta {
        meta.insert("managedFields".into(), Value::Array(list));
    }
}

fn without_managed_fields(obj: &Value) -> Value {
    let mut out = obj.clone();
    if let Some(Value::Object(meta)) = out.get_mut("metadata") {
        meta.remove("managedFields");
    }
    out
}

/// The metadata fields no manager ever owns.
const NEVER_OWNED_METADATA: [&str; 9] = [
    "name",
    "namespace",
    "creationTimestamp",
    "selfLink",
    "uid",
    "clusterName",
    "generation",
    "managedFields",
    "resourceVersion",
];

/// The fields no manager ever owns (upstream's stripMetaManager).
fn never_owned() -> &'static FieldSet {
    static SET: std::sync::LazyLock<FieldSet> = std::sync::LazyLock::new(never_owned_set);
    &SET
}

fn never_owned_set() -> FieldSet {
    let mut set = FieldSet::default();
    for top in ["apiVersion", "kind", "metadata"] {
        set.insert(&[field_pe(top)]);
    }
    for meta in NEVER_OWNED_METADATA {
        set.insert(&[field_pe("metadata"), field_pe(meta)]);
    }
    set
}

fn api_version_of(obj: &Value) -> String {
    obj.get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// Server-side apply: merges the applied configuration into the live object
/// (or creates it when `live` is `None`) and records `manager`'s ownership
/// in `metadata.managedFields`.
///
/// - The fields of `applied` become owned by `manager` (an `Apply` entry).
/// - A field another manager owns that the apply would change is a
///   conflict (409, upstream's message) unless `force`, which takes it over.
/// - Fields `manager` applied last time and no longer applies are removed
///   when no other manager owns them.
/// - Lists merge as the schema says (by key, as sets, or atomically), maps
///   key by key.
///
/// `applied` must be an object with an `apiVersion` and without
/// `metadata.managedFields` (400 otherwise); `now` is the RFC 3339 time
/// written into the entry. An object without managedFields has its existing
/// fields attributed to `before-first-apply` first, as upstream.
pub fn server_side_apply(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    schema: &PatchSchema,
    now: &str,
) -> Result<Value, PatchError> {
    server_side_apply_to(live, applied, manager, force, schema, "", now)
}

/// [`server_side_apply`] through a subresource (`status`): the manager's
/// entry records it, as upstream keeps a separate entry per subresource.
pub fn server_side_apply_to(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    schema: &PatchSchema,
    subresource: &str,
    now: &str,
) -> Result<Value, PatchError> {
    if manager.is_empty() {
        return Err(PatchError::bad(
            "fieldManager is required for apply requests",
        ));
    }
    if !applied.is_object() {
        return Err(PatchError::bad(
            "the applied configuration must be an object",
        ));
    }
    depth_of(applied)?;
    if let Some(live) = live {
        depth_of(live)?;
    }
    if managed_fields(applied).is_some_and(|m| m.as_array().is_none_or(|a| !a.is_empty())) {
        return Err(PatchError::bad("metadata.managedFields must be nil"));
    }
    let api_version = api_version_of(applied);
    if api_version.is_empty() {
        return Err(PatchError::bad(
            "apiVersion must be set in the applied configuration",
        ));
    }
    let node = schema.root();
    let live_clean = live.map(without_managed_fields);
    // Undecodable entries are dropped rather than blocking every apply.
    let mut entries = live.map(decode).and_then(Result::ok).unwrap_or_default();
    let strip = never_owned();

    if let (Some(live_clean), true) = (&live_clean, entries.is_empty()) {
        let existing = compare(None, Some(live_clean), node)?;
        entries.push(Entry {
            manager: BEFORE_FIRST_APPLY.into(),
            operation: UPDATE.into(),
            api_version: api_version_of(live_clean),
            subresource: String::new(),
            time: Some(now.to_string()),
            set: existing.added.union(&existing.modified).difference(strip),
        });
    }

    let mut merged = merge(live_clean.as_ref(), applied, node, 0)?;
    let applied_set = to_field_set(applied, node)?.difference(strip);
    let applier = match entries
        .iter()
        .position(|e| e.is(manager, APPLY, &api_version, subresource))
    {
        Some(i) => i,
        None => {
            entries.push(Entry {
                manager: manager.into(),
                operation: APPLY.into(),
                api_version: api_version.clone(),
                subresource: subresource.into(),
                time: None,
                set: FieldSet::default(),
            });
            entries.len() - 1
        }
    };
    let last = std::mem::replace(&mut entries[applier].set, applied_set);
    entries[applier].api_version = api_version;
    let previous_time = entries[applier].time.replace(now.to_string());

    if !last.is_empty() {
        let managed = entries
            .iter()
            .fold(FieldSet::default(), |acc, e| acc.union(&e.set));
        prune(&mut merged, node, &last, &managed, 0)?;
    }

    let changes = compare(live_clean.as_ref(), Some(&merged), node)?;
    let changed = changes.added.union(&changes.modified);
    let mut conflicts: Vec<(usize, FieldSet)> = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        if i == applier {
            continue;
        }
        let taken = entry.set.intersection(&changed);
        if !taken.is_empty() {
            conflicts.push((i, taken));
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflict_error(&entries, &conflicts));
    }
    for (i, taken) in conflicts {
        entries[i].set = entries[i].set.difference(&taken);
    }
    for (i, entry) in entries.iter_mut().enumerate() {
        if i != applier {
            entry.set = entry.set.difference(&changes.removed);
        }
    }
    // A no-op apply leaves the entry's time alone, as upstream.
    if live_clean.as_ref() == Some(&merged) && previous_time.is_some() {
        entries[applier].time = previous_time;
    }
    encode(&mut merged, entries);
    Ok(merged)
}

fn conflict_error(entries: &[Entry], conflicts: &[(usize, FieldSet)]) -> PatchError {
    let mut by_manager: Vec<(&Entry, Vec<String>)> = conflicts
        .iter()
        .map(|(i, set)| {
            (
                &entries[*i],
                set.paths().iter().map(|p| display_path(p)).collect(),
            )
        })
        .collect();
    by_manager.sort_by(|a, b| (&a.0.manager, &a.0.operation).cmp(&(&b.0.manager, &b.0.operation)));
    let mut list = Vec::new();
    for (entry, paths) in &by_manager {
        for field in paths {
            list.push(FieldConflict {
                manager: entry.manager.clone(),
                message: format!("conflict with {}", entry.describe()),
                field: field.clone(),
            });
        }
    }
    let message = match list.as_slice() {
        [one] => format!(
            "Apply failed with 1 conflict: {}: {}",
            one.message, one.field
        ),
        _ => {
            let mut lines = Vec::new();
            for (entry, paths) in &by_manager {
                lines.push(format!("conflicts with {}:", entry.describe()));
                lines.extend(paths.iter().map(|p| format!("- {p}")));
            }
            format!(
                "Apply failed with {} conflicts: {}",
                list.len(),
                lines.join("\n")
            )
        }
    };
    PatchError::Conflict {
        message,
        conflicts: list,
    }
}

/// Records a non-apply write (create, update, JSON/merge/strategic patch) by
/// `manager` in `new`'s `metadata.managedFields`, with the built-in merge
/// rules of `new`'s kind ([`patch_strategy_for`]; custom resources get
/// untyped rules: use [`record_update_manager_with_schema`] with the CRD's
/// schema to key their lists).
///
/// The fields that changed from `old` (`None` for a create) become owned by
/// `manager`'s `Update` entry for `new`'s apiVersion and are taken from every
/// other manager; fields that were removed leave every manager's set.
///
/// As upstream: managedFields sent in `new` are honoured when present
/// (`[]` or `[{}]` clears them), otherwise `old`'s are carried over; an
/// existing object without managedFields does not start tracking on
/// update; the entry's time only moves when the write changed something.
/// An empty `manager` records nothing: `new` is left as it is (the API
/// server defaults the manager from the User-Agent, so an empty one means
/// the caller already recorded the write, e.g. an apply). This never fails:
/// when the objects cannot be compared, `old`'s managedFields are kept.
pub fn record_update_manager(old: Option<&Value>, new: &mut Value, manager: &str, now: &str) {
    let api_version = api_version_of(new);
    let kind = new
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let schema = patch_strategy_for(&api_version, &kind);
    record_update_manager_with_schema(old, new, manager, &schema, "", now);
}

/// [`record_update_manager`] with an explicit schema (for custom resources,
/// [`PatchSchema::from_openapi_v3`] of the CRD version's schema).
pub fn record_update_manager_with_schema(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    schema: &PatchSchema,
    subresource: &str,
    now: &str,
) {
    if manager.is_empty() {
        return;
    }
    if try_record_update(old, new, manager, schema, subresource, now).is_err() {
        let previous = old.and_then(managed_fields).cloned();
        if let Some(Value::Object(meta)) = new.get_mut("metadata") {
            match previous {
                Some(p) => {
                    meta.insert("managedFields".into(), p);
                }
                None => {
                    meta.remove("managedFields");
                }
            }
        }
    }
}

/// A create without managedFields of its own: every field is `manager`'s,
/// written as FieldsV1 straight from the object (the same entry the
/// general comparison would make, without its sets).
fn record_create(
    new: &mut Value,
    manager: &str,
    api_version: String,
    schema: &PatchSchema,
    now: &str,
) -> Result<(), PatchError> {
    let fields = created_fields_v1(new, schema.root(), &NEVER_OWNED_METADATA)?;
    if fields.is_empty() {
        return Ok(());
    }
    let entry = Entry {
        manager: manager.into(),
        operation: UPDATE.into(),
        api_version,
        subresource: String::new(),
        time: Some(now.to_string()),
        set: FieldSet::default(),
    };
    if let Some(obj) = new.as_object_mut() {
        set_managed_fields(obj, vec![entry.into_json_with(Value::Object(fields))]);
    }
    Ok(())
}

fn try_record_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    schema: &PatchSchema,
    subresource: &str,
    now: &str,
) -> Result<(), PatchError> {
    depth_of(new)?;
    if let Some(old) = old {
        depth_of(old)?;
    }
    let mut entries = match managed_fields(new) {
        Some(list) if is_reset(list) => Vec::new(),
        _ => match decode(new) {
            Ok(e) if !e.is_empty() => e,
            _ => old.map(decode).and_then(Result::ok).unwrap_or_default(),
        },
    };
    if let Some(Value::Object(meta)) = new.get_mut("metadata") {
        meta.remove("managedFields");
    }
    if entries.is_empty() && old.is_some() {
        return Ok(());
    }
    let api_version = api_version_of(new);
    if entries.is_empty() {
        record_create(new, manager, api_version, schema, now)?;
        return Ok(());
    }
    // `compare` passes over `metadata.managedFields`, so `old` needs no copy
    // without them.
    let changes = compare(old, Some(new), schema.root())?;
    let changed = if changes.modified.is_empty() {
        changes.added
    } else {
        changes.added.union(&changes.modified)
    };
    for entry in &mut entries {
        entry.set = entry.set.difference(&changed).difference(&changes.removed);
    }
    let owned = changed.difference(never_owned());
    if !owned.is_empty() {
        match entries
            .iter_mut()
            .find(|e| e.is(manager, UPDATE, &api_version, subresource))
        {
            Some(entry) => {
                entry.set = entry.set.union(&owned);
                entry.time = Some(now.to_string());
            }
            None => entries.push(Entry {
                manager: manager.into(),
                operation: UPDATE.into(),
                api_version,
                subresource: subresource.into(),
                time: Some(now.to_string()),
                set: owned,
            }),
        }
    }
    encode(new, entries);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A create's entry written straight from the object is the one the
    /// general comparison makes.
    #[test]
    fn a_create_records_what_the_comparison_would() {
        let objects = [
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "p", "namespace": "d", "uid": "u", "generation": 1,
                    "creationTimestamp": "2026-01-01T00:00:00Z",
                    "labels": {"a": "b"}, "annotations": {},
                    "ownerReferences": [{"apiVersion": "v1", "kind": "K", "name": "o", "uid": "u1"}]},
                "spec": {
                    "containers": [
                        {"name": "a", "image": "i", "ports": [{"containerPort": 80}],
                         "env": [{"name": "X", "value": "1"}, {"name": "X", "value": "2"}],
                         "resources": {"requests": {"cpu": "1"}}, "command": ["sh", "-c"]},
                        {"name": "b", "image": "j", "securityContext": {}}
                    ],
                    "tolerations": [{"key": "k", "operator": "Exists"}],
                    "volumes": []
                },
                "status": {"phase": "Pending"}
            }),
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "d", "finalizers": ["x", "y"]},
                "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "w"}},
                    "template": {"metadata": {"labels": {"app": "w"}},
                        "spec": {"containers": [{"name": "w", "image": "nginx"}]}}}}),
            json!({"apiVersion": "example.com/v1", "kind": "Widget",
                "metadata": {"name": "w"}, "spec": {"list": [1, 2], "m": {"k": null}}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "only"}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "reset", "managedFields": []},
                "data": {"k": "v"}}),
        ];
        for object in objects {
            let mut fast = object.clone();
            record_update_manager(None, &mut fast, "m", "2026-01-01T00:00:00Z");

            let mut slow = object.clone();
            if let Some(Value::Object(meta)) = slow.get_mut("metadata") {
                meta.remove("managedFields");
            }
            let schema = patch_strategy_for(
                &api_version_of(&object),
                object["kind"].as_str().unwrap_or_default(),
            );
            let added = compare(None, Some(&slow), schema.root()).unwrap().added;
            let entry = Entry {
                manager: "m".into(),
                operation: UPDATE.into(),
                api_version: api_version_of(&object),
                subresource: String::new(),
                time: Some("2026-01-01T00:00:00Z".into()),
                set: added.difference(never_owned()),
            };
            encode(&mut slow, vec![entry]);
            assert_eq!(fast, slow, "{object}");
        }
    }
}
