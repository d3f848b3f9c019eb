//! SPDY/3.1 framing, as much of it as Kubernetes' streaming protocols use
//! (`kubectl port-forward` speaks it, directly after an HTTP upgrade or
//! tunnelled in a WebSocket).
//!
//! A frame is 8 bytes of header and a payload. Data frames carry a stream
//! id and a FIN flag; control frames (`SYN_STREAM`, `SYN_REPLY`,
//! `RST_STREAM`, `PING`, `GOAWAY`, ...) a type. Header blocks in
//! `SYN_STREAM`, `SYN_REPLY` and `HEADERS` are compressed with one zlib
//! stream per direction for the whole connection, primed with the SPDY/3
//! dictionary: [`Reader`] inflates them with that dictionary; [`Writer`]
//! answers with stored (uncompressed) deflate blocks, each followed by a
//! sync flush, which any zlib reader accepts whether or not it holds the
//! dictionary.
//!
//! Flow control (`WINDOW_UPDATE`) is read and ignored, as Kubernetes' own
//! SPDY library does.

use bytes::Bytes;
use flate2::{Decompress, FlushDecompress};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;

/// The protocol version in every control frame.
const VERSION: u16 = 3;
/// The largest header block accepted once inflated.
const MAX_HEADER_BLOCK: usize = 256 * 1024;

/// Control frame types.
const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;

/// The FIN flag (data frames, `SYN_STREAM`, `SYN_REPLY`).
const FLAG_FIN: u8 = 0x01;

/// `RST_STREAM` status: the stream is refused.
pub const REFUSED_STREAM: u32 = 3;
/// `RST_STREAM` status: the stream is cancelled.
pub const CANCEL: u32 = 5;

/// Header names and values, in order (a value that held several,
/// NUL-separated, appears once per value).
pub type Headers = Vec<(String, String)>;

/// The first value of header `name` (names are lower case on the wire).
pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A frame as read.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// The peer opens a stream.
    SynStream {
        /// Its id (odd from a client).
        stream: u32,
        /// The peer sends nothing more on it.
        fin: bool,
        /// Its headers.
        headers: Headers,
    },
    /// The peer accepts a stream this side opened.
    SynReply {
        /// The stream.
        stream: u32,
        /// Its headers.
        headers: Headers,
    },
    /// The peer ends a stream abruptly.
    RstStream {
        /// The stream.
        stream: u32,
        /// Why ([`CANCEL`], [`REFUSED_STREAM`], ...).
        status: u32,
    },
    /// A ping, to be echoed when the peer sent it.
    Ping(u32),
    /// The peer ends the connection.
    GoAway {
        /// The last stream it handled.
        last_good: u32,
    },
    /// Bytes on a stream.
    Data {
        /// The stream.
        stream: u32,
        /// The peer sends nothing more on the stream.
        fin: bool,
        /// The bytes.
        data: Bytes,
    },
    /// A control frame read and not acted on (`SETTINGS`, `HEADERS`,
    /// `WINDOW_UPDATE`, or a type this side does not know): its type.
    Other(u16),
}

/// A connection that does not follow the protocol.
#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    /// Reading failed.
    #[error("reading the connection: {0}")]
    Io(#[from] std::io::Error),
    /// The peer broke the protocol.
    #[error("SPDY protocol error: {0}")]
    Protocol(String),
}

fn protocol(message: impl Into<String>) -> SpdyError {
    SpdyError::Protocol(message.into())
}

/// Reads frames, inflating header blocks as it goes.
pub struct Reader<R> {
    io: R,
    inflate: Decompress,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    /// Read from `io`.
    pub fn new(io: R) -> Self {
        Self {
            io,
            inflate: Decompress::new(true),
        }
    }

