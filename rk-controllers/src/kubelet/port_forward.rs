//! `kubectl port-forward`: `/portForward/{namespace}/{pod}`, which the API
//! server's `pods/portforward` proxies to.
//!
//! Three ways in, as upstream's kubelet and API server offer them:
//!
//! - An HTTP upgrade to `SPDY/3.1` (`X-Stream-Protocol-Version:
//!   portforward.k8s.io`). For each connection it accepts locally the client
//!   opens two SPDY streams with the same `requestID` header and the pod's
//!   `port`: an `error` stream and a `data` stream. The kubelet answers
//!   each, connects to the pod's IP at that port and copies bytes both ways
//!   on the data stream; a failure to connect is written as text on the
//!   error stream. When one direction ends the other gets a second to
//!   finish, then both streams are closed.
//! - A WebSocket speaking `SPDY/3.1+portforward.k8s.io`: the same SPDY
//!   session carried in binary messages (kubectl 1.30 and later try this
//!   first and fall back to the plain upgrade when it is refused).
//! - A WebSocket speaking `v4.channel.k8s.io` with the ports in the query
//!   (`?port=8080&port=9090`, as the Python client sends them): port `i`
//!   gets data channel `2i` and error channel `2i+1`, each of which first
//!   carries the port number (two bytes, little endian); one connection to
//!   the pod per port, and the WebSocket closes when they all end.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use super::Shared;
use super::exec::{self, Body, Handshake, plain};
use super::pod_worker::PodState;
use super::spdy::{self, Frame, Out, write_frames};
use crate::task::AbortOnDrop;

/// The port-forward protocol negotiated in `X-Stream-Protocol-Version`.
pub const PROTOCOL: &str = "portforward.k8s.io";
/// The WebSocket subprotocol that carries a SPDY session.
pub const TUNNEL_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";
/// The WebSocket subprotocol with one channel pair per port.
pub const CHANNEL_PROTOCOL: &str = "v4.channel.k8s.io";

/// How long connecting to the pod may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Once one direction of a forwarded connection ends, how long the other
/// gets to finish (upstream's runtimes wait one second too).
const LINGER: Duration = Duration::from_secs(1);
/// The most bytes read from the pod for one message.
const CHUNK: usize = 32 * 1024;

/// The pod whose ports are forwarded.
#[derive(Clone)]
struct Target {
    state: Arc<PodState>,
    key: String,
}

/// Answer a port-forward request: upgrade it and serve the session.
pub(crate) async fn handle(
    req: Request<Incoming>,
    shared: &Arc<Shared>,
    namespace: &str,
    pod: &str,
) -> Response<Body> {
    let Some(state) = shared.pod_state(namespace, pod) else {
        return plain(
            StatusCode::NOT_FOUND,
            format!("pod {namespace}/{pod} is not running on this node"),
        );
    };
    let target = Target {
        state,
        key: format!("{namespace}/{pod}"),
    };
    let upgrade = req
        .headers()
        .get(http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if upgrade.eq_ignore_ascii_case("websocket") {
        websocket(req, target)
    } else if upgrade.eq_ignore_ascii_case("SPDY/3.1") {
        spdy_upgrade(req, target)
    } else {
        plain(
            StatusCode::BAD_REQUEST,
            format!(
                "port-forward needs an upgrade to SPDY/3.1 ({PROTOCOL}), or a WebSocket speaking \
                 {TUNNEL_PROTOCOL} or {CHANNEL_PROTOCOL}"
            ),
        )
    }
}

/// The plain SPDY upgrade.
fn spdy_upgrade(req: Request<Incoming>, target: Target) -> Response<Body> {
    spdy::accept_upgrade(req, PROTOCOL, false, move |io| serve_spdy(io, target))
}

/// The WebSocket ways in.
fn websocket(req: Request<Incoming>, target: Target) -> Response<Body> {
    let handshake = match Handshake::check_protocols(
        &req,
        "port-forward",
        &[TUNNEL_PROTOCOL, CHANNEL_PROTOCOL],
    ) {
        Ok(h) => h,
        Err(message) => return plain(StatusCode::BAD_REQUEST, message),
    };
    let tunnel = handshake.protocol == TUNNEL_PROTOCOL;
    let ports = match ports(req.uri().query().unwrap_or_default()) {
        Ok(p) if p.is_empty() && !tunnel => {
            return plain(
                StatusCode::BAD_REQUEST,
                "query parameter \"port\" is required".to_owned(),
            );
        }
        Ok(p) => p,
        Err(message) => return plain(StatusCode::BAD_REQUEST, message),
    };
    tokio::spawn(async move {
        let Some(ws) = exec::upgraded(req).await else {
            return;
        };
        if tunnel {
            serve_spdy(bridge(ws), target).await;
        } else {
            serve_channels(ws, target, ports).await;
        }
    });
    handshake.accept()
}

/// The `port` query parameters (repeated or comma-separated).
fn ports(query: &str) -> Result<Vec<u16>, String> {
    let mut out = Vec::new();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        if k != "port" && k != "ports" {
            continue;
        }
        for p in v.split(',') {
            match p.trim().parse::<u16>() {
                Ok(port) if port > 0 => out.push(port),
                _ => return Err(format!("invalid port {p:?}")),
            }
        }
    }
    Ok(out)
}

