//! Strategic merge patch, as k8s.io/apimachinery/pkg/util/strategicpatch
//! applies it on the server.
//!
//! Maps merge recursively and `null` deletes a key. A list merges when its
//! field's strategy is `merge`: maps by their merge key, scalars by union;
//! otherwise the patch's list replaces it. Directives: `$patch: replace` /
//! `delete` on a map or a list element, `$retainKeys`,
//! `$deleteFromPrimitiveList/<field>`, `$setElementOrder/<field>`.

use serde_json::{Map, Value};

use super::schema::{Node, SmpList};
use super::{PatchError, PatchSchema, check_depth, parse_json};

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList";
const SET_ELEMENT_ORDER: &str = "$setElementOrder";

type Object = Map<String, Value>;

/// Applies a strategic merge patch to `original` with the merge rules of
/// `schema`.
///
/// Custom resources (a schema without built-in rules) get 415, as upstream
/// (`strategic merge patch format is not supported`); a malformed patch or
/// directive 400; a list of lists 422.
pub fn apply_strategic_merge_patch(
    original: &Value,
    patch: &[u8],
    schema: &PatchSchema,
) -> Result<Value, PatchError> {
    if !schema.supports_strategic_merge() {
        return Err(PatchError::UnsupportedMediaType(
            "strategic merge patch format is not supported".into(),
        ));
    }
    let Value::Object(patch) = parse_json(patch, "strategic merge patch")? else {
        return Err(PatchError::bad("invalid JSON document"));
    };
    let original = match original {
        Value::Object(m) => m.clone(),
        Value::Null => Object::new(),
        _ => return Err(PatchError::bad("invalid JSON document")),
    };
    Ok(Value::Object(merge_map(original, patch, schema.root(), 0)?))
}

fn no_merge_key(value: &Value, key: &str) -> PatchError {
    PatchError::bad(format!(
        "map: {value} does not contain declared merge key: {key}"
    ))
}

fn merge_map(
    mut original: Object,
    mut patch: Object,
    node: Node<'_>,
    depth: usize,
) -> Result<Object, PatchError> {
    check_depth(depth)?;
    if let Some(directive) = patch.remove(DIRECTIVE) {
        match directive.as_str() {
            Some("replace") => return Ok(clean_added_map(patch)),
            Some("delete") => return Ok(Object::new()),
            // Upstream refuses it; merging is what a map does anyway.
            Some("merge") => {}
            _ => {
                return Err(PatchError::bad(format!(
                    "unknown patch type: {directive} in map: {}",
                    Value::Object(patch)
                )));
            }
        }
    }
    apply_retain_keys(&mut original, &mut patch)?;
    apply_set_element_order(&mut original, &mut patch, node, depth)?;

    for (key, patch_value) in patch {
        let (key, delete_list) = match key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
            Some(rest) => match rest.strip_prefix('/') {
                Some(field) if !field.is_empty() => (field.to_string(), true),
                _ => return Err(PatchError::bad("invalid patch format of primitive list")),
            },
            None => (key, false),
        };
        if patch_value.is_null() {
            original.remove(&key);
            continue;
        }
        let child = node.field(&key);
        match (original.get_mut(&key), patch_value) {
            (Some(Value::Object(o)), Value::Object(p)) => {
                let merged = merge_map(std::mem::take(o), p, child, depth + 1)?;
                original.insert(key, Value::Object(merged));
            }
            (Some(Value::Array(o)), Value::Array(p)) => {
                let merged = match child.smp_list() {
                    SmpList::Merge(merge_key) => {
                        merge_list(std::mem::take(o), p, child, merge_key, delete_list, depth)?
                    }
                    SmpList::Replace if delete_list => {
                        merge_list(std::mem::take(o), p, child, None, true, depth)?
                    }
                    SmpList::Replace => clean_added_list(p),
                };
                original.insert(key, Value::Array(merged));
            }
            (_, patch_value) if !delete_list => match clean_added(patch_value) {
                Some(v) => {
                    original.insert(key, v);
                }
                None => {
                    original.remove(&key);
                }
            },
            _ => {}
        }
    }
    Ok(original)
}