    /// The next frame; `None` when the connection ends between frames.
    pub async fn next(&mut self) -> Result<Option<Frame>, SpdyError> {
        let mut head = [0u8; 8];
        match self.io.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        let flags = head[4];
        let len = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
        let mut payload = vec![0u8; len];
        self.io.read_exact(&mut payload).await?;
        let word = |at: usize| -> Result<u32, SpdyError> {
            payload
                .get(at..at + 4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or_else(|| protocol(format!("a control frame of {len} bytes is too short")))
        };
        if head[0] & 0x80 == 0 {
            return Ok(Some(Frame::Data {
                stream: u32::from_be_bytes([head[0], head[1], head[2], head[3]]),
                fin: flags & FLAG_FIN != 0,
                data: Bytes::from(payload),
            }));
        }
        let version = u16::from_be_bytes([head[0] & 0x7f, head[1]]);
        if version != VERSION {
            return Err(protocol(format!(
                "version {version} is not supported (only {VERSION})"
            )));
        }
        let fin = flags & FLAG_FIN != 0;
        Ok(Some(match u16::from_be_bytes([head[2], head[3]]) {
            SYN_STREAM => {
                let stream = word(0)? & 0x7fff_ffff;
                let block = payload
                    .get(10..)
                    .ok_or_else(|| protocol("SYN_STREAM is too short"))?;
                let headers = self.headers(block)?;
                if stream == 0 {
                    return Err(protocol("SYN_STREAM for stream 0"));
                }
                Frame::SynStream {
                    stream,
                    fin,
                    headers,
                }
            }
            SYN_REPLY => {
                let stream = word(0)? & 0x7fff_ffff;
                let headers = self.headers(&payload[4..])?;
                Frame::SynReply { stream, headers }
            }
            RST_STREAM => Frame::RstStream {
                stream: word(0)? & 0x7fff_ffff,
                status: word(4)?,
            },
            PING => Frame::Ping(word(0)?),
            GOAWAY => Frame::GoAway {
                last_good: word(0)? & 0x7fff_ffff,
            },
            HEADERS => {
                // Inflated all the same: the zlib stream runs through
                // every header block of the connection.
                word(0)?;
                self.headers(&payload[4..])?;
                Frame::Other(HEADERS)
            }
            other => Frame::Other(other),
        }))
    }

    /// Inflate and parse one header block.
    fn headers(&mut self, block: &[u8]) -> Result<Headers, SpdyError> {
        let raw = self.inflate(block)?;
        parse_headers(&raw)
    }

    /// Inflate the next part of the connection's header stream.
    fn inflate(&mut self, mut input: &[u8]) -> Result<Vec<u8>, SpdyError> {
        let mut out = Vec::with_capacity(input.len() * 4 + 256);
        loop {
            if out.len() == out.capacity() {
                if out.len() >= MAX_HEADER_BLOCK {
                    return Err(protocol(format!(
                        "a header block inflates to more than {MAX_HEADER_BLOCK} bytes"
                    )));
                }
                out.reserve(out.len());
            }
            let before = self.inflate.total_in();
            let result = self
                .inflate
                .decompress_vec(input, &mut out, FlushDecompress::Sync);
            let used = (self.inflate.total_in() - before) as usize;
            input = &input[used.min(input.len())..];
            match result {
                Ok(_) if input.is_empty() && out.len() < out.capacity() => return Ok(out),
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.inflate
                        .set_dictionary(DICTIONARY)
                        .map_err(|e| protocol(format!("header compression dictionary: {e}")))?;
                }
                Err(e) => return Err(protocol(format!("inflating a header block: {e}"))),
            }
        }
    }
}

/// Parse an inflated header block: a count, then length-prefixed names and
/// values (several values of one name separated by NUL).
fn parse_headers(raw: &[u8]) -> Result<Headers, SpdyError> {
    let mut at = 0usize;
    let mut next = |n: usize| -> Result<&[u8], SpdyError> {
        let part = raw
            .get(at..at.saturating_add(n))
            .ok_or_else(|| protocol("a header block ends early"))?;
        at += n;
        Ok(part)
    };
    let count = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
    let pairs = count(next(4)?);
    let mut headers = Vec::with_capacity(pairs.min(64));
    for _ in 0..pairs {
        let len = count(next(4)?);
        let name = String::from_utf8_lossy(next(len)?).to_ascii_lowercase();
        let len = count(next(4)?);
        let value = String::from_utf8_lossy(next(len)?).into_owned();
        for v in value.split('\0') {
            headers.push((name.clone(), v.to_owned()));
        }
    }
    Ok(headers)
}