/// A byte stream over a WebSocket's binary messages.
fn bridge<S>(ws: WebSocketStream<S>) -> tokio::io::DuplexStream
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    tokio::spawn(async move {
        let (mut sink, mut source) = ws.split();
        let (mut rd, mut wr) = tokio::io::split(ours);
        let inbound = async {
            while let Some(Ok(message)) = source.next().await {
                match message {
                    Message::Binary(b) if wr.write_all(&b).await.is_err() => break,
                    Message::Close(_) => break,
                    _ => {}
                }
            }
            let _ = wr.shutdown().await;
        };
        let outbound = async {
            let mut buf = vec![0u8; CHUNK];
            loop {
                match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let message = Message::Binary(Bytes::copy_from_slice(&buf[..n]));
                        if sink.send(message).await.is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = sink.close().await;
        };
        tokio::join!(inbound, outbound);
    });
    theirs
}

/// Serve one SPDY port-forward session until the client ends it.
async fn serve_spdy<IO>(io: IO, target: Target)
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let (rd, wr) = tokio::io::split(io);
    let (out, out_rx) = mpsc::channel(64);
    let writer = tokio::spawn(write_frames(wr, out_rx));
    let mut reader = spdy::Reader::new(rd);
    let mut session = Session {
        target,
        out: out.clone(),
        streams: HashMap::new(),
        pairs: HashMap::new(),
        last: 0,
    };
    loop {
        let frame = match reader.next().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %e, pod = %session.target.key, "port-forward session ends");
                break;
            }
        };
        match frame {
            Frame::SynStream {
                stream,
                fin,
                headers,
            } => session.open(stream, fin, &headers).await,
            Frame::Data { stream, fin, data } => session.data(stream, fin, data).await,
            Frame::RstStream { stream, .. } => session.reset(stream),
            // Pings the client started (odd ids) are echoed.
            Frame::Ping(id) if id % 2 == 1 => {
                let _ = out.send(Out::Ping(id)).await;
            }
            Frame::GoAway { .. } => break,
            Frame::Ping(_) | Frame::SynReply { .. } | Frame::Other(_) => {}
        }
    }
    let last = session.last;
    drop(session);
    let _ = out.send(Out::GoAway(last)).await;
    drop(out);
    let _ = writer.await;
}

/// The streams of one SPDY session.
struct Session {
    target: Target,
    out: mpsc::Sender<Out>,
    /// Stream id to request id.
    streams: HashMap<u32, String>,
    /// Request id to its pair of streams.
    pairs: HashMap<String, Pair>,
    /// The last stream accepted.
    last: u32,
}

/// The error and data streams of one forwarded connection.
struct Pair {
    port: u16,
    error: Option<u32>,
    data: Option<u32>,
    /// Bytes from the client for the pod (dropped at the client's FIN).
    to_pod: Option<mpsc::Sender<Bytes>>,
    from_client: Option<mpsc::Receiver<Bytes>>,
    forward: Option<AbortOnDrop>,
}

