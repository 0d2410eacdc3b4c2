//! Fork-based test harness: the seccomp filter is installed in a forked child, never in the
//! test harness's own threads. The child runs a list of checks and reports the first failure
//! to the parent as a fixed-size record over a pipe, then exits.

#![allow(dead_code)] // each test binary uses a different part of the harness

use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};

use nix::fcntl::OFlag;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, pipe2, ForkResult};

/// What went wrong inside the child.
#[derive(Debug)]
pub struct Failure {
    pub what: &'static str,
    pub ret: i64,
    pub errno: i32,
}

pub type Check = Result<(), Failure>;

/// How the child ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Passed,
    Failed(String),
    Exited(i32),
    Signaled(Signal),
}

/// Result of a raw syscall: its return value and, if it returned -1, errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ret {
    pub ret: i64,
    pub errno: i32,
}

fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Calls syscall `nr` with `args`.
///
/// Contract (why this is not `unsafe fn`, in test code): only for probes whose pointer
/// arguments are null or point at live data the kernel only reads; nothing that writes to
/// our memory, changes mappings, forks, exits or closes a descriptor owned by a Rust object.
/// Fork-like calls have their own helpers below.
pub fn probe(nr: libc::c_long, args: [u64; 6]) -> Ret {
    // SAFETY: by this function's contract the syscall writes none of our memory, leaves the
    // address space and Rust-owned descriptors alone, and the kernel validates every pointer.
    let ret = unsafe { libc::syscall(nr, args[0], args[1], args[2], args[3], args[4], args[5]) };
    Ret {
        ret,
        errno: if ret == -1 { errno() } else { 0 },
    }
}

pub fn expect_errno(what: &'static str, got: Ret, errno: i32) -> Check {
    if got.ret == -1 && got.errno == errno {
        Ok(())
    } else {
        Err(Failure {
            what,
            ret: got.ret,
            errno: got.errno,
        })
    }
}

pub fn expect_ok(what: &'static str, got: Ret) -> Check {
    if got.ret >= 0 {
        Ok(())
    } else {
        Err(Failure {
            what,
            ret: got.ret,
            errno: got.errno,
        })
    }
}

pub fn check(what: &'static str, ok: bool) -> Check {
    if ok {
        Ok(())
    } else {
        Err(Failure {
            what,
            ret: 0,
            errno: 0,
        })
    }
}

const RECORD: usize = 128;

fn encode(failure: &Failure) -> [u8; RECORD] {
    let mut record = [0u8; RECORD];
    record[0..8].copy_from_slice(&failure.ret.to_le_bytes());
    record[8..12].copy_from_slice(&failure.errno.to_le_bytes());
    let what = failure.what.as_bytes();
    let len = what.len().min(RECORD - 13);
    record[12] = len as u8;
    record[13..13 + len].copy_from_slice(&what[..len]);
    record
}

fn decode(record: &[u8]) -> String {
    let ret = i64::from_le_bytes(record[0..8].try_into().unwrap());
    let errno = i32::from_le_bytes(record[8..12].try_into().unwrap());
    let len = usize::from(record[12]);
    let what = String::from_utf8_lossy(&record[13..13 + len]);
    format!(
        "{what}: returned {ret}, errno {errno} ({})",
        io::Error::from_raw_os_error(errno)
    )
}

/// Ends the child without running the harness's exit handlers or destructors.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit only terminates the calling process.
    unsafe { libc::_exit(code) }
}

/// Forks; the child runs `body` and exits 0 if it passed. Returns how the child ended.
pub fn in_child(body: impl FnOnce() -> Check) -> Outcome {
    let (read_end, write_end): (OwnedFd, OwnedFd) = pipe2(OFlag::O_CLOEXEC).unwrap();
    // SAFETY: the child only runs `body` (syscalls, and in some tests allocation, which glibc
    // keeps usable after fork) and leaves with _exit; it never returns into the harness.
    match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            drop(read_end);
            let code = match body() {
                Ok(()) => 0,
                Err(failure) => {
                    let record = encode(&failure);
                    // SAFETY: writes RECORD bytes from a live stack buffer to our pipe.
                    unsafe { libc::write(write_end.as_raw_fd(), record.as_ptr().cast(), RECORD) };
                    1
                }
            };
            exit_now(code)
        }
        ForkResult::Parent { child } => {
            drop(write_end);
            let mut record = Vec::new();
            std::fs::File::from(read_end)
                .read_to_end(&mut record)
                .unwrap();
            match waitpid(child, None).unwrap() {
                WaitStatus::Exited(_, 0) => Outcome::Passed,
                WaitStatus::Exited(_, 1) if record.len() == RECORD => {
                    Outcome::Failed(decode(&record))
                }
                WaitStatus::Exited(_, code) => Outcome::Exited(code),
                WaitStatus::Signaled(_, signal, _) => Outcome::Signaled(signal),
                other => panic!("unexpected wait status {other:?}"),
            }
        }
    }
}

/// Asserts the child passed, with its failure record otherwise.
pub fn assert_passes(body: impl FnOnce() -> Check) {
    let outcome = in_child(body);
    assert_eq!(outcome, Outcome::Passed);
}

/// Raw `clone(flags, NULL, ...)`: fork-like, the new process continues on a copy of our stack
/// and exits at once with `child_code`. Returns the raw result in the calling process.
pub fn raw_clone(flags: u64, child_code: i32) -> Ret {
    // SAFETY: without CLONE_VM the new process gets its own copy of the address space (like
    // fork); it runs no Rust code but _exit.
    let ret = unsafe { libc::syscall(libc::SYS_clone, flags, 0u64, 0u64, 0u64, 0u64) };
    if ret == 0 {
        exit_now(child_code);
    }
    Ret {
        ret,
        errno: if ret == -1 { errno() } else { 0 },
    }
}

/// Waits for `pid` and returns its exit code, or -signal.
pub fn wait_code(pid: i64) -> i32 {
    let pid = nix::unistd::Pid::from_raw(pid as i32);
    match waitpid(pid, None) {
        Ok(WaitStatus::Exited(_, code)) => code,
        Ok(WaitStatus::Signaled(_, signal, _)) => -(signal as i32),
        _ => i32::MIN,
    }
}

/// `fork()` via libc, the way programs in the container fork (glibc uses clone).
pub fn libc_fork(child_code: i32) -> Ret {
    // SAFETY: the child runs nothing but _exit.
    let ret = unsafe { libc::fork() };
    if ret == 0 {
        exit_now(child_code);
    }
    Ret {
        ret: i64::from(ret),
        errno: if ret == -1 { errno() } else { 0 },
    }
}

/// Builds an OCI seccomp profile from JSON.
pub fn oci(json: &str) -> oci_spec::runtime::LinuxSeccomp {
    serde_json::from_str(json).unwrap()
}

/// `(nr, args)` helper for the common case of a syscall whose arguments the kernel ignores
/// (getpid, getppid, gettid, getuid): the filter still sees them, which makes these calls
/// harmless probes for argument conditions.
pub fn ignored_args(nr: libc::c_long, a0: u64, a1: u64) -> Ret {
    probe(nr, [a0, a1, 0, 0, 0, 0])
}
