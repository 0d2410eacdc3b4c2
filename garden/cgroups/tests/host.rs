//! Privileged tests on the host's own hierarchies (`Hierarchy::host()`): v1 on
//! the hybrid development machines, v2 in the pure-v2 VM. Each test works in a
//! cgroup named `garden-test-<pid>-<n>` at the top of each hierarchy and
//! removes it on drop, pass or fail.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{eventually, require_root, unique_name, CgroupGuard, ChildGuard, DEVICE_PROBE};
use garden_cgroups::{Cgroup, CgroupError, CgroupMode, Hierarchy};
use oci_spec::runtime::{
    LinuxBlockIoBuilder, LinuxCpuBuilder, LinuxDeviceCgroup, LinuxDeviceCgroupBuilder,
    LinuxDeviceType, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResources, LinuxResourcesBuilder,
};

fn host() -> Hierarchy {
    require_root();
    Hierarchy::host().expect("host hierarchies")
}

fn dev(
    allow: bool,
    typ: LinuxDeviceType,
    major: i64,
    minor: i64,
    access: &str,
) -> LinuxDeviceCgroup {
    LinuxDeviceCgroupBuilder::default()
        .allow(allow)
        .typ(typ)
        .major(major)
        .minor(minor)
        .access(access)
        .build()
        .expect("device rule")
}

/// Deny all; allow /dev/null fully and /dev/zero read-only.
fn device_rules() -> Vec<LinuxDeviceCgroup> {
    vec![
        LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .access("rwm")
            .build()
            .expect("deny all"),
        dev(true, LinuxDeviceType::C, 1, 3, "rwm"),
        dev(true, LinuxDeviceType::C, 1, 5, "r"),
    ]
}

fn limits() -> LinuxResources {
    LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(64i64 << 20)
                .build()
                .expect("memory"),
        )
        .cpu(
            LinuxCpuBuilder::default()
                .shares(512u64)
                .quota(20_000i64)
                .period(100_000u64)
                .cpus("0")
                .mems("0")
                .build()
                .expect("cpu"),
        )
        .pids(LinuxPidsBuilder::default().limit(50).build().expect("pids"))
        .devices(device_rules())
        .build()
        .expect("resources")
}

fn dir_of(cg: &Cgroup, name: &str) -> PathBuf {
    cg.host_dirs()
        .into_iter()
        .find(|(n, _)| n == name || n.split(',').any(|c| c == name))
        .map(|(_, p)| p)
        .unwrap_or_else(|| panic!("no {name:?} hierarchy in {:?}", cg.host_dirs()))
}

fn read(dir: &Path, file: &str) -> String {
    fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.join(file).display()))
        .trim()
        .to_owned()
}

#[test]
fn limits_are_written_to_the_kernel() {
    let h = host();
    let top = unique_name();
    let path = format!("{top}/ctr");
    let _guard = CgroupGuard::new(h.clone(), top.clone());
    let cg = Cgroup::create_at(&h, &path, Some(&limits())).expect("create");

    match cg.mode() {
        CgroupMode::Legacy => {
            let mem = dir_of(&cg, "memory");
            assert_eq!(
                read(&mem, "memory.limit_in_bytes"),
                (64u64 << 20).to_string()
            );
            if mem.join("memory.memsw.limit_in_bytes").exists() {
                assert_eq!(
                    read(&mem, "memory.memsw.limit_in_bytes"),
                    (64u64 << 20).to_string()
                );
            }
            let cpu = dir_of(&cg, "cpu");
            assert_eq!(read(&cpu, "cpu.shares"), "512");
            assert_eq!(read(&cpu, "cpu.cfs_quota_us"), "20000");
            assert_eq!(read(&cpu, "cpu.cfs_period_us"), "100000");
            assert_eq!(read(&dir_of(&cg, "cpuset"), "cpuset.cpus"), "0");
            assert_eq!(read(&dir_of(&cg, "cpuset"), "cpuset.mems"), "0");
            assert_eq!(read(&dir_of(&cg, "pids"), "pids.max"), "50");
            assert_eq!(
                read(&dir_of(&cg, "devices"), "devices.list"),
                "c 1:3 rwm\nc 1:5 r"
            );
        }
        CgroupMode::Unified => {
            let dir = dir_of(&cg, "");
            assert_eq!(read(&dir, "memory.max"), (64u64 << 20).to_string());
            if dir.join("memory.swap.max").exists() {
                assert_eq!(read(&dir, "memory.swap.max"), "0");
            }
            assert_eq!(read(&dir, "cpu.weight"), "20");
            assert_eq!(read(&dir, "cpu.max"), "20000 100000");
            assert_eq!(read(&dir, "cpuset.cpus"), "0");
            assert_eq!(read(&dir, "pids.max"), "50");
        }
    }

    // Tighten the limits of the live cgroup.
    let update = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(48i64 << 20)
                .build()
                .expect("memory"),
        )
        .pids(LinuxPidsBuilder::default().limit(-1).build().expect("pids"))
        .build()
        .expect("update");
    cg.update(&update).expect("update");
    let stats = cg.stats().expect("stats");
    assert_eq!(stats.memory.expect("memory").limit_bytes, Some(48 << 20));
    assert_eq!(stats.pids.expect("pids").limit, None);

    check_block_io_weight(&cg);

    let dirs = cg.host_dirs();
    cg.destroy().expect("destroy");
    for (name, dir) in dirs {
        assert!(!dir.exists(), "{name}: {} still exists", dir.display());
    }
    cg.destroy().expect("destroy again is a no-op");
    assert!(matches!(
        Cgroup::open_at(&h, &path),
        Err(CgroupError::NotFound { .. })
    ));
}

