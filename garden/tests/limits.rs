//! cgroup limits are enforced and reported: memory (OOM kill), pids (fork
//! bomb), cpu quota.

mod common;

use common::{stderr, stdout, TestBundle};
use serde_json::json;

#[test]
fn a_memory_bomb_is_oom_killed_and_reported() {
    let b = TestBundle::new("oom")
        .sh("a=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived")
        .edit(|c| c["linux"]["resources"]["memory"] = json!({"limit": 33554432, "swap": 33554432}));
    b.write();
    let out = b.runtime(&[
        "run",
        "--keep",
        "--bundle",
        b.path().to_str().expect("utf8"),
        &b.id,
    ]);
    assert_eq!(out.status.code(), Some(137), "{}", stderr(&out));
    assert!(
        !stdout(&out).contains("survived"),
        "the bomb was not stopped"
    );
    let s = b.state();
    assert_eq!(s["status"], "stopped");
    assert_eq!(s["oom_killed"], true, "OOM not reported: {s}");
    assert!(b.runtime(&["delete", &b.id]).status.success());
    b.assert_nothing_left();
}

#[test]
fn a_fork_bomb_stops_at_pids_max() {
    // Each loop iteration forks a long sleeper; the bomb keeps trying after
    // failures. Observed from the host, since inside nothing can fork once
    // the limit is reached.
    let b = TestBundle::new("pids")
        .sh("i=0; while [ $i -lt 200 ]; do sleep 30 & i=$((i+1)); done 2>/dev/null; wait")
        .edit(|c| c["linux"]["resources"]["pids"] = json!({"limit": 20}));
    let out = b.create();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(b.runtime(&["start", &b.id]).status.success());
    let cg = b.cgroup_dir("pids");
    let read = |f: &str| std::fs::read_to_string(cg.join(f)).unwrap_or_default();
    let mut refused = 0;
    for _ in 0..300 {
        refused = read("pids.events")
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        if refused > 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(refused > 0, "no fork was refused: {}", read("pids.events"));
    assert_eq!(read("pids.max").trim(), "20");
    let current: u64 = read("pids.current").trim().parse().expect("pids.current");
    assert!(current <= 20, "{current} tasks despite pids.max=20");
    let procs = read("cgroup.procs").lines().count();
    assert!(procs <= 20, "{procs} processes despite pids.max=20");
    // busybox sh may give up by itself once fork fails; either way it ends.
    let kill = b.runtime(&["kill", &b.id, "KILL"]);
    assert!(
        kill.status.success() || stderr(&kill).contains("stopped"),
        "kill: {}",
        stderr(&kill)
    );
    b.wait_stopped();
    assert!(b.runtime(&["delete", &b.id]).status.success());
    b.assert_nothing_left();
}

#[test]
fn cpu_quota_is_observable_inside() {
    let b = TestBundle::new("cpu")
        .sh("cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null || cat /sys/fs/cgroup/cpu.max; end=$(( $(date +%s) + 1 )); while [ $(date +%s) -le $end ]; do :; done; grep nr_throttled /sys/fs/cgroup/cpu/cpu.stat 2>/dev/null || grep nr_throttled /sys/fs/cgroup/cpu.stat")
        .edit(|c| c["linux"]["resources"]["cpu"] = json!({"quota": 20000, "period": 100000}));
    let out = b.run();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("20000"), "quota not visible: {text}");
    let throttled: u64 = text
        .lines()
        .find(|l| l.starts_with("nr_throttled"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .expect("nr_throttled");
    assert!(
        throttled > 0,
        "a busy loop under a 20% quota was never throttled: {text}"
    );
}
