//! A lean HTTP/1.1 keep-alive client for the create load: each request is one
//! `write` of head and body, each answer is parsed with `httparse` straight
//! from the connection's read buffer.
//!
//! The load generator shares the machine's two cores with the server it
//! measures; hyper's client (a connection task, a channel to it, a header
//! map per request) spent 12-14 µs of CPU per create, this one about half
//! of that, which a separate client machine would not take from the server
//! at all.

use anyhow::{Context as _, bail};
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Most header lines an answer may carry.
const MAX_HEADERS: usize = 32;
/// Largest answer head accepted.
const MAX_HEAD: usize = 64 * 1024;

/// One keep-alive HTTP/1.1 connection that sends JSON bodies.
pub struct RawConn {
    stream: TcpStream,
    host: String,
    out: Vec<u8>,
    buf: BytesMut,
}

impl RawConn {
    /// Connect to `addr`.
    pub async fn connect(addr: std::net::SocketAddr) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr).await.context("connecting")?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            host: addr.to_string(),
            out: Vec::with_capacity(4096),
            buf: BytesMut::with_capacity(16 * 1024),
        })
    }

    /// `POST` a JSON body to `path` and read the whole answer: its status
    /// code and body.
    pub async fn post_json(&mut self, path: &str, body: &[u8]) -> anyhow::Result<(u16, Bytes)> {
        use std::io::Write as _;
        self.out.clear();
        write!(
            self.out,
            "POST {path} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\naccept: application/json\r\ncontent-length: {}\r\n\r\n",
            self.host,
            body.len()
        )?;
        self.out.extend_from_slice(body);
        self.stream.write_all(&self.out).await?;
        self.read_answer().await
    }

    /// Read one answer with a `Content-Length` from the connection.
    async fn read_answer(&mut self) -> anyhow::Result<(u16, Bytes)> {
        let (head_len, code, body_len) = loop {
            if let Some(head) = parse_head(&self.buf)? {
                break head;
            }
            if self.buf.len() > MAX_HEAD {
                bail!("the answer's head is over {MAX_HEAD} bytes");
            }
            self.fill().await?;
        };
        while self.buf.len() < head_len + body_len {
            self.fill().await?;
        }
        let mut answer = self.buf.split_to(head_len + body_len);
        Ok((code, answer.split_off(head_len).freeze()))
    }

    async fn fill(&mut self) -> anyhow::Result<()> {
        self.buf.reserve(16 * 1024);
        if self.stream.read_buf(&mut self.buf).await? == 0 {
            bail!("the server closed the connection");
        }
        Ok(())
    }
}

/// The head's length, status code and body length, once the head is whole.
fn parse_head(buf: &[u8]) -> anyhow::Result<Option<(usize, u16, usize)>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut answer = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(head_len) = answer.parse(buf)? else {
        return Ok(None);
    };
    let code = answer.code.context("an answer without a status code")?;
    let mut body_len = None;
    for h in answer.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            body_len = Some(std::str::from_utf8(h.value)?.trim().parse::<usize>()?);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            bail!("answer {code} is chunked; this client reads Content-Length answers only");
        }
    }
    let body_len = body_len.with_context(|| format!("answer {code} has no Content-Length"))?;
    Ok(Some((head_len, code, body_len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whole_head_gives_its_length_code_and_body_length() {
        let answer = b"HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
        let head = parse_head(answer).unwrap().unwrap();
        assert_eq!(head, (answer.len() - 2, 201, 2));
        assert!(parse_head(&answer[..20]).unwrap().is_none());
    }

    #[test]
    fn chunked_or_unsized_answers_are_errors() {
        assert!(parse_head(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\n\r\n").is_err());
    }
}
