//! One cached object: its serialized bytes and the few fields selectors need.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;

use crate::storage::Revision;

/// Serialize `value` into an allocation of exactly its size.
///
/// `serde_json::to_vec` grows its buffer by doubling, so a cached object
/// would keep up to twice its JSON (a 2.9 KB pod sits in 4 KiB). Here the
/// JSON is written into a buffer kept per thread and copied out once.
pub fn json_bytes(value: &Value) -> Bytes {
    serialize_exact(value)
}

/// [`json_bytes`] of `value` with `metadata.resourceVersion` set to `rev`,
/// without copying the object to set it: the same bytes as inserting the
/// field and serializing. The tests' reference for [`splice_rv`].
#[cfg(test)]
pub fn json_bytes_with_rv(value: &Value, rev: Revision) -> Bytes {
    serialize_exact(&WithResourceVersion {
        object: value,
        rv: &rev.to_string(),
    })
}

/// Where `metadata.resourceVersion` goes in an object serialized without
/// it, so the bytes with it can be made by copying rather than serializing
/// again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RvSlot {
    /// The byte offset to insert at.
    at: usize,
    /// Whether a metadata field comes before it (so a comma precedes it).
    after_field: bool,
    /// Whether a metadata field comes after it (with nothing before, a
    /// comma follows it).
    before_field: bool,
}

/// `value` (which has no `metadata.resourceVersion`) serialized, and where
/// that field would go; no slot when `value` has no `metadata` object.
pub fn json_bytes_marking_rv(value: &Value) -> Result<(Bytes, Option<RvSlot>), serde_json::Error> {
    let buf = SharedBuf::default();
    let slot = std::cell::Cell::new(None);
    serde_json::to_writer(
        buf.clone(),
        &MarkRv {
            object: value,
            buf: &buf,
            slot: &slot,
        },
    )?;
    let bytes = buf.0.take();
    Ok((Bytes::from(bytes), slot.get()))
}

/// `stored` (from [`json_bytes_marking_rv`]) with `metadata.resourceVersion`
/// set to `rev`: the same bytes as [`json_bytes_with_rv`] of the object.
pub fn splice_rv(stored: &[u8], slot: RvSlot, rev: Revision) -> Bytes {
    let rv = rev.to_string();
    let at = slot.at.min(stored.len());
    let mut out = Vec::with_capacity(stored.len() + rv.len() + 22);
    out.extend_from_slice(&stored[..at]);
    if slot.after_field {
        out.push(b',');
    }
    out.extend_from_slice(b"\"resourceVersion\":\"");
    out.extend_from_slice(rv.as_bytes());
    out.push(b'"');
    if !slot.after_field && slot.before_field {
        out.push(b',');
    }
    out.extend_from_slice(&stored[at..]);
    Bytes::from(out)
}

/// A buffer the serializer writes to while [`MarkRv`] reads its length.
#[derive(Clone, Default)]
struct SharedBuf(std::rc::Rc<std::cell::RefCell<Vec<u8>>>);

impl SharedBuf {
    fn len(&self) -> usize {
        self.0.borrow().len()
    }
}

impl std::io::Write for SharedBuf {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(data);
        Ok(data.len())
    }

    fn write_all(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.0.borrow_mut().extend_from_slice(data);
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// An object serialized as it is, noting where `resourceVersion` would go
/// in its metadata.
struct MarkRv<'a> {
    object: &'a Value,
    buf: &'a SharedBuf,
    slot: &'a std::cell::Cell<Option<RvSlot>>,
}

impl Serialize for MarkRv<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let Value::Object(map) = self.object else {
            return self.object.serialize(s);
        };
        let mut out = s.serialize_map(Some(map.len()))?;
        for (k, v) in map {
            match v {
                Value::Object(meta) if k == "metadata" => out.serialize_entry(
                    k,
                    &MetaMarkRv {
                        meta,
                        buf: self.buf,
                        slot: self.slot,
                    },
                )?,
                _ => out.serialize_entry(k, v)?,
            }
        }
        out.end()
    }
}

