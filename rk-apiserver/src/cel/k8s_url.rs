//! Kubernetes' CEL URL library (upstream `k8s.io/apiserver/pkg/cel/library`,
//! `urls.go`):
//!
//! - `isURL(s)`, `url(s)`: an absolute URI (`https://host:port/path?query`)
//!   or an absolute path (`/path`), as Go's `url.ParseRequestURI` takes them;
//! - `u.getScheme()`, `u.getHost()` (with the port; IPv6 in brackets),
//!   `u.getHostname()` (without either), `u.getPort()` (`''` when none),
//!   `u.getEscapedPath()`, `u.getQuery()` (a map of each key to its values).

use std::collections::HashMap;

use cel::common::types::{CelList, CelMap, CelMapKey, CelString, STRING_TYPE, Type};
use cel::common::value::{CowVal, Val};

use super::library::{boolean, error, string_arg};
use cel::{DeclarationError, Env, ExecutionError};

static URL_TYPE: Type = Type::new_unspecified_type("kubernetes.URL");

/// A parsed URL.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Url {
    scheme: String,
    /// `host[:port]`, as written.
    host: String,
    path: String,
    query: String,
}

super::library::opaque_val!(Url, URL_TYPE);

/// Parses `text` as `url.ParseRequestURI` does (no fragment is split off).
fn parse(text: &str) -> Option<Url> {
    if text.is_empty() || text.bytes().any(|b| b < 0x20 || b == 0x7f || b == b' ') {
        return None;
    }
    let (rest, query) = text.split_once('?').unwrap_or((text, ""));
    if rest.starts_with('/') {
        return valid_escapes(rest).then(|| Url {
            scheme: String::new(),
            host: String::new(),
            path: rest.to_string(),
            query: query.to_string(),
        });
    }
    let (scheme, rest) = rest.split_once(':')?;
    let mut chars = scheme.chars();
    if !chars.next()?.is_ascii_alphabetic()
        || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    {
        return None;
    }
    let (host, path) = match rest.strip_prefix("//") {
        Some(after) => {
            let end = after.find('/').unwrap_or(after.len());
            let (authority, path) = after.split_at(end);
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            if !valid_host(host) {
                return None;
            }
            (host.to_string(), path.to_string())
        }
        // Opaque (`mailto:x`): ParseRequestURI wants it to begin with `/`.
        None if rest.starts_with('/') => (String::new(), rest.to_string()),
        None => return None,
    };
    valid_escapes(&path).then(|| Url {
        scheme: scheme.to_string(),
        host,
        path,
        query: query.to_string(),
    })
}

fn valid_escapes(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3);
            if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

/// `(hostname, port)` of `host[:port]`; an IPv6 address is in brackets.
fn split_host(host: &str) -> (&str, &str) {
    if let Some(inner) = host.strip_prefix('[') {
        return match inner.split_once(']') {
            Some((name, rest)) => (name, rest.strip_prefix(':').unwrap_or("")),
            None => (inner, ""),
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) => (name, port),
        None => (host, ""),
    }
}

fn valid_host(host: &str) -> bool {
    let (name, port) = split_host(host);
    if host.starts_with('[') && !host.contains(']') {
        return false;
    }
    port.bytes().all(|b| b.is_ascii_digit()) && !name.contains(['/', '?', '#', '[', ']'])
}

/// Registers the library's functions on `env`.
pub fn extension(env: &mut Env) -> Result<(), DeclarationError> {
    env.add_type(URL_TYPE.to_owned())?;
    env.add_overload("isURL", "is_url_string", vec![STRING_TYPE], is_url)?;
    env.add_overload("url", "string_to_url", vec![STRING_TYPE], url)?;
    let u = || URL_TYPE.to_owned();
    env.add_member_overload("getScheme", "url_get_scheme", u(), vec![], get_scheme)?;
    env.add_member_overload("getHost", "url_get_host", u(), vec![], get_host)?;
    env.add_member_overload("getHostname", "url_get_hostname", u(), vec![], get_hostname)?;
    env.add_member_overload("getPort", "url_get_port", u(), vec![], get_port)?;
    env.add_member_overload(
        "getEscapedPath",
        "url_get_escaped_path",
        u(),
        vec![],
        get_escaped_path,
    )?;
    env.add_member_overload("getQuery", "url_get_query", u(), vec![], get_query)?;
    Ok(())
}

fn url_arg<'a>(name: &str, args: &'a [CowVal<'_, '_>]) -> Result<&'a Url, ExecutionError> {
    args.first()
        .and_then(|v| v.downcast_ref::<Url>())
        .ok_or_else(|| error(name, "expected a URL"))
}

fn string<'b, 'v>(s: &str) -> Result<CowVal<'b, 'v>, ExecutionError> {
    Ok(CowVal::owned(CelString::from(s.to_string())))
}

fn is_url<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    boolean(parse(string_arg("isURL", &args, 0)?).is_some())
}

fn url<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let s = string_arg("url", &args, 0)?;
    let parsed = parse(s).ok_or_else(|| {
        error(
            "url",
            format!("URL parse error during conversion from string: {s:?}"),
        )
    })?;
    Ok(CowVal::owned(parsed))
}

fn get_scheme<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    string(&url_arg("getScheme", &args)?.scheme)
}

fn get_host<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    string(&url_arg("getHost", &args)?.host)
}

fn get_hostname<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    string(split_host(&url_arg("getHostname", &args)?.host).0)
}

fn get_port<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    string(split_host(&url_arg("getPort", &args)?.host).1)
}

fn get_escaped_path<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    string(&url_arg("getEscapedPath", &args)?.path)
}

fn get_query<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let u = url_arg("getQuery", &args)?;
    let mut values: HashMap<String, Vec<String>> = HashMap::new();
    for (k, v) in form_urlencoded::parse(u.query.as_bytes()) {
        values
            .entry(k.into_owned())
            .or_default()
            .push(v.into_owned());
    }
    let map: HashMap<CelMapKey<'v>, Box<dyn Val + 'v>> = values
        .into_iter()
        .map(|(k, vs)| {
            let list: Vec<Box<dyn Val + 'v>> = vs
                .into_iter()
                .map(|v| Box::new(CelString::from(v)) as Box<dyn Val + 'v>)
                .collect();
            (
                CelMapKey::from(k),
                Box::new(CelList::from(list)) as Box<dyn Val + 'v>,
            )
        })
        .collect();
    Ok(CowVal::owned(CelMap::from(map)))
}
