//! The horizontal pod autoscaler controller: every [`Options::sync_period`]
//! (15 s, as upstream) and whenever an HPA changes, each
//! `autoscaling/v2` HorizontalPodAutoscaler gets a recommendation from its
//! metrics, shaped by its behavior, written to its target's `scale`
//! subresource and reported in its status.
//!
//! As upstream computes it:
//!
//! - the target's `scale` gives the current replicas and the pod selector;
//!   a target scaled to zero is left alone (`ScalingDisabled`);
//! - each `Resource` (and `ContainerResource`) metric is read from
//!   `metrics.k8s.io`: with a `Utilization` target the usage over the pods'
//!   requests, with an `AverageValue` target the mean usage; the ratio to
//!   the target gives `ceil(ratio * pods)`, left as it is within the 10%
//!   tolerance. Pods without metrics count as using their request (scaling
//!   down) or nothing (scaling up), and unready pods as using nothing when
//!   scaling up, so neither makes the autoscaler overshoot. Other metric
//!   types (`Pods`, `Object`, `External`) need a custom metrics API rk does
//!   not serve and are reported as such;
//! - the highest recommendation wins, then behavior: stabilization (the
//!   highest recommendation of the scale-down window, 300 s by default; the
//!   lowest of the scale-up window, none by default), then the rate
//!   policies (scale up by at most 4 pods or 100% per 15 s, down by 100%),
//!   then `minReplicas`/`maxReplicas`;
//! - the status carries `currentReplicas`, `desiredReplicas`,
//!   `currentMetrics`, `lastScaleTime` and the `AbleToScale`,
//!   `ScalingActive` and `ScalingLimited` conditions, with upstream's
//!   reasons, and a rescale records a `SuccessfulRescale` event.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::autoscaling::v2::{
    HPAScalingPolicy, HPAScalingRules, HorizontalPodAutoscaler, HorizontalPodAutoscalerCondition,
    HorizontalPodAutoscalerStatus, MetricSpec, MetricStatus, MetricTarget, MetricValueStatus,
    ResourceMetricStatus,
};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::runtime::reflector::{self, Store, reflector};
use kube::runtime::{WatchStreamExt, watcher};
use rk_core::object::pod::is_pod_ready;
use rk_core::quantity::{Format, ParsedQuantity};
use serde_json::json;

use crate::events::Recorder;
use crate::watch::Informers;

/// Settings of the controller.
#[derive(Clone, Debug)]
pub struct Options {
    /// How often every HPA is evaluated (upstream's
    /// `--horizontal-pod-autoscaler-sync-period`, 15 s).
    pub sync_period: Duration,
    /// The ratio within which no scaling happens (10%).
    pub tolerance: f64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            sync_period: Duration::from_secs(15),
            tolerance: 0.1,
        }
    }
}

/// What is remembered of an HPA between syncs.
#[derive(Default)]
struct History {
    /// Past recommendations, for stabilization.
    recommendations: Vec<(Instant, i32)>,
    /// Past changes of the replica count (positive up), for rate policies.
    changes: Vec<(Instant, i32)>,
}

/// Run the controller with its own pod cache.
pub async fn run(client: kube::Client, options: Options) {
    let informers = Informers::new(&client);
    run_shared(client, options, informers).await
}

