use super::*;

const ROOTFS: &str = "preloaded:cflinuxfs4";

fn cell(id: &str, zone: &str, memory_mb: u64) -> CellState {
    let cap = Capacity {
        memory_mb,
        disk_mb: 10_000,
        containers: 100,
    };
    CellState {
        cell_id: id.into(),
        zone: zone.into(),
        stacks: vec!["cflinuxfs4".into(), "docker".into()],
        total: cap,
        available: cap,
        ..CellState::default()
    }
}

fn lrp(guid: &str, index: u32, memory_mb: u64) -> LrpStart {
    LrpStart {
        key: ActualLrpKey::new(guid, index, "cf-apps"),
        resource: Resource {
            memory_mb,
            disk_mb: 100,
            max_pids: 0,
        },
        constraint: PlacementConstraint {
            rootfs: ROOTFS.into(),
            placement_tags: Vec::new(),
        },
    }
}

fn task(guid: &str, memory_mb: u64) -> TaskStart {
    TaskStart {
        task_guid: guid.into(),
        domain: "cf-tasks".into(),
        resource: Resource {
            memory_mb,
            disk_mb: 100,
            max_pids: 0,
        },
        constraint: PlacementConstraint {
            rootfs: ROOTFS.into(),
            placement_tags: Vec::new(),
        },
    }
}

fn lrps(batch: Vec<LrpStart>) -> Work {
    Work {
        lrps: batch,
        tasks: Vec::new(),
    }
}

/// `cell id -> ["guid/index", ...]` of a result.
fn placements(results: &AuctionResults) -> Vec<(String, Vec<String>)> {
    (results.placed.iter())
        .map(|(cell, work)| {
            let lrps = work.lrps.iter().map(|l| l.key.to_string());
            let tasks = work.tasks.iter().map(|t| format!("task:{}", t.task_guid));
            (cell.clone(), lrps.chain(tasks).collect())
        })
        .collect()
}

fn cell_of(results: &AuctionResults, key: &str) -> String {
    (results.placed.iter())
        .find(|(_, w)| {
            w.lrps.iter().any(|l| l.key.to_string() == key)
                || w.tasks
                    .iter()
                    .any(|t| format!("task:{}", t.task_guid) == key)
        })
        .map(|(cell, _)| cell.clone())
        .unwrap_or_default()
}

#[test]
fn order_is_index_zero_then_tasks_then_the_rest_bigger_memory_first() {
    let batch = Work {
        lrps: vec![
            lrp("a", 1, 256),
            lrp("b", 0, 128),
            lrp("c", 2, 1024),
            lrp("d", 0, 512),
        ],
        tasks: vec![task("t1", 64), task("t2", 2048)],
    };
    let names: Vec<String> = (order(&batch).into_iter())
        .map(|item| match item {
            Item::Lrp(i) => batch.lrps[i].key.to_string(),
            Item::Task(i) => batch.tasks[i].task_guid.clone(),
        })
        .collect();
    assert_eq!(names, ["d/0", "b/0", "t2", "t1", "c/2", "a/1"]);
}

#[test]
fn ordering_decides_who_gets_scarce_room() {
    let cells = [cell("c1", "z1", 1024)];
    let batch = Work {
        lrps: vec![lrp("web", 1, 512), lrp("web", 0, 512)],
        tasks: vec![task("t", 512)],
    };
    let results = auction(&cells, batch);
    assert_eq!(
        placements(&results),
        [("c1".into(), vec!["web/0".into(), "task:t".into()])]
    );
    assert_eq!(results.failed_lrps.len(), 1);
    assert_eq!(results.failed_lrps[0].lrp.key.to_string(), "web/1");
    assert_eq!(
        results.failed_lrps[0].error.to_string(),
        "insufficient resources: memory"
    );
}

