//! The owner graph: every object's identity, owners and deletion state, by uid.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::core::ApiResource;

/// One object as the garbage collector sees it.
#[derive(Clone, Debug)]
pub struct Node {
    /// Its resource (shared by every node of the resource).
    pub resource: Arc<ApiResource>,
    /// True for namespaced kinds.
    pub namespaced: bool,
    /// Its namespace.
    pub namespace: Option<String>,
    /// Its name.
    pub name: String,
    /// Its uid.
    pub uid: String,
    /// Its owner references.
    pub owners: Vec<OwnerReference>,
    /// True once `deletionTimestamp` is set.
    pub deleting: bool,
    /// Its finalizers.
    pub finalizers: Vec<String>,
}

impl Node {
    /// True if the node carries `finalizer`.
    pub fn has_finalizer(&self, finalizer: &str) -> bool {
        self.finalizers.iter().any(|f| f == finalizer)
    }
}

/// Every object by uid, with the reverse (owner -> dependents) index.
#[derive(Default, Debug)]
pub struct Graph {
    nodes: HashMap<String, Node>,
    dependents: HashMap<String, HashSet<String>>,
    synced: HashSet<(String, String)>,
    /// Objects whose situation changed since the last pass: only these need
    /// looking at (an object, its owners, and — when it goes or is being
    /// deleted — its dependents).
    attention: HashSet<String>,
}

impl Graph {
    /// Insert or replace a node.
    pub fn upsert(&mut self, node: Node) {
        self.remove(&node.uid.clone());
        self.attention.insert(node.uid.clone());
        if node.deleting
            && let Some(deps) = self.dependents.get(&node.uid)
        {
            self.attention.extend(deps.iter().cloned());
        }
        for o in &node.owners {
            self.attention.insert(o.uid.clone());
            self.dependents
                .entry(o.uid.clone())
                .or_default()
                .insert(node.uid.clone());
        }
        self.nodes.insert(node.uid.clone(), node);
    }

    /// Remove a node.
    pub fn remove(&mut self, uid: &str) {
        if let Some(deps) = self.dependents.get(uid) {
            self.attention.extend(deps.iter().cloned());
        }
        if let Some(old) = self.nodes.remove(uid) {
            for o in &old.owners {
                self.attention.insert(o.uid.clone());
                if let Some(set) = self.dependents.get_mut(&o.uid) {
                    set.remove(uid);
                    if set.is_empty() {
                        self.dependents.remove(&o.uid);
                    }
                }
            }
        }
    }

    /// Remove every node of a resource (before its watch relists).
    pub fn remove_resource(&mut self, resource: &ApiResource) {
        let uids: Vec<String> = self
            .nodes
            .values()
            .filter(|n| n.resource.group == resource.group && n.resource.plural == resource.plural)
            .map(|n| n.uid.clone())
            .collect();
        for u in uids {
            self.remove(&u);
        }
    }

    /// Record that a resource's first list is in the graph.
    pub fn mark_synced(&mut self, resource: &ApiResource) {
        self.synced
            .insert((resource.group.clone(), resource.plural.clone()));
    }

    /// True once every resource in `watched` has been listed: only then may
    /// an owner missing from the graph be suspected gone.
    pub fn is_synced<'a>(&self, mut watched: impl Iterator<Item = &'a (String, String)>) -> bool {
        watched.all(|k| self.synced.contains(k))
    }

    /// A node by uid.
    pub fn get(&self, uid: &str) -> Option<&Node> {
        self.nodes.get(uid)
    }

    /// Nodes that list `uid` as an owner.
    pub fn dependents_of(&self, uid: &str) -> Vec<&Node> {
        self.dependents
            .get(uid)
            .map(|set| set.iter().filter_map(|u| self.nodes.get(u)).collect())
            .unwrap_or_default()
    }

    /// Every node.
    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.values()
    }

    /// Whether `owner_ref` of `dependent` points at a live owner in the graph:
    /// same uid, and (for a namespaced owner) in the dependent's namespace —
    /// owners in other namespaces do not count, as upstream.
    pub fn owner_present(&self, dependent: &Node, owner_ref: &OwnerReference) -> bool {
        match self.nodes.get(&owner_ref.uid) {
            None => false,
            Some(owner) => !owner.namespaced || owner.namespace == dependent.namespace,
        }
    }

    /// The objects that changed (or whose owners or dependents changed)
    /// since the last call, leaving the set empty.
    pub fn take_attention(&mut self) -> HashSet<String> {
        std::mem::take(&mut self.attention)
    }

    /// Ask for `uid` to be looked at in the next pass.
    pub fn attend(&mut self, uid: &str) {
        self.attention.insert(uid.to_string());
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True if empty.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(uid: &str, ns: Option<&str>, owners: &[&str]) -> Node {
        Node {
            resource: Arc::new(ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(
                &(),
            )),
            namespaced: true,
            namespace: ns.map(str::to_string),
            name: uid.to_string(),
            uid: uid.to_string(),
            owners: owners
                .iter()
                .map(|o| OwnerReference {
                    uid: o.to_string(),
                    ..Default::default()
                })
                .collect(),
            deleting: false,
            finalizers: vec![],
        }
    }

    #[test]
    fn dependents_follow_upserts_and_removals() {
        let mut g = Graph::default();
        g.upsert(node("owner", Some("a"), &[]));
        g.upsert(node("child", Some("a"), &["owner"]));
        assert_eq!(g.dependents_of("owner").len(), 1);
        g.upsert(node("child", Some("a"), &[]));
        assert!(g.dependents_of("owner").is_empty());
    }

    #[test]
    fn owner_in_another_namespace_is_not_present() {
        let mut g = Graph::default();
        g.upsert(node("owner", Some("a"), &[]));
        let child = node("child", Some("b"), &["owner"]);
        assert!(!g.owner_present(&child, &child.owners[0]));
        let same = node("child2", Some("a"), &["owner"]);
        assert!(g.owner_present(&same, &same.owners[0]));
    }
}
