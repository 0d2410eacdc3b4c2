//! Unit tests against a fake v1 layout in a temp dir: one "mount" per
//! controller, with control files pre-created (writes never create files).
//! A fake file keeps only the last value written to it.

use std::fs;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    LinuxBlockIoBuilder, LinuxCpuBuilder, LinuxDeviceType, LinuxMemoryBuilder, LinuxPidsBuilder,
    LinuxResources, LinuxResourcesBuilder, LinuxThrottleDeviceBuilder,
};

use crate::device_rule::tests::rule;
use crate::hierarchy::{Controller, Hierarchy, V1Mount};
use crate::{Cgroup, CgroupError, CgroupMode};

const UNLIMITED: &str = "9223372036854771712\n";

/// The files each fake controller directory starts with.
fn controller_files(c: Controller, is_root: bool) -> Vec<(&'static str, &'static str)> {
    let mut files = vec![("cgroup.procs", ""), ("tasks", "")];
    files.extend(match c {
        Controller::Memory => vec![
            ("memory.limit_in_bytes", UNLIMITED),
            ("memory.memsw.limit_in_bytes", UNLIMITED),
            ("memory.soft_limit_in_bytes", UNLIMITED),
            ("memory.swappiness", "60\n"),
            (
                "memory.oom_control",
                "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
            ),
            ("memory.usage_in_bytes", "1048576\n"),
            ("memory.max_usage_in_bytes", "2097152\n"),
            ("memory.stat", "cache 0\ntotal_inactive_file 4096\n"),
            ("memory.kmem.tcp.limit_in_bytes", UNLIMITED),
        ],
        Controller::Cpu => vec![
            ("cpu.shares", "1024\n"),
            ("cpu.cfs_quota_us", "-1\n"),
            ("cpu.cfs_period_us", "100000\n"),
        ],
        Controller::Cpuacct => vec![
            ("cpuacct.usage", "5000\n"),
            ("cpuacct.usage_user", "3000\n"),
            ("cpuacct.usage_sys", "2000\n"),
        ],
        Controller::Cpuset if is_root => vec![("cpuset.cpus", "0-3\n"), ("cpuset.mems", "0\n")],
        Controller::Cpuset => vec![("cpuset.cpus", "\n"), ("cpuset.mems", "\n")],
        Controller::Pids => vec![("pids.max", "max\n"), ("pids.current", "2\n")],
        Controller::Devices => vec![("devices.allow", ""), ("devices.deny", "")],
        Controller::Freezer => vec![("freezer.state", "THAWED\n")],
        Controller::Blkio => vec![
            ("blkio.throttle.read_bps_device", ""),
            ("blkio.throttle.write_iops_device", ""),
        ],
        Controller::Hugetlb => vec![],
    });
    files
}

/// A fake host with the eight controllers of this machine (cpu and cpuacct
/// separate), the cgroup directories for `rel` already made.
pub(crate) fn fake_v1(root: &Path, rel: &str) -> Hierarchy {
    let mut mounts = Vec::new();
    for c in Controller::ALL
        .into_iter()
        .filter(|c| *c != Controller::Hugetlb)
    {
        let mount_point = root.join(c.name());
        let mut dir = mount_point.clone();
        populate(&dir, c, true);
        for component in Path::new(rel).components() {
            dir.push(component);
            populate(&dir, c, false);
        }
        mounts.push(V1Mount {
            controllers: vec![c],
            mount_point,
        });
    }
    Hierarchy::legacy(mounts)
}

fn populate(dir: &Path, c: Controller, is_root: bool) {
    fs::create_dir_all(dir).expect("mkdir");
    for (name, content) in controller_files(c, is_root) {
        fs::write(dir.join(name), content).expect("seed file");
    }
}

fn read(root: &Path, controller: &str, rel: &str, file: &str) -> String {
    let path: PathBuf = [root, Path::new(controller), Path::new(rel), Path::new(file)]
        .iter()
        .collect();
    fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_owned()
}

fn resources() -> LinuxResources {
    LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(64i64 << 20)
                .reservation(32i64 << 20)
                .swappiness(10u64)
                .disable_oom_killer(true)
                .build()
                .expect("memory"),
        )
        .cpu(
            LinuxCpuBuilder::default()
                .shares(512u64)
                .quota(50_000i64)
                .period(100_000u64)
                .cpus("1-2")
                .build()
                .expect("cpu"),
        )
        .pids(LinuxPidsBuilder::default().limit(42).build().expect("pids"))
        .devices(vec![
            rule(false, LinuxDeviceType::A, None, None, "rwm"),
            rule(true, LinuxDeviceType::C, Some(1), Some(3), "rwm"),
        ])
        .build()
        .expect("resources")
}

