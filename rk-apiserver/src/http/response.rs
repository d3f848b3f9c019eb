//! Building responses: JSON bodies, `Status` errors, `Warning` headers, and
//! the representations clients negotiate with `Accept` (plain objects,
//! `Table`, `PartialObjectMetadata`).

use std::convert::Infallible;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use serde_json::{Value, json};

use crate::error::ApiError;

/// The body type of every response.
pub type Body = BoxBody<Bytes, Infallible>;

/// A full body from bytes.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

/// A JSON response from bytes already serialized.
pub fn json_bytes(code: u16, bytes: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(full(bytes));
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// A JSON response.
pub fn json(code: u16, value: &Value) -> Response<Body> {
    json_bytes(code, serde_json::to_vec(value).unwrap_or_default())
}

/// A JSON response with `Warning` headers.
pub fn json_with_warnings(code: u16, value: &Value, warnings: &[String]) -> Response<Body> {
    let mut resp = json(code, value);
    add_warnings(&mut resp, warnings);
    resp
}

/// Add `Warning: 299 - "..."` headers.
pub fn add_warnings(resp: &mut Response<Body>, warnings: &[String]) {
    for w in warnings {
        let text = format!("299 - \"{}\"", w.replace('"', "\\\""));
        if let Ok(v) = HeaderValue::from_str(&text) {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
}

/// The `Status` response of an error.
pub fn error(err: &ApiError) -> Response<Body> {
    let mut resp = json(err.code, &err.to_status());
    if let Some(r) = err.retry_after.filter(|r| *r > 0)
        && let Ok(v) = HeaderValue::from_str(&r.to_string())
    {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

/// A plain text response.
pub fn text(code: u16, body: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// What representation the client asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Representation {
    /// The object(s) as stored.
    Object,
    /// `meta.k8s.io/v1` `Table`.
    Table,
    /// `meta.k8s.io/v1` `PartialObjectMetadata(List)`.
    Metadata,
}

/// Read the `Accept` header. Returns `Err` for media types rk cannot produce.
pub fn negotiate(accept: Option<&str>) -> Result<Representation, ApiError> {
    let Some(accept) = accept else {
        return Ok(Representation::Object);
    };
    let mut any_json = false;
    for part in accept.split(',') {
        let part = part.trim();
        let mut params = part.split(';').map(str::trim);
        let media = params.next().unwrap_or("");
        let params: Vec<(&str, &str)> = params.filter_map(|p| p.split_once('=')).collect();
        let get = |k: &str| params.iter().find(|(pk, _)| *pk == k).map(|(_, v)| *v);
        if !(media == "application/json"
            || media == "*/*"
            || media == "application/*"
            || media == "application/yaml")
        {
            continue;
        }
        match (get("as"), get("g"), get("v")) {
            (Some("Table"), Some("meta.k8s.io"), Some("v1") | Some("v1beta1")) => {
                return Ok(Representation::Table);
            }
            (
                Some("PartialObjectMetadata") | Some("PartialObjectMetadataList"),
                Some("meta.k8s.io"),
                Some("v1") | Some("v1beta1"),
            ) => {
                return Ok(Representation::Metadata);
            }
            (None, _, _) => any_json = true,
            _ => {}
        }
    }
    if any_json || accept.contains("protobuf") {
        Ok(Representation::Object)
    } else {
        Err(ApiError::not_acceptable(format!(
            "only the following media types are accepted: application/json, application/yaml, application/vnd.kubernetes.protobuf (asked for {accept})"
        )))
    }
}

/// `PartialObjectMetadata` for one object.
pub fn partial_metadata(obj: &Value) -> Value {
    let mut meta = obj["metadata"].clone();
    if let Some(m) = meta.as_object_mut() {
        m.remove("managedFields");
    }
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta})
}

/// Size of the chunks a streamed list is written in.
const LIST_CHUNK: usize = 256 * 1024;

/// A list response streamed in chunks of about [`LIST_CHUNK`] bytes, built
/// as it is sent from the items' serialized bytes: no single buffer holds
/// the whole list, and no item is re-serialized.
pub fn list_stream(
    kind: &str,
    api_version: &str,
    rev: &str,
    cont: Option<&str>,
    remaining: Option<i64>,
    items: Vec<Bytes>,
) -> Response<Body> {
    let mut head = list_body(kind, api_version, rev, cont, remaining, &[]);
    // `list_body` ends with `]}`: keep the opening, close after the items.
    head.truncate(head.len() - 2);
    let state = (Some(head), items.into_iter().enumerate(), false);
    let stream = futures::stream::unfold(state, |(head, mut iter, done)| async move {
        if done {
            return None;
        }
        let mut buf = head.unwrap_or_else(|| Vec::with_capacity(LIST_CHUNK + 4096));
        let mut finished = false;
        loop {
            match iter.next() {
                Some((i, item)) => {
                    if i > 0 {
                        buf.push(b',');
                    }
                    buf.extend_from_slice(&item);
                    if buf.len() >= LIST_CHUNK {
                        break;
                    }
                }
                None => {
                    buf.extend_from_slice(b"]}");
                    finished = true;
                    break;
                }
            }
        }
        let frame = Ok::<_, Infallible>(hyper::body::Frame::data(Bytes::from(buf)));
        Some((frame, (None, iter, finished)))
    });
    let mut resp = Response::new(BodyExt::boxed(http_body_util::StreamBody::new(stream)));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// Build a list body from serialized items without re-serializing them.
pub fn list_body(
    kind: &str,
    api_version: &str,
    rev: &str,
    cont: Option<&str>,
    remaining: Option<i64>,
    items: &[&[u8]],
) -> Vec<u8> {
    let size: usize = items.iter().map(|i| i.len() + 1).sum::<usize>() + 256;
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(b"{\"kind\":");
    out.extend_from_slice(serde_json::to_string(kind).unwrap_or_default().as_bytes());
    out.extend_from_slice(b",\"apiVersion\":");
    out.extend_from_slice(
        serde_json::to_string(api_version)
            .unwrap_or_default()
            .as_bytes(),
    );
    out.extend_from_slice(b",\"metadata\":{\"resourceVersion\":");
    out.extend_from_slice(serde_json::to_string(rev).unwrap_or_default().as_bytes());
    if let Some(c) = cont {
        out.extend_from_slice(b",\"continue\":");
        out.extend_from_slice(serde_json::to_string(c).unwrap_or_default().as_bytes());
    }
    if let Some(r) = remaining {
        out.extend_from_slice(format!(",\"remainingItemCount\":{r}").as_bytes());
    }
    out.extend_from_slice(b"},\"items\":[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(item);
    }
    out.extend_from_slice(b"]}");
    out
}

/// One watch event frame: `{"type":"ADDED","object":...}\n`.
pub fn watch_frame(kind: &str, object: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(object.len() + 32);
    out.extend_from_slice(b"{\"type\":\"");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\",\"object\":");
    out.extend_from_slice(object);
    out.extend_from_slice(b"}\n");
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_table_accept_header_selects_table() {
        let a = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(negotiate(Some(a)).unwrap(), Representation::Table);
        assert_eq!(
            negotiate(Some("application/json")).unwrap(),
            Representation::Object
        );
        assert_eq!(negotiate(None).unwrap(), Representation::Object);
        assert_eq!(negotiate(Some("*/*")).unwrap(), Representation::Object);
        assert_eq!(negotiate(Some("text/html")).unwrap_err().code, 406);
    }

    #[test]
    fn list_body_is_valid_json() {
        let body = list_body(
            "PodList",
            "v1",
            "5",
            Some("tok"),
            Some(3),
            &[b"{\"a\":1}", b"{\"b\":2}"],
        );
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["items"].as_array().unwrap().len(), 2);
        assert_eq!(v["metadata"]["continue"], "tok");
        assert_eq!(v["metadata"]["remainingItemCount"], 3);
    }
}

#[cfg(test)]
mod stream_tests {
    use super::*;

    #[tokio::test]
    async fn streamed_lists_are_the_same_json_as_built_ones() {
        for n in [0usize, 1, 3, 2000] {
            let items: Vec<Bytes> = (0..n)
                .map(|i| Bytes::from(format!("{{\"i\":{i},\"pad\":\"{}\"}}", "x".repeat(300))))
                .collect();
            let resp = list_stream("PodList", "v1", "7", None, None, items.clone());
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            let refs: Vec<&[u8]> = items.iter().map(|b| b.as_ref()).collect();
            assert_eq!(
                body.as_ref(),
                list_body("PodList", "v1", "7", None, None, &refs).as_slice(),
                "n={n}"
            );
        }
    }
}
