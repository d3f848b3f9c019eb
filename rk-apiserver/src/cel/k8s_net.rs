//! Kubernetes' CEL IP and CIDR libraries (upstream
//! `k8s.io/apiserver/pkg/cel/library`, `ip.go` and `cidr.go`):
//!
//! - `isIP(s)`, `ip(s)`; `ip.family()` (4 or 6), `ip.isUnspecified()`,
//!   `ip.isLoopback()`, `ip.isLinkLocalMulticast()`,
//!   `ip.isLinkLocalUnicast()`, `ip.isGlobalUnicast()`;
//! - `isCIDR(s)`, `cidr(s)`; `cidr.containsIP(ip or s)`,
//!   `cidr.containsCIDR(cidr or s)`, `cidr.ip()`, `cidr.masked()`,
//!   `cidr.prefixLength()`.
//!
//! As upstream, an IPv4-mapped IPv6 address and an address with a zone are
//! not IPs here, and `==` compares addresses and prefixes.

use std::net::IpAddr;

use cel::common::types::{CelInt, STRING_TYPE, Type};
use cel::common::value::CowVal;

use super::library::{boolean, error, string_arg};
use cel::{DeclarationError, Env, ExecutionError};

static IP_TYPE: Type = Type::new_unspecified_type("net.IP");
static CIDR_TYPE: Type = Type::new_unspecified_type("net.IPNet");

/// An IP address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Ip(IpAddr);

/// A CIDR: an address (not necessarily masked) and a prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cidr(IpAddr, u8);

super::library::opaque_val!(Ip, IP_TYPE);
super::library::opaque_val!(Cidr, CIDR_TYPE);

fn parse_ip(text: &str) -> Option<IpAddr> {
    let ip: IpAddr = text.parse().ok()?;
    match ip {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => None,
        ip => Some(ip),
    }
}

fn parse_cidr(text: &str) -> Option<Cidr> {
    let (addr, len) = text.split_once('/')?;
    let ip = parse_ip(addr)?;
    if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) || len.len() > 3 {
        return None;
    }
    let len: u8 = len.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (len <= max).then_some(Cidr(ip, len))
}

fn bits(ip: IpAddr) -> (u128, u32) {
    match ip {
        IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
        IpAddr::V6(v6) => (u128::from(v6), 128),
    }
}

fn masked(c: Cidr) -> IpAddr {
    let (value, width) = bits(c.0);
    let host = width - u32::from(c.1);
    let kept = if host >= 128 {
        0
    } else {
        (value >> host) << host
    };
    match c.0 {
        IpAddr::V4(_) => IpAddr::V4(u32::try_from(kept).unwrap_or(0).into()),
        IpAddr::V6(_) => IpAddr::V6(kept.into()),
    }
}

fn contains(c: Cidr, ip: IpAddr) -> bool {
    c.0.is_ipv4() == ip.is_ipv4() && masked(Cidr(ip, c.1)) == masked(c)
}

/// Registers the libraries' functions on `env`.
pub fn extension(env: &mut Env) -> Result<(), DeclarationError> {
    env.add_type(IP_TYPE.to_owned())?;
    env.add_type(CIDR_TYPE.to_owned())?;
    env.add_overload("isIP", "is_ip", vec![STRING_TYPE], is_ip)?;
    env.add_overload("ip", "string_to_ip", vec![STRING_TYPE], ip)?;
    env.add_overload("isCIDR", "is_cidr", vec![STRING_TYPE], is_cidr)?;
    env.add_overload("cidr", "string_to_cidr", vec![STRING_TYPE], cidr)?;
    let ip_t = || IP_TYPE.to_owned();
    let cidr_t = || CIDR_TYPE.to_owned();
    env.add_member_overload("family", "ip_family", ip_t(), vec![], family)?;
    env.add_member_overload(
        "isUnspecified",
        "ip_is_unspecified",
        ip_t(),
        vec![],
        is_unspecified,
    )?;
    env.add_member_overload("isLoopback", "ip_is_loopback", ip_t(), vec![], is_loopback)?;
    env.add_member_overload(
        "isLinkLocalMulticast",
        "ip_is_link_local_multicast",
        ip_t(),
        vec![],
        is_link_local_multicast,
    )?;
    env.add_member_overload(
        "isLinkLocalUnicast",
        "ip_is_link_local_unicast",
        ip_t(),
        vec![],
        is_link_local_unicast,
    )?;
    env.add_member_overload(
        "isGlobalUnicast",
        "ip_is_global_unicast",
        ip_t(),
        vec![],
        is_global_unicast,
    )?;
    env.add_member_overload(
        "containsIP",
        "cidr_contains_ip",
        cidr_t(),
        vec![ip_t()],
        contains_ip,
    )?;
    env.add_member_overload(
        "containsIP",
        "cidr_contains_ip_string",
        cidr_t(),
        vec![STRING_TYPE],
        contains_ip,
    )?;
    env.add_member_overload(
        "containsCIDR",
        "cidr_contains_cidr",
        cidr_t(),
        vec![cidr_t()],
        contains_cidr,
    )?;
    env.add_member_overload(
        "containsCIDR",
        "cidr_contains_cidr_string",
        cidr_t(),
        vec![STRING_TYPE],
        contains_cidr,
    )?;
    env.add_member_overload("ip", "cidr_ip", cidr_t(), vec![], cidr_ip)?;
    env.add_member_overload("masked", "cidr_masked", cidr_t(), vec![], cidr_masked)?;
    env.add_member_overload(
        "prefixLength",
        "cidr_prefix_length",
        cidr_t(),
        vec![],
        prefix_length,
    )?;
    Ok(())
}

