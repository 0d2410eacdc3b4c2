//! `auction-bench [--check]`: the pure auction placing 100,000 LRP instances
//! (2,000 apps × 50, mixed memory) on 1,000 simulated cells in 3 zones, then
//! 10,000 Tasks, on one thread. Prints placements per second and spread
//! quality, and the time of one convergence plan over those 100,000
//! instances; with `--check`, exits 1 below 20,000 placements/s.

use std::collections::{BTreeMap, HashSet};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use diego::auction::{
    auction, AuctionResults, Capacity, CellState, LrpInstance, LrpStart, TaskStart, Work,
};
use diego::convergence::{converge, ConvergenceConfig};
use diego::models::{
    Action, ActualLrp, ActualLrpInstanceKey, ActualLrpKey, DesiredLrp, NetInfo,
    PlacementConstraint, Resource, Timestamp,
};

const CELLS: usize = 1_000;
const ZONES: usize = 3;
const APPS: usize = 2_000;
const INSTANCES: u32 = 50;
const TASKS: usize = 10_000;
const TARGET_PER_SEC: f64 = 20_000.0;
const MIXED_MEMORY_MB: [u64; 4] = [128, 256, 512, 1024];

fn cells() -> Vec<CellState> {
    let cap = Capacity {
        memory_mb: 64 * 1024,
        disk_mb: 200 * 1024,
        containers: 250,
    };
    (0..CELLS)
        .map(|i| CellState {
            cell_id: format!("cell-{i:04}"),
            zone: format!("z{}", i % ZONES + 1),
            stacks: vec!["cflinuxfs4".into(), "docker".into()],
            total: cap,
            available: cap,
            ..CellState::default()
        })
        .collect()
}

fn constraint() -> PlacementConstraint {
    PlacementConstraint {
        rootfs: "preloaded:cflinuxfs4".into(),
        placement_tags: Vec::new(),
    }
}

fn lrps(memory_of: impl Fn(usize) -> u64) -> Vec<LrpStart> {
    let constraint = constraint();
    let mut out = Vec::with_capacity(APPS * INSTANCES as usize);
    for app in 0..APPS {
        let resource = Resource {
            memory_mb: memory_of(app),
            disk_mb: 1024,
            max_pids: 1024,
        };
        for index in 0..INSTANCES {
            out.push(LrpStart {
                key: ActualLrpKey::new(format!("app-{app:04}"), index, "cf-apps"),
                resource,
                constraint: constraint.clone(),
            });
        }
    }
    out
}

fn tasks() -> Vec<TaskStart> {
    (0..TASKS)
        .map(|i| TaskStart {
            task_guid: format!("task-{i:05}"),
            domain: "cf-tasks".into(),
            resource: Resource {
                memory_mb: MIXED_MEMORY_MB[i % 4],
                disk_mb: 2048,
                max_pids: 1024,
            },
            constraint: constraint(),
        })
        .collect()
}

/// Runs the auction 3 times, returns the fastest time and the last result.
fn timed(cells: &[CellState], batch: &Work) -> (Duration, AuctionResults) {
    let mut best = Duration::MAX;
    let mut last = AuctionResults::default();
    for _ in 0..3 {
        let batch = batch.clone();
        let start = Instant::now();
        last = std::hint::black_box(auction(cells, batch));
        best = best.min(start.elapsed());
    }
    (best, last)
}

