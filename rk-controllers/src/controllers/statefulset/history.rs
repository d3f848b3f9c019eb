//! A StatefulSet's revisions: the ControllerRevision machinery shared with
//! the DaemonSet controller ([`crate::controllers::daemonset::history`]),
//! plus what is particular to StatefulSets — the *current* revision (the
//! one `status.currentRevision` names, which pods below the partition keep)
//! next to the *update* revision (the current template's), and history
//! truncation that never removes either or any revision a pod still runs.

use std::collections::HashSet;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use kube::api::{Api, DeleteParams};
use rk_core::labels::Selector;

use crate::controllers::daemonset::history::{GENERIC_HASH_LABEL, Owner, construct};
pub use crate::controllers::daemonset::history::{
    HistoryError, revision_number, revision_template,
};

/// The set's revisions.
#[derive(Debug, Clone)]
pub struct Revisions {
    /// The revision `status.currentRevision` names (the update revision
    /// when it names none that exists).
    pub current: ControllerRevision,
    /// The revision of the current template.
    pub update: ControllerRevision,
    /// Every revision of the set, by ascending number.
    pub all: Vec<ControllerRevision>,
}

fn name(r: &ControllerRevision) -> &str {
    r.metadata.name.as_deref().unwrap_or_default()
}

/// Read (and, as needed, create or renumber) the set's revisions.
pub async fn revisions(
    client: &kube::Client,
    set: &StatefulSet,
    selector: &Selector,
    cache: &[Arc<ControllerRevision>],
) -> Result<Revisions, HistoryError> {
    let owner = Owner {
        meta: &set.metadata,
        kind: "StatefulSet",
        template: &set.spec.template,
        selector,
        collision_count: set.status.as_ref().and_then(|s| s.collision_count),
        hash_label: GENERIC_HASH_LABEL,
    };
    let history = construct(client, &owner, cache).await?;
    let update = history.current;
    let mut all = history.old;
    all.push(update.clone());
    all.sort_by_key(revision_number);
    let wanted = set
        .status
        .as_ref()
        .and_then(|s| s.current_revision.as_deref())
        .filter(|n| !n.is_empty());
    let current = wanted
        .and_then(|w| all.iter().find(|r| name(r) == w))
        .cloned()
        .unwrap_or_else(|| update.clone());
    Ok(Revisions {
        current,
        update,
        all,
    })
}

/// Delete the oldest revisions beyond `revisionHistoryLimit` (default 10),
/// counting only those no pod runs and that are neither current nor update.
pub async fn truncate(
    client: &kube::Client,
    set: &StatefulSet,
    revisions: &Revisions,
    live: &HashSet<String>,
) -> Result<(), kube::Error> {
    let keep = |r: &&ControllerRevision| {
        let n = name(r);
        live.contains(n) || n == name(&revisions.current) || n == name(&revisions.update)
    };
    let history: Vec<&ControllerRevision> = revisions.all.iter().filter(|r| !keep(r)).collect();
    let limit = usize::try_from(set.spec.revision_history_limit.unwrap_or(10).max(0)).unwrap_or(0);
    let excess = history.len().saturating_sub(limit);
    let ns = set.metadata.namespace.clone().unwrap_or_default();
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), &ns);
    for r in history.into_iter().take(excess) {
        match api.delete(name(r), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
