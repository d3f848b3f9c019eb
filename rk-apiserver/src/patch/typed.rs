//! Walks of a value alongside its schema for server-side apply
//! (sigs.k8s.io/structured-merge-diff `typed`): the fields a configuration
//! sets, merging a configuration into a live object, comparing two objects,
//! and removing fields nobody manages any more.

use std::collections::{BTreeSet, HashMap, HashSet};

use serde_json::{Map, Value};

use super::fieldset::{FieldSet, display_path, element_pe, field_pe};
use super::schema::{Node, SsaList};
use super::{PatchError, check_depth};

fn invalid(message: String) -> PatchError {
    PatchError::Invalid(message)
}

/// The fields `value` sets: leaves, atomic lists and maps, list elements
/// (with their own fields), empty maps and `null`s.
pub(crate) fn to_field_set(value: &Value, node: Node<'_>) -> Result<FieldSet, PatchError> {
    let mut set = FieldSet::default();
    fill(value, node, &mut set, 0)?;
    Ok(set)
}

/// Fills `set` (the node at `value`'s path) with the paths under `value`;
/// returns whether `value` is itself a leaf.
fn fill(
    value: &Value,
    node: Node<'_>,
    set: &mut FieldSet,
    depth: usize,
) -> Result<bool, PatchError> {
    check_depth(depth)?;
    match value {
        Value::Object(m) => {
            if node.is_atomic_map() {
                return Ok(true);
            }
            for (k, v) in m {
                let pe = field_pe(k);
                let mut child = FieldSet::default();
                let leaf = fill(v, node.field(k), &mut child, depth + 1)?;
                let empty_map = matches!(v, Value::Object(c) if c.is_empty());
                if leaf || v.is_null() || empty_map || !node.is_struct_field(k) {
                    set.insert_member(&pe);
                }
                set.insert_child(&pe, child);
            }
            Ok(false)
        }
        Value::Array(items) => {
            let rule = node.ssa_list();
            if rule == SsaList::Atomic {
                return Ok(true);
            }
            let mut seen = HashSet::new();
            for item in items {
                let pe = element_pe(item, &rule).map_err(invalid)?;
                if !seen.insert(pe.clone()) {
                    return Err(invalid(format!(
                        "duplicate entries for key {}",
                        display_path(&[pe])
                    )));
                }
                let mut child = FieldSet::default();
                fill(item, node.item(), &mut child, depth + 1)?;
                set.insert_member(&pe);
                set.insert_child(&pe, child);
            }
            Ok(false)
        }
        _ => Ok(true),
    }
}

/// `value` without `null` map entries, as a typed decoding would leave it.
pub(crate) fn without_nulls(value: &Value) -> Value {
    match value {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(without_nulls).collect()),
        v => v.clone(),
    }
}

/// Merges an applied configuration `rhs` into the live value `lhs`: maps
/// field by field, keyed lists and sets element by element, everything else
/// (scalars, atomic lists and maps) replaced.
pub(crate) fn merge(
    lhs: Option<&Value>,
    rhs: &Value,
    node: Node<'_>,
    depth: usize,
) -> Result<Value, PatchError> {
    check_depth(depth)?;
    match (lhs, rhs) {
        (Some(Value::Object(l)), Value::Object(r)) if !node.is_atomic_map() => {
            let mut out = l.clone();
            for (k, rv) in r {
                if rv.is_null() {
                    out.remove(k);
                    continue;
                }
                let merged = merge(l.get(k), rv, node.field(k), depth + 1)?;
                out.insert(k.clone(), merged);
            }
            Ok(Value::Object(out))
        }
        (Some(Value::Array(l)), Value::Array(r)) => match node.ssa_list() {
            SsaList::Atomic => Ok(without_nulls(rhs)),
            rule => merge_list(l, r, &rule, node.item(), depth),
        },
        _ => Ok(without_nulls(rhs)),
    }
}

