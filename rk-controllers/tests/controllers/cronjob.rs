//! The CronJob controller on a `TestServer`. Schedules are driven with an
//! injected clock (`Controller::sync_at`), so no test waits for a minute to
//! pass; Jobs are finished by the tests through the status subresource.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use rk_apiserver::TestServer;
use rk_controllers::controllers::cronjob::{self, Controller, SCHEDULED_TIMESTAMP};
use serde_json::{Value, json};

struct Env {
    _server: TestServer,
    client: kube::Client,
    cronjobs: Api<CronJob>,
    jobs: Api<Job>,
    ctrl: Controller,
}

async fn env() -> Env {
    let server = crate::support::test_server().await.unwrap();
    let client = server.client();
    Env {
        cronjobs: Api::namespaced(client.clone(), "default"),
        jobs: Api::namespaced(client.clone(), "default"),
        ctrl: Controller::new(client.clone()),
        client,
        _server: server,
    }
}

/// Create a CronJob (UTC unless `spec` says otherwise); returns its
/// creation time.
async fn create(env: &Env, name: &str, spec: Value) -> Timestamp {
    let mut body = json!({
        "metadata": {"name": name},
        "spec": {
            "schedule": "* * * * *",
            "timeZone": "Etc/UTC",
            "jobTemplate": {
                "metadata": {"labels": {"team": "ops"}, "annotations": {"note": "x"}},
                "spec": {"template": {"spec": {"restartPolicy": "Never",
                    "containers": [{"name": "main", "image": "busybox"}]}}}
            }
        }
    });
    if let (Some(base), Some(extra)) = (body["spec"].as_object_mut(), spec.as_object()) {
        for (k, v) in extra {
            base.insert(k.clone(), v.clone());
        }
    }
    let cj: CronJob = serde_json::from_value(body).unwrap();
    let created = env
        .cronjobs
        .create(&PostParams::default(), &cj)
        .await
        .unwrap();
    created.metadata.creation_timestamp.unwrap().0
}

/// The first whole minute after `t`, plus `secs`.
fn minute_after(t: Timestamp, secs: i64) -> Timestamp {
    let s = t.as_second();
    let next = (s.div_euclid(60) + 1) * 60;
    Timestamp::from_second(next + secs).unwrap()
}

async fn sync(env: &Env, name: &str, now: Timestamp) -> Option<Duration> {
    env.ctrl
        .sync_at(&format!("default/{name}"), now)
        .await
        .unwrap()
}

async fn jobs_of(env: &Env) -> Vec<Job> {
    let mut jobs: Vec<Job> = env
        .jobs
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|j| j.metadata.deletion_timestamp.is_none())
        .collect();
    jobs.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    jobs
}

fn names(jobs: &[Job]) -> Vec<String> {
    jobs.iter()
        .map(|j| j.metadata.name.clone().unwrap_or_default())
        .collect()
}

async fn status(env: &Env, name: &str) -> k8s_openapi::api::batch::v1::CronJobStatus {
    env.cronjobs
        .get(name)
        .await
        .unwrap()
        .status
        .unwrap_or_default()
}

