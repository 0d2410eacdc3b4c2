//! The auctioneer against small honest cells (axum servers answering the
//! rep's `/state`, `/work` and stops and reporting events with their own
//! keys): spread and placement errors, lost cells replaced within seconds,
//! rolling restarts that keep N − 1 instances running.

#[path = "bbs_common.rs"]
mod bbs_common;

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use bbs_common::{app_lrp, eventually, Ctl, FakeCell};

async fn cells(ctl: &Ctl, n: usize, memory_mb: u64) -> Result<Vec<FakeCell>> {
    let mut out = Vec::new();
    for i in 0..n {
        let zone = format!("z{}", i % 3);
        out.push(FakeCell::start(ctl, &format!("cell-{i}"), &zone, memory_mb).await?);
    }
    Ok(out)
}

async fn placement_error(db: &controller_lite::db::Db) -> Result<String> {
    Ok(db
        .read(|c| {
            Ok(c.query_row(
                "SELECT placement_error FROM bbs_actual_lrps WHERE process_guid = 'big-v1'",
                [],
                |r| r.get(0),
            )?)
        })
        .await?)
}

async fn all_running(ctl: &Ctl, pg: &str, n: usize) -> Result<bool> {
    let s = ctl.states(pg).await?;
    Ok(s.len() == n && s.iter().all(|(_, st)| st == "RUNNING"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auction_spreads_instances_and_records_what_fits_nowhere() -> Result<()> {
    let ctl = Ctl::start("").await?;
    let cells = cells(&ctl, 3, 1024).await?;
    ctl.desire(app_lrp("spread", "v1", 6)).await?;
    eventually(Duration::from_secs(10), "6 running", || {
        all_running(&ctl, "spread", 6)
    })
    .await?;
    let counts: Vec<usize> = cells.iter().map(FakeCell::instance_count).collect();
    ensure!(counts == vec![2, 2, 2], "spread evenly: {counts:?}");

    // Scale down: the highest indices stop on their cells; up again: new
    // instances are placed.
    let s = ctl.controller().state.scheduler.clone();
    tokio::task::spawn_blocking(move || s.scale_lrp("spread", 2)).await??;
    eventually(Duration::from_secs(5), "scaled down to 2", || {
        let on_cells: usize = cells.iter().map(FakeCell::instance_count).sum();
        let ctl = &ctl;
        async move { Ok(on_cells == 2 && all_running(ctl, "spread", 2).await?) }
    })
    .await?;
    let s = ctl.controller().state.scheduler.clone();
    tokio::task::spawn_blocking(move || s.scale_lrp("spread", 6)).await??;
    eventually(Duration::from_secs(10), "scaled up to 6", || {
        all_running(&ctl, "spread", 6)
    })
    .await?;
    let counts: Vec<usize> = cells.iter().map(FakeCell::instance_count).collect();
    ensure!(counts == vec![2, 2, 2], "spread evenly again: {counts:?}");

    // 4 × 256 MB fit in what is left (3 × 512 MB); a 2 GB instance fits nowhere.
    let mut big = app_lrp("big", "v1", 1);
    big.memory_mb = 2048;
    ctl.desire(big).await?;
    ctl.desire(app_lrp("more", "v1", 4)).await?;
    eventually(Duration::from_secs(10), "4 more running", || {
        all_running(&ctl, "more", 4)
    })
    .await?;
    let db = ctl.controller().state.db.clone();
    eventually(Duration::from_secs(5), "a placement error", || {
        let db = db.clone();
        async move { Ok(!placement_error(&db).await?.is_empty()) }
    })
    .await?;
    let error = placement_error(&db).await?;
    ensure!(
        error.contains("insufficient resources") && error.contains("memory"),
        "{error}"
    );
    ensure!(ctl.states("big").await?[0].1 == "UNCLAIMED");
    ctl.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_cell_is_replaced_within_seconds() -> Result<()> {
    // Presence lives 1 s; convergence would wait an hour: only the expiry
    // timer can notice.
    let ctl = Ctl::start("presence_ttl_secs = 1\nconvergence_interval_secs = 3600").await?;
    let mut cells = cells(&ctl, 3, 2048).await?;
    ctl.desire(app_lrp("lost", "v1", 6)).await?;
    eventually(Duration::from_secs(10), "6 running", || {
        all_running(&ctl, "lost", 6)
    })
    .await?;
    let victim = cells
        .iter()
        .position(|c| c.instance_count() > 0)
        .unwrap_or(0);
    let lost = cells[victim].instance_count();
    cells[victim].vanish();
    let t0 = Instant::now();
    let db = ctl.controller().state.db.clone();
    eventually(
        Duration::from_secs(8),
        "replacements running elsewhere",
        || {
            let survivors: usize = cells
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != victim)
                .map(|(_, c)| c.instance_count())
                .sum();
            let (ctl, db) = (&ctl, db.clone());
            async move {
                // Running replacements retire the suspects.
                let suspects: i64 = db
                    .read(|c| {
                        Ok(c.query_row(
                            "SELECT COUNT(*) FROM bbs_actual_lrps WHERE presence = 'SUSPECT'",
                            [],
                            |r| r.get(0),
                        )?)
                    })
                    .await?;
                Ok(survivors == 6 && suspects == 0 && all_running(ctl, "lost", 6).await?)
            }
        },
    )
    .await?;
    let took = t0.elapsed();
    eprintln!(
        "{lost} instances of a lost cell replaced and RUNNING in {took:?} (presence TTL 1 s)"
    );
    ensure!(took < Duration::from_secs(5), "{took:?}");
    ensure!(ctl.running_records("lost").await? == 6);
    ctl.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_keeps_n_minus_one_running() -> Result<()> {
    let ctl = Ctl::start("").await?;
    let cells = cells(&ctl, 3, 4096).await?;
    for c in &cells {
        c.set_start_delay(Duration::from_millis(300));
    }
    ctl.desire(app_lrp("roll", "v1", 3)).await?;
    eventually(Duration::from_secs(10), "v1 running", || {
        all_running(&ctl, "roll", 3)
    })
    .await?;
    ctl.desire(app_lrp("roll", "v2", 3)).await?;
    let mut lowest = i64::MAX;
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let running = ctl.running_records("roll").await?;
        lowest = lowest.min(running);
        let on_cells: Vec<_> = cells.iter().map(FakeCell::instances).collect();
        let v1_left = on_cells.iter().any(|m| m.contains_key("roll-v1"));
        let v2: usize = on_cells
            .iter()
            .map(|m| m.get("roll-v2").copied().unwrap_or(0))
            .sum();
        if !v1_left && v2 == 3 && all_running(&ctl, "roll", 3).await? {
            break;
        }
        ensure!(Instant::now() < end, "rollout stalled: {on_cells:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("rolling restart of 3 instances: lowest RUNNING count {lowest}");
    ensure!(
        lowest >= 2,
        "at least N-1 kept running; lowest was {lowest}"
    );
    let db = ctl.controller().state.db.clone();
    let generations: i64 = db
        .read(|c| {
            Ok(c.query_row(
                "SELECT COUNT(*) FROM bbs_desired_lrps WHERE app_process_guid = 'roll'",
                [],
                |r| r.get(0),
            )?)
        })
        .await?;
    ensure!(generations == 1, "the old generation is gone");
    ctl.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evacuating_cell_keeps_instances_until_replacements_run() -> Result<()> {
    let ctl = Ctl::start("").await?;
    let cells = cells(&ctl, 3, 2048).await?;
    ctl.desire(app_lrp("evac", "v1", 3)).await?;
    eventually(Duration::from_secs(10), "3 running", || {
        all_running(&ctl, "evac", 3)
    })
    .await?;
    let leaving = &cells[0];
    ensure!(leaving.instance_count() == 1, "one per cell first");
    leaving.evacuate().await?;
    eventually(Duration::from_secs(10), "replaced and stopped", || {
        let moved = leaving.instance_count() == 0
            && cells[1].instance_count() + cells[2].instance_count() == 3;
        let ctl = &ctl;
        async move { Ok(moved && all_running(ctl, "evac", 3).await?) }
    })
    .await?;
    ensure!(ctl.running_records("evac").await? == 3);
    ctl.stop().await;
    Ok(())
}
