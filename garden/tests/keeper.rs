//! The process keeper (`gardend keep`) with real containers: stdio, exit
//! status, signals, terminals, and output kept while nobody is attached.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{stderr, TestBundle, RUNTIME};
use garden::keeper::frame::Frame;
use serde_json::{json, Value};

const GARDEND: &str = env!("CARGO_BIN_EXE_gardend");

/// A running container whose init only reaps (Garden's shape).
fn idle_container(name: &str) -> TestBundle {
    let b = TestBundle::new(name).edit(|c| {
        c["annotations"]["garden.init"] = json!("idle");
    });
    let out = b.create();
    assert!(out.status.success(), "create: {}", stderr(&out));
    let out = b.runtime(&["start", &b.id]);
    assert!(out.status.success(), "start: {}", stderr(&out));
    b
}

struct Kept {
    dir: PathBuf,
    pid: i32,
}

fn keep(b: &TestBundle, n: &str, process: Value, tty: bool) -> Kept {
    let dir = b.path().join(format!("proc-{n}"));
    std::fs::create_dir_all(&dir).expect("process dir");
    std::fs::write(dir.join("process.json"), process.to_string()).expect("process.json");
    let mut cmd = Command::new(GARDEND);
    cmd.args(["keep", "--runtime", RUNTIME, "--root"])
        .arg(b.state_root())
        .args(["--container", &b.id, "--dir"])
        .arg(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if tty {
        cmd.arg("--tty");
    }
    let mut child = cmd.spawn().expect("spawn gardend keep");
    let mut line = String::new();
    let mut out = child.stdout.take().expect("stdout");
    let mut byte = [0u8; 1];
    while out.read(&mut byte).unwrap_or(0) == 1 && byte[0] != b'\n' {
        line.push(byte[0] as char);
    }
    // The keeper goes on in the background; reap it when it ends.
    std::thread::spawn(move || child.wait());
    let pid = line
        .strip_prefix("ok ")
        .unwrap_or_else(|| panic!("keeper said {line:?}"))
        .parse()
        .expect("pid");
    Kept { dir, pid }
}

fn process(args: &[&str]) -> Value {
    json!({
        "terminal": false,
        "user": {"uid": 0, "gid": 0},
        "args": args,
        "env": ["PATH=/bin:/usr/bin"],
        "cwd": "/"
    })
}

fn connect(dir: &Path) -> UnixStream {
    let mut s = UnixStream::connect(dir.join("sock")).expect("connect to the keeper");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    send(&mut s, Frame::Watch { output: true });
    s
}

fn send(s: &mut UnixStream, f: Frame) {
    s.write_all(&f.encode()).expect("send a frame");
}

/// Reads frames until the exit frame: (stdout, stderr, status, dropped).
fn collect(s: &mut UnixStream) -> (String, String, i32, u64) {
    let (mut out, mut err, mut dropped) = (Vec::new(), Vec::new(), 0);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        while let Some((f, used)) = Frame::decode(&buf).expect("valid frames") {
            buf.drain(..used);
            match f {
                Frame::Stdout(d) => out.extend(d),
                Frame::Stderr(d) => err.extend(d),
                Frame::Dropped(n) => dropped += n,
                Frame::Exit(code) => {
                    return (
                        String::from_utf8_lossy(&out).into_owned(),
                        String::from_utf8_lossy(&err).into_owned(),
                        code,
                        dropped,
                    )
                }
                other => panic!("unexpected frame {other:?}"),
            }
        }
        let n = s.read(&mut chunk).expect("read from the keeper");
        assert!(n > 0, "keeper closed before the exit status");
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn wait_gone(pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{pid}")).exists() && !common::is_zombie(pid) {
        assert!(Instant::now() < deadline, "process {pid} still there");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn idle_init_stays_running_and_ignores_term() {
    let b = idle_container("idle");
    let pid = b.state()["pid"].as_i64().expect("pid") as i32;
    let _ = b.runtime(&["kill", &b.id, "TERM"]);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(b.state()["status"], "running");
    let out = b.runtime(&["kill", &b.id, "KILL"]);
    assert!(out.status.success());
    wait_gone(pid);
}

#[test]
fn stdin_stdout_stderr_and_exit_status() {
    let b = idle_container("stdio");
    let k = keep(
        &b,
        "a",
        process(&["sh", "-c", "read x; echo out:$x; echo err:$x >&2; exit 3"]),
        false,
    );
    let mut s = connect(&k.dir);
    send(&mut s, Frame::Stdin(b"hi\n".to_vec()));
    send(&mut s, Frame::StdinEof);
    let (out, err, code, dropped) = collect(&mut s);
    assert_eq!(
        (out.as_str(), err.as_str(), code, dropped),
        ("out:hi\n", "err:hi\n", 3, 0)
    );
    assert_eq!(garden::keeper::recorded_exit(&k.dir), Some(3));
    wait_gone(k.pid);
}

#[test]
fn output_is_kept_while_nobody_is_attached() {
    let b = idle_container("backlog");
    let k = keep(
        &b,
        "a",
        process(&["sh", "-c", "echo one; sleep 0.3; echo two >&2; exit 7"]),
        false,
    );
    // Nobody attached: the process finishes, the status is recorded, and
    // the keeper waits to hand over what was written.
    let deadline = Instant::now() + Duration::from_secs(10);
    while garden::keeper::recorded_exit(&k.dir).is_none() {
        assert!(Instant::now() < deadline, "no exit status recorded");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut s = connect(&k.dir);
    let (out, err, code, _) = collect(&mut s);
    assert_eq!((out.as_str(), err.as_str(), code), ("one\n", "two\n", 7));
}

#[test]
fn a_client_that_leaves_and_comes_back_gets_the_rest() {
    let b = idle_container("reattach");
    let k = keep(
        &b,
        "a",
        process(&[
            "sh",
            "-c",
            "read x; echo before; read y; echo after:$y; exit 0",
        ]),
        false,
    );
    let mut s = connect(&k.dir);
    send(&mut s, Frame::Stdin(b"go\n".to_vec()));
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).expect("first output");
    let (f, _) = Frame::decode(&buf[..n])
        .expect("frame")
        .expect("whole frame");
    assert_eq!(f, Frame::Stdout(b"before\n".to_vec()));
    drop(s);
    let mut s = connect(&k.dir);
    send(&mut s, Frame::Stdin(b"again\n".to_vec()));
    let (out, _, code, _) = collect(&mut s);
    assert_eq!((out.as_str(), code), ("after:again\n", 0));
}

#[test]
fn signals_reach_the_process() {
    let b = idle_container("signal");
    let k = keep(&b, "a", process(&["sleep", "100"]), false);
    let mut s = connect(&k.dir);
    send(&mut s, Frame::Signal(libc::SIGTERM));
    let (_, _, code, _) = collect(&mut s);
    assert_eq!(code, 128 + libc::SIGTERM);
}

#[test]
fn terminal_with_window_size() {
    let b = idle_container("tty");
    let mut p = process(&["sh", "-c", "read x; stty size; exit 4"]);
    p["terminal"] = json!(true);
    let k = keep(&b, "a", p, true);
    let mut s = connect(&k.dir);
    send(
        &mut s,
        Frame::WindowSize {
            rows: 33,
            cols: 101,
        },
    );
    send(&mut s, Frame::Stdin(b"go\n".to_vec()));
    let (out, _, code, _) = collect(&mut s);
    assert!(out.contains("33 101"), "terminal output: {out:?}");
    assert_eq!(code, 4);
}

#[test]
fn a_missing_program_is_reported_by_the_keeper() {
    let b = idle_container("missing");
    let dir = b.path().join("proc-missing");
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(
        dir.join("process.json"),
        process(&["/no/such/program"]).to_string(),
    )
    .expect("process.json");
    let out = Command::new(GARDEND)
        .args(["keep", "--runtime", RUNTIME, "--root"])
        .arg(b.state_root())
        .args(["--container", &b.id, "--dir"])
        .arg(&dir)
        .output()
        .expect("gardend keep");
    let line = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "keeper succeeded: {line}");
    assert!(
        line.starts_with("error ") && line.contains("/no/such/program"),
        "{line}"
    );
}
