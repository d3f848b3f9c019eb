//! Sets of field paths, in upstream's FieldsV1 form
//! (sigs.k8s.io/structured-merge-diff `fieldpath`).
//!
//! A path element is kept as its FieldsV1 token: `f:<name>` for a field,
//! `k:<json object>` for a list element identified by its keys, `v:<json>`
//! for an element of a set, `i:<n>` for a positional element. A set is a
//! tree: each node holds the elements that are members (owned themselves)
//! and the children under which more paths go.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::schema::SsaList;

/// A set of field paths.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct FieldSet {
    members: BTreeSet<String>,
    children: BTreeMap<String, FieldSet>,
}

impl FieldSet {
    pub(crate) fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.is_empty()
    }

    pub(crate) fn has_member(&self, pe: &str) -> bool {
        self.members.contains(pe)
    }

    pub(crate) fn child(&self, pe: &str) -> Option<&FieldSet> {
        self.children.get(pe)
    }

    pub(crate) fn insert_member(&mut self, pe: &str) {
        if !self.members.contains(pe) {
            self.members.insert(pe.to_string());
        }
    }

    /// Puts `child` under `pe` (merging with what is there).
    pub(crate) fn insert_child(&mut self, pe: &str, child: FieldSet) {
        if child.is_empty() {
            return;
        }
        match self.children.get_mut(pe) {
            Some(existing) => *existing = existing.union(&child),
            None => {
                self.children.insert(pe.to_string(), child);
            }
        }
    }

    /// Inserts one path.
    pub(crate) fn insert(&mut self, path: &[String]) {
        match path {
            [] => {}
            [last] => self.insert_member(last),
            [first, rest @ ..] => {
                // Look up before inserting: most paths share their parents,
                // and an entry would copy the key every time.
                if let Some(child) = self.children.get_mut(first) {
                    child.insert(rest);
                } else {
                    let mut child = FieldSet::default();
                    child.insert(rest);
                    self.children.insert(first.clone(), child);
                }
            }
        }
    }

    pub(crate) fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        out.members.extend(other.members.iter().cloned());
        for (pe, child) in &other.children {
            out.insert_child(pe, child.clone());
        }
        out
    }

    pub(crate) fn difference(&self, other: &FieldSet) -> FieldSet {
        let members = self.members.difference(&other.members).cloned().collect();
        let mut children = BTreeMap::new();
        for (pe, child) in &self.children {
            let rest = match other.children.get(pe) {
                Some(o) => child.difference(o),
                None => child.clone(),
            };
            if !rest.is_empty() {
                children.insert(pe.clone(), rest);
            }
        }
        FieldSet { members, children }
    }

    pub(crate) fn intersection(&self, other: &FieldSet) -> FieldSet {
        let members = self.members.intersection(&other.members).cloned().collect();
        let mut children = BTreeMap::new();
        for (pe, child) in &self.children {
            if let Some(o) = other.children.get(pe) {
                let both = child.intersection(o);
                if !both.is_empty() {
                    children.insert(pe.clone(), both);
                }
            }
        }
        FieldSet { members, children }
    }

    /// Every path of the set, in sorted order.
    pub(crate) fn paths(&self) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        self.collect_paths(&mut Vec::new(), &mut out);
        out
    }

    fn collect_paths(&self, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        let pes: BTreeSet<&String> = self.members.iter().chain(self.children.keys()).collect();
        for pe in pes {
            prefix.push(pe.clone());
            if self.members.contains(pe) {
                out.push(prefix.clone());
            }
            if let Some(child) = self.children.get(pe) {
                child.collect_paths(prefix, out);
            }
            prefix.pop();
        }
    }

    /// The FieldsV1 JSON form: `{"f:spec":{"f:replicas":{}}}`, with `"."`
    /// marking a member that also has children.
    #[cfg(test)]
    pub(crate) fn to_fields_v1(&self) -> Value {
        self.clone().into_fields_v1()
    }

    /// The FieldsV1 JSON form, taking the set apart instead of copying it.
    pub(crate) fn into_fields_v1(self) -> Value {
        let FieldSet {
            mut members,
            children,
        } = self;
        let mut out = Map::new();
        for (pe, child) in children {
            let mut inner = match child.into_fields_v1() {
                Value::Object(m) => m,
                _ => Map::new(),
            };
            if members.remove(&pe) {
                inner.insert(".".to_string(), Value::Object(Map::new()));
            }
            out.insert(pe, Value::Object(inner));
        }
        for pe in members {
            out.insert(pe, Value::Object(Map::new()));
        }
        Value::Object(out)
    }

    /// Reads the FieldsV1 JSON form.
    pub(crate) fn from_fields_v1(value: &Value, depth: usize) -> Result<FieldSet, String> {
        if depth > super::MAX_DEPTH {
            return Err("fieldsV1 nests too deep".into());
        }
        let Value::Object(m) = value else {
            return Err(format!("fieldsV1 must be an object, got {value}"));
        };
        let mut set = FieldSet::default();
        for (pe, inner) in m {
            if pe == "." {
                continue;
            }
            if !["f:", "k:", "v:", "i:"].iter().any(|p| pe.starts_with(p)) {
                return Err(format!("unknown path element {pe:?} in fieldsV1"));
            }
            let Value::Object(inner_map) = inner else {
                return Err(format!("fieldsV1 entry {pe:?} must be an object"));
            };
            if inner_map.is_empty() || inner_map.contains_key(".") {
                set.insert_member(pe);
            }
            let child = FieldSet::from_fields_v1(inner, depth + 1)?;
            set.insert_child(pe, child);
        }
        Ok(set)
    }
}

