//! Service cluster IP and NodePort allocation.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::Rng;
use rk_core::cidr::{CidrError, Ipv4Cidr};
use serde_json::{Value, json};

use crate::error::{ApiError, StatusCause};
use crate::state::ApiState;

/// The Service cluster IP range (kube-apiserver's
/// `--service-cluster-ip-range`): IPv4, `127.200.0.0/16` unless configured
/// (see DESIGN: addresses on one machine). Its first address is
/// `default/kubernetes`'s; a second cluster on the same machine takes
/// another range so the two proxies do not both listen on it.
///
/// ```
/// use rk_apiserver::admission::service_ips::ServiceCidr;
/// let cidr: ServiceCidr = "127.201.0.0/16".parse().unwrap();
/// assert_eq!(cidr.first().to_string(), "127.201.0.1");
/// assert!("10.0.0.0/8".parse::<ServiceCidr>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceCidr(Ipv4Cidr);

impl Default for ServiceCidr {
    fn default() -> Self {
        // A /16 is always a valid prefix.
        Self(Ipv4Cidr::new(Ipv4Addr::new(127, 200, 0, 0), 16).unwrap_or_else(|| unreachable!()))
    }
}

/// Why a `--service-cluster-ip-range` was refused.
#[derive(Debug, thiserror::Error)]
pub enum ServiceCidrError {
    /// Not an IPv4 CIDR.
    #[error(transparent)]
    Cidr(#[from] CidrError),
    /// Too many or too few addresses.
    #[error("service cluster IP range {0}: the prefix length must be between 12 and 30")]
    Size(Ipv4Cidr),
}

impl std::str::FromStr for ServiceCidr {
    type Err = ServiceCidrError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let cidr: Ipv4Cidr = text.parse()?;
        // Upstream allows at most 2^20 addresses; at least two usable ones.
        if !(12..=30).contains(&cidr.prefix()) {
            return Err(ServiceCidrError::Size(cidr));
        }
        Ok(Self(cidr))
    }
}

impl std::fmt::Display for ServiceCidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl ServiceCidr {
    /// The first usable address: `default/kubernetes`'s cluster IP.
    pub fn first(&self) -> Ipv4Addr {
        self.at(1)
    }

    /// The address `offset` past the network address (inside the range:
    /// offsets come from `1..size`).
    fn at(&self, offset: u32) -> Ipv4Addr {
        self.0
            .nth(u64::from(offset))
            .unwrap_or(Ipv4Addr::UNSPECIFIED)
    }

    /// Addresses in the range, network and broadcast included (at most
    /// 2^20).
    fn size(&self) -> u32 {
        u32::try_from(self.0.size()).unwrap_or(u32::MAX)
    }

    /// Whether `ip` is a usable address of the range (not the network or
    /// broadcast address).
    pub fn holds(&self, ip: Ipv4Addr) -> bool {
        self.0
            .offset_of(ip)
            .is_some_and(|o| o != 0 && o < self.0.size() - 1)
    }
}

/// The NodePort range.
pub const NODE_PORT_RANGE: std::ops::RangeInclusive<i64> = 30000..=32767;

/// Recently handed-out addresses and ports, so two concurrent creates never
/// get the same one before either is stored.
#[derive(Default)]
pub struct Allocations {
    ips: Mutex<Vec<(Ipv4Addr, Instant)>>,
    ports: Mutex<Vec<(i64, Instant)>>,
}

const RESERVATION: Duration = Duration::from_secs(30);

fn in_use(state: &ApiState, services: &[serde_json::Value]) -> (HashSet<Ipv4Addr>, HashSet<i64>) {
    let mut ips = HashSet::new();
    let mut ports = HashSet::new();
    for s in services {
        if let Some(ip) = s["spec"]["clusterIP"].as_str().and_then(|i| i.parse().ok()) {
            ips.insert(ip);
        }
        for p in s["spec"]["ports"].as_array().into_iter().flatten() {
            if let Some(np) = p["nodePort"].as_i64() {
                ports.insert(np);
            }
        }
    }
    let now = Instant::now();
    let mut r = state
        .allocations
        .ips
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    r.retain(|(_, t)| now.duration_since(*t) < RESERVATION);
    ips.extend(r.iter().map(|(i, _)| *i));
    let mut p = state
        .allocations
        .ports
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    p.retain(|(_, t)| now.duration_since(*t) < RESERVATION);
    ports.extend(p.iter().map(|(i, _)| *i));
    (ips, ports)
}