impl Session {
    /// A stream opened by the client.
    async fn open(&mut self, stream: u32, fin: bool, headers: &spdy::Headers) {
        let kind = spdy::header(headers, "streamtype").unwrap_or_default();
        let port = spdy::header(headers, "port").and_then(|p| p.trim().parse::<u16>().ok());
        let (Some(port), "error" | "data") = (port.filter(|p| *p > 0), kind) else {
            tracing::debug!(
                stream,
                kind,
                "port-forward stream refused: bad streamType or port"
            );
            let _ = self
                .out
                .send(Out::Reset(stream, spdy::REFUSED_STREAM))
                .await;
            return;
        };
        // Clients older than the requestID header pair an error stream
        // with the data stream two ids later.
        let request = match spdy::header(headers, "requestid") {
            Some(id) => id.to_owned(),
            None if kind == "error" => stream.to_string(),
            None => stream.saturating_sub(2).to_string(),
        };
        let _ = self.out.send(Out::Reply(stream)).await;
        self.last = self.last.max(stream);
        self.streams.insert(stream, request.clone());
        let pair = self.pairs.entry(request).or_insert_with(|| Pair {
            port,
            error: None,
            data: None,
            to_pod: None,
            from_client: None,
            forward: None,
        });
        if kind == "error" {
            pair.error = Some(stream);
        } else {
            let (tx, rx) = mpsc::channel(16);
            pair.data = Some(stream);
            pair.to_pod = (!fin).then_some(tx);
            pair.from_client = Some(rx);
        }
        if let (Some(error), Some(data), Some(from_client)) =
            (pair.error, pair.data, pair.from_client.take())
        {
            let sink = Sink::Spdy {
                out: self.out.clone(),
                data,
                error,
            };
            let task = forward(self.target.clone(), pair.port, sink, from_client);
            pair.forward = Some(AbortOnDrop(tokio::spawn(task)));
        }
    }

    /// Bytes from the client on a stream.
    async fn data(&mut self, stream: u32, fin: bool, data: Bytes) {
        let Some(pair) = self
            .streams
            .get(&stream)
            .and_then(|request| self.pairs.get_mut(request))
        else {
            return;
        };
        if pair.data != Some(stream) {
            // Nothing is read from the error stream.
            return;
        }
        if !data.is_empty()
            && let Some(tx) = &pair.to_pod
        {
            let _ = tx.send(data).await;
        }
        if fin {
            pair.to_pod = None;
        }
    }

    /// The client dropped a stream: its connection is done with.
    fn reset(&mut self, stream: u32) {
        if let Some(request) = self.streams.remove(&stream)
            && let Some(pair) = self.pairs.remove(&request)
        {
            for other in [pair.error, pair.data].into_iter().flatten() {
                self.streams.remove(&other);
            }
        }
    }
}

/// Where a forwarded connection's bytes and errors go.
enum Sink {
    /// A SPDY stream pair.
    Spdy {
        out: mpsc::Sender<Out>,
        data: u32,
        error: u32,
    },
    /// A channel pair of a `v4.channel.k8s.io` WebSocket.
    Channels {
        out: mpsc::Sender<Message>,
        data: u8,
        error: u8,
    },
}

impl Sink {
    /// Send bytes from the pod; false once the client is gone.
    async fn data(&self, bytes: Bytes) -> bool {
        match self {
            Sink::Spdy { out, data, .. } => out
                .send(Out::Data {
                    stream: *data,
                    fin: false,
                    data: bytes,
                })
                .await
                .is_ok(),
            Sink::Channels { out, data, .. } => {
                out.send(channel_message(*data, &bytes)).await.is_ok()
            }
        }
    }

    /// Report a failure.
    async fn error(&self, message: String) {
        let _ = match self {
            Sink::Spdy { out, error, .. } => out
                .send(Out::Data {
                    stream: *error,
                    fin: false,
                    data: Bytes::from(message),
                })
                .await
                .is_ok(),
            Sink::Channels { out, error, .. } => out
                .send(channel_message(*error, message.as_bytes()))
                .await
                .is_ok(),
        };
    }

    /// The connection is over.
    async fn finish(&self) {
        if let Sink::Spdy { out, data, error } = self {
            for stream in [*data, *error] {
                let _ = out
                    .send(Out::Data {
                        stream,
                        fin: true,
                        data: Bytes::new(),
                    })
                    .await;
            }
        }
    }
}

/// A binary message on `channel`.
fn channel_message(channel: u8, bytes: &[u8]) -> Message {
    let mut m = Vec::with_capacity(bytes.len() + 1);
    m.push(channel);
    m.extend_from_slice(bytes);
    Message::Binary(m.into())
}

