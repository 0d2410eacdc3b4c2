//! The keeper's loop: one `poll` over the process's output, its stdin, the
//! socket's clients and SIGCHLD. Single-threaded and non-blocking
//! everywhere, so no slow party can stall another.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};

use super::backlog::Backlog;
use super::frame::Frame;
use super::start::{Keeper, Stdio3};
use super::{BACKLOG_BYTES, EXIT};
use crate::runtime::sys;

/// A client's unsent output beyond which the keeper stops reading the
/// process's output (back-pressure instead of unbounded memory).
const CLIENT_HIGH_WATER: usize = 4 << 20;
/// Pending stdin beyond which the keeper stops reading clients.
const STDIN_HIGH_WATER: usize = 1 << 20;
/// How long output is drained after the process exited, for descendants
/// that keep the pipes open.
const DRAIN: Duration = Duration::from_secs(1);

struct Client {
    stream: UnixStream,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
    /// Sent its first frame (`Frame::Watch`); nothing reaches a client
    /// before.
    hello: bool,
    /// Takes output.
    output: bool,
    /// The status was queued to it.
    got_exit: bool,
}

struct Source {
    fd: OwnedFd,
    stderr: bool,
}

struct State {
    app: nix::unistd::Pid,
    sources: Vec<Source>,
    /// The process's stdin (the terminal's master, duplicated, with a tty).
    stdin: Option<OwnedFd>,
    stdin_pending: Vec<u8>,
    stdin_eof: bool,
    tty: Option<OwnedFd>,
    clients: Vec<Client>,
    backlog: Backlog,
    status: Option<i32>,
    exited_at: Option<Instant>,
    /// The status was written to `exit` and queued to clients.
    finished: bool,
}

pub fn serve(mut k: Keeper) {
    let (sources, stdin, tty) = match k.stdio.take() {
        None => (Vec::new(), None, None),
        Some(Stdio3::Pipes {
            stdin,
            stdout,
            stderr,
        }) => (
            vec![
                Source {
                    fd: stdout,
                    stderr: false,
                },
                Source {
                    fd: stderr,
                    stderr: true,
                },
            ],
            Some(stdin),
            None,
        ),
        Some(Stdio3::Terminal(master)) => {
            let input = master.try_clone().ok();
            let tty = master.try_clone().ok();
            (
                vec![Source {
                    fd: master,
                    stderr: false,
                }],
                input,
                tty,
            )
        }
    };
    let mut st = State {
        app: k.app,
        sources,
        stdin,
        stdin_pending: Vec::new(),
        stdin_eof: false,
        tty,
        clients: Vec::new(),
        backlog: Backlog::new(BACKLOG_BYTES),
        status: None,
        exited_at: None,
        finished: false,
    };
    reap(&mut st);
    loop {
        // Done once a client got the status and everything is sent.
        let delivered =
            st.clients.iter().any(|c| c.got_exit) && st.clients.iter().all(|c| c.outbuf.is_empty());
        if st.finished && delivered {
            return;
        }
        if st.status.is_some() && !st.finished {
            let drained = st.sources.is_empty();
            let late = st.exited_at.is_some_and(|t| t.elapsed() >= DRAIN);
            if drained || late {
                finish(&mut st, &k.dir);
                continue;
            }
        }
        step(&mut st, &k);
    }
}

