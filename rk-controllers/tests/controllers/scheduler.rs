//! The scheduler against an in-process API server: nodes and pods are
//! created directly, the scheduler binds, and the tests read the results
//! back through the API.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Container, Event, Node, NodeSpec, NodeStatus, Pod, PodSpec, ResourceRequirements, Taint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ListParams, PostParams};
use rk_apiserver::test_server::TestServer;
use rk_controllers::scheduler::{self, Options};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn quantities(pairs: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned())))
        .collect()
}

fn node(name: &str, cpu: &str, taints: Vec<Taint>) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some([("kubernetes.io/hostname".to_owned(), name.to_owned())].into()),
            ..ObjectMeta::default()
        },
        spec: Some(NodeSpec {
            taints: (!taints.is_empty()).then_some(taints),
            ..NodeSpec::default()
        }),
        status: Some(NodeStatus {
            capacity: Some(quantities(&[
                ("cpu", cpu),
                ("memory", "32Gi"),
                ("pods", "110"),
            ])),
            allocatable: Some(quantities(&[
                ("cpu", cpu),
                ("memory", "32Gi"),
                ("pods", "110"),
            ])),
            ..NodeStatus::default()
        }),
    }
}

fn pod(name: &str, cpu: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "c".into(),
                image: Some("registry.k8s.io/pause:3.10".into()),
                resources: Some(ResourceRequirements {
                    requests: Some(quantities(&[("cpu", cpu), ("memory", "100Mi")])),
                    ..ResourceRequirements::default()
                }),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        status: None,
    }
}

fn taint(key: &str, value: &str) -> Taint {
    Taint {
        key: key.into(),
        value: Some(value.into()),
        effect: "NoSchedule".into(),
        time_added: None,
    }
}

struct Cluster {
    _server: TestServer,
    nodes: Api<Node>,
    pods: Api<Pod>,
    events: Api<Event>,
    scheduler: tokio::task::JoinHandle<()>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.scheduler.abort();
    }
}

async fn cluster() -> Result<Cluster, Box<dyn std::error::Error>> {
    let server = crate::support::test_server().await?;
    let client = server.client();
    let scheduler = tokio::spawn({
        let client = client.clone();
        async move {
            if let Err(e) = scheduler::run(client, Options::default()).await {
                eprintln!("scheduler stopped: {e}");
            }
        }
    });
    Ok(Cluster {
        nodes: Api::all(client.clone()),
        pods: Api::namespaced(client.clone(), "default"),
        events: Api::namespaced(client, "default"),
        _server: server,
        scheduler,
    })
}

impl Cluster {
    async fn add_node(&self, n: Node) -> TestResult {
        self.nodes.create(&PostParams::default(), &n).await?;
        Ok(())
    }

    async fn add_pod(&self, p: Pod) -> TestResult {
        self.pods.create(&PostParams::default(), &p).await?;
        Ok(())
    }

