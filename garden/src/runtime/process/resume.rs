//! Init's hand-over to a read-only copy of the runtime binary.
//!
//! `create` runs the binary as its caller started it, so that no second
//! exec sits on its critical path. Nothing of the container runs during
//! set-up; once it is done (and `create` has been told), init re-executes
//! itself from the read-only copy the parent prepared (`sealed_exe`) and
//! goes on waiting for `start` there, overlapping the caller's `start`.
//! What it needs crosses the exec as a small JSON handover in a memfd plus
//! inherited descriptors; the process plan is rebuilt from the spec exactly
//! as `create` built it.
//!
//! This needs a binary without ELF interpreter (garden-runc is linked
//! statically): after `pivot_root` the kernel would look for one inside the
//! container's root.

use std::io::{Read, Seek, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::PathBuf;

use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};
use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

use super::super::bundle;
use super::super::sealed_exe;
use super::super::sys;
use super::console::Pty;
use super::context::InitContext;
use super::init::{self, Waiting};
use super::user::ProcessPlan;

/// The verb (hidden from help) the re-executed init runs under.
pub const VERB: &str = "init-resume";

#[derive(Debug, Serialize, Deserialize)]
struct Handover {
    spec: Spec,
    preserve_fds: i32,
    fifo: RawFd,
    exit_file: RawFd,
    pty_master: Option<RawFd>,
    pty_slave: Option<PathBuf>,
}

/// Re-executes init from `exe`; returns only the error that prevented it.
pub(super) fn hand_over(ctx: &InitContext, exe: &OwnedFd, pty: Option<&Pty>) -> String {
    match try_hand_over(ctx, exe, pty) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

fn try_hand_over(
    ctx: &InitContext,
    exe: &OwnedFd,
    pty: Option<&Pty>,
) -> Result<std::convert::Infallible, String> {
    let handover = Handover {
        spec: ctx.bundle.spec.clone(),
        preserve_fds: ctx.process.preserve_fds,
        fifo: ctx.fifo.as_raw_fd(),
        exit_file: ctx.exit_file.as_raw_fd(),
        pty_master: pty.map(|p| p.master.as_raw_fd()),
        pty_slave: pty.map(|p| p.slave_path.clone()),
    };
    let json = serde_json::to_vec(&handover).map_err(|e| format!("encoding the handover: {e}"))?;
    // Not close-on-exec: the re-executed init reads it.
    let memfd = memfd_create("garden-init-handover", MFdFlags::empty())
        .map_err(|e| format!("memfd_create: {e}"))?;
    let mut file = std::fs::File::from(memfd);
    file.write_all(&json)
        .and_then(|()| file.rewind())
        .map_err(|e| format!("writing the handover: {e}"))?;
    let mut keep = vec![ctx.fifo.as_fd(), ctx.exit_file.as_fd()];
    keep.extend(pty.map(|p| p.master.as_fd()));
    for fd in keep {
        fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty()))
            .map_err(|e| format!("keeping descriptor {} open: {e}", fd.as_raw_fd()))?;
    }
    let cstring = |s: &str| std::ffi::CString::new(s).map_err(|e| e.to_string());
    let args = [
        cstring("garden-runc")?,
        cstring(VERB)?,
        cstring(&file.as_raw_fd().to_string())?,
    ];
    let err = nix::unistd::fexecve(exe.as_fd(), &args, &sealed_exe::environment()).unwrap_err();
    Err(format!("fexecve: {err}"))
}

/// The re-executed init: rebuilds what it needs from the handover in `fd`,
/// then waits for `start` as init always does. Never returns.
pub fn resume(fd: RawFd) -> ! {
    let signals = match init::block_signals() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("garden-runc: init: {e}");
            sys::exit_now(1)
        }
    };
    // Only ever entered through `hand_over`; refuse anything else, so this
    // verb never runs a container's program from a writable binary.
    if !sealed_exe::runs_read_only("self") {
        eprintln!("garden-runc: {VERB} is internal to init");
        sys::exit_now(2);
    }
    let Some(memfd) = sys::own_fd(fd) else {
        eprintln!("garden-runc: {VERB}: descriptor {fd} is not open");
        sys::exit_now(2);
    };
    let mut json = Vec::new();
    if let Err(e) = std::fs::File::from(memfd).read_to_end(&mut json) {
        eprintln!("garden-runc: {VERB}: reading the handover: {e}");
        sys::exit_now(1);
    }
    let handover: Handover = match serde_json::from_slice(&json) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("garden-runc: {VERB}: the handover is invalid: {e}");
            sys::exit_now(2);
        }
    };
    let (Some(fifo), Some(exit_file)) =
        (sys::own_fd(handover.fifo), sys::own_fd(handover.exit_file))
    else {
        eprintln!("garden-runc: {VERB}: the handover's descriptors are not open");
        sys::exit_now(2);
    };
    let pty = match (
        handover.pty_master.and_then(sys::own_fd),
        handover.pty_slave.clone(),
    ) {
        (Some(master), Some(slave_path)) => Some(Pty { master, slave_path }),
        _ => None,
    };
    let (plan, program) = match rebuild(&handover) {
        Ok(p) => p,
        Err(e) => fail(exit_file.as_fd(), &e),
    };
    let hooks = handover
        .spec
        .hooks()
        .as_ref()
        .and_then(|h| h.start_container().clone())
        .unwrap_or_default();
    let waiting = Waiting {
        process: &plan,
        program: &program,
        pty: pty.as_ref(),
        start_container_hooks: &hooks,
        fifo: fifo.as_fd(),
        exit_file: exit_file.as_fd(),
        idle: bundle::idle_init(&handover.spec),
    };
    init::wait_and_run(&waiting, &signals)
}

/// The process plan and program, as `create` decided them.
fn rebuild(h: &Handover) -> Result<(ProcessPlan, PathBuf), String> {
    let process = h.spec.process().clone().ok_or("the spec has no process")?;
    let seccomp = bundle::seccomp_profile(&h.spec).map_err(|e| e.to_string())?;
    let plan =
        ProcessPlan::from_spec(&process, seccomp, h.preserve_fds).map_err(|e| e.to_string())?;
    let program = if bundle::idle_init(&h.spec) {
        PathBuf::new()
    } else {
        plan.resolve_program().map_err(|e| e.to_string())?
    };
    Ok((plan, program))
}

fn fail(exit_file: BorrowedFd<'_>, error: &str) -> ! {
    eprintln!("garden-runc: {error}");
    init::write_exit(exit_file, &init::exec_failed(error.to_string()));
    sys::exit_now(1)
}