/// Run the controller over a controller manager's shared pod cache.
pub async fn run_shared(client: kube::Client, options: Options, informers: Informers) {
    let hpas: Api<HorizontalPodAutoscaler> = Api::all(client.clone());
    let (store, writer) = reflector::store::<HorizontalPodAutoscaler>();
    let mut events = reflector(
        writer,
        crate::watch::lean_watcher(hpas, watcher::Config::default()),
    )
    .default_backoff()
    .filter_map(|e| async move {
        match e {
            Ok(watcher::Event::Apply(h) | watcher::Event::InitApply(h)) => Some(h),
            _ => None,
        }
    })
    .boxed();
    let pods = informers.pods.store();
    let recorder = Recorder::new(client.clone(), "horizontal-pod-autoscaler");
    let mut histories: HashMap<String, History> = HashMap::new();
    // When each HPA was last evaluated: a spec change is seen at once, but
    // the controller's own status writes do not start a new round.
    let mut last_sync: HashMap<String, Instant> = HashMap::new();
    let mut tick = tokio::time::interval(options.sync_period);
    loop {
        let due: Vec<Arc<HorizontalPodAutoscaler>> = tokio::select! {
            h = events.next() => match h {
                Some(h) => {
                    let key = key_of(&h);
                    let changed_spec = h.status.as_ref().and_then(|s| s.observed_generation)
                        != h.metadata.generation;
                    let stale = last_sync
                        .get(&key)
                        .is_none_or(|t| t.elapsed() >= options.sync_period);
                    if !(changed_spec || stale) {
                        continue;
                    }
                    store.get(&reflector::ObjectRef::from_obj(&h)).into_iter().collect()
                }
                None => return,
            },
            _ = tick.tick() => store.state(),
        };
        if !informers.pods.ready().await {
            return;
        }
        let live: std::collections::HashSet<String> =
            store.state().iter().map(|h| key_of(h)).collect();
        histories.retain(|k, _| live.contains(k));
        last_sync.retain(|k, _| live.contains(k));
        for hpa in due {
            let key = key_of(&hpa);
            last_sync.insert(key.clone(), Instant::now());
            let history = histories.entry(key.clone()).or_default();
            if let Err(e) = sync(&client, &options, &hpa, &pods, history, &recorder).await {
                tracing::debug!(hpa = %key, error = %e, "autoscaler sync failed");
            }
        }
    }
}

fn key_of(hpa: &HorizontalPodAutoscaler) -> String {
    format!(
        "{}/{}",
        hpa.metadata.namespace.as_deref().unwrap_or_default(),
        hpa.metadata.name.as_deref().unwrap_or_default()
    )
}

/// A condition of the status.
fn condition(
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
) -> HorizontalPodAutoscalerCondition {
    HorizontalPodAutoscalerCondition {
        type_: type_.to_owned(),
        status: if status { "True" } else { "False" }.to_owned(),
        reason: Some(reason.to_owned()),
        message: Some(message),
        last_transition_time: None,
        observed_generation: None,
    }
}

