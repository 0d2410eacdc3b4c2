//! The last steps before the container's program runs: identity,
//! capabilities, no_new_privs, seccomp, descriptors, and `execve`.
//!
//! Everything is decided in the parent (`ProcessPlan::from_spec`), so the
//! child only executes a plan and can fail only on system calls.

use std::convert::Infallible;
use std::ffi::CString;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::stat::Mode;
use nix::unistd::{self, Gid, Uid};
use oci_spec::runtime::{PosixRlimitType, Process};

use super::super::capabilities::{CapabilityError, CapabilitySets};
use super::super::sys;

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("{what} contains a NUL byte")]
    Nul { what: &'static str },
    #[error("exec: {0:?}: executable file not found in $PATH")]
    NotFound(String),
    #[error("exec: {path}: {source}")]
    Exec {
        path: PathBuf,
        #[source]
        source: Errno,
    },
    #[error("chdir to cwd {path:?} set in config.json: {source}")]
    Cwd {
        path: PathBuf,
        #[source]
        source: Errno,
    },
    #[error("{step}: {source}")]
    Identity {
        step: &'static str,
        #[source]
        source: Errno,
    },
    #[error(transparent)]
    Capabilities(#[from] CapabilityError),
    #[error("installing the seccomp filter: {0}")]
    Seccomp(#[source] garden_seccomp::SeccompError),
    #[error("setting oom_score_adj to {value}: {source}")]
    OomScoreAdj {
        value: i32,
        #[source]
        source: std::io::Error,
    },
    #[error("setting rlimit {resource}: {source}")]
    Rlimit {
        resource: &'static str,
        #[source]
        source: Errno,
    },
}

/// Everything needed to turn a forked child into the container's process.
#[derive(Debug)]
pub struct ProcessPlan {
    pub args: Vec<CString>,
    pub env: Vec<CString>,
    pub cwd: PathBuf,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub umask: u32,
    pub capabilities: Option<CapabilitySets>,
    pub no_new_privileges: bool,
    pub seccomp: Option<garden_seccomp::Profile>,
    pub rlimits: Vec<(&'static str, libc::c_int, u64, u64)>,
    pub terminal: bool,
    pub console_size: Option<(u16, u16)>,
    /// Descriptors 3..3+n are passed through (runc's `--preserve-fds`).
    pub preserve_fds: i32,
    pub oom_score_adj: Option<i32>,
}

fn cstrings(items: &[String], what: &'static str) -> Result<Vec<CString>, ProcessError> {
    items
        .iter()
        .map(|s| CString::new(s.as_bytes()).map_err(|_| ProcessError::Nul { what }))
        .collect()
}

impl ProcessPlan {
    pub fn from_spec(
        process: &Process,
        seccomp: Option<garden_seccomp::Profile>,
        preserve_fds: i32,
    ) -> Result<ProcessPlan, ProcessError> {
        let user = process.user();
        let capabilities = process
            .capabilities()
            .as_ref()
            .map(CapabilitySets::from_spec)
            .transpose()?;
        let rlimits = process
            .rlimits()
            .iter()
            .flatten()
            .map(|r| {
                let (name, res) = rlimit_resource(r.typ());
                (name, res, r.soft(), r.hard())
            })
            .collect();
        Ok(ProcessPlan {
            args: cstrings(process.args().as_deref().unwrap_or(&[]), "process.args")?,
            env: cstrings(process.env().as_deref().unwrap_or(&[]), "process.env")?,
            cwd: process.cwd().clone(),
            uid: user.uid(),
            gid: user.gid(),
            additional_gids: user.additional_gids().clone().unwrap_or_default(),
            umask: user.umask().unwrap_or(0o022),
            capabilities,
            no_new_privileges: process.no_new_privileges().unwrap_or(false),
            seccomp,
            rlimits,
            terminal: process.terminal().unwrap_or(false),
            console_size: process
                .console_size()
                .as_ref()
                .map(|b| (b.height() as u16, b.width() as u16)),
            preserve_fds,
            oom_score_adj: process.oom_score_adj(),
        })
    }

    /// The `PATH` the program's own environment gives, or the default.
    fn search_path(&self) -> String {
        self.env
            .iter()
            .find_map(|e| e.to_str().ok()?.strip_prefix("PATH=").map(str::to_string))
            .unwrap_or_else(|| DEFAULT_PATH.to_string())
    }

    /// Finds the program as `execvp` would, in the current root (call after
    /// `pivot_root`), so a missing binary fails `create`, not `start`.
    pub fn resolve_program(&self) -> Result<PathBuf, ProcessError> {
        let arg0 = self
            .args
            .first()
            .map(|a| a.to_string_lossy().into_owned())
            .unwrap_or_default();
        if arg0.contains('/') {
            return Ok(PathBuf::from(arg0));
        }
        self.search_path()
            .split(':')
            .filter(|d| !d.is_empty())
            .map(|d| Path::new(d).join(&arg0))
            .find(|p| is_executable(p))
            .ok_or(ProcessError::NotFound(arg0))
    }

    /// Resource limits and the OOM score, inherited by every later child.
    pub fn apply_limits(&self) -> Result<(), ProcessError> {
        for (name, res, soft, hard) in &self.rlimits {
            sys::set_rlimit(*res, *soft, *hard).map_err(|source| ProcessError::Rlimit {
                resource: name,
                source,
            })?;
        }
        if let Some(adj) = self.oom_score_adj {
            // Raising it never needs privilege; lowering it needs
            // CAP_SYS_RESOURCE, which set-up still has.
            std::fs::write("/proc/self/oom_score_adj", adj.to_string())
                .map_err(|source| ProcessError::OomScoreAdj { value: adj, source })?;
        }
        Ok(())
    }

    /// Becomes the container's process and execs `program`. Returns only on
    /// failure.
    pub fn exec(&self, program: &Path) -> Result<Infallible, ProcessError> {
        let id = |step: &'static str| move |source| ProcessError::Identity { step, source };
        nix::sys::stat::umask(Mode::from_bits_truncate(self.umask));
        unistd::chdir(&self.cwd).map_err(|source| ProcessError::Cwd {
            path: self.cwd.clone(),
            source,
        })?;
        // Without no_new_privs, installing a filter needs CAP_SYS_ADMIN, which
        // the process may be about to lose: install it now (runc's order).
        if !self.no_new_privileges {
            self.install_seccomp()?;
        }
        if let Some(caps) = &self.capabilities {
            caps.drop_bounding()?;
        }
        nix::sys::prctl::set_keepcaps(true).map_err(id("prctl(PR_SET_KEEPCAPS)"))?;
        let groups: Vec<Gid> = self
            .additional_gids
            .iter()
            .map(|g| Gid::from_raw(*g))
            .collect();
        // setgroups is refused in a user namespace with setgroups denied.
        match unistd::setgroups(&groups) {
            Ok(()) | Err(Errno::EPERM) if groups.is_empty() => {}
            other => other.map_err(id("setgroups"))?,
        }
        let gid = Gid::from_raw(self.gid);
        unistd::setresgid(gid, gid, gid).map_err(id("setresgid"))?;
        let uid = Uid::from_raw(self.uid);
        unistd::setresuid(uid, uid, uid).map_err(id("setresuid"))?;
        if let Some(caps) = &self.capabilities {
            caps.apply()?;
        }
        nix::sys::prctl::set_keepcaps(false).map_err(id("prctl(PR_SET_KEEPCAPS)"))?;
        if self.no_new_privileges {
            nix::sys::prctl::set_no_new_privs().map_err(id("prctl(PR_SET_NO_NEW_PRIVS)"))?;
            self.install_seccomp()?;
        }
        sys::reset_signal_dispositions();
        let _ = nix::sys::signal::sigprocmask(
            nix::sys::signal::SigmaskHow::SIG_SETMASK,
            Some(&nix::sys::signal::SigSet::empty()),
            None,
        );
        // No descriptor of ours may reach the program (CVE-2024-21626 class).
        sys::cloexec_from(3 + self.preserve_fds).map_err(id("close_range"))?;
        let path = CString::new(program.as_os_str().as_bytes()).map_err(|_| ProcessError::Nul {
            what: "program path",
        })?;
        let err = unistd::execve(&path, &self.args, &self.env).unwrap_err();
        Err(ProcessError::Exec {
            path: program.to_path_buf(),
            source: err,
        })
    }

    fn install_seccomp(&self) -> Result<(), ProcessError> {
        match &self.seccomp {
            Some(p) => p.install().map_err(ProcessError::Seccomp),
            None => Ok(()),
        }
    }
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Sends the terminal's controlling side to stdio: used when
/// `process.terminal` is set (`slave` is the pty's peer).
pub fn attach_terminal(slave: RawFd, size: Option<(u16, u16)>) -> Result<(), ProcessError> {
    let id = |step: &'static str| move |source| ProcessError::Identity { step, source };
    unistd::setsid().map_err(id("setsid"))?;
    sys::set_controlling_terminal(slave).map_err(id("TIOCSCTTY"))?;
    if let Some((rows, cols)) = size {
        sys::set_window_size(slave, rows, cols).map_err(id("TIOCSWINSZ"))?;
    }
    for fd in 0..3 {
        sys::dup_onto(slave, fd).map_err(id("dup2 of the terminal"))?;
    }
    Ok(())
}

fn rlimit_resource(t: PosixRlimitType) -> (&'static str, libc::c_int) {
    use PosixRlimitType as T;
    let (name, res) = match t {
        T::RlimitCpu => ("RLIMIT_CPU", libc::RLIMIT_CPU),
        T::RlimitFsize => ("RLIMIT_FSIZE", libc::RLIMIT_FSIZE),
        T::RlimitData => ("RLIMIT_DATA", libc::RLIMIT_DATA),
        T::RlimitStack => ("RLIMIT_STACK", libc::RLIMIT_STACK),
        T::RlimitCore => ("RLIMIT_CORE", libc::RLIMIT_CORE),
        T::RlimitRss => ("RLIMIT_RSS", libc::RLIMIT_RSS),
        T::RlimitNproc => ("RLIMIT_NPROC", libc::RLIMIT_NPROC),
        T::RlimitNofile => ("RLIMIT_NOFILE", libc::RLIMIT_NOFILE),
        T::RlimitMemlock => ("RLIMIT_MEMLOCK", libc::RLIMIT_MEMLOCK),
        T::RlimitAs => ("RLIMIT_AS", libc::RLIMIT_AS),
        T::RlimitLocks => ("RLIMIT_LOCKS", libc::RLIMIT_LOCKS),
        T::RlimitSigpending => ("RLIMIT_SIGPENDING", libc::RLIMIT_SIGPENDING),
        T::RlimitMsgqueue => ("RLIMIT_MSGQUEUE", libc::RLIMIT_MSGQUEUE),
        T::RlimitNice => ("RLIMIT_NICE", libc::RLIMIT_NICE),
        T::RlimitRtprio => ("RLIMIT_RTPRIO", libc::RLIMIT_RTPRIO),
        T::RlimitRttime => ("RLIMIT_RTTIME", libc::RLIMIT_RTTIME),
    };
    (name, res as libc::c_int)
}
