//! Hard eviction thresholds: when the node reports `MemoryPressure`,
//! `DiskPressure` and `PIDPressure`.
//!
//! The thresholds use upstream's `--eviction-hard` syntax: comma-separated
//! `signal<quantity` or `signal<percent%` entries over the signals
//! `memory.available`, `nodefs.available`, `nodefs.inodesFree` and
//! `pid.available`. Upstream's defaults are `memory.available<100Mi`,
//! `nodefs.available<10%`, `nodefs.inodesFree<5%` (and `pid.available` unset;
//! rk uses 5%).
//!
//! ```
//! use rk_controllers::kubelet::eviction::{EvictionThresholds, Observed, Signal};
//! let t: EvictionThresholds = "nodefs.available<15%,memory.available<1Gi".parse()?;
//! let disk = Observed { available: 10, capacity: 100 };
//! assert!(t.crossed(Signal::NodefsAvailable, disk));
//! # Ok::<(), rk_controllers::kubelet::eviction::ThresholdError>(())
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use rk_core::quantity::ParsedQuantity;

/// An eviction signal the kubelet observes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Signal {
    /// Available memory (`MemAvailable`), in bytes.
    MemoryAvailable,
    /// Available bytes on the filesystem holding the kubelet's data directory.
    NodefsAvailable,
    /// Free inodes on that filesystem.
    NodefsInodesFree,
    /// Process IDs left before `pid_max`.
    PidAvailable,
}

impl Signal {
    /// Upstream's name for the signal.
    pub fn name(self) -> &'static str {
        match self {
            Signal::MemoryAvailable => "memory.available",
            Signal::NodefsAvailable => "nodefs.available",
            Signal::NodefsInodesFree => "nodefs.inodesFree",
            Signal::PidAvailable => "pid.available",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        [
            Signal::MemoryAvailable,
            Signal::NodefsAvailable,
            Signal::NodefsInodesFree,
            Signal::PidAvailable,
        ]
        .into_iter()
        .find(|s| s.name() == name)
    }
}

/// The least a signal may drop to before the node is under pressure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    /// An absolute amount (bytes, inodes or PIDs).
    Quantity(i64),
    /// A share of the capacity, 0 to 100.
    Percentage(f64),
}

/// A bad `--eviction-hard` entry.
#[derive(Debug, thiserror::Error)]
#[error("invalid eviction threshold {entry:?}: {reason}")]
pub struct ThresholdError {
    entry: String,
    reason: String,
}

/// A set of hard eviction thresholds, one per signal at most.
#[derive(Debug, Clone, PartialEq)]
pub struct EvictionThresholds {
    thresholds: BTreeMap<Signal, Threshold>,
}

impl Default for EvictionThresholds {
    /// Upstream's defaults (plus `pid.available<5%`).
    fn default() -> Self {
        Self {
            thresholds: BTreeMap::from([
                (
                    Signal::MemoryAvailable,
                    Threshold::Quantity(100 * 1024 * 1024),
                ),
                (Signal::NodefsAvailable, Threshold::Percentage(10.0)),
                (Signal::NodefsInodesFree, Threshold::Percentage(5.0)),
                (Signal::PidAvailable, Threshold::Percentage(5.0)),
            ]),
        }
    }
}

impl EvictionThresholds {
    /// No thresholds: the node never reports pressure.
    pub fn none() -> Self {
        Self {
            thresholds: BTreeMap::new(),
        }
    }

    /// The threshold set for `signal`, if any.
    pub fn get(&self, signal: Signal) -> Option<Threshold> {
        self.thresholds.get(&signal).copied()
    }

    /// Whether `observed` is below the threshold for `signal`.
    pub fn crossed(&self, signal: Signal, observed: Observed) -> bool {
        match self.get(signal) {
            None => false,
            Some(Threshold::Quantity(min)) => (observed.available as i128) < i128::from(min),
            Some(Threshold::Percentage(pct)) => {
                observed.capacity > 0
                    && (observed.available as f64) < pct / 100.0 * observed.capacity as f64
            }
        }
    }

    /// Which pressures the host is under now, observing memory, the
    /// filesystem of `dir` and PIDs.
    pub fn pressures(&self, dir: &Path) -> Pressures {
        let crossed =
            |signal, observed: Option<Observed>| observed.is_some_and(|o| self.crossed(signal, o));
        let fs = observe_filesystem(dir);
        Pressures {
            memory: crossed(Signal::MemoryAvailable, observe_memory()),
            disk: crossed(Signal::NodefsAvailable, fs.map(|f| f.0))
                || crossed(Signal::NodefsInodesFree, fs.map(|f| f.1)),
            pids: crossed(Signal::PidAvailable, observe_pids()),
        }
    }
}

