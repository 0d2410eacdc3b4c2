//! `convergence-bench`: one convergence pass of the controller's BBS over
//! 100,000 LRP instances in SQLite (load + plan + apply), with a realistic
//! small diff: some instances missing, some crashed and due for a restart,
//! one process scaled down, one cell lost. Then a steady-state pass with
//! nothing to do. Target: < 1 s per pass (Diego alerts at 10 s).
//!
//! ```text
//! convergence-bench [--processes 2000] [--instances 50] [--cells 100]
//! ```
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use controller_lite::bbs::records::{self, Generation};
use controller_lite::bbs::{Bbs, BbsSettings, SystemClock, LRP_DOMAIN};
use controller_lite::config::SchedulerConfig;
use controller_lite::db::Db;
use diego::auction::Capacity;
use diego::models::action::RunAction;
use diego::models::{
    Action, ActualLrp, ActualLrpInstanceKey, ActualLrpKey, ActualLrpState, DesiredLrp, NetInfo,
    PortMapping, Timestamp,
};
use diego::rep::CellPresence;

struct Args {
    processes: u32,
    instances: u32,
    cells: u32,
}

fn args() -> Result<Args> {
    let mut a = Args {
        processes: 2000,
        instances: 50,
        cells: 100,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value: u32 = it
            .next()
            .with_context(|| format!("{flag} needs a value"))?
            .parse()
            .with_context(|| format!("{flag} needs a number"))?;
        match flag.as_str() {
            "--processes" => a.processes = value,
            "--instances" => a.instances = value,
            "--cells" => a.cells = value.max(2),
            other => bail!("unknown flag {other}; use --processes, --instances, --cells"),
        }
    }
    Ok(a)
}

fn desired(p: u32, instances: u32) -> Generation {
    let mut d = DesiredLrp::new(
        format!("proc-{p:05}-v1"),
        LRP_DOMAIN,
        Action::Run(RunAction {
            path: "/bin/sh".into(),
            args: vec!["-c".into(), "exec ./app".into()],
            user: "vcap".into(),
            ..RunAction::default()
        }),
    );
    d.instances = instances;
    d.rootfs = "preloaded:cflinuxfs4".into();
    d.memory_mb = 256;
    d.disk_mb = 512;
    d.ports = vec![8080];
    Generation {
        desired: d,
        app_process_guid: format!("proc-{p:05}"),
        app_guid: format!("app-{p:05}"),
        version: "v1".into(),
        target_instances: instances,
        retiring: false,
    }
}

fn presence(c: u32) -> CellPresence {
    CellPresence {
        cell_id: format!("cell-{c:04}"),
        rep_url: "http://127.0.0.1:9".into(),
        rep_key: "k".into(),
        zone: format!("z{}", c % 3),
        stacks: vec!["cflinuxfs4".into()],
        placement_tags: Vec::new(),
        optional_placement_tags: Vec::new(),
        capacity: Capacity {
            memory_mb: 256 * 1024,
            disk_mb: 1 << 20,
            containers: 2000,
        },
        evacuating: false,
    }
}

/// Fills the database: every instance RUNNING, spread over the cells, with
/// the diff convergence has to fix.
fn populate(db: &Db, a: &Args, now: Timestamp) -> Result<(usize, usize)> {
    let (mut total, mut diff) = (0, 0);
    db.write_blocking(|tx| {
        for c in 0..a.cells {
            // The last cell is lost (its presence expired).
            let expires = if c + 1 == a.cells {
                now - Duration::from_secs(1)
            } else {
                now + Duration::from_secs(3600)
            };
            records::put_cell(tx, &presence(c), expires)?;
        }
        for p in 0..a.processes {
            let g = desired(p, a.instances);
            records::put_generation(tx, &g, now)?;
            for i in 0..a.instances {
                // Every 1000th slot is missing.
                if (p * a.instances + i) % 1000 == 999 {
                    diff += 1;
                    continue;
                }
                let cell = (p * a.instances + i) % a.cells;
                let key = ActualLrpKey::new(&g.desired.process_guid, i, LRP_DOMAIN);
                let mut r = ActualLrp::new_unclaimed(key, now - Duration::from_secs(3600));
                let instance =
                    ActualLrpInstanceKey::new(format!("ig-{p}-{i}"), format!("cell-{cell:04}"));
                let net = NetInfo {
                    address: "10.0.0.1".into(),
                    instance_address: String::new(),
                    ports: vec![PortMapping {
                        container_port: 8080,
                        host_port: 61000,
                    }],
                };
                r.start(&instance, net, now - Duration::from_secs(3600))
                    .map_err(|e| controller_lite::db::DbError::Worker(e.to_string()))?;
                // Every 997th instance crashed long ago and may restart.
                if (p * a.instances + i) % 997 == 0 {
                    r.state = ActualLrpState::Crashed;
                    r.instance_key = None;
                    r.net_info = None;
                    r.crash_count = 3;
                    r.since = now - Duration::from_secs(600);
                    diff += 1;
                }
                records::put_actual(tx, &r)?;
                total += 1;
            }
        }
        // One process scaled down by 10: extra instances to retire.
        let mut g = desired(0, a.instances.saturating_sub(10));
        g.target_instances = g.desired.instances;
        records::put_generation(tx, &g, now)?;
        diff += 10;
        Ok(())
    })?;
    Ok((total, diff))
}

fn main() -> Result<()> {
    let a = args()?;
    let dir = tempfile::tempdir()?;
    let db = Db::open(&dir.path().join("bench.db"))?;
    let now = Timestamp::now();
    let t = Instant::now();
    let (total, diff) = populate(&db, &a, now)?;
    println!(
        "populated {total} actual LRPs ({} desired × {}) on {} cells in {} ms; diff: {diff} slots plus one lost cell",
        a.processes,
        a.instances,
        a.cells,
        t.elapsed().as_millis()
    );
    let settings = BbsSettings::from_config(&SchedulerConfig::default());
    let bbs: Arc<Bbs> = Bbs::new(db, settings, Arc::new(SystemClock));
    let first = bbs.converge_once()?;
    let steady = bbs.converge_once()?;
    for (name, r) in [("pass with the diff", &first), ("steady pass", &steady)] {
        println!(
            "{name}: {} ms (load {} ms, plan {} ms, apply {} ms); {} actual, {} desired, {} changes, {} starts queued",
            r.millis, r.load_ms, r.plan_ms, r.apply_ms, r.actual_lrps, r.desired_lrps, r.changes, r.starts
        );
    }
    if first.millis >= 1000 || steady.millis >= 1000 {
        println!("ABOVE TARGET: a pass took 1 s or more");
    }
    Ok(())
}
