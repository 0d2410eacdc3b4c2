//! The BBS through the internal API with real HTTP and SQLite: presence
//! and events with per-cell keys, crash back-off with an injected clock,
//! and the single-auctioneer lease.

#[path = "bbs_common.rs"]
mod bbs_common;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Result};
use bbs_common::{app_lrp, call, eventually, net, send_events, Ctl, ManualClock};
use controller_lite::bbs::{Bbs, BbsSettings};
use controller_lite::config::SchedulerConfig;
use controller_lite::db::Db;
use diego::models::{ActualLrpInstanceKey, ActualLrpKey};
use diego::rep::{CellPresence, LrpEvent};
use reqwest::Method;
use serde_json::json;

const QUIET: &str = "convergence_interval_secs = 3600";

fn presence(cell: &str) -> serde_json::Value {
    serde_json::to_value(CellPresence {
        cell_id: cell.into(),
        // Nothing listens: auctions leave the instances UNCLAIMED.
        rep_url: "http://127.0.0.1:9".into(),
        rep_key: "k".into(),
        zone: "z1".into(),
        stacks: vec!["cflinuxfs4".into()],
        placement_tags: Vec::new(),
        optional_placement_tags: Vec::new(),
        capacity: diego::auction::Capacity {
            memory_mb: 1024,
            disk_mb: 1024,
            containers: 10,
        },
        evacuating: false,
    })
    .expect("json")
}