impl FromStr for EvictionThresholds {
    type Err = ThresholdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut thresholds = BTreeMap::new();
        for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let error = |reason: &str| ThresholdError {
                entry: entry.to_owned(),
                reason: reason.to_owned(),
            };
            let (name, value) = entry
                .split_once('<')
                .ok_or_else(|| error("expected signal<value"))?;
            let signal = Signal::from_name(name.trim()).ok_or_else(|| {
                error("unknown signal (memory.available, nodefs.available, nodefs.inodesFree, pid.available)")
            })?;
            let value = value.trim();
            let threshold = match value.strip_suffix('%') {
                Some(pct) => {
                    let pct: f64 = pct.parse().map_err(|_| error("not a percentage"))?;
                    if !(0.0..=100.0).contains(&pct) {
                        return Err(error("percentage must be between 0% and 100%"));
                    }
                    Threshold::Percentage(pct)
                }
                None => {
                    let q = ParsedQuantity::try_from(&Quantity(value.to_owned()))
                        .map_err(|e| error(&e.to_string()))?;
                    if q.is_negative() {
                        return Err(error("must not be negative"));
                    }
                    Threshold::Quantity(q.value())
                }
            };
            if thresholds.insert(signal, threshold).is_some() {
                return Err(error("signal given twice"));
            }
        }
        Ok(Self { thresholds })
    }
}

impl fmt::Display for EvictionThresholds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (signal, threshold)) in self.thresholds.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            match threshold {
                Threshold::Quantity(q) => write!(f, "{}<{q}", signal.name())?,
                Threshold::Percentage(p) => write!(f, "{}<{p}%", signal.name())?,
            }
        }
        Ok(())
    }
}

/// One observation of a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observed {
    /// What is left.
    pub available: u64,
    /// The total.
    pub capacity: u64,
}

/// The node's pressure conditions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pressures {
    /// `MemoryPressure`.
    pub memory: bool,
    /// `DiskPressure`.
    pub disk: bool,
    /// `PIDPressure`.
    pub pids: bool,
}

fn meminfo_kib(meminfo: &str, key: &str) -> Option<u64> {
    meminfo
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

fn observe_memory() -> Option<Observed> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    Some(Observed {
        available: meminfo_kib(&meminfo, "MemAvailable:")? * 1024,
        capacity: meminfo_kib(&meminfo, "MemTotal:")? * 1024,
    })
}

/// Bytes and inodes of the filesystem holding `dir`.
fn observe_filesystem(dir: &Path) -> Option<(Observed, Observed)> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs writes into the zeroed struct we own; the path is a
    // valid NUL-terminated string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 || st.f_blocks == 0 {
        return None;
    }
    let block = st.f_frsize as u64;
    Some((
        Observed {
            available: st.f_bavail as u64 * block,
            capacity: st.f_blocks as u64 * block,
        },
        Observed {
            available: st.f_favail as u64,
            capacity: st.f_files as u64,
        },
    ))
}

fn observe_pids() -> Option<Observed> {
    let max: u64 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let running = std::fs::read_dir("/proc")
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .count() as u64;
    Some(Observed {
        available: max.saturating_sub(running),
        capacity: max,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_upstream_syntax_and_prints_it_back() {
        let t: EvictionThresholds = "memory.available<100Mi, nodefs.available<10%"
            .parse()
            .unwrap();
        assert_eq!(
            t.get(Signal::MemoryAvailable),
            Some(Threshold::Quantity(100 << 20))
        );
        assert_eq!(
            t.get(Signal::NodefsAvailable),
            Some(Threshold::Percentage(10.0))
        );
        assert_eq!(t.get(Signal::PidAvailable), None);
        assert_eq!(
            t.to_string(),
            "memory.available<104857600,nodefs.available<10%"
        );
        assert_eq!(t.to_string().parse::<EvictionThresholds>().unwrap(), t);
        assert_eq!(
            "".parse::<EvictionThresholds>().unwrap(),
            EvictionThresholds::none()
        );
    }

    #[test]
    fn rejects_bad_entries_naming_them() {
        for bad in [
            "memory.available>1Gi",
            "cpu.available<1",
            "nodefs.available<150%",
            "nodefs.available<lots",
            "memory.available<-1Gi",
            "pid.available<5%,pid.available<6%",
        ] {
            let e = bad.parse::<EvictionThresholds>().unwrap_err();
            assert!(
                e.to_string().contains("invalid eviction threshold"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn crossing_compares_against_the_quantity_or_the_share_of_capacity() {
        let t: EvictionThresholds = "memory.available<1Ki,nodefs.available<10%".parse().unwrap();
        let o = |available, capacity| Observed {
            available,
            capacity,
        };
        assert!(t.crossed(Signal::MemoryAvailable, o(1023, 1 << 20)));
        assert!(!t.crossed(Signal::MemoryAvailable, o(1024, 1 << 20)));
        assert!(t.crossed(Signal::NodefsAvailable, o(9, 100)));
        assert!(!t.crossed(Signal::NodefsAvailable, o(10, 100)));
        assert!(!t.crossed(Signal::PidAvailable, o(0, 100)), "unset signal");
        assert!(!EvictionThresholds::none().crossed(Signal::NodefsAvailable, o(0, 100)));
    }

    #[test]
    fn the_host_is_observed() {
        let dir = std::env::temp_dir();
        let all: EvictionThresholds = "nodefs.available<100%".parse().unwrap();
        assert!(all.pressures(&dir).disk, "less than all of a disk is free");
        assert_eq!(
            EvictionThresholds::none().pressures(&dir),
            Pressures::default()
        );
    }
}
