//! `kubectl exec` and `attach` over SPDY/3.1, as client-go's SPDY executor
//! speaks them (kubectl falls back to it when the WebSocket is refused, and
//! many Go tools use it only).
//!
//! The client upgrades with `X-Stream-Protocol-Version` listing the channel
//! protocols it knows; the kubelet picks `v4.channel.k8s.io` (the others
//! differ only in how errors are reported, and every client still offers
//! v4). The client then opens one SPDY stream per standard stream, named by
//! its `streamType` header — `error`, `stdin`, `stdout`, `stderr`, `resize`
//! — for what the query asked. Once they are all there the command runs:
//! its output goes out as data on `stdout`/`stderr` (folded into `stdout`
//! with a terminal), the client's `stdin` data goes to its input and the
//! client's FIN on `stdin` ends it; at exit the `Status` (as in the WebSocket
//! protocol's channel 3) is written on `error`, every stream is finished and
//! the session goes away.

use std::collections::HashMap;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::exec::{Body, ExecOptions, exit_status, pump};
use super::runtime::{ExecSession, RuntimeError};
use super::spdy::{self, Frame, Out, write_frames};

/// The channel protocol spoken over SPDY.
pub const PROTOCOL: &str = "v4.channel.k8s.io";

/// How long the client has to open every stream it asked for.
const STREAMS_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether `req` asks for a SPDY upgrade.
pub(crate) fn is_spdy(req: &Request<Incoming>) -> bool {
    req.headers()
        .get(http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("SPDY/3.1"))
}

/// Answer a SPDY exec or attach request: `start` makes the session (runs
/// the command, or attaches to the container) once the streams are open.
pub(crate) fn upgrade<F, Fut>(
    req: Request<Incoming>,
    options: ExecOptions,
    start: F,
) -> Response<Body>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<ExecSession, RuntimeError>> + Send,
{
    spdy::accept_upgrade(req, PROTOCOL, true, move |io| serve(io, options, start))
}

/// The stream types the client opens for `options`.
fn expected(options: &ExecOptions) -> Vec<&'static str> {
    let mut out = vec!["error"];
    if options.stdin {
        out.push("stdin");
    }
    if options.stdout {
        out.push("stdout");
    }
    // A terminal has no separate stderr; it has resizes instead.
    if options.stderr && !options.tty {
        out.push("stderr");
    }
    if options.tty {
        out.push("resize");
    }
    out
}

