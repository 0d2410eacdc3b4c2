//! The container's init: finishes set-up inside the namespaces, waits for
//! `start`, runs the program as its child, forwards signals to it, reaps
//! every zombie, and records how the program ended.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Pid};
use oci_spec::runtime::Hook;

use super::super::bundle;
use super::super::hooks::{self, HookError};
use super::super::rootfs::{self, RootfsError, Setup};
use super::super::state::ExitRecord;
use super::super::sys;
use super::super::sysctl::{self, SysctlError};
use super::channel::{Channel, ChannelError, Message};
use super::console::{self, ConsoleError};
use super::context::InitContext;
use super::timings::Timings;
use super::user::{ProcessError, ProcessPlan};

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    #[error(transparent)]
    Channel(#[from] ChannelError),
    #[error(transparent)]
    Hook(#[from] HookError),
    #[error(transparent)]
    Sysctl(#[from] SysctlError),
    #[error(transparent)]
    Console(#[from] ConsoleError),
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error("{step}: {source}")]
    Sys {
        step: &'static str,
        #[source]
        source: nix::Error,
    },
}

fn sys_err(step: &'static str) -> impl FnOnce(nix::Error) -> InitError {
    move |source| InitError::Sys { step, source }
}

/// What init needs once set-up is done: the program to start and where to
/// report. Borrowed from the `InitContext` when init goes on in-process, or
/// rebuilt from the handover after the sealed re-execution (`resume`).
pub(super) struct Waiting<'a> {
    pub process: &'a ProcessPlan,
    pub program: &'a Path,
    pub pty: Option<&'a console::Pty>,
    pub start_container_hooks: &'a [Hook],
    pub fifo: BorrowedFd<'a>,
    pub exit_file: BorrowedFd<'a>,
    /// Run no program after `start`, only reap (`bundle::idle_init`).
    pub idle: bool,
}

/// Runs init; never returns.
pub fn run(ctx: &InitContext, ch: Channel) -> ! {
    let signals = match block_signals() {
        Ok(s) => s,
        Err(e) => fail(&ch, &e),
    };
    let (program, pty) = match set_up(ctx, &ch) {
        Ok(p) => p,
        Err(e) => fail(&ch, &e),
    };
    // From here on nobody listens on the channel; close our end so the
    // parent sees end-of-file if it is still waiting.
    drop(ch);
    if let Some(exe) = &ctx.sealed_exe {
        // Set-up ran our binary as the caller started it; before anything
        // of the container runs, init becomes a read-only copy of it. The
        // caller's `create` has already returned: this exec overlaps `start`.
        let err = super::resume::hand_over(ctx, exe, pty.as_ref());
        let record = exec_failed(format!(
            "re-executing init from the read-only runtime binary: {err}"
        ));
        write_exit(ctx.exit_file.as_fd(), &record);
        sys::exit_now(1);
    }
    let waiting = Waiting {
        process: &ctx.process,
        program: &program,
        pty: pty.as_ref(),
        start_container_hooks: &ctx.start_container_hooks,
        fifo: ctx.fifo.as_fd(),
        exit_file: ctx.exit_file.as_fd(),
        idle: bundle::idle_init(&ctx.bundle.spec),
    };
    wait_and_run(&waiting, &signals)
}

/// Waits for `start`, runs the program, records how it ended, exits.
pub(super) fn wait_and_run(w: &Waiting<'_>, signals: &SignalFd) -> ! {
    if !wait_for_start(w.fifo, signals) {
        sys::exit_now(0);
    }
    if w.idle {
        reap_forever(signals);
    }
    let record = run_program(w, signals);
    write_exit(w.exit_file, &record);
    sys::exit_now(record.shell_status());
}

fn fail(ch: &Channel, err: &dyn std::fmt::Display) -> ! {
    let _ = ch.send(&Message::Failed(err.to_string()));
    sys::exit_now(1);
}

pub(super) fn block_signals() -> Result<SignalFd, InitError> {
    let all = SigSet::all();
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&all), None)
        .map_err(sys_err("blocking signals"))?;
    SignalFd::with_flags(&all, SfdFlags::SFD_CLOEXEC).map_err(sys_err("signalfd"))
}

/// Everything between the namespaces and `start`.
fn set_up(ctx: &InitContext, ch: &Channel) -> Result<(PathBuf, Option<console::Pty>), InitError> {
    let mut t = Timings {
        namespaces_us: (sys::monotonic_ns().saturating_sub(ctx.forked_at_ns)) / 1000,
        ..Timings::default()
    };
    let mounts_start = sys::monotonic_ns();
    let spec = &ctx.bundle.spec;
    if let Some(name) = spec.hostname() {
        nix::unistd::sethostname(name).map_err(sys_err("setting the hostname"))?;
    }
    ctx.process.apply_limits()?;
    let root = rootfs::prepare(&Setup {
        spec,
        bundle_dir: &ctx.bundle.dir,
        rootfs: &ctx.bundle.rootfs,
        in_user_namespace: ctx.in_user_namespace,
        cgroups: &ctx.cgroups,
    })?;
    if ctx.pause_for_hooks {
        ch.send(&Message::RuntimeHooks)?;
        match ch.expect("the parent's hooks")? {
            Message::HooksDone(state) => {
                hooks::run_all("createContainer", &ctx.create_container_hooks, &state)?
            }
            got => {
                return Err(ChannelError::Unexpected {
                    wanted: "hooks-done",
                    got,
                }
                .into())
            }
        }
    }
    rootfs::pivot_root(&root)?;
    if let Some(domain) = spec.domainname() {
        std::fs::write("/proc/sys/kernel/domainname", domain).map_err(|source| {
            SysctlError::Write {
                key: "kernel.domainname".into(),
                value: domain.clone(),
                path: "/proc/sys/kernel/domainname".into(),
                source,
            }
        })?;
    }
    if let Some(sysctls) = spec.linux().as_ref().and_then(|l| l.sysctl().as_ref()) {
        sysctl::apply(sysctls)?;
    }
    rootfs::finish(spec)?;
    let pty = if ctx.process.terminal {
        let pty = console::open_pty()?;
        if let Some(sock) = &ctx.console_socket {
            console::send_master(
                sock.as_raw_fd(),
                &pty.master,
                &pty.slave_path.display().to_string(),
            )?;
        }
        Some(pty)
    } else {
        None
    };
    let program = if bundle::idle_init(spec) {
        PathBuf::new()
    } else {
        ctx.process.resolve_program()?
    };
    t.mounts_us = (sys::monotonic_ns() - mounts_start) / 1000;
    ch.send(&Message::Ready(t))?;
    Ok((program, pty))
}

