//! Privileged tests of the cgroup v2 code on a real cgroup2 filesystem, on any
//! host: the pure-v2 root `/sys/fs/cgroup`, or the hybrid host's cgroup2 mount
//! (`/sys/fs/cgroup/unified`, which has no resource controllers but does have
//! `cgroup.procs`, `cgroup.freeze`, `cgroup.kill`, `cpu.stat` and eBPF device
//! filters). Each test makes a private root `garden-test-<pid>-<n>` under the
//! mount and uses it as the `Hierarchy`, so nothing outside it is written
//! (in particular no host `cgroup.subtree_control`).

mod common;

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use common::{eventually, require_root, unique_name, CgroupGuard, ChildGuard, DEVICE_PROBE};
use garden_cgroups::{detect_mode, Cgroup, CgroupMode, Hierarchy, CGROUP_ROOT};
use oci_spec::runtime::{LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxResourcesBuilder};

/// The cgroup2 mount point.
fn cgroup2_mount() -> PathBuf {
    if detect_mode() == CgroupMode::Unified {
        return PathBuf::from(CGROUP_ROOT);
    }
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    mountinfo
        .lines()
        .find_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let is_cgroup2 = right.split(' ').next()? == "cgroup2";
            let mount_point = left.split(' ').nth(4)?;
            is_cgroup2.then(|| PathBuf::from(mount_point))
        })
        .expect("this test needs a cgroup2 mount (hybrid hosts have /sys/fs/cgroup/unified)")
}

/// A private cgroup2 root and a guard that removes the container cgroup and
/// then the root.
fn private_root() -> (Hierarchy, CgroupGuard) {
    require_root();
    let root = cgroup2_mount().join(unique_name());
    fs::create_dir(&root).expect("mkdir private cgroup2 root");
    let hierarchy = Hierarchy::unified(&root);
    let mut guard = CgroupGuard::new(hierarchy.clone(), "ctr");
    guard.extra.push(root);
    (hierarchy, guard)
}

fn rule(
    allow: bool,
    typ: Option<LinuxDeviceType>,
    mm: Option<(i64, i64)>,
    access: &str,
) -> oci_spec::runtime::LinuxDeviceCgroup {
    let mut b = LinuxDeviceCgroupBuilder::default()
        .allow(allow)
        .access(access);
    if let Some(t) = typ {
        b = b.typ(t);
    }
    if let Some((major, minor)) = mm {
        b = b.major(major).minor(minor);
    }
    b.build().expect("rule")
}

fn probe(cg: &Cgroup) -> Vec<String> {
    let mut child = ChildGuard::gated_sh(DEVICE_PROBE);
    cg.add_pid(child.pid()).expect("add_pid");
    child.release();
    let (out, status) = child.finish(Duration::from_secs(5));
    assert!(status.success(), "{status}");
    out.lines().map(str::to_owned).collect()
}

#[test]
fn ebpf_device_filter_is_enforced_and_replaced() {
    let (h, _guard) = private_root();
    let restrictive = LinuxResourcesBuilder::default()
        .devices(vec![
            rule(false, None, None, "rwm"),
            rule(true, Some(LinuxDeviceType::C), Some((1, 3)), "rwm"),
            rule(true, Some(LinuxDeviceType::C), Some((1, 5)), "r"),
        ])
        .build()
        .expect("resources");
    let cg = Cgroup::create_at(&h, "ctr", Some(&restrictive)).expect("create");
    assert_eq!(
        probe(&cg),
        [
            "null-r-ok",
            "null-w-ok",
            "zero-r-ok",
            "zero-w-denied",
            "full-r-denied"
        ]
    );

    // Replacing the filter must detach the old program: if both stayed
    // attached, the old one would still deny writes to /dev/zero.
    let open = LinuxResourcesBuilder::default()
        .devices(vec![
            rule(true, None, None, "rwm"),
            rule(false, Some(LinuxDeviceType::C), Some((1, 7)), "r"),
        ])
        .build()
        .expect("resources");
    cg.update(&open).expect("update");
    assert_eq!(
        probe(&cg),
        [
            "null-r-ok",
            "null-w-ok",
            "zero-r-ok",
            "zero-w-ok",
            "full-r-denied"
        ]
    );
}

#[test]
fn freeze_kill_and_destroy_on_cgroup2() {
    let (h, _guard) = private_root();
    let cg = Cgroup::create_at(&h, "ctr", None).expect("create");
    assert_eq!(cg.mode(), CgroupMode::Unified);
    let dir = cg.host_dirs()[0].1.clone();

    let mut child = ChildGuard::gated_sh("read _; sleep 30 & wait");
    cg.add_pid(child.pid()).expect("add_pid");
    child.release();
    eventually("the grandchild", || cg.pids().is_ok_and(|p| p.len() == 2));
    assert!(cg.stats().expect("stats").cpu.is_some());

    cg.freeze().expect("freeze");
    assert!(fs::read_to_string(dir.join("cgroup.events"))
        .expect("events")
        .contains("frozen 1"));
    cg.thaw().expect("thaw");
    assert!(fs::read_to_string(dir.join("cgroup.events"))
        .expect("events")
        .contains("frozen 0"));

    cg.freeze().expect("freeze again");
    cg.kill_all().expect("kill_all (cgroup.kill)");
    let (_, status) = child.finish(Duration::from_secs(5));
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    eventually("the cgroup to empty", || {
        cg.pids().is_ok_and(|p| p.is_empty())
    });
    cg.destroy().expect("destroy");
    assert!(!dir.exists());
}