async fn all_services(state: &ApiState) -> Result<Vec<Value>, ApiError> {
    let Some(info) = state.resource("", "v1", "services") else {
        return Ok(Vec::new());
    };
    let cache = state.cache(&info).await?;
    let _ = state.caches.sync_with_storage(Duration::from_secs(2)).await;
    Ok(cache
        .snapshot(&info.storage_prefix())
        .objects
        .iter()
        .filter_map(|o| serde_json::from_slice(&o.bytes).ok())
        .collect())
}

fn invalid(name: &str, field: &str, message: String) -> ApiError {
    ApiError::invalid(
        "Service",
        "",
        name,
        vec![StatusCause {
            reason: "FieldValueInvalid".into(),
            message,
            field: field.into(),
        }],
    )
}

async fn allocate_service(
    state: &ApiState,
    svc: &mut Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    let ty = svc["spec"]["type"]
        .as_str()
        .unwrap_or("ClusterIP")
        .to_string();
    if ty == "ExternalName" {
        return Ok(());
    }
    let name = svc["metadata"]["name"].as_str().unwrap_or("").to_string();
    // The allocation lock serialises allocators in this server.
    let _guard = state.allocation_lock.lock().await;
    let services = all_services(state).await?;
    let own_name = (
        svc["metadata"]["namespace"].clone(),
        svc["metadata"]["name"].clone(),
    );
    let others: Vec<Value> = services
        .into_iter()
        .filter(|s| {
            (
                s["metadata"]["namespace"].clone(),
                s["metadata"]["name"].clone(),
            ) != own_name
        })
        .collect();
    let (used_ips, used_ports) = in_use(state, &others);
    // Cluster IP.
    let wanted = svc["spec"]["clusterIP"].as_str().unwrap_or("").to_string();
    let keep = old
        .and_then(|o| o["spec"]["clusterIP"].as_str())
        .filter(|s| !s.is_empty());
    let ip = if wanted == "None" {
        None
    } else if let Some(k) = keep {
        Some(k.to_string())
    } else if wanted.is_empty() {
        // As upstream, a random free address (so two clusters on one
        // machine rarely meet), the first one kept for `default/kubernetes`.
        let cidr = state.service_cidr;
        let chosen = random_free(2..=cidr.size() - 2, |offset| {
            let ip = cidr.at(offset);
            (!used_ips.contains(&ip)).then_some(ip)
        });
        let ip = chosen
            .ok_or_else(|| ApiError::internal("failed to allocate a serviceIP: range is full"))?;
        state
            .allocations
            .ips
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((ip, Instant::now()));
        Some(ip.to_string())
    } else {
        let ip: Ipv4Addr = wanted.parse().map_err(|_| {
            invalid(
                &name,
                "spec.clusterIPs",
                format!("Invalid value: \"{wanted}\": must be a valid IP address"),
            )
        })?;
        if !state.service_cidr.holds(ip) {
            return Err(invalid(
                &name,
                "spec.clusterIPs",
                format!(
                    "Invalid value: []string{{\"{wanted}\"}}: failed to allocate IP {wanted}: the provided IP ({wanted}) is not in the valid range. The range of valid IPs is {}",
                    state.service_cidr
                ),
            ));
        }
        if used_ips.contains(&ip) {
            return Err(invalid(
                &name,
                "spec.clusterIPs",
                format!(
                    "Invalid value: []string{{\"{wanted}\"}}: failed to allocate IP {wanted}: provided IP is already allocated"
                ),
            ));
        }
        state
            .allocations
            .ips
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((ip, Instant::now()));
        Some(wanted.clone())
    };
    match ip {
        Some(ip) => {
            svc["spec"]["clusterIP"] = json!(ip);
            svc["spec"]["clusterIPs"] = json!([ip]);
        }
        None => {
            svc["spec"]["clusterIP"] = json!("None");
            svc["spec"]["clusterIPs"] = json!(["None"]);
        }
    }
    // Node ports.
    if ty == "NodePort" || ty == "LoadBalancer" {
        let mut taken = used_ports;
        let old_ports: Vec<i64> = old
            .and_then(|o| o["spec"]["ports"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|p| p["nodePort"].as_i64())
            .collect();
        if let Some(ports) = svc.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
            for (i, p) in ports.iter_mut().enumerate() {
                match p["nodePort"].as_i64() {
                    Some(np) if np != 0 => {
                        if !NODE_PORT_RANGE.contains(&np) {
                            return Err(invalid(
                                &name,
                                &format!("spec.ports[{i}].nodePort"),
                                format!(
                                    "Invalid value: {np}: provided port is not in the valid range. The range of valid ports is 30000-32767"
                                ),
                            ));
                        }
                        if taken.contains(&np) && !old_ports.contains(&np) {
                            return Err(invalid(
                                &name,
                                &format!("spec.ports[{i}].nodePort"),
                                format!("Invalid value: {np}: provided port is already allocated"),
                            ));
                        }
                        taken.insert(np);
                    }
                    _ => {
                        // A random free port, as upstream's allocator.
                        let np =
                            random_free(NODE_PORT_RANGE, |n| (!taken.contains(&n)).then_some(n))
                                .ok_or_else(|| {
                                    ApiError::internal(
                                        "failed to allocate a nodePort: range is full",
                                    )
                                })?;
                        taken.insert(np);
                        state
                            .allocations
                            .ports
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push((np, Instant::now()));
                        p["nodePort"] = json!(np);
                    }
                }
            }
        }
    }
    Ok(())
}

