//! App task deadlines through the scheduler hand-off: a `run-task` task not
//! finished within `tasks.timeout_secs` fails with a clear reason, its
//! scheduler task is no longer pending, and a late completion changes
//! nothing. Time is moved with the injected clock.

mod common;

use anyhow::{ensure, Context, Result};
use common::{app_with_droplet, complete, Api, InProcess};
use controller_lite::staging::{Completion, TaskOutcome};
use serde_json::json;

async fn run_task(api: &Api, app: &str, name: &str) -> Result<String> {
    let (s, t) = api
        .post(
            &format!("/v3/apps/{app}/tasks"),
            json!({"command": "sleep 1000", "name": name}),
        )
        .await?;
    ensure!(s == 202 && t["state"] == "PENDING", "{s} {t}");
    Ok(t["guid"].as_str().context("task guid")?.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_past_their_deadline_fail_with_a_clear_reason() -> Result<()> {
    let c =
        InProcess::start("[tasks]\ntimeout_secs = 600\n[staging]\nsweep_interval_secs = 3600\n")
            .await?;
    let api = Api::login(&c.base, "admin", "admin-pw").await?;
    let app = app_with_droplet(&c, &api, "worker").await?;
    let staging = c.controller().staging();
    let scheduler = c.controller().state.scheduler.clone();

    let slow = run_task(&api, &app, "slow").await?;
    let sched = scheduler.clone();
    let pending = tokio::task::spawn_blocking(move || sched.pending_tasks()).await??;
    let def = pending
        .iter()
        .find(|t| t.task_guid == slow)
        .context("task handed to the scheduler")?;
    ensure!(
        def.deadline == c.clock.0.load(std::sync::atomic::Ordering::SeqCst) + 600,
        "the scheduler gets the deadline: {}",
        def.deadline
    );

    c.clock.advance(300);
    let quick = run_task(&api, &app, "quick").await?;
    c.clock.advance(299);
    let s = staging.clone();
    ensure!(
        tokio::task::spawn_blocking(move || s.expire_overdue())
            .await??
            .is_empty(),
        "nothing is due before its deadline"
    );
    c.clock.advance(1);
    let s = staging.clone();
    let expired = tokio::task::spawn_blocking(move || s.expire_overdue()).await??;
    ensure!(expired == vec![slow.clone()], "only the first: {expired:?}");

    let t = api.ok(&format!("/v3/tasks/{slow}")).await?;
    ensure!(
        t["state"] == "FAILED"
            && t["result"]["failure_reason"]
                .as_str()
                .is_some_and(|r| r.contains("TaskTimeout") && r.contains("600 seconds")),
        "{t}"
    );
    let sched = scheduler.clone();
    let pending = tokio::task::spawn_blocking(move || sched.pending_tasks()).await??;
    ensure!(
        pending.iter().all(|t| t.task_guid != slow) && pending.iter().any(|t| t.task_guid == quick),
        "the timed-out task left the scheduler's queue, the other stays"
    );
    // The cell reporting afterwards changes nothing.
    let late = complete(
        &staging,
        &slow,
        TaskOutcome::Succeeded {
            result: String::new(),
        },
    )
    .await?;
    ensure!(late == Completion::AlreadyCompleted, "{late:?}");
    ensure!(api.ok(&format!("/v3/tasks/{slow}")).await?["state"] == "FAILED");

    // A task that finishes in time is not touched by the sweeper later.
    let done = complete(
        &staging,
        &quick,
        TaskOutcome::Succeeded {
            result: String::new(),
        },
    )
    .await?;
    ensure!(
        done == Completion::TaskFinished {
            state: "SUCCEEDED".into()
        },
        "{done:?}"
    );
    c.clock.advance(10_000);
    let s = staging.clone();
    ensure!(tokio::task::spawn_blocking(move || s.expire_overdue())
        .await??
        .is_empty());
    ensure!(api.ok(&format!("/v3/tasks/{quick}")).await?["state"] == "SUCCEEDED");
    c.stop().await;
    Ok(())
}
