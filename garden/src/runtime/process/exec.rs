//! `exec`: a new process inside a running container. Joins the init's
//! namespaces and cgroup, takes its defaults from the container's spec, and
//! execs with the same capabilities and seccomp rules.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use garden_cgroups::{Cgroup, CgroupError};
use nix::unistd::{ForkResult, Pid};
use oci_spec::runtime::{Process, Spec};

use super::super::bundle::{seccomp_profile, BundleError};
use super::super::namespaces::{NamespaceError, Plan};
use super::super::sealed_exe;
use super::super::sys;
use super::channel::{self, Channel, ChannelError, Message};
use super::console::{self, ConsoleError};
use super::stage1;
use super::user::{attach_terminal, ProcessError, ProcessPlan};

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(transparent)]
    Namespace(#[from] NamespaceError),
    #[error("cgroup: {0}")]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error(transparent)]
    Console(#[from] ConsoleError),
    #[error(transparent)]
    Channel(#[from] ChannelError),
    #[error("exec failed: {0}")]
    Failed(String),
    #[error("process.terminal is set but no console socket was given (--console-socket)")]
    NoConsoleSocket,
    #[error("connecting to console socket {path}: {source}")]
    ConsoleSocket {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{step}: {source}")]
    Sys {
        step: &'static str,
        #[source]
        source: nix::Error,
    },
}

/// What to run and how.
#[derive(Debug, Clone)]
pub struct ExecRequest {
    /// Host pid of the container's init.
    pub init_pid: i32,
    pub cgroup_path: String,
    /// The container's spec, for seccomp and defaults.
    pub spec: Spec,
    pub process: Process,
    pub console_socket: Option<PathBuf>,
    pub preserve_fds: i32,
}

/// Starts the process; returns its host pid once it has exec'd. The caller
/// must be a child subreaper to wait for it.
pub fn spawn(req: &ExecRequest) -> Result<Pid, ExecError> {
    wait_for_read_only_init(req.init_pid)?;
    let seccomp = seccomp_profile(&req.spec)?;
    let plan = ProcessPlan::from_spec(&req.process, seccomp, req.preserve_fds)?;
    let console_socket = match (&req.console_socket, plan.terminal) {
        (Some(path), true) => Some(
            std::os::unix::net::UnixStream::connect(path)
                .map(OwnedFd::from)
                .map_err(|source| ExecError::ConsoleSocket {
                    path: path.clone(),
                    source,
                })?,
        ),
        (None, true) => return Err(ExecError::NoConsoleSocket),
        _ => None,
    };
    let namespaces = Plan::for_process(req.init_pid)?;
    let cgroup = Cgroup::open(&req.cgroup_path)?;
    let (parent_ch, child_ch) = channel::pair()?;
    let stage1_pid = match sys::fork().map_err(|source| ExecError::Sys {
        step: "fork",
        source,
    })? {
        ForkResult::Child => {
            drop(parent_ch);
            child_main(
                &namespaces,
                &cgroup,
                &plan,
                console_socket.as_ref(),
                child_ch,
            )
        }
        ForkResult::Parent { child } => child,
    };
    drop(child_ch);
    let kill = |pid: Pid| {
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(pid, None);
    };
    parent_ch.send(&Message::Proceed)?;
    let pid = match parent_ch.expect("the exec'd process's pid")? {
        Message::InitPid(pid) => Pid::from_raw(pid),
        Message::Failed(msg) => {
            kill(stage1_pid);
            return Err(ExecError::Failed(msg));
        }
        got => {
            return Err(ChannelError::Unexpected {
                wanted: "init-pid",
                got,
            }
            .into())
        }
    };
    if pid != stage1_pid {
        let _ = nix::sys::wait::waitpid(stage1_pid, None);
    }
    // End-of-file: the program exec'd (the channel is close-on-exec).
    match parent_ch.recv()? {
        None => Ok(pid),
        Some(Message::Failed(msg)) => {
            let _ = nix::sys::wait::waitpid(pid, None);
            Err(ExecError::Failed(msg))
        }
        Some(got) => Err(ChannelError::Unexpected {
            wanted: "exec",
            got,
        }
        .into()),
    }
}

/// A container's init re-executes from a read-only copy of the runtime
/// binary right after `create` returns (`resume`): nothing may enter the
/// container before that, or it could reach the binary through init.
fn wait_for_read_only_init(pid: i32) -> Result<(), ExecError> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let pid_str = pid.to_string();
    while !sealed_exe::runs_read_only(&pid_str) {
        if Instant::now() > deadline {
            return Err(ExecError::Failed(format!(
                "the container's init (pid {pid}) is not running from a read-only runtime binary"
            )));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

fn child_main(
    namespaces: &Plan,
    cgroup: &Cgroup,
    plan: &ProcessPlan,
    console_socket: Option<&OwnedFd>,
    ch: Channel,
) -> ! {
    let res = match stage1::enter(namespaces, cgroup, &ch) {
        Ok(Some(())) => become_process(plan, console_socket),
        Ok(None) => sys::exit_now(0),
        Err(e) => Err(e.to_string()),
    };
    let msg = match res {
        Err(msg) => msg,
        Ok(never) => match never {},
    };
    let _ = ch.send(&Message::Failed(msg));
    sys::exit_now(127)
}

fn become_process(
    plan: &ProcessPlan,
    console_socket: Option<&OwnedFd>,
) -> Result<std::convert::Infallible, String> {
    let program = plan.resolve_program().map_err(|e| e.to_string())?;
    plan.apply_limits().map_err(|e| e.to_string())?;
    if plan.terminal {
        let pty = console::open_pty().map_err(|e| e.to_string())?;
        if let Some(sock) = console_socket {
            console::send_master(
                sock.as_raw_fd(),
                &pty.master,
                &pty.slave_path.display().to_string(),
            )
            .map_err(|e| e.to_string())?;
        }
        let slave = console::open_slave(&pty).map_err(|e| e.to_string())?;
        attach_terminal(slave.as_raw_fd(), plan.console_size).map_err(|e| e.to_string())?;
    }
    plan.exec(&program).map_err(|e| e.to_string())
}