/// A weight goes to the first weight file the kernel has (CFQ, then BFQ on v1;
/// BFQ, then io.weight on v2), and with none the error names the missing file.
fn check_block_io_weight(cg: &Cgroup) {
    let r = LinuxResourcesBuilder::default()
        .block_io(
            LinuxBlockIoBuilder::default()
                .weight(500u16)
                .build()
                .expect("blkio"),
        )
        .build()
        .expect("resources");
    let (dir, candidates): (PathBuf, [(&str, &str); 2]) = match cg.mode() {
        CgroupMode::Legacy => (
            dir_of(cg, "blkio"),
            [("blkio.weight", "500"), ("blkio.bfq.weight", "500")],
        ),
        CgroupMode::Unified => (
            dir_of(cg, ""),
            [
                ("io.bfq.weight", "default 500"),
                ("io.weight", "default 4950"),
            ],
        ),
    };
    match candidates.iter().find(|(f, _)| dir.join(f).exists()) {
        Some((file, expected)) => {
            cg.update(&r).expect("blkio weight");
            assert_eq!(read(&dir, file), *expected, "{file}");
        }
        None => {
            let err = cg.update(&r).expect_err("no weight file");
            assert!(matches!(err, CgroupError::Unsupported { .. }), "{err}");
        }
    }
}

#[test]
fn processes_are_tracked_frozen_and_killed() {
    let h = host();
    let path = unique_name();
    let _guard = CgroupGuard::new(h.clone(), path.clone());
    let cg = Cgroup::create_at(&h, &path, Some(&limits())).expect("create");

    // Work inside the cgroup (memory and CPU are charged to the cgroup a task
    // is in when it uses them, not moved with it), then idle.
    let mut child = ChildGuard::gated_sh(
        "read _; x=$(head -c 4000000 /dev/zero | tr '\\0' x); echo ready; exec sleep 30",
    );
    cg.add_pid(child.pid()).expect("add_pid");
    assert_eq!(cg.pids().expect("pids"), [child.pid()]);
    child.release();
    // `ready` comes after the helpers (head, tr) have exited.
    child.wait_for_output("ready");
    eventually("the helpers to finish", || {
        cg.stats().is_ok_and(|s| {
            s.pids.is_some_and(|p| p.current == 1) && s.cpu.is_some_and(|c| c.usage_ns > 0)
        })
    });
    let stats = cg.stats().expect("stats");
    assert!(stats.memory.expect("memory").usage_bytes > 0);
    assert_eq!(cg.pids().expect("pids"), [child.pid()]);

    cg.freeze().expect("freeze");
    match cg.mode() {
        CgroupMode::Legacy => assert_eq!(read(&dir_of(&cg, "freezer"), "freezer.state"), "FROZEN"),
        CgroupMode::Unified => {
            assert!(read(&dir_of(&cg, ""), "cgroup.events").contains("frozen 1"))
        }
    }
    cg.thaw().expect("thaw");

    cg.kill_all().expect("kill_all");
    let (_, status) = child.finish(Duration::from_secs(5));
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    eventually("the cgroup to empty", || {
        cg.pids().is_ok_and(|p| p.is_empty())
    });
    cg.destroy().expect("destroy");
}