fn per_sec(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

/// (min, max) work items per cell, counting cells that got nothing.
fn spread(results: &AuctionResults, count: impl Fn(&Work) -> usize) -> (usize, usize) {
    let counts: Vec<usize> = results.placed.values().map(count).collect();
    let min = if counts.len() < CELLS {
        0
    } else {
        counts.iter().copied().min().unwrap_or(0)
    };
    (min, counts.iter().copied().max().unwrap_or(0))
}

fn zone_balance(results: &AuctionResults, process_guid: &str) -> BTreeMap<String, usize> {
    let mut zones = BTreeMap::new();
    for (cell, work) in &results.placed {
        let n = work
            .lrps
            .iter()
            .filter(|l| l.key.process_guid == process_guid)
            .count();
        let index: usize = cell.trim_start_matches("cell-").parse().unwrap_or(0);
        *zones.entry(format!("z{}", index % ZONES + 1)).or_default() += n;
    }
    zones
}

fn report(name: &str, n: usize, d: Duration, results: &AuctionResults) -> f64 {
    let rate = per_sec(n, d);
    let failed = results.failed_lrps.len() + results.failed_tasks.len();
    println!(
        "{name}: {n} placements in {:.1} ms = {rate:.0} placements/s ({failed} failed)",
        d.as_secs_f64() * 1e3
    );
    rate
}

/// The same 100,000 instances in 100 batches of 1,000, each auctioned against
/// the cells as the previous batches left them (Diego's batching).
fn batched(batch: &[LrpStart]) -> Duration {
    let mut cells = cells();
    let mut total = Duration::ZERO;
    for chunk in batch.chunks(1_000) {
        let work = Work {
            lrps: chunk.to_vec(),
            tasks: Vec::new(),
        };
        let start = Instant::now();
        let results = auction(&cells, work);
        total += start.elapsed();
        for cell in &mut cells {
            let Some(work) = results.placed.get(&cell.cell_id) else {
                continue;
            };
            for lrp in &work.lrps {
                cell.available.memory_mb -= lrp.resource.memory_mb;
                cell.available.disk_mb -= lrp.resource.disk_mb;
                cell.available.containers -= 1;
                cell.lrps.push(LrpInstance {
                    process_guid: lrp.key.process_guid.clone(),
                    index: lrp.key.index,
                });
            }
        }
    }
    total
}

/// One convergence pass over the placed instances, with cell-0000 lost,
/// every 100th instance CRASHED and every 1000th missing.
fn convergence(results: &AuctionResults) -> (Duration, String) {
    let now = Timestamp::from_unix_secs(1_000_000);
    let desired: Vec<DesiredLrp> = (0..APPS)
        .map(|app| {
            let mut d = DesiredLrp::new(
                format!("app-{app:04}"),
                "cf-apps",
                Action::Parallel(Default::default()),
            );
            d.instances = INSTANCES;
            d.rootfs = "preloaded:cflinuxfs4".into();
            d.memory_mb = MIXED_MEMORY_MB[app % 4];
            d
        })
        .collect();
    let mut actual = Vec::with_capacity(APPS * INSTANCES as usize);
    let earlier = now - Duration::from_secs(60);
    let all = results
        .placed
        .iter()
        .flat_map(|(cell, w)| w.lrps.iter().map(move |l| (cell, l)));
    for (k, (cell, lrp)) in all.enumerate() {
        if k % 1000 == 999 {
            continue;
        }
        let mut record = ActualLrp::new_unclaimed(lrp.key.clone(), earlier);
        let instance = ActualLrpInstanceKey::new(format!("ig-{}", lrp.key), cell);
        let _ = record.start(&instance, NetInfo::default(), earlier);
        if k % 100 == 42 {
            record.crash_count = 2;
            let _ = record.crash(&instance, "exited", earlier);
        }
        actual.push(record);
    }
    let present: HashSet<String> = results.placed.keys().skip(1).cloned().collect();
    let start = Instant::now();
    let plan = converge(
        now,
        &desired,
        &actual,
        &[],
        &present,
        &ConvergenceConfig::default(),
    );
    let elapsed = start.elapsed();
    let summary = format!(
        "{} starts, {} suspect, {} created, {} restarted",
        plan.starts.len(),
        plan.suspect.len(),
        plan.create_unclaimed.len(),
        plan.restart_crashed.len()
    );
    (elapsed, summary)
}

fn main() -> ExitCode {
    let check = std::env::args().skip(1).any(|a| a == "--check");
    let cells = cells();
    let n = APPS * INSTANCES as usize;

    let mixed = Work {
        lrps: lrps(|app| MIXED_MEMORY_MB[app % 4]),
        tasks: Vec::new(),
    };
    let (d, results) = timed(&cells, &mixed);
    let lrp_rate = report("LRPs, mixed memory, one batch", n, d, &results);
    let (min, max) = spread(&results, |w| w.lrps.len());
    println!(
        "  instances per cell: min {min}, max {max}, spread {}",
        max - min
    );
    println!(
        "  zone balance of app-0000 (50 instances): {:?}",
        zone_balance(&results, "app-0000")
    );
    let (d, summary) = convergence(&results);
    println!(
        "convergence plan over {n} instances (1 cell lost, 1% crashed, 0.1% missing): \
         {:.1} ms ({summary})",
        d.as_secs_f64() * 1e3
    );

    let uniform = Work {
        lrps: lrps(|_| 256),
        tasks: Vec::new(),
    };
    let (d, results) = timed(&cells, &uniform);
    report("LRPs, uniform 256 MB, one batch", n, d, &results);
    let (min, max) = spread(&results, |w| w.lrps.len());
    println!(
        "  instances per cell: min {min}, max {max}, spread {}",
        max - min
    );
    println!(
        "  zone balance of app-0000: {:?}",
        zone_balance(&results, "app-0000")
    );

    let d = batched(&mixed.lrps);
    let batched_rate = per_sec(n, d);
    println!(
        "LRPs, mixed memory, 100 batches of 1,000: {:.1} ms = {batched_rate:.0} placements/s",
        d.as_secs_f64() * 1e3
    );

    let task_batch = Work {
        lrps: Vec::new(),
        tasks: tasks(),
    };
    let (d, results) = timed(&cells, &task_batch);
    let task_rate = report("Tasks, mixed memory, one batch", TASKS, d, &results);
    let (min, max) = spread(&results, |w| w.tasks.len());
    println!(
        "  tasks per cell: min {min}, max {max}, spread {}",
        max - min
    );

    let slowest = lrp_rate.min(task_rate).min(batched_rate);
    let verdict = if slowest >= TARGET_PER_SEC {
        "PASS"
    } else {
        "FAIL"
    };
    println!("slowest {slowest:.0} placements/s vs target {TARGET_PER_SEC:.0}: {verdict}");
    if check && slowest < TARGET_PER_SEC {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
