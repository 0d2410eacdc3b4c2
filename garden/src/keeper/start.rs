//! Starting the process: subreaper, pipes or a terminal, the socket, then
//! `garden-runc exec -d`.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::fcntl::OFlag;
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::Pid;

use super::{KeeperArgs, PEA_BUNDLE, PID, PROCESS, RUNC_LOG, SOCKET};
use crate::runtime::container::tty::ConsoleListener;
use crate::runtime::sys;

#[derive(Debug, thiserror::Error)]
pub enum KeeperError {
    #[error("{step}: {source}")]
    Sys {
        step: &'static str,
        #[source]
        source: nix::Error,
    },
    #[error("{step} {path}: {source}")]
    Io {
        step: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Runtime(String),
    #[error("receiving the terminal: {0}")]
    Console(String),
}

fn sys_err(step: &'static str) -> impl FnOnce(nix::Error) -> KeeperError {
    move |source| KeeperError::Sys { step, source }
}

fn io_err<'a>(
    step: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> KeeperError + 'a {
    move |source| KeeperError::Io {
        step,
        path: path.to_path_buf(),
        source,
    }
}

/// The process's side of its stdio, as the keeper holds it.
pub enum Stdio3 {
    Pipes {
        stdin: OwnedFd,
        stdout: OwnedFd,
        stderr: OwnedFd,
    },
    /// The terminal's master: output and input both.
    Terminal(OwnedFd),
}

pub struct Keeper {
    pub app: Pid,
    pub stdio: Option<Stdio3>,
    pub listener: UnixListener,
    pub signals: SignalFd,
    pub dir: PathBuf,
}

impl Keeper {
    pub fn app_pid(&self) -> i32 {
        self.app.as_raw()
    }
}

pub fn start(args: &KeeperArgs) -> Result<Keeper, KeeperError> {
    nix::sys::prctl::set_child_subreaper(true).map_err(sys_err("becoming a subreaper"))?;
    let mut chld = SigSet::empty();
    chld.add(Signal::SIGCHLD);
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&chld), None)
        .map_err(sys_err("blocking SIGCHLD"))?;
    let signals = SignalFd::with_flags(&chld, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(sys_err("signalfd"))?;
    // Socket paths are limited to 108 bytes, and a depot path with a
    // long handle and process id can exceed that: bind relative to our
    // directory, and hand the runtime a short path through /proc.
    std::env::set_current_dir(&args.dir).map_err(io_err("entering", &args.dir))?;
    let sock = args.dir.join(SOCKET);
    let _ = std::fs::remove_file(&sock);
    let listener = UnixListener::bind(SOCKET).map_err(io_err("binding", &sock))?;
    listener
        .set_nonblocking(true)
        .map_err(io_err("making non-blocking", &sock))?;
    std::fs::write(
        args.dir.join(super::KEEPER_PID),
        std::process::id().to_string(),
    )
    .map_err(io_err("writing", &args.dir))?;

    let (stdio, app) = if args.tty {
        let console = ConsoleListener::bind(Path::new("."), "tty")
            .map_err(|e| KeeperError::Console(e.to_string()))?;
        let name = console.path().file_name().unwrap_or_default();
        let short = Path::new("/proc")
            .join(std::process::id().to_string())
            .join("cwd")
            .join(name);
        let app = exec(
            args,
            Some(&short),
            [Stdio::null(), Stdio::null(), Stdio::null()],
        )?;
        let master = console
            .receive_master()
            .map_err(|e| KeeperError::Console(e.to_string()))?;
        (Stdio3::Terminal(master), app)
    } else {
        let pipe = || nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(sys_err("pipe"));
        let (in_r, in_w) = pipe()?;
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        let app = exec(
            args,
            None,
            [Stdio::from(in_r), Stdio::from(out_w), Stdio::from(err_w)],
        )?;
        (
            Stdio3::Pipes {
                stdin: in_w,
                stdout: out_r,
                stderr: err_r,
            },
            app,
        )
    };
    for fd in stdio_fds(&stdio) {
        set_nonblocking(fd)?;
    }
    Ok(Keeper {
        app,
        stdio: Some(stdio),
        listener,
        signals,
        dir: args.dir.clone(),
    })
}

