//! Resource usage, as the kubelet's `/stats/summary` reports it (the
//! Summary API's shape, the part metrics servers read): each node's and
//! each running container's CPU (`usageNanoCores`, the rate over the last
//! sampling interval, and `usageCoreNanoSeconds`) and memory
//! (`workingSetBytes`).
//!
//! On the process runtime a sampler reads `/proc` every [`INTERVAL`]: a
//! container's usage is the sum over the processes of its process group
//! (user and system time, resident memory), the node's is the machine's
//! (`/proc/stat` busy time, `/proc/meminfo` total less available). On sim
//! nodes nothing runs: a container uses what the pod's
//! `rk.dev/sim-cpu-usage` and `rk.dev/sim-memory-usage` annotations say
//! (zero without them), and a node the sum of its pods.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rk_core::quantity::ParsedQuantity;
use serde_json::{Value, json};

use super::Shared;
use super::status::CState;

/// How often the process runtime's usage is sampled.
pub const INTERVAL: Duration = Duration::from_secs(5);
/// The annotation giving a sim container's CPU use (`250m`).
pub const SIM_CPU_USAGE: &str = "rk.dev/sim-cpu-usage";
/// The annotation giving a sim container's memory use (`64Mi`).
pub const SIM_MEMORY_USAGE: &str = "rk.dev/sim-memory-usage";

/// Usage of one thing (a container or the node).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// CPU over the last interval, in billionths of a core.
    pub nano_cores: u64,
    /// CPU used since it started, in core-nanoseconds.
    pub core_nano_seconds: u64,
    /// Memory in use (resident).
    pub working_set_bytes: u64,
}

/// A cumulative reading.
#[derive(Debug, Clone, Copy)]
struct Reading {
    at: Instant,
    cpu_ns: u64,
    memory: u64,
}

/// The sampler's latest figures.
#[derive(Default)]
pub(crate) struct Stats {
    inner: Mutex<Sampled>,
}

#[derive(Default)]
struct Sampled {
    /// Previous reading by process group, and the node's.
    previous: HashMap<i32, Reading>,
    previous_node: Option<Reading>,
    /// Usage by process group (only groups seen twice).
    groups: HashMap<i32, Usage>,
    node: Option<Usage>,
    /// When the figures were taken.
    at: Option<jiff::Timestamp>,
}

impl Stats {
    /// Take a sample of every process group and of the machine.
    pub(crate) fn sample(&self) {
        let now = Instant::now();
        let groups = read_process_groups();
        let node = read_node();
        let mut s = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut usage = HashMap::with_capacity(groups.len());
        for (pgid, reading) in &groups {
            if let Some(prev) = s.previous.get(pgid) {
                usage.insert(*pgid, rate(prev, reading));
            }
        }
        s.groups = usage;
        if let (Some(prev), Some(node)) = (s.previous_node, node) {
            s.node = Some(rate(&prev, &node));
        }
        s.previous = groups
            .into_iter()
            .map(|(pgid, r)| (pgid, Reading { at: now, ..r }))
            .collect();
        s.previous_node = node.map(|r| Reading { at: now, ..r });
        s.at = Some(jiff::Timestamp::now());
    }

    fn group(&self, pgid: i32) -> Option<Usage> {
        let s = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        s.groups.get(&pgid).copied()
    }

    fn node(&self) -> (Option<Usage>, Option<jiff::Timestamp>) {
        let s = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        (s.node, s.at)
    }
}

fn rate(prev: &Reading, now: &Reading) -> Usage {
    let wall = now.at.saturating_duration_since(prev.at).as_nanos().max(1);
    let used = u128::from(now.cpu_ns.saturating_sub(prev.cpu_ns));
    Usage {
        nano_cores: u64::try_from(used * 1_000_000_000 / wall).unwrap_or(u64::MAX),
        core_nano_seconds: now.cpu_ns,
        working_set_bytes: now.memory,
    }
}

