//! Waiting in the foreground for a container's process (`run`, `exec`),
//! forwarding the signals we receive to it, as runc does.

use nix::sys::signal::{SigSet, SigmaskHow};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::super::sys;
use super::ContainerError;

/// How a waited-for process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Exited(i32),
    Signaled(i32),
}

impl Ended {
    pub fn shell_status(self) -> i32 {
        match self {
            Ended::Exited(c) => c,
            Ended::Signaled(s) => 128 + s,
        }
    }
}

/// Blocks every signal and returns a descriptor that receives them. Call
/// before forking so no signal is lost between fork and wait.
pub fn catch_signals() -> Result<SignalFd, ContainerError> {
    let mut set = SigSet::all();
    // Keep the ones that should still stop or kill us the usual way.
    for s in [
        nix::sys::signal::SIGTSTP,
        nix::sys::signal::SIGTTIN,
        nix::sys::signal::SIGTTOU,
    ] {
        set.remove(s);
    }
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None).map_err(|source| {
        ContainerError::Sys {
            step: "blocking signals",
            source,
        }
    })?;
    SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC).map_err(|source| ContainerError::Sys {
        step: "signalfd",
        source,
    })
}

/// Waits for `pid` (our child, directly or as subreaper), forwarding every
/// other signal to it and reaping any other child that exits meanwhile.
pub fn wait_forwarding(pid: Pid, signals: &SignalFd) -> Result<Ended, ContainerError> {
    loop {
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(p, code)) if p == pid => return Ok(Ended::Exited(code)),
                Ok(WaitStatus::Signaled(p, sig, _)) if p == pid => {
                    return Ok(Ended::Signaled(sig as i32))
                }
                Ok(WaitStatus::StillAlive) => break,
                Err(nix::errno::Errno::ECHILD) => {
                    return Err(ContainerError::Sys {
                        step: "waiting for the container's process",
                        source: nix::errno::Errno::ECHILD,
                    })
                }
                Err(_) => break,
                Ok(_) => {}
            }
        }
        match signals.read_signal() {
            Ok(Some(info)) if info.ssi_signo as i32 != libc::SIGCHLD => {
                let _ = sys::kill_raw(pid, info.ssi_signo as i32);
            }
            _ => {}
        }
    }
}