struct MetaMarkRv<'a> {
    meta: &'a serde_json::Map<String, Value>,
    buf: &'a SharedBuf,
    slot: &'a std::cell::Cell<Option<RvSlot>>,
}

impl Serialize for MetaMarkRv<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        const FIELD: &str = "resourceVersion";
        // No length: serde_json then writes the opening brace alone, even
        // for an empty map, and the closing one at the end.
        let mut out = s.serialize_map(None)?;
        let mut marked = false;
        let mut after_field = false;
        for (k, v) in self.meta {
            if !marked && k.as_str() > FIELD {
                // The map's opening brace or the previous value is written:
                // the field goes here.
                self.slot.set(Some(RvSlot {
                    at: self.buf.len(),
                    after_field,
                    before_field: true,
                }));
                marked = true;
            }
            out.serialize_entry(k, v)?;
            after_field = true;
        }
        if !marked {
            self.slot.set(Some(RvSlot {
                at: self.buf.len(),
                after_field,
                before_field: false,
            }));
        }
        out.end()
    }
}

fn serialize_exact(value: &impl Serialize) -> Bytes {
    /// Buffers grown past this by one huge object are not kept.
    const KEEP: usize = 1 << 20;
    thread_local! {
        static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    BUF.with(|buf| {
        let Ok(mut buf) = buf.try_borrow_mut() else {
            return Bytes::from(serde_json::to_vec(value).unwrap_or_default());
        };
        buf.clear();
        if serde_json::to_writer(&mut *buf, value).is_err() {
            buf.clear();
        }
        let bytes = Bytes::copy_from_slice(&buf);
        if buf.capacity() > KEEP {
            *buf = Vec::new();
        }
        bytes
    })
}

/// An object serialized as if `metadata.resourceVersion` were `rv`.
/// `serde_json`'s maps keep their keys sorted, so the field goes where an
/// insert would have put it.
#[cfg(test)]
struct WithResourceVersion<'a> {
    object: &'a Value,
    rv: &'a str,
}

#[cfg(test)]
impl Serialize for WithResourceVersion<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let Value::Object(map) = self.object else {
            return self.object.serialize(s);
        };
        let mut out = s.serialize_map(Some(map.len()))?;
        for (k, v) in map {
            match v {
                Value::Object(meta) if k == "metadata" => {
                    out.serialize_entry(k, &MetaWithResourceVersion { meta, rv: self.rv })?
                }
                _ => out.serialize_entry(k, v)?,
            }
        }
        out.end()
    }
}

#[cfg(test)]
struct MetaWithResourceVersion<'a> {
    meta: &'a serde_json::Map<String, Value>,
    rv: &'a str,
}

#[cfg(test)]
impl Serialize for MetaWithResourceVersion<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        const FIELD: &str = "resourceVersion";
        let len = self.meta.len() + usize::from(!self.meta.contains_key(FIELD));
        let mut out = s.serialize_map(Some(len))?;
        let mut placed = false;
        for (k, v) in self.meta {
            if !placed && k.as_str() >= FIELD {
                out.serialize_entry(FIELD, self.rv)?;
                placed = true;
                if k == FIELD {
                    continue;
                }
            }
            out.serialize_entry(k, v)?;
        }
        if !placed {
            out.serialize_entry(FIELD, self.rv)?;
        }
        out.end()
    }
}

/// An object as the watch cache keeps it.
#[derive(Debug)]
pub struct CachedObject {
    /// Storage key.
    pub key: String,
    /// The object's JSON, `metadata.resourceVersion` included.
    pub bytes: Bytes,
    /// `metadata.namespace`.
    pub namespace: Option<String>,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// Values of the kind's selectable fields (upstream's field sets), by path.
    pub fields: Vec<(&'static str, String)>,
    /// Revision of the object's last write.
    pub revision: Revision,
}

impl CachedObject {
    /// Build from an object whose `metadata.resourceVersion` is already set.
    pub fn from_value(key: String, kind: &str, value: &Value, revision: Revision) -> Self {
        let bytes = json_bytes(value);
        Self::from_parts(key, kind, value, bytes, revision)
    }

