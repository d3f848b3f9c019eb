//! The disruption controller: keeps every PodDisruptionBudget's status
//! current, which is what the API server's eviction reads (and `kubectl
//! drain` waits on).
//!
//! For each budget, as upstream computes it:
//!
//! - the pods it covers: those of its namespace its selector matches (in
//!   policy/v1 an empty selector matches them all);
//! - `expectedPods` and `desiredHealthy`: with `minAvailable: N`, the
//!   covered pods and N; with `maxUnavailable` or a percentage, the scale of
//!   the pods' controllers (ReplicaSet, or the Deployment owning it,
//!   StatefulSet, ReplicationController), and that scale less
//!   `maxUnavailable`, or the percentage of it rounded up;
//! - `currentHealthy`: covered pods that are Ready, not being deleted, and
//!   not in `disruptedPods` (pods an eviction took a disruption for; an
//!   entry is dropped once its pod is deleted, or after two minutes);
//! - `disruptionsAllowed`: `currentHealthy - desiredHealthy`, never below
//!   zero, and the `DisruptionAllowed` condition (`SufficientPods` or
//!   `InsufficientPods`). When the expected count cannot be found (a pod
//!   without a supported controller), the budget allows nothing and says
//!   why (`SyncFailed`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, PostParams};
use kube::runtime::reflector::{self, Store, reflector};
use kube::runtime::{WatchStreamExt, watcher};
use rk_core::object::pod::is_pod_ready;

use crate::watch::Informers;

/// Full resync period (also how soon an expired `disruptedPods` entry
/// goes).
pub const RESYNC: Duration = Duration::from_secs(30);
/// How long a pod an eviction took a disruption for counts as going.
pub const DELETION_TIMEOUT: Duration = Duration::from_secs(120);

/// The condition this controller keeps.
const CONDITION: &str = "DisruptionAllowed";

/// Run the controller with its own cache of pods.
pub async fn run(client: kube::Client) {
    let informers = Informers::new(&client);
    run_shared(client, informers).await
}

/// Run the controller over a controller manager's shared pod cache:
/// resync a namespace's budgets whenever they or its pods change, and
/// every budget every [`RESYNC`].
pub async fn run_shared(client: kube::Client, informers: Informers) {
    let budgets: Api<PodDisruptionBudget> = Api::all(client.clone());
    let pods = informers.pods.store();
    let (budget_store, writer) = reflector::store::<PodDisruptionBudget>();
    let b_events = reflector(
        writer,
        crate::watch::lean_watcher(budgets, watcher::Config::default()),
    )
    .default_backoff()
    .filter_map(|e| async move {
        match e {
            Ok(watcher::Event::Apply(b) | watcher::Event::InitApply(b)) => b.metadata.namespace,
            _ => None,
        }
    });
    let p_events = informers.pods.subscribe().filter_map(|e| async move {
        match e {
            Ok(watcher::Event::Apply(p) | watcher::Event::Delete(p)) => {
                p.metadata.namespace.clone()
            }
            _ => None,
        }
    });
    let mut events = futures::stream::select(b_events.boxed(), p_events.boxed());
    let mut resync = tokio::time::interval(RESYNC);
    let with_budgets = || -> BTreeSet<String> {
        budget_store
            .state()
            .iter()
            .filter_map(|b| b.metadata.namespace.clone())
            .collect()
    };
    loop {
        let Some(namespaces) =
            crate::watch::namespaces_due(&mut events, &mut resync, with_budgets).await
        else {
            return;
        };
        if namespaces.is_empty() || !informers.pods.ready().await {
            continue;
        }
        for ns in namespaces {
            sync_namespace(&client, &ns, &budget_store, &pods).await;
        }
    }
}

/// Recompute the status of every budget in `ns` and write those that
/// changed. A write that conflicts (an eviction updated the budget
/// meanwhile) is dropped: the budget's own change brings it back here.
pub async fn sync_namespace(
    client: &kube::Client,
    ns: &str,
    budgets: &Store<PodDisruptionBudget>,
    pods: &Store<Pod>,
) {
    let in_namespace: Vec<Arc<Pod>> = pods
        .state()
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(ns))
        .collect();
    let api: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), ns);
    let mut scales = Scales::new(client.clone(), ns);
    let now = jiff::Timestamp::now();
    for budget in budgets
        .state()
        .into_iter()
        .filter(|b| b.metadata.namespace.as_deref() == Some(ns))
    {
        let covered = covered_pods(&budget, &in_namespace);
        let counts = expected_and_desired(&budget, &covered, &mut scales).await;
        let status = status_for(&budget, &covered, counts, now);
        if budget.status.as_ref() == Some(&status) {
            continue;
        }
        let name = budget.metadata.name.clone().unwrap_or_default();
        let mut updated = (*budget).clone();
        updated.status = Some(status);
        match api
            .replace_status(&name, &PostParams::default(), &updated)
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => {}
            Err(e) => {
                tracing::debug!(namespace = %ns, budget = %name, error = %e, "budget status update failed");
            }
        }
    }
}

