//! The container's network namespace: naming it, opening it, and a netlink
//! connection that lives inside it.
//!
//! A netlink socket belongs to the namespace of the thread that created it,
//! so a short-lived thread joins the namespace (`setns` affects only that
//! thread), opens the socket and exits; the connection then runs on the
//! caller's tokio runtime like any other.

use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// The namespace file could not be opened (the process is gone?).
    #[error("network namespace {path}: {source}")]
    Open {
        /// The namespace file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The namespace is the daemon's own: a container must have its own.
    #[error("network namespace {0}: is the host's own, not a container's")]
    HostNamespace(PathBuf),
    /// Joining the namespace or opening the socket in it failed.
    #[error("network namespace {path}: cannot open a netlink socket inside: {source}")]
    Connect {
        /// The namespace file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

/// Which network namespace a container has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Netns {
    /// The namespace of this process (normally the container's init).
    Pid(u32),
    /// A namespace file: `/proc/<pid>/ns/net`, a bind mount under
    /// `/run/netns/`, or `/proc/self/fd/<n>` of an open namespace.
    Path(PathBuf),
}

impl Netns {
    /// The namespace file.
    pub fn path(&self) -> PathBuf {
        match self {
            Self::Pid(pid) => PathBuf::from(format!("/proc/{pid}/ns/net")),
            Self::Path(path) => path.clone(),
        }
    }

    /// Opens the namespace file (holding it keeps the namespace alive);
    /// the daemon's own namespace is refused.
    pub fn open(&self) -> Result<File, NetnsError> {
        let path = self.path();
        let file = File::open(&path).map_err(|source| NetnsError::Open {
            path: path.clone(),
            source,
        })?;
        let own = std::fs::metadata("/proc/self/ns/net");
        let target = file.metadata();
        if let (Ok(own), Ok(target)) = (own, target) {
            if (own.dev(), own.ino()) == (target.dev(), target.ino()) {
                return Err(NetnsError::HostNamespace(path));
            }
        }
        Ok(file)
    }
}

/// A netlink route connection inside the namespace `ns` (opened from
/// `path`, which is only used in errors). Must be called on a tokio runtime.
pub async fn connect_in(ns: &File, path: &Path) -> Result<rtnetlink::Handle, NetnsError> {
    let connect_err = |source| NetnsError::Connect {
        path: path.to_owned(),
        source,
    };
    let ns = ns.try_clone().map_err(connect_err)?;
    let runtime = tokio::runtime::Handle::current();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("garden-net-setns".into())
        .spawn(move || {
            // The socket registers with the caller's reactor.
            let _entered = runtime.enter();
            let result = nix::sched::setns(&ns, CloneFlags::CLONE_NEWNET)
                .map_err(io::Error::from)
                .and_then(|()| rtnetlink::new_connection());
            let _ = tx.send(result);
            // The thread ends here, so its changed namespace goes with it.
        })
        .map_err(connect_err)?;
    let received = rx
        .await
        .map_err(|_| connect_err(io::Error::other("setns thread died")))?;
    let (connection, handle, _) = received.map_err(connect_err)?;
    tokio::spawn(connection);
    Ok(handle)
}