    /// Polls the pod until `check` holds (10 s at most).
    async fn wait_pod(
        &self,
        name: &str,
        what: &str,
        check: impl Fn(&Pod) -> bool,
    ) -> Result<Pod, Box<dyn std::error::Error>> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let p = self.pods.get_opt(name).await?;
            if let Some(p) = p {
                if check(&p) {
                    return Ok(p);
                }
                if tokio::time::Instant::now() > deadline {
                    return Err(format!(
                        "pod {name}: timed out waiting for {what}; last: {:?}",
                        p.status
                    )
                    .into());
                }
            } else if tokio::time::Instant::now() > deadline {
                return Err(format!("pod {name} is gone while waiting for {what}").into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn wait_bound(&self, name: &str) -> Result<String, Box<dyn std::error::Error>> {
        let p = self
            .wait_pod(name, "a node", |p| node_name(p).is_some())
            .await?;
        Ok(node_name(&p).unwrap_or_default())
    }

    async fn wait_unschedulable(&self, name: &str) -> Result<String, Box<dyn std::error::Error>> {
        let p = self
            .wait_pod(name, "PodScheduled=False", |p| {
                scheduled_condition(p).is_some()
            })
            .await?;
        Ok(scheduled_condition(&p).unwrap_or_default())
    }
}

fn node_name(p: &Pod) -> Option<String> {
    p.spec.as_ref()?.node_name.clone().filter(|n| !n.is_empty())
}

fn scheduled_condition(p: &Pod) -> Option<String> {
    let c = p
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False")?;
    (c.reason.as_deref() == Some("Unschedulable")).then(|| c.message.clone().unwrap_or_default())
}

#[tokio::test]
async fn a_pod_is_bound_to_the_node_with_room() -> TestResult {
    let c = cluster().await?;
    c.add_node(node("small", "1", vec![])).await?;
    c.add_node(node("big", "8", vec![])).await?;
    c.add_pod(pod("web", "2")).await?;
    assert_eq!(c.wait_bound("web").await?, "big");
    let bound = c.pods.get("web").await?;
    let conditions = bound.status.and_then(|s| s.conditions).unwrap_or_default();
    assert!(
        conditions
            .iter()
            .any(|c| c.type_ == "PodScheduled" && c.status == "True")
    );
    Ok(())
}

#[tokio::test]
async fn least_allocated_spreads_pods_over_equal_nodes() -> TestResult {
    let c = cluster().await?;
    c.add_node(node("a", "4", vec![])).await?;
    c.add_node(node("b", "4", vec![])).await?;
    for i in 0..4 {
        c.add_pod(pod(&format!("p{i}"), "1")).await?;
    }
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..4 {
        *per_node
            .entry(c.wait_bound(&format!("p{i}")).await?)
            .or_default() += 1;
    }
    assert_eq!(per_node.values().copied().collect::<Vec<_>>(), [2, 2]);
    Ok(())
}

#[tokio::test]
async fn an_unschedulable_pod_is_scheduled_after_a_node_appears() -> TestResult {
    let c = cluster().await?;
    c.add_node(node("small", "1", vec![])).await?;
    c.add_pod(pod("big-job", "4")).await?;
    let message = c.wait_unschedulable("big-job").await?;
    assert!(
        message.starts_with("0/1 nodes are available: 1 Insufficient cpu."),
        "{message}"
    );
    c.add_node(node("large", "8", vec![])).await?;
    assert_eq!(c.wait_bound("big-job").await?, "large");
    Ok(())
}

#[tokio::test]
async fn failed_scheduling_has_upstreams_message_and_event() -> TestResult {
    let c = cluster().await?;
    c.add_node(node("small", "1", vec![])).await?;
    c.add_node(node("gpu-1", "8", vec![taint("dedicated", "gpu")]))
        .await?;
    c.add_node(node("gpu-2", "8", vec![taint("dedicated", "gpu")]))
        .await?;
    c.add_pod(pod("web", "2")).await?;
    let message = c.wait_unschedulable("web").await?;
    assert_eq!(
        message,
        "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint {dedicated: gpu}. \
         preemption: 0/3 nodes are available: 1 No preemption victims found for incoming pod, \
         2 Preemption is not helpful for scheduling."
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let events = c.events.list(&ListParams::default()).await?;
        let found = events.items.iter().any(|e| {
            e.reason.as_deref() == Some("FailedScheduling")
                && e.type_.as_deref() == Some("Warning")
                && e.involved_object.name.as_deref() == Some("web")
                && e.message.as_deref() == Some(message.as_str())
        });
        if found {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no FailedScheduling event"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

#[tokio::test]
async fn pods_for_another_scheduler_are_left_alone() -> TestResult {
    let c = cluster().await?;
    c.add_node(node("n1", "4", vec![])).await?;
    let mut other = pod("other", "1");
    if let Some(spec) = other.spec.as_mut() {
        spec.scheduler_name = Some("someone-else".into());
    }
    c.add_pod(other).await?;
    c.add_pod(pod("mine", "1")).await?;
    assert_eq!(c.wait_bound("mine").await?, "n1");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let other = c.pods.get("other").await?;
    assert_eq!(node_name(&other), None);
    Ok(())
}

#[tokio::test]
async fn a_high_priority_pod_preempts_a_lower_priority_one() -> TestResult {
    let c = cluster().await?;
    c.add_node(node("only", "1", vec![])).await?;
    // Priority comes from a PriorityClass, as the API server's priority
    // admission gives it (a pod may not state its own).
    let classes: Api<k8s_openapi::api::scheduling::v1::PriorityClass> =
        Api::all(c._server.client());
    let class = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "high"}, "value": 1000
    }))?;
    classes.create(&Default::default(), &class).await?;
    let mut low = pod("low", "800m");
    if let Some(spec) = low.spec.as_mut() {
        // no kubelet here: let the deletion finish at once
        spec.termination_grace_period_seconds = Some(0);
    }
    c.add_pod(low).await?;
    assert_eq!(c.wait_bound("low").await?, "only");
    let mut high = pod("high", "500m");
    if let Some(spec) = high.spec.as_mut() {
        spec.priority_class_name = Some("high".into());
    }
    c.add_pod(high).await?;
    let nominated = c
        .wait_pod("high", "a nominated node or a node", |p| {
            node_name(p).is_some()
                || p.status
                    .as_ref()
                    .and_then(|s| s.nominated_node_name.as_deref())
                    == Some("only")
        })
        .await?;
    assert!(node_name(&nominated).is_some() || nominated.status.is_some());
    assert_eq!(c.wait_bound("high").await?, "only");
    // the victim is gone (or going)
    let low = c.pods.get_opt("low").await?;
    assert!(low.is_none_or(|p| p.metadata.deletion_timestamp.is_some()));
    Ok(())
}
