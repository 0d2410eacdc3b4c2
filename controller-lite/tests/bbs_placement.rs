//! Tasks the auction cannot place: with no cell present they wait PENDING
//! (the cell may be starting); once cells take part and none can run them,
//! they fail at once with the placement error, and the failure reaches the
//! build (FAILED) and the `run-task` task (FAILED) the usual way.

#[path = "bbs_common.rs"]
mod bbs_common;
mod common;

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use bbs_common::{eventually, FakeCell};
use common::{app_with_droplet, build, push_bits, Api, InProcess};
use controller_lite::db::Db;
use diego::models::{Task, TaskState};
use serde_json::json;

/// The BBS's record of a task.
async fn bbs_task(db: &Db, guid: &str) -> Result<Option<Task>> {
    let g = guid.to_owned();
    Ok(db
        .read(move |c| controller_lite::bbs::records::task(c, &g))
        .await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_no_cell_can_run_fails_at_once_with_the_placement_error() -> Result<()> {
    common::install_tls();
    // No periodic convergence: only the auction can end the tasks.
    let c = InProcess::start("[scheduler]\nconvergence_interval_secs = 3600\n").await?;
    let db = c.controller().state.db.clone();
    let api = Api::login(&c.base, "admin", "admin-pw").await?;
    // Staged through the hand-off while no cell exists.
    let app = app_with_droplet(&c, &api, "unplaceable").await?;
    let space = api.space_guid().await?;
    let (_app2, pkg) = push_bits(&api, &space, "unplaceable-build").await?;

    // No cell at all: both wait PENDING with the auction's reason.
    let staging = build(&api, &pkg).await?;
    let (s, t) = api
        .post(
            &format!("/v3/apps/{app}/tasks"),
            json!({"command": "true", "name": "big", "memory_in_mb": 2048}),
        )
        .await?;
    ensure!(s == 202, "{s} {t}");
    let task = t["guid"].as_str().context("task guid")?.to_owned();
    for guid in [&staging, &task] {
        eventually(Duration::from_secs(5), "a rejection reason", || {
            let (db, g) = (db.clone(), guid.clone());
            async move {
                Ok(bbs_task(&db, &g)
                    .await?
                    .is_some_and(|t| !t.rejection_reason.is_empty()))
            }
        })
        .await?;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for guid in [&staging, &task] {
        let t = bbs_task(&db, guid).await?.context("still in the BBS")?;
        ensure!(t.state == TaskState::Pending, "{guid}: {t:?}");
    }
    ensure!(api.ok(&format!("/v3/builds/{staging}")).await?["state"] == "STAGING");
    ensure!(api.ok(&format!("/v3/tasks/{task}")).await?["state"] == "PENDING");

    // A cell too small for either joins: the auction it triggers fails
    // both at once (staging needs 1024 MB, the task 2048 MB).
    let key = {
        let db = db.clone();
        tokio::task::spawn_blocking(move || controller_lite::cells::issue_key(&db, "small-1"))
            .await??
    };
    let cell = FakeCell::start_at(&c.base, key, "small-1", "z1", 512).await?;
    eventually(Duration::from_secs(5), "the build FAILED", || {
        let (api, g) = (&api, staging.clone());
        async move { Ok(api.ok(&format!("/v3/builds/{g}")).await?["state"] == "FAILED") }
    })
    .await?;
    let b = api.ok(&format!("/v3/builds/{staging}")).await?;
    ensure!(
        b["error"]
            .as_str()
            .is_some_and(|e| e.contains("insufficient resources: memory")),
        "the placement error reaches the build: {b}"
    );
    eventually(Duration::from_secs(5), "the task FAILED", || {
        let (api, g) = (&api, task.clone());
        async move { Ok(api.ok(&format!("/v3/tasks/{g}")).await?["state"] == "FAILED") }
    })
    .await?;
    let t = api.ok(&format!("/v3/tasks/{task}")).await?;
    ensure!(
        t["result"]["failure_reason"]
            .as_str()
            .is_some_and(|r| r.contains("insufficient resources: memory")),
        "the placement error reaches the task: {t}"
    );
    for guid in [&staging, &task] {
        ensure!(
            bbs_task(&db, guid).await?.is_none(),
            "{guid}: completed tasks leave the BBS"
        );
    }
    ensure!(cell.tasks().is_empty(), "nothing was sent to the cell");
    drop(cell);
    c.stop().await;
    Ok(())
}
