//! Staging through the BBS: the staging Task is auctioned to a cell (a
//! small honest fake), started and completed by that cell with its own key,
//! and the build becomes STAGED; a build whose cell disappears fails with
//! Diego's "cell disappeared before completion".

#[path = "bbs_common.rs"]
mod bbs_common;
mod common;

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use bbs_common::{eventually, FakeCell};
use common::{build, internal, push_bits, upload_droplet, Api, InProcess};
use diego::models::Action;
use reqwest::Method;
use serde_json::json;

async fn build_state(api: &Api, guid: &str) -> Result<serde_json::Value> {
    api.ok(&format!("/v3/builds/{guid}")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staging_tasks_run_on_cells_and_complete_builds() -> Result<()> {
    common::install_tls();
    let c = InProcess::start("[scheduler]\npresence_ttl_secs = 1\n").await?;
    let db = c.controller().state.db.clone();
    let key =
        tokio::task::spawn_blocking(move || controller_lite::cells::issue_key(&db, "stager-1"))
            .await??;
    let mut cell = FakeCell::start_at(&c.base, key.clone(), "stager-1", "z1", 8192).await?;
    let api = Api::login(&c.base, "admin", "admin-pw").await?;
    let space = api.space_guid().await?;
    let (_app, pkg) = push_bits(&api, &space, "bbs-stager").await?;

    let first = build(&api, &pkg).await?;
    eventually(
        Duration::from_secs(10),
        "the staging task on the cell",
        || {
            let n = cell.tasks().iter().filter(|t| t.task_guid == first).count();
            async move { Ok(n == 1) }
        },
    )
    .await?;
    let work = cell
        .tasks()
        .into_iter()
        .find(|t| t.task_guid == first)
        .context("task")?;
    ensure!(work.domain == "cf-app-staging" && work.definition.rootfs == "preloaded:cflinuxfs4");
    let Action::Serial(steps) = &work.definition.action else {
        anyhow::bail!("a serial staging recipe: {:?}", work.definition.action)
    };
    ensure!(
        matches!(&steps.actions[1], Action::Run(r) if r.path == "/tmp/lifecycle/builder"),
        "{steps:?}"
    );

    // As the cell: upload the droplet and report completion with its key.
    let (s, body) = upload_droplet(&c.base, &key, &first, b"droplet".to_vec()).await?;
    ensure!(s == 200, "{s} {body}");
    let done = json!({"cell_id": "stager-1", "failed": false, "result": common::buildpack_result("./run")});
    let path = format!("/internal/v1/tasks/{first}/completed");
    eventually(Duration::from_secs(5), "the task RUNNING", || {
        let bbs = c.controller().state.bbs.clone();
        let g = first.clone();
        async move {
            let bbs = bbs.context("diego scheduler")?;
            let t = bbs
                .db()
                .read(move |conn| controller_lite::bbs::records::task(conn, &g))
                .await?;
            Ok(t.is_some_and(|t| t.state == diego::models::TaskState::Running))
        }
    })
    .await?;
    let (s, body) = internal(&c.base, &key, Method::POST, &path, Some(done)).await?;
    ensure!(s == 200 && body["build_state"] == "STAGED", "{s} {body}");
    ensure!(build_state(&api, &first).await?["state"] == "STAGED");

    // A second build's cell vanishes while staging: the build fails.
    let second = build(&api, &pkg).await?;
    eventually(
        Duration::from_secs(10),
        "the second task on the cell",
        || {
            let n = cell
                .tasks()
                .iter()
                .filter(|t| t.task_guid == second)
                .count();
            async move { Ok(n == 1) }
        },
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    cell.vanish();
    eventually(Duration::from_secs(8), "the build failed", || {
        let (api, g) = (&api, second.clone());
        async move { Ok(build_state(api, &g).await?["state"] == "FAILED") }
    })
    .await?;
    let failed = build_state(&api, &second).await?;
    ensure!(
        failed["error"]
            .as_str()
            .is_some_and(|e| e.contains("cell disappeared before completion")),
        "{failed}"
    );
    c.stop().await;
    Ok(())
}
