//! Linux namespaces: which to create, which to join, and the user
//! namespace's id maps.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sched::{self, CloneFlags};
use oci_spec::runtime::{LinuxIdMapping, LinuxNamespaceType, Spec};

#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    #[error("opening {ns} namespace {path}: {source}")]
    Open {
        ns: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("joining {ns} namespace: {source}")]
    Join {
        ns: &'static str,
        #[source]
        source: Errno,
    },
    #[error("creating namespaces {flags:?}: {source}")]
    Unshare {
        flags: CloneFlags,
        #[source]
        source: Errno,
    },
    #[error("writing {path}: {source}")]
    IdMap {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the {0} namespace is not supported by this runtime")]
    Unsupported(&'static str),
}

/// The kinds the runtime handles, in the order they are joined: the user
/// namespace first (it grants the capabilities to join the rest), the mount
/// namespace last (joining it changes how later paths resolve).
const JOIN_ORDER: [LinuxNamespaceType; 7] = [
    LinuxNamespaceType::User,
    LinuxNamespaceType::Ipc,
    LinuxNamespaceType::Uts,
    LinuxNamespaceType::Network,
    LinuxNamespaceType::Pid,
    LinuxNamespaceType::Cgroup,
    LinuxNamespaceType::Mount,
];

pub fn name(ns: LinuxNamespaceType) -> &'static str {
    match ns {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Time => "time",
    }
}

pub fn flag(ns: LinuxNamespaceType) -> CloneFlags {
    match ns {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
    }
}

/// What the set-up children do with namespaces, decided before forking.
#[derive(Debug)]
pub struct Plan {
    /// Existing namespaces to join, already opened, in join order.
    pub join: Vec<(LinuxNamespaceType, OwnedFd)>,
    /// Create a user namespace (then the parent writes the id maps).
    pub new_user: bool,
    /// Namespaces to create after the user namespace, except cgroup.
    pub create: CloneFlags,
    /// Create a cgroup namespace, after the parent put us in our cgroup.
    pub new_cgroup: bool,
    /// The container's processes live in a pid namespace other than ours, so
    /// a fork is needed to enter it (and the first child is its pid 1).
    pub enters_pid_namespace: bool,
}

impl Default for Plan {
    fn default() -> Self {
        Self {
            join: Vec::new(),
            new_user: false,
            create: CloneFlags::empty(),
            new_cgroup: false,
            enters_pid_namespace: false,
        }
    }
}

impl Plan {
    /// An existing user namespace is joined.
    pub fn joins_user(&self) -> bool {
        self.join
            .iter()
            .any(|(kind, _)| *kind == LinuxNamespaceType::User)
    }

    /// The plan for `create`: the spec's namespaces, created or joined.
    pub fn for_spec(spec: &Spec) -> Result<Plan, NamespaceError> {
        let namespaces = spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().clone())
            .unwrap_or_default();
        let mut plan = Plan::default();
        for kind in JOIN_ORDER {
            let Some(ns) = namespaces.iter().find(|n| n.typ() == kind) else {
                continue;
            };
            match ns.path() {
                Some(path) => plan.join.push((kind, open(kind, path)?)),
                None => match kind {
                    LinuxNamespaceType::User => plan.new_user = true,
                    LinuxNamespaceType::Cgroup => plan.new_cgroup = true,
                    _ => plan.create |= flag(kind),
                },
            }
            if kind == LinuxNamespaceType::Pid {
                plan.enters_pid_namespace = true;
            }
        }
        if let Some(ns) = namespaces
            .iter()
            .find(|n| n.typ() == LinuxNamespaceType::Time)
        {
            if ns.path().is_some() {
                return Err(NamespaceError::Unsupported("time (by path)"));
            }
            plan.create |= flag(LinuxNamespaceType::Time);
        }
        Ok(plan)
    }

    /// The plan for `exec`: join every namespace of `pid` that differs from
    /// ours.
    pub fn for_process(pid: i32) -> Result<Plan, NamespaceError> {
        let mut plan = Plan::default();
        for kind in JOIN_ORDER {
            let theirs = PathBuf::from(format!("/proc/{pid}/ns/{}", name(kind)));
            let ours = PathBuf::from(format!("/proc/self/ns/{}", name(kind)));
            let (Ok(t), Ok(o)) = (std::fs::metadata(&theirs), std::fs::metadata(&ours)) else {
                continue;
            };
            if t.ino() == o.ino() && t.dev() == o.dev() {
                continue;
            }
            plan.join.push((kind, open(kind, &theirs)?));
            if kind == LinuxNamespaceType::Pid {
                plan.enters_pid_namespace = true;
            }
        }
        Ok(plan)
    }

    /// Joins the planned existing namespaces (stage 1).
    /// Whether stage 1 may create its namespaces before it joins the
    /// container's cgroup, so that creating them overlaps the parent's
    /// cgroup set-up. Not with a user namespace (inside it the cgroup files
    /// are no longer ours to write) nor with namespaces joined by path (a
    /// joined mount namespace would hide the host's cgroup tree).
    pub fn cgroup_join_can_wait(&self) -> bool {
        self.join.is_empty() && !self.new_user
    }

    pub fn join_existing(&self) -> Result<(), NamespaceError> {
        for (kind, fd) in &self.join {
            sched::setns(fd, flag(*kind)).map_err(|source| NamespaceError::Join {
                ns: name(*kind),
                source,
            })?;
        }
        Ok(())
    }
}

fn open(kind: LinuxNamespaceType, path: &Path) -> Result<OwnedFd, NamespaceError> {
    File::open(path)
        .map(OwnedFd::from)
        .map_err(|source| NamespaceError::Open {
            ns: name(kind),
            path: path.to_path_buf(),
            source,
        })
}

/// Creates the namespaces in `flags` for the calling process.
pub fn unshare(flags: CloneFlags) -> Result<(), NamespaceError> {
    if flags.is_empty() {
        return Ok(());
    }
    sched::unshare(flags).map_err(|source| NamespaceError::Unshare { flags, source })
}

/// Writes the uid and gid maps of `pid`'s user namespace (run by the parent,
/// which holds the capabilities in the parent namespace).
pub fn write_id_maps(
    pid: i32,
    uid_maps: &[LinuxIdMapping],
    gid_maps: &[LinuxIdMapping],
) -> Result<(), NamespaceError> {
    write_map(&PathBuf::from(format!("/proc/{pid}/uid_map")), uid_maps)?;
    write_map(&PathBuf::from(format!("/proc/{pid}/gid_map")), gid_maps)
}

fn write_map(path: &Path, maps: &[LinuxIdMapping]) -> Result<(), NamespaceError> {
    let text: String = maps
        .iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect();
    // The kernel wants the whole map in one write.
    std::fs::write(path, text).map_err(|source| NamespaceError::IdMap {
        path: path.to_path_buf(),
        source,
    })
}

/// Maps a container uid to the host through `maps` (identity when empty).
pub fn host_id(maps: &[LinuxIdMapping], id: u32) -> Option<u32> {
    if maps.is_empty() {
        return Some(id);
    }
    maps.iter().find_map(|m| {
        let start = m.container_id();
        (id >= start && id - start < m.size()).then(|| m.host_id() + (id - start))
    })
}
