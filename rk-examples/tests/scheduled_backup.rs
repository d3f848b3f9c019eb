//! The `scheduled-backup` operator against an in-process API server. No Job
//! controller runs there, so the test finishes Jobs by writing their status.

use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::Job;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, CustomResourceExt, ResourceExt};
use rk_apiserver::TestServer;
use rk_examples::operator::{OperatorConfig, install_crd, is_true};
use rk_examples::scheduled_backup::{self, BACKUP_LABEL, Backup, BackupSpec, desired_job};

async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..600 {
        if let Some(v) = check().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

fn spec(schedule: &str) -> BackupSpec {
    BackupSpec {
        schedule: schedule.into(),
        image: "busybox".into(),
        command: vec!["sh".into(), "-c".into(), "echo backing up".into()],
        args: vec![],
        successful_jobs_history_limit: 1,
        failed_jobs_history_limit: 1,
        suspend: false,
    }
}

async fn finish(jobs: &Api<Job>, name: &str, condition: &str, at: Timestamp) {
    let status = serde_json::json!({"status": {
        "completionTime": (condition == "Complete").then(|| at.to_string()),
        "startTime": at.to_string(),
        "conditions": [{"type": condition, "status": "True", "lastTransitionTime": at.to_string()}],
    }});
    jobs.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
}

async fn names(jobs: &Api<Job>) -> Vec<String> {
    let list = jobs
        .list(&ListParams::default().labels(BACKUP_LABEL))
        .await
        .unwrap();
    let mut names: Vec<String> = list.items.iter().map(|j| j.name_any()).collect();
    names.sort();
    names
}

#[tokio::test]
async fn backup_creates_a_job_per_schedule_and_keeps_the_history_limits() {
    let server = TestServer::start().await.unwrap();
    let client = server.client();
    install_crd(client.clone(), &Backup::crd()).await.unwrap();
    // Three minutes ahead: a run of `* * * * *` is due at once.
    let clock = Arc::new(|| Timestamp::now() + SignedDuration::from_mins(3));
    let config = OperatorConfig {
        workers: 1,
        ..Default::default()
    };
    let manager = scheduled_backup::manager_with_clock(client.clone(), &config, clock);
    let stop = manager.shutdown_token();
    let running = tokio::spawn(manager.run());

    let backups: Api<Backup> = Api::namespaced(client.clone(), "default");
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let backup = backups
        .create(
            &PostParams::default(),
            &Backup::new("db", spec("* * * * *")),
        )
        .await
        .unwrap();

    // A Job for the latest scheduled minute, owned by the Backup.
    let first = eventually("the scheduled Job", || async {
        names(&jobs).await.into_iter().next()
    })
    .await;
    let job = jobs.get(&first).await.unwrap();
    assert_eq!(job.owner_references()[0].uid, backup.uid().unwrap());
    eventually("status.active and lastScheduleTime", || async {
        let status = backups.get("db").await.unwrap().status?;
        (status.active == vec![first.clone()] && status.last_schedule_time.is_some()).then_some(())
    })
    .await;

    // Older finished runs beyond the limits (1 successful, 1 failed) are deleted, oldest first.
    let backup = backups.get("db").await.unwrap();
    let base = Timestamp::now() - SignedDuration::from_hours(1);
    let mut made = Vec::new();
    for i in 0..4i64 {
        let at = base + SignedDuration::from_mins(i);
        let job = jobs
            .create(&PostParams::default(), &desired_job(&backup, at).unwrap())
            .await
            .unwrap();
        made.push((job.name_any(), at));
    }
    finish(&jobs, &made[0].0, "Complete", made[0].1).await;
    finish(&jobs, &made[1].0, "Complete", made[1].1).await;
    finish(&jobs, &made[2].0, "Failed", made[2].1).await;
    finish(&jobs, &made[3].0, "Failed", made[3].1).await;
    let mut want = vec![first.clone(), made[1].0.clone(), made[3].0.clone()];
    want.sort();
    eventually("the history trimmed", || async {
        (names(&jobs).await == want).then_some(())
    })
    .await;
    eventually("Ready=False after a failed run", || async {
        let status = backups.get("db").await.unwrap().status?;
        (!is_true(&status.conditions, "Ready")).then_some(())
    })
    .await;

    // The running Job completes: it leaves status.active, and as the newest
    // success it pushes the older one out of the history.
    finish(&jobs, &first, "Complete", Timestamp::now()).await;
    let mut want = vec![first.clone(), made[3].0.clone()];
    want.sort();
    eventually("active emptied and history trimmed again", || async {
        let status = backups.get("db").await.unwrap().status?;
        (status.active.is_empty()
            && is_true(&status.conditions, "Ready")
            && names(&jobs).await == want)
            .then_some(())
    })
    .await;

    // An invalid schedule is reported, not retried.
    let patch = serde_json::json!({"spec": {"schedule": "every day"}});
    backups
        .patch("db", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    eventually("InvalidSchedule", || async {
        let status = backups.get("db").await.unwrap().status?;
        status
            .conditions
            .iter()
            .any(|c| c.reason == "InvalidSchedule")
            .then_some(())
    })
    .await;

    backups
        .delete("db", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the Backup gone", || async {
        backups.get_opt("db").await.unwrap().is_none().then_some(())
    })
    .await;
    stop.cancel();
    running.await.unwrap().unwrap();
}
