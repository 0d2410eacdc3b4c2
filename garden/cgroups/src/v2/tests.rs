//! Unit tests against a fake v2 layout in a temp dir. Control files are
//! pre-created (writes never create files); a fake file keeps only the last
//! value written to it.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use oci_spec::runtime::{
    LinuxBlockIoBuilder, LinuxCpuBuilder, LinuxHugepageLimitBuilder, LinuxMemoryBuilder,
    LinuxPidsBuilder, LinuxResources, LinuxResourcesBuilder, LinuxThrottleDeviceBuilder,
};

use crate::hierarchy::Hierarchy;
use crate::{Cgroup, CgroupError, CgroupMode};

const ALL: &str = "cpuset cpu io memory hugetlb pids\n";

const LEAF_FILES: [(&str, &str); 21] = [
    ("cgroup.controllers", ALL),
    ("cgroup.procs", ""),
    ("cgroup.freeze", "0\n"),
    ("cgroup.events", "populated 0\nfrozen 1\n"),
    ("cgroup.kill", ""),
    ("memory.max", "max\n"),
    ("memory.swap.max", "max\n"),
    ("memory.low", "0\n"),
    ("memory.high", "max\n"),
    ("memory.current", "8192\n"),
    ("memory.peak", "16384\n"),
    ("memory.stat", "anon 4096\ninactive_file 1024\n"),
    ("memory.events", "low 0\nhigh 0\nmax 4\noom 2\noom_kill 1\n"),
    ("cpu.weight", "100\n"),
    ("cpu.max", "max 100000\n"),
    ("cpu.stat", "usage_usec 7\nuser_usec 4\nsystem_usec 3\n"),
    ("cpuset.cpus", "\n"),
    ("cpuset.mems", "\n"),
    ("pids.max", "max\n"),
    ("pids.current", "3\n"),
    ("io.max", ""),
];

/// A fake cgroup2 root with `rel`'s directories made and populated.
pub(crate) fn fake_v2(root: &Path, rel: &str) -> Hierarchy {
    let seed = |dir: &Path, files: &[(&str, &str)]| {
        fs::create_dir_all(dir).expect("mkdir");
        for (name, content) in files {
            fs::write(dir.join(name), content).expect("seed");
        }
    };
    let inner = [("cgroup.controllers", ALL), ("cgroup.subtree_control", "")];
    seed(root, &inner);
    let mut dir = root.to_path_buf();
    let components: Vec<_> = Path::new(rel).components().collect();
    for (i, c) in components.iter().enumerate() {
        dir.push(c);
        if i + 1 == components.len() {
            seed(&dir, &LEAF_FILES);
            seed(
                &dir,
                &[("io.weight", "default 100\n"), ("hugetlb.2MB.max", "max\n")],
            );
        } else {
            seed(&dir, &inner);
        }
    }
    Hierarchy::unified(root)
}

fn read(dir: &Path, file: &str) -> String {
    fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("{file}: {e}"))
        .trim()
        .to_owned()
}

fn resources() -> LinuxResources {
    LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(64i64 << 20)
                .reservation(16i64 << 20)
                .swappiness(10u64)
                .build()
                .expect("memory"),
        )
        .cpu(
            LinuxCpuBuilder::default()
                .shares(1024u64)
                .quota(50_000i64)
                .period(100_000u64)
                .cpus("0")
                .mems("0")
                .build()
                .expect("cpu"),
        )
        .pids(LinuxPidsBuilder::default().limit(-1).build().expect("pids"))
        .block_io(
            LinuxBlockIoBuilder::default()
                .weight(500u16)
                .throttle_write_iops_device(vec![LinuxThrottleDeviceBuilder::default()
                    .major(8)
                    .minor(16)
                    .rate(300u64)
                    .build()
                    .expect("throttle")])
                .build()
                .expect("blkio"),
        )
        .hugepage_limits(vec![LinuxHugepageLimitBuilder::default()
            .page_size("2MB")
            .limit(4i64 << 20)
            .build()
            .expect("hugetlb")])
        .unified(HashMap::from([(
            "memory.high".to_owned(),
            "50M".to_owned(),
        )]))
        .build()
        .expect("resources")
}

