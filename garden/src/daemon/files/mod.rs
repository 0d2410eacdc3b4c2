//! Files inside a running container, reached from the host: Garden's
//! StreamIn and StreamOut, and the user lookup that decides who owns what
//! StreamIn writes.
//!
//! The daemon sees a container's filesystem through `/proc/<init pid>/root`:
//! the root as the container's init sees it, with the overlay and every
//! mount of the container's mount namespace. Nothing here builds a host path
//! below that root. The root is opened once and every other path is resolved
//! from a directory descriptor with `openat2`:
//!
//! - the destination of StreamIn, the source of StreamOut and
//!   `/etc/passwd`/`/etc/group` with `RESOLVE_IN_ROOT` (symlinks and `..`
//!   resolve as inside the container and never leave it);
//! - each tar entry of StreamIn with `RESOLVE_BENEATH` from the destination
//!   directory, so neither `..` nor a symlink (from the archive or already
//!   there) leads out of the destination.
//!
//! Then every change is made relative to a directory descriptor and never
//! follows a final symlink: `mkdirat`, `openat(O_CREAT|O_EXCL|O_NOFOLLOW)`,
//! `symlinkat`, `linkat`, `fchownat(AT_SYMLINK_NOFOLLOW)`, `fchmod`,
//! `futimens`.
//!
//! The functions block; the daemon runs them on a blocking thread.
#![forbid(unsafe_code)]

mod resolve;
mod stream_in;
mod stream_out;
mod user;

use std::fmt;
use std::io;
use std::path::PathBuf;

pub use stream_in::stream_in;
pub use stream_out::stream_out;
pub use user::{lookup_user, User};

/// The root of a container as seen from the host: `/proc/<pid>/root` of its
/// init.
pub fn container_root(init_pid: i32) -> PathBuf {
    PathBuf::from(format!("/proc/{init_pid}/root"))
}

/// One range of an id mapping: container ids `container..container+size`
/// are host ids `host..host+size` (an OCI `uidMappings` entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    /// First id inside the container.
    pub container: u32,
    /// The host id of `container`.
    pub host: u32,
    /// How many ids the range maps.
    pub size: u32,
}

/// How container uids and gids (one map for both, as Garden uses) relate to
/// host ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdMap {
    /// Empty for the identity.
    ranges: Vec<IdRange>,
}

/// What the kernel shows for an id that a user namespace does not map.
const OVERFLOW_ID: u32 = 65534;

impl IdMap {
    /// Container ids are host ids (privileged containers).
    pub fn identity() -> Self {
        IdMap { ranges: Vec::new() }
    }

    /// Garden's mapping of unprivileged containers: container root is the
    /// host's `root_host` ("maximus", 4294967294 on a normal host), and
    /// every other id `1..root_host` is itself.
    pub fn maximus(root_host: u32) -> Self {
        IdMap::from_ranges(vec![
            IdRange {
                container: 0,
                host: root_host,
                size: 1,
            },
            IdRange {
                container: 1,
                host: 1,
                size: root_host.saturating_sub(1),
            },
        ])
    }

    /// A mapping made of ranges (a user namespace's `uid_map`).
    pub fn from_ranges(ranges: Vec<IdRange>) -> Self {
        IdMap { ranges }
    }

    /// The host id of container id `id`; ids outside every range become the
    /// overflow id 65534.
    pub fn to_host(&self, id: u32) -> u32 {
        if self.ranges.is_empty() {
            return id;
        }
        self.ranges
            .iter()
            .find_map(|r| {
                let off = id.checked_sub(r.container)?;
                (off < r.size).then(|| r.host.checked_add(off)).flatten()
            })
            .unwrap_or(OVERFLOW_ID)
    }

    /// The container id of host id `id`; host ids the container cannot see
    /// become the overflow id 65534, as `stat` inside shows them.
    pub fn to_container(&self, id: u32) -> u32 {
        if self.ranges.is_empty() {
            return id;
        }
        self.ranges
            .iter()
            .find_map(|r| {
                let off = id.checked_sub(r.host)?;
                (off < r.size)
                    .then(|| r.container.checked_add(off))
                    .flatten()
            })
            .unwrap_or(OVERFLOW_ID)
    }
}

