//! The runc verbs end to end: create, start, state, kill, delete, run, exec,
//! list, ps, and hooks.

mod common;

use common::{stderr, stdout, TestBundle};

#[test]
fn create_start_kill_delete() {
    let b = TestBundle::new("life").args(&["sleep", "30"]);
    let out = b.create();
    assert!(out.status.success(), "create: {}", stderr(&out));
    let s = b.state();
    assert_eq!(s["status"], "created");
    let pid = s["pid"].as_i64().expect("pid");
    assert!(pid > 0);
    assert!(b.runtime(&["start", &b.id]).status.success());
    assert_eq!(b.state()["status"], "running");
    let again = b.runtime(&["start", &b.id]);
    assert!(!again.status.success(), "second start must fail");
    assert!(stderr(&again).contains("running"), "{}", stderr(&again));

    let list = stdout(&b.runtime(&["list", "--format", "json"]));
    assert!(list.contains(&b.id), "{list}");
    // Init forks the program once start has returned: give it a moment.
    let ps = b.ps_until(|p| p.len() == 2);
    assert!(ps.contains(&pid) && ps.len() == 2, "ps {ps:?}");

    let del = b.runtime(&["delete", &b.id]);
    assert!(
        !del.status.success(),
        "deleting a running container needs --force"
    );

    assert!(b.runtime(&["kill", &b.id, "TERM"]).status.success());
    let s = b.wait_stopped();
    assert_eq!(s["exit"]["signal"], 15, "{s}");
    assert_eq!(s["pid"], 0);
    assert!(b.runtime(&["delete", &b.id]).status.success());
    let gone = b.runtime(&["state", &b.id]);
    assert!(!gone.status.success());
    assert!(
        stderr(&gone).contains("does not exist"),
        "{}",
        stderr(&gone)
    );
    b.assert_nothing_left();
}

#[test]
fn run_reports_exit_code_and_signal() {
    let b = TestBundle::new("exit").sh("echo out; echo err >&2; exit 7");
    let out = b.run();
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert_eq!(stdout(&out), "out\n");
    assert!(stderr(&out).contains("err"));
    b.assert_nothing_left();

    let k = TestBundle::new("sig").sh("kill -KILL $$");
    assert_eq!(k.run().status.code(), Some(137));
}

#[test]
fn delete_of_a_created_container_kills_its_init() {
    let b = TestBundle::new("delcreated").args(&["sleep", "30"]);
    assert!(b.create().status.success());
    let pid = b.state()["pid"].as_i64().expect("pid") as i32;
    assert!(b.runtime(&["delete", &b.id]).status.success());
    assert!(!std::path::Path::new(&format!("/proc/{pid}/exe")).exists() || common::is_zombie(pid));
    b.assert_nothing_left();
}

#[test]
fn exec_joins_the_running_container() {
    let b = TestBundle::new("exec").args(&["sleep", "30"]);
    assert!(b.create().status.success());
    assert!(b.runtime(&["start", &b.id]).status.success());
    let out = b.runtime(&["exec", &b.id, "sh", "-c", "hostname; echo $$; exit 5"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let text = stdout(&out);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("garden-test"));
    // A small pid: it lives in the container's pid namespace.
    let pid: i32 = lines.next().expect("pid").parse().expect("number");
    assert!(pid < 100, "exec'd process has pid {pid}");
    // The exec'd process joined the container's cgroup: ps (which lists
    // the cgroup's processes) saw it while it ran.
    let b2 = &b;
    let seen = std::thread::scope(|s| {
        let h = s.spawn(|| b2.runtime(&["exec", &b2.id, "sleep", "2"]));
        let seen = b2.ps_until(|p| p.len() >= 3);
        let ran = h.join().expect("exec thread");
        assert!(ran.status.success(), "{}", stderr(&ran));
        seen
    });
    assert!(
        seen.len() >= 3,
        "init, sleep 30 and the exec'd sleep: {seen:?}"
    );
    let missing = b.runtime(&["exec", &b.id, "no-such-program"]);
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("not found"),
        "{}",
        stderr(&missing)
    );
    assert!(b.runtime(&["delete", "--force", &b.id]).status.success());
    b.assert_nothing_left();
}

#[test]
fn zombies_are_reaped_by_init() {
    // Orphans re-parent to init, which must reap them while the program runs.
    let b = TestBundle::new("zombie").sh(
        "for i in 1 2 3 4 5; do (sleep 0.01 &); done; sleep 0.5; ps -o stat | grep -c Z || true",
    );
    let out = b.run();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "0", "zombies left: {}", stdout(&out));
}

#[test]
fn hooks_run_at_their_points_with_state() {
    let b = TestBundle::new("hooks").args(&["true"]);
    let log = b.path().join("hooks.log");
    let hook = |name: &str| serde_json::json!({"path": "/bin/sh", "args": ["sh", "-c", format!("read s; echo {name} $s >> {}", log.display())]});
    let b = b.edit(|c| {
        c["hooks"] = serde_json::json!({
            "prestart": [hook("prestart")],
            "createRuntime": [hook("createRuntime")],
            "poststart": [hook("poststart")],
            "poststop": [hook("poststop")]
        })
    });
    let out = b.run();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&log).expect("hook log");
    let order: Vec<&str> = text
        .lines()
        .map(|l| l.split(' ').next().unwrap_or(""))
        .collect();
    assert_eq!(
        order,
        ["prestart", "createRuntime", "poststart", "poststop"],
        "{text}"
    );
    assert!(text.contains(&b.id), "hooks got the state: {text}");
}