/// Evaluate one HPA, scale its target and write its status.
async fn sync(
    client: &kube::Client,
    options: &Options,
    hpa: &HorizontalPodAutoscaler,
    pods: &Store<Pod>,
    history: &mut History,
    recorder: &Recorder,
) -> Result<(), kube::Error> {
    let ns = hpa.metadata.namespace.clone().unwrap_or_default();
    let name = hpa.metadata.name.clone().unwrap_or_default();
    let spec = &hpa.spec;
    let target = &spec.scale_target_ref;
    let old = hpa.status.clone().unwrap_or_default();
    let mut status = HorizontalPodAutoscalerStatus {
        observed_generation: hpa.metadata.generation,
        last_scale_time: old.last_scale_time.clone(),
        current_replicas: old.current_replicas,
        desired_replicas: old.desired_replicas,
        current_metrics: old.current_metrics.clone(),
        conditions: None,
    };
    let mut conditions = Vec::new();

    // The target's scale.
    let gvk = {
        let (group, version) = match target
            .api_version
            .as_deref()
            .unwrap_or("v1")
            .split_once('/')
        {
            Some((g, v)) => (g.to_owned(), v.to_owned()),
            None => (
                String::new(),
                target.api_version.clone().unwrap_or_else(|| "v1".into()),
            ),
        };
        GroupVersionKind::gvk(&group, &version, &target.kind)
    };
    let scale = match kube::discovery::pinned_kind(client, &gvk).await {
        Ok((resource, _)) => {
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &resource);
            api.get_scale(&target.name).await.map(|s| (api, s))
        }
        Err(e) => Err(e),
    };
    let (scale_api, scale) = match scale {
        Ok(s) => s,
        Err(e) => {
            conditions.push(condition(
                "AbleToScale",
                false,
                "FailedGetScale",
                format!("the HPA controller was unable to get the target's current scale: {e}"),
            ));
            return write_status(client, hpa, status, conditions, &old).await;
        }
    };
    let current = scale.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
    status.current_replicas = Some(current);
    let selector = scale
        .status
        .as_ref()
        .and_then(|s| s.selector.clone())
        .unwrap_or_default();
    let min = spec.min_replicas.unwrap_or(1);
    let max = spec.max_replicas;

    if current == 0 && min != 0 {
        status.desired_replicas = 0;
        conditions.push(condition(
            "AbleToScale",
            true,
            "SucceededGetScale",
            "the HPA controller was able to get the target's current scale".into(),
        ));
        conditions.push(condition(
            "ScalingActive",
            false,
            "ScalingDisabled",
            "scaling is disabled since the replica count of the target is zero".into(),
        ));
        return write_status(client, hpa, status, conditions, &old).await;
    }

    // One recommendation per metric; the highest wins.
    let selected: Vec<Arc<Pod>> = match selector.parse::<rk_core::labels::Selector>() {
        Ok(sel) if !selector.is_empty() => {
            let empty = Default::default();
            pods.state()
                .into_iter()
                .filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()))
                .filter(|p| sel.matches(p.metadata.labels.as_ref().unwrap_or(&empty)))
                .collect()
        }
        _ => Vec::new(),
    };
    let usage = pod_usage(client, &ns, &selector).await;
    let metrics = spec.metrics.clone().unwrap_or_else(|| {
        // autoscaling/v2 leaves an HPA without metrics at 80% CPU.
        vec![MetricSpec {
            type_: "Resource".into(),
            resource: Some(k8s_openapi::api::autoscaling::v2::ResourceMetricSource {
                name: "cpu".into(),
                target: MetricTarget {
                    type_: "Utilization".into(),
                    average_utilization: Some(80),
                    ..MetricTarget::default()
                },
            }),
            ..MetricSpec::default()
        }]
    });
    let mut proposal: Option<(i32, String)> = None;
    let mut statuses = Vec::new();
    let mut failure: Option<(String, String)> = None;
    for metric in &metrics {
        let (resource, container, target) = match (&metric.resource, &metric.container_resource) {
            (Some(r), _) if metric.type_ == "Resource" => (r.name.clone(), None, r.target.clone()),
            (_, Some(c)) if metric.type_ == "ContainerResource" => {
                (c.name.clone(), Some(c.container.clone()), c.target.clone())
            }
            _ => {
                failure = Some((
                    "FailedGetExternalMetric".into(),
                    format!(
                        "the HPA was unable to compute the replica count: metric type {:?} needs a custom or external metrics API, which is not served",
                        metric.type_
                    ),
                ));
                continue;
            }
        };
        match replicas_for(
            &resource,
            container.as_deref(),
            &target,
            current,
            &selected,
            &usage,
            options.tolerance,
        ) {
            Ok((replicas, value)) => {
                let what = match target.type_.as_str() {
                    "Utilization" => {
                        format!("{resource} resource utilization (percentage of request)")
                    }
                    _ => format!("{resource} resource"),
                };
                statuses.push(MetricStatus {
                    type_: metric.type_.clone(),
                    resource: container.is_none().then(|| ResourceMetricStatus {
                        name: resource.clone(),
                        current: value.clone(),
                    }),
                    container_resource: container.as_ref().map(|c| {
                        k8s_openapi::api::autoscaling::v2::ContainerResourceMetricStatus {
                            container: c.clone(),
                            name: resource.clone(),
                            current: value.clone(),
                        }
                    }),
                    ..MetricStatus::default()
                });
                if proposal.as_ref().is_none_or(|(r, _)| replicas > *r) {
                    proposal = Some((replicas, what));
                }
            }
            Err(message) => {
                failure = Some((
                    "FailedGetResourceMetric".into(),
                    format!("the HPA was unable to compute the replica count: {message}"),
                ));
            }
        }
    }
    conditions.push(condition(
        "AbleToScale",
        true,
        "SucceededGetScale",
        "the HPA controller was able to get the target's current scale".into(),
    ));
    let Some((recommended, reason)) = proposal else {
        let (reason, message) = failure.unwrap_or_else(|| {
            (
                "FailedGetResourceMetric".into(),
                "the HPA was unable to compute the replica count: no metrics".into(),
            )
        });
        conditions.push(condition("ScalingActive", false, &reason, message));
        return write_status(client, hpa, status, conditions, &old).await;
    };
    status.current_metrics = Some(statuses);
    conditions.push(condition(
        "ScalingActive",
        true,
        "ValidMetricFound",
        format!("the HPA was able to successfully calculate a replica count from {reason}"),
    ));

    // Behavior: stabilization, rate policies, bounds.
    let now = Instant::now();
    let behavior = spec.behavior.clone().unwrap_or_default();
    let up = behavior.scale_up.unwrap_or_default();
    let down = behavior.scale_down.unwrap_or_default();
    let stabilized = stabilize(history, now, current, recommended, &up, &down);
    let (desired, limited) = limit(history, now, current, stabilized, min, max, &up, &down);
    if let Some((reason, message)) = limited {
        conditions.push(condition("ScalingLimited", true, reason, message));
    } else {
        conditions.push(condition(
            "ScalingLimited",
            false,
            "DesiredWithinRange",
            "the desired count is within the acceptable range".into(),
        ));
    }
    status.desired_replicas = desired;
    if desired != current {
        let patch = json!({"spec": {"replicas": desired}});
        if let Err(e) = scale_api
            .patch_scale(&target.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            conditions[0] = condition(
                "AbleToScale",
                false,
                "FailedUpdateScale",
                format!("the HPA controller was unable to update the target scale: {e}"),
            );
            return write_status(client, hpa, status, conditions, &old).await;
        }
        history.changes.push((now, desired - current));
        status.last_scale_time = Some(Time(jiff::Timestamp::now()));
        let direction = if desired > current { "above" } else { "below" };
        recorder
            .record(
                "autoscaling/v2",
                "HorizontalPodAutoscaler",
                &hpa.metadata,
                "Normal",
                "SuccessfulRescale",
                &format!("New size: {desired}; reason: {reason} {direction} target"),
            )
            .await;
        tracing::info!(hpa = %format!("{ns}/{name}"), from = current, to = desired, "rescaled");
        conditions[0] = condition(
            "AbleToScale",
            true,
            "SucceededRescale",
            format!("the HPA controller was able to update the target scale to {desired}"),
        );
    } else {
        conditions[0] = condition(
            "AbleToScale",
            true,
            "ReadyForNewScale",
            "recommended size matches current size".into(),
        );
    }
    write_status(client, hpa, status, conditions, &old).await
}

