//! The one error type of this crate.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while managing a container's cgroup.
///
/// Every variant names the file or directory involved and, where there is one,
/// the value and the underlying I/O error (which carries the errno).
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// The cgroup path given by the caller is unusable (empty, or escapes the root).
    #[error("invalid cgroup path {path:?}: {reason}")]
    InvalidPath { path: String, reason: &'static str },

    /// `open` found the cgroup in none of the hierarchies.
    #[error("cgroup {path:?} does not exist (looked in {looked_in})")]
    NotFound { path: String, looked_in: PathBuf },

    /// Reading `/proc/self/mountinfo` (or the given mount table) failed.
    #[error("reading the mount table {path}: {source}")]
    MountInfo { path: PathBuf, source: io::Error },

    /// The mount table lists no cgroup v1 controller we manage.
    #[error("no cgroup v1 controller hierarchy found in {path}")]
    NoHierarchies { path: PathBuf },

    #[error("creating cgroup directory {path}: {source}")]
    CreateDir { path: PathBuf, source: io::Error },

    #[error("removing cgroup directory {path}: {source}")]
    RemoveDir { path: PathBuf, source: io::Error },

    #[error("listing cgroup directory {path}: {source}")]
    ReadDir { path: PathBuf, source: io::Error },

    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: io::Error },

    #[error("writing {value:?} to {path}: {source}")]
    Write {
        path: PathBuf,
        value: String,
        source: io::Error,
    },

    /// A control file held something we could not understand.
    #[error("parsing {path}: unexpected content {content:?} ({reason})")]
    Parse {
        path: PathBuf,
        content: String,
        reason: &'static str,
    },

    /// A key we need is absent from a flat-keyed file such as `memory.events`.
    #[error("{path} has no {key:?} entry (kernel too old?)")]
    MissingKey { path: PathBuf, key: &'static str },

    /// The resources ask for a controller that is not mounted (v1) or not
    /// enabled for this cgroup (v2).
    #[error("the {controller} controller is not available for {path}")]
    ControllerUnavailable {
        controller: &'static str,
        path: PathBuf,
    },

    /// The resources ask for a feature whose control file this kernel lacks.
    #[error("{resource} is not supported by this kernel: {path} does not exist")]
    Unsupported {
        resource: &'static str,
        path: PathBuf,
    },

    /// A value in the OCI resources is out of range or inconsistent.
    #[error("invalid {resource} value {value:?}: {reason}")]
    InvalidResource {
        resource: &'static str,
        value: String,
        reason: &'static str,
    },

    /// The freezer did not reach the wanted state in time.
    #[error("timed out waiting for {path} to become {state}")]
    FreezeTimeout { path: PathBuf, state: &'static str },

    #[error("sending SIGKILL to pid {pid}: {source}")]
    Kill { pid: i32, source: nix::errno::Errno },

    /// A `bpf(2)` operation for the v2 device filter failed.
    #[error("bpf {op} for {path}: {source}{log}")]
    Bpf {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
        /// The verifier log when loading failed (prefixed with a newline), else empty.
        log: String,
    },
}
