//! Every raw system call of the runtime that nix does not wrap safely.
//!
//! All `unsafe` of the `garden` crate lives here, each block with the reason it
//! is sound. Callers get safe functions with `nix::Result`.

use std::os::fd::{OwnedFd, RawFd};

use nix::errno::Errno;
use nix::unistd::{ForkResult, Pid};

/// Forks the calling process.
///
/// The runtime forks only from its single-threaded command-line process (or
/// from a child of it), and the child only runs runtime code that never
/// touches locks held by other threads, because there are none.
pub fn fork() -> nix::Result<ForkResult> {
    // SAFETY: the runtime process is single-threaded when it forks (no thread
    // is ever spawned by the CLI paths that reach here), so the child cannot
    // inherit a lock held by another thread, which is fork's only hazard.
    unsafe { nix::unistd::fork() }
}

/// Closes every descriptor from `first` upwards on the next exec
/// (`close_range(first, ~0, CLOSE_RANGE_CLOEXEC)`), so no host descriptor
/// reaches the container's process (the CVE-2024-21626 class).
pub fn cloexec_from(first: RawFd) -> nix::Result<()> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range takes plain integers and touches only this
    // process's descriptor table; it cannot violate memory safety.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            CLOSE_RANGE_CLOEXEC,
        )
    };
    Errno::result(ret).map(drop)
}

/// Makes the terminal open on `fd` the controlling terminal of this process
/// (which must be a session leader).
pub fn set_controlling_terminal(fd: RawFd) -> nix::Result<()> {
    // SAFETY: TIOCSCTTY takes an integer argument (0: do not steal) and no
    // pointer, so the call cannot read or write our memory.
    let ret = unsafe { libc::ioctl(fd, libc::TIOCSCTTY, 0) };
    Errno::result(ret).map(drop)
}

/// Sets the window size of the terminal on `fd`.
pub fn set_window_size(fd: RawFd, rows: u16, cols: u16) -> nix::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one `winsize` through the pointer, which points
    // to a live, properly initialised local for the whole call.
    let ret = unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) };
    Errno::result(ret).map(drop)
}

/// The window size (rows, columns) of the terminal on `fd`, if it is one.
pub fn window_size(fd: RawFd) -> Option<(u16, u16)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `winsize` through the pointer, which
    // points to a live local for the whole call.
    let ret = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) };
    (ret == 0 && ws.ws_row > 0).then_some((ws.ws_row, ws.ws_col))
}

/// Sends `sig` to `pid` (a thin wrapper so callers can pass raw numbers,
/// including real-time signals nix's `Signal` enum cannot name).
pub fn kill_raw(pid: Pid, sig: i32) -> nix::Result<()> {
    // SAFETY: kill(2) takes two integers and has no memory effects.
    let ret = unsafe { libc::kill(pid.as_raw(), sig) };
    Errno::result(ret).map(drop)
}

/// The unlock-pty call (`TIOCSPTLCK` with 0) and the peer name of a pty master.
pub fn unlock_pty(fd: RawFd) -> nix::Result<u32> {
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads one c_int through the pointer, a live local.
    let ret = unsafe { libc::ioctl(fd, libc::TIOCSPTLCK, &unlock) };
    Errno::result(ret)?;
    let mut n: libc::c_uint = 0;
    // SAFETY: TIOCGPTN writes one c_uint through the pointer, a live local
    // that outlives the call.
    let ret = unsafe { libc::ioctl(fd, libc::TIOCGPTN, &mut n) };
    Errno::result(ret)?;
    Ok(n)
}

/// Reads CLOCK_MONOTONIC in nanoseconds; children record phase timings with it
/// so the parent can compare them with its own clock.
pub fn monotonic_ns() -> u64 {
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .unwrap_or(nix::sys::time::TimeSpec::new(0, 0));
    (ts.tv_sec() as u64) * 1_000_000_000 + ts.tv_nsec() as u64
}

/// Sets one resource limit (`resource` is a `libc::RLIMIT_*` value).
pub fn set_rlimit(resource: libc::c_int, soft: u64, hard: u64) -> nix::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: setrlimit reads one `rlimit` through the pointer, which points
    // to a live local for the whole call. The resource cast matches glibc's
    // `__rlimit_resource_t` (an unsigned int enum on Linux).
    let ret = unsafe { libc::setrlimit(resource as _, &lim) };
    Errno::result(ret).map(drop)
}

/// Resets every catchable signal to its default action. The Rust runtime
/// ignores SIGPIPE, and an ignored signal survives `execve`: the container's
/// process must start with the dispositions a shell would give it.
pub fn reset_signal_dispositions() {
    for sig in 1..libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: installing SIG_DFL registers no Rust handler, so no code of
        // ours can run in signal context; failures (invalid numbers) are
        // harmless and ignored.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
        }
    }
}

/// `dup2(old, new)` onto a fixed descriptor number (stdio of a terminal).
pub fn dup_onto(old: RawFd, new: RawFd) -> nix::Result<()> {
    // SAFETY: dup2 takes two integers; it may close `new`, which the caller
    // intends (the stdio slots of a process about to exec).
    let ret = unsafe { libc::dup2(old, new) };
    Errno::result(ret).map(drop)
}

/// Ends a forked child at once: no atexit handlers, no stdio flushing of
/// buffers that belong to the parent's copy.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and touches no Rust-managed state; it is the
    // documented way to leave a forked child.
    unsafe { libc::_exit(code) }
}

/// Takes ownership of an inherited descriptor named by number (init's
/// handover across its re-exec); `None` if it is not open.
pub fn own_fd(fd: RawFd) -> Option<OwnedFd> {
    if fd < 0 {
        return None;
    }
    // SAFETY: F_GETFD only queries the descriptor table.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return None;
    }
    // SAFETY: the descriptor is open (checked above) and, by the handover's
    // contract, nothing else in this process owns it.
    Some(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}