/// The places in an applied configuration that set an atomic list, map or
/// struct (`.spec.selector`, `.spec.containers[0].args`), which a
/// mutating admission policy may not set: it merges without ownership, so
/// replacing a whole atomic value could drop what others wrote.
pub(crate) fn atomic_paths(value: &Value, node: Node<'_>, path: &str, out: &mut Vec<String>) {
    match value {
        Value::Object(m) => {
            if node.is_atomic_map() {
                out.push(path.to_string());
                return;
            }
            for (k, v) in m {
                atomic_paths(v, node.field(k), &format!("{path}.{k}"), out);
            }
        }
        Value::Array(items) => match node.ssa_list() {
            SsaList::Atomic => out.push(path.to_string()),
            SsaList::Set => {}
            SsaList::Map(_) => {
                for (i, item) in items.iter().enumerate() {
                    atomic_paths(item, node.item(), &format!("{path}[{i}]"), out);
                }
            }
        },
        _ => {}
    }
}

/// The tokens of a list's elements in order, and each token's element
/// (`None` when several elements share it).
type ListIndex<'v> = (Vec<String>, HashMap<String, Option<&'v Value>>);

/// Indexes a list by element token.
fn index_list<'v>(
    items: &'v [Value],
    rule: &SsaList,
    allow_duplicates: bool,
) -> Result<ListIndex<'v>, PatchError> {
    let mut pes = Vec::with_capacity(items.len());
    let mut observed: HashMap<String, Option<&Value>> = HashMap::new();
    for item in items {
        let pe = element_pe(item, rule).map_err(invalid)?;
        if let Some(slot) = observed.get_mut(&pe) {
            if !allow_duplicates {
                return Err(invalid(format!(
                    "duplicate entries for key {}",
                    display_path(&[pe])
                )));
            }
            *slot = None;
        } else {
            observed.insert(pe.clone(), Some(item));
        }
        pes.push(pe);
    }
    Ok((pes, observed))
}

/// Merges two associative lists, keeping upstream's order: the live order,
/// with the applied elements in the applied order, new ones placed after the
/// shared element that precedes them in the configuration.
fn merge_list(
    lhs: &[Value],
    rhs: &[Value],
    rule: &SsaList,
    item: Node<'_>,
    depth: usize,
) -> Result<Value, PatchError> {
    let (rhs_pes, observed_rhs) = index_list(rhs, rule, false)?;
    let (lhs_pes, observed_lhs) = index_list(lhs, rule, true)?;
    let mut shared = rhs_pes.iter().filter(|pe| observed_lhs.contains_key(*pe));
    let mut next_shared = shared.next();
    let mut merged_rhs: HashSet<&str> = HashSet::new();
    let mut out = Vec::with_capacity(lhs.len().max(rhs.len()));
    let merge_item = |pe: &str| -> Result<Value, PatchError> {
        let l = observed_lhs.get(pe).copied().flatten();
        match observed_rhs.get(pe).copied().flatten() {
            Some(r) => merge(l, r, item, depth + 1),
            None => Ok(l.cloned().unwrap_or(Value::Null)),
        }
    };
    let (mut li, mut ri) = (0, 0);
    while li < lhs.len() || ri < rhs.len() {
        if li < lhs.len() && ri < rhs.len() {
            let pe = &lhs_pes[li];
            if *pe == rhs_pes[ri] {
                merged_rhs.insert(pe);
                out.push(merge_item(pe)?);
                li += 1;
                ri += 1;
                next_shared = shared.next();
                continue;
            }
            if observed_rhs.contains_key(pe) && next_shared.is_some_and(|n| n != pe) {
                li += 1;
                continue;
            }
        }
        if li < lhs.len() {
            let pe = &lhs_pes[li];
            if !observed_rhs.contains_key(pe) {
                out.push(lhs[li].clone());
                li += 1;
                continue;
            } else if merged_rhs.contains(pe.as_str()) {
                li += 1;
            }
        }
        if ri < rhs.len() {
            let pe = &rhs_pes[ri];
            merged_rhs.insert(pe);
            out.push(merge_item(pe)?);
            ri += 1;
            if next_shared == Some(pe) {
                next_shared = shared.next();
            }
        }
    }
    Ok(Value::Array(out))
}