/// One poll and everything it reported.
fn step(st: &mut State, k: &Keeper) {
    let read_output = st
        .clients
        .iter()
        .all(|c| c.outbuf.len() < CLIENT_HIGH_WATER);
    let read_clients = st.stdin_pending.len() < STDIN_HIGH_WATER;
    let mut fds: Vec<PollFd<'_>> = vec![
        PollFd::new(k.signals.as_fd(), PollFlags::POLLIN),
        PollFd::new(k.listener.as_fd(), PollFlags::POLLIN),
    ];
    let src_at = fds.len();
    for s in &st.sources {
        let ev = if read_output {
            PollFlags::POLLIN
        } else {
            PollFlags::empty()
        };
        fds.push(PollFd::new(s.fd.as_fd(), ev));
    }
    let cli_at = fds.len();
    for c in &st.clients {
        let mut ev = PollFlags::empty();
        if read_clients {
            ev |= PollFlags::POLLIN;
        }
        if !c.outbuf.is_empty() {
            ev |= PollFlags::POLLOUT;
        }
        fds.push(PollFd::new(c.stream.as_fd(), ev));
    }
    let stdin_at = fds.len();
    if let Some(fd) = &st.stdin {
        if !st.stdin_pending.is_empty() {
            fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLOUT));
        }
    }
    let timeout = match st.exited_at {
        Some(t) if !st.finished => {
            let left = DRAIN.saturating_sub(t.elapsed()).as_millis() as u16;
            PollTimeout::from(left.max(1))
        }
        _ => PollTimeout::NONE,
    };
    match poll(&mut fds, timeout) {
        Ok(_) => {}
        Err(Errno::EINTR) => return,
        Err(_) => {
            std::thread::sleep(Duration::from_millis(10));
            return;
        }
    }
    let ready = |f: &PollFd<'_>| {
        f.revents()
            .is_some_and(|r| !r.is_empty() && r != PollFlags::POLLNVAL)
    };
    let sig = ready(&fds[0]);
    let accept = ready(&fds[1]);
    let src_ready: Vec<bool> = fds[src_at..cli_at].iter().map(ready).collect();
    let cli_ready: Vec<bool> = fds[cli_at..stdin_at].iter().map(ready).collect();
    let stdin_ready = fds.get(stdin_at).is_some_and(ready);
    drop(fds);

    if sig {
        while let Ok(Some(_)) = k.signals.read_signal() {}
        reap(st);
    }
    if accept {
        accept_clients(st, k);
    }
    read_sources(st, &src_ready);
    serve_clients(st, &cli_ready);
    if stdin_ready || (st.stdin_eof && st.stdin_pending.is_empty()) {
        write_stdin(st);
    }
}

fn reap(st: &mut State) {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == st.app => exited(st, code),
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == st.app => exited(st, 128 + sig as i32),
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

fn exited(st: &mut State, status: i32) {
    st.status = Some(status);
    st.exited_at = Some(Instant::now());
    tracing::debug!(status, "process exited");
}

fn accept_clients(st: &mut State, k: &Keeper) {
    while let Ok((stream, _)) = k.listener.accept() {
        if stream.set_nonblocking(true).is_err() {
            continue;
        }
        st.clients.push(Client {
            stream,
            inbuf: Vec::new(),
            outbuf: Vec::new(),
            hello: false,
            output: false,
            got_exit: false,
        });
    }
}

/// Output to the clients that take it (else to the backlog); the status
/// to every client that said hello.
fn broadcast(st: &mut State, frame: Frame) {
    let exit = matches!(frame, Frame::Exit(_));
    if !exit && !st.clients.iter().any(|c| c.hello && c.output) {
        st.backlog.push(frame);
        return;
    }
    let mut bytes = Vec::new();
    frame.encode_into(&mut bytes);
    for c in st
        .clients
        .iter_mut()
        .filter(|c| c.hello && (c.output || exit))
    {
        c.outbuf.extend_from_slice(&bytes);
        c.got_exit |= exit;
    }
}

/// A client's first frame: it gets the backlog if it takes output, then
/// the status if the process already ended.
fn hello(st: &mut State, i: usize, output: bool) {
    let first_reader = !st.clients.iter().any(|c| c.hello && c.output);
    let status = st.status.filter(|_| st.finished);
    let c = &mut st.clients[i];
    c.hello = true;
    c.output = output;
    if output && first_reader {
        for f in st.backlog.drain() {
            f.encode_into(&mut c.outbuf);
        }
    }
    if let Some(s) = status {
        Frame::Exit(s).encode_into(&mut c.outbuf);
        c.got_exit = true;
    }
}

fn read_sources(st: &mut State, ready: &[bool]) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut closed = Vec::new();
    for (i, is_ready) in ready.iter().enumerate() {
        if !is_ready {
            continue;
        }
        let fd = st.sources[i].fd.as_fd();
        match nix::unistd::read(fd, &mut buf) {
            Ok(0) => closed.push(i),
            Ok(n) => {
                let data = buf[..n].to_vec();
                let frame = if st.sources[i].stderr {
                    Frame::Stderr(data)
                } else {
                    Frame::Stdout(data)
                };
                broadcast(st, frame);
            }
            Err(Errno::EAGAIN) | Err(Errno::EINTR) => {}
            // EIO: the terminal's last slave closed.
            Err(_) => closed.push(i),
        }
    }
    for i in closed.into_iter().rev() {
        st.sources.remove(i);
    }
}