#[test]
fn create_applies_every_controller() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let h = fake_v2(root, "garden/abc");
    let cg = Cgroup::create_at(&h, "garden/abc", Some(&resources())).expect("create");
    assert_eq!(cg.mode(), CgroupMode::Unified);
    let leaf = root.join("garden/abc");
    assert_eq!(read(&leaf, "memory.max"), (64u64 << 20).to_string());
    assert_eq!(
        read(&leaf, "memory.swap.max"),
        "0",
        "no swap in the spec: swap off"
    );
    assert_eq!(read(&leaf, "memory.low"), (16u64 << 20).to_string());
    assert_eq!(read(&leaf, "cpu.weight"), "39", "1024 shares");
    assert_eq!(read(&leaf, "cpu.max"), "50000 100000");
    assert_eq!(read(&leaf, "cpuset.cpus"), "0");
    assert_eq!(read(&leaf, "cpuset.mems"), "0");
    assert_eq!(read(&leaf, "pids.max"), "max");
    assert_eq!(read(&leaf, "io.weight"), "4950");
    assert_eq!(read(&leaf, "io.max"), "8:16 wiops=300");
    assert_eq!(read(&leaf, "hugetlb.2MB.max"), (4u64 << 20).to_string());
    assert_eq!(read(&leaf, "memory.high"), "50M");
    // Controllers are enabled in the ancestors (each "+x" written separately,
    // so the fake file holds the last) and never in the leaf.
    assert_eq!(read(root, "cgroup.subtree_control"), "+pids");
    assert_eq!(
        read(&root.join("garden"), "cgroup.subtree_control"),
        "+pids"
    );
    assert!(!leaf.join("cgroup.subtree_control").exists());
    assert_eq!(cg.host_dirs(), [(String::new(), leaf)]);
}

#[test]
fn already_enabled_controllers_are_not_rewritten() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let h = fake_v2(root, "c1");
    fs::write(
        root.join("cgroup.subtree_control"),
        "cpuset cpu io memory hugetlb pids\n",
    )
    .expect("seed");
    Cgroup::create_at(&h, "c1", None).expect("create");
    assert_eq!(
        read(root, "cgroup.subtree_control"),
        "cpuset cpu io memory hugetlb pids"
    );
}

#[test]
fn disabled_controller_is_named() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let h = fake_v2(root, "c2");
    fs::write(root.join("c2/cgroup.controllers"), "cpu memory\n").expect("seed");
    let r = LinuxResourcesBuilder::default()
        .pids(LinuxPidsBuilder::default().limit(10).build().expect("pids"))
        .build()
        .expect("r");
    let err = Cgroup::create_at(&h, "c2", Some(&r)).expect_err("pids not enabled");
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
    let stats = Cgroup::open_at(&h, "c2")
        .expect("open")
        .stats()
        .expect("stats");
    assert_eq!(stats.pids, None);
    assert!(stats.memory.is_some());
}

#[test]
fn explicit_swap_is_converted() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let h = fake_v2(root, "c3");
    let r = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(100i64 << 20)
                .swap(150i64 << 20)
                .build()
                .expect("m"),
        )
        .build()
        .expect("r");
    Cgroup::create_at(&h, "c3", Some(&r)).expect("create");
    assert_eq!(
        read(&root.join("c3"), "memory.swap.max"),
        (50u64 << 20).to_string()
    );
}

#[test]
fn bad_unified_key_is_rejected() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let h = fake_v2(tmp.path(), "c4");
    let r = LinuxResourcesBuilder::default()
        .unified(HashMap::from([(
            "../../etc/passwd".to_owned(),
            "x".to_owned(),
        )]))
        .build()
        .expect("r");
    let err = Cgroup::create_at(&h, "c4", Some(&r)).expect_err("path in key");
    assert!(
        matches!(
            err,
            CgroupError::InvalidResource {
                resource: "unified key",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn stats_oom_freeze_kill() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let h = fake_v2(root, "c5");
    let cg = Cgroup::open_at(&h, "c5").expect("open");
    let stats = cg.stats().expect("stats");
    let mem = stats.memory.expect("memory");
    assert_eq!(
        (
            mem.usage_bytes,
            mem.limit_bytes,
            mem.max_usage_bytes,
            mem.working_set_bytes
        ),
        (8192, None, Some(16384), 8192 - 1024)
    );
    let cpu = stats.cpu.expect("cpu");
    assert_eq!(
        (cpu.usage_ns, cpu.user_ns, cpu.system_ns),
        (7000, Some(4000), Some(3000))
    );
    let pids = stats.pids.expect("pids");
    assert_eq!((pids.current, pids.limit), (3, None));
    assert_eq!(cg.oom_kill_count().expect("oom"), 1);

    // cgroup.events says "frozen 1", so the freeze is seen at once.
    cg.freeze().expect("freeze");
    assert_eq!(read(&root.join("c5"), "cgroup.freeze"), "1");
    // cgroup.kill exists: one write, no per-pid signalling.
    fs::write(root.join("c5/cgroup.procs"), "999999999\n").expect("seed");
    cg.kill_all().expect("kill");
    assert_eq!(read(&root.join("c5"), "cgroup.kill"), "1");
}

#[test]
fn failed_apply_rolls_back_a_new_leaf() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let h = fake_v2(root, "garden/existing");
    // The new leaf has no control files at all, so reading its
    // cgroup.controllers fails and the directory must be removed again.
    let r = LinuxResourcesBuilder::default()
        .pids(LinuxPidsBuilder::default().limit(10).build().expect("pids"))
        .build()
        .expect("r");
    let err = Cgroup::create_at(&h, "garden/new", Some(&r)).expect_err("no files");
    assert!(matches!(err, CgroupError::Read { .. }), "{err}");
    assert!(!root.join("garden/new").exists());
    assert!(root.join("garden/existing").exists());
}
