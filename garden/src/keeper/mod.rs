//! The process keeper: one small process per container process, so that
//! processes outlive the daemon (Garden's dadoo, done our way).
//!
//! The daemon starts `gardend keep` in the process's directory. The keeper
//! becomes a child subreaper, starts the process with `garden-runc exec -d`
//! (which leaves the process as the keeper's child), and then serves a unix
//! socket in that directory: output frames out, stdin/signal/window-size
//! frames in ([`frame`]); a client's first frame says whether it takes
//! output. While no client is attached the output goes to a
//! bounded [`backlog`], so the process never blocks on a full pipe or dies
//! of SIGPIPE while the daemon restarts. When the process exits the keeper
//! drains its output, writes the status to `exit` (atomically), hands the
//! status to a client and only then exits; the daemon reads `exit` for
//! processes whose keeper is gone.
//!
//! Files in the process directory:
//! ```text
//! process.json   the OCI process, written by the daemon
//! sock           the keeper's socket
//! keeper.pid     the keeper's pid; pid: the process's (host) pid
//! exit           the exit status, once output is drained
//! runc.log       garden-runc's errors (JSON lines)
//! ```

pub mod backlog;
pub mod frame;
mod serve;
mod start;

use std::path::{Path, PathBuf};

pub use start::KeeperError;

pub const SOCKET: &str = "sock";
pub const PROCESS: &str = "process.json";
pub const PID: &str = "pid";
pub const KEEPER_PID: &str = "keeper.pid";
pub const EXIT: &str = "exit";
pub const RUNC_LOG: &str = "runc.log";
/// A sidecar's bundle, in its process directory.
pub const PEA_BUNDLE: &str = "bundle";
pub const LOG: &str = "keeper.log";

/// Output kept for a detached client, per process.
pub const BACKLOG_BYTES: usize = 1 << 20;

/// What `gardend keep` is told.
#[derive(Debug, Clone)]
pub struct KeeperArgs {
    /// The garden-runc binary.
    pub runtime: PathBuf,
    /// garden-runc's state root.
    pub root: PathBuf,
    pub container: String,
    /// The process directory (holds `process.json`).
    pub dir: PathBuf,
    /// The process has a terminal.
    pub tty: bool,
    /// The process is a sidecar's init: `container` is its own runtime
    /// container, created from `dir/bundle` and started here.
    pub pea: bool,
}

/// Runs the keeper: prints `ok <pid>` (or `error <message>`) as its first
/// line on stdout for the daemon, then serves until the process ended and
/// its status was delivered. Returns the keeper's exit code.
pub fn run(args: &KeeperArgs) -> i32 {
    match start::start(args) {
        Ok(keeper) => {
            println!("ok {}", keeper.app_pid());
            start::detach_stdio(&args.dir.join(LOG));
            serve::serve(keeper);
            0
        }
        Err(e) => {
            println!("error {e}");
            1
        }
    }
}

/// The pid of the keeper of a process directory, if it wrote one (it may
/// have exited since).
pub fn keeper_pid(dir: &Path) -> Option<i32> {
    std::fs::read_to_string(dir.join(KEEPER_PID))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The exit status recorded in a process directory, if the keeper wrote one.
pub fn recorded_exit(dir: &Path) -> Option<i32> {
    std::fs::read_to_string(dir.join(EXIT))
        .ok()?
        .trim()
        .parse()
        .ok()
}