#[test]
fn a_failing_hook_fails_create_and_cleans_up() {
    let b = TestBundle::new("badhook").edit(|c| {
        c["hooks"] = serde_json::json!({"createRuntime": [{"path": "/bin/false"}]});
    });
    let out = b.create();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("createRuntime hook /bin/false failed"),
        "{}",
        stderr(&out)
    );
    b.assert_nothing_left();
}

#[test]
fn a_terminal_goes_to_the_console_socket() {
    use std::io::{IoSliceMut, Read};
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::os::unix::net::UnixListener;

    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

    let b = TestBundle::new("tty")
        .sh("tty; stty size; echo done")
        .edit(|c| {
            c["process"]["terminal"] = serde_json::json!(true);
            c["process"]["consoleSize"] = serde_json::json!({"height": 30, "width": 100});
        });
    // Without a console socket a terminal is refused, clearly.
    let refused = b.create();
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("console socket"),
        "{}",
        stderr(&refused)
    );
    b.assert_nothing_left();

    let sock_path = b.path().join("console.sock");
    let listener = UnixListener::bind(&sock_path).expect("bind console socket");
    let receiver = std::thread::spawn(move || {
        let (conn, _) = listener.accept().expect("accept");
        let mut name = [0u8; 256];
        let mut iov = [IoSliceMut::new(&mut name)];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let msg = recvmsg::<()>(
            std::os::fd::AsRawFd::as_raw_fd(&conn),
            &mut iov,
            Some(&mut space),
            MsgFlags::empty(),
        )
        .expect("recvmsg");
        let mut master = None;
        for c in msg.cmsgs().expect("cmsgs") {
            if let ControlMessageOwned::ScmRights(fds) = c {
                // SAFETY: SCM_RIGHTS gave us a new descriptor that nothing else owns.
                master = fds.first().map(|&fd| unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
        master.expect("the pty master")
    });
    let out = b.create_with(&["--console-socket", sock_path.to_str().expect("utf8")]);
    assert!(out.status.success(), "create: {}", stderr(&out));
    let master = receiver.join().expect("console receiver");
    assert!(b.runtime(&["start", &b.id]).status.success());
    let mut text = String::new();
    let mut file = std::fs::File::from(master);
    let mut buf = [0u8; 4096];
    // EIO once the last slave closes.
    while let Ok(n) = file.read(&mut buf) {
        if n == 0 {
            break;
        }
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
        if text.contains("done") {
            break;
        }
    }
    assert!(text.contains("/dev/pts/"), "{text}");
    assert!(text.contains("30 100"), "console size: {text}");
    b.wait_stopped();
    assert!(b.runtime(&["delete", &b.id]).status.success());
    b.assert_nothing_left();
}

#[test]
fn run_with_a_terminal_and_no_console_socket_proxies_it() {
    // As runc does: `run` receives the pty itself and copies its output.
    let b = TestBundle::new("runtty")
        .sh("tty; echo through-the-pty; exit 4")
        .edit(|c| c["process"]["terminal"] = serde_json::json!(true));
    let out = b.run();
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("/dev/pts/"), "{text}");
    assert!(text.contains("through-the-pty\r\n"), "{text}");
    b.assert_nothing_left();
    assert!(
        !b.state_root().join(format!(".{}.console", b.id)).exists(),
        "console socket left behind"
    );
}

#[test]
fn kill_all_reaches_every_process_and_errors_go_to_the_log_file() {
    // Without a pid namespace, processes outlive init unless --all reaches
    // them through the cgroup.
    let b = TestBundle::new("killall")
        .sh("sleep 30 & sleep 30 & wait")
        .edit(|c| {
            let ns = c["linux"]["namespaces"].as_array_mut().expect("namespaces");
            ns.retain(|n| n["type"] != "pid");
        });
    assert!(b.create().status.success());
    assert!(b.runtime(&["start", &b.id]).status.success());
    let procs = b.ps_until(|p| p.len() >= 4);
    assert!(procs.len() >= 4, "init, sh and two sleeps: {procs:?}");
    let kill = b.runtime(&["kill", "--all", &b.id, "KILL"]);
    assert!(kill.status.success(), "{}", stderr(&kill));
    b.wait_stopped();
    for pid in &procs {
        for _ in 0..100 {
            if common::is_zombie(*pid as i32) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(
            common::is_zombie(*pid as i32),
            "pid {pid} survived kill --all"
        );
    }
    assert!(b.runtime(&["delete", &b.id]).status.success());
    b.assert_nothing_left();

    // runc's log contract: the error also lands in --log as a JSON line.
    let log = b.path().join("runtime.log");
    let log_arg = log.to_str().expect("utf8");
    let out = b.runtime(&[
        "--log",
        log_arg,
        "--log-format",
        "json",
        "start",
        "no-such-container",
    ]);
    assert!(!out.status.success());
    let text = std::fs::read_to_string(&log).expect("log file");
    let line: serde_json::Value =
        serde_json::from_str(text.lines().last().expect("a line")).expect("json line");
    assert_eq!(line["level"], "error", "{text}");
    assert!(
        line["msg"]
            .as_str()
            .unwrap_or("")
            .contains("no-such-container"),
        "{text}"
    );
}