/// `$retainKeys`: keys of the original missing from the list are cleared;
/// every key the patch sets must be in the list.
fn apply_retain_keys(original: &mut Object, patch: &mut Object) -> Result<(), PatchError> {
    let Some(retain) = patch.remove(RETAIN_KEYS) else {
        return Ok(());
    };
    let Value::Array(retain) = retain else {
        return Err(PatchError::bad("invalid patch format of retainKeys"));
    };
    let retained = |k: &str| retain.iter().any(|r| r.as_str() == Some(k));
    for (k, v) in patch.iter() {
        if v.is_null()
            || k.starts_with(DELETE_FROM_PRIMITIVE_LIST)
            || k.starts_with(SET_ELEMENT_ORDER)
        {
            continue;
        }
        if !retained(k) {
            return Err(PatchError::bad("invalid patch format of retainKeys"));
        }
    }
    original.retain(|k, _| retained(k));
    Ok(())
}

/// `$setElementOrder/<field>`: merges the field's list now and orders it:
/// the directive's order first, then the live order for elements only the
/// server has.
fn apply_set_element_order(
    original: &mut Object,
    patch: &mut Object,
    node: Node<'_>,
    depth: usize,
) -> Result<(), PatchError> {
    let directives: Vec<String> = patch
        .keys()
        .filter(|k| k.starts_with(SET_ELEMENT_ORDER))
        .cloned()
        .collect();
    for directive in directives {
        let bad_format = || PatchError::bad("invalid patch format of setElementOrder list");
        let field = match directive
            .strip_prefix(SET_ELEMENT_ORDER)
            .and_then(|r| r.strip_prefix('/'))
        {
            Some(f) if !f.is_empty() => f.to_string(),
            _ => return Err(bad_format()),
        };
        let Some(Value::Array(order)) = patch.remove(&directive) else {
            return Err(bad_format());
        };
        let original_list = match original.get(&field) {
            Some(Value::Array(l)) => Some(l.clone()),
            Some(_) => return Err(bad_format()),
            None => None,
        };
        let patch_list = match patch.remove(&field) {
            Some(Value::Array(l)) => Some(l),
            Some(_) => return Err(bad_format()),
            None => None,
        };
        let child = node.field(&field);
        let merge_key = match child.smp_list() {
            SmpList::Merge(k) => k,
            SmpList::Replace => None,
        };
        if let Some(p) = &patch_list {
            validate_order(p, &order, merge_key)?;
        }
        let merged = match (&original_list, patch_list) {
            (Some(o), None) => o.clone(),
            (None, Some(p)) => clean_added_list(p),
            (Some(o), Some(p)) => match child.smp_list() {
                SmpList::Merge(k) => merge_list(o.clone(), p, child, k, false, depth)?,
                SmpList::Replace => clean_added_list(p),
            },
            (None, None) => continue,
        };
        let (in_order, server_only) = partition(merged, &order, merge_key);
        let live_order = original_list.unwrap_or_default();
        let ordered =
            normalize_element_order(in_order, server_only, &order, &live_order, merge_key)?;
        original.insert(field, Value::Array(ordered));
    }
    Ok(())
}

/// The relative order of the patch's elements must agree with the
/// `$setElementOrder` list, and each must be in it.
fn validate_order(
    patch: &[Value],
    order: &[Value],
    merge_key: Option<&str>,
) -> Result<(), PatchError> {
    if patch.is_empty() || order.is_empty() {
        return Ok(());
    }
    let kept: Vec<&Value> = patch.iter().filter(|v| !is_delete_element(v)).collect();
    let (mut p, mut o) = (0, 0);
    while p < kept.len() && o < order.len() {
        if kept[p].get(DIRECTIVE).is_some() {
            p += 1;
            continue;
        }
        let equal = match merge_key {
            None => kept[p] == &order[o],
            Some(key) => {
                let left = kept[p].get(key).ok_or_else(|| no_merge_key(kept[p], key))?;
                let right = order[o]
                    .get(key)
                    .ok_or_else(|| no_merge_key(&order[o], key))?;
                left == right
            }
        };
        if equal {
            p += 1;
        }
        o += 1;
    }
    if p < kept.len() {
        return Err(PatchError::bad(format!(
            "The order in patch list: {} doesn't match $setElementOrder list: {}",
            Value::Array(patch.to_vec()),
            Value::Array(order.to_vec())
        )));
    }
    Ok(())
}

