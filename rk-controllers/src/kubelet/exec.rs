//! `kubectl exec`: `/exec/{namespace}/{pod}/{container}?command=...`, which
//! the API server's `pods/exec` proxies to.
//!
//! The client upgrades the request to a WebSocket speaking Kubernetes'
//! channel protocol (`v5.channel.k8s.io`, or `v4.channel.k8s.io` for older
//! clients): every binary message starts with a channel byte — 0 stdin, 1
//! stdout, 2 stderr, 3 the final `Status`, 4 terminal resizes — and in v5 a
//! message `[255, n]` closes channel `n` (stdin's end of input). When the
//! command ends the kubelet sends its `Status` on channel 3 (`Success`, or
//! `Failure` with reason `NonZeroExitCode` and the exit code as the cause
//! kubectl turns into its own exit code) and closes the connection.
//!
//! Clients that upgrade to SPDY/3.1 instead are served by
//! [`super::exec_spdy`].
//!
//! Terminals (`tty=true`) are not emulated: the command runs with pipes,
//! its stderr folded into stdout as a terminal would show it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::Shared;
use super::runtime::ExecSession;
use super::status::CState;

/// The subprotocols served, preferred first.
pub const PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];

pub(crate) const STDIN: u8 = 0;
pub(crate) const STDOUT: u8 = 1;
pub(crate) const STDERR: u8 = 2;
pub(crate) const STATUS: u8 = 3;
pub(crate) const CLOSE: u8 = 255;

/// What the client asked for in the query.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ExecOptions {
    /// `command` (repeated: one parameter per argument).
    pub command: Vec<String>,
    /// `stdin`.
    pub stdin: bool,
    /// `stdout`.
    pub stdout: bool,
    /// `stderr`.
    pub stderr: bool,
    /// `tty`.
    pub tty: bool,
}

impl ExecOptions {
    /// Parse a query string (`command` may repeat).
    pub fn parse(query: &str) -> Self {
        let mut out = Self::default();
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            let on = matches!(v.as_ref(), "true" | "1" | "");
            match k.as_ref() {
                "command" => out.command.push(v.into_owned()),
                "stdin" | "input" => out.stdin = on,
                "stdout" | "output" => out.stdout = on,
                "stderr" | "error" => out.stderr = on,
                "tty" => out.tty = on,
                _ => {}
            }
        }
        out
    }
}

/// The kubelet server's response body.
pub(crate) type Body = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

/// A plain-text response.
pub(crate) fn plain(status: StatusCode, message: String) -> Response<Body> {
    use http_body_util::BodyExt;
    let mut r = Response::new(http_body_util::Full::new(Bytes::from(message)).boxed());
    *r.status_mut() = status;
    r
}

/// A checked WebSocket upgrade request: its key and the subprotocol chosen.
pub(crate) struct Handshake {
    key: String,
    /// The chosen subprotocol (one of [`PROTOCOLS`]).
    pub protocol: &'static str,
}

impl Handshake {
    /// Check that `req` asks for a WebSocket with one of [`PROTOCOLS`];
    /// the error is the message of the 400 to send.
    pub fn check(req: &Request<Incoming>, what: &str) -> Result<Self, String> {
        Self::check_protocols(req, what, &PROTOCOLS)
    }

    /// Check that `req` asks for a WebSocket with one of `protocols`
    /// (preferred first).
    pub fn check_protocols(
        req: &Request<Incoming>,
        what: &str,
        protocols: &[&'static str],
    ) -> Result<Self, String> {
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let key = header("sec-websocket-key");
        if !header("upgrade").eq_ignore_ascii_case("websocket") || key.is_empty() {
            return Err(format!(
                "{what} needs a WebSocket upgrade speaking {}",
                protocols.first().copied().unwrap_or_default()
            ));
        }
        let offered = header("sec-websocket-protocol");
        let Some(protocol) = protocols
            .iter()
            .find(|p| offered.split(',').any(|o| o.trim() == **p))
        else {
            return Err(format!(
                "none of the offered subprotocols ({offered}) is supported; use one of {}",
                protocols.join(", ")
            ));
        };
        Ok(Self {
            key,
            protocol: *protocol,
        })
    }

    /// The `101 Switching Protocols` answer.
    pub fn accept(&self) -> Response<Body> {
        let mut r = plain(StatusCode::SWITCHING_PROTOCOLS, String::new());
        let headers = r.headers_mut();
        headers.insert(
            http::header::UPGRADE,
            http::HeaderValue::from_static("websocket"),
        );
        headers.insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("Upgrade"),
        );
        if let Ok(v) = http::HeaderValue::from_str(&derive_accept_key(self.key.as_bytes())) {
            headers.insert("sec-websocket-accept", v);
        }
        headers.insert(
            "sec-websocket-protocol",
            http::HeaderValue::from_static(self.protocol),
        );
        r
    }
}

