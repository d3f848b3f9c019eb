//! The pod-template hash (the `pod-template-hash` label of ReplicaSets and
//! their pods).
//!
//! Upstream (`controller.ComputeHash`) takes the FNV-1a 32-bit hash of a
//! deep print of the Go struct, then writes the collision count, then encodes
//! the decimal form of the hash with `rand.SafeEncodeString`. Go's deep print
//! cannot be reproduced, so rk hashes a canonical JSON serialization of the
//! template instead (object keys sorted at every level, no whitespace); the
//! collision count and the encoding are upstream's. The result is stable across
//! runs and processes, but differs from the hash kube-controller-manager would
//! compute for the same template.

use k8s_openapi::api::core::v1::PodTemplateSpec;
use serde_json::Value;

/// The label carrying the template hash on ReplicaSets and their pods.
pub const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";

/// The alphabet of `rand.SafeEncodeString`: no vowels (no words) and no
/// confusable characters.
const SAFE_ALPHABET: &[u8; 27] = b"bcdfghjklmnpqrstvwxz2456789";

const FNV_OFFSET_BASIS: u32 = 0x811c_9dc5;
const FNV_PRIME: u32 = 0x0100_0193;

/// The hash of the template (and the collision count, when given), as a
/// label value of at most ten characters from `bcdfghjklmnpqrstvwxz2456789`.
pub fn pod_template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut bytes = Vec::new();
    // Serializing k8s-openapi types cannot fail (string map keys, no custom
    // fallible serializers); should it ever, the template contributes nothing.
    if let Ok(value) = serde_json::to_value(template) {
        write_canonical(&value, &mut bytes);
    }
    if let Some(count) = collision_count {
        // Upstream writes the count as a little-endian u32 into an 8-byte buffer.
        bytes.extend_from_slice(&u32::from_ne_bytes(count.to_ne_bytes()).to_le_bytes());
        bytes.extend_from_slice(&[0; 4]);
    }
    safe_encode_string(&fnv1a_32(&bytes).to_string())
}

/// FNV-1a, 32 bits.
pub fn fnv1a_32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(FNV_OFFSET_BASIS, |hash, b| {
        (hash ^ u32::from(*b)).wrapping_mul(FNV_PRIME)
    })
}

/// Upstream `rand.SafeEncodeString`: each character is replaced by the
/// alphabet's character at (code point mod 27), so the decimal digits `0`-`9`
/// become `4 5 6 7 8 9 b c d f`.
pub fn safe_encode_string(s: &str) -> String {
    s.chars()
        .map(|c| char::from(SAFE_ALPHABET[(c as usize) % SAFE_ALPHABET.len()]))
        .collect()
}

/// JSON with object keys sorted at every level and no whitespace.
fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (key, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_scalar(&Value::String(key.clone()), out);
                out.push(b':');
                write_canonical(v, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(v, out);
            }
            out.push(b']');
        }
        scalar => write_scalar(scalar, out),
    }
}

fn write_scalar(value: &Value, out: &mut Vec<u8>) {
    // Writing a scalar `Value` into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::{Container, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn template(image: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(BTreeMap::from([
                    ("app".to_owned(), "web".to_owned()),
                    ("tier".to_owned(), "fe".to_owned()),
                ])),
                ..ObjectMeta::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "web".into(),
                    image: Some(image.into()),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
        }
    }

    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        assert_eq!(fnv1a_32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a_32(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a_32(b"foobar"), 0xbf9c_f968);
    }

    #[test]
    fn safe_encoding_maps_digits_like_upstream() {
        assert_eq!(safe_encode_string("0123456789"), "456789bcdf");
    }

    #[test]
    fn hash_is_pinned_so_it_stays_stable_across_releases() {
        assert_eq!(pod_template_hash(&template("nginx:1.27"), None), PINNED);
    }

    /// FNV-1a of `{"metadata":{"labels":{"app":"web","tier":"fe"}},"spec":{"containers":[{"image":"nginx:1.27","name":"web"}]}}`,
    /// checked independently.
    const PINNED: &str = "5bf96695d";

    #[test]
    fn hash_is_a_valid_label_value() {
        let h = pod_template_hash(&template("nginx:1.27"), Some(3));
        assert!(!h.is_empty() && h.len() <= 10);
        assert!(h.bytes().all(|b| SAFE_ALPHABET.contains(&b)));
    }

    #[test]
    fn different_templates_and_collision_counts_hash_differently() {
        let base = pod_template_hash(&template("nginx:1.27"), None);
        assert_ne!(base, pod_template_hash(&template("nginx:1.28"), None));
        assert_ne!(base, pod_template_hash(&template("nginx:1.27"), Some(0)));
        assert_ne!(
            pod_template_hash(&template("nginx:1.27"), Some(1)),
            pod_template_hash(&template("nginx:1.27"), Some(2))
        );
        assert_eq!(base, pod_template_hash(&template("nginx:1.27"), None));
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let v = serde_json::json!({"b": {"z": 1, "a": [true, null]}, "a": "x"});
        let mut out = Vec::new();
        write_canonical(&v, &mut out);
        assert_eq!(
            String::from_utf8_lossy(&out),
            r#"{"a":"x","b":{"a":[true,null],"z":1}}"#
        );
    }

    proptest::proptest! {
        #[test]
        fn every_hash_is_a_short_safe_label_value(image in "\\PC{0,40}", count in proptest::option::of(proptest::num::i32::ANY)) {
            let h = pod_template_hash(&template(&image), count);
            proptest::prop_assert!(!h.is_empty() && h.len() <= 10);
            proptest::prop_assert!(h.bytes().all(|b| SAFE_ALPHABET.contains(&b)));
        }
    }
}
