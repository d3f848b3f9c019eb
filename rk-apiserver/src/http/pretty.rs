//! Pretty-printed JSON answers, as upstream gives them when the request
//! says `?pretty=true` or comes from curl, Wget or a browser (by its
//! `User-Agent`): two spaces per level, `"key": value`, empty objects and
//! arrays kept as `{}` and `[]` (Go's `json.Indent`). Watches stay compact.

use http::{HeaderMap, Response, header};
use http_body_util::BodyExt;

use super::response::{self, Body};
use crate::request::Query;

/// Whether the answer to this request is pretty-printed.
pub fn wanted(query: &Query, headers: &HeaderMap) -> bool {
    if let Some(p) = query.get("pretty") {
        return matches!(p, "1" | "t" | "T" | "true" | "TRUE" | "True");
    }
    let agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    ["curl", "Wget", "Mozilla/5.0"]
        .iter()
        .any(|p| agent.starts_with(p))
}

/// `resp` with its JSON body indented; other bodies are left alone.
pub async fn apply(resp: Response<Body>) -> Response<Body> {
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"));
    if !is_json {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let bytes = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(never) => match never {},
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, response::full(indent(&bytes)))
}

/// Indent compact JSON (whitespace outside strings is dropped first).
pub fn indent(json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(json.len() + json.len() / 4);
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let newline = |out: &mut Vec<u8>, depth: usize| {
        out.push(b'\n');
        out.extend(std::iter::repeat_n(b' ', depth * 2));
    };
    let mut i = 0;
    while i < json.len() {
        let c = json[i];
        i += 1;
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == b'\\' {
                escaped = true;
            } else if c == b'"' {
                in_string = false;
            }
            continue;
        }
        match c {
            b' ' | b'\n' | b'\r' | b'\t' => {}
            b'"' => {
                in_string = true;
                out.push(c);
            }
            b'{' | b'[' => {
                out.push(c);
                // An empty object or array stays on one line.
                let rest = json[i..]
                    .iter()
                    .position(|b| !b.is_ascii_whitespace())
                    .map(|p| json[i + p]);
                if matches!((c, rest), (b'{', Some(b'}')) | (b'[', Some(b']'))) {
                    continue;
                }
                depth += 1;
                newline(&mut out, depth);
            }
            b'}' | b']' => {
                if !matches!(out.last(), Some(b'{') | Some(b'[')) {
                    depth = depth.saturating_sub(1);
                    newline(&mut out, depth);
                }
                out.push(c);
            }
            b',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            b':' => out.extend_from_slice(b": "),
            _ => out.push(c),
        }
    }
    if json.last() == Some(&b'\n') {
        out.push(b'\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indents_as_go_does() {
        let compact =
            br#"{"kind":"List","items":[{"a":1,"b":"x,{y}: \"z\""},{}],"empty":[],"o":{}}"#;
        let want = r#"{
  "kind": "List",
  "items": [
    {
      "a": 1,
      "b": "x,{y}: \"z\""
    },
    {}
  ],
  "empty": [],
  "o": {}
}"#;
        assert_eq!(String::from_utf8(indent(compact)).unwrap(), want);
    }

    #[test]
    fn a_trailing_newline_is_kept_and_scalars_pass() {
        assert_eq!(indent(b"[1,2]\n"), b"[\n  1,\n  2\n]\n");
        assert_eq!(indent(b"\"a\""), b"\"a\"");
    }
}