/// The differences between two versions of an object.
#[derive(Debug, Default)]
pub(crate) struct Comparison {
    /// Present only in the new object (fields, list elements, and maps that
    /// did not exist).
    pub(crate) added: FieldSet,
    /// Leaves whose value changed.
    pub(crate) modified: FieldSet,
    /// Present only in the old object.
    pub(crate) removed: FieldSet,
}

/// Compares `old` and `new`.
pub(crate) fn compare(
    old: Option<&Value>,
    new: Option<&Value>,
    node: Node<'_>,
) -> Result<Comparison, PatchError> {
    if let (None, Some(new)) = (old, new) {
        return Ok(Comparison {
            added: added_fields(new, node)?,
            ..Comparison::default()
        });
    }
    let mut cmp = Comparison::default();
    compare_at(old, new, node, &mut Vec::new(), &mut cmp, true, 0)?;
    Ok(cmp)
}

/// What [`compare`] reports as added for a new object against nothing,
/// built top down: each path element is made once, where a comparison
/// inserts every path from the root.
fn added_fields(new: &Value, node: Node<'_>) -> Result<FieldSet, PatchError> {
    let mut set = FieldSet::default();
    match new {
        Value::Object(m) if !node.is_atomic_map() => {
            for (k, v) in m {
                let mark_self = !node.is_value_struct(k);
                add_all(v, node.field(k), &mut set, field_pe(k), mark_self, 1)?;
            }
        }
        _ => {}
    }
    Ok(set)
}

/// Puts `value` (element `pe` of the set `parent` describes) and
/// everything under it into `parent`, as [`compare_at`] with nothing on the
/// old side would.
fn add_all(
    value: &Value,
    node: Node<'_>,
    parent: &mut FieldSet,
    pe: String,
    mark_self: bool,
    depth: usize,
) -> Result<(), PatchError> {
    check_depth(depth)?;
    let mut inner = FieldSet::default();
    match value {
        Value::Object(m) if !node.is_atomic_map() && !m.is_empty() => {
            // managedFields are bookkeeping, never a field anyone owns.
            let in_metadata = depth == 1 && pe == "f:metadata";
            for (k, v) in m {
                if in_metadata && k == "managedFields" {
                    continue;
                }
                let mark = !node.is_value_struct(k);
                add_all(v, node.field(k), &mut inner, field_pe(k), mark, depth + 1)?;
            }
        }
        Value::Array(items) if node.ssa_list() != SsaList::Atomic && !items.is_empty() => {
            let mut order = Vec::new();
            let groups = group(items, &node.ssa_list(), &mut order)?;
            for element in order {
                match groups.get(&element).map(Vec::as_slice) {
                    Some([only]) => {
                        add_all(only, node.item(), &mut inner, element, true, depth + 1)?
                    }
                    // Duplicates: the element as a whole.
                    _ => inner.insert_member(&element),
                }
            }
        }
        // A leaf: a scalar, an empty or atomic map or list.
        _ => {
            parent.insert_member(&pe);
            return Ok(());
        }
    }
    if mark_self {
        parent.insert_member(&pe);
    }
    parent.insert_child(&pe, inner);
    Ok(())
}

/// The FieldsV1 JSON of what [`compare`] reports as added for a new object
/// against nothing, with the fields nobody owns left out (`apiVersion`,
/// `kind`, `metadata` itself and the metadata fields in `skip_metadata`):
/// a create's ownership, written straight from the object without building
/// a [`FieldSet`] first.
pub(crate) fn created_fields_v1(
    new: &Value,
    node: Node<'_>,
    skip_metadata: &[&str],
) -> Result<Map<String, Value>, PatchError> {
    let mut out = Map::new();
    if let Value::Object(m) = new
        && !node.is_atomic_map()
    {
        for (k, v) in m {
            match k.as_str() {
                "apiVersion" | "kind" => {}
                "metadata" => {
                    let skip = |key: &str| key == "managedFields" || skip_metadata.contains(&key);
                    emit_added(v, node.field(k), &mut out, field_pe(k), false, 1, &skip)?;
                }
                _ => {
                    let mark = !node.is_value_struct(k);
                    emit_added(v, node.field(k), &mut out, field_pe(k), mark, 1, &|_| false)?;
                }
            }
        }
    }
    Ok(out)
}