/// Sample every [`INTERVAL`] until the task is dropped.
pub(crate) async fn run_sampler(shared: std::sync::Arc<Shared>) {
    let mut tick = tokio::time::interval(INTERVAL);
    loop {
        tick.tick().await;
        let s = shared.clone();
        let _ = tokio::task::spawn_blocking(move || s.stats.sample()).await;
    }
}

/// `(clock ticks per second, page size)`.
fn units() -> (u64, u64) {
    // SAFETY: sysconf only reads configuration values.
    let (ticks, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    (
        u64::try_from(ticks).ok().filter(|t| *t > 0).unwrap_or(100),
        u64::try_from(page).ok().filter(|p| *p > 0).unwrap_or(4096),
    )
}

/// CPU time and resident memory summed by process group.
fn read_process_groups() -> HashMap<i32, Reading> {
    let (ticks, page) = units();
    let mut out: HashMap<i32, Reading> = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    let now = Instant::now();
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((pgid, cpu_ticks, rss_pages)) = parse_stat(&stat) else {
            continue;
        };
        let r = out.entry(pgid).or_insert(Reading {
            at: now,
            cpu_ns: 0,
            memory: 0,
        });
        r.cpu_ns += cpu_ticks.saturating_mul(1_000_000_000 / ticks);
        r.memory += rss_pages.saturating_mul(page);
    }
    out
}

/// `(pgrp, utime + stime, rss)` from a `/proc/PID/stat` line.
fn parse_stat(stat: &str) -> Option<(i32, u64, u64)> {
    // The command name (field 2) may hold spaces: fields are counted
    // from the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state): pgrp is field 5, utime 14, stime 15,
    // rss 24.
    let pgrp = fields.get(2)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let rss: i64 = fields.get(21)?.parse().ok()?;
    Some((pgrp, utime + stime, u64::try_from(rss).unwrap_or(0)))
}