/// Waits for `start` (a byte in the FIFO). Returns false when a signal told
/// the created container to go away first.
fn wait_for_start(fifo: BorrowedFd<'_>, signals: &SignalFd) -> bool {
    loop {
        let mut fds = [
            PollFd::new(fifo, PollFlags::POLLIN),
            PollFd::new(signals.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return false,
            Ok(_) => {}
        }
        // `start` wins over a signal that arrived at the same time: the
        // caller already saw the container started.
        if fds[0]
            .revents()
            .is_some_and(|r| r.intersects(PollFlags::POLLIN | PollFlags::POLLHUP))
        {
            let mut byte = [0u8; 1];
            return matches!(nix::unistd::read(fifo, &mut byte), Ok(1));
        }
        if fds[1]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLIN))
        {
            if let Ok(Some(info)) = signals.read_signal() {
                if info.ssi_signo != Signal::SIGCHLD as u32
                    && info.ssi_signo != Signal::SIGWINCH as u32
                {
                    return false;
                }
                reap_all(None);
            }
        }
    }
}

/// Forks the program, waits for its `execve`, then forwards signals and
/// reaps until it exits.
fn run_program(w: &Waiting<'_>, signals: &SignalFd) -> ExitRecord {
    let started = sys::monotonic_ns();
    let _ = hooks::run_all("startContainer", w.start_container_hooks, "{}");
    // A close-on-exec pipe: end-of-file means execve succeeded, bytes are
    // the error that prevented it.
    let Ok((err_r, err_w)) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) else {
        return exec_failed("creating the exec error pipe".into());
    };
    let child = match sys::fork() {
        Err(e) => return exec_failed(format!("fork of the program: {e}")),
        Ok(ForkResult::Child) => {
            drop(err_r);
            let res = exec_child(w);
            let msg = match res {
                Err(e) => e.to_string(),
                Ok(never) => match never {},
            };
            let _ = std::fs::File::from(err_w).write_all(msg.as_bytes());
            sys::exit_now(127);
        }
        Ok(ForkResult::Parent { child }) => child,
    };
    drop(err_w);
    let mut msg = String::new();
    let _ = std::fs::File::from(err_r).read_to_string(&mut msg);
    let exec_us = (sys::monotonic_ns() - started) / 1000;
    let mut record = wait_program(child, signals);
    record.exec_us = exec_us;
    if !msg.is_empty() {
        eprintln!("garden-runc: {msg}");
        record.error = Some(msg);
    }
    record
}

fn exec_child(w: &Waiting<'_>) -> Result<std::convert::Infallible, InitError> {
    if let Some(pty) = w.pty {
        let slave: OwnedFd = console::open_slave(pty)?;
        super::user::attach_terminal(slave.as_raw_fd(), w.process.console_size)?;
    }
    Ok(w.process.exec(w.program)?)
}

pub(super) fn exec_failed(error: String) -> ExitRecord {
    ExitRecord {
        exit_code: Some(127),
        error: Some(error),
        ..ExitRecord::default()
    }
}

fn wait_program(child: Pid, signals: &SignalFd) -> ExitRecord {
    loop {
        if let Some(record) = reap_all(Some(child)) {
            return record;
        }
        let Ok(Some(info)) = signals.read_signal() else {
            continue;
        };
        let signo = info.ssi_signo as i32;
        if signo != libc::SIGCHLD {
            let _ = sys::kill_raw(child, signo);
        }
    }
}

/// Idle init: reaps whatever is reparented to it; every signal but SIGKILL
/// (which the kernel delivers regardless) is ignored, so stopping a
/// container's processes with TERM never takes init down first.
fn reap_forever(signals: &SignalFd) -> ! {
    loop {
        reap_all(None);
        let _ = signals.read_signal();
    }
}

/// Reaps every exited child; returns the program's record if it was among
/// them.
fn reap_all(program: Option<Pid>) -> Option<ExitRecord> {
    let mut found = None;
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if Some(pid) == program => {
                found = Some(ExitRecord {
                    exit_code: Some(code),
                    ..ExitRecord::default()
                })
            }
            Ok(WaitStatus::Signaled(pid, sig, core)) if Some(pid) == program => {
                found = Some(ExitRecord {
                    signal: Some(sig as i32),
                    core_dumped: core,
                    ..ExitRecord::default()
                })
            }
            Ok(WaitStatus::StillAlive) | Err(_) => return found,
            Ok(_) => {}
        }
    }
}

pub(super) fn write_exit(exit_file: BorrowedFd<'_>, record: &ExitRecord) {
    let bytes = serde_json::to_vec(record).unwrap_or_default();
    // Not synced, like state.json: see `StateRoot::save`.
    let _ = nix::unistd::write(exit_file, &bytes);
}