/// [`add_all`] writing FieldsV1 JSON into `parent`: a member with children
/// carries `"."`, a member alone is `{}`. `skip` names fields of this
/// object that are left out.
fn emit_added(
    value: &Value,
    node: Node<'_>,
    parent: &mut Map<String, Value>,
    pe: String,
    mark_self: bool,
    depth: usize,
    skip: &dyn Fn(&str) -> bool,
) -> Result<(), PatchError> {
    check_depth(depth)?;
    let mut inner = Map::new();
    match value {
        Value::Object(m) if !node.is_atomic_map() && !m.is_empty() => {
            for (k, v) in m {
                if skip(k) {
                    continue;
                }
                let mark = !node.is_value_struct(k);
                let child = node.field(k);
                emit_added(v, child, &mut inner, field_pe(k), mark, depth + 1, &|_| {
                    false
                })?;
            }
        }
        Value::Array(items) if node.ssa_list() != SsaList::Atomic && !items.is_empty() => {
            for (element, members) in group_in_order(items, &node.ssa_list())? {
                match members.as_slice() {
                    [only] => emit_added(
                        only,
                        node.item(),
                        &mut inner,
                        element,
                        true,
                        depth + 1,
                        &|_| false,
                    )?,
                    // Duplicates: the element as a whole.
                    _ => {
                        inner.insert(element, Value::Object(Map::new()));
                    }
                }
            }
        }
        // A leaf: a scalar, an empty or atomic map or list.
        _ => {
            parent.insert(pe, Value::Object(Map::new()));
            return Ok(());
        }
    }
    if inner.is_empty() {
        if mark_self {
            parent.insert(pe, Value::Object(Map::new()));
        }
        return Ok(());
    }
    if mark_self {
        inner.insert(".".to_string(), Value::Object(Map::new()));
    }
    parent.insert(pe, Value::Object(inner));
    Ok(())
}

fn compare_at(
    l: Option<&Value>,
    r: Option<&Value>,
    node: Node<'_>,
    path: &mut Vec<String>,
    cmp: &mut Comparison,
    mark_self: bool,
    depth: usize,
) -> Result<(), PatchError> {
    check_depth(depth)?;
    let all =
        |f: fn(&Value) -> bool| l.is_none_or(f) && r.is_none_or(f) && (l.is_some() || r.is_some());
    if all(Value::is_object) && !node.is_atomic_map() {
        let (lm, rm) = (l.and_then(Value::as_object), r.and_then(Value::as_object));
        if lm.is_none_or(Map::is_empty) && rm.is_none_or(Map::is_empty) {
            leaf(l, r, path, cmp);
            return Ok(());
        }
        let keys: BTreeSet<&String> = lm.iter().chain(rm.iter()).flat_map(|m| m.keys()).collect();
        // managedFields are bookkeeping, never a field anyone owns.
        let in_metadata = depth == 1 && path.len() == 1 && path[0] == "f:metadata";
        for k in keys {
            if in_metadata && k == "managedFields" {
                continue;
            }
            path.push(field_pe(k));
            let (lv, rv) = (lm.and_then(|m| m.get(k)), rm.and_then(|m| m.get(k)));
            compare_at(
                lv,
                rv,
                node.field(k),
                path,
                cmp,
                !node.is_value_struct(k),
                depth + 1,
            )?;
            path.pop();
        }
    } else if all(Value::is_array) && node.ssa_list() != SsaList::Atomic {
        let (la, ra) = (l.and_then(Value::as_array), r.and_then(Value::as_array));
        if la.is_none_or(Vec::is_empty) && ra.is_none_or(Vec::is_empty) {
            leaf(l, r, path, cmp);
            return Ok(());
        }
        compare_items(
            la.map_or(&[], Vec::as_slice),
            ra.map_or(&[], Vec::as_slice),
            node,
            path,
            cmp,
            depth,
        )?;
    } else {
        leaf(l, r, path, cmp);
        return Ok(());
    }
    if mark_self && !path.is_empty() {
        if l.is_none() {
            cmp.added.insert(path);
        } else if r.is_none() {
            cmp.removed.insert(path);
        }
    }
    Ok(())
}