/// Write the status (transition times kept for unchanged conditions).
async fn write_status(
    client: &kube::Client,
    hpa: &HorizontalPodAutoscaler,
    mut status: HorizontalPodAutoscalerStatus,
    mut conditions: Vec<HorizontalPodAutoscalerCondition>,
    old: &HorizontalPodAutoscalerStatus,
) -> Result<(), kube::Error> {
    let now = Time(jiff::Timestamp::now());
    for c in &mut conditions {
        let before = old
            .conditions
            .iter()
            .flatten()
            .find(|o| o.type_ == c.type_ && o.status == c.status);
        c.last_transition_time = Some(
            before
                .and_then(|o| o.last_transition_time.clone())
                .unwrap_or_else(|| now.clone()),
        );
    }
    status.conditions = Some(conditions);
    if hpa.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let api: Api<HorizontalPodAutoscaler> = Api::namespaced(
        client.clone(),
        hpa.metadata.namespace.as_deref().unwrap_or_default(),
    );
    let mut updated = hpa.clone();
    updated.status = Some(status);
    match api
        .replace_status(
            hpa.metadata.name.as_deref().unwrap_or_default(),
            &PostParams::default(),
            &updated,
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Usage by pod name and container: `(resource -> value)` in the unit of
/// [`ParsedQuantity::milli_value`] for CPU and bytes for memory, as
/// `metrics.k8s.io` reports it for the selected pods.
type PodUsage = HashMap<String, HashMap<String, HashMap<String, ParsedQuantity>>>;

async fn pod_usage(client: &kube::Client, ns: &str, selector: &str) -> PodUsage {
    let resource = ApiResource {
        group: "metrics.k8s.io".into(),
        version: "v1beta1".into(),
        api_version: "metrics.k8s.io/v1beta1".into(),
        kind: "PodMetrics".into(),
        plural: "pods".into(),
    };
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource);
    let mut out = PodUsage::new();
    let Ok(list) = api.list(&ListParams::default().labels(selector)).await else {
        return out;
    };
    for item in list.items {
        let pod = item.metadata.name.clone().unwrap_or_default();
        let containers = out.entry(pod).or_default();
        for c in item.data["containers"].as_array().into_iter().flatten() {
            let name = c["name"].as_str().unwrap_or_default().to_owned();
            let usage = containers.entry(name).or_default();
            for (resource, value) in c["usage"].as_object().into_iter().flatten() {
                if let Some(q) = value
                    .as_str()
                    .and_then(|v| v.parse::<ParsedQuantity>().ok())
                {
                    usage.insert(resource.clone(), q);
                }
            }
        }
    }
    out
}

/// A quantity in milli-units (CPU millicores, memory millibytes: only
/// ratios and sums are taken).
fn milli(q: &ParsedQuantity) -> i64 {
    q.milli_value()
}

/// The pod's request of `resource` (its `container`'s only, when given).
fn request_of(pod: &Pod, resource: &str, container: Option<&str>) -> Result<i64, String> {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let mut total = 0i64;
    for c in pod.spec.iter().flat_map(|s| s.containers.iter()) {
        if container.is_some_and(|want| want != c.name) {
            continue;
        }
        let request = c
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get(resource))
            .and_then(|q| ParsedQuantity::try_from(q).ok());
        match request {
            Some(q) => total += milli(&q),
            None => {
                return Err(format!(
                    "failed to get {resource} utilization: missing request for {resource} in container {} of Pod {name}",
                    c.name
                ));
            }
        }
    }
    Ok(total)
}