/// The pods of the namespace the budget's selector matches.
fn covered_pods(budget: &PodDisruptionBudget, pods: &[Arc<Pod>]) -> Vec<Arc<Pod>> {
    let selector = budget
        .spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .and_then(|s| rk_core::labels::Selector::try_from(s).ok());
    let Some(selector) = selector else {
        // No selector at all, or one that does not parse: nothing.
        return Vec::new();
    };
    let empty = BTreeMap::new();
    pods.iter()
        .filter(|p| selector.matches(p.metadata.labels.as_ref().unwrap_or(&empty)))
        .cloned()
        .collect()
}

/// `(expectedPods, desiredHealthy)`, or why they cannot be known.
async fn expected_and_desired(
    budget: &PodDisruptionBudget,
    pods: &[Arc<Pod>],
    scales: &mut Scales,
) -> Result<(i32, i32), String> {
    let spec = budget.spec.clone().unwrap_or_default();
    if let Some(max) = &spec.max_unavailable {
        let expected = scales.expected(pods).await?;
        let max = scaled(max, expected)?;
        return Ok((expected, (expected - max).max(0)));
    }
    match &spec.min_available {
        Some(IntOrString::Int(n)) => Ok((pods.len() as i32, *n)),
        Some(min @ IntOrString::String(_)) => {
            let expected = scales.expected(pods).await?;
            Ok((expected, scaled(min, expected)?))
        }
        None => Ok((0, 0)),
    }
}

/// An int, or a percentage of `total` rounded up.
fn scaled(value: &IntOrString, total: i32) -> Result<i32, String> {
    match value {
        IntOrString::Int(n) => Ok(*n),
        IntOrString::String(s) => {
            let pct: i64 = s
                .strip_suffix('%')
                .and_then(|p| p.trim().parse().ok())
                .ok_or_else(|| format!("invalid value for IntOrString: invalid value {s:?}"))?;
            let v = (pct * i64::from(total) + 99) / 100;
            Ok(i32::try_from(v).unwrap_or(i32::MAX))
        }
    }
}

/// The budget's new status.
fn status_for(
    budget: &PodDisruptionBudget,
    pods: &[Arc<Pod>],
    counts: Result<(i32, i32), String>,
    now: jiff::Timestamp,
) -> PodDisruptionBudgetStatus {
    let old = budget.status.clone().unwrap_or_default();
    let generation = budget.metadata.generation;
    let (expected, desired) = match counts {
        Ok(c) => c,
        Err(message) => {
            // Fail safe: keep the last counts, allow nothing.
            let conditions = set_condition(
                old.conditions.clone(),
                "False",
                "SyncFailed",
                &message,
                generation,
                now,
            );
            return PodDisruptionBudgetStatus {
                disruptions_allowed: Some(0),
                observed_generation: generation,
                conditions: Some(conditions),
                ..old
            };
        }
    };
    let disrupted = disrupted_pods(&old, pods, now);
    let current = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            let name = p.metadata.name.as_deref().unwrap_or_default();
            !disrupted.contains_key(name)
        })
        .filter(|p| is_pod_ready(p))
        .count() as i32;
    let allowed = if expected <= 0 {
        0
    } else {
        (current - desired).max(0)
    };
    let (status, reason) = if allowed > 0 {
        ("True", "SufficientPods")
    } else {
        ("False", "InsufficientPods")
    };
    PodDisruptionBudgetStatus {
        current_healthy: Some(current),
        desired_healthy: Some(desired),
        expected_pods: Some(expected),
        disruptions_allowed: Some(allowed),
        observed_generation: generation,
        disrupted_pods: (!disrupted.is_empty()).then_some(disrupted),
        conditions: Some(set_condition(
            old.conditions.clone(),
            status,
            reason,
            "",
            generation,
            now,
        )),
    }
}