fn leaf(l: Option<&Value>, r: Option<&Value>, path: &[String], cmp: &mut Comparison) {
    if path.is_empty() {
        return;
    }
    match (l, r) {
        (None, Some(_)) => cmp.added.insert(path),
        (Some(_), None) => cmp.removed.insert(path),
        (Some(a), Some(b)) if a != b => cmp.modified.insert(path),
        _ => {}
    }
}

/// Groups the elements of a list by token, in first-seen order.
/// The items of a list by their path element, in the order each element
/// first appears. Lists are mostly short: up to 16 items are matched by a
/// scan rather than hashed.
fn group_in_order<'v>(
    items: &'v [Value],
    rule: &SsaList,
) -> Result<Vec<(String, Vec<&'v Value>)>, PatchError> {
    const SCANNED: usize = 16;
    let mut groups: Vec<(String, Vec<&Value>)> = Vec::with_capacity(items.len());
    let mut index: HashMap<String, usize> = HashMap::new();
    for item in items {
        let pe = element_pe(item, rule).map_err(invalid)?;
        let at = if items.len() <= SCANNED {
            groups.iter().position(|(seen, _)| *seen == pe)
        } else {
            index.get(&pe).copied()
        };
        match at {
            Some(i) => groups[i].1.push(item),
            None => {
                if items.len() > SCANNED {
                    index.insert(pe.clone(), groups.len());
                }
                groups.push((pe, vec![item]));
            }
        }
    }
    Ok(groups)
}

fn group<'v>(
    items: &'v [Value],
    rule: &SsaList,
    order: &mut Vec<String>,
) -> Result<HashMap<String, Vec<&'v Value>>, PatchError> {
    let mut groups: HashMap<String, Vec<&Value>> = HashMap::new();
    for item in items {
        let pe = element_pe(item, rule).map_err(invalid)?;
        let entry = groups.entry(pe.clone()).or_default();
        if entry.is_empty() && !order.contains(&pe) {
            order.push(pe);
        }
        entry.push(item);
    }
    Ok(groups)
}

fn compare_items(
    la: &[Value],
    ra: &[Value],
    node: Node<'_>,
    path: &mut Vec<String>,
    cmp: &mut Comparison,
    depth: usize,
) -> Result<(), PatchError> {
    let rule = node.ssa_list();
    let mut order = Vec::new();
    let lg = group(la, &rule, &mut order)?;
    let rg = group(ra, &rule, &mut order)?;
    let none = Vec::new();
    for pe in order {
        let (l, r) = (lg.get(&pe).unwrap_or(&none), rg.get(&pe).unwrap_or(&none));
        path.push(pe);
        match (l.len(), r.len()) {
            (0..=1, 0..=1) => {
                compare_at(
                    l.first().copied(),
                    r.first().copied(),
                    node.item(),
                    path,
                    cmp,
                    true,
                    depth + 1,
                )?;
            }
            (2.., 2..) => {
                if l != r {
                    cmp.modified.insert(path);
                }
            }
            (2.., _) => {
                if let Some(first) = r.first() {
                    compare_at(None, Some(first), node.item(), path, cmp, true, depth + 1)?;
                }
                cmp.removed.insert(path);
            }
            (_, _) => {
                if let Some(first) = l.first() {
                    compare_at(Some(first), None, node.item(), path, cmp, true, depth + 1)?;
                }
                cmp.added.insert(path);
            }
        }
        path.pop();
    }
    Ok(())
}

