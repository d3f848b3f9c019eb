//! IPv4 address ranges in CIDR notation: the Service cluster IP range, the
//! cluster's pod range and each node's share of it.
//!
//! Parsed as Go's `net.ParseCIDR` does for the flags that take them
//! (`--service-cluster-ip-range`, `--cluster-cidr`, a Node's `podCIDR`):
//! bits of the address past the prefix are dropped, `10.0.0.1/16` is
//! `10.0.0.0/16`.
//!
//! ```
//! use rk_core::cidr::Ipv4Cidr;
//! let range: Ipv4Cidr = "127.200.7.9/16".parse().unwrap();
//! assert_eq!(range.to_string(), "127.200.0.0/16");
//! assert_eq!(range.size(), 65_536);
//! assert_eq!(range.nth(1).unwrap().to_string(), "127.200.0.1");
//! assert_eq!(range.offset_of("127.200.1.0".parse().unwrap()), Some(256));
//! ```

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 range: a network address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Cidr {
    network: Ipv4Addr,
    prefix: u8,
}

/// Text that is not an IPv4 CIDR.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid CIDR {text:?}: {reason}")]
pub struct CidrError {
    text: String,
    reason: &'static str,
}

impl Ipv4Cidr {
    /// The range of `prefix` bits around `ip` (bits past the prefix
    /// dropped); `None` if `prefix` is over 32.
    pub fn new(ip: Ipv4Addr, prefix: u8) -> Option<Self> {
        (prefix <= 32).then(|| Self {
            network: Ipv4Addr::from(u32::from(ip) & mask(prefix)),
            prefix,
        })
    }

    /// The network (first) address.
    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// How many addresses the range holds, network and broadcast included.
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }

    /// The address `offset` past the network address, if inside the range.
    pub fn nth(&self, offset: u64) -> Option<Ipv4Addr> {
        let offset = u32::try_from(offset)
            .ok()
            .filter(|_| offset < self.size())?;
        Some(Ipv4Addr::from(u32::from(self.network) + offset))
    }

    /// How far `ip` is past the network address, if inside the range.
    pub fn offset_of(&self, ip: Ipv4Addr) -> Option<u64> {
        let offset = u64::from(u32::from(ip).wrapping_sub(u32::from(self.network)));
        (offset < self.size()).then_some(offset)
    }
}

fn mask(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

impl FromStr for Ipv4Cidr {
    type Err = CidrError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = |reason| CidrError {
            text: text.to_string(),
            reason,
        };
        let (ip, prefix) = text
            .split_once('/')
            .ok_or_else(|| err("expected an IPv4 address and a prefix length, e.g. 10.0.0.0/16"))?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| err("not an IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| err("the prefix length is not a number from 0 to 32"))?;
        Self::new(ip, prefix).ok_or_else(|| err("the prefix length is not a number from 0 to 32"))
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_as_go_parses_them() {
        let r: Ipv4Cidr = "10.1.2.3/8".parse().unwrap();
        assert_eq!(r.to_string(), "10.0.0.0/8");
        let all: Ipv4Cidr = "1.2.3.4/0".parse().unwrap();
        assert_eq!(
            (all.to_string().as_str(), all.size()),
            ("0.0.0.0/0", 1 << 32)
        );
        let one: Ipv4Cidr = "1.2.3.4/32".parse().unwrap();
        assert_eq!(
            (one.size(), one.nth(0)),
            (1, Some(Ipv4Addr::new(1, 2, 3, 4)))
        );
        for (text, reason) in [
            ("10.0.0.0", "expected an IPv4 address"),
            ("fd00::/64", "not an IPv4 address"),
            ("10.0.0.0/33", "prefix length"),
            ("10.0.0.0/x", "prefix length"),
        ] {
            let e = text.parse::<Ipv4Cidr>().unwrap_err().to_string();
            assert!(e.contains(reason), "{text}: {e}");
        }
    }

    #[test]
    fn addresses_are_found_by_offset_and_back_inside_the_range_only() {
        let r: Ipv4Cidr = "127.100.4.0/22".parse().unwrap();
        assert_eq!(r.nth(1023), Some(Ipv4Addr::new(127, 100, 7, 255)));
        assert_eq!(r.nth(1024), None);
        assert_eq!(r.offset_of(Ipv4Addr::new(127, 100, 5, 1)), Some(257));
        assert_eq!(r.offset_of(Ipv4Addr::new(127, 100, 8, 0)), None);
        assert_eq!(r.offset_of(Ipv4Addr::new(127, 100, 3, 255)), None);
    }
}