async fn serve<IO, F, Fut>(io: IO, options: ExecOptions, start: F)
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<ExecSession, RuntimeError>> + Send,
{
    let (rd, wr) = tokio::io::split(io);
    let (out, out_rx) = mpsc::channel(64);
    let writer = tokio::spawn(write_frames(wr, out_rx));
    let mut reader = spdy::Reader::new(rd);
    let wanted = expected(&options);
    let mut streams: HashMap<&'static str, u32> = HashMap::new();
    let mut last = 0;
    let mut start = Some(start);
    // The command's input, its end, and what arrived before it started.
    let mut stdin: Option<Pin<Box<dyn AsyncWrite + Send>>> = None;
    let mut stdin_open = options.stdin;
    let mut early_input: Vec<Bytes> = Vec::new();
    let mut kill: Option<Box<dyn Fn() + Send + Sync>> = None;
    let mut finished: Option<tokio::task::JoinHandle<()>> = None;
    let deadline = tokio::time::sleep(STREAMS_TIMEOUT);
    tokio::pin!(deadline);
    let mut done = false;
    loop {
        let frame = tokio::select! {
            f = reader.next() => f,
            _ = &mut deadline, if start.is_some() => {
                tracing::debug!("exec: the client never opened all its streams");
                break;
            }
            _ = async {
                if let Some(f) = finished.as_mut() {
                    let _ = f.await;
                }
            }, if finished.is_some() => {
                done = true;
                break;
            }
        };
        let frame = match frame {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %e, "exec session ends");
                break;
            }
        };
        match frame {
            Frame::SynStream {
                stream,
                fin,
                headers,
            } => {
                let kind = spdy::header(&headers, "streamtype").unwrap_or_default();
                let Some(kind) = wanted.iter().copied().find(|w| *w == kind) else {
                    let _ = out.send(Out::Reset(stream, spdy::REFUSED_STREAM)).await;
                    continue;
                };
                let _ = out.send(Out::Reply(stream)).await;
                last = last.max(stream);
                streams.insert(kind, stream);
                if kind == "stdin" && fin {
                    stdin_open = false;
                }
                if streams.len() == wanted.len()
                    && let Some(start) = start.take()
                {
                    match start().await {
                        Ok(session) => {
                            let ExecSession {
                                stdin: input,
                                stdout,
                                stderr,
                                exit,
                                kill: k,
                            } = session;
                            let mut input = input;
                            for chunk in early_input.drain(..) {
                                let _ = input.write_all(&chunk).await;
                            }
                            // Dropping the pipe closes it: the command sees
                            // its input end.
                            stdin = stdin_open.then_some(input);
                            kill = Some(k);
                            finished = Some(tokio::spawn(run(
                                out.clone(),
                                streams.clone(),
                                options.tty,
                                stdout,
                                stderr,
                                exit,
                            )));
                        }
                        Err(e) => {
                            let status = serde_json::json!({
                                "metadata": {}, "status": "Failure", "reason": "InternalError",
                                "message": format!("error executing command in container: {e}"),
                            });
                            finish(&out, &streams, Some(status.to_string())).await;
                            break;
                        }
                    }
                }
            }
            Frame::Data { stream, fin, data } => {
                if Some(&stream) != streams.get("stdin") {
                    continue;
                }
                if !data.is_empty() {
                    let written = match stdin.as_mut() {
                        Some(pipe) => pipe.write_all(&data).await.is_ok(),
                        None => {
                            if start.is_some() {
                                early_input.push(data);
                            }
                            true
                        }
                    };
                    if !written {
                        stdin = None;
                    }
                }
                if fin {
                    stdin_open = false;
                    stdin = None;
                }
            }
            Frame::RstStream { .. } | Frame::GoAway { .. } => break,
            Frame::Ping(id) if id % 2 == 1 => {
                let _ = out.send(Out::Ping(id)).await;
            }
            Frame::Ping(_) | Frame::SynReply { .. } | Frame::Other(_) => {}
        }
    }
    // The client went away before the command ended.
    if let (false, Some(f)) = (done, finished) {
        if let Some(kill) = kill {
            kill();
        }
        f.abort();
    }
    let _ = out.send(Out::GoAway(last)).await;
    drop(out);
    let _ = writer.await;
}

/// Copy the command's output to its streams, then report its exit on the
/// error stream and finish them all.
async fn run(
    out: mpsc::Sender<Out>,
    streams: HashMap<&'static str, u32>,
    tty: bool,
    stdout: Pin<Box<dyn AsyncRead + Send>>,
    stderr: Pin<Box<dyn AsyncRead + Send>>,
    exit: Pin<Box<dyn Future<Output = i32> + Send>>,
) {
    let out_stream = streams.get("stdout").copied();
    let err_stream = if tty {
        out_stream
    } else {
        streams.get("stderr").copied()
    };
    let pumps = [
        tokio::spawn(pump(stdout, out_stream.map(data_frame), out.clone())),
        tokio::spawn(pump(stderr, err_stream.map(data_frame), out.clone())),
    ];
    let code = exit.await;
    // Output written just before the exit still goes out.
    for p in pumps {
        let _ = tokio::time::timeout(Duration::from_secs(1), p).await;
    }
    finish(&out, &streams, Some(exit_status(code).to_string())).await;
}

/// Write `status` on the error stream and finish every stream.
async fn finish(
    out: &mpsc::Sender<Out>,
    streams: &HashMap<&'static str, u32>,
    status: Option<String>,
) {
    if let (Some(&error), Some(status)) = (streams.get("error"), status) {
        let _ = out
            .send(Out::Data {
                stream: error,
                fin: false,
                data: Bytes::from(status),
            })
            .await;
    }
    // Our side of each stream; the client finishes its own.
    for &stream in streams.values() {
        let _ = out
            .send(Out::Data {
                stream,
                fin: true,
                data: Bytes::new(),
            })
            .await;
    }
}

/// A maker of data frames on `stream`.
fn data_frame(stream: u32) -> impl Fn(&[u8]) -> Out {
    move |data: &[u8]| Out::Data {
        stream,
        fin: false,
        data: Bytes::copy_from_slice(data),
    }
}