/// Removes from `value` what `last` (the applier's previous field set)
/// holds and no manager (`managed`, the union of every set, the applier's new
/// one included) owns any more. A struct field counts as owned when
/// anything under it is; a list element or map entry only when it is itself.
pub(crate) fn prune(
    value: &mut Value,
    node: Node<'_>,
    last: &FieldSet,
    managed: &FieldSet,
    depth: usize,
) -> Result<(), PatchError> {
    check_depth(depth)?;
    let empty = FieldSet::default();
    match value {
        Value::Object(m) if !node.is_atomic_map() => {
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                let pe = field_pe(&k);
                let named = node.is_struct_field(&k);
                let in_last = last.has_member(&pe) || (named && last.child(&pe).is_some());
                let in_managed = managed.has_member(&pe) || (named && managed.child(&pe).is_some());
                if in_last && !in_managed {
                    m.remove(&k);
                    continue;
                }
                let (Some(last_child), Some(v)) = (last.child(&pe), m.get_mut(&k)) else {
                    continue;
                };
                let was_filled = is_filled(v);
                prune(
                    v,
                    node.field(&k),
                    last_child,
                    managed.child(&pe).unwrap_or(&empty),
                    depth + 1,
                )?;
                if was_filled && !is_filled(v) {
                    m.remove(&k);
                }
            }
        }
        Value::Array(items) => {
            let rule = node.ssa_list();
            if rule == SsaList::Atomic {
                return Ok(());
            }
            let mut kept = Vec::with_capacity(items.len());
            for mut item in items.drain(..) {
                let Ok(pe) = element_pe(&item, &rule) else {
                    kept.push(item);
                    continue;
                };
                if last.has_member(&pe) && !managed.has_member(&pe) {
                    continue;
                }
                if let Some(last_child) = last.child(&pe) {
                    prune(
                        &mut item,
                        node.item(),
                        last_child,
                        managed.child(&pe).unwrap_or(&empty),
                        depth + 1,
                    )?;
                }
                kept.push(item);
            }
            *items = kept;
        }
        _ => {}
    }
    Ok(())
}

fn is_filled(v: &Value) -> bool {
    match v {
        Value::Object(m) => !m.is_empty(),
        Value::Array(a) => !a.is_empty(),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The top-down set of a new object is what the general comparison
    /// reports for it.
    #[test]
    fn added_fields_match_a_comparison_against_nothing() {
        let schema = crate::patch::patch_strategy_for("v1", "Pod");
        let pod = serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "labels": {"a": "b", "c": ""}, "annotations": {},
                "managedFields": [{"manager": "x"}],
                "ownerReferences": [{"apiVersion": "v1", "kind": "K", "name": "o", "uid": "u1"}]},
            "spec": {
                "containers": [
                    {"name": "a", "image": "i", "ports": [{"containerPort": 80, "protocol": "TCP"}],
                     "env": [{"name": "X", "value": "1"}, {"name": "X", "value": "2"}],
                     "resources": {"requests": {"cpu": "1"}}, "command": ["sh", "-c"]},
                    {"name": "b", "image": "j", "securityContext": {}}
                ],
                "tolerations": [{"key": "k", "operator": "Exists"}],
                "nodeSelector": {"disk": "ssd"},
                "volumes": []
            },
            "status": {"phase": "Pending", "conditions": [{"type": "Ready", "status": "False"}]}
        });
        let fast = compare(None, Some(&pod), schema.root()).unwrap();
        let mut slow = Comparison::default();
        compare_at(
            None,
            Some(&pod),
            schema.root(),
            &mut Vec::new(),
            &mut slow,
            true,
            0,
        )
        .unwrap();
        assert_eq!(fast.added, slow.added);
        assert!(fast.modified.is_empty() && fast.removed.is_empty());
        assert!(!fast.added.is_empty());
    }
}
