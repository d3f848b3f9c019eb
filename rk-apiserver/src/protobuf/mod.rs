//! Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`),
//! as kubectl's typed clients send them (`kubectl create`, `auth can-i`,
//! `drain`), decoded into the JSON a JSON client would have sent.
//!
//! The envelope is the magic `k8s\0` and a `runtime.Unknown` message
//! (type meta, raw object bytes). The object is decoded with its `k8s-pb`
//! (prost) type; its `Debug` form is parsed ([`debug_tree`]) and turned into
//! JSON by walking the kind's OpenAPI schema ([`convert`]), which restores
//! JSON field names and the special encodings.

pub mod convert;
pub mod debug_tree;
mod kinds;
mod omitempty;

use serde_json::Value;

/// Why a protobuf body could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum ProtobufError {
    /// The body does not start with `k8s\0`.
    #[error("the body is not a Kubernetes protobuf message (bad magic)")]
    BadMagic,
    /// The wire data is malformed.
    #[error("malformed protobuf at byte {position}: {what}")]
    Malformed {
        /// Where.
        position: usize,
        /// What was wrong.
        what: String,
    },
    /// The kind has no protobuf decoder here.
    #[error("no protobuf decoding for {api_version}, Kind={kind}")]
    UnknownKind {
        /// apiVersion of the body.
        api_version: String,
        /// kind of the body.
        kind: String,
    },
    /// prost refused the object bytes.
    #[error("decoding {kind}: {message}")]
    Decode {
        /// The kind.
        kind: String,
        /// prost's message.
        message: String,
    },
}

fn varint(buf: &[u8], pos: &mut usize) -> Result<u64, ProtobufError> {
    let mut out = 0u64;
    for shift in (0..64).step_by(7) {
        let Some(&b) = buf.get(*pos) else {
            return Err(ProtobufError::Malformed {
                position: *pos,
                what: "truncated varint".into(),
            });
        };
        *pos += 1;
        out |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(out);
        }
    }
    Err(ProtobufError::Malformed {
        position: *pos,
        what: "varint too long".into(),
    })
}

/// The length-delimited fields of a message: (field number, bytes).
fn fields(buf: &[u8]) -> Result<Vec<(u64, &[u8])>, ProtobufError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let key = varint(buf, &mut pos)?;
        let (number, wire) = (key >> 3, key & 7);
        match wire {
            0 => {
                varint(buf, &mut pos)?;
            }
            1 => pos += 8,
            5 => pos += 4,
            2 => {
                let len = usize::try_from(varint(buf, &mut pos)?).unwrap_or(usize::MAX);
                let end = pos.checked_add(len).filter(|e| *e <= buf.len()).ok_or(
                    ProtobufError::Malformed {
                        position: pos,
                        what: "length past the end".into(),
                    },
                )?;
                out.push((number, &buf[pos..end]));
                pos = end;
            }
            _ => {
                return Err(ProtobufError::Malformed {
                    position: pos,
                    what: format!("unsupported wire type {wire}"),
                });
            }
        }
    }
    if pos > buf.len() {
        return Err(ProtobufError::Malformed {
            position: pos,
            what: "truncated field".into(),
        });
    }
    Ok(out)
}

fn string_field(buf: &[u8], number: u64) -> Result<String, ProtobufError> {
    Ok(fields(buf)?
        .into_iter()
        .find(|(n, _)| *n == number)
        .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default())
}

/// Decode a Kubernetes protobuf request body into the JSON object a JSON
/// client would have sent (with `apiVersion` and `kind`).
pub fn decode_to_json(body: &[u8]) -> Result<Value, ProtobufError> {
    let rest = body.strip_prefix(b"k8s\0").ok_or(ProtobufError::BadMagic)?;
    let unknown = fields(rest)?;
    let type_meta = unknown
        .iter()
        .find(|(n, _)| *n == 1)
        .map(|(_, b)| *b)
        .unwrap_or_default();
    let raw = unknown
        .iter()
        .find(|(n, _)| *n == 2)
        .map(|(_, b)| *b)
        .unwrap_or_default();
    let api_version = string_field(type_meta, 1)?;
    let kind = string_field(type_meta, 2)?;
    let debug = kinds::decode_debug(&api_version, &kind, raw)?;
    let tree = debug_tree::parse(&debug)?;
    let unknown_kind = || ProtobufError::UnknownKind {
        api_version: api_version.clone(),
        kind: kind.clone(),
    };
    let schema = crate::openapi::schema_for(&api_version, &kind).ok_or_else(unknown_kind)?;
    let mut obj = convert::to_json(&schema, schema.root(), &tree)
        .unwrap_or(Value::Object(Default::default()));
    if let Some(m) = obj.as_object_mut() {
        m.insert("apiVersion".into(), Value::String(api_version.clone()));
        m.insert("kind".into(), Value::String(kind.clone()));
    }
    Ok(obj)
}

#[cfg(test)]
mod tests;