/// The token of a field.
pub(crate) fn field_pe(name: &str) -> String {
    let mut pe = String::with_capacity(name.len() + 2);
    pe.push_str("f:");
    pe.push_str(name);
    pe
}

/// The token of a list element under the list's apply rule, or why it has
/// none (an element of a keyed list without any key, a map in a set).
pub(crate) fn element_pe(element: &Value, rule: &SsaList) -> Result<String, String> {
    match rule {
        SsaList::Atomic => Err("elements of atomic lists have no identity".into()),
        SsaList::Set => match element {
            Value::Object(_) | Value::Array(_) => Err(format!(
                "associative list without keys has an element that's a map or list: {element}"
            )),
            v => Ok(format!("v:{v}")),
        },
        SsaList::Map(keys) => {
            let Value::Object(m) = element else {
                return Err(format!(
                    "associative list with keys has an element that's not a map: {element}"
                ));
            };
            let mut sorted: BTreeMap<&str, &Value> = BTreeMap::new();
            for (key, default) in keys {
                match m.get(key.as_str()) {
                    Some(v) if !v.is_null() => {
                        sorted.insert(key, v);
                    }
                    _ => {
                        if let Some(d) = default {
                            sorted.insert(key, d);
                        }
                    }
                }
            }
            if sorted.is_empty() {
                let names: Vec<&str> = keys.iter().map(|(k, _)| k.as_str()).collect();
                return Err(format!(
                    "associative list with keys has an element that omits all key fields {names:?} (and doesn't have default values for any key fields)"
                ));
            }
            let mut obj = Map::new();
            for (k, v) in sorted {
                obj.insert(k.to_string(), v.clone());
            }
            Ok(format!("k:{}", Value::Object(obj)))
        }
    }
}

/// A path as upstream prints it in conflicts:
/// `.spec.template.spec.containers[name="web"].image`.
pub(crate) fn display_path(path: &[String]) -> String {
    let mut out = String::new();
    for pe in path {
        if let Some(name) = pe.strip_prefix("f:") {
            out.push('.');
            out.push_str(name);
        } else if let Some(keys) = pe.strip_prefix("k:") {
            match serde_json::from_str::<Map<String, Value>>(keys) {
                Ok(m) => {
                    let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    out.push_str(&format!("[{}]", parts.join(",")));
                }
                Err(_) => out.push_str(&format!("[{keys}]")),
            }
        } else if let Some(v) = pe.strip_prefix("v:") {
            out.push_str(&format!("[={v}]"));
        } else if let Some(i) = pe.strip_prefix("i:") {
            out.push_str(&format!("[{i}]"));
        } else {
            out.push_str(pe);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn fields_v1_round_trips_with_dot_members() {
        let v = json!({
            "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
            "f:spec": {"f:template": {"f:spec": {"f:containers": {
                "k:{\"name\":\"web\"}": {".": {}, "f:image": {}, "f:name": {}}
            }}}}
        });
        let set = FieldSet::from_fields_v1(&v, 0).unwrap();
        assert_eq!(set.to_fields_v1(), v);
        assert_eq!(set.paths().len(), 5);
    }

    #[test]
    fn keyed_element_token_sorts_keys_and_uses_defaults() {
        let rule = SsaList::Map(vec![
            ("protocol".into(), Some(json!("TCP"))),
            ("containerPort".into(), None),
        ]);
        let pe = element_pe(&json!({"containerPort": 80, "name": "http"}), &rule).unwrap();
        assert_eq!(pe, r#"k:{"containerPort":80,"protocol":"TCP"}"#);
        assert!(
            element_pe(
                &json!({"name": "x"}),
                &SsaList::Map(vec![("port".into(), None)])
            )
            .is_err()
        );
    }

    #[test]
    fn paths_print_like_upstream() {
        let path = vec![
            field_pe("spec"),
            field_pe("containers"),
            r#"k:{"name":"web"}"#.to_string(),
            field_pe("image"),
        ];
        assert_eq!(display_path(&path), r#".spec.containers[name="web"].image"#);
        assert_eq!(
            display_path(&[field_pe("finalizers"), r#"v:"a""#.into()]),
            r#".finalizers[="a"]"#
        );
    }

    #[test]
    fn set_algebra() {
        let mut a = FieldSet::default();
        a.insert(&[field_pe("spec"), field_pe("replicas")]);
        a.insert(&[field_pe("spec"), field_pe("paused")]);
        let mut b = FieldSet::default();
        b.insert(&[field_pe("spec"), field_pe("replicas")]);
        assert_eq!(a.intersection(&b), b);
        let rest = a.difference(&b);
        assert_eq!(
            rest.paths(),
            vec![vec![field_pe("spec"), field_pe("paused")]]
        );
        assert_eq!(rest.union(&b), a);
    }
}