fn stdio_fds(s: &Stdio3) -> Vec<BorrowedFd<'_>> {
    match s {
        Stdio3::Pipes {
            stdin,
            stdout,
            stderr,
        } => vec![stdin.as_fd(), stdout.as_fd(), stderr.as_fd()],
        Stdio3::Terminal(m) => vec![m.as_fd()],
    }
}

fn set_nonblocking(fd: BorrowedFd<'_>) -> Result<(), KeeperError> {
    use nix::fcntl::{fcntl, FcntlArg};
    let flags = fcntl(fd, FcntlArg::F_GETFL).map_err(sys_err("F_GETFL"))?;
    let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
    fcntl(fd, FcntlArg::F_SETFL(flags)).map_err(sys_err("F_SETFL"))?;
    Ok(())
}

/// Runs `garden-runc exec -d` (a sidecar: `create` then `start`) with the
/// process's stdio and returns the process's pid. The `Command` (holding
/// the process's ends of the pipes) is gone when this returns, so
/// end-of-file reaches the keeper.
fn exec(
    args: &KeeperArgs,
    console: Option<&Path>,
    [stdin, stdout, stderr]: [Stdio; 3],
) -> Result<Pid, KeeperError> {
    let log = args.dir.join(RUNC_LOG);
    let pid_file = args.dir.join(PID);
    let mut cmd = runtime(args, &log);
    if args.pea {
        cmd.args(["create", "--bundle"])
            .arg(args.dir.join(PEA_BUNDLE));
    } else {
        cmd.args(["exec", "--detach", "--process"])
            .arg(args.dir.join(PROCESS));
    }
    cmd.arg("--pid-file").arg(&pid_file);
    if let Some(c) = console {
        cmd.arg("--console-socket").arg(c);
    }
    cmd.arg(&args.container)
        .stdin(stdin)
        .stdout(stdout)
        .stderr(stderr);
    let status = cmd.status().map_err(io_err("starting", &args.runtime))?;
    drop(cmd);
    check(status, &log)?;
    if args.pea {
        let mut start = runtime(args, &log);
        start
            .arg("start")
            .arg(&args.container)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        check(
            start.status().map_err(io_err("starting", &args.runtime))?,
            &log,
        )?;
    }
    let pid = std::fs::read_to_string(&pid_file).map_err(io_err("reading", &pid_file))?;
    let pid: i32 = pid
        .trim()
        .parse()
        .map_err(|_| KeeperError::Runtime(format!("{} holds no pid", pid_file.display())))?;
    Ok(Pid::from_raw(pid))
}

fn runtime(args: &KeeperArgs, log: &Path) -> Command {
    let mut cmd = Command::new(&args.runtime);
    cmd.arg("--root")
        .arg(&args.root)
        .arg("--log")
        .arg(log)
        .arg("--log-format")
        .arg("json");
    cmd
}

fn check(status: std::process::ExitStatus, log: &Path) -> Result<(), KeeperError> {
    if status.success() {
        return Ok(());
    }
    Err(KeeperError::Runtime(
        crate::daemon::runc::last_error(log)
            .unwrap_or_else(|| format!("garden-runc {status} without a message")),
    ))
}

/// After the readiness line: stdout and stderr go to the keeper's log, so a
/// daemon that stopped reading them cannot block or kill the keeper.
pub fn detach_stdio(log: &Path) {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .or_else(|_| std::fs::File::open("/dev/null"));
    if let Ok(f) = file {
        let _ = sys::dup_onto(f.as_raw_fd(), 1);
        let _ = sys::dup_onto(f.as_raw_fd(), 2);
    }
}