#[test]
fn kill_all_reaches_nested_and_frozen_processes() {
    let h = host();
    let path = unique_name();
    let _guard = CgroupGuard::new(h.clone(), path.clone());
    let cg = Cgroup::create_at(&h, &path, None).expect("create");
    // A shell that forks a grandchild: both must die.
    let mut child = ChildGuard::gated_sh("read _; sleep 30 & wait");
    cg.add_pid(child.pid()).expect("add_pid");
    child.release();
    eventually("the grandchild", || cg.pids().is_ok_and(|p| p.len() == 2));
    cg.freeze().expect("freeze (a paused container)");
    cg.kill_all().expect("kill_all");
    let (_, status) = child.finish(Duration::from_secs(5));
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    eventually("the cgroup to empty", || {
        cg.pids().is_ok_and(|p| p.is_empty())
    });
    cg.destroy().expect("destroy");
}

#[test]
fn device_rules_are_enforced() {
    let h = host();
    let path = unique_name();
    let _guard = CgroupGuard::new(h.clone(), path.clone());
    let r = LinuxResourcesBuilder::default()
        .devices(device_rules())
        .build()
        .expect("resources");
    let cg = Cgroup::create_at(&h, &path, Some(&r)).expect("create");
    let mut child = ChildGuard::gated_sh(DEVICE_PROBE);
    cg.add_pid(child.pid()).expect("add_pid");
    child.release();
    let (out, status) = child.finish(Duration::from_secs(5));
    assert!(status.success(), "{status}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "null-r-ok",
            "null-w-ok",
            "zero-r-ok",
            "zero-w-denied",
            "full-r-denied"
        ]
    );
}

#[test]
fn oom_kills_are_counted() {
    let h = host();
    let path = unique_name();
    let _guard = CgroupGuard::new(h.clone(), path.clone());
    let r = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(32i64 << 20)
                .build()
                .expect("memory"),
        )
        .build()
        .expect("resources");
    let cg = Cgroup::create_at(&h, &path, Some(&r)).expect("create");
    assert_eq!(cg.oom_kill_count().expect("oom count"), 0);

    // Touch 200 MiB (b"x" * n writes every page, unlike a zeroed bytearray).
    let hog = if Path::new("/usr/bin/python3").exists() {
        "read _; exec /usr/bin/python3 -c 'b = b\"x\" * (200 << 20)'"
    } else {
        "read _; x=$(head -c 200000000 /dev/zero | tr '\\0' x)"
    };
    let mut child = ChildGuard::gated_sh(hog);
    cg.add_pid(child.pid()).expect("add_pid");
    child.release();
    let (_, status) = child.finish(Duration::from_secs(30));
    assert!(!status.success(), "the hog must not survive a 32 MiB limit");
    eventually("the OOM kill to be counted", || {
        cg.oom_kill_count().is_ok_and(|n| n >= 1)
    });
}

#[test]
fn open_sees_what_create_made() {
    let h = host();
    let path = unique_name();
    let _guard = CgroupGuard::new(h.clone(), path.clone());
    let created = Cgroup::create_at(&h, &format!("/{path}"), None).expect("create");
    let opened = Cgroup::open_at(&h, &path).expect("open");
    assert_eq!(created.host_dirs(), opened.host_dirs());
    assert_eq!(opened.mode(), garden_cgroups::detect_mode());
    if opened.mode() == CgroupMode::Legacy {
        let names: Vec<String> = opened.host_dirs().into_iter().map(|(n, _)| n).collect();
        assert!(!names.iter().any(|n| n.contains("systemd")), "{names:?}");
        for (_, dir) in opened.host_dirs() {
            assert!(dir.is_dir(), "{}", dir.display());
            assert!(!dir.starts_with("/sys/fs/cgroup/unified"));
        }
        assert!(!Path::new("/sys/fs/cgroup/systemd").join(&path).exists());
    }
}
