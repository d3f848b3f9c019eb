//! The Job and TTL-after-finished controllers on a `TestServer`. There is no
//! kubelet: pods stay Pending until a test marks them Running, Succeeded or
//! Failed through the status subresource.

use crate::support::eventually;

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use rk_apiserver::TestServer;
use rk_controllers::controllers::job::{self, Config};
use serde_json::{Value, json};

const FINALIZER: &str = "batch.kubernetes.io/job-tracking";
const INDEX: &str = "batch.kubernetes.io/job-completion-index";

struct Env {
    _server: TestServer,
    client: kube::Client,
    jobs: Api<Job>,
    pods: Api<Pod>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Env {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// A server with the Job controller (quick back-off unless `base` says
/// otherwise).
async fn env_with(base: Duration) -> Env {
    let server = crate::support::test_server().await.unwrap();
    let client = server.client();
    let config = Config {
        backoff_base: base,
        backoff_max: base * 4,
    };
    let tasks = vec![tokio::spawn(job::run_with(client.clone(), 2, config))];
    Env {
        jobs: Api::namespaced(client.clone(), "default"),
        pods: Api::namespaced(client.clone(), "default"),
        client,
        _server: server,
        tasks,
    }
}

async fn env() -> Env {
    env_with(Duration::from_millis(100)).await
}

fn job_spec(name: &str, spec: Value) -> Job {
    let mut body = json!({
        "metadata": {"name": name},
        "spec": {
            "template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "main", "image": "busybox"}]}}
        }
    });
    if let (Some(base), Some(extra)) = (body["spec"].as_object_mut(), spec.as_object()) {
        for (k, v) in extra {
            base.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(body).unwrap()
}

async fn create(env: &Env, name: &str, spec: Value) -> Job {
    env.jobs
        .create(&PostParams::default(), &job_spec(name, spec))
        .await
        .unwrap()
}

/// The job's pods that are neither finished nor being deleted, by name.
async fn active_pods(env: &Env, job: &str) -> Vec<Pod> {
    let mut pods: Vec<Pod> = env
        .pods
        .list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}")))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| {
            p.metadata.deletion_timestamp.is_none()
                && !matches!(
                    p.status.as_ref().and_then(|s| s.phase.as_deref()),
                    Some("Succeeded") | Some("Failed")
                )
        })
        .collect();
    pods.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    pods
}

async fn all_pods(env: &Env, job: &str) -> Vec<Pod> {
    env.pods
        .list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}")))
        .await
        .unwrap()
        .items
}

async fn wait_active(env: &Env, job: &str, n: usize) -> Vec<Pod> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let pods = active_pods(env, job).await;
        if pods.len() == n {
            return pods;
        }
        if tokio::time::Instant::now() >= deadline {
            // What the controller left behind, for the failure's output.
            let all = all_pods(env, job).await;
            let status = env.jobs.get(job).await.ok().and_then(|j| j.status);
            // The API server's watch cache (resourceVersion=0) against storage.
            let names = |l: kube::core::ObjectList<Job>| -> Vec<String> {
                l.items
                    .into_iter()
                    .filter_map(|j| j.metadata.name)
                    .collect()
            };
            let cached = env
                .jobs
                .list(&ListParams::default().match_any())
                .await
                .map(names);
            let stored = env.jobs.list(&ListParams::default()).await.map(names);
            let events: Api<Event> = Api::namespaced(env.client.clone(), "default");
            let events: Vec<String> = events
                .list(&ListParams::default())
                .await
                .map(|l| l.items)
                .unwrap_or_default()
                .into_iter()
                .map(|e| format!("{:?}: {:?}", e.reason, e.message))
                .collect();
            panic!(
                "timed out waiting for {n} active pods of {job}: pods {:?}, status {status:?}, events {events:?}, jobs cached {cached:?}, jobs stored {stored:?}",
                all.iter()
                    .map(|p| (
                        p.metadata.name.clone(),
                        p.status.as_ref().and_then(|s| s.phase.clone()),
                        p.metadata.deletion_timestamp.is_some()
                    ))
                    .collect::<Vec<_>>()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn set_status(env: &Env, pod: &Pod, status: Value) {
    env.pods
        .patch_status(
            pod.metadata.name.as_deref().unwrap(),
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await
        .unwrap();
}

async fn succeed(env: &Env, pod: &Pod) {
    set_status(env, pod, json!({"phase": "Succeeded"})).await;
}

async fn fail(env: &Env, pod: &Pod, exit_code: i32) {
    set_status(
        env,
        pod,
        json!({"phase": "Failed", "containerStatuses": [{"name": "main", "image": "busybox",
            "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": exit_code}}}]}),
    )
    .await;
}

fn condition(job: &Job, type_: &str) -> Option<(String, String, String)> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| {
            (
                c.status.clone(),
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default(),
            )
        })
}