/// Why a tar entry of StreamIn was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// The entry's path starts at `/`.
    Absolute,
    /// The entry's path has a `..` component.
    ParentDir,
    /// Resolving the entry (through a symlink) would leave the destination.
    Escapes,
    /// Resolving the entry runs into a symlink loop or a dangling symlink.
    SymlinkLoop,
    /// A component before the entry's name is not a directory.
    ParentNotDirectory,
    /// A hard link's target is absolute.
    LinkTargetAbsolute,
    /// A hard link's target has a `..` component.
    LinkTargetParentDir,
    /// A hard link's target does not exist (yet) below the destination.
    LinkTargetMissing,
    /// A hard link's target is a directory.
    LinkTargetDirectory,
    /// A hard link's target is the entry itself.
    LinkToItself,
    /// A hard link's target lies on another mount than the link.
    LinkAcrossMounts,
    /// A symlink or hard link entry without a target.
    MissingLinkName,
    /// A character or block device node.
    DeviceNode,
    /// A named pipe.
    Fifo,
    /// An entry type this extraction does not handle (the tar type byte).
    UnsupportedType(u8),
    /// A non-directory entry would replace a directory that is not empty.
    ReplacesDirectory,
    /// A non-directory entry names the destination directory itself.
    ReplacesDestination,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Rejection::Absolute => "absolute paths are not allowed",
            Rejection::ParentDir => "`..` components are not allowed",
            Rejection::Escapes => "the path leads outside the destination directory",
            Rejection::SymlinkLoop => "a symlink on the path loops or leads nowhere",
            Rejection::ParentNotDirectory => "a component of the path is not a directory",
            Rejection::LinkTargetAbsolute => "hard link to an absolute path",
            Rejection::LinkTargetParentDir => "hard link target with a `..` component",
            Rejection::LinkTargetMissing => "hard link target does not exist",
            Rejection::LinkTargetDirectory => "hard link to a directory",
            Rejection::LinkToItself => "hard link to itself",
            Rejection::LinkAcrossMounts => "hard link target is on another mount",
            Rejection::MissingLinkName => "link entry without a target",
            Rejection::DeviceNode => "device nodes are not allowed",
            Rejection::Fifo => "named pipes are not allowed",
            Rejection::UnsupportedType(t) => {
                return write!(f, "unsupported entry type {:?}", char::from(*t))
            }
            Rejection::ReplacesDirectory => "would replace a directory that is not empty",
            Rejection::ReplacesDestination => "would replace the destination directory",
        };
        f.write_str(s)
    }
}

/// What went wrong in StreamIn, StreamOut or a user lookup.
///
/// [`FilesError::is_bad_input`] tells the caller's mistakes (a bad archive,
/// path or user: HTTP 400) from failures of the host or container.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    /// The container's root cannot be opened (the container is gone?).
    #[error("cannot open the container root {path}: {source}")]
    Root { path: PathBuf, source: io::Error },
    /// A destination or source path that cannot be used.
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath { path: String, reason: &'static str },
    /// The destination or source is not a directory where one is needed.
    #[error("{path:?} in the container is not a directory")]
    NotADirectory { path: String },
    /// The source of StreamOut does not exist.
    #[error("{path:?} does not exist in the container")]
    NotFound { path: String },
    /// The StreamIn body is not a readable tar stream.
    #[error("invalid tar stream: {source}")]
    InvalidTar { source: io::Error },
    /// A tar entry refused before anything of it was written.
    #[error("tar entry {entry:?} rejected: {reason}")]
    Rejected { entry: String, reason: Rejection },
    /// Writing a tar entry into the container failed.
    #[error("tar entry {entry:?}: {op} failed: {source}")]
    Write {
        entry: String,
        op: &'static str,
        source: io::Error,
    },
    /// A user spec that is neither a name nor a number.
    #[error("invalid user {spec:?}: expected \"\", a name, \"uid\" or \"uid:gid\"")]
    InvalidUser { spec: String },
    /// A user name missing from the container's /etc/passwd.
    #[error("unknown user {name:?}: not in the container's /etc/passwd")]
    UnknownUser { name: String },
    /// A group name missing from the container's /etc/group.
    #[error("unknown group {name:?}: not in the container's /etc/group")]
    UnknownGroup { name: String },
    /// /etc/passwd or /etc/group cannot be read.
    #[error("cannot read the container's {file}: {source}")]
    ReadConfig {
        file: &'static str,
        source: io::Error,
    },
    /// A file system operation in the container failed.
    #[error("{op} {path:?} in the container failed: {source}")]
    Io {
        op: &'static str,
        path: String,
        source: io::Error,
    },
    /// The StreamOut tar stream could not be written to its reader.
    #[error("writing the tar stream failed: {source}")]
    Output { source: io::Error },
}

impl FilesError {
    /// Whether the request was at fault (bad archive, path or user) rather
    /// than the host or the container.
    pub fn is_bad_input(&self) -> bool {
        match self {
            FilesError::InvalidPath { .. }
            | FilesError::NotADirectory { .. }
            | FilesError::NotFound { .. }
            | FilesError::InvalidTar { .. }
            | FilesError::Rejected { .. }
            | FilesError::InvalidUser { .. }
            | FilesError::UnknownUser { .. }
            | FilesError::UnknownGroup { .. } => true,
            FilesError::Root { .. }
            | FilesError::Write { .. }
            | FilesError::ReadConfig { .. }
            | FilesError::Io { .. }
            | FilesError::Output { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_maps_every_id_to_itself() {
        let m = IdMap::identity();
        assert_eq!((m.to_host(0), m.to_host(2000)), (0, 2000));
        assert_eq!((m.to_container(0), m.to_container(7)), (0, 7));
    }

    #[test]
    fn maximus_moves_only_root() {
        let m = IdMap::maximus(4294967294);
        assert_eq!(m.to_host(0), 4294967294);
        assert_eq!(m.to_host(2000), 2000);
        assert_eq!(m.to_container(4294967294), 0);
        assert_eq!(m.to_container(2000), 2000);
        // Host root is not mapped into the container.
        assert_eq!(m.to_container(0), OVERFLOW_ID);
    }

    #[test]
    fn ranges_map_both_ways_and_overflow_outside() {
        let m = IdMap::from_ranges(vec![IdRange {
            container: 0,
            host: 100000,
            size: 65536,
        }]);
        assert_eq!(m.to_host(5), 100005);
        assert_eq!(m.to_container(100005), 5);
        assert_eq!(m.to_host(70000), OVERFLOW_ID);
        assert_eq!(m.to_container(5), OVERFLOW_ID);
    }
}
