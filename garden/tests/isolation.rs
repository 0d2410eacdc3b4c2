//! Each namespace really isolates: hostname, pids, mounts, ipc, network,
//! cgroups, users; and the host's filesystem is out of reach.

mod common;

use std::os::unix::fs::MetadataExt;

use common::{stderr, TestBundle};

#[test]
fn uts_namespace_has_its_own_hostname() {
    let b = TestBundle::new("uts").args(&["hostname"]);
    assert_eq!(b.run_ok().trim(), "garden-test");
    assert_ne!(
        nix::unistd::gethostname()
            .expect("hostname")
            .to_string_lossy(),
        "garden-test"
    );
}

#[test]
fn pid_namespace_starts_at_one_and_hides_the_host() {
    // Init is pid 1, the program pid 2; the host's processes are invisible.
    let b = TestBundle::new("pid").sh("echo $$; ls /proc | grep -c '^[0-9]'");
    let out = b.run_ok();
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("2"), "{out}");
    let visible: usize = lines.next().expect("count").parse().expect("number");
    assert!(visible <= 4, "{visible} processes visible: {out}");
}

#[test]
fn mount_namespace_keeps_mounts_inside_and_host_paths_out() {
    let here = env!("CARGO_MANIFEST_DIR");
    let b = TestBundle::new("mnt").sh(&format!(
        "mount -t tmpfs garden-mnt-test /tmp && echo mounted; ls {here} >/dev/null 2>&1 || echo hidden; echo ---; cat /proc/self/mountinfo"
    ));
    let b = b.edit(|c| {
        // Needed to try a mount at all.
        let caps = serde_json::json!(["CAP_SYS_ADMIN"]);
        c["process"]["capabilities"] =
            serde_json::json!({"bounding": caps, "effective": caps, "permitted": caps});
    });
    let out = b.run_ok();
    let (head, mountinfo) = out.split_once("---\n").expect("separator");
    assert_eq!(head, "mounted\nhidden\n", "{out}");
    assert!(
        mountinfo.contains(" /tmp ") && mountinfo.contains("garden-mnt-test"),
        "the container's own mount is missing inside: {out}"
    );
    assert!(
        !mountinfo.contains(here),
        "host paths in the container's mount table: {out}"
    );
    let host = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(
        !host.contains("garden-mnt-test"),
        "the container's mount reached the host"
    );
}

#[test]
fn ipc_and_net_namespaces_are_private() {
    let b = TestBundle::new("ipcnet")
        .sh("readlink /proc/self/ns/ipc; readlink /proc/self/ns/net; ls /sys/class/net");
    let out = b.run_ok();
    let lines: Vec<&str> = out.lines().collect();
    let host_ipc = std::fs::read_link("/proc/self/ns/ipc").expect("ipc ns");
    let host_net = std::fs::read_link("/proc/self/ns/net").expect("net ns");
    assert_ne!(lines[0], host_ipc.to_string_lossy());
    assert_ne!(lines[1], host_net.to_string_lossy());
    assert_eq!(
        &lines[2..],
        ["lo"],
        "a new net namespace has only lo: {out}"
    );
}

#[test]
fn cgroup_namespace_shows_the_container_its_own_limits() {
    let b = TestBundle::new("cgns").sh("cat /proc/self/cgroup | grep memory; cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max").edit(|c| {
        c["linux"]["resources"]["memory"] = serde_json::json!({"limit": 67108864});
    });
    let out = b.run_ok();
    let mut lines = out.lines();
    if let Some(first) = lines.next().filter(|l| l.contains("memory")) {
        assert!(
            first.ends_with(":/"),
            "cgroup path inside should be /: {out}"
        );
    }
    assert!(out.contains("67108864"), "limit not visible inside: {out}");
}

#[test]
fn user_namespace_maps_root_to_an_unprivileged_host_uid() {
    let b = TestBundle::new("userns")
        .with_copied_rootfs()
        .sh("id -u; touch /tmp/owned; cat /proc/self/uid_map")
        .edit(|c| {
            c["linux"]["namespaces"]
                .as_array_mut()
                .expect("ns")
                .push(serde_json::json!({"type": "user"}));
            c["linux"]["uidMappings"] =
                serde_json::json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
            c["linux"]["gidMappings"] =
                serde_json::json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
            // /sys/fs/cgroup of the host is not ours to mount in a user namespace.
            c["mounts"]
                .as_array_mut()
                .expect("mounts")
                .retain(|m| m["type"] != "cgroup");
        });
    // The mapped root must be able to enter the rootfs.
    std::fs::set_permissions(
        b.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let out = b.run_ok();
    assert!(out.starts_with("0\n"), "{out}");
    assert!(out.contains("100000"), "{out}");
    let meta = std::fs::metadata(b.path().join("rootfs/tmp/owned")).expect("file created inside");
    assert_eq!(
        meta.uid(),
        100000,
        "root in the container is not root on the host"
    );
}

#[test]
fn joining_an_existing_namespace_by_path() {
    // A first container keeps a net namespace alive; the second joins it.
    let first = TestBundle::new("nsowner").args(&["sleep", "30"]);
    assert!(first.create().status.success());
    let pid = first.state()["pid"].as_i64().expect("pid");
    let b = TestBundle::new("nsjoin")
        .args(&["readlink", "/proc/self/ns/net"])
        .edit(|c| {
            let ns = c["linux"]["namespaces"].as_array_mut().expect("ns");
            ns.retain(|n| n["type"] != "network");
            ns.push(serde_json::json!({"type": "network", "path": format!("/proc/{pid}/ns/net")}));
        });
    let out = b.run_ok();
    let theirs = std::fs::read_link(format!("/proc/{pid}/ns/net")).expect("ns link");
    assert_eq!(out.trim(), theirs.to_string_lossy());
}

#[test]
fn rlimits_and_oom_score_adj_apply_to_the_process() {
    let b = TestBundle::new("limits")
        .sh("ulimit -n; cat /proc/self/oom_score_adj")
        .edit(|c| {
            c["process"]["rlimits"] =
                serde_json::json!([{"type": "RLIMIT_NOFILE", "hard": 777, "soft": 555}]);
            c["process"]["oomScoreAdj"] = serde_json::json!(432);
        });
    let out = b.run_ok();
    assert_eq!(out, "555\n432\n");
    // An impossible value is a clear create error, not silently ignored.
    let bad =
        TestBundle::new("badoom").edit(|c| c["process"]["oomScoreAdj"] = serde_json::json!(5000));
    let out = bad.create();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("oom_score_adj"), "{}", stderr(&out));
    bad.assert_nothing_left();
}