#[test]
fn stack_and_tag_filters_name_what_is_missing() {
    let mut tagged = cell("c2", "z1", 4096);
    tagged.placement_tags = vec!["isolated".into()];
    tagged.optional_placement_tags = vec!["gpu".into()];
    let mut other_stack = cell("c3", "z1", 4096);
    other_stack.stacks = vec!["cflinuxfs3".into()];
    let cells = [cell("c1", "z1", 4096), tagged, other_stack];

    let mut wants_gpu = lrp("gpu-app", 0, 64);
    wants_gpu.constraint.placement_tags = vec!["gpu".into()];
    let mut isolated = lrp("iso", 0, 64);
    isolated.constraint.placement_tags = vec!["isolated".into(), "gpu".into()];
    let mut fs3 = lrp("old", 0, 64);
    fs3.constraint.rootfs = "preloaded:cflinuxfs3".into();
    let mut windows = lrp("win", 0, 64);
    windows.constraint.rootfs = "preloaded:windows".into();
    let mut docker = lrp("dock", 0, 64);
    docker.constraint.rootfs = "docker:///busybox".into();

    let results = auction(
        &cells,
        lrps(vec![wants_gpu, isolated, fs3, windows, docker]),
    );
    assert_eq!(cell_of(&results, "iso/0"), "c2");
    assert_eq!(cell_of(&results, "old/0"), "c3");
    assert_eq!(cell_of(&results, "dock/0"), "c1");
    let errors: Vec<String> = (results.failed_lrps.iter())
        .map(|f| format!("{}: {}", f.lrp.key, f.error))
        .collect();
    assert_eq!(
        errors,
        [
            "gpu-app/0: found no compatible cell with placement tags [\"gpu\"]",
            "win/0: found no compatible cell for stack \"windows\"",
        ]
    );
}

#[test]
fn insufficient_resources_name_what_every_cell_lacked() {
    let mut small_disk = cell("c1", "z1", 256);
    small_disk.available.disk_mb = 10;
    let cells = [small_disk.clone(), cell("c2", "z2", 256)];
    let results = auction(&cells, lrps(vec![lrp("big", 0, 512)]));
    assert_eq!(
        results.failed_lrps[0].error.to_string(),
        "insufficient resources: memory"
    );

    let mut no_room = cell("c3", "z1", 256);
    no_room.available.disk_mb = 10;
    let results = auction(&[small_disk, no_room], lrps(vec![lrp("big", 0, 512)]));
    assert_eq!(
        results.failed_lrps[0].error.to_string(),
        "insufficient resources: memory, disk"
    );

    let mut full = cell("c1", "z1", 4096);
    full.available.containers = 0;
    let mut low_mem = cell("c2", "z1", 128);
    low_mem.available.containers = 5;
    let results = auction(
        &[full, low_mem],
        Work {
            lrps: Vec::new(),
            tasks: vec![task("t", 512)],
        },
    );
    let error = &results.failed_tasks[0].error;
    assert_eq!(
        error.to_string(),
        "insufficient resources: each cell lacked one of memory, containers"
    );
    assert_eq!(
        *error,
        PlacementError::InsufficientResources(Lacking {
            some: [true, false, true],
            ..Lacking::default()
        })
    );
}

#[test]
fn evacuating_cells_never_get_work() {
    let mut draining = cell("a-draining", "z1", 8192);
    draining.evacuating = true;
    let cells = [draining.clone(), cell("b", "z1", 1024)];
    let results = auction(
        &cells,
        Work {
            lrps: vec![lrp("web", 0, 64), lrp("web", 1, 64)],
            tasks: vec![task("t", 64)],
        },
    );
    assert_eq!(results.placed.keys().collect::<Vec<_>>(), ["b"]);
    assert_eq!(results.placed_count(), 3);

    let results = auction(&[draining], lrps(vec![lrp("web", 0, 64)]));
    assert_eq!(
        results.failed_lrps[0].error.to_string(),
        "found no compatible cell for stack \"cflinuxfs4\""
    );
    let results = auction(&[], lrps(vec![lrp("web", 0, 64)]));
    assert_eq!(results.failed_lrps.len(), 1);
}

#[test]
fn score_prefers_the_emptier_cell_and_counts_starting_containers() {
    let mut busy = cell("a", "z1", 4096);
    busy.available.memory_mb = 1024;
    let cells = [busy, cell("b", "z1", 4096)];
    let results = auction(&cells, lrps(vec![lrp("web", 0, 64)]));
    assert_eq!(cell_of(&results, "web/0"), "b");

    // Same usage, but "a" is starting 2 containers: 0.5 extra.
    let mut starting = cell("a", "z1", 4096);
    starting.starting_containers = 2;
    let results = auction(
        &[starting, cell("b", "z1", 4096)],
        lrps(vec![lrp("x", 0, 64)]),
    );
    assert_eq!(cell_of(&results, "x/0"), "b");
}

