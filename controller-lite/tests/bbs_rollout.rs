//! A rolling restart whose new version keeps crashing: the old instances
//! keep running (nothing is retired for a new instance that is not
//! RUNNING, and an old instance retired for a new one that crashed later
//! comes back), and the actual state shows the new version's CRASHED
//! instance. Cells are played through LRP events with the shared key; the
//! BBS clock is frozen, so no back-off timer restarts anything meanwhile.

#[path = "bbs_common.rs"]
mod bbs_common;

use std::sync::Arc;

use anyhow::{ensure, Result};
use bbs_common::{app_lrp, net, send_events, Ctl, ManualClock};
use controller_lite::bbs::{records, Bbs};
use diego::models::{ActualLrpInstanceKey, ActualLrpKey, ActualLrpState, Presence};
use diego::rep::LrpEvent;

const QUIET: &str = "convergence_interval_secs = 3600";
const CELL: &str = "cell-r";

fn key(pg: &str, index: u32) -> ActualLrpKey {
    ActualLrpKey::new(pg, index, "cf-apps")
}

fn claimed(pg: &str, index: u32, guid: &str) -> LrpEvent {
    LrpEvent::Claimed {
        key: key(pg, index),
        instance: ActualLrpInstanceKey::new(guid, CELL),
    }
}

fn running(pg: &str, index: u32, guid: &str) -> LrpEvent {
    LrpEvent::Running {
        key: key(pg, index),
        instance: ActualLrpInstanceKey::new(guid, CELL),
        net_info: net(61000),
    }
}

fn crashed(pg: &str, index: u32, guid: &str) -> LrpEvent {
    LrpEvent::Crashed {
        key: key(pg, index),
        instance: ActualLrpInstanceKey::new(guid, CELL),
        reason: "Exited with status 1".into(),
    }
}

async fn send(ctl: &Ctl, events: Vec<LrpEvent>) -> Result<()> {
    let status = send_events(&ctl.base, &ctl.shared_key, CELL, events).await?;
    ensure!(status == 204, "events not acknowledged: {status}");
    Ok(())
}

/// `(instances now, RUNNING ordinary records)` of one generation.
async fn generation(bbs: &Arc<Bbs>, pg: &str) -> Result<(u32, usize)> {
    let pg = pg.to_owned();
    Ok(bbs
        .db()
        .read(move |c| {
            let instances = records::desired(c, &pg)?.map_or(0, |d| d.instances);
            let running = records::actuals_of(c, &pg)?
                .iter()
                .filter(|a| a.presence == Presence::Ordinary && a.state == ActualLrpState::Running)
                .count();
            Ok((instances, running))
        })
        .await?)
}

/// v1 with 3 RUNNING instances, then v2 desired.
async fn rolling(ctl: &Ctl, name: &str) -> Result<(String, String)> {
    let (v1, v2) = (format!("{name}-v1"), format!("{name}-v2"));
    ctl.desire(app_lrp(name, "v1", 3)).await?;
    let mut events = Vec::new();
    for index in 0..3 {
        let guid = format!("old-{index}");
        events.push(claimed(&v1, index, &guid));
        events.push(running(&v1, index, &guid));
    }
    send(ctl, events).await?;
    ensure!(generation(&ctl.bbs(), &v1).await? == (3, 3));
    ctl.desire(app_lrp(name, "v2", 3)).await?;
    ensure!(
        generation(&ctl.bbs(), &v2).await? == (1, 0),
        "one new instance first"
    );
    Ok((v1, v2))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_that_never_runs_retires_nothing() -> Result<()> {
    let ctl = Ctl::start_with(QUIET, ManualClock::at_now()).await?;
    let bbs = ctl.bbs();
    let (v1, v2) = rolling(&ctl, "never").await?;
    // Three start attempts of v2's instance 0 crash before it is healthy.
    for n in 1..=3 {
        let guid = format!("new-{n}");
        send(&ctl, vec![claimed(&v2, 0, &guid), crashed(&v2, 0, &guid)]).await?;
        ensure!(
            generation(&bbs, &v1).await? == (3, 3),
            "crash {n}: the old instances all run"
        );
        ensure!(
            generation(&bbs, &v2).await? == (1, 0),
            "crash {n}: no second new instance"
        );
    }
    let r = bbs
        .db()
        .read(move |c| records::actual(c, &v2, 0, Presence::Ordinary))
        .await?;
    ensure!(
        r.as_ref()
            .is_some_and(|r| r.state == ActualLrpState::Crashed && r.crash_count == 3),
        "{r:?}"
    );
    // The actual state: the 3 old instances per index, then the new
    // version's CRASHED one under its own process guid.
    let s = ctl.controller().state.scheduler.clone();
    let actual = tokio::task::spawn_blocking(move || s.actual_lrps("never")).await??;
    let shown: Vec<(String, i64, String)> = actual
        .iter()
        .map(|a| (a.process_guid.clone(), a.index, a.state.clone()))
        .collect();
    let want: Vec<(String, i64, String)> = vec![
        ("never".into(), 0, "RUNNING".into()),
        ("never".into(), 1, "RUNNING".into()),
        ("never".into(), 2, "RUNNING".into()),
        ("never-v2".into(), 0, "CRASHED".into()),
    ];
    ensure!(shown == want, "{shown:?}");
    ctl.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_that_crashes_after_running_does_not_wear_the_old_one_down() -> Result<()> {
    let ctl = Ctl::start_with(QUIET, ManualClock::at_now()).await?;
    let bbs = ctl.bbs();
    let (v1, v2) = rolling(&ctl, "flap").await?;
    let mut old_guid = 100;
    for n in 1..=3 {
        // v2's instance 0 becomes healthy: one old instance may go (N − 1
        // old + 1 new serve), and a second new instance is started.
        let guid = format!("new-{n}");
        send(&ctl, vec![claimed(&v2, 0, &guid), running(&v2, 0, &guid)]).await?;
        ensure!(generation(&bbs, &v1).await? == (2, 2), "cycle {n}");
        ensure!(generation(&bbs, &v2).await? == (2, 1), "cycle {n}");
        // It crashes: the retired old index comes back (UNCLAIMED, then
        // started again by its cell), the second new instance goes.
        send(&ctl, vec![crashed(&v2, 0, &guid)]).await?;
        ensure!(
            generation(&bbs, &v1).await? == (3, 2),
            "cycle {n}: old grows back"
        );
        ensure!(generation(&bbs, &v2).await? == (1, 0), "cycle {n}");
        old_guid += 1;
        let back = format!("old-{old_guid}");
        send(&ctl, vec![claimed(&v1, 2, &back), running(&v1, 2, &back)]).await?;
        ensure!(
            generation(&bbs, &v1).await? == (3, 3),
            "cycle {n}: old all run"
        );
    }
    ctl.stop().await;
    Ok(())
}