/// Encodes frames; holds this side's header stream.
#[derive(Debug, Default)]
pub struct Writer {
    /// Whether the zlib stream's header was sent.
    started: bool,
}

impl Writer {
    /// A new connection's writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// `SYN_REPLY` accepting `stream`.
    pub fn syn_reply(&mut self, stream: u32, fin: bool, headers: &[(&str, &str)]) -> Vec<u8> {
        let mut payload = stream.to_be_bytes().to_vec();
        self.header_block(headers, &mut payload);
        control(SYN_REPLY, if fin { FLAG_FIN } else { 0 }, &payload)
    }

    /// `SYN_STREAM` opening `stream` (for tests and clients).
    pub fn syn_stream(&mut self, stream: u32, fin: bool, headers: &[(&str, &str)]) -> Vec<u8> {
        let mut payload = stream.to_be_bytes().to_vec();
        payload.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        self.header_block(headers, &mut payload);
        control(SYN_STREAM, if fin { FLAG_FIN } else { 0 }, &payload)
    }

    /// A header block as a stored deflate block of this side's zlib stream.
    fn header_block(&mut self, headers: &[(&str, &str)], out: &mut Vec<u8>) {
        let mut raw = (headers.len() as u32).to_be_bytes().to_vec();
        for (k, v) in headers {
            raw.extend_from_slice(&(k.len() as u32).to_be_bytes());
            raw.extend_from_slice(k.to_ascii_lowercase().as_bytes());
            raw.extend_from_slice(&(v.len() as u32).to_be_bytes());
            raw.extend_from_slice(v.as_bytes());
        }
        if !self.started {
            // CMF: deflate with a 32 KiB window; FLG: no dictionary, and
            // a check value making the pair a multiple of 31.
            out.extend_from_slice(&[0x78, 0x01]);
            self.started = true;
        }
        for chunk in raw.chunks(u16::MAX as usize) {
            let len = chunk.len() as u16;
            // A non-final stored block: BFINAL 0, BTYPE 00, byte aligned.
            out.push(0);
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&(!len).to_le_bytes());
            out.extend_from_slice(chunk);
        }
        // And an empty one, as a zlib sync flush ends: readers hand out
        // what they inflated when they reach it, without waiting for the
        // next block (Go's stops at the end of the frame otherwise, and
        // its stream is broken from then on).
        out.extend_from_slice(&[0, 0, 0, 0xff, 0xff]);
    }
}

/// The 8-byte header of a data frame carrying `len` bytes.
pub fn data_header(stream: u32, fin: bool, len: usize) -> [u8; 8] {
    let mut head = [0u8; 8];
    head[..4].copy_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    let len = (len as u32).min(0x00ff_ffff).to_be_bytes();
    head[4] = if fin { FLAG_FIN } else { 0 };
    head[5..].copy_from_slice(&len[1..]);
    head
}

/// The largest payload of one data frame.
pub const MAX_DATA: usize = 0x00ff_ffff;

/// `RST_STREAM` for `stream`.
pub fn rst_stream(stream: u32, status: u32) -> Vec<u8> {
    let mut payload = (stream & 0x7fff_ffff).to_be_bytes().to_vec();
    payload.extend_from_slice(&status.to_be_bytes());
    control(RST_STREAM, 0, &payload)
}

/// `PING` with `id`.
pub fn ping(id: u32) -> Vec<u8> {
    control(PING, 0, &id.to_be_bytes())
}

/// `GOAWAY`, having handled streams up to `last_good`.
pub fn go_away(last_good: u32) -> Vec<u8> {
    let mut payload = (last_good & 0x7fff_ffff).to_be_bytes().to_vec();
    payload.extend_from_slice(&0u32.to_be_bytes());
    control(GOAWAY, 0, &payload)
}