/// The entries of `disruptedPods` still in force: the pod is covered, not
/// yet being deleted, and the eviction is less than [`DELETION_TIMEOUT`]
/// old.
fn disrupted_pods(
    old: &PodDisruptionBudgetStatus,
    pods: &[Arc<Pod>],
    now: jiff::Timestamp,
) -> BTreeMap<String, Time> {
    let Some(entries) = &old.disrupted_pods else {
        return BTreeMap::new();
    };
    let timeout = jiff::SignedDuration::try_from(DELETION_TIMEOUT).unwrap_or_default();
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| {
            let name = p.metadata.name.as_deref()?;
            let at = entries.get(name)?;
            let expires = at.0.checked_add(timeout).ok()?;
            (expires > now).then(|| (name.to_owned(), at.clone()))
        })
        .collect()
}

/// `conditions` with [`CONDITION`] set (its transition time kept when its
/// status did not change).
fn set_condition(
    conditions: Option<Vec<Condition>>,
    status: &str,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: jiff::Timestamp,
) -> Vec<Condition> {
    let mut conditions = conditions.unwrap_or_default();
    let old = conditions.iter().position(|c| c.type_ == CONDITION);
    let since = old
        .map(|i| &conditions[i])
        .filter(|c| c.status == status)
        .map(|c| c.last_transition_time.clone());
    let condition = Condition {
        type_: CONDITION.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message: message.to_owned(),
        observed_generation: generation,
        last_transition_time: since.unwrap_or(Time(now)),
    };
    match old {
        Some(i) => conditions[i] = condition,
        None => conditions.push(condition),
    }
    conditions
}

/// The scale of pods' controllers, looked up once per sync.
struct Scales {
    client: kube::Client,
    namespace: String,
    /// By the uid of a pod's owner: the uid and scale of the controller
    /// that counts (the owner, or the Deployment owning it).
    seen: HashMap<String, (String, i32)>,
}

impl Scales {
    fn new(client: kube::Client, namespace: &str) -> Self {
        Self {
            client,
            namespace: namespace.to_owned(),
            seen: HashMap::new(),
        }
    }

    /// The summed scale of the distinct controllers of `pods`.
    async fn expected(&mut self, pods: &[Arc<Pod>]) -> Result<i32, String> {
        let mut counted: BTreeMap<String, i32> = BTreeMap::new();
        for pod in pods {
            let (uid, scale) = self.controller_scale(pod).await?;
            counted.insert(uid, scale);
        }
        Ok(counted.values().sum())
    }

