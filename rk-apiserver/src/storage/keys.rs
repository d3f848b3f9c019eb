//! Key and value rules shared by every backend.
//!
//! Keys follow kube-apiserver's layout, `/registry/<resource>/<namespace>/<name>`
//! (or `/registry/<group>/<resource>/...`): they start with `/`, their segments
//! are non-empty, never `.` or `..`, and hold no control characters. A prefix
//! (for [`Storage::list`](super::Storage::list) and
//! [`Storage::watch`](super::Storage::watch)) follows the same rules but may end
//! with `/`, and may be just `/`.
//!
//! ```
//! use rk_apiserver::storage::keys::{prefix_end, validate_key, validate_prefix};
//!
//! assert!(validate_key("/registry/pods/default/web-0").is_ok());
//! assert!(validate_key("/registry/pods//web-0").is_err());
//! assert!(validate_prefix("/registry/pods/").is_ok());
//! assert_eq!(prefix_end("/registry/pods/").as_deref(), Some("/registry/pods0"));
//! ```

use super::StorageError;

/// The longest key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 1024;

/// The largest value the `memory` and `sqlite` backends accept by default, in
/// bytes (3 MiB, kube-apiserver's request body limit). The `etcd` backend is
/// bounded by the server's `--max-request-bytes` instead.
pub const DEFAULT_MAX_VALUE_LEN: usize = 3 * 1024 * 1024;

/// Checks that `key` names one object: see the [module docs](self).
pub fn validate_key(key: &str) -> Result<(), StorageError> {
    check(key, false)
}

/// Checks that `prefix` is a valid list or watch prefix: a key, a key followed by
/// `/`, or `/` alone.
pub fn validate_prefix(prefix: &str) -> Result<(), StorageError> {
    check(prefix, true)
}

/// Checks `value` against `limit`, naming `key` in the error.
pub fn validate_value(key: &str, value: &[u8], limit: usize) -> Result<(), StorageError> {
    if value.len() > limit {
        return Err(StorageError::ValueTooLarge {
            key: key.to_owned(),
            size: value.len(),
            limit,
        });
    }
    Ok(())
}

/// The smallest string greater than every string starting with `prefix`
/// (etcd's "range end" for a prefix), or `None` if no such string exists.
///
/// Works on characters rather than bytes so the result is valid UTF-8; UTF-8
/// byte order equals code point order, so the bound is exact.
pub fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let mut next = u32::from(last) + 1;
        // Skip the surrogate block, which has no `char`s.
        if (0xD800..=0xDFFF).contains(&next) {
            next = 0xE000;
        }
        if let Some(c) = char::from_u32(next) {
            chars.push(c);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

fn check(key: &str, is_prefix: bool) -> Result<(), StorageError> {
    let invalid = |reason: &str| StorageError::InvalidKey {
        key: key.to_owned(),
        reason: reason.to_owned(),
    };
    if key.is_empty() {
        return Err(invalid("empty"));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(invalid(&format!("longer than {MAX_KEY_LEN} bytes")));
    }
    if !key.starts_with('/') {
        return Err(invalid("must start with '/'"));
    }
    if key.chars().any(char::is_control) {
        return Err(invalid("contains a control character"));
    }
    if is_prefix && key == "/" {
        return Ok(());
    }
    let body = &key[1..];
    let body = match body.strip_suffix('/') {
        Some(stripped) if is_prefix => stripped,
        Some(_) => return Err(invalid("must not end with '/'")),
        None => body,
    };
    for segment in body.split('/') {
        match segment {
            "" => return Err(invalid("empty path segment")),
            "." | ".." => return Err(invalid("'.' and '..' segments are not allowed")),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kube_style_keys_are_valid() {
        for key in [
            "/registry/pods/default/web-0",
            "/registry/apps/deployments/ns/d",
            "/a",
        ] {
            assert_eq!(validate_key(key), Ok(()), "{key}");
        }
    }

    #[test]
    fn malformed_keys_are_rejected() {
        for key in [
            "",
            "registry/pods",
            "/",
            "/registry//pods",
            "/registry/pods/",
            "/registry/./pods",
            "/registry/../pods",
            "/registry/po\0ds",
            "/registry/po\nds",
        ] {
            assert!(
                matches!(validate_key(key), Err(StorageError::InvalidKey { .. })),
                "{key:?}"
            );
        }
        let long = format!("/{}", "a".repeat(MAX_KEY_LEN));
        assert!(validate_key(&long).is_err());
    }

    #[test]
    fn prefixes_may_end_with_a_slash() {
        for prefix in [
            "/",
            "/registry/",
            "/registry/pods/default/",
            "/registry/pods/web",
        ] {
            assert_eq!(validate_prefix(prefix), Ok(()), "{prefix}");
        }
        for prefix in ["", "//", "/registry//", "registry/", "/registry/../"] {
            assert!(validate_prefix(prefix).is_err(), "{prefix:?}");
        }
    }

    #[test]
    fn prefix_end_is_the_next_string_after_the_prefix_range() {
        assert_eq!(
            prefix_end("/registry/pods/").as_deref(),
            Some("/registry/pods0")
        );
        assert_eq!(prefix_end("/").as_deref(), Some("0"));
        assert_eq!(prefix_end("/a\u{10FFFF}").as_deref(), Some("/b"));
        assert_eq!(prefix_end("/\u{D7FF}").as_deref(), Some("/\u{E000}"));
    }

    #[test]
    fn oversized_values_are_rejected() {
        assert!(validate_value("/k", &[0; 10], 10).is_ok());
        assert!(matches!(
            validate_value("/k", &[0; 11], 10),
            Err(StorageError::ValueTooLarge { size: 11, .. })
        ));
    }
}