/// The replica count one resource metric asks for, and its current value.
fn replicas_for(
    resource: &str,
    container: Option<&str>,
    target: &MetricTarget,
    current: i32,
    pods: &[Arc<Pod>],
    usage: &PodUsage,
    tolerance: f64,
) -> Result<(i32, MetricValueStatus), String> {
    // Pods that count: not being deleted, not failed.
    let pods: Vec<&Arc<Pod>> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Failed"))
        .collect();
    if pods.is_empty() {
        return Err(format!(
            "failed to get {resource} utilization: no pods match the selector"
        ));
    }
    // (name -> usage, request) of pods with metrics; the rest.
    let mut measured: HashMap<String, (i64, i64)> = HashMap::new();
    let mut missing: Vec<String> = Vec::new();
    let mut unready: Vec<String> = Vec::new();
    let utilization = target.type_ == "Utilization";
    for pod in &pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let request = if utilization {
            request_of(pod, resource, container)?
        } else {
            0
        };
        let used: Option<i64> = usage.get(&name).map(|containers| {
            containers
                .iter()
                .filter(|(c, _)| container.is_none_or(|want| want == c.as_str()))
                .filter_map(|(_, u)| u.get(resource).map(milli))
                .sum()
        });
        match used {
            None => {
                missing.push(name.clone());
                measured.insert(name, (0, request));
            }
            Some(_) if resource == "cpu" && !is_pod_ready(pod) => {
                unready.push(name.clone());
                measured.insert(name, (0, request));
            }
            Some(u) => {
                measured.insert(name, (u, request));
            }
        }
    }
    let target_value = |total_used: i64, total_request: i64, count: usize| -> f64 {
        if utilization {
            let target = f64::from(target.average_utilization.unwrap_or(80).max(1));
            (total_used as f64 * 100.0 / total_request.max(1) as f64) / target
        } else {
            let want = target
                .average_value
                .as_ref()
                .and_then(|q| ParsedQuantity::try_from(q).ok())
                .map(|q| milli(&q))
                .unwrap_or(1)
                .max(1);
            (total_used as f64 / count.max(1) as f64) / want as f64
        }
    };
    let ready: Vec<&String> = measured
        .keys()
        .filter(|n| !missing.contains(n) && !unready.contains(n))
        .collect();
    if ready.is_empty() {
        return Err(format!(
            "failed to get {resource} utilization: unable to get metrics for resource {resource}: no metrics returned from resource metrics API"
        ));
    }
    let sums = |names: &[&String], adjusted: &HashMap<String, (i64, i64)>| {
        names.iter().fold((0i64, 0i64), |(u, r), n| {
            let (pu, pr) = adjusted.get(*n).copied().unwrap_or((0, 0));
            (u + pu, r + pr)
        })
    };
    let (used, requested) = sums(&ready, &measured);
    let ratio = target_value(used, requested, ready.len());
    let value = if utilization {
        MetricValueStatus {
            average_utilization: Some(
                (used as f64 * 100.0 / requested.max(1) as f64).round() as i32
            ),
            average_value: Some(quantity_of(resource, used / ready.len().max(1) as i64)),
            value: None,
        }
    } else {
        MetricValueStatus {
            average_value: Some(quantity_of(resource, used / ready.len().max(1) as i64)),
            ..MetricValueStatus::default()
        }
    };
    let scale_up_with_unready = !unready.is_empty() && ratio > 1.0;
    if !scale_up_with_unready && missing.is_empty() {
        if (1.0 - ratio).abs() <= tolerance {
            return Ok((current, value));
        }
        return Ok(((ratio * ready.len() as f64).ceil() as i32, value));
    }
    // Fill in the pods without figures so they hold the decision back.
    let mut adjusted = measured.clone();
    for name in &missing {
        if let Some(e) = adjusted.get_mut(name) {
            e.0 = if ratio < 1.0 {
                if utilization {
                    e.1
                } else {
                    target
                        .average_value
                        .as_ref()
                        .and_then(|q| ParsedQuantity::try_from(q).ok())
                        .map(|q| milli(&q))
                        .unwrap_or(0)
                }
            } else {
                0
            };
        }
    }
    let mut names: Vec<&String> = ready.clone();
    names.extend(missing.iter());
    if scale_up_with_unready {
        names.extend(unready.iter());
    }
    let (used, requested) = sums(&names, &adjusted);
    let new_ratio = target_value(used, requested, names.len());
    if (1.0 - new_ratio).abs() <= tolerance
        || (ratio < 1.0 && new_ratio > 1.0)
        || (ratio > 1.0 && new_ratio < 1.0)
    {
        return Ok((current, value));
    }
    let replicas = (new_ratio * names.len() as f64).ceil() as i32;
    if (new_ratio < 1.0 && replicas > current) || (new_ratio > 1.0 && replicas < current) {
        return Ok((current, value));
    }
    Ok((replicas, value))
}