    /// The uid and scale of the pod's controller (a Deployment's for a
    /// ReplicaSet it owns).
    async fn controller_scale(&mut self, pod: &Pod) -> Result<(String, i32), String> {
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let none = || format!("found no controllers for pod {name:?}");
        let owner = pod
            .metadata
            .owner_references
            .as_ref()
            .and_then(|o| o.iter().find(|r| r.controller == Some(true)))
            .ok_or_else(none)?;
        if let Some(found) = self.seen.get(&owner.uid) {
            return Ok(found.clone());
        }
        let ns = self.namespace.as_str();
        let c = self.client.clone();
        let group = owner.api_version.split('/').next().unwrap_or_default();
        let found: Option<(String, i32)> = match (group, owner.kind.as_str()) {
            ("apps", "ReplicaSet") => {
                let rs = Api::<ReplicaSet>::namespaced(c.clone(), ns)
                    .get_opt(&owner.name)
                    .await
                    .map_err(|e| e.to_string())?
                    .filter(|rs| rs.metadata.uid.as_deref() == Some(owner.uid.as_str()));
                match rs {
                    Some(rs) => {
                        let deployment = rs.metadata.owner_references.as_ref().and_then(|o| {
                            o.iter()
                                .find(|r| r.controller == Some(true) && r.kind == "Deployment")
                        });
                        match deployment {
                            Some(d) => Api::<Deployment>::namespaced(c, ns)
                                .get_opt(&d.name)
                                .await
                                .map_err(|e| e.to_string())?
                                .filter(|dep| dep.metadata.uid.as_deref() == Some(d.uid.as_str()))
                                .map(|dep| {
                                    let n = dep.spec.replicas.unwrap_or(1);
                                    (d.uid.clone(), n)
                                }),
                            None => {
                                let n = rs.spec.replicas.unwrap_or(1);
                                Some((owner.uid.clone(), n))
                            }
                        }
                    }
                    None => None,
                }
            }
            ("apps", "StatefulSet") => Api::<StatefulSet>::namespaced(c, ns)
                .get_opt(&owner.name)
                .await
                .map_err(|e| e.to_string())?
                .filter(|s| s.metadata.uid.as_deref() == Some(owner.uid.as_str()))
                .map(|s| {
                    let n = s.spec.replicas.unwrap_or(1);
                    (owner.uid.clone(), n)
                }),
            ("v1", "ReplicationController") => Api::<ReplicationController>::namespaced(c, ns)
                .get_opt(&owner.name)
                .await
                .map_err(|e| e.to_string())?
                .filter(|r| r.metadata.uid.as_deref() == Some(owner.uid.as_str()))
                .map(|r| {
                    let n = r.spec.and_then(|s| s.replicas).unwrap_or(1);
                    (owner.uid.clone(), n)
                }),
            _ => None,
        };
        let found = found.ok_or_else(none)?;
        self.seen.insert(owner.uid.clone(), found.clone());
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use k8s_openapi::api::policy::v1::PodDisruptionBudgetSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

    fn pod(name: &str, ready: bool) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                labels: Some([("app".to_string(), "web".to_string())].into()),
                ..ObjectMeta::default()
            },
            status: Some(PodStatus {
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..PodCondition::default()
                }]),
                ..PodStatus::default()
            }),
            ..Pod::default()
        })
    }

    fn budget(min: Option<IntOrString>, selector: LabelSelector) -> PodDisruptionBudget {
        PodDisruptionBudget {
            metadata: ObjectMeta {
                name: Some("b".into()),
                namespace: Some("ns".into()),
                generation: Some(2),
                ..ObjectMeta::default()
            },
            spec: Some(PodDisruptionBudgetSpec {
                min_available: min,
                selector: Some(selector),
                ..PodDisruptionBudgetSpec::default()
            }),
            status: None,
        }
    }

    fn app_web() -> LabelSelector {
        LabelSelector {
            match_labels: Some([("app".to_string(), "web".to_string())].into()),
            ..LabelSelector::default()
        }
    }

    #[test]
    fn min_available_counts_ready_pods_not_being_disrupted() {
        let now = jiff::Timestamp::now();
        let mut b = budget(Some(IntOrString::Int(2)), app_web());
        let pods = vec![
            pod("a", true),
            pod("b", true),
            pod("c", true),
            pod("d", false),
        ];
        let covered = covered_pods(&b, &pods);
        assert_eq!(covered.len(), 4);
        let s = status_for(&b, &covered, Ok((4, 2)), now);
        assert_eq!(
            (s.current_healthy, s.desired_healthy, s.expected_pods),
            (Some(3), Some(2), Some(4))
        );
        assert_eq!(s.disruptions_allowed, Some(1));
        assert_eq!(s.observed_generation, Some(2));
        let c = &s.conditions.as_ref().expect("conditions")[0];
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("True", "SufficientPods")
        );
        // An eviction took "a": it no longer counts, and nothing is left.
        b.status = Some(PodDisruptionBudgetStatus {
            disrupted_pods: Some([("a".to_string(), Time(now))].into()),
            ..s
        });
        let s = status_for(&b, &covered, Ok((4, 2)), now);
        assert_eq!(
            (s.current_healthy, s.disruptions_allowed),
            (Some(2), Some(0))
        );
        assert!(s.disrupted_pods.is_some());
        let c = &s.conditions.as_ref().expect("conditions")[0];
        assert_eq!(c.reason, "InsufficientPods");
        // Two minutes on, the entry has lapsed.
        let later = now + jiff::SignedDuration::from_secs(121);
        let s = status_for(&b, &covered, Ok((4, 2)), later);
        assert_eq!(
            (s.current_healthy, s.disruptions_allowed),
            (Some(3), Some(1))
        );
        assert_eq!(s.disrupted_pods, None);
    }

    #[test]
    fn an_empty_selector_covers_every_pod_and_a_failure_allows_nothing() {
        let b = budget(Some(IntOrString::Int(1)), LabelSelector::default());
        let pods = vec![pod("a", true), pod("b", true)];
        assert_eq!(covered_pods(&b, &pods).len(), 2);
        let s = status_for(
            &b,
            &pods,
            Err("found no controllers".into()),
            jiff::Timestamp::now(),
        );
        assert_eq!(s.disruptions_allowed, Some(0));
        let c = &s.conditions.as_ref().expect("conditions")[0];
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "SyncFailed")
        );
    }

    #[test]
    fn percentages_round_up() {
        assert_eq!(scaled(&IntOrString::String("50%".into()), 3), Ok(2));
        assert_eq!(scaled(&IntOrString::String("10%".into()), 10), Ok(1));
        assert_eq!(scaled(&IntOrString::String("0%".into()), 10), Ok(0));
        assert_eq!(scaled(&IntOrString::Int(4), 10), Ok(4));
        assert!(scaled(&IntOrString::String("half".into()), 10).is_err());
    }
}
