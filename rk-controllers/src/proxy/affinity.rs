//! Backend choice: round-robin over ready endpoints, with optional
//! `ClientIP` session affinity (a client keeps its endpoint until it has been
//! idle for the affinity timeout or the endpoint goes away).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Picks backends for one service port.
#[derive(Debug, Default)]
pub struct Balancer {
    backends: Mutex<Vec<SocketAddr>>,
    next: AtomicUsize,
    affinity: Mutex<Option<Duration>>,
    sessions: Mutex<HashMap<IpAddr, (SocketAddr, Instant)>>,
}

impl Balancer {
    /// A balancer with no backends.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replace the backends; sessions pinned to removed ones are dropped.
    pub fn set_backends(&self, backends: Vec<SocketAddr>) {
        {
            let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
            sessions.retain(|_, (b, _)| backends.contains(b));
        }
        *self.backends.lock().unwrap_or_else(|p| p.into_inner()) = backends;
    }

    /// The current backends.
    pub fn backends(&self) -> Vec<SocketAddr> {
        self.backends
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Turn `ClientIP` affinity on (with its timeout) or off.
    pub fn set_affinity(&self, timeout: Option<Duration>) {
        let mut a = self.affinity.lock().unwrap_or_else(|p| p.into_inner());
        if *a != timeout {
            *a = timeout;
            self.sessions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clear();
        }
    }

    /// The backends to try for a client, best first: its pinned endpoint (if
    /// affinity is on and the session is fresh), then round-robin order.
    pub fn candidates(&self, client: IpAddr) -> Vec<SocketAddr> {
        let backends = self.backends();
        if backends.is_empty() {
            return backends;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % backends.len();
        let mut order: Vec<SocketAddr> = backends[start..]
            .iter()
            .chain(backends[..start].iter())
            .copied()
            .collect();
        let affinity = *self.affinity.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(timeout) = affinity {
            let sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((pinned, last)) = sessions.get(&client)
                && last.elapsed() < timeout
                && let Some(pos) = order.iter().position(|b| b == pinned)
            {
                let b = order.remove(pos);
                order.insert(0, b);
            }
        }
        order
    }

    /// Record that `client` was served by `backend` (for affinity).
    pub fn served(&self, client: IpAddr, backend: SocketAddr) {
        if self
            .affinity
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
        {
            self.sessions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(client, (backend, Instant::now()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn round_robin_rotates_over_backends() {
        let b = Balancer::new();
        b.set_backends(vec![addr(1), addr(2), addr(3)]);
        let client = IpAddr::from([127, 0, 0, 9]);
        let firsts: Vec<u16> = (0..4).map(|_| b.candidates(client)[0].port()).collect();
        assert_eq!(firsts, vec![1, 2, 3, 1]);
        assert_eq!(b.candidates(client).len(), 3);
    }

    #[test]
    fn client_ip_affinity_pins_until_the_backend_goes_away() {
        let b = Balancer::new();
        b.set_backends(vec![addr(1), addr(2)]);
        b.set_affinity(Some(Duration::from_secs(60)));
        let client = IpAddr::from([127, 0, 0, 9]);
        let first = b.candidates(client)[0];
        b.served(client, first);
        for _ in 0..5 {
            assert_eq!(b.candidates(client)[0], first);
        }
        let other = if first == addr(1) { addr(2) } else { addr(1) };
        b.set_backends(vec![other]);
        assert_eq!(b.candidates(client), vec![other]);
    }

    #[test]
    fn expired_sessions_fall_back_to_round_robin() {
        let b = Balancer::new();
        b.set_backends(vec![addr(1), addr(2)]);
        b.set_affinity(Some(Duration::ZERO));
        let client = IpAddr::from([127, 0, 0, 9]);
        b.served(client, addr(1));
        let firsts: Vec<u16> = (0..2).map(|_| b.candidates(client)[0].port()).collect();
        assert_eq!(firsts, vec![1, 2]);
    }
}