fn key(pg: &str, index: u32) -> ActualLrpKey {
    ActualLrpKey::new(pg, index, "cf-apps")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_cell_keys_guard_presence_and_events() -> Result<()> {
    let ctl = Ctl::start(QUIET).await?;
    let (a, b) = (ctl.cell_key("cell-a").await?, ctl.cell_key("cell-b").await?);
    let url = format!("{}/internal/v1/cells/cell-a/presence", ctl.base);
    ensure!(call(Method::PUT, url.clone(), &a, Some(presence("cell-a"))).await? == 200);
    ensure!(
        call(Method::PUT, url.clone(), &b, Some(presence("cell-a"))).await? == 403,
        "cell-b's key must not announce cell-a"
    );
    ensure!(call(Method::PUT, url.clone(), "nope", Some(presence("cell-a"))).await? == 401);
    let mismatched = format!("{}/internal/v1/cells/cell-b/presence", ctl.base);
    ensure!(call(Method::PUT, mismatched, &b, Some(presence("cell-a"))).await? == 403);

    ctl.desire(app_lrp("p1", "v1", 2)).await?;
    ensure!(ctl.states("p1").await? == vec![(0, "UNCLAIMED".into()), (1, "UNCLAIMED".into())]);
    let pg = "p1-v1";
    let inst = ActualLrpInstanceKey::new("i-0", "cell-a");
    let claimed = LrpEvent::Claimed {
        key: key(pg, 0),
        instance: inst.clone(),
    };
    ensure!(send_events(&ctl.base, &b, "cell-a", vec![claimed.clone()]).await? == 403);
    ensure!(send_events(&ctl.base, &a, "cell-a", vec![claimed]).await? == 204);
    let running = LrpEvent::Running {
        key: key(pg, 0),
        instance: inst.clone(),
        net_info: net(61001),
    };
    ensure!(send_events(&ctl.base, &a, "cell-a", vec![running]).await? == 204);
    let states = ctl.states("p1").await?;
    ensure!(states[0] == (0, "RUNNING".into()), "{states:?}");
    // RUNNING makes it routable.
    let routes: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/internal/v1/routes", ctl.base))
        .bearer_auth(&a)
        .send()
        .await?
        .json()
        .await?;
    ensure!(
        routes[0]["hostnames"][0] == "app.example.com"
            && routes[0]["port"] == 61001
            && routes[0]["index"] == 0
            && routes.as_array().map(Vec::len) == Some(1),
        "{routes}"
    );

    // Another instance guid cannot move a held record.
    let thief = LrpEvent::Crashed {
        key: key(pg, 0),
        instance: ActualLrpInstanceKey::new("other", "cell-a"),
        reason: "x".into(),
    };
    ensure!(send_events(&ctl.base, &a, "cell-a", vec![thief]).await? == 204);
    ensure!(ctl.states("p1").await?[0].1 == "RUNNING");

    // Metrics feed the process stats.
    let metrics = json!({"containers": [{"process_guid": pg, "index": 0, "instance_guid": "i-0",
        "cpu_fraction": 0.5, "memory_bytes": 1234, "memory_limit_bytes": 0, "disk_bytes": 99,
        "disk_limit_bytes": 0, "uptime_secs": 3}]});
    let murl = format!("{}/internal/v1/cells/cell-a/metrics", ctl.base);
    ensure!(call(Method::POST, murl.clone(), &b, Some(metrics.clone())).await? == 403);
    let metrics_again = metrics.clone();
    ensure!(call(Method::POST, murl, &a, Some(metrics)).await? == 204);
    let s = ctl.controller().state.scheduler.clone();
    let actual = tokio::task::spawn_blocking(move || s.actual_lrps("p1")).await??;
    ensure!(
        actual[0].mem == 1234 && actual[0].port == Some(61001),
        "{actual:?}"
    );
    // ... and `/metrics`, beside the BBS gauges.
    let scrape = || async {
        reqwest::get(format!("{}/metrics", ctl.base))
            .await?
            .text()
            .await
    };
    let text = scrape().await?;
    for want in [
        "controller_bbs_cells_present 1",
        "controller_bbs_desired_instances 2",
        "controller_bbs_actual_lrps{state=\"RUNNING\",presence=\"ORDINARY\"} 1",
        "controller_bbs_actual_lrps{state=\"UNCLAIMED\",presence=\"ORDINARY\"} 1",
        "controller_instance_memory_bytes{process_guid=\"p1-v1\",index=\"0\",instance_guid=\"i-0\",cell_id=\"cell-a\"} 1234",
    ] {
        ensure!(text.contains(want), "/metrics lacks {want:?}:\n{text}");
    }
    // A batch covers all the cell's containers: one it omits is gone.
    let murl = format!("{}/internal/v1/cells/cell-a/metrics", ctl.base);
    let empty = json!({"containers": []});
    ensure!(call(Method::POST, murl.clone(), &a, Some(empty)).await? == 204);
    ensure!(!scrape().await?.contains("instance_guid=\"i-0\""));
    ensure!(call(Method::POST, murl, &a, Some(metrics_again)).await? == 204);
    ensure!(scrape().await?.contains("instance_guid=\"i-0\""));

    // The cell leaves: its RUNNING instance becomes SUSPECT, a replacement
    // is created at once.
    let del = call(Method::DELETE, url.clone(), &a, None).await?;
    ensure!(del == 204, "{del}");
    let n = ctl.running_records("p1").await?;
    ensure!(n == 1, "the suspect keeps running until replaced: {n}");
    let db = ctl.controller().state.db.clone();
    let suspects: i64 = db
        .read(|c| {
            Ok(c.query_row(
                "SELECT COUNT(*) FROM bbs_actual_lrps WHERE presence = 'SUSPECT'",
                [],
                |r| r.get(0),
            )?)
        })
        .await?;
    ensure!(suspects == 1);
    // The cell's container metrics left with it.
    let text = scrape().await?;
    ensure!(
        !text.contains("instance_guid=\"i-0\"") && text.contains("controller_bbs_cells_present 0"),
        "{text}"
    );

    // The cell returns and reconciles: it reports the same instance
    // RUNNING, which is adopted into the empty slot; the suspect record goes.
    ensure!(call(Method::PUT, url, &a, Some(presence("cell-a"))).await? == 200);
    let adopted = LrpEvent::Running {
        key: key(pg, 0),
        instance: inst.clone(),
        net_info: net(61001),
    };
    ensure!(send_events(&ctl.base, &a, "cell-a", vec![adopted]).await? == 204);
    let counts: (i64, i64) = db
        .read(|c| {
            Ok(c.query_row(
                "SELECT SUM(presence = 'SUSPECT'), SUM(state = 'RUNNING') FROM bbs_actual_lrps WHERE idx = 0",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?)
        })
        .await?;
    ensure!(counts == (0, 1), "adopted, no suspect left: {counts:?}");
    ctl.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_back_off_follows_diego_with_an_injected_clock() -> Result<()> {
    let clock = ManualClock::at_now();
    let ctl = Ctl::start_with(QUIET, clock.clone()).await?;
    let k = ctl.shared_key.clone();
    ctl.desire(app_lrp("p2", "v1", 1)).await?;
    let pg = "p2-v1";
    let bbs = ctl.bbs();
    let crash = |n: u32| {
        let inst = ActualLrpInstanceKey::new(format!("i-{n}"), "cell-x");
        vec![
            LrpEvent::Claimed {
                key: key(pg, 0),
                instance: inst.clone(),
            },
            LrpEvent::Running {
                key: key(pg, 0),
                instance: inst.clone(),
                net_info: net(61000),
            },
            LrpEvent::Crashed {
                key: key(pg, 0),
                instance: inst,
                reason: "exited with status 1".into(),
            },
        ]
    };
    // Crashes 1 and 2 restart at once (UNCLAIMED again).
    for n in 1..=2 {
        ensure!(send_events(&ctl.base, &k, "cell-x", crash(n)).await? == 204);
        let s = ctl.states("p2").await?;
        ensure!(s[0].1 == "UNCLAIMED", "crash {n}: {s:?}");
    }
    // Crash 3 waits 30 s, crash 4 60 s: the BBS's timer restarts them
    // when the back-off ends (no periodic pass runs: interval 1 h).
    for (n, wait) in [(3, 30), (4, 60)] {
        ensure!(send_events(&ctl.base, &k, "cell-x", crash(n)).await? == 204);
        ensure!(ctl.states("p2").await?[0].1 == "CRASHED");
        clock.advance(Duration::from_secs(wait - 1));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        ensure!(
            ctl.states("p2").await?[0].1 == "CRASHED",
            "crash {n}: restarted too early"
        );
        clock.advance(Duration::from_secs(2));
        eventually(Duration::from_secs(3), "the restart", || async {
            Ok(ctl.states("p2").await?[0].1 == "UNCLAIMED")
        })
        .await?;
    }
    // A manual pass finds nothing left to do.
    let b = bbs.clone();
    let report = tokio::task::spawn_blocking(move || b.converge_once()).await??;
    ensure!(report.changes == 0, "{report:?}");
    ctl.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_auctioneer_per_database() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("c.db");
    let clock = ManualClock::at_now();
    let settings = BbsSettings::from_config(&SchedulerConfig::default());
    let one = Bbs::new(Db::open(&path)?, settings.clone(), clock.clone());
    let two = Bbs::new(
        Db::open(&path)?,
        BbsSettings {
            owner: "second".into(),
            ..settings
        },
        clock.clone(),
    );
    ensure!(one.renew_lease()? && one.is_leader());
    ensure!(!two.renew_lease()? && !two.is_leader(), "two leaders");
    clock.advance(Duration::from_secs(5));
    ensure!(one.renew_lease()?, "the holder renews");
    clock.advance(Duration::from_secs(14));
    ensure!(!two.renew_lease()?, "renewed lease still valid");
    clock.advance(Duration::from_secs(2));
    ensure!(two.renew_lease()?, "an expired lease is taken over");
    ensure!(
        !one.renew_lease()? && !one.is_leader(),
        "the old holder steps down"
    );
    two.release_lease()?;
    ensure!(one.renew_lease()?, "a released lease is free");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_lifecycle_through_the_internal_api() -> Result<()> {
    let ctl = Ctl::start(QUIET).await?;
    let a = ctl.cell_key("cell-t").await?;
    let def = controller_lite::scheduler::TaskDefinition {
        task_guid: "t-1".into(),
        domain: controller_lite::scheduler::TASKS_DOMAIN.into(),
        app_guid: "app".into(),
        stack: Some("cflinuxfs4".into()),
        memory_mb: 64,
        disk_mb: 64,
        env: Default::default(),
        log_source_id: "app".into(),
        log_source_type: "APP/TASK/t".into(),
        result_file: None,
        action: controller_lite::scheduler::TaskAction::Run {
            droplet: None,
            docker_image: Some("busybox".into()),
            command: "true".into(),
        },
        deadline: i64::MAX,
        egress_rules: Vec::new(),
    };
    let s = ctl.controller().state.scheduler.clone();
    tokio::task::spawn_blocking(move || s.submit_task(&def)).await??;
    let started = format!("{}/internal/v1/tasks/t-1/started", ctl.base);
    let other = ctl.cell_key("cell-u").await?;
    ensure!(
        call(
            Method::POST,
            started.clone(),
            &other,
            Some(json!({"cell_id": "cell-t"}))
        )
        .await?
            == 403
    );
    ensure!(
        call(
            Method::POST,
            started,
            &a,
            Some(json!({"cell_id": "cell-t"}))
        )
        .await?
            == 204
    );
    let done = format!("{}/internal/v1/tasks/t-1/completed", ctl.base);
    let body = json!({"cell_id": "cell-u", "failed": false, "result": "ok"});
    let wrong = call(Method::POST, done.clone(), &other, Some(body)).await?;
    ensure!(wrong == 422, "only the running cell completes it: {wrong}");
    let body = json!({"cell_id": "cell-t", "failed": false, "result": "ok"});
    let ok = call(Method::POST, done.clone(), &a, Some(body.clone())).await?;
    ensure!(ok == 200, "{ok}");
    let bbs: Arc<Bbs> = ctl.bbs();
    let left = bbs
        .db()
        .read(|c| controller_lite::bbs::records::task(c, "t-1"))
        .await?;
    ensure!(left.is_none(), "completed tasks leave the BBS");
    ctl.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_expiry_is_noticed_at_expires_at_with_an_injected_clock() -> Result<()> {
    let clock = ManualClock::at_now();
    let ctl = Ctl::start_with(QUIET, clock.clone()).await?;
    let a = ctl.cell_key("cell-e").await?;
    let url = format!("{}/internal/v1/cells/cell-e/presence", ctl.base);
    ensure!(call(Method::PUT, url, &a, Some(presence("cell-e"))).await? == 200);
    ctl.desire(app_lrp("p3", "v1", 1)).await?;
    let inst = ActualLrpInstanceKey::new("i-e", "cell-e");
    let events = vec![
        LrpEvent::Claimed {
            key: key("p3-v1", 0),
            instance: inst.clone(),
        },
        LrpEvent::Running {
            key: key("p3-v1", 0),
            instance: inst,
            net_info: net(61002),
        },
    ];
    ensure!(send_events(&ctl.base, &a, "cell-e", events).await? == 204);
    let suspects = || async {
        let n: i64 = ctl
            .controller()
            .state
            .db
            .read(|c| {
                Ok(c.query_row(
                    "SELECT COUNT(*) FROM bbs_actual_lrps WHERE presence = 'SUSPECT'",
                    [],
                    |r| r.get(0),
                )?)
            })
            .await?;
        Ok::<_, anyhow::Error>(n)
    };
    // 14 s of a 15 s TTL: still present.
    clock.advance(Duration::from_secs(14));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    ensure!(suspects().await? == 0, "expired too early");
    // Past expires_at: the timer (not a periodic pass: interval 1 h) acts.
    clock.advance(Duration::from_secs(2));
    eventually(Duration::from_secs(3), "the instance SUSPECT", || async {
        Ok(suspects().await? == 1)
    })
    .await?;
    let states = ctl.states("p3").await?;
    ensure!(
        states[0].1 == "RUNNING",
        "the suspect still shows: {states:?}"
    );
    ctl.stop().await;
    Ok(())
}