fn control(kind: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + payload.len());
    out.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    let len = (payload.len() as u32).to_be_bytes();
    out.push(flags);
    out.extend_from_slice(&len[1..]);
    out.extend_from_slice(payload);
    out
}

/// The dictionary both sides prime header compression with (SPDY/3,
/// section 2.6.10.1).
const DICTIONARY: &[u8] = b"\
\x00\x00\x00\x07options\x00\x00\x00\x04head\x00\x00\x00\x04post\x00\x00\x00\x03p\
ut\x00\x00\x00\x06delete\x00\x00\x00\x05trace\x00\x00\x00\x06accept\x00\x00\x00\
\x0eaccept-charset\x00\x00\x00\x0faccept-encoding\x00\x00\x00\x0faccept-language\
\x00\x00\x00\x0daccept-ranges\x00\x00\x00\x03age\x00\x00\x00\x05allow\x00\x00\
\x00\x0dauthorization\x00\x00\x00\x0dcache-control\x00\x00\x00\x0aconnection\x00\
\x00\x00\x0ccontent-base\x00\x00\x00\x10content-encoding\x00\x00\x00\x10content-\
language\x00\x00\x00\x0econtent-length\x00\x00\x00\x10content-location\x00\x00\
\x00\x0bcontent-md5\x00\x00\x00\x0dcontent-range\x00\x00\x00\x0ccontent-type\x00\
\x00\x00\x04date\x00\x00\x00\x04etag\x00\x00\x00\x06expect\x00\x00\x00\x07expire\
s\x00\x00\x00\x04from\x00\x00\x00\x04host\x00\x00\x00\x08if-match\x00\x00\x00\
\x11if-modified-since\x00\x00\x00\x0dif-none-match\x00\x00\x00\x08if-range\x00\
\x00\x00\x13if-unmodified-since\x00\x00\x00\x0dlast-modified\x00\x00\x00\x08loca\
tion\x00\x00\x00\x0cmax-forwards\x00\x00\x00\x06pragma\x00\x00\x00\x12proxy-auth\
enticate\x00\x00\x00\x13proxy-authorization\x00\x00\x00\x05range\x00\x00\x00\x07\
referer\x00\x00\x00\x0bretry-after\x00\x00\x00\x06server\x00\x00\x00\x02te\x00\
\x00\x00\x07trailer\x00\x00\x00\x11transfer-encoding\x00\x00\x00\x07upgrade\x00\
\x00\x00\x0auser-agent\x00\x00\x00\x04vary\x00\x00\x00\x03via\x00\x00\x00\x07war\
ning\x00\x00\x00\x10www-authenticate\x00\x00\x00\x06method\x00\x00\x00\x03get\
\x00\x00\x00\x06status\x00\x00\x00\x06200 OK\x00\x00\x00\x07version\x00\x00\x00\
\x08HTTP/1.1\x00\x00\x00\x03url\x00\x00\x00\x06public\x00\x00\x00\x0aset-cookie\
\x00\x00\x00\x0akeep-alive\x00\x00\x00\x06origin10010120120220520630030230330430\
5306307402405406407408409410411412413414415416417502504505203 Non-Authoritative \
Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized403\
\x20Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Servic\
e UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue,\
\x20Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,\
application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatema\
x-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.";

/// What the SPDY writer sends.
pub enum Out {
    /// `SYN_REPLY` to a stream the peer opened.
    Reply(u32),
    /// A `DATA` frame.
    Data {
        /// The stream.
        stream: u32,
        /// Whether it is the stream's last.
        fin: bool,
        /// The bytes.
        data: Bytes,
    },
    /// `RST_STREAM` with a status.
    Reset(u32, u32),
    /// `PING` (an echo of the peer's).
    Ping(u32),
    /// `GOAWAY` naming the last stream accepted.
    GoAway(u32),
}