fn is_delete_element(v: &Value) -> bool {
    v.get(DIRECTIVE).and_then(Value::as_str) == Some("delete")
}

/// What identifies a list element: its merge key's value, or itself.
fn ident<'v>(v: &'v Value, merge_key: Option<&str>) -> Option<&'v Value> {
    match merge_key {
        Some(key) => v.get(key),
        None => Some(v),
    }
}

fn position(list: &[Value], item: &Value, merge_key: Option<&str>) -> Option<usize> {
    let id = ident(item, merge_key);
    list.iter().position(|v| ident(v, merge_key) == id)
}

#[derive(PartialEq, Eq, Clone, Copy, Debug)]
enum Kind {
    Null,
    Bool,
    Number,
    String,
    Object,
}

/// The one kind of all elements; mixed kinds are refused, lists of lists
/// are 422 as upstream.
fn element_kind(lists: &[&[Value]]) -> Result<Option<Kind>, PatchError> {
    let mut kind = None;
    for v in lists.iter().flat_map(|l| l.iter()) {
        let k = match v {
            Value::Null => Kind::Null,
            Value::Bool(_) => Kind::Bool,
            Value::Number(_) => Kind::Number,
            Value::String(_) => Kind::String,
            Value::Object(_) => Kind::Object,
            Value::Array(_) => {
                return Err(PatchError::Invalid(
                    "lists of lists are not supported".into(),
                ));
            }
        };
        match kind {
            None => kind = Some(k),
            Some(prev) if prev != k => {
                return Err(PatchError::bad("list element types are not identical"));
            }
            Some(_) => {}
        }
    }
    Ok(kind)
}

fn merge_list(
    original: Vec<Value>,
    patch: Vec<Value>,
    node: Node<'_>,
    merge_key: Option<&str>,
    delete_list: bool,
    depth: usize,
) -> Result<Vec<Value>, PatchError> {
    check_depth(depth + 1)?;
    if original.is_empty() && patch.is_empty() {
        return Ok(original);
    }
    let kind = element_kind(&[&original, &patch])?;
    if kind != Some(Kind::Object) {
        if delete_list {
            return Ok(original
                .into_iter()
                .filter(|v| !patch.contains(v))
                .collect());
        }
        let mut merged: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
        for v in original.iter().chain(patch.iter()) {
            if !merged.contains(v) {
                merged.push(v.clone());
            }
        }
        let (in_patch, server_only) = partition(merged, &patch, None);
        return normalize_element_order(in_patch, server_only, &patch, &original, None);
    }
    let key = merge_key.filter(|k| !k.is_empty()).ok_or_else(|| {
        PatchError::bad(format!(
            "cannot merge lists without merge key for {}",
            node.name()
        ))
    })?;
    let (original, patch) = split_special_elements(original, patch, key)?;
    let mut merged = original.clone();
    for element in &patch {
        let id = element.get(key).ok_or_else(|| no_merge_key(element, key))?;
        match merged.iter().position(|o| o.get(key) == Some(id)) {
            Some(i) => {
                let existing = std::mem::take(&mut merged[i]);
                merged[i] = match (existing, element.clone()) {
                    (Value::Object(o), Value::Object(p)) => {
                        Value::Object(merge_map(o, p, node.item(), depth + 1)?)
                    }
                    (_, p) => p,
                };
            }
            None => {
                if let Some(v) = clean_added(element.clone()) {
                    merged.push(v);
                }
            }
        }
    }
    let (in_patch, server_only) = partition(merged, &patch, Some(key));
    normalize_element_order(in_patch, server_only, &patch, &original, Some(key))
}