    /// Build from an object and its serialized bytes (which must match).
    pub fn from_parts(
        key: String,
        kind: &str,
        value: &Value,
        bytes: Bytes,
        revision: Revision,
    ) -> Self {
        let meta = &value["metadata"];
        let labels = meta["labels"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        let fields = rk_core::fields::selectable_field_values(kind, value)
            .filter(|(p, _)| !matches!(*p, "metadata.name" | "metadata.namespace"))
            .collect();
        Self {
            key,
            bytes,
            namespace: meta["namespace"].as_str().map(str::to_string),
            name: meta["name"].as_str().unwrap_or_default().to_string(),
            labels,
            fields,
            revision,
        }
    }

    /// An estimate of the heap this object holds: its bytes, its strings and
    /// maps, and the struct itself behind its `Arc`.
    pub fn memory_bytes(&self) -> usize {
        const MAP_ENTRY_OVERHEAD: usize = 48;
        std::mem::size_of::<Self>()
            + 16
            + self.key.capacity()
            + self.bytes.len()
            + self.namespace.as_ref().map_or(0, String::capacity)
            + self.name.capacity()
            + self
                .labels
                .iter()
                .map(|(k, v)| k.capacity() + v.capacity() + MAP_ENTRY_OVERHEAD)
                .sum::<usize>()
            + self.fields.capacity() * std::mem::size_of::<(&str, String)>()
            + self.fields.iter().map(|(_, v)| v.capacity()).sum::<usize>()
    }

    /// The value of a selectable field, as field selectors see it.
    pub fn field(&self, path: &str) -> Option<String> {
        match path {
            "metadata.name" => Some(self.name.clone()),
            "metadata.namespace" => Some(self.namespace.clone().unwrap_or_default()),
            _ => self
                .fields
                .iter()
                .find(|(p, _)| *p == path)
                .map(|(_, v)| v.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spliced_resource_version_gives_the_bytes_of_serializing_with_it() {
        for obj in [
            serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a", "namespace": "n", "uid": "u", "labels": {"x": "y"}}, "spec": {"a": [1, {"b": null}]}}),
            serde_json::json!({"metadata": {}}),
            serde_json::json!({"metadata": {}, "z": "after"}),
            serde_json::json!({"metadata": {"uid": "u"}}),
            serde_json::json!({"metadata": {"annotations": {"k": "v \" quoted"}, "name": "x"}, "z": 1}),
            serde_json::json!({"a": 1, "metadata": {"name": "x", "resourceVersionish": "q"}}),
        ] {
            let (bytes, slot) = json_bytes_marking_rv(&obj).unwrap();
            assert_eq!(bytes, serde_json::to_vec(&obj).unwrap(), "{obj}");
            let spliced = splice_rv(&bytes, slot.unwrap(), 4217);
            assert_eq!(spliced, json_bytes_with_rv(&obj, 4217), "{obj}");
        }
        let (_, slot) = json_bytes_marking_rv(&serde_json::json!({"kind": "X"})).unwrap();
        assert_eq!(slot, None);
    }

    #[test]
    fn bytes_with_rv_are_the_bytes_of_the_object_with_it_inserted() {
        for obj in [
            serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a", "namespace": "n", "uid": "u", "labels": {"x": "y"}}, "spec": {}}),
            serde_json::json!({"metadata": {"name": "a", "resourceVersion": "3"}}),
            serde_json::json!({"metadata": {}}),
            serde_json::json!({"metadata": {"uid": "z", "zzz": 1}, "data": {"resourceVersion": "keep"}}),
            serde_json::json!({"metadata": {"annotations": {"a": "b"}}}),
        ] {
            let mut expected = obj.clone();
            expected["metadata"]["resourceVersion"] = Value::String("42".into());
            assert_eq!(
                json_bytes_with_rv(&obj, 42),
                Bytes::from(serde_json::to_vec(&expected).unwrap()),
                "{obj}"
            );
        }
    }
}
