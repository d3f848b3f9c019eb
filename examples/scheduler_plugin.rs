//! A custom scheduler plugin: a second scheduler, `example-scheduler`, with
//! the default plugins plus one of its own that filters out nodes labelled
//! `example.rk.dev/avoid=true` and prefers the nodes running the fewest
//! pods. Pods choose it with `spec.schedulerName: example-scheduler`; the
//! cluster's own scheduler keeps scheduling every other pod.
//!
//! Shows: the `Plugin`, `FilterPlugin` and `ScorePlugin` traits, building a
//! `Framework` profile, `scheduler::run_profiles`.
//!
//! ```sh
//! export KUBECONFIG=$PWD/rk-data/kubeconfig
//! cargo run --example scheduler_plugin &
//! kubectl run demo --image=busybox --overrides='{"spec":{"schedulerName":"example-scheduler"}}' -- sleep 3600
//! kubectl get pod demo -o wide
//! kubectl label node rk-node-0 example.rk.dev/avoid=true
//! kubectl run demo2 --image=busybox --overrides='{"spec":{"schedulerName":"example-scheduler"}}' -- sleep 3600
//! kubectl describe pod demo2   # Pending: node is labelled example.rk.dev/avoid=true
//! ```

use std::sync::Arc;

use rk::controllers::scheduler::config::SchedulerConfiguration;
use rk::controllers::scheduler::framework::{
    CycleState, FilterPlugin, Handle, NodeScore, Plugin, ScorePlugin, Status,
};
use rk::controllers::scheduler::plugins::default_normalize;
use rk::controllers::scheduler::types::{NodeInfo, PodInfo};
use rk::controllers::scheduler::{self, Metrics};

const AVOID: &str = "example.rk.dev/avoid";

// ANCHOR: plugin
/// Skips nodes labelled `example.rk.dev/avoid=true`; favours emptier nodes.
/// (A label, not an annotation: the scheduler refreshes its copy of a node
/// when its labels, spec or allocatable resources change.)
struct QuietNodes;

impl Plugin for QuietNodes {
    fn name(&self) -> &'static str {
        "QuietNodes"
    }
    fn as_filter(&self) -> Option<&dyn FilterPlugin> {
        Some(self)
    }
    fn as_score(&self) -> Option<&dyn ScorePlugin> {
        Some(self)
    }
}

impl FilterPlugin for QuietNodes {
    fn filter(&self, _state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Status {
        let avoid = node
            .node
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(AVOID));
        if avoid.is_some_and(|v| v == "true") {
            return Status::unschedulable("node is labelled example.rk.dev/avoid=true");
        }
        Status::success()
    }
}

impl ScorePlugin for QuietNodes {
    fn score(&self, _state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        Ok(i64::try_from(node.pods.len()).unwrap_or(i64::MAX))
    }
    fn normalize(&self, _state: &CycleState, _pod: &PodInfo, scores: &mut [NodeScore]) {
        default_normalize(scores, true); // fewer pods, higher score
    }
}
// ANCHOR_END: plugin

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let client = kube::Client::try_default().await?;
    // ANCHOR: profile
    let handle = Handle::new(Some(client.clone()));
    let config = SchedulerConfiguration::default();
    let mut profiles = Vec::new();
    for mut framework in config.build(&handle)? {
        framework.scheduler_name = "example-scheduler".into();
        framework.add_plugin(Arc::new(QuietNodes), 2);
        profiles.push(Arc::new(framework));
    }
    let metrics = Arc::new(Metrics::default());
    scheduler::run_profiles(client, handle, profiles, config.percentage(), metrics, true).await?;
    // ANCHOR_END: profile
    Ok(())
}