#[test]
fn create_applies_every_controller() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let h = fake_v1(root, "garden/abc");
    let cg = Cgroup::create_at(&h, "/garden/abc", Some(&resources())).expect("create");
    assert_eq!(cg.mode(), CgroupMode::Legacy);
    assert_eq!(cg.path(), "garden/abc");

    let r = |c, f| read(root, c, "garden/abc", f);
    assert_eq!(
        r("memory", "memory.limit_in_bytes"),
        (64u64 << 20).to_string()
    );
    // No swap in the spec: memory+swap = memory, i.e. no swap.
    assert_eq!(
        r("memory", "memory.memsw.limit_in_bytes"),
        (64u64 << 20).to_string()
    );
    assert_eq!(
        r("memory", "memory.soft_limit_in_bytes"),
        (32u64 << 20).to_string()
    );
    assert_eq!(r("memory", "memory.swappiness"), "10");
    assert_eq!(r("memory", "memory.oom_control"), "1");
    assert_eq!(r("cpu", "cpu.shares"), "512");
    assert_eq!(r("cpu", "cpu.cfs_quota_us"), "50000");
    assert_eq!(r("cpu", "cpu.cfs_period_us"), "100000");
    assert_eq!(r("pids", "pids.max"), "42");
    assert_eq!(r("devices", "devices.deny"), "a");
    assert_eq!(r("devices", "devices.allow"), "c 1:3 rwm");
    // cpuset: the intermediate level inherited the parent's, the leaf got the spec's.
    assert_eq!(read(root, "cpuset", "garden", "cpuset.cpus"), "0-3");
    assert_eq!(read(root, "cpuset", "garden", "cpuset.mems"), "0");
    assert_eq!(r("cpuset", "cpuset.cpus"), "1-2");
    assert_eq!(r("cpuset", "cpuset.mems"), "0");
}

#[test]
fn explicit_swap_and_unlimited() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let h = fake_v1(root, "c1");
    let mem = |limit: i64, swap: Option<i64>| {
        let mut b = LinuxMemoryBuilder::default().limit(limit);
        if let Some(s) = swap {
            b = b.swap(s);
        }
        LinuxResourcesBuilder::default()
            .memory(b.build().expect("memory"))
            .build()
            .expect("resources")
    };
    let cg = Cgroup::create_at(&h, "c1", Some(&mem(100 << 20, Some(300 << 20)))).expect("create");
    assert_eq!(
        read(root, "memory", "c1", "memory.memsw.limit_in_bytes"),
        (300u64 << 20).to_string()
    );
    cg.update(&mem(-1, None)).expect("unlimited");
    assert_eq!(read(root, "memory", "c1", "memory.limit_in_bytes"), "-1");
    assert_eq!(
        read(root, "memory", "c1", "memory.memsw.limit_in_bytes"),
        "-1"
    );
    let err = cg
        .update(&mem(300 << 20, Some(100 << 20)))
        .expect_err("swap < limit");
    assert!(
        matches!(
            err,
            CgroupError::InvalidResource {
                resource: "memory swap",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn missing_swap_accounting_is_an_error_only_when_asked() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let h = fake_v1(root, "c2");
    fs::remove_file(root.join("memory/c2/memory.memsw.limit_in_bytes")).expect("rm");
    let limit_only = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(1i64 << 20)
                .build()
                .expect("m"),
        )
        .build()
        .expect("r");
    let cg = Cgroup::create_at(&h, "c2", Some(&limit_only)).expect("limit without memsw is fine");
    let with_swap = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(1i64 << 20)
                .swap(2i64 << 20)
                .build()
                .expect("m"),
        )
        .build()
        .expect("r");
    let err = cg
        .update(&with_swap)
        .expect_err("explicit swap needs memsw");
    assert!(matches!(err, CgroupError::Unsupported { .. }), "{err}");
}

#[test]
fn blkio_weight_without_file_is_unsupported_but_throttle_works() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let h = fake_v1(root, "c3");
    let throttle = LinuxThrottleDeviceBuilder::default()
        .major(8)
        .minor(0)
        .rate(1_048_576u64)
        .build()
        .expect("throttle");
    let r = LinuxResourcesBuilder::default()
        .block_io(
            LinuxBlockIoBuilder::default()
                .throttle_read_bps_device(vec![throttle])
                .build()
                .expect("blkio"),
        )
        .build()
        .expect("r");
    let cg = Cgroup::create_at(&h, "c3", Some(&r)).expect("create");
    assert_eq!(
        read(root, "blkio", "c3", "blkio.throttle.read_bps_device"),
        "8:0 1048576"
    );
    let weight = LinuxResourcesBuilder::default()
        .block_io(
            LinuxBlockIoBuilder::default()
                .weight(500u16)
                .build()
                .expect("blkio"),
        )
        .build()
        .expect("r");
    let err = cg.update(&weight).expect_err("no blkio.weight here");
    assert!(
        matches!(&err, CgroupError::Unsupported { path, .. } if path.ends_with("blkio.weight")),
        "{err}"
    );
}