/// Connect to the pod's `port` and copy until the connection ends.
async fn forward(target: Target, port: u16, sink: Sink, mut from_client: mpsc::Receiver<Bytes>) {
    let conn = match dial(&target, port).await {
        Ok(c) => c,
        Err(message) => {
            let uid = &target.state.uid;
            tracing::debug!(pod = %target.key, port, %message, "port-forward failed");
            sink.error(format!(
                "error forwarding port {port} to pod {}, uid {uid}: {message}",
                target.key
            ))
            .await;
            sink.finish().await;
            return;
        }
    };
    let (mut rd, mut wr) = conn.into_split();
    let up = async move {
        while let Some(b) = from_client.recv().await {
            if wr.write_all(&b).await.is_err() {
                return;
            }
        }
        let _ = wr.shutdown().await;
    };
    let down = async {
        let mut buf = BytesMut::with_capacity(CHUNK);
        loop {
            buf.reserve(CHUNK);
            match rd.read_buf(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if !sink.data(buf.split().freeze()).await {
                        break;
                    }
                }
            }
        }
    };
    tokio::pin!(up, down);
    tokio::select! {
        _ = &mut up => {
            let _ = tokio::time::timeout(LINGER, &mut down).await;
        }
        _ = &mut down => {
            let _ = tokio::time::timeout(LINGER, &mut up).await;
        }
    }
    sink.finish().await;
}

/// Connect to the pod's IP at `port`.
async fn dial(target: &Target, port: u16) -> Result<TcpStream, String> {
    let Some(ip) = target.state.read(|r| r.pod_ip.clone()) else {
        return Err("the pod has no IP address yet".to_owned());
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((ip.as_str(), port))).await {
        Ok(Ok(conn)) => {
            let _ = conn.set_nodelay(true);
            Ok(conn)
        }
        Ok(Err(e)) => Err(format!("dial tcp {ip}:{port}: {e}")),
        Err(_) => Err(format!(
            "dial tcp {ip}:{port}: no answer in {}s",
            CONNECT_TIMEOUT.as_secs()
        )),
    }
}

/// Serve a `v4.channel.k8s.io` port-forward: one connection per port.
async fn serve_channels<S>(ws: WebSocketStream<S>, target: Target, ports: Vec<u16>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut source) = ws.split();
    let (out, mut out_rx) = mpsc::channel::<Message>(64);
    let writer = tokio::spawn(async move {
        while let Some(m) = out_rx.recv().await {
            if sink.send(m).await.is_err() {
                return;
            }
        }
        let _ = sink.close().await;
    });
    let mut to_pods = Vec::with_capacity(ports.len());
    let mut forwards = tokio::task::JoinSet::new();
    for (i, port) in ports.iter().enumerate() {
        let (Ok(data), Ok(error)) = (u8::try_from(2 * i), u8::try_from(2 * i + 1)) else {
            break;
        };
        for channel in [data, error] {
            let _ = out
                .send(channel_message(channel, &port.to_le_bytes()))
                .await;
        }
        let (tx, rx) = mpsc::channel(16);
        to_pods.push(tx);
        let sink = Sink::Channels {
            out: out.clone(),
            data,
            error,
        };
        forwards.spawn(forward(target.clone(), *port, sink, rx));
    }
    drop(out);
    let read = async {
        while let Some(Ok(message)) = source.next().await {
            match message {
                Message::Binary(b) if b.len() > 1 => {
                    let channel = usize::from(b[0]);
                    if channel % 2 == 0
                        && let Some(tx) = to_pods.get(channel / 2)
                    {
                        let _ = tx.send(b.slice(1..)).await;
                    }
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
    };
    tokio::select! {
        _ = read => {}
        _ = async { while forwards.join_next().await.is_some() {} } => {}
    }
    // The client left (or every connection ended): no more input.
    drop(to_pods);
    while forwards.join_next().await.is_some() {}
    let _ = writer.await;
}

#[cfg(test)]
mod tests {
    use super::ports;

    #[test]
    fn ports_come_repeated_or_comma_separated() {
        assert_eq!(ports("port=80&port=8080,9090"), Ok(vec![80, 8080, 9090]));
        assert_eq!(ports("ports=5432"), Ok(vec![5432]));
        assert_eq!(ports(""), Ok(vec![]));
        assert!(ports("port=http").is_err());
        assert!(ports("port=0").is_err());
    }
}
