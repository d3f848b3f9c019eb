//! UDP forwarding: each client address gets a session with a socket
//! connected to one backend; replies go back from the service's address.
//! Sessions end after a period without traffic.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::Mutex;

use super::endpoints::ServicePort;

struct Session {
    socket: Arc<UdpSocket>,
    backend: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn open_session(
    frontend: Arc<UdpSocket>,
    client: SocketAddr,
    port: &ServicePort,
    idle: Duration,
    sessions: Arc<Mutex<HashMap<SocketAddr, Session>>>,
) -> Option<(Arc<UdpSocket>, SocketAddr)> {
    let candidates = port.balancer.candidates(client.ip());
    if candidates.is_empty() {
        port.metrics.no_endpoints.fetch_add(1, Ordering::Relaxed);
        return None;
    }
    for backend in candidates {
        let local: SocketAddr = if backend.is_ipv4() {
            SocketAddr::from(([0, 0, 0, 0], 0))
        } else {
            SocketAddr::from(([0u16; 8], 0))
        };
        let socket = match UdpSocket::bind(local).await {
            Ok(s) => s,
            Err(_) => continue,
        };
        if socket.connect(backend).await.is_err() {
            port.metrics.connect_errors.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let socket = Arc::new(socket);
        port.balancer.served(client.ip(), backend);
        let replies = socket.clone();
        let frontend = frontend.clone();
        let sessions_for_task = sessions.clone();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            // Idle, or the backend is unreachable: the session ends.
            while let Ok(Ok(n)) = tokio::time::timeout(idle, replies.recv(&mut buf)).await {
                let _ = frontend.send_to(&buf[..n], client).await;
            }
            sessions_for_task.lock().await.remove(&client);
        });
        sessions.lock().await.insert(
            client,
            Session {
                socket: socket.clone(),
                backend,
                task,
            },
        );
        return Some((socket, backend));
    }
    None
}

/// Serve datagrams on `frontend` for `port` until the task is dropped.
pub async fn serve(frontend: UdpSocket, port: Arc<ServicePort>, idle: Duration) {
    let frontend = Arc::new(frontend);
    let sessions: Arc<Mutex<HashMap<SocketAddr, Session>>> = Arc::new(Mutex::new(HashMap::new()));
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, client) = match frontend.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(service = %port.name, error = %e, "udp receive failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        port.metrics.packets.fetch_add(1, Ordering::Relaxed);
        let existing = {
            let guard = sessions.lock().await;
            guard.get(&client).and_then(|s| {
                port.balancer
                    .backends()
                    .contains(&s.backend)
                    .then(|| s.socket.clone())
            })
        };
        let socket = match existing {
            Some(s) => s,
            None => {
                sessions.lock().await.remove(&client);
                match open_session(frontend.clone(), client, &port, idle, sessions.clone()).await {
                    Some((s, _)) => s,
                    None => continue,
                }
            }
        };
        if socket.send(&buf[..n]).await.is_ok() {
            port.metrics.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
        }
    }
}