/// The server side of an upgraded request's WebSocket.
pub(crate) async fn upgraded(
    req: Request<Incoming>,
) -> Option<WebSocketStream<hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>>> {
    match hyper::upgrade::on(req).await {
        Ok(u) => Some(
            WebSocketStream::from_raw_socket(hyper_util::rt::TokioIo::new(u), Role::Server, None)
                .await,
        ),
        Err(e) => {
            tracing::debug!(error = %e, "WebSocket upgrade failed");
            None
        }
    }
}

/// A container that runs now, as exec and attach find it.
pub(crate) struct RunningContainer {
    /// Its pod's state.
    pub state: Arc<super::pod_worker::PodState>,
    /// Its instance (the restart count).
    pub instance: i32,
    /// Where exec runs in it.
    pub exec: Option<Arc<super::runtime::ExecTarget>>,
    /// Its stdin, when it has one.
    pub stdin: Option<Arc<super::runtime::ContainerStdin>>,
}

/// Find `container` of `namespace/pod` running on this kubelet; the error is
/// the status and message to answer with.
pub(crate) fn running_container(
    shared: &Shared,
    namespace: &str,
    pod: &str,
    container: &str,
) -> Result<RunningContainer, (StatusCode, String)> {
    let Some(state) = shared.pod_state(namespace, pod) else {
        return Err((
            StatusCode::NOT_FOUND,
            format!("pod {namespace}/{pod} is not running on this node"),
        ));
    };
    let found = state.read(|r| {
        r.init
            .iter()
            .chain(r.app.iter())
            .chain(r.ephemeral.iter())
            .find(|c| c.name == container)
            .map(|c| {
                (
                    matches!(c.state, CState::Running { .. }),
                    c.restart_count,
                    c.exec.clone(),
                    c.stdin.clone(),
                )
            })
    });
    match found {
        None => Err((
            StatusCode::NOT_FOUND,
            format!("container {container} is not valid for pod {pod}"),
        )),
        Some((false, ..)) => Err((
            StatusCode::BAD_REQUEST,
            format!("container {container} in pod {pod} is not running"),
        )),
        Some((true, instance, exec, stdin)) => Ok(RunningContainer {
            state,
            instance,
            exec,
            stdin,
        }),
    }
}

/// Answer an exec request: upgrade it and run the command.
pub(crate) async fn handle(
    req: Request<Incoming>,
    shared: &Arc<Shared>,
    namespace: &str,
    pod: &str,
    container: &str,
) -> Response<Body> {
    let spdy = super::exec_spdy::is_spdy(&req);
    let handshake = match Handshake::check(&req, "exec") {
        Ok(h) => Some(h),
        Err(_) if spdy => None,
        Err(message) => return plain(StatusCode::BAD_REQUEST, message),
    };
    let options = ExecOptions::parse(req.uri().query().unwrap_or_default());
    if options.command.is_empty() {
        return plain(
            StatusCode::BAD_REQUEST,
            "you must specify at least one command for the container".to_owned(),
        );
    }
    let running = match running_container(shared, namespace, pod, container) {
        Ok(r) => r,
        Err((status, message)) => return plain(status, message),
    };
    let context = running.exec;
    let mut target = context.map(|c| (*c).clone()).unwrap_or_default();
    target.argv = options.command.clone();
    let runtime = shared.runtime.clone();
    let pod_key = format!("{namespace}/{pod}/{container}");
    let Some(handshake) = handshake else {
        tracing::debug!(container = %pod_key, command = ?target.argv, "exec over SPDY");
        return super::exec_spdy::upgrade(req, options, move || async move {
            runtime.exec_stream(target).await
        });
    };
    let v5 = handshake.protocol == PROTOCOLS[0];
    tokio::spawn(async move {
        let Some(ws) = upgraded(req).await else {
            return;
        };
        tracing::debug!(container = %pod_key, command = ?target.argv, "exec");
        let session = runtime.exec_stream(target).await;
        run(ws, session, options, v5).await;
    });
    handshake.accept()
}

/// The `Status` sent on channel 3 when the command ended with `code`.
pub fn exit_status(code: i32) -> serde_json::Value {
    if code == 0 {
        return serde_json::json!({"metadata": {}, "status": "Success"});
    }
    serde_json::json!({
        "metadata": {},
        "status": "Failure",
        "message": format!("command terminated with non-zero exit code: exit status {code}"),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    })
}

pub(crate) fn framed(channel: u8, data: &[u8]) -> Message {
    let mut v = Vec::with_capacity(data.len() + 1);
    v.push(channel);
    v.extend_from_slice(data);
    Message::Binary(v.into())
}