#[test]
fn same_process_instances_spread_before_packing() {
    // "a" is much fuller but holds no instance of web: the 1000 penalty wins.
    let mut fuller = cell("a", "z1", 4096);
    fuller.available.memory_mb = 512;
    let mut holds_web = cell("b", "z1", 4096);
    holds_web.lrps = vec![LrpInstance {
        process_guid: "web".into(),
        index: 0,
    }];
    let results = auction(&[fuller, holds_web], lrps(vec![lrp("web", 1, 64)]));
    assert_eq!(cell_of(&results, "web/1"), "a");

    // Five instances on five cells: one each.
    let cells: Vec<_> = (1..=5)
        .map(|i| cell(&format!("c{i}"), "z1", 4096))
        .collect();
    let results = auction(&cells, lrps((0..5).map(|i| lrp("web", i, 64)).collect()));
    assert!(results.placed.values().all(|w| w.lrps.len() == 1));
}

#[test]
fn tasks_spread_by_task_count() {
    let mut has_task = cell("a", "z1", 4096);
    has_task.tasks = vec!["old".into()];
    let cells = [has_task, cell("b", "z1", 4096)];
    let results = auction(
        &cells,
        Work {
            lrps: Vec::new(),
            tasks: vec![task("t1", 64), task("t2", 64)],
        },
    );
    assert_eq!(cell_of(&results, "task:t1"), "b");
    // Now both hold one task, but b is starting a container (+0.25).
    assert_eq!(cell_of(&results, "task:t2"), "a");
}

#[test]
fn zones_balance_instances_of_a_process() {
    // z1 has two roomy cells, z2 and z3 one small cell each.
    let cells = [
        cell("a1", "z1", 8192),
        cell("a2", "z1", 8192),
        cell("b1", "z2", 1024),
        cell("c1", "z3", 1024),
    ];
    let results = auction(&cells, lrps((0..6).map(|i| lrp("web", i, 64)).collect()));
    let mut per_zone = BTreeMap::new();
    for (cell, work) in &results.placed {
        *per_zone.entry(&cell[..1]).or_insert(0) += work.lrps.len();
    }
    assert_eq!(
        per_zone.into_iter().collect::<Vec<_>>(),
        [("a", 2), ("b", 2), ("c", 2)]
    );
}

#[test]
fn the_emptiest_zone_is_skipped_when_nothing_in_it_fits() {
    let mut tiny = cell("b1", "z2", 4096);
    tiny.available.memory_mb = 32;
    let mut holds = cell("a1", "z1", 4096);
    holds.lrps = vec![LrpInstance {
        process_guid: "web".into(),
        index: 0,
    }];
    let cells = [holds, cell("a2", "z1", 4096), tiny];
    let results = auction(&cells, lrps(vec![lrp("web", 1, 64)]));
    assert_eq!(cell_of(&results, "web/1"), "a2");
}

#[test]
fn ties_go_to_the_lower_cell_id_whatever_the_input_order() {
    let forward = [
        cell("c1", "z1", 4096),
        cell("c2", "z1", 4096),
        cell("c3", "z2", 4096),
    ];
    let mut backward = forward.clone();
    backward.reverse();
    let batch = || {
        let mut lrps: Vec<_> = (0..4).map(|i| lrp("web", i, 128)).collect();
        lrps.push(lrp("api", 0, 256));
        Work {
            lrps,
            tasks: vec![task("t", 64)],
        }
    };
    let a = auction(&forward, batch());
    let b = auction(&backward, batch());
    assert_eq!(a, b);
    // api/0 (bigger) first: all equal, c1. web/0: z1 and z2 both hold no
    // web, c1 holds api, so c2 (ties to the lower id). Task t: the empty c3.
    // web/1: z2 holds none, so c3. web/2: zones tie at 1, c1 holds no web.
    // web/3: z2 holds fewer, so c3.
    assert_eq!(
        placements(&a),
        [
            ("c1".to_string(), vec!["api/0".to_string(), "web/2".into()]),
            ("c2".into(), vec!["web/0".into()]),
            (
                "c3".into(),
                vec!["web/1".into(), "web/3".into(), "task:t".into()]
            ),
        ]
    );
}