#[test]
fn unified_keys_are_rejected_on_v1() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let h = fake_v1(tmp.path(), "c4");
    let r = LinuxResourcesBuilder::default()
        .unified(
            [("memory.high".to_owned(), "1M".to_owned())]
                .into_iter()
                .collect::<std::collections::HashMap<_, _>>(),
        )
        .build()
        .expect("r");
    let err = Cgroup::create_at(&h, "c4", Some(&r)).expect_err("v1 has no unified files");
    assert!(
        matches!(
            err,
            CgroupError::InvalidResource {
                resource: "unified",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn stats_oom_freezer_and_host_dirs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let h = fake_v1(root, "c5");
    let cg = Cgroup::create_at(&h, "c5", None).expect("create");
    let stats = cg.stats().expect("stats");
    let mem = stats.memory.expect("memory");
    assert_eq!(mem.usage_bytes, 1 << 20);
    assert_eq!(mem.limit_bytes, None, "the kernel's unlimited value");
    assert_eq!(mem.max_usage_bytes, Some(2 << 20));
    assert_eq!(mem.working_set_bytes, (1 << 20) - 4096);
    let cpu = stats.cpu.expect("cpu");
    assert_eq!(
        (cpu.usage_ns, cpu.user_ns, cpu.system_ns),
        (5000, Some(3000), Some(2000))
    );
    let pids = stats.pids.expect("pids");
    assert_eq!((pids.current, pids.limit), (2, None));
    assert_eq!(cg.oom_kill_count().expect("oom"), 3);

    cg.freeze().expect("freeze");
    assert_eq!(read(root, "freezer", "c5", "freezer.state"), "FROZEN");
    cg.thaw().expect("thaw");
    assert_eq!(read(root, "freezer", "c5", "freezer.state"), "THAWED");

    let dirs = cg.host_dirs();
    assert_eq!(dirs.len(), 8);
    assert_eq!(
        dirs[0],
        ("blkio".to_owned(), root.join("blkio/c5")),
        "blkio attaches first"
    );
    assert!(dirs.contains(&("cpuacct".to_owned(), root.join("cpuacct/c5"))));
}

#[test]
fn add_pid_writes_every_hierarchy_and_pids_reads_them_all() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let h = fake_v1(root, "c6/inner");
    let cg = Cgroup::create_at(&h, "c6", None).expect("create");
    cg.add_pid(4242).expect("add");
    for c in [
        "memory", "cpu", "cpuset", "freezer", "devices", "pids", "blkio", "cpuacct",
    ] {
        assert_eq!(read(root, c, "c6", "cgroup.procs"), "4242", "{c}");
    }
    fs::write(root.join("memory/c6/inner/cgroup.procs"), "7\n0\n").expect("seed");
    assert_eq!(
        cg.pids().expect("pids"),
        [7, 4242],
        "recursive, deduplicated, 0 dropped"
    );
}

#[test]
fn join_self_writes_tasks_and_populated_looks_below() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let h = fake_v1(root, "c7/inner");
    let cg = Cgroup::create_at(&h, "c7", None).expect("create");
    cg.join_self().expect("join");
    for c in [
        "memory", "cpu", "cpuset", "freezer", "devices", "pids", "blkio", "cpuacct",
    ] {
        assert_eq!(read(root, c, "c7", "tasks"), "0", "{c}");
    }
    assert!(!cg.populated().expect("populated"), "empty files");
    // A pid from another pid namespace shows as 0 and still counts.
    fs::write(root.join("pids/c7/inner/cgroup.procs"), "0\n").expect("seed");
    assert!(cg.populated().expect("populated"));
}

#[test]
fn missing_controller_is_named() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let Hierarchy::Legacy(mut mounts) = fake_v1(root, "c7") else {
        panic!("legacy expected");
    };
    mounts.retain(|m| m.controllers != [Controller::Pids]);
    let h = Hierarchy::legacy(mounts);
    let r = LinuxResourcesBuilder::default()
        .pids(LinuxPidsBuilder::default().limit(5).build().expect("pids"))
        .build()
        .expect("r");
    let err = Cgroup::create_at(&h, "c7", Some(&r)).expect_err("no pids hierarchy");
    assert!(
        matches!(
            err,
            CgroupError::ControllerUnavailable {
                controller: "pids",
                ..
            }
        ),
        "{err}"
    );
    let cg = Cgroup::open_at(&h, "c7").expect("open");
    assert_eq!(cg.stats().expect("stats").pids, None);
}

#[test]
fn destroy_is_idempotent() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    // Empty leaf directories stand in for cgroupfs (where rmdir ignores files).
    let mounts: Vec<V1Mount> = [Controller::Memory, Controller::Pids]
        .into_iter()
        .map(|c| V1Mount {
            controllers: vec![c],
            mount_point: root.join(c.name()),
        })
        .collect();
    for m in &mounts {
        fs::create_dir_all(m.mount_point.join("gone/child")).expect("mkdir");
    }
    let h = Hierarchy::legacy(mounts);
    let cg = Cgroup::open_at(&h, "gone").expect("open");
    cg.destroy().expect("destroy");
    assert!(!root.join("memory/gone").exists());
    cg.destroy().expect("second destroy is a no-op");
    assert!(matches!(
        Cgroup::open_at(&h, "gone"),
        Err(CgroupError::NotFound { .. })
    ));
}