/// An IP argument: an `ip` value, or a string that parses as one.
fn ip_arg(name: &str, args: &[CowVal<'_, '_>], at: usize) -> Result<IpAddr, ExecutionError> {
    if let Some(ip) = args.get(at).and_then(|v| v.downcast_ref::<Ip>()) {
        return Ok(ip.0);
    }
    let s = string_arg(name, args, at)?;
    parse_ip(s).ok_or_else(|| {
        error(
            name,
            format!("IP Address {s:?} parse error during conversion from string"),
        )
    })
}

/// A CIDR argument: a `cidr` value, or a string that parses as one.
fn cidr_arg(name: &str, args: &[CowVal<'_, '_>], at: usize) -> Result<Cidr, ExecutionError> {
    if let Some(c) = args.get(at).and_then(|v| v.downcast_ref::<Cidr>()) {
        return Ok(*c);
    }
    let s = string_arg(name, args, at)?;
    parse_cidr(s).ok_or_else(|| {
        error(
            name,
            format!("network address {s:?} parse error during conversion from string"),
        )
    })
}

fn is_ip<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    boolean(parse_ip(string_arg("isIP", &args, 0)?).is_some())
}

fn ip<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    Ok(CowVal::owned(Ip(ip_arg("ip", &args, 0)?)))
}

fn is_cidr<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    boolean(parse_cidr(string_arg("isCIDR", &args, 0)?).is_some())
}

fn cidr<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    Ok(CowVal::owned(cidr_arg("cidr", &args, 0)?))
}

fn family<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let ip = ip_arg("family", &args, 0)?;
    Ok(CowVal::owned(CelInt::from(if ip.is_ipv4() {
        4
    } else {
        6
    })))
}

fn is_unspecified<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    boolean(ip_arg("isUnspecified", &args, 0)?.is_unspecified())
}

fn is_loopback<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    boolean(ip_arg("isLoopback", &args, 0)?.is_loopback())
}

fn is_link_local_multicast<'b, 'v>(
    args: Vec<CowVal<'b, 'v>>,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let ip = ip_arg("isLinkLocalMulticast", &args, 0)?;
    boolean(match ip {
        IpAddr::V4(v4) => v4.octets()[..3] == [224, 0, 0],
        IpAddr::V6(v6) => v6.segments()[0] & 0xff0f == 0xff02,
    })
}

fn is_link_local_unicast<'b, 'v>(
    args: Vec<CowVal<'b, 'v>>,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let ip = ip_arg("isLinkLocalUnicast", &args, 0)?;
    boolean(match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
    })
}

fn is_global_unicast<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let ip = ip_arg("isGlobalUnicast", &args, 0)?;
    // As Go's net.IP.IsGlobalUnicast: anything but unspecified, loopback,
    // multicast, link-local unicast and (IPv4) broadcast.
    boolean(match ip {
        IpAddr::V4(v4) => {
            !(v4.is_unspecified()
                || v4.is_loopback()
                || v4.is_multicast()
                || v4.is_link_local()
                || v4.is_broadcast())
        }
        IpAddr::V6(v6) => {
            !(v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || v6.segments()[0] & 0xffc0 == 0xfe80)
        }
    })
}

fn contains_ip<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let c = cidr_arg("containsIP", &args, 0)?;
    boolean(contains(c, ip_arg("containsIP", &args, 1)?))
}

fn contains_cidr<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let c = cidr_arg("containsCIDR", &args, 0)?;
    let other = cidr_arg("containsCIDR", &args, 1)?;
    boolean(other.1 >= c.1 && contains(c, other.0))
}

fn cidr_ip<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    Ok(CowVal::owned(Ip(cidr_arg("ip", &args, 0)?.0)))
}

fn cidr_masked<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let c = cidr_arg("masked", &args, 0)?;
    Ok(CowVal::owned(Cidr(masked(c), c.1)))
}

fn prefix_length<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let c = cidr_arg("prefixLength", &args, 0)?;
    Ok(CowVal::owned(CelInt::from(i64::from(c.1))))
}