fn quantity_of(resource: &str, milli: i64) -> Quantity {
    let q = if resource == "cpu" {
        ParsedQuantity::from_milli(milli)
    } else {
        ParsedQuantity::new(milli / 1000, Format::BinarySI)
    };
    Quantity::from(q)
}

/// Stabilization: the recommendation, held back by the scale-up window's
/// lowest and the scale-down window's highest past recommendations.
fn stabilize(
    history: &mut History,
    now: Instant,
    current: i32,
    recommended: i32,
    up: &HPAScalingRules,
    down: &HPAScalingRules,
) -> i32 {
    let up_window = Duration::from_secs(up.stabilization_window_seconds.unwrap_or(0).max(0) as u64);
    let down_window =
        Duration::from_secs(down.stabilization_window_seconds.unwrap_or(300).max(0) as u64);
    let mut up_rec = recommended;
    let mut down_rec = recommended;
    for (at, r) in &history.recommendations {
        let age = now.saturating_duration_since(*at);
        if age < up_window {
            up_rec = up_rec.min(*r);
        }
        if age < down_window {
            down_rec = down_rec.max(*r);
        }
    }
    let keep = up_window.max(down_window);
    history
        .recommendations
        .retain(|(at, _)| now.saturating_duration_since(*at) < keep);
    history.recommendations.push((now, recommended));
    current.max(up_rec).min(down_rec)
}