fn active_names(s: &k8s_openapi::api::batch::v1::CronJobStatus) -> Vec<String> {
    s.active
        .iter()
        .flatten()
        .map(|r| r.name.clone().unwrap_or_default())
        .collect()
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

async fn finish(env: &Env, job: &str, success: bool, at: Timestamp) {
    let stamp = at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let (type_, extra) = if success {
        ("Complete", json!({"completionTime": stamp, "succeeded": 1}))
    } else {
        ("Failed", json!({"failed": 1}))
    };
    let mut status = json!({"startTime": stamp,
        "conditions": [{"type": type_, "status": "True", "lastTransitionTime": stamp}]});
    if let (Some(s), Some(e)) = (status.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            s.insert(k.clone(), v.clone());
        }
    }
    env.jobs
        .patch_status(
            job,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_due_schedule_creates_one_job_named_for_its_minute() {
    let env = env().await;
    let created = create(&env, "tick", json!({})).await;
    let scheduled = minute_after(created, 0);
    let now = scheduled + SignedDuration::from_secs(20);
    let requeue = sync(&env, "tick", now).await;

    let jobs = jobs_of(&env).await;
    let want = format!("tick-{}", scheduled.as_second() / 60);
    assert_eq!(names(&jobs), vec![want.clone()]);
    let job = &jobs[0];
    let annotations = job.metadata.annotations.clone().unwrap();
    assert_eq!(
        annotations[SCHEDULED_TIMESTAMP],
        scheduled.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    );
    assert_eq!(annotations["note"], "x");
    assert_eq!(job.metadata.labels.as_ref().unwrap()["team"], "ops");
    let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("CronJob", Some(true))
    );

    let s = status(&env, "tick").await;
    assert_eq!(active_names(&s), vec![want]);
    assert_eq!(s.last_schedule_time.map(|t| t.0), Some(scheduled));
    // Look again at the next minute (plus a little).
    let requeue = requeue.unwrap();
    assert!(
        requeue > Duration::from_secs(39) && requeue <= Duration::from_secs(41),
        "{requeue:?}"
    );
    // A second sync in the same minute starts nothing more.
    sync(&env, "tick", now + SignedDuration::from_secs(5)).await;
    assert_eq!(jobs_of(&env).await.len(), 1);
    assert!(!events(&env, "SuccessfulCreate").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_runs_before_the_first_scheduled_time() {
    let env = env().await;
    let created = create(&env, "early", json!({"schedule": "0 0 1 1 *"})).await;
    let requeue = sync(&env, "early", created + SignedDuration::from_secs(1)).await;
    assert!(jobs_of(&env).await.is_empty());
    assert!(requeue.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_runs_jobs_side_by_side() {
    let env = env().await;
    let created = create(&env, "par", json!({"concurrencyPolicy": "Allow"})).await;
    sync(&env, "par", minute_after(created, 10)).await;
    sync(&env, "par", minute_after(created, 70)).await;
    assert_eq!(jobs_of(&env).await.len(), 2);
    assert_eq!(active_names(&status(&env, "par").await).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbid_skips_a_run_while_the_last_one_is_active() {
    let env = env().await;
    let created = create(&env, "solo", json!({"concurrencyPolicy": "Forbid"})).await;
    sync(&env, "solo", minute_after(created, 10)).await;
    sync(&env, "solo", minute_after(created, 70)).await;
    let jobs = jobs_of(&env).await;
    assert_eq!(jobs.len(), 1);
    assert!(!events(&env, "JobAlreadyActive").await.is_empty());
    // Once it finished, the next run starts.
    let first = jobs[0].metadata.name.clone().unwrap();
    finish(&env, &first, true, minute_after(created, 80)).await;
    sync(&env, "solo", minute_after(created, 130)).await;
    let jobs = jobs_of(&env).await;
    assert_eq!(jobs.len(), 2);
    let s = status(&env, "solo").await;
    assert_eq!(active_names(&s).len(), 1);
    assert_ne!(active_names(&s)[0], first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_deletes_the_running_job_for_the_new_one() {
    let env = env().await;
    let created = create(&env, "swap", json!({"concurrencyPolicy": "Replace"})).await;
    sync(&env, "swap", minute_after(created, 10)).await;
    let first = names(&jobs_of(&env).await);
    sync(&env, "swap", minute_after(created, 70)).await;
    let now = names(&jobs_of(&env).await);
    assert_eq!(now.len(), 1);
    assert_ne!(now, first);
    assert_eq!(active_names(&status(&env, "swap").await), now);
    assert!(!events(&env, "SuccessfulDelete").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_missed_runs_start_only_the_latest_and_warn() {
    let env = env().await;
    let created = create(&env, "behind", json!({})).await;
    let now = minute_after(created, 200 * 60 + 15);
    sync(&env, "behind", now).await;
    let jobs = jobs_of(&env).await;
    let latest = Timestamp::from_second(now.as_second() / 60 * 60).unwrap();
    assert_eq!(
        names(&jobs),
        vec![format!("behind-{}", latest.as_second() / 60)]
    );
    let warnings = events(&env, "TooManyMissedTimes").await;
    assert_eq!(warnings.len(), 1);
    assert_eq!(warnings[0].type_.as_deref(), Some("Warning"));
    assert!(
        warnings[0]
            .message
            .as_deref()
            .unwrap()
            .starts_with("too many missed start times: 201")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_few_missed_runs_start_only_the_latest_without_warning() {
    let env = env().await;
    let created = create(&env, "nap", json!({})).await;
    sync(&env, "nap", minute_after(created, 5 * 60 + 1)).await;
    assert_eq!(jobs_of(&env).await.len(), 1);
    assert!(events(&env, "TooManyMissedTimes").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starting_deadline_skips_a_run_that_is_too_late() {
    let env = env().await;
    let created = create(&env, "strict", json!({"startingDeadlineSeconds": 10})).await;
    // 30 s after the scheduled minute: too late.
    let requeue = sync(&env, "strict", minute_after(created, 30)).await;
    assert!(jobs_of(&env).await.is_empty());
    assert!(requeue.is_some());
    // 5 s after the next one: in time.
    sync(&env, "strict", minute_after(created, 65)).await;
    assert_eq!(jobs_of(&env).await.len(), 1);
    // A deadline also bounds the missed-run count: no warning after hours.
    sync(&env, "strict", minute_after(created, 300 * 60 + 2)).await;
    assert_eq!(jobs_of(&env).await.len(), 2);
    assert!(events(&env, "TooManyMissedTimes").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_cronjob_starts_nothing() {
    let env = env().await;
    let created = create(&env, "off", json!({"suspend": true})).await;
    let requeue = sync(&env, "off", minute_after(created, 10)).await;
    assert!(jobs_of(&env).await.is_empty());
    assert_eq!(requeue, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_jobs_leave_active_and_history_is_pruned() {
    let env = env().await;
    let created = create(
        &env,
        "hist",
        json!({"successfulJobsHistoryLimit": 2, "failedJobsHistoryLimit": 1}),
    )
    .await;
    // Five runs: three succeed, two fail.
    let mut outcomes = Vec::new();
    for (i, success) in [true, false, true, false, true].into_iter().enumerate() {
        let at = minute_after(created, 60 * i as i64 + 5);
        sync(&env, "hist", at).await;
        let newest = jobs_of(&env)
            .await
            .into_iter()
            .map(|j| j.metadata.name.unwrap())
            .max_by_key(|n| n.rsplit('-').next().unwrap().parse::<i64>().unwrap())
            .unwrap();
        finish(&env, &newest, success, at + SignedDuration::from_secs(20)).await;
        outcomes.push((newest, success));
    }
    let last_done = minute_after(created, 60 * 4 + 25);
    sync(&env, "hist", minute_after(created, 60 * 4 + 40)).await;
    let s = status(&env, "hist").await;
    assert!(active_names(&s).is_empty());
    assert_eq!(s.last_successful_time.map(|t| t.0), Some(last_done));
    let left = names(&jobs_of(&env).await);
    let want: Vec<String> = {
        let mut w = vec![
            outcomes[2].0.clone(),
            outcomes[3].0.clone(),
            outcomes[4].0.clone(),
        ];
        w.sort();
        w
    };
    assert_eq!(left, want);
    assert!(!events(&env, "SawCompletedJob").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_active_job_leaves_the_active_list() {
    let env = env().await;
    let created = create(&env, "lost", json!({"concurrencyPolicy": "Forbid"})).await;
    sync(&env, "lost", minute_after(created, 5)).await;
    let name = names(&jobs_of(&env).await).remove(0);
    // Background: a Job deleted without a policy orphans its pods and
    // waits for the garbage collector, which this test does not run.
    env.jobs
        .delete(&name, &DeleteParams::background())
        .await
        .unwrap();
    sync(&env, "lost", minute_after(created, 10)).await;
    assert!(active_names(&status(&env, "lost").await).is_empty());
    assert!(!events(&env, "MissingJob").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schedule_follows_the_time_zone() {
    let env = env().await;
    let Ok(tz) = jiff::tz::TimeZone::get("America/New_York") else {
        return; // no tz database on this machine
    };
    let created = create(
        &env,
        "ny",
        json!({"schedule": "0 9 * * *", "timeZone": "America/New_York"}),
    )
    .await;
    let now = created + SignedDuration::from_hours(48);
    sync(&env, "ny", now).await;
    // The latest 09:00 in New York at or before `now`.
    let local = now.to_zoned(tz.clone());
    let mut day = local.date();
    let mut want = tz
        .to_ambiguous_zoned(day.at(9, 0, 0, 0))
        .compatible()
        .unwrap()
        .timestamp();
    if want > now {
        day = day.yesterday().unwrap();
        want = tz
            .to_ambiguous_zoned(day.at(9, 0, 0, 0))
            .compatible()
            .unwrap()
            .timestamp();
    }
    let jobs = jobs_of(&env).await;
    assert_eq!(names(&jobs), vec![cronjob::job_name("ny", want)]);
    let stamp = &jobs[0].metadata.annotations.as_ref().unwrap()[SCHEDULED_TIMESTAMP];
    assert_eq!(stamp, &cronjob::rfc3339_in(want, &tz));
    assert!(stamp.contains("T09:00:00-0"), "{stamp}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_time_zones_and_schedules_are_reported() {
    let env = env().await;
    let created = create(&env, "where", json!({"timeZone": "Mars/Olympus"})).await;
    assert_eq!(sync(&env, "where", minute_after(created, 5)).await, None);
    assert!(!events(&env, "UnknownTimeZone").await.is_empty());
    assert!(jobs_of(&env).await.is_empty());
    // A schedule the API server let through but that does not parse.
    let cj: CronJob = serde_json::from_value(json!({
        "metadata": {"name": "when"},
        "spec": {"schedule": "@every 5m", "jobTemplate": {"spec": {"template": {"spec": {
            "restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]}}}}}
    }))
    .unwrap();
    if let Ok(created) = env.cronjobs.create(&PostParams::default(), &cj).await {
        let at = created.metadata.creation_timestamp.unwrap().0;
        assert_eq!(sync(&env, "when", minute_after(at, 5)).await, None);
        let warnings = events(&env, "InvalidSchedule").await;
        assert_eq!(warnings.len(), 1);
        assert!(jobs_of(&env).await.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_runs_from_the_manager_loop() {
    // `run` starts and syncs on its own: a CronJob whose first minute is
    // far away gets no Job, and the loop does not fail on it.
    let env = env().await;
    let task = tokio::spawn(cronjob::run(env.client.clone(), 1));
    create(&env, "yearly", json!({"schedule": "@yearly"})).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(jobs_of(&env).await.is_empty());
    assert!(!task.is_finished());
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_manager_loop_starts_a_job_at_the_next_minute() {
    // Real time: `run` requeues the CronJob for its next scheduled minute
    // and starts the Job then (this waits up to a minute).
    let env = env().await;
    let task = tokio::spawn(cronjob::run(env.client.clone(), 1));
    let created = create(&env, "minutely", json!({"concurrencyPolicy": "Forbid"})).await;
    let first = minute_after(created, 0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let jobs = jobs_of(&env).await;
        if !jobs.is_empty() {
            assert_eq!(names(&jobs), vec![cronjob::job_name("minutely", first)]);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no job within 90 s");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while active_names(&status(&env, "minutely").await).is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "status.active not set"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    task.abort();
}
