//! Reports that arrive twice change the BBS once: a crash delivered again
//! (a rep's sweep after missed events, a retried call), a crash of an old
//! instance after its index restarted elsewhere, and a task completion
//! delivered twice. The BBS clock is frozen, so no back-off timer moves a
//! record between the deliveries.

#[path = "bbs_common.rs"]
mod bbs_common;
mod common;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use bbs_common::{app_lrp, eventually, net, send_events, Ctl, FakeCell, ManualClock};
use common::{app_with_droplet, internal, Api, InProcess};
use controller_lite::bbs::{records, Bbs};
use diego::models::{ActualLrp, ActualLrpInstanceKey, ActualLrpKey, ActualLrpState, Presence};
use diego::rep::LrpEvent;
use reqwest::Method;
use serde_json::json;

const QUIET: &str = "convergence_interval_secs = 3600";
const PG: &str = "dup-v1";

fn key() -> ActualLrpKey {
    ActualLrpKey::new(PG, 0, "cf-apps")
}

fn instance(guid: &str, cell: &str) -> ActualLrpInstanceKey {
    ActualLrpInstanceKey::new(guid, cell)
}

fn claim_and_run(i: &ActualLrpInstanceKey) -> Vec<LrpEvent> {
    vec![
        LrpEvent::Claimed {
            key: key(),
            instance: i.clone(),
        },
        LrpEvent::Running {
            key: key(),
            instance: i.clone(),
            net_info: net(61000),
        },
    ]
}

fn crashed(i: &ActualLrpInstanceKey) -> LrpEvent {
    LrpEvent::Crashed {
        key: key(),
        instance: i.clone(),
        reason: "Exited with status 1".into(),
    }
}

async fn record(bbs: &Arc<Bbs>, presence: Presence) -> Result<Option<ActualLrp>> {
    Ok(bbs
        .db()
        .read(move |c| records::actual(c, PG, 0, presence))
        .await?)
}

async fn ordinary(bbs: &Arc<Bbs>) -> Result<ActualLrp> {
    record(bbs, Presence::Ordinary).await?.context("the record")
}

/// Sends `events` as `cell` (shared key) and expects them acknowledged.
async fn send(ctl: &Ctl, cell: &str, events: Vec<LrpEvent>) -> Result<()> {
    let status = send_events(&ctl.base, &ctl.shared_key, cell, events).await?;
    ensure!(status == 204, "events not acknowledged: {status}");
    Ok(())
}

/// Waits for the auctions restarts queued (no cell: each records a
/// placement error), until the record stops changing.
async fn placement_settled(bbs: &Arc<Bbs>) -> Result<()> {
    eventually(Duration::from_secs(5), "the placement error", || async {
        Ok(!ordinary(bbs).await?.placement_error.is_empty())
    })
    .await?;
    let mut last = ordinary(bbs).await?;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = ordinary(bbs).await?;
        if now == last {
            return Ok(());
        }
        last = now;
    }
    anyhow::bail!("the record kept changing: {last:?}")
}