fn default_policies(scale_up: bool) -> Vec<HPAScalingPolicy> {
    if scale_up {
        vec![
            HPAScalingPolicy {
                type_: "Pods".into(),
                value: 4,
                period_seconds: 15,
            },
            HPAScalingPolicy {
                type_: "Percent".into(),
                value: 100,
                period_seconds: 15,
            },
        ]
    } else {
        vec![HPAScalingPolicy {
            type_: "Percent".into(),
            value: 100,
            period_seconds: 15,
        }]
    }
}

/// Apply the rate policies and the bounds; also why the count was
/// limited, if it was.
#[allow(clippy::too_many_arguments)]
fn limit(
    history: &mut History,
    now: Instant,
    current: i32,
    desired: i32,
    min: i32,
    max: i32,
    up: &HPAScalingRules,
    down: &HPAScalingRules,
) -> (i32, Option<(&'static str, String)>) {
    let longest = up
        .policies
        .iter()
        .chain(down.policies.iter())
        .flatten()
        .map(|p| p.period_seconds)
        .max()
        .unwrap_or(15)
        .max(15);
    history
        .changes
        .retain(|(at, _)| now.saturating_duration_since(*at) < Duration::from_secs(longest as u64));
    let changed_in = |period: i32, up: bool| -> i32 {
        history
            .changes
            .iter()
            .filter(|(at, _)| {
                now.saturating_duration_since(*at) < Duration::from_secs(period.max(0) as u64)
            })
            .filter(|(_, c)| (*c > 0) == up)
            .map(|(_, c)| c.abs())
            .sum()
    };
    let mut out = desired;
    if desired > current {
        let policies = up
            .policies
            .clone()
            .unwrap_or_else(|| default_policies(true));
        let select = up.select_policy.as_deref().unwrap_or("Max");
        let limits: Vec<i32> = policies
            .iter()
            .map(|p| {
                let start = current - changed_in(p.period_seconds, true);
                match p.type_.as_str() {
                    "Pods" => start + p.value,
                    _ => (f64::from(start) * (1.0 + f64::from(p.value) / 100.0)).ceil() as i32,
                }
            })
            .collect();
        let rate_limit = match select {
            "Disabled" => current,
            "Min" => limits.iter().copied().min().unwrap_or(current),
            _ => limits.iter().copied().max().unwrap_or(current),
        };
        out = out.min(rate_limit.max(current));
    } else if desired < current {
        let policies = down
            .policies
            .clone()
            .unwrap_or_else(|| default_policies(false));
        let select = down.select_policy.as_deref().unwrap_or("Max");
        let limits: Vec<i32> = policies
            .iter()
            .map(|p| {
                let start = current + changed_in(p.period_seconds, false);
                match p.type_.as_str() {
                    "Pods" => start - p.value,
                    _ => (f64::from(start) * (1.0 - f64::from(p.value) / 100.0)).floor() as i32,
                }
            })
            .collect();
        let rate_limit = match select {
            "Disabled" => current,
            "Min" => limits.iter().copied().max().unwrap_or(current),
            _ => limits.iter().copied().min().unwrap_or(current),
        };
        out = out.max(rate_limit.min(current));
    }
    if out > max {
        return (
            max,
            Some((
                "TooManyReplicas",
                "the desired replica count is more than the maximum replica count".into(),
            )),
        );
    }
    if out < min {
        return (
            min,
            Some((
                "TooFewReplicas",
                "the desired replica count is less than the minimum replica count".into(),
            )),
        );
    }
    (out, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Container, PodCondition, PodSpec, PodStatus, ResourceRequirements,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(name: &str, request: &str, ready: bool) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    resources: Some(ResourceRequirements {
                        requests: Some([("cpu".to_string(), Quantity(request.into()))].into()),
                        ..ResourceRequirements::default()
                    }),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
            status: Some(PodStatus {
                phase: Some("Running".into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..PodCondition::default()
                }]),
                ..PodStatus::default()
            }),
        })
    }

    fn using(entries: &[(&str, &str)]) -> PodUsage {
        entries
            .iter()
            .map(|(pod, cpu)| {
                let c: HashMap<String, ParsedQuantity> =
                    [("cpu".to_string(), cpu.parse().expect("quantity"))].into();
                (pod.to_string(), [("c".to_string(), c)].into())
            })
            .collect()
    }

    fn cpu_target(pct: i32) -> MetricTarget {
        MetricTarget {
            type_: "Utilization".into(),
            average_utilization: Some(pct),
            ..MetricTarget::default()
        }
    }

    #[test]
    fn utilization_over_target_scales_by_the_ratio() {
        let pods = vec![pod("a", "100m", true), pod("b", "100m", true)];
        let usage = using(&[("a", "150m"), ("b", "150m")]);
        let (n, value) = replicas_for("cpu", None, &cpu_target(50), 2, &pods, &usage, 0.1).unwrap();
        assert_eq!(n, 6);
        assert_eq!(value.average_utilization, Some(150));
        // Within the tolerance: unchanged.
        let usage = using(&[("a", "52m"), ("b", "52m")]);
        assert_eq!(
            replicas_for("cpu", None, &cpu_target(50), 2, &pods, &usage, 0.1)
                .unwrap()
                .0,
            2
        );
        // Below: down by the ratio.
        let usage = using(&[("a", "10m"), ("b", "10m")]);
        assert_eq!(
            replicas_for("cpu", None, &cpu_target(50), 2, &pods, &usage, 0.1)
                .unwrap()
                .0,
            1
        );
    }

    #[test]
    fn missing_and_unready_pods_hold_the_decision_back() {
        // Scaling down, a pod without metrics counts at its request.
        let pods = vec![pod("a", "100m", true), pod("b", "100m", true)];
        let usage = using(&[("a", "10m")]);
        let (n, _) = replicas_for("cpu", None, &cpu_target(50), 2, &pods, &usage, 0.1).unwrap();
        assert_eq!(n, 2);
        // Scaling up, an unready pod counts as using nothing.
        let pods = vec![pod("a", "100m", true), pod("b", "100m", false)];
        let usage = using(&[("a", "100m"), ("b", "100m")]);
        let (n, _) = replicas_for("cpu", None, &cpu_target(50), 2, &pods, &usage, 0.1).unwrap();
        assert_eq!(n, 2);
        // No request: an error naming the container.
        let pods = [pod("a", "100m", true)];
        let mut bare = (*pods[0]).clone();
        bare.spec.as_mut().unwrap().containers[0].resources = None;
        let err = replicas_for(
            "cpu",
            None,
            &cpu_target(50),
            1,
            &[Arc::new(bare)],
            &usage,
            0.1,
        )
        .unwrap_err();
        assert!(
            err.contains("missing request for cpu in container c"),
            "{err}"
        );
    }

    #[test]
    fn behavior_limits_the_rate_and_holds_scale_down() {
        let mut h = History::default();
        let now = Instant::now();
        let up = HPAScalingRules::default();
        let down = HPAScalingRules::default();
        // Up from 1 to 10: at most max(1 + 4, 2 * 1) = 5 at once.
        assert_eq!(limit(&mut h, now, 1, 10, 1, 20, &up, &down).0, 5);
        // Bounded by maxReplicas, and said so.
        let (n, why) = limit(&mut h, now, 4, 10, 1, 6, &up, &down);
        assert_eq!(n, 6);
        assert_eq!(why.map(|w| w.0), Some("TooManyReplicas"));
        // The scale-down window keeps the highest recent recommendation.
        assert_eq!(stabilize(&mut h, now, 6, 6, &up, &down), 6);
        assert_eq!(
            stabilize(&mut h, now + Duration::from_secs(30), 6, 2, &up, &down),
            6
        );
        let zero = HPAScalingRules {
            stabilization_window_seconds: Some(0),
            ..HPAScalingRules::default()
        };
        assert_eq!(
            stabilize(&mut h, now + Duration::from_secs(31), 6, 2, &up, &zero),
            2
        );
    }
}
