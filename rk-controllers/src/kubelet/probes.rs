//! Probes (exec, HTTP GET, TCP socket) and the loop that runs one with its
//! initial delay, period, timeout and thresholds.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::Empty;
use k8s_openapi::api::core::v1::{ContainerPort, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::sync::mpsc;

use super::runtime::{ExecSpec, Runtime};

/// Which probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    /// Restart the container when it fails.
    Liveness,
    /// Gate readiness.
    Readiness,
    /// Hold the other probes until it succeeds; restart when it fails.
    Startup,
}

impl ProbeKind {
    /// The name upstream uses in messages.
    pub fn name(self) -> &'static str {
        match self {
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
            ProbeKind::Startup => "Startup",
        }
    }
}

/// A probe result that crossed its threshold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeEvent {
    /// Which probe.
    pub kind: ProbeKind,
    /// Whether the container is now considered healthy for this probe.
    pub healthy: bool,
    /// Why it failed.
    pub message: String,
}

/// Where a probe is sent and what it runs with.
#[derive(Clone)]
pub struct Target {
    /// Runs exec probes.
    pub runtime: Arc<dyn Runtime>,
    /// The pod's IP (default host for HTTP and TCP probes).
    pub pod_ip: String,
    /// The container's environment.
    pub env: Vec<(String, String)>,
    /// The container's working directory.
    pub working_dir: Option<std::path::PathBuf>,
    /// The container's ports, to resolve named ports.
    pub ports: Vec<ContainerPort>,
}

fn resolve_port(port: &IntOrString, ports: &[ContainerPort]) -> Result<u16, String> {
    let n = match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(name) => match name.parse::<i32>() {
            Ok(n) => n,
            Err(_) => ports
                .iter()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .map(|p| p.container_port)
                .ok_or_else(|| format!("port {name:?} not found in the container's ports"))?,
        },
    };
    u16::try_from(n)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("invalid port {n}"))
}

/// An HTTP GET, as probes and hooks send it: success is a 2xx or 3xx status.
pub async fn http_get(
    host: &str,
    port: u16,
    path: &str,
    headers: &[(String, String)],
    timeout: Duration,
) -> Result<(), String> {
    let fut = async {
        let stream = tokio::net::TcpStream::connect((host, port))
            .await
            .map_err(|e| format!("Get \"http://{host}:{port}{path}\": {e}"))?;
        let io = hyper_util::rt::TokioIo::new(stream);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut req = http::Request::get(if path.is_empty() { "/" } else { path })
            .header("host", format!("{host}:{port}"))
            .header("user-agent", "kube-probe/1.37");
        for (k, v) in headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let req = req
            .body(Empty::<bytes::Bytes>::new())
            .map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let code = resp.status().as_u16();
        if (200..400).contains(&code) {
            Ok(())
        } else {
            Err(format!("HTTP probe failed with statuscode: {code}"))
        }
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "Get \"http://{host}:{port}{path}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
        )),
    }
}

/// Run a probe once.
pub async fn probe_once(probe: &Probe, target: &Target) -> Result<(), String> {
    let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64);
    if let Some(exec) = &probe.exec {
        let spec = ExecSpec {
            argv: exec.command.clone().unwrap_or_default(),
            env: target.env.clone(),
            working_dir: target.working_dir.clone(),
            timeout,
        };
        return match target.runtime.exec(spec).await {
            Ok((0, _)) => Ok(()),
            Ok((code, out)) => Err(format!("command exited with {code}: {}", out.trim())),
            Err(e) => Err(e.to_string()),
        };
    }
    if let Some(h) = &probe.http_get {
        let port = resolve_port(&h.port, &target.ports)?;
        let host = h
            .host
            .clone()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| target.pod_ip.clone());
        if h.scheme.as_deref() == Some("HTTPS") {
            return tcp_connect(&host, port, timeout).await;
        }
        let headers: Vec<(String, String)> = h
            .http_headers
            .iter()
            .flatten()
            .map(|x| (x.name.clone(), x.value.clone()))
            .collect();
        return http_get(
            &host,
            port,
            h.path.as_deref().unwrap_or("/"),
            &headers,
            timeout,
        )
        .await;
    }
    if let Some(t) = &probe.tcp_socket {
        let port = resolve_port(&t.port, &target.ports)?;
        let host = t
            .host
            .clone()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| target.pod_ip.clone());
        return tcp_connect(&host, port, timeout).await;
    }
    if probe.grpc.is_some() {
        return Err("gRPC probes are not supported by rk's kubelet".to_owned());
    }
    Ok(())
}

async fn tcp_connect(host: &str, port: u16, timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host, port))).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("dial tcp {host}:{port}: {e}")),
        Err(_) => Err(format!("dial tcp {host}:{port}: i/o timeout")),
    }
}

/// Run `probe` until the receiver goes away, sending an event each time the
/// result crosses a threshold (the first event is sent as soon as the first
/// threshold is met). A startup probe stops after its first success.
pub async fn run(kind: ProbeKind, probe: Probe, target: Target, events: mpsc::Sender<ProbeEvent>) {
    let delay = Duration::from_secs(probe.initial_delay_seconds.unwrap_or(0).max(0) as u64);
    let period = Duration::from_secs(probe.period_seconds.unwrap_or(10).max(1) as u64);
    let success_threshold = probe.success_threshold.unwrap_or(1).max(1);
    let failure_threshold = probe.failure_threshold.unwrap_or(3).max(1);
    tokio::time::sleep(delay).await;
    let mut healthy: Option<bool> = None;
    let (mut successes, mut failures) = (0, 0);
    loop {
        let result = probe_once(&probe, &target).await;
        match &result {
            Ok(()) => {
                successes += 1;
                failures = 0;
            }
            Err(_) => {
                failures += 1;
                successes = 0;
            }
        }
        let now = if successes >= success_threshold {
            Some(true)
        } else if failures >= failure_threshold {
            Some(false)
        } else {
            None
        };
        if let Some(now) = now
            && healthy != Some(now)
        {
            healthy = Some(now);
            let message = result.err().unwrap_or_default();
            let event = ProbeEvent {
                kind,
                healthy: now,
                message,
            };
            if events.send(event).await.is_err() {
                return;
            }
            if kind == ProbeKind::Startup && now {
                return;
            }
            if kind != ProbeKind::Readiness && !now {
                // The container is about to be restarted; a new loop starts
                // with the new instance.
                return;
            }
        }
        if events.is_closed() {
            return;
        }
        tokio::time::sleep(period).await;
    }
}