#[test]
fn results_serialise_for_the_cells_work_endpoint() {
    let results = auction(&[cell("c1", "z1", 1024)], lrps(vec![lrp("web", 0, 64)]));
    let v = serde_json::to_value(&results.placed["c1"]).expect("json");
    assert_eq!(v["lrps"][0]["key"]["process_guid"], "web");
    assert_eq!(v["lrps"][0]["resource"]["memory_mb"], 64);
    let state: CellState = serde_json::from_str(r#"{"cell_id":"c9","zone":"z"}"#).expect("parse");
    assert!(!state.evacuating);
}

/// A small deterministic generator (no rand dependency for one test).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        (self.0 >> 33) % n
    }
}

#[test]
fn random_batches_never_overcommit_and_failures_fit_nowhere() {
    let mut rng = Lcg(7);
    let mut cells: Vec<CellState> = (0..40)
        .map(|i| {
            let mut c = cell(
                &format!("c{i:02}"),
                &format!("z{}", i % 3),
                2048 + rng.next(4096),
            );
            c.available.memory_mb = c.total.memory_mb - rng.next(1024);
            c.available.containers = 1 + rng.next(8) as u32;
            c.evacuating = rng.next(10) == 0;
            if rng.next(5) == 0 {
                c.stacks = vec!["cflinuxfs3".into()];
            }
            c
        })
        .collect();
    cells[0].evacuating = false;
    let lrps: Vec<LrpStart> = (0..300)
        .map(|i| lrp(&format!("app{}", i % 17), i / 17, 64 << rng.next(5)))
        .collect();
    let tasks: Vec<TaskStart> = (0..60)
        .map(|i| task(&format!("t{i}"), 64 << rng.next(5)))
        .collect();
    let batch = Work { lrps, tasks };
    let results = auction(&cells, batch.clone());
    assert_eq!(results, auction(&cells, batch.clone()), "reproducible");
    assert_eq!(
        results.placed_count() + results.failed_lrps.len() + results.failed_tasks.len(),
        batch.lrps.len() + batch.tasks.len()
    );
    let mut left: BTreeMap<&str, Capacity> = BTreeMap::new();
    for c in &cells {
        left.insert(&c.cell_id, c.available);
    }
    for (id, work) in &results.placed {
        let c = cells
            .iter()
            .find(|c| &c.cell_id == id)
            .expect("placed on a known cell");
        assert!(!c.evacuating, "{id} is evacuating");
        assert!(c.stacks.iter().any(|s| s == "cflinuxfs4"));
        let cap = left.get_mut(id.as_str()).expect("cell");
        let resources = work
            .lrps
            .iter()
            .map(|l| l.resource)
            .chain(work.tasks.iter().map(|t| t.resource));
        for r in resources {
            cap.memory_mb = cap
                .memory_mb
                .checked_sub(r.memory_mb)
                .expect("memory overcommitted");
            cap.disk_mb = cap
                .disk_mb
                .checked_sub(r.disk_mb)
                .expect("disk overcommitted");
            cap.containers = cap
                .containers
                .checked_sub(1)
                .expect("containers overcommitted");
        }
    }
    let fits_somewhere = |r: &Resource| {
        cells.iter().any(|c| {
            let cap = left[c.cell_id.as_str()];
            !c.evacuating
                && c.stacks.iter().any(|s| s == "cflinuxfs4")
                && cap.memory_mb >= r.memory_mb
                && cap.disk_mb >= r.disk_mb
                && cap.containers > 0
        })
    };
    assert!(
        !results.failed_lrps.is_empty(),
        "the batch should exceed the cells"
    );
    for f in &results.failed_lrps {
        assert!(
            !fits_somewhere(&f.lrp.resource),
            "{} fits after all",
            f.lrp.key
        );
        assert!(matches!(f.error, PlacementError::InsufficientResources(_)));
    }
    for f in &results.failed_tasks {
        assert!(
            !fits_somewhere(&f.task.resource),
            "{} fits after all",
            f.task.task_guid
        );
    }
}
