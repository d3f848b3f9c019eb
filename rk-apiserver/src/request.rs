//! What a request asks for: the resource path and the query parameters, parsed
//! once (upstream's `RequestInfo`).

use std::collections::HashMap;

use crate::error::ApiError;

/// The resource a request addresses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResourcePath {
    /// Group; empty for the core group.
    pub group: String,
    /// Version.
    pub version: String,
    /// Namespace from the path, if any.
    pub namespace: Option<String>,
    /// Resource plural.
    pub resource: String,
    /// Object name, if any.
    pub name: Option<String>,
    /// Subresource, if any.
    pub subresource: Option<String>,
    /// True when the legacy `/watch/` path prefix was used.
    pub legacy_watch: bool,
}

/// Parse `/api/v1/...` or `/apis/{group}/{version}/...` into a [`ResourcePath`].
/// Returns `None` for paths that are not resource paths.
pub fn parse_resource_path(path: &str) -> Option<ResourcePath> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => (String::new(), version.to_string(), rest),
        ["apis", group, version, rest @ ..] => (group.to_string(), version.to_string(), rest),
        _ => return None,
    };
    let mut rest: Vec<String> = rest.iter().map(|s| percent_decode(s)).collect();
    if rest.is_empty() {
        return None;
    }
    let mut legacy_watch = false;
    if rest[0] == "watch" {
        legacy_watch = true;
        rest.remove(0);
    }
    let mut p = ResourcePath {
        group,
        version,
        legacy_watch,
        ..Default::default()
    };
    // namespaces/{ns}/{resource}/... , but /namespaces/{name}[/status] is the namespace itself.
    // As upstream: `/namespaces/{name}/status` and `/finalize` are the
    // namespace's own subresources, anything else after the name is a
    // namespaced resource.
    if rest.len() >= 3
        && rest[0] == "namespaces"
        && !matches!(rest[2].as_str(), "status" | "finalize")
    {
        p.namespace = Some(rest[1].clone());
        rest.drain(0..2);
    }
    match rest.as_slice() {
        [res] => p.resource = res.clone(),
        [res, name] => {
            p.resource = res.clone();
            p.name = Some(name.clone());
        }
        [res, name, sub] => {
            p.resource = res.clone();
            p.name = Some(name.clone());
            p.subresource = Some(sub.clone());
        }
        _ => return None,
    }
    if p.resource.is_empty() || p.name.as_deref() == Some("") {
        return None;
    }
    Some(p)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The query parameters rk understands, parsed and checked.
#[derive(Clone, Debug, Default)]
pub struct Query {
    raw: HashMap<String, String>,
}

impl Query {
    /// Parse a raw query string (`a=b&c=d`).
    pub fn parse(query: Option<&str>) -> Self {
        let raw = query
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        Self { raw }
    }

    /// A parameter's value; empty values count as absent.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.raw
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// A boolean parameter (`true`/`1`).
    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true") | Some("1") | Some("True"))
    }

    /// An integer parameter; a malformed value is a 400 worded as
    /// upstream's parameter decoding words it.
    pub fn int(&self, key: &str) -> Result<Option<i64>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.parse::<i64>().map(Some).map_err(|e| {
                let why = match e.kind() {
                    std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => {
                        "value out of range"
                    }
                    _ => "invalid syntax",
                };
                ApiError::bad_request(format!("strconv.ParseInt: parsing {v:?}: {why}"))
            }),
        }
    }

    /// `dryRun=All`; any other value is a 400 as upstream.
    pub fn dry_run(&self, options: &str) -> Result<bool, ApiError> {
        match self.raw.get("dryRun").map(String::as_str) {
            None | Some("") => Ok(false),
            Some("All") => Ok(true),
            Some(other) => Err(ApiError::invalid_options(
                options,
                "dryRun",
                "FieldValueNotSupported",
                format!("Unsupported value: {other:?}: supported values: \"All\""),
            )),
        }
    }

    /// `fieldValidation`; the server default is `Warn`, as upstream.
    pub fn field_validation(&self, options: &str) -> Result<FieldValidation, ApiError> {
        match self.get("fieldValidation") {
            None | Some("" | "Warn") => Ok(FieldValidation::Warn),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some(other) => Err(ApiError::invalid_options(
                options,
                "fieldValidation",
                "FieldValueNotSupported",
                format!(
                    "Unsupported value: {other:?}: supported values: \"\", \"Ignore\", \"Strict\", \"Warn\""
                ),
            )),
        }
    }
}

/// How unknown or duplicate fields in a request body are treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldValidation {
    /// Drop them silently.
    Ignore,
    /// Drop them and send `Warning` headers.
    Warn,
    /// Reject the request with 400.
    Strict,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaced_object_path_parses() {
        let p = parse_resource_path("/apis/apps/v1/namespaces/ns1/deployments/web/scale").unwrap();
        assert_eq!(p.group, "apps");
        assert_eq!(p.namespace.as_deref(), Some("ns1"));
        assert_eq!(p.resource, "deployments");
        assert_eq!(p.name.as_deref(), Some("web"));
        assert_eq!(p.subresource.as_deref(), Some("scale"));
    }

    #[test]
    fn namespace_object_itself_is_not_a_namespace_scope() {
        let p = parse_resource_path("/api/v1/namespaces/kube-system").unwrap();
        assert_eq!(p.resource, "namespaces");
        assert_eq!(p.name.as_deref(), Some("kube-system"));
        assert_eq!(p.namespace, None);
        let p = parse_resource_path("/api/v1/namespaces/x/status").unwrap();
        assert_eq!(
            (p.resource.as_str(), p.subresource.as_deref()),
            ("namespaces", Some("status"))
        );
        let p = parse_resource_path("/api/v1/namespaces/x/pods").unwrap();
        assert_eq!(
            (p.namespace.as_deref(), p.resource.as_str()),
            (Some("x"), "pods")
        );
    }

    #[test]
    fn legacy_watch_prefix_is_recognised() {
        let p = parse_resource_path("/api/v1/watch/namespaces/x/pods").unwrap();
        assert!(p.legacy_watch);
        assert_eq!(p.resource, "pods");
    }

    #[test]
    fn non_resource_paths_are_rejected() {
        assert!(parse_resource_path("/api").is_none());
        assert!(parse_resource_path("/apis/apps").is_none());
        assert!(parse_resource_path("/api/v1").is_none());
        assert!(parse_resource_path("/api/v1/a/b/c/d").is_none());
    }

    #[test]
    fn bad_dry_run_is_invalid_options() {
        assert!(
            Query::parse(Some("dryRun=All"))
                .dry_run("CreateOptions")
                .unwrap()
        );
        assert_eq!(
            Query::parse(Some("dryRun=Some"))
                .dry_run("CreateOptions")
                .unwrap_err()
                .code,
            422
        );
    }
}
