//! The node IPAM controller: gives every node a `spec.podCIDR` (and
//! `podCIDRs`) carved from the cluster CIDR — a `/24` per node out of
//! `10.244.0.0/16` by default, as `kube-controller-manager
//! --allocate-node-cidrs --cluster-cidr` does. CIDRs already on nodes are
//! respected, and a deleted node's range is reused.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher;
use rk_core::cidr::Ipv4Cidr;
use serde_json::json;

/// An IPv4 range split into equal per-node blocks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterCidr {
    range: Ipv4Cidr,
    node_prefix: u8,
}

/// A cluster CIDR that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CidrError {
    /// Not `a.b.c.d/n`.
    #[error("invalid CIDR {0:?}")]
    Invalid(String),
    /// The node mask is not longer than the cluster's.
    #[error("node mask /{node} must be longer than the cluster mask /{cluster}")]
    Mask {
        /// The cluster's prefix length.
        cluster: u8,
        /// The per-node prefix length.
        node: u8,
    },
}

impl ClusterCidr {
    /// Parse `cidr` (e.g. `10.244.0.0/16`) with per-node blocks of `/node_prefix`.
    pub fn new(cidr: &str, node_prefix: u8) -> Result<Self, CidrError> {
        let range: Ipv4Cidr = cidr
            .parse()
            .map_err(|_| CidrError::Invalid(cidr.to_string()))?;
        if node_prefix > 32 {
            return Err(CidrError::Invalid(cidr.to_string()));
        }
        if node_prefix <= range.prefix() {
            return Err(CidrError::Mask {
                cluster: range.prefix(),
                node: node_prefix,
            });
        }
        Ok(Self { range, node_prefix })
    }

    /// How many node blocks the range holds.
    pub fn capacity(&self) -> u64 {
        1u64 << (self.node_prefix - self.range.prefix())
    }

    /// Addresses in each node block.
    fn block_size(&self) -> u64 {
        1u64 << (32 - self.node_prefix)
    }

    /// The `index`th node block, as `a.b.c.d/n` (the last block past the
    /// range's end).
    pub fn block(&self, index: u64) -> String {
        let index = index.min(self.capacity() - 1);
        let network = self
            .range
            .nth(index * self.block_size())
            .unwrap_or(self.range.network());
        format!("{network}/{}", self.node_prefix)
    }

    /// The index of `cidr` if it is one of this range's blocks.
    pub fn index_of(&self, cidr: &str) -> Option<u64> {
        let (ip, len) = cidr.split_once('/')?;
        let ip: Ipv4Addr = ip.parse().ok()?;
        if len.parse::<u8>().ok()? != self.node_prefix {
            return None;
        }
        Some(self.range.offset_of(ip)? / self.block_size())
    }
}

impl Default for ClusterCidr {
    fn default() -> Self {
        Self {
            // A /16 is always a valid prefix.
            range: Ipv4Cidr::new(Ipv4Addr::new(10, 244, 0, 0), 16)
                .unwrap_or_else(|| unreachable!()),
            node_prefix: 24,
        }
    }
}

/// Run the controller until the watch ends.
pub async fn run(client: kube::Client, cidr: ClusterCidr) {
    let api: Api<Node> = Api::all(client.clone());
    let mut used: BTreeSet<u64> = BTreeSet::new();
    let mut pending: Vec<String> = Vec::new();
    let mut initial: Vec<Node> = Vec::new();
    let mut events = crate::watch::lean_watcher(api.clone(), watcher::Config::default()).boxed();
    while let Some(ev) = events.next().await {
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                tracing::debug!(error = %e, "node watch error");
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                continue;
            }
        };
        let mut ready: Vec<Node> = Vec::new();
        match ev {
            watcher::Event::Init => {
                initial.clear();
            }
            watcher::Event::InitApply(n) => initial.push(n),
            watcher::Event::InitDone => {
                used = initial
                    .iter()
                    .filter_map(|n| n.spec.as_ref()?.pod_cidr.as_deref())
                    .filter_map(|c| cidr.index_of(c))
                    .collect();
                ready = std::mem::take(&mut initial);
            }
            watcher::Event::Apply(n) => ready.push(n),
            watcher::Event::Delete(n) => {
                let name = n.metadata.name.clone().unwrap_or_default();
                pending.retain(|p| p != &name);
                if let Some(i) = n
                    .spec
                    .as_ref()
                    .and_then(|s| s.pod_cidr.as_deref())
                    .and_then(|c| cidr.index_of(c))
                {
                    used.remove(&i);
                }
            }
        }
        for node in ready {
            let name = node.metadata.name.clone().unwrap_or_default();
            if let Some(c) = node.spec.as_ref().and_then(|s| s.pod_cidr.as_deref()) {
                if let Some(i) = cidr.index_of(c) {
                    used.insert(i);
                }
                pending.retain(|p| p != &name);
                continue;
            }
            if pending.contains(&name) {
                continue;
            }
            let Some(index) = (0..cidr.capacity()).find(|i| !used.contains(i)) else {
                tracing::warn!(node = %name, "the cluster CIDR is exhausted; no podCIDR for this node");
                continue;
            };
            let block = cidr.block(index);
            let patch = json!({"spec": {"podCIDR": block, "podCIDRs": [block]}});
            match api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    used.insert(index);
                    pending.push(name);
                }
                Err(e) => tracing::warn!(node = %name, error = %e, "assigning a podCIDR failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_round_trip_and_stay_in_range() {
        let c = ClusterCidr::new("10.244.0.0/16", 24).unwrap();
        assert_eq!(c.capacity(), 256);
        assert_eq!(c.block(3), "10.244.3.0/24");
        assert_eq!(c.index_of("10.244.3.0/24"), Some(3));
        assert_eq!(c.index_of("10.245.0.0/24"), None);
        assert_eq!(c.index_of("10.244.3.0/25"), None);
        assert!(matches!(
            ClusterCidr::new("10.0.0.0/24", 16),
            Err(CidrError::Mask { .. })
        ));
        assert!(ClusterCidr::new("nope", 24).is_err());
    }
}