/// Write frames as they come, flushing when none wait.
pub async fn write_frames<W: AsyncWrite + Unpin>(wr: W, mut rx: mpsc::Receiver<Out>) {
    let mut wr = BufWriter::with_capacity(64 * 1024, wr);
    let mut frames = Writer::new();
    while let Some(o) = rx.recv().await {
        let written = match o {
            Out::Reply(stream) => wr.write_all(&frames.syn_reply(stream, false, &[])).await,
            Out::Data { stream, fin, data } => {
                let head = data_header(stream, fin, data.len());
                match wr.write_all(&head).await {
                    Ok(()) => wr.write_all(&data).await,
                    Err(e) => Err(e),
                }
            }
            Out::Reset(stream, status) => wr.write_all(&rst_stream(stream, status)).await,
            Out::Ping(id) => wr.write_all(&ping(id)).await,
            Out::GoAway(last) => wr.write_all(&go_away(last)).await,
        };
        if written.is_err() || (rx.is_empty() && wr.flush().await.is_err()) {
            return;
        }
    }
    let _ = wr.flush().await;
    let _ = wr.shutdown().await;
}

/// Answer a request to upgrade to SPDY/3.1 speaking `protocol` (what the
/// client lists in `X-Stream-Protocol-Version` must include it; with
/// `required` false a client that lists nothing is let through too): `403`
/// when the protocols do not meet, else `101`, and `serve` gets the
/// upgraded connection.
pub(crate) fn accept_upgrade<F, Fut>(
    req: http::Request<hyper::body::Incoming>,
    protocol: &'static str,
    required: bool,
    serve: F,
) -> http::Response<super::exec::Body>
where
    F: FnOnce(hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    use http::{HeaderValue, StatusCode};
    let offered: Vec<&str> = req
        .headers()
        .get_all("x-stream-protocol-version")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect();
    if (required || !offered.is_empty()) && !offered.contains(&protocol) {
        return super::exec::plain(
            StatusCode::FORBIDDEN,
            format!(
                "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, \
                 server supports [\"{protocol}\"]"
            ),
        );
    }
    tokio::spawn(async move {
        match hyper::upgrade::on(req).await {
            Ok(io) => serve(hyper_util::rt::TokioIo::new(io)).await,
            Err(e) => tracing::debug!(error = %e, protocol, "SPDY upgrade failed"),
        }
    });
    let mut r = super::exec::plain(StatusCode::SWITCHING_PROTOCOLS, String::new());
    let headers = r.headers_mut();
    headers.insert(
        http::header::CONNECTION,
        HeaderValue::from_static("Upgrade"),
    );
    headers.insert(http::header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
    headers.insert(
        "x-stream-protocol-version",
        HeaderValue::from_static(protocol),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compress, Compression, FlushCompress};

    /// A header block compressed as Go's SPDY library writes it: one zlib
    /// stream with the dictionary, flushed after each block.
    fn go_style_block(z: &mut Compress, headers: &[(&str, &str)]) -> Vec<u8> {
        let mut raw = (headers.len() as u32).to_be_bytes().to_vec();
        for (k, v) in headers {
            raw.extend_from_slice(&(k.len() as u32).to_be_bytes());
            raw.extend_from_slice(k.as_bytes());
            raw.extend_from_slice(&(v.len() as u32).to_be_bytes());
            raw.extend_from_slice(v.as_bytes());
        }
        let mut out = Vec::with_capacity(raw.len() + 128);
        z.compress_vec(&raw, &mut out, FlushCompress::Sync)
            .expect("compress");
        out
    }

    fn go_style_syn_stream(z: &mut Compress, stream: u32, headers: &[(&str, &str)]) -> Vec<u8> {
        let mut payload = stream.to_be_bytes().to_vec();
        payload.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        payload.extend(go_style_block(z, headers));
        control(SYN_STREAM, 0, &payload)
    }

    #[tokio::test]
    async fn reads_header_blocks_compressed_with_the_dictionary() {
        let mut z = Compress::new(Compression::best(), true);
        z.set_dictionary(DICTIONARY).expect("dictionary");
        let mut wire = go_style_syn_stream(
            &mut z,
            1,
            &[
                ("streamtype", "error"),
                ("port", "8080"),
                ("requestid", "0"),
            ],
        );
        wire.extend(go_style_syn_stream(
            &mut z,
            3,
            &[("streamtype", "data"), ("port", "8080"), ("requestid", "0")],
        ));
        wire.extend_from_slice(&data_header(3, true, 5));
        wire.extend_from_slice(b"hello");
        wire.extend(ping(7));
        wire.extend(rst_stream(3, CANCEL));
        let mut r = Reader::new(wire.as_slice());
        let Some(Frame::SynStream {
            stream, headers, ..
        }) = r.next().await.expect("frame")
        else {
            panic!("not a SYN_STREAM");
        };
        assert_eq!(stream, 1);
        assert_eq!(header(&headers, "streamtype"), Some("error"));
        let Some(Frame::SynStream {
            stream, headers, ..
        }) = r.next().await.expect("frame")
        else {
            panic!("not a SYN_STREAM");
        };
        assert_eq!(stream, 3);
        assert_eq!(header(&headers, "streamtype"), Some("data"));
        assert_eq!(header(&headers, "port"), Some("8080"));
        assert_eq!(
            r.next().await.expect("frame"),
            Some(Frame::Data {
                stream: 3,
                fin: true,
                data: Bytes::from_static(b"hello")
            })
        );
        assert_eq!(r.next().await.expect("frame"), Some(Frame::Ping(7)));
        assert_eq!(
            r.next().await.expect("frame"),
            Some(Frame::RstStream {
                stream: 3,
                status: CANCEL
            })
        );
        assert_eq!(r.next().await.expect("end"), None);
    }

    #[tokio::test]
    async fn written_header_blocks_read_back_with_or_without_the_dictionary() {
        let mut w = Writer::new();
        let mut wire = w.syn_reply(1, false, &[]);
        wire.extend(w.syn_reply(3, true, &[("x-a", "b")]));
        wire.extend(w.syn_stream(2, false, &[("streamtype", "data"), ("port", "80")]));
        // As a reader holding the dictionary (Go's) would.
        let mut r = Reader::new(wire.as_slice());
        assert_eq!(
            r.next().await.expect("frame"),
            Some(Frame::SynReply {
                stream: 1,
                headers: vec![]
            })
        );
        assert_eq!(
            r.next().await.expect("frame"),
            Some(Frame::SynReply {
                stream: 3,
                headers: vec![("x-a".into(), "b".into())]
            })
        );
        let Some(Frame::SynStream { headers, .. }) = r.next().await.expect("frame") else {
            panic!("not a SYN_STREAM");
        };
        assert_eq!(header(&headers, "port"), Some("80"));
    }

    #[tokio::test]
    async fn bad_input_is_an_error_not_a_panic() {
        // A SYN_STREAM whose header block is not zlib.
        let mut wire = control(SYN_STREAM, 0, &[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 2, 3]);
        let mut r = Reader::new(wire.as_slice());
        assert!(matches!(r.next().await, Err(SpdyError::Protocol(_))));
        // Too short for its type.
        wire = control(RST_STREAM, 0, &[0, 0]);
        let mut r = Reader::new(wire.as_slice());
        assert!(matches!(r.next().await, Err(SpdyError::Protocol(_))));
        // Another version.
        wire = control(PING, 0, &[0, 0, 0, 1]);
        wire[1] = 2;
        let mut r = Reader::new(wire.as_slice());
        assert!(matches!(r.next().await, Err(SpdyError::Protocol(_))));
        // A header block claiming more pairs than it holds.
        assert!(parse_headers(&[0, 0, 0, 9, 0, 0, 0, 1]).is_err());
        // Cut off mid-frame.
        let wire = ping(3);
        let mut r = Reader::new(&wire[..6]);
        assert!(matches!(r.next().await, Err(SpdyError::Io(_)) | Ok(None)));
    }
}