async fn wait_condition(env: &Env, name: &str, type_: &str) -> Job {
    eventually(&format!("{type_} condition on {name}"), || async {
        let j = env.jobs.get(name).await.unwrap();
        condition(&j, type_).is_some_and(|c| c.0 == "True")
    })
    .await;
    env.jobs.get(name).await.unwrap()
}

fn counts(job: &Job) -> (i32, i32, i32) {
    let s = job.status.clone().unwrap_or_default();
    (
        s.active.unwrap_or(0),
        s.succeeded.unwrap_or(0),
        s.failed.unwrap_or(0),
    )
}

async fn events(env: &Env, reason: &str) -> Vec<Event> {
    let api: Api<Event> = Api::namespaced(env.client.clone(), "default");
    api.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .collect()
}

fn has_finalizer(p: &Pod) -> bool {
    p.metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == FINALIZER)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_indexed_job_runs_parallel_pods_until_completions_succeed() {
    let env = env().await;
    let created = create(&env, "pi", json!({"completions": 3, "parallelism": 2})).await;
    let uid = created.metadata.uid.clone().unwrap();
    // The API server generated the selector and the template labels.
    let spec = created.spec.clone().unwrap();
    assert_eq!(
        spec.selector.unwrap().match_labels.unwrap()["batch.kubernetes.io/controller-uid"],
        uid
    );

    let pods = wait_active(&env, "pi", 2).await;
    for p in &pods {
        let labels = p.metadata.labels.clone().unwrap();
        assert_eq!(labels["batch.kubernetes.io/job-name"], "pi");
        assert_eq!(labels["job-name"], "pi");
        assert_eq!(labels["batch.kubernetes.io/controller-uid"], uid);
        assert_eq!(labels["controller-uid"], uid);
        assert!(
            has_finalizer(p),
            "pods are created with the tracking finalizer"
        );
        let owner = &p.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.controller), ("Job", Some(true)));
        assert!(p.metadata.name.as_deref().unwrap().starts_with("pi-"));
    }
    eventually("startTime and active=2", || async {
        let j = env.jobs.get("pi").await.unwrap();
        j.status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .is_some()
            && counts(&j).0 == 2
    })
    .await;

    succeed(&env, &pods[0]).await;
    // One done: a replacement keeps two running, the finished pod loses its finalizer.
    eventually("succeeded=1 and two active again", || async {
        let j = env.jobs.get("pi").await.unwrap();
        counts(&j) == (2, 1, 0) && active_pods(&env, "pi").await.len() == 2
    })
    .await;
    let done = env
        .pods
        .get(pods[0].metadata.name.as_deref().unwrap())
        .await
        .unwrap();
    assert!(!has_finalizer(&done));

    // Two more successes: only one more pod is needed, so none is created.
    for p in active_pods(&env, "pi").await {
        succeed(&env, &p).await;
    }
    let j = wait_condition(&env, "pi", "Complete").await;
    assert_eq!(counts(&j), (0, 3, 0));
    let s = j.status.clone().unwrap();
    assert!(s.completion_time.is_some());
    assert_eq!(condition(&j, "Complete").unwrap().1, "CompletionsReached");
    assert_eq!(condition(&j, "SuccessCriteriaMet").unwrap().0, "True");
    let uncounted = s.uncounted_terminated_pods.unwrap_or_default();
    assert!(uncounted.succeeded.unwrap_or_default().is_empty());
    assert_eq!(all_pods(&env, "pi").await.len(), 3);
    assert!(all_pods(&env, "pi").await.iter().all(|p| !has_finalizer(p)));
    eventually("Completed event", || async {
        !events(&env, "Completed").await.is_empty()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_without_completions_finishes_when_a_pod_succeeds_and_the_rest_end() {
    let env = env().await;
    create(
        &env,
        "queue",
        json!({"parallelism": 2, "completions": null}),
    )
    .await;
    let pods = wait_active(&env, "queue", 2).await;
    succeed(&env, &pods[0]).await;
    eventually("succeeded=1", || async {
        counts(&env.jobs.get("queue").await.unwrap()).1 == 1
    })
    .await;
    // No replacement once a pod succeeded; the job waits for the other.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(active_pods(&env, "queue").await.len(), 1);
    assert!(condition(&env.jobs.get("queue").await.unwrap(), "Complete").is_none());
    succeed(&env, &pods[1]).await;
    let j = wait_condition(&env, "queue", "Complete").await;
    assert_eq!(counts(&j), (0, 2, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexed_job_gives_each_pod_its_index() {
    let env = env().await;
    create(
        &env,
        "ix",
        json!({"completions": 3, "parallelism": 3, "completionMode": "Indexed"}),
    )
    .await;
    let pods = wait_active(&env, "ix", 3).await;
    let mut seen = Vec::new();
    for p in &pods {
        let i = p.metadata.annotations.as_ref().unwrap()[INDEX].clone();
        assert_eq!(p.metadata.labels.as_ref().unwrap()[INDEX], i);
        assert!(
            p.metadata
                .name
                .as_deref()
                .unwrap()
                .starts_with(&format!("ix-{i}-"))
        );
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(spec.hostname.as_deref(), Some(format!("ix-{i}").as_str()));
        let env_var = spec.containers[0]
            .env
            .iter()
            .flatten()
            .find(|e| e.name == "JOB_COMPLETION_INDEX")
            .expect("index env");
        let field = env_var
            .value_from
            .as_ref()
            .unwrap()
            .field_ref
            .as_ref()
            .unwrap();
        assert_eq!(
            field.field_path,
            "metadata.annotations['batch.kubernetes.io/job-completion-index']"
        );
        seen.push(i);
    }
    seen.sort();
    assert_eq!(seen, vec!["0", "1", "2"]);

    let by_index = |i: &str| {
        pods.iter()
            .find(|p| p.metadata.annotations.as_ref().unwrap()[INDEX] == i)
            .unwrap()
            .clone()
    };
    succeed(&env, &by_index("1")).await;
    eventually("completedIndexes=1", || async {
        let j = env.jobs.get("ix").await.unwrap();
        j.status.and_then(|s| s.completed_indexes).as_deref() == Some("1")
    })
    .await;
    // A failed index is retried with a new pod of the same index.
    fail(&env, &by_index("0"), 1).await;
    eventually("a new pod for index 0", || async {
        active_pods(&env, "ix").await.iter().any(|p| {
            p.metadata.annotations.as_ref().unwrap()[INDEX] == "0"
                && p.metadata.name != by_index("0").metadata.name
        })
    })
    .await;
    for p in active_pods(&env, "ix").await {
        succeed(&env, &p).await;
    }
    let j = wait_condition(&env, "ix", "Complete").await;
    let s = j.status.clone().unwrap();
    assert_eq!(s.completed_indexes.as_deref(), Some("0-2"));
    assert_eq!(counts(&j), (0, 3, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exceeding_the_backoff_limit_fails_the_job() {
    let env = env().await;
    create(&env, "flaky", json!({"backoffLimit": 1})).await;
    let first = wait_active(&env, "flaky", 1).await;
    fail(&env, &first[0], 1).await;
    eventually("a replacement pod", || async {
        active_pods(&env, "flaky")
            .await
            .iter()
            .any(|p| p.metadata.name != first[0].metadata.name)
    })
    .await;
    let second = active_pods(&env, "flaky").await;
    fail(&env, &second[0], 1).await;
    let j = wait_condition(&env, "flaky", "Failed").await;
    let (_, reason, message) = condition(&j, "Failed").unwrap();
    assert_eq!(reason, "BackoffLimitExceeded");
    assert_eq!(message, "Job has reached the specified backoff limit");
    assert_eq!(
        condition(&j, "FailureTarget").unwrap().1,
        "BackoffLimitExceeded"
    );
    assert_eq!(counts(&j), (0, 0, 2));
    assert!(j.status.unwrap().completion_time.is_none());
    assert!(
        all_pods(&env, "flaky")
            .await
            .iter()
            .all(|p| !has_finalizer(p))
    );
    eventually("BackoffLimitExceeded event", || async {
        !events(&env, "BackoffLimitExceeded").await.is_empty()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_pods_are_replaced_after_an_exponential_backoff() {
    let env = env_with(Duration::from_secs(2)).await;
    create(&env, "slow", json!({"backoffLimit": 5})).await;
    let first = wait_active(&env, "slow", 1).await;
    let failed_at = tokio::time::Instant::now();
    fail(&env, &first[0], 1).await;
    eventually("failed=1", || async {
        counts(&env.jobs.get("slow").await.unwrap()).2 == 1
    })
    .await;
    eventually("a replacement pod", || async {
        !active_pods(&env, "slow").await.is_empty()
    })
    .await;
    let waited = failed_at.elapsed();
    assert!(
        waited >= Duration::from_millis(1800),
        "replacement after {waited:?}, before the 2 s back-off"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_deadline_fails_the_job_and_removes_its_pods() {
    let env = env().await;
    create(
        &env,
        "late",
        json!({"parallelism": 2, "completions": 4, "activeDeadlineSeconds": 2}),
    )
    .await;
    wait_active(&env, "late", 2).await;
    let j = wait_condition(&env, "late", "Failed").await;
    let (_, reason, message) = condition(&j, "Failed").unwrap();
    assert_eq!(reason, "DeadlineExceeded");
    assert_eq!(message, "Job was active longer than specified deadline");
    // The running pods were deleted and count as failed.
    assert_eq!(counts(&j), (0, 0, 2));
    eventually("pods gone", || async {
        all_pods(&env, "late").await.is_empty()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_failure_policy_fails_the_job_on_a_matching_exit_code() {
    let env = env().await;
    create(
        &env,
        "pfp",
        json!({"backoffLimit": 6, "podReplacementPolicy": "Failed", "podFailurePolicy": {"rules": [
            {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]}},
        ]}}),
    )
    .await;
    let pods = wait_active(&env, "pfp", 1).await;
    fail(&env, &pods[0], 42).await;
    let j = wait_condition(&env, "pfp", "Failed").await;
    let (_, reason, message) = condition(&j, "Failed").unwrap();
    assert_eq!(reason, "PodFailurePolicy");
    let pod_name = pods[0].metadata.name.clone().unwrap();
    assert_eq!(
        message,
        format!(
            "Container main for pod default/{pod_name} failed with exit code 42 matching FailJob rule at index 0"
        )
    );
    assert_eq!(counts(&j).2, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_failure_policy_ignore_and_count_rules() {
    let env = env().await;
    create(
        &env,
        "pfp2",
        json!({"backoffLimit": 0, "podReplacementPolicy": "Failed", "podFailurePolicy": {"rules": [
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
            {"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [0]}},
        ]}}),
    )
    .await;
    let pods = wait_active(&env, "pfp2", 1).await;
    // A disrupted pod is replaced without counting against backoffLimit 0.
    set_status(
        &env,
        &pods[0],
        json!({"phase": "Failed", "conditions": [{"type": "DisruptionTarget", "status": "True"}]}),
    )
    .await;
    eventually("a replacement pod", || async {
        active_pods(&env, "pfp2")
            .await
            .iter()
            .any(|p| p.metadata.name != pods[0].metadata.name)
    })
    .await;
    let j = env.jobs.get("pfp2").await.unwrap();
    assert_eq!(counts(&j).2, 0);
    assert!(condition(&j, "Failed").is_none());
    // A counted failure exceeds backoffLimit 0.
    let next = active_pods(&env, "pfp2").await;
    fail(&env, &next[0], 3).await;
    let j = wait_condition(&env, "pfp2", "Failed").await;
    assert_eq!(condition(&j, "Failed").unwrap().1, "BackoffLimitExceeded");
    assert_eq!(counts(&j).2, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backoff_limit_per_index_fails_only_that_index() {
    let env = env().await;
    create(
        &env,
        "per",
        json!({"completions": 3, "parallelism": 3, "completionMode": "Indexed",
               "backoffLimitPerIndex": 1}),
    )
    .await;
    let pods = wait_active(&env, "per", 3).await;
    let index_of = |p: &Pod| p.metadata.annotations.as_ref().unwrap()[INDEX].clone();
    let zero = pods.iter().find(|p| index_of(p) == "0").unwrap().clone();
    assert_eq!(
        zero.metadata.annotations.as_ref().unwrap()["batch.kubernetes.io/job-index-failure-count"],
        "0"
    );
    fail(&env, &zero, 1).await;
    // One retry for index 0, which knows it is the second attempt.
    eventually("a retry of index 0", || async {
        active_pods(&env, "per").await.iter().any(|p| {
            index_of(p) == "0"
                && p.metadata.annotations.as_ref().unwrap()
                    ["batch.kubernetes.io/job-index-failure-count"]
                    == "1"
        })
    })
    .await;
    let retry = active_pods(&env, "per")
        .await
        .into_iter()
        .find(|p| index_of(p) == "0")
        .unwrap();
    fail(&env, &retry, 1).await;
    eventually("failedIndexes=0", || async {
        let j = env.jobs.get("per").await.unwrap();
        j.status.and_then(|s| s.failed_indexes).as_deref() == Some("0")
    })
    .await;
    // Index 0 is not retried again; the others still run and succeed.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let running = active_pods(&env, "per").await;
    assert_eq!(running.len(), 2);
    assert!(running.iter().all(|p| index_of(p) != "0"));
    for p in running {
        succeed(&env, &p).await;
    }
    let j = wait_condition(&env, "per", "Failed").await;
    assert_eq!(condition(&j, "Failed").unwrap().1, "FailedIndexes");
    let s = j.status.unwrap();
    assert_eq!(s.completed_indexes.as_deref(), Some("1-2"));
    assert_eq!(s.failed_indexes.as_deref(), Some("0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_failed_indexes_fails_the_job_early() {
    let env = env().await;
    create(
        &env,
        "maxf",
        json!({"completions": 4, "parallelism": 4, "completionMode": "Indexed",
               "backoffLimitPerIndex": 0, "maxFailedIndexes": 1}),
    )
    .await;
    let pods = wait_active(&env, "maxf", 4).await;
    fail(&env, &pods[0], 1).await;
    eventually("one failed index", || async {
        let j = env.jobs.get("maxf").await.unwrap();
        j.status
            .and_then(|s| s.failed_indexes)
            .is_some_and(|f| !f.is_empty())
    })
    .await;
    assert!(condition(&env.jobs.get("maxf").await.unwrap(), "Failed").is_none());
    fail(&env, &pods[1], 1).await;
    let j = wait_condition(&env, "maxf", "Failed").await;
    assert_eq!(
        condition(&j, "Failed").unwrap().1,
        "MaxFailedIndexesExceeded"
    );
    eventually("remaining pods deleted", || async {
        active_pods(&env, "maxf").await.is_empty()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn success_policy_completes_the_job_early() {
    let env = env().await;
    create(
        &env,
        "leader",
        json!({"completions": 3, "parallelism": 3, "completionMode": "Indexed",
               "successPolicy": {"rules": [{"succeededIndexes": "0"}]}}),
    )
    .await;
    let pods = wait_active(&env, "leader", 3).await;
    let zero = pods
        .iter()
        .find(|p| p.metadata.annotations.as_ref().unwrap()[INDEX] == "0")
        .unwrap();
    succeed(&env, zero).await;
    let j = wait_condition(&env, "leader", "Complete").await;
    let (_, reason, _) = condition(&j, "SuccessCriteriaMet").unwrap();
    assert_eq!(reason, "SuccessPolicy");
    assert_eq!(condition(&j, "Complete").unwrap().1, "SuccessPolicy");
    assert_eq!(j.status.unwrap().completed_indexes.as_deref(), Some("0"));
    assert!(active_pods(&env, "leader").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_deletes_active_pods_and_resume_starts_again() {
    let env = env().await;
    create(&env, "pause", json!({"parallelism": 2, "completions": 2})).await;
    wait_active(&env, "pause", 2).await;
    env.jobs
        .patch(
            "pause",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"suspend": true}})),
        )
        .await
        .unwrap();
    let j = wait_condition(&env, "pause", "Suspended").await;
    assert_eq!(condition(&j, "Suspended").unwrap().1, "JobSuspended");
    eventually("pods gone and active=0", || async {
        let j = env.jobs.get("pause").await.unwrap();
        all_pods(&env, "pause").await.is_empty() && counts(&j).0 == 0
    })
    .await;
    // Suspension is not failure.
    assert_eq!(counts(&env.jobs.get("pause").await.unwrap()).2, 0);
    env.jobs
        .patch(
            "pause",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"suspend": false}})),
        )
        .await
        .unwrap();
    wait_active(&env, "pause", 2).await;
    eventually("Suspended=False JobResumed", || async {
        let j = env.jobs.get("pause").await.unwrap();
        condition(&j, "Suspended").is_some_and(|c| c.0 == "False" && c.1 == "JobResumed")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_created_suspended_starts_no_pods_and_no_clock() {
    let env = env().await;
    create(&env, "held", json!({"suspend": true})).await;
    wait_condition(&env, "held", "Suspended").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(all_pods(&env, "held").await.is_empty());
    let j = env.jobs.get("held").await.unwrap();
    assert!(j.status.unwrap().start_time.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_running_pod_counts_as_failed_and_is_replaced() {
    let env = env().await;
    create(&env, "gone", json!({"backoffLimit": 3})).await;
    let pods = wait_active(&env, "gone", 1).await;
    env.pods
        .delete(
            pods[0].metadata.name.as_deref().unwrap(),
            &DeleteParams::default(),
        )
        .await
        .unwrap();
    eventually("failed=1 and a replacement", || async {
        let j = env.jobs.get("gone").await.unwrap();
        counts(&j).2 == 1
            && active_pods(&env, "gone")
                .await
                .iter()
                .any(|p| p.metadata.name != pods[0].metadata.name)
    })
    .await;
    // The finalizer no longer holds the deleted pod.
    eventually("deleted pod removed", || async {
        env.pods
            .get_opt(pods[0].metadata.name.as_deref().unwrap())
            .await
            .unwrap()
            .is_none()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_jobs_are_deleted_after_their_ttl() {
    let mut env = env().await;
    env.tasks.push(tokio::spawn(
        rk_controllers::controllers::ttl_after_finished::run(env.client.clone(), 1),
    ));
    create(&env, "brief", json!({"ttlSecondsAfterFinished": 1})).await;
    create(&env, "kept", json!({})).await;
    for name in ["brief", "kept"] {
        let pods = wait_active(&env, name, 1).await;
        succeed(&env, &pods[0]).await;
    }
    // `brief` may be gone as soon as it completes: only `kept` is waited on.
    wait_condition(&env, "kept", "Complete").await;
    eventually("brief deleted", || async {
        env.jobs.get_opt("brief").await.unwrap().is_none()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(env.jobs.get_opt("kept").await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_job_releases_the_finalizers_of_its_pods() {
    let env = env().await;
    create(&env, "drop", json!({"parallelism": 2, "completions": 2})).await;
    let pods = wait_active(&env, "drop", 2).await;
    assert!(pods.iter().all(has_finalizer));
    env.jobs
        .delete("drop", &DeleteParams::default())
        .await
        .unwrap();
    // No garbage collector runs here: the pods stay, but nothing holds them.
    eventually("finalizers removed", || async {
        all_pods(&env, "drop")
            .await
            .iter()
            .all(|p| !has_finalizer(p))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_managed_by_another_controller_are_left_alone() {
    let env = env().await;
    create(&env, "other", json!({"managedBy": "example.com/queue"})).await;
    create(&env, "mine", json!({})).await;
    wait_active(&env, "mine", 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(all_pods(&env, "other").await.is_empty());
    assert!(
        env.jobs
            .get("other")
            .await
            .unwrap()
            .status
            .is_none_or(|s| s.start_time.is_none())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lowering_parallelism_deletes_surplus_pods() {
    let env = env().await;
    create(&env, "wide", json!({"parallelism": 3, "completions": 10})).await;
    wait_active(&env, "wide", 3).await;
    env.jobs
        .patch(
            "wide",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"parallelism": 1}})),
        )
        .await
        .unwrap();
    wait_active(&env, "wide", 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(active_pods(&env, "wide").await.len(), 1);
    eventually("active=1", || async {
        counts(&env.jobs.get("wide").await.unwrap()).0 == 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_pods_are_counted() {
    let env = env().await;
    create(&env, "rdy", json!({"parallelism": 2, "completions": 2})).await;
    let pods = wait_active(&env, "rdy", 2).await;
    set_status(
        &env,
        &pods[0],
        json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}),
    )
    .await;
    eventually("ready=1", || async {
        let j = env.jobs.get("rdy").await.unwrap();
        j.status.and_then(|s| s.ready) == Some(1)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphan_pods_matching_a_manual_selector_are_adopted() {
    let env = env().await;
    let orphan: Pod = serde_json::from_value(json!({
        "metadata": {"name": "stray", "labels": {"app": "adopt"}},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]}
    }))
    .unwrap();
    env.pods
        .create(&PostParams::default(), &orphan)
        .await
        .unwrap();
    create(
        &env,
        "adopt",
        json!({"parallelism": 2, "completions": 2, "manualSelector": true,
               "selector": {"matchLabels": {"app": "adopt"}},
               "template": {"metadata": {"labels": {"app": "adopt", "batch.kubernetes.io/job-name": "adopt"}},
                   "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]}}}),
    )
    .await;
    eventually("stray adopted with the tracking finalizer", || async {
        let p = env.pods.get("stray").await.unwrap();
        has_finalizer(&p)
            && p.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.kind == "Job" && o.controller == Some(true))
    })
    .await;
    // The adopted pod is one of the two: only one more is created.
    eventually("two pods in all", || async {
        env.pods
            .list(&ListParams::default().labels("app=adopt"))
            .await
            .unwrap()
            .items
            .len()
            == 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let all = env
        .pods
        .list(&ListParams::default().labels("app=adopt"))
        .await
        .unwrap()
        .items;
    assert_eq!(all.len(), 2);
    for p in &all {
        succeed(&env, p).await;
    }
    let j = wait_condition(&env, "adopt", "Complete").await;
    assert_eq!(counts(&j), (0, 2, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacement_policy_failed_waits_for_a_terminating_pod_to_fail() {
    let env = env().await;
    create(
        &env,
        "patient",
        json!({"podReplacementPolicy": "Failed", "backoffLimit": 3}),
    )
    .await;
    let pods = wait_active(&env, "patient", 1).await;
    let name = pods[0].metadata.name.clone().unwrap();
    env.pods
        .delete(&name, &DeleteParams::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        active_pods(&env, "patient").await.is_empty(),
        "no replacement while terminating"
    );
    eventually("terminating=1", || async {
        let j = env.jobs.get("patient").await.unwrap();
        j.status.and_then(|s| s.terminating) == Some(1)
    })
    .await;
    let terminating = env.pods.get(&name).await.unwrap();
    fail(&env, &terminating, 137).await;
    eventually("failed=1 and a replacement", || async {
        let j = env.jobs.get("patient").await.unwrap();
        counts(&j).2 == 1 && active_pods(&env, "patient").await.len() == 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_restarts_count_towards_the_backoff_limit_with_on_failure() {
    let env = env().await;
    create(
        &env,
        "restarts",
        json!({"backoffLimit": 2, "template": {"spec": {"restartPolicy": "OnFailure",
            "containers": [{"name": "main", "image": "busybox"}]}}}),
    )
    .await;
    let pods = wait_active(&env, "restarts", 1).await;
    set_status(
        &env,
        &pods[0],
        json!({"phase": "Running", "containerStatuses": [{"name": "main", "image": "busybox",
            "imageID": "", "ready": false, "restartCount": 3,
            "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}),
    )
    .await;
    let j = wait_condition(&env, "restarts", "Failed").await;
    assert_eq!(condition(&j, "Failed").unwrap().1, "BackoffLimitExceeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fail_index_rule_fails_the_index_without_retries() {
    let env = env().await;
    create(
        &env,
        "fidx",
        json!({"completions": 2, "parallelism": 2, "completionMode": "Indexed",
               "backoffLimitPerIndex": 3, "podReplacementPolicy": "Failed",
               "podFailurePolicy": {"rules": [
                   {"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [5]}}]}}),
    )
    .await;
    let pods = wait_active(&env, "fidx", 2).await;
    let index_of = |p: &Pod| p.metadata.annotations.as_ref().unwrap()[INDEX].clone();
    let zero = pods.iter().find(|p| index_of(p) == "0").unwrap();
    let one = pods.iter().find(|p| index_of(p) == "1").unwrap();
    fail(&env, zero, 5).await;
    eventually("failedIndexes=0", || async {
        let j = env.jobs.get("fidx").await.unwrap();
        j.status.and_then(|s| s.failed_indexes).as_deref() == Some("0")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        active_pods(&env, "fidx")
            .await
            .iter()
            .all(|p| index_of(p) != "0"),
        "a failed index is not retried"
    );
    succeed(&env, one).await;
    let j = wait_condition(&env, "fidx", "Failed").await;
    assert_eq!(condition(&j, "Failed").unwrap().1, "FailedIndexes");
    assert_eq!(j.status.unwrap().completed_indexes.as_deref(), Some("1"));
}