/// Handles `$patch` elements of a merging list of maps: `delete` removes the
/// original elements with that key, `replace` makes the list's other
/// elements the whole list. Returns the original and the patch without them.
fn split_special_elements(
    mut original: Vec<Value>,
    patch: Vec<Value>,
    key: &str,
) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let mut plain = Vec::with_capacity(patch.len());
    let mut replace = false;
    for mut element in patch {
        let directive = element.as_object_mut().and_then(|m| m.remove(DIRECTIVE));
        match directive {
            None => plain.push(element),
            Some(d) => match d.as_str() {
                Some("delete") => {
                    let id = element
                        .get(key)
                        .ok_or_else(|| no_merge_key(&element, key))?;
                    original.retain(|o| o.get(key) != Some(id));
                }
                Some("replace") => replace = true,
                // Upstream refuses it; an element merges anyway.
                Some("merge") => plain.push(element),
                _ => {
                    return Err(PatchError::bad(format!(
                        "unknown patch type: {d} in map: {element}"
                    )));
                }
            },
        }
    }
    if replace {
        let replaced = plain.into_iter().filter_map(clean_added).collect();
        Ok((replaced, Vec::new()))
    } else {
        Ok((original, plain))
    }
}

/// Splits `merged` into the elements present in `by` and the others, each
/// in `merged`'s order.
fn partition(
    merged: Vec<Value>,
    by: &[Value],
    merge_key: Option<&str>,
) -> (Vec<Value>, Vec<Value>) {
    merged
        .into_iter()
        .partition(|v| position(by, v, merge_key).is_some())
}

/// Orders the elements as upstream: those in the patch by `patch_order`,
/// those only on the server by `server_order`, then interleaves them
/// keeping the server's relative order where both are known.
fn normalize_element_order(
    in_patch: Vec<Value>,
    server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    merge_key: Option<&str>,
) -> Result<Vec<Value>, PatchError> {
    let right = sort_by_order(in_patch, patch_order, merge_key)?;
    let left = sort_by_order(server_only, server_order, merge_key)?;
    let mut out = Vec::with_capacity(left.len() + right.len());
    let (mut left, mut right) = (left.into_iter().peekable(), right.into_iter().peekable());
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => {
                match (
                    position(server_order, l, merge_key),
                    position(server_order, r, merge_key),
                ) {
                    (Some(li), Some(ri)) => li < ri,
                    _ => false,
                }
            }
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
    Ok(out)
}

/// Stable sort by position in `order`; `$patch: delete` elements go last.
fn sort_by_order(
    items: Vec<Value>,
    order: &[Value],
    merge_key: Option<&str>,
) -> Result<Vec<Value>, PatchError> {
    let (mut keep, deleted): (Vec<Value>, Vec<Value>) = match merge_key {
        Some(key) => {
            if let Some(v) = items
                .iter()
                .chain(order.iter())
                .find(|v| v.get(key).is_none())
            {
                return Err(no_merge_key(v, key));
            }
            items.into_iter().partition(|v| !is_delete_element(v))
        }
        None => (items, Vec::new()),
    };
    keep.sort_by_key(|v| position(order, v, merge_key).unwrap_or(usize::MAX));
    keep.extend(deleted);
    Ok(keep)
}

/// A value added from a patch: `null`s and directive-only maps dropped.
fn clean_added(value: Value) -> Option<Value> {
    match value {
        Value::Object(m) => {
            if m.contains_key(DIRECTIVE) {
                None
            } else {
                Some(Value::Object(clean_added_map(m)))
            }
        }
        Value::Array(a) => Some(Value::Array(clean_added_list(a))),
        Value::Null => None,
        v => Some(v),
    }
}

fn clean_added_map(m: Object) -> Object {
    m.into_iter()
        .filter(|(k, _)| {
            k != RETAIN_KEYS
                && !k.starts_with(SET_ELEMENT_ORDER)
                && !k.starts_with(DELETE_FROM_PRIMITIVE_LIST)
        })
        .filter_map(|(k, v)| clean_added(v).map(|v| (k, v)))
        .collect()
}

fn clean_added_list(a: Vec<Value>) -> Vec<Value> {
    a.into_iter()
        .filter_map(|v| match v {
            Value::Null => Some(Value::Null),
            v => clean_added(v),
        })
        .collect()
}