/// A close frame with code 1000: clients treat anything else (even an
/// empty close) as an error.
pub(crate) fn normal_close() -> Message {
    Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    }))
}

/// Copy a stream into messages made by `frame` until it ends (`None`:
/// read and drop, so the command never blocks on a full pipe). Shared by
/// the WebSocket and SPDY transports.
pub(crate) async fn pump<T>(
    mut from: std::pin::Pin<Box<dyn AsyncRead + Send>>,
    frame: Option<impl Fn(&[u8]) -> T>,
    to: mpsc::Sender<T>,
) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if let Some(frame) = &frame
                    && to.send(frame(&buf[..n])).await.is_err()
                {
                    return;
                }
            }
        }
    }
}

pub(crate) async fn run<S>(
    ws: WebSocketStream<S>,
    session: Result<ExecSession, super::runtime::RuntimeError>,
    options: ExecOptions,
    v5: bool,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut source) = ws.split();
    let session = match session {
        Ok(s) => s,
        Err(e) => {
            let status = serde_json::json!({
                "metadata": {}, "status": "Failure", "reason": "InternalError",
                "message": format!("error executing command in container: {e}"),
            });
            let _ = sink
                .send(framed(STATUS, status.to_string().as_bytes()))
                .await;
            let _ = sink.send(normal_close()).await;
            let _ = sink.close().await;
            return;
        }
    };
    let ExecSession {
        stdin,
        stdout,
        stderr,
        exit,
        kill,
    } = session;
    let (tx, mut rx) = mpsc::channel::<Message>(16);
    let out_channel = options.stdout.then_some(STDOUT);
    // A terminal shows both streams as one.
    let err_channel = if options.tty {
        out_channel
    } else {
        options.stderr.then_some(STDERR)
    };
    let pumps = [
        tokio::spawn(pump(
            stdout,
            out_channel.map(|ch| move |d: &[u8]| framed(ch, d)),
            tx.clone(),
        )),
        tokio::spawn(pump(
            stderr,
            err_channel.map(|ch| move |d: &[u8]| framed(ch, d)),
            tx.clone(),
        )),
    ];
    let writer = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            if sink.send(m).await.is_err() {
                return;
            }
        }
        let _ = sink.send(normal_close()).await;
        let _ = sink.close().await;
    });
    // The client's side: stdin, its end, and the connection closing.
    let (gone_tx, mut gone) = tokio::sync::oneshot::channel::<()>();
    let want_stdin = options.stdin;
    let reader = tokio::spawn(async move {
        // Dropping the pipe is what closes it: the command sees its input end.
        let mut input = want_stdin.then_some(stdin);
        while let Some(msg) = source.next().await {
            match msg {
                Ok(Message::Binary(data)) => {
                    let keep_open = match (data.first(), input.as_mut()) {
                        (Some(&STDIN), Some(pipe)) => pipe.write_all(&data[1..]).await.is_ok(),
                        (Some(&CLOSE), Some(_)) => !(v5 && data.get(1) == Some(&STDIN)),
                        _ => true,
                    };
                    if !keep_open {
                        input = None;
                    }
                }
                Ok(Message::Close(_)) | Err(_) => break,
                Ok(_) => {}
            }
        }
        let _ = gone_tx.send(());
    });
    let code = tokio::select! {
        code = exit => Some(code),
        _ = &mut gone => None,
    };
    match code {
        Some(code) => {
            // Output written just before the exit still goes out (a
            // background child holding the pipes open does not hold the
            // session).
            for p in pumps {
                let _ = tokio::time::timeout(Duration::from_secs(1), p).await;
            }
            let _ = tx
                .send(framed(STATUS, exit_status(code).to_string().as_bytes()))
                .await;
        }
        None => {
            kill();
            for p in pumps {
                p.abort();
            }
        }
    }
    drop(tx);
    let _ = writer.await;
    reader.abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_take_every_command_argument_in_order() {
        let o = ExecOptions::parse(
            "command=sh&command=-c&command=echo%20hi%3B+exit+3&stdout=true&stderr=true&tty=false",
        );
        assert_eq!(o.command, ["sh", "-c", "echo hi; exit 3"]);
        assert!(o.stdout && o.stderr && !o.stdin && !o.tty);
    }

    #[test]
    fn a_non_zero_exit_is_a_failure_kubectl_reads_the_code_from() {
        let s = exit_status(3);
        assert_eq!(s["status"], "Failure");
        assert_eq!(s["reason"], "NonZeroExitCode");
        assert_eq!(s["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(s["details"]["causes"][0]["message"], "3");
        assert_eq!(exit_status(0)["status"], "Success");
    }
}