/// The machine's busy CPU time and memory in use.
fn read_node() -> Option<Reading> {
    let (ticks, _) = units();
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let total: u64 = cpu.iter().take(8).sum();
    let idle = cpu.get(3).copied().unwrap_or(0) + cpu.get(4).copied().unwrap_or(0);
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib = |key: &str| -> Option<u64> {
        meminfo
            .lines()
            .find(|l| l.starts_with(key))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    let used = kib("MemTotal:")?.saturating_sub(kib("MemAvailable:")?) * 1024;
    Some(Reading {
        at: Instant::now(),
        cpu_ns: total
            .saturating_sub(idle)
            .saturating_mul(1_000_000_000 / ticks),
        memory: used,
    })
}

/// A quantity annotation: its value in billionths (`nano`: CPU in
/// nanocores) or in units (memory in bytes); zero when absent or invalid.
fn annotated(
    annotations: Option<&std::collections::BTreeMap<String, String>>,
    key: &str,
    nano: bool,
) -> u64 {
    let Some(q) = annotations
        .and_then(|a| a.get(key))
        .and_then(|v| v.parse::<ParsedQuantity>().ok())
    else {
        return 0;
    };
    let v = if nano {
        q.nanos()
    } else {
        i128::from(q.value())
    };
    u64::try_from(v).unwrap_or(0)
}

fn usage_json(u: &Usage, time: &str) -> (Value, Value) {
    (
        json!({"time": time, "usageNanoCores": u.nano_cores, "usageCoreNanoSeconds": u.core_nano_seconds}),
        json!({"time": time, "workingSetBytes": u.working_set_bytes, "usageBytes": u.working_set_bytes, "rssBytes": u.working_set_bytes}),
    )
}

/// The summary of `node` (the kubelet's only node when `None`); `None`
/// when this kubelet does not run it.
pub(crate) fn summary(shared: &Shared, node: Option<&str>) -> Option<Value> {
    let sim = !shared.runtime.runs_probes();
    let nodes = &shared.config.nodes;
    let node = match node {
        Some(n) => nodes.iter().find(|c| c.name == n)?,
        None => nodes.first()?,
    };
    let (node_usage, sampled_at) = shared.stats.node();
    let time = sampled_at
        .unwrap_or_else(jiff::Timestamp::now)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let mut pods = Vec::new();
    let mut pods_total = Usage::default();
    for state in shared.pod_states() {
        let pod = state.pod();
        if pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) != Some(node.name.as_str()) {
            continue;
        }
        let annotations = pod.metadata.annotations.as_ref();
        let running: Vec<(String, Option<i32>)> = state.read(|r| {
            r.app
                .iter()
                .chain(r.init.iter())
                .filter(|c| matches!(c.state, CState::Running { .. }))
                .map(|c| {
                    let pgid = c
                        .exec
                        .as_ref()
                        .and_then(|e| e.pid)
                        .and_then(|p| i32::try_from(p).ok());
                    (c.name.clone(), pgid)
                })
                .collect()
        });
        if running.is_empty() {
            continue;
        }
        let mut containers = Vec::new();
        let mut pod_total = Usage::default();
        for (name, pgid) in running {
            let usage = if sim {
                Usage {
                    nano_cores: annotated(annotations, SIM_CPU_USAGE, true),
                    core_nano_seconds: 0,
                    working_set_bytes: annotated(annotations, SIM_MEMORY_USAGE, false),
                }
            } else {
                // Not sampled twice yet: no figures.
                match pgid.and_then(|p| shared.stats.group(p)) {
                    Some(u) => u,
                    None => continue,
                }
            };
            pod_total.nano_cores += usage.nano_cores;
            pod_total.core_nano_seconds += usage.core_nano_seconds;
            pod_total.working_set_bytes += usage.working_set_bytes;
            let (cpu, memory) = usage_json(&usage, &time);
            containers.push(json!({"name": name, "cpu": cpu, "memory": memory}));
        }
        if containers.is_empty() {
            continue;
        }
        pods_total.nano_cores += pod_total.nano_cores;
        pods_total.working_set_bytes += pod_total.working_set_bytes;
        let (cpu, memory) = usage_json(&pod_total, &time);
        pods.push(json!({
            "podRef": {
                "name": pod.metadata.name,
                "namespace": pod.metadata.namespace,
                "uid": pod.metadata.uid,
            },
            "containers": containers,
            "cpu": cpu,
            "memory": memory,
        }));
    }
    let node_usage = if sim { Some(pods_total) } else { node_usage };
    let mut node_json = json!({"nodeName": node.name});
    if let Some(u) = node_usage {
        let (cpu, memory) = usage_json(&u, &time);
        node_json["cpu"] = cpu;
        node_json["memory"] = memory;
    }
    Some(json!({"node": node_json, "pods": pods}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_give_group_time_and_memory() {
        let line = "4242 (python3 -m x) S 1 4240 4240 0 -1 4194560 900 0 0 0 150 25 0 0 20 0 1 0 100 123456 789 18446744073709551615";
        assert_eq!(parse_stat(line), Some((4240, 175, 789)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn rates_are_cpu_time_over_wall_time() {
        let t0 = Instant::now();
        let prev = Reading {
            at: t0,
            cpu_ns: 1_000_000_000,
            memory: 0,
        };
        let now = Reading {
            at: t0 + Duration::from_secs(2),
            cpu_ns: 2_000_000_000,
            memory: 4096,
        };
        let u = rate(&prev, &now);
        assert_eq!(u.nano_cores, 500_000_000);
        assert_eq!(
            (u.core_nano_seconds, u.working_set_bytes),
            (2_000_000_000, 4096)
        );
    }

    #[test]
    fn this_machine_and_process_are_readable() {
        assert!(read_node().is_some_and(|n| n.memory > 0));
        // SAFETY: getpgrp has no preconditions.
        let own = unsafe { libc::getpgrp() };
        assert!(
            read_process_groups()
                .get(&own)
                .is_some_and(|r| r.memory > 0)
        );
    }
}
