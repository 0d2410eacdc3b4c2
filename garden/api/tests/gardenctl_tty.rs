//! `gardenctl run --tty` in a real pseudo-terminal: raw mode while the
//! process runs (keys reach it one by one, no local echo), the window size
//! at start and on SIGWINCH, and the terminal restored afterwards.

mod common;

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::TestServer;
use nix::pty::{openpty, Winsize};
use nix::sys::termios::{tcgetattr, LocalFlags};

fn winsize(rows: u16, cols: u16) -> Winsize {
    Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

/// gardenctl with the pty's slave as its terminal (and controlling tty).
fn spawn(server: &TestServer, slave: &OwnedFd, args: &[&str]) -> Child {
    let io = || Stdio::from(slave.try_clone().expect("dup"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gardenctl"));
    cmd.arg("--socket")
        .arg(&server.socket)
        .args(args)
        .env_remove("GARDEN_ADDRESS")
        .stdin(io())
        .stdout(io())
        .stderr(io());
    cmd.spawn().expect("gardenctl starts")
}

fn wait_exit(child: &mut Child) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(s) = child.try_wait().expect("wait") {
            return s.code().unwrap_or(-1);
        }
        assert!(Instant::now() < deadline, "gardenctl did not end");
        std::thread::sleep(Duration::from_millis(20));
    }
}

async fn wait_journal(server: &TestServer, event: &str) {
    tokio::time::timeout(
        Duration::from_secs(10),
        server.backend.journal.wait_for(event),
    )
    .await
    .unwrap_or_else(|_| panic!("no {event:?} in {:?}", server.backend.journal.all()));
}

/// Reads from the master until `want` appeared (the terminal may add
/// carriage returns).
fn read_until(master: &mut std::fs::File, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = String::new();
    let mut buf = [0u8; 256];
    while !seen.contains(want) {
        assert!(Instant::now() < deadline, "wanted {want:?}, got {seen:?}");
        match master.read(&mut buf) {
            Ok(n) if n > 0 => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            _ => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread")]
async fn tty_raw_mode_window_size_and_restore() {
    let server = TestServer::start().await;
    let client = server.client();
    let spec = garden_api::types::ContainerSpec {
        handle: "tty".into(),
        ..Default::default()
    };
    client.create(&spec).await.expect("create");

    let pty = openpty(Some(&winsize(40, 120)), None).expect("openpty");
    let before = tcgetattr(pty.slave.as_fd()).expect("termios");
    assert!(before.local_flags.contains(LocalFlags::ICANON));

    // An exit status passes through and the terminal is restored.
    let mut child = spawn(
        &server,
        &pty.slave,
        &["run", "--tty", "tty", "--", "exit", "3"],
    );
    assert_eq!(wait_exit(&mut child), 3);
    wait_journal(&server, "run p0 with tty 120x40").await;
    let after = tcgetattr(pty.slave.as_fd()).expect("termios");
    assert_eq!(after.local_flags, before.local_flags, "terminal restored");
    assert_eq!(after.input_flags, before.input_flags, "terminal restored");

    // Raw mode: keys without a newline reach the process, and what comes
    // back is its output only (no local echo of the keys).
    let mut child = spawn(&server, &pty.slave, &["run", "--tty", "tty", "--", "cat"]);
    let mut master = std::fs::File::from(pty.master);
    // Non-blocking reads on the master, so the deadline holds.
    nix::fcntl::fcntl(
        &master,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    )
    .expect("nonblocking");
    // Wait for raw mode before typing.
    let deadline = Instant::now() + Duration::from_secs(10);
    while tcgetattr(pty.slave.as_fd())
        .expect("termios")
        .local_flags
        .contains(LocalFlags::ICANON)
    {
        assert!(
            Instant::now() < deadline,
            "gardenctl never entered raw mode"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    master.write_all(b"abc").expect("type");
    let seen = read_until(&mut master, "abc");
    assert_eq!(seen.matches("abc").count(), 1, "no local echo: {seen:?}");

    // A resized window reaches the process.
    let size = winsize(30, 100);
    // `stty` sets the size on the slave; gardenctl is not in a foreground
    // process group of this terminal, so it is signalled directly.
    let status = Command::new("stty")
        .args([
            "rows",
            &size.ws_row.to_string(),
            "cols",
            &size.ws_col.to_string(),
        ])
        .stdin(Stdio::from(pty.slave.try_clone().expect("dup")))
        .status()
        .expect("stty");
    assert!(status.success());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGWINCH,
    )
    .expect("SIGWINCH");
    wait_journal(&server, "tty 100x30").await;

    let _ = child.kill();
    let _ = child.wait();
    server.stop().await;
}