/// The first `free` answer going round `range` from a random place, as
/// upstream's allocators pick at random among the free values.
fn random_free<N, T>(range: std::ops::RangeInclusive<N>, free: impl Fn(N) -> Option<T>) -> Option<T>
where
    N: Copy + Into<i64> + TryFrom<i64>,
{
    let (low, high) = ((*range.start()).into(), (*range.end()).into());
    if high < low {
        return None;
    }
    let size = high - low + 1;
    let start = rand::rng().random_range(0..size);
    (0..size)
        .filter_map(|i| N::try_from(low + (start + i) % size).ok())
        .find_map(free)
}

/// Allocate (or keep) a Service's cluster IP and node ports.
pub async fn admit(state: &ApiState, svc: &mut Value, old: Option<&Value>) -> Result<(), ApiError> {
    allocate_service(state, svc, old).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_holds_its_usable_addresses_only() {
        let cidr: ServiceCidr = "127.201.0.0/24".parse().unwrap();
        assert_eq!(cidr.to_string(), "127.201.0.0/24");
        assert_eq!(cidr.first(), Ipv4Addr::new(127, 201, 0, 1));
        assert!(cidr.holds(Ipv4Addr::new(127, 201, 0, 254)));
        assert!(!cidr.holds(Ipv4Addr::new(127, 201, 0, 0)));
        assert!(!cidr.holds(Ipv4Addr::new(127, 201, 0, 255)));
        assert!(!cidr.holds(Ipv4Addr::new(127, 201, 1, 1)));
        assert!(!cidr.holds(Ipv4Addr::new(127, 200, 255, 255)));
        assert_eq!(ServiceCidr::default().to_string(), "127.200.0.0/16");
    }

    #[test]
    fn malformed_ranges_are_refused_with_the_reason() {
        for (text, reason) in [
            ("127.200.0.0", "expected an IPv4 address"),
            ("fd00::/108", "not an IPv4 address"),
            ("127.200.0.0/x", "prefix length"),
            ("127.0.0.0/8", "between 12 and 30"),
            ("127.200.0.0/31", "between 12 and 30"),
        ] {
            let err = text.parse::<ServiceCidr>().unwrap_err().to_string();
            assert!(err.contains(reason), "{text}: {err}");
        }
        // As Go's net.ParseCIDR: the bits past the prefix are dropped.
        let cidr: ServiceCidr = "127.201.3.4/16".parse().unwrap();
        assert_eq!(cidr.to_string(), "127.201.0.0/16");
    }
}
