//! `cell-agent diag` without a running agent: the host checks against
//! this machine and a real gardend, and a clear error (not a panic or a
//! hang) when the agent is not there.

mod common;

use std::process::Command;

fn diag(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cell-agent"))
        .args(["diag", "--config", "/nonexistent.toml"])
        .args(args)
        .output()
        .expect("run cell-agent diag")
}

#[test]
fn host_checks_find_this_host_and_garden() {
    let garden = common::Garden::start();
    let socket = garden.dir.path().join("garden.sock");
    let socket = socket.to_str().expect("utf-8 path");
    let out = diag(&["--garden-socket", socket, "host", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "diag host JSON: {e}\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let mounts = std::fs::read_to_string("/proc/self/mounts").expect("mounts");
    let v2 = mounts
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some("/sys/fs/cgroup") && l.contains(" cgroup2 "));
    let expected = if v2 { "v2" } else { "hybrid" };
    if v2 || mounts.contains(" cgroup2 ") {
        assert_eq!(report["cgroup_mode"], expected, "{report}");
    }
    let overlay = std::fs::read_to_string("/proc/filesystems")
        .expect("filesystems")
        .contains("overlay");
    assert_eq!(report["overlayfs"], overlay);
    assert_eq!(report["seccomp"], true);
    assert_eq!(report["garden_socket"], socket);
    assert_eq!(report["garden_reachable"], true, "{report}");
    assert_eq!(out.status.success(), report["ok"] == true);

    let table = diag(&["--garden-socket", socket, "host"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("cgroup mode") && text.contains("reachable"),
        "{text}"
    );
}

#[test]
fn without_an_agent_diag_says_so() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let out = diag(&["--agent-url", &url, "summary"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("did not answer") && err.contains(&url),
        "{err}"
    );
    let socket_down = diag(&["--garden-socket", "/nonexistent/garden.sock", "host"]);
    assert!(
        !socket_down.status.success(),
        "garden unreachable fails the checks"
    );
    let text = String::from_utf8_lossy(&socket_down.stdout);
    assert!(text.contains("UNREACHABLE"), "{text}");
}