/// Delivers `events` and checks the ORDINARY record is exactly as before.
async fn changes_nothing(ctl: &Ctl, cell: &str, events: Vec<LrpEvent>) -> Result<()> {
    let bbs = ctl.bbs();
    let before = ordinary(&bbs).await?;
    send(ctl, cell, events).await?;
    // Long enough for a restart it might have queued to reach the record.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let after = ordinary(&bbs).await?;
    ensure!(after == before, "changed:\n{before:?}\n{after:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_reported_twice_is_counted_once() -> Result<()> {
    let clock = ManualClock::at_now();
    let ctl = Ctl::start_with(QUIET, clock).await?;
    let bbs = ctl.bbs();
    ctl.desire(app_lrp("dup", "v1", 1)).await?;

    // Crash 1 (restart at once): delivered again, nothing changes.
    let first = instance("i-1", "cell-x");
    let mut events = claim_and_run(&first);
    events.push(crashed(&first));
    send(&ctl, "cell-x", events).await?;
    placement_settled(&bbs).await?;
    let r = ordinary(&bbs).await?;
    ensure!(
        r.crash_count == 1 && r.state == ActualLrpState::Unclaimed,
        "{r:?}"
    );
    changes_nothing(&ctl, "cell-x", vec![crashed(&first)]).await?;
    // Twice in one batch too.
    changes_nothing(&ctl, "cell-x", vec![crashed(&first), crashed(&first)]).await?;

    // The index restarts as another instance on another cell; the old
    // instance's crash arrives late: the new instance keeps running.
    let second = instance("i-2", "cell-y");
    send(&ctl, "cell-y", claim_and_run(&second)).await?;
    changes_nothing(&ctl, "cell-x", vec![crashed(&first)]).await?;
    let r = ordinary(&bbs).await?;
    ensure!(
        r.state == ActualLrpState::Running
            && r.instance_key.as_ref() == Some(&second)
            && r.crash_count == 1,
        "{r:?}"
    );

    // Crash 2, then crash 3 (CRASHED, back-off 30 s): repeats of either
    // change nothing, and the count stays 3.
    send(&ctl, "cell-y", vec![crashed(&second)]).await?;
    placement_settled(&bbs).await?;
    let third = instance("i-3", "cell-y");
    let mut events = claim_and_run(&third);
    events.push(crashed(&third));
    send(&ctl, "cell-y", events).await?;
    let r = ordinary(&bbs).await?;
    ensure!(
        r.crash_count == 3 && r.state == ActualLrpState::Crashed,
        "{r:?}"
    );
    changes_nothing(&ctl, "cell-y", vec![crashed(&third), crashed(&second)]).await?;
    changes_nothing(&ctl, "cell-x", vec![crashed(&first)]).await?;
    ensure!(ctl.states("dup").await? == vec![(0, "CRASHED".to_owned())]);
    ctl.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_evacuating_instance_leaves_once() -> Result<()> {
    let clock = ManualClock::at_now();
    let ctl = Ctl::start_with(QUIET, clock).await?;
    let bbs = ctl.bbs();
    ctl.desire(app_lrp("dup", "v1", 1)).await?;
    let old = instance("i-1", "cell-x");
    let mut events = claim_and_run(&old);
    events.push(LrpEvent::Evacuating {
        key: key(),
        instance: old.clone(),
        net_info: net(61000),
    });
    send(&ctl, "cell-x", events).await?;
    ensure!(record(&bbs, Presence::Evacuating).await?.is_some());
    placement_settled(&bbs).await?;
    // The evacuating stand-in crashes: it goes; the replacement's record
    // is untouched (no crash counted against it), twice over.
    changes_nothing(&ctl, "cell-x", vec![crashed(&old)]).await?;
    ensure!(
        record(&bbs, Presence::Evacuating).await?.is_none(),
        "the crashed stand-in is removed"
    );
    changes_nothing(&ctl, "cell-x", vec![crashed(&old)]).await?;
    ensure!(ordinary(&bbs).await?.crash_count == 0);
    ctl.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_completion_delivered_twice_completes_once() -> Result<()> {
    common::install_tls();
    let c = InProcess::start("[scheduler]\nconvergence_interval_secs = 3600\n").await?;
    let db = c.controller().state.db.clone();
    let api = Api::login(&c.base, "admin", "admin-pw").await?;
    let app = app_with_droplet(&c, &api, "twice").await?;
    let cell_key = {
        let db = db.clone();
        tokio::task::spawn_blocking(move || controller_lite::cells::issue_key(&db, "twice-1"))
            .await??
    };
    let cell = FakeCell::start_at(&c.base, cell_key.clone(), "twice-1", "z1", 8192).await?;
    let (s, t) = api
        .post(
            &format!("/v3/apps/{app}/tasks"),
            json!({"command": "true", "name": "once", "memory_in_mb": 64}),
        )
        .await?;
    ensure!(s == 202, "{s} {t}");
    let task = t["guid"].as_str().context("task guid")?.to_owned();
    eventually(
        Duration::from_secs(5),
        "the task RUNNING on the cell",
        || {
            let (db, g) = (db.clone(), task.clone());
            async move {
                let t = db.read(move |c| records::task(c, &g)).await?;
                Ok(t.is_some_and(|t| t.state == diego::models::TaskState::Running))
            }
        },
    )
    .await?;
    let path = format!("/internal/v1/tasks/{task}/completed");
    let done = json!({"cell_id": "twice-1", "failed": false, "result": "ok"});
    let (s, body) = internal(&c.base, &cell_key, Method::POST, &path, Some(done.clone())).await?;
    ensure!(s == 200 && body["task_state"] == "SUCCEEDED", "{s} {body}");
    // Again, and once more claiming a failure: acknowledged, nothing moves.
    let (s, body) = internal(&c.base, &cell_key, Method::POST, &path, Some(done)).await?;
    ensure!(s == 200 && body["already_completed"] == true, "{s} {body}");
    let failed = json!({"cell_id": "twice-1", "failed": true, "failure_reason": "late"});
    let (s, body) = internal(&c.base, &cell_key, Method::POST, &path, Some(failed)).await?;
    ensure!(s == 200 && body["already_completed"] == true, "{s} {body}");
    let t = api.ok(&format!("/v3/tasks/{task}")).await?;
    ensure!(t["state"] == "SUCCEEDED", "{t}");
    let g = task.clone();
    ensure!(db.read(move |c| records::task(c, &g)).await?.is_none());
    drop(cell);
    c.stop().await;
    Ok(())
}
