//! TCP forwarding: accept on a service's frontend address, connect to a
//! backend (trying the next one when a connection fails), and copy bytes
//! both ways until either side closes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use super::endpoints::ServicePort;

/// The copy buffer per direction.
const BUFFER: usize = 64 * 1024;

/// Accept connections on `listener` for `port` until the task is dropped.
pub async fn serve(listener: TcpListener, port: Arc<ServicePort>, connect_timeout: Duration) {
    loop {
        let (client, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(service = %port.name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let port = port.clone();
        tokio::spawn(async move { forward(client, peer, port, connect_timeout).await });
    }
}

async fn connect(
    port: &ServicePort,
    peer: SocketAddr,
    timeout: Duration,
) -> Option<(TcpStream, SocketAddr)> {
    let candidates = port.balancer.candidates(peer.ip());
    if candidates.is_empty() {
        port.metrics.no_endpoints.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(service = %port.name, "no ready endpoints");
        return None;
    }
    for backend in candidates {
        match tokio::time::timeout(timeout, TcpStream::connect(backend)).await {
            Ok(Ok(stream)) => {
                port.balancer.served(peer.ip(), backend);
                return Some((stream, backend));
            }
            Ok(Err(e)) => {
                port.metrics.connect_errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(service = %port.name, %backend, error = %e, "backend refused; trying another");
            }
            Err(_) => {
                port.metrics.connect_errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(service = %port.name, %backend, "backend connect timed out; trying another");
            }
        }
    }
    None
}

async fn forward(
    mut client: TcpStream,
    peer: SocketAddr,
    port: Arc<ServicePort>,
    timeout: Duration,
) {
    let m = &port.metrics;
    m.connections.fetch_add(1, Ordering::Relaxed);
    let Some((mut backend, addr)) = connect(&port, peer, timeout).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = backend.set_nodelay(true);
    m.active.fetch_add(1, Ordering::Relaxed);
    let result =
        tokio::io::copy_bidirectional_with_sizes(&mut client, &mut backend, BUFFER, BUFFER).await;
    m.active.fetch_sub(1, Ordering::Relaxed);
    match result {
        Ok((to_backend, to_client)) => {
            m.bytes_in.fetch_add(to_backend, Ordering::Relaxed);
            m.bytes_out.fetch_add(to_client, Ordering::Relaxed);
        }
        Err(e) => {
            tracing::debug!(service = %port.name, backend = %addr, error = %e, "connection ended with an error")
        }
    }
}