fn serve_clients(st: &mut State, ready: &[bool]) {
    let mut gone = Vec::new();
    let mut frames = Vec::new();
    let mut hellos = Vec::new();
    for (i, c) in st.clients.iter_mut().enumerate() {
        if !ready.get(i).copied().unwrap_or(false) {
            continue;
        }
        if !c.outbuf.is_empty() {
            match c.stream.write(&c.outbuf) {
                Ok(n) => {
                    c.outbuf.drain(..n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => {
                    gone.push(i);
                    continue;
                }
            }
        }
        let mut buf = [0u8; 64 * 1024];
        match c.stream.read(&mut buf) {
            Ok(0) => gone.push(i),
            Ok(n) => {
                c.inbuf.extend_from_slice(&buf[..n]);
                loop {
                    match Frame::decode(&c.inbuf) {
                        Ok(Some((Frame::Watch { output }, used))) if !c.hello => {
                            c.inbuf.drain(..used);
                            hellos.push((i, output));
                        }
                        Ok(Some((f, used))) => {
                            c.inbuf.drain(..used);
                            frames.push(f);
                        }
                        Ok(None) => break,
                        Err(e) => {
                            tracing::warn!(error = %e, "dropping a client");
                            gone.push(i);
                            break;
                        }
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => gone.push(i),
        }
    }
    for (i, output) in hellos {
        hello(st, i, output);
    }
    gone.dedup();
    for i in gone.into_iter().rev() {
        st.clients.remove(i);
    }
    for f in frames {
        handle(st, f);
    }
}

fn handle(st: &mut State, f: Frame) {
    match f {
        Frame::Stdin(d) => {
            if !st.stdin_eof {
                st.stdin_pending.extend_from_slice(&d);
            }
        }
        Frame::StdinEof => {
            if st.tty.is_some() && !st.stdin_eof {
                // A terminal has no end of file: send its EOF character.
                st.stdin_pending.push(0x04);
            }
            st.stdin_eof = true;
        }
        Frame::Signal(sig) => {
            if st.status.is_none() {
                let _ = sys::kill_raw(st.app, sig);
            }
        }
        Frame::WindowSize { rows, cols } => {
            if let Some(t) = &st.tty {
                let _ = sys::set_window_size(std::os::fd::AsRawFd::as_raw_fd(t), rows, cols);
            }
        }
        // Only a client's first frame may say what it watches.
        Frame::Watch { .. } => {}
        // Output-side frames from a client are meaningless; ignore them.
        Frame::Stdout(_) | Frame::Stderr(_) | Frame::Exit(_) | Frame::Dropped(_) => {}
    }
}

fn write_stdin(st: &mut State) {
    let Some(fd) = &st.stdin else {
        st.stdin_pending.clear();
        return;
    };
    if !st.stdin_pending.is_empty() {
        match nix::unistd::write(fd.as_fd(), &st.stdin_pending) {
            Ok(n) => {
                st.stdin_pending.drain(..n);
            }
            Err(Errno::EAGAIN) | Err(Errno::EINTR) => {}
            // The process closed its stdin: what it did not read is lost,
            // as with any pipe.
            Err(_) => {
                st.stdin_pending.clear();
                st.stdin = None;
                return;
            }
        }
    }
    if st.stdin_eof && st.stdin_pending.is_empty() && st.tty.is_none() {
        st.stdin = None;
    }
}

/// Records the status (atomically, so a reader never sees half of it) and
/// queues it for the clients.
fn finish(st: &mut State, dir: &std::path::Path) {
    let status = st.status.unwrap_or(-1);
    let tmp = dir.join(".exit.tmp");
    if std::fs::write(&tmp, status.to_string()).is_ok() {
        let _ = std::fs::rename(&tmp, dir.join(EXIT));
    }
    st.finished = true;
    st.sources.clear();
    broadcast(st, Frame::Exit(status));
}
