//! `kubectl attach`: `/attach/{namespace}/{pod}/{container}`, which the API
//! server's `pods/attach` proxies to. Same WebSocket channel protocol as
//! [`super::exec`]; what the container writes from now on is sent as it
//! reaches the container's log (stdout on channel 1, stderr on channel 2,
//! both on 1 with a terminal), until the container stops, when a `Success`
//! status ends the session. Input (channel 0, with `stdin=true`) goes to
//! the container's stdin when its spec asked for one (`stdin: true`);
//! with `stdinOnce` the container's stdin is closed when the session's
//! input ends (a v5 close of channel 0) or the session does. Containers
//! without stdin drop the input, as upstream's do. Clients that upgrade to
//! SPDY/3.1 get the same through [`super::exec_spdy`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use super::Shared;
use super::exec::{self, Body, ExecOptions, Handshake, STDERR, STDOUT, plain};
use super::logs;
use super::pod_worker::PodState;
use super::runtime::ContainerStdin;

/// How often the log is checked for new output.
const POLL: Duration = Duration::from_millis(100);

/// Answer an attach request: upgrade it and stream the container's output.
pub(crate) async fn handle(
    req: Request<Incoming>,
    shared: &Arc<Shared>,
    namespace: &str,
    pod: &str,
    container: &str,
) -> Response<Body> {
    let spdy = super::exec_spdy::is_spdy(&req);
    let handshake = match Handshake::check(&req, "attach") {
        Ok(h) => Some(h),
        Err(_) if spdy => None,
        Err(message) => return plain(StatusCode::BAD_REQUEST, message),
    };
    let options = ExecOptions::parse(req.uri().query().unwrap_or_default());
    let (state, instance, stdin) = match exec::running_container(shared, namespace, pod, container)
    {
        Ok(r) => (r.state, r.instance, r.stdin.filter(|_| options.stdin)),
        Err((status, message)) => return plain(status, message),
    };
    let session = Session {
        path: logs::log_path(&state.dir, container, instance),
        state,
        container: container.to_owned(),
        instance,
        options: ExecOptions::parse(req.uri().query().unwrap_or_default()),
    };
    let Some(handshake) = handshake else {
        return super::exec_spdy::upgrade(req, options, move || async move {
            Ok(as_exec_session(session, stdin))
        });
    };
    let v5 = handshake.protocol == exec::PROTOCOLS[0];
    tokio::spawn(async move {
        let Some(ws) = exec::upgraded(req).await else {
            return;
        };
        exec::run(ws, Ok(as_exec_session(session, stdin)), options, v5).await;
    });
    handshake.accept()
}

/// The channel a CRI log line goes to, and its text.
fn route_line<'a>(raw: &'a str, options: &ExecOptions) -> Option<(u8, &'a str)> {
    let mut parts = raw.splitn(4, ' ');
    let (_, stream, _, text) = (parts.next(), parts.next()?, parts.next(), parts.next()?);
    let to_stderr = stream == "stderr" && !options.tty;
    match to_stderr {
        true if options.stderr => Some((STDERR, text)),
        false if options.stdout || (options.tty && options.stderr) => Some((STDOUT, text)),
        _ => None,
    }
}

/// An attach session in the shape of an exec session, so both transports
/// serve it as they serve exec: the container's output from now on as its stdout and stderr
/// (ending when the container stops, which is the "exit", always 0), and
/// input to the container's stdin when it has one.
fn as_exec_session(
    session: Session,
    stdin: Option<Arc<ContainerStdin>>,
) -> super::runtime::ExecSession {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Session {
        state,
        container,
        instance,
        path,
        options,
    } = session;
    let (mut out_w, out_r) = tokio::io::duplex(64 * 1024);
    let (mut err_w, err_r) = tokio::io::duplex(64 * 1024);
    let follow = tokio::spawn(async move {
        let mut offset = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        loop {
            let running = state.container_log_state(&container) == Some((instance, true));
            let mut lines = Vec::new();
            if std::fs::metadata(&path).is_ok_and(|m| m.len() < offset) {
                offset = 0; // rotated
            }
            offset = logs::read_lines(&path, offset, &mut lines).unwrap_or(offset);
            for raw in &lines {
                if let Some((channel, text)) = route_line(raw, &options) {
                    let to = if channel == STDERR {
                        &mut err_w
                    } else {
                        &mut out_w
                    };
                    let mut data = text.as_bytes().to_vec();
                    data.push(b'\n');
                    if to.write_all(&data).await.is_err() {
                        return;
                    }
                }
            }
            if !running {
                return;
            }
            tokio::time::sleep(POLL).await;
        }
    });
    let aborter = follow.abort_handle();
    // Input: whatever the session writes goes to the container's stdin;
    // its end ends a `stdinOnce` stdin.
    let (input_w, mut input_r) = tokio::io::duplex(64 * 1024);
    tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match input_r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if let Some(pipe) = &stdin
                        && !pipe.write(&buf[..n]).await
                    {
                        break;
                    }
                }
            }
        }
        if let Some(pipe) = stdin {
            pipe.session_ended().await;
        }
    });
    super::runtime::ExecSession {
        stdin: Box::pin(input_w),
        stdout: Box::pin(out_r),
        stderr: Box::pin(err_r),
        exit: Box::pin(async move {
            let _ = follow.await;
            0
        }),
        kill: Box::new(move || aborter.abort()),
    }
}

/// What one attach session follows.
struct Session {
    state: Arc<PodState>,
    container: String,
    instance: i32,
    path: PathBuf,
    options: ExecOptions,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_go_to_the_channel_of_their_stream() {
        let both = ExecOptions {
            stdout: true,
            stderr: true,
            ..ExecOptions::default()
        };
        let line = "2026-01-01T00:00:00Z stderr F oops";
        assert_eq!(route_line(line, &both), Some((STDERR, "oops")));
        let out = "2026-01-01T00:00:00Z stdout F hello world";
        assert_eq!(route_line(out, &both), Some((STDOUT, "hello world")));
        let tty = ExecOptions {
            stdout: true,
            tty: true,
            ..ExecOptions::default()
        };
        assert_eq!(route_line(line, &tty), Some((STDOUT, "oops")));
        let only_out = ExecOptions {
            stdout: true,
            ..ExecOptions::default()
        };
        assert_eq!(route_line(line, &only_out), None);
    }
}
