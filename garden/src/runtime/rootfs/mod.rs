//! The container's root filesystem: propagation, the rootfs itself (a bind
//! mount or an overlay of layers), the spec's mounts, devices, `pivot_root`,
//! masked and read-only paths.
//!
//! Runs in the container's new mount namespace, in its init process, so
//! nothing here is ever visible on the host and everything disappears with
//! the namespace.

mod devices;
mod mount;
pub mod options;
mod paths;
mod pivot;
pub mod resolve;

use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::MsFlags;
use oci_spec::runtime::Spec;

use super::bundle::RootfsSource;

pub use pivot::pivot_root;

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("mounting {what} on {target}: {source}")]
    Mount {
        what: String,
        target: PathBuf,
        #[source]
        source: Errno,
    },
    #[error("mount destination {dest} is refused: {reason}")]
    Escape { dest: PathBuf, reason: String },
    #[error("mount destination {0:?} must be an absolute path")]
    RelativeDestination(PathBuf),
    #[error("bind mount source {path}: {source}")]
    BindSource {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("creating device {path}: {source}")]
    Device {
        path: PathBuf,
        #[source]
        source: Errno,
    },
    #[error("pivot_root into {root}: {step}: {source}")]
    Pivot {
        root: PathBuf,
        step: &'static str,
        #[source]
        source: Errno,
    },
    #[error("masking {path}: {source}")]
    Mask {
        path: PathBuf,
        #[source]
        source: Errno,
    },
    #[error("making {path} read-only: {source}")]
    ReadOnly {
        path: PathBuf,
        #[source]
        source: Errno,
    },
    #[error("unknown rootfsPropagation {0:?}")]
    Propagation(String),
    #[error("mount option {option:?} on {dest} is not supported")]
    UnsupportedOption { dest: PathBuf, option: String },
}

/// How the container sees cgroups, for a `cgroup` mount in the spec.
#[derive(Debug, Clone, Default)]
pub struct CgroupView {
    /// Pure cgroup v2 host.
    pub unified: bool,
    /// The container's cgroup directories on the host, per hierarchy
    /// (`"memory"`, `"cpu,cpuacct"`; `""` for v2).
    pub dirs: Vec<(String, PathBuf)>,
    /// The container has its own cgroup namespace.
    pub namespaced: bool,
}

/// What the rootfs set-up needs to know.
#[derive(Debug)]
pub struct Setup<'a> {
    pub spec: &'a Spec,
    pub bundle_dir: &'a Path,
    pub rootfs: &'a RootfsSource,
    /// Inside a user namespace: no mknod, device nodes are bind-mounted.
    pub in_user_namespace: bool,
    pub cgroups: &'a CgroupView,
}

/// Everything before `pivot_root`: private propagation, the rootfs mount,
/// the spec's mounts and the device nodes. Returns the new root.
pub fn prepare(setup: &Setup<'_>) -> Result<PathBuf, RootfsError> {
    // Nothing we mount may propagate back to the host.
    mount::mount_raw(
        None,
        Path::new("/"),
        None,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None,
        "/ as private",
    )?;
    let root = mount::mount_rootfs(setup.rootfs)?;
    let linux = setup.spec.linux().as_ref();
    for m in setup.spec.mounts().iter().flatten() {
        mount::mount_entry(setup, &root, m)?;
    }
    devices::create(
        &root,
        linux.and_then(|l| l.devices().as_deref()).unwrap_or(&[]),
        setup.in_user_namespace,
    )?;
    Ok(root)
}

/// Everything after `pivot_root`: masked and read-only paths, a read-only
/// root, and the rootfs propagation the spec asks for.
pub fn finish(spec: &Spec) -> Result<(), RootfsError> {
    let linux = spec.linux().as_ref();
    for p in linux
        .and_then(|l| l.masked_paths().as_ref())
        .into_iter()
        .flatten()
    {
        paths::mask(Path::new(p))?;
    }
    for p in linux
        .and_then(|l| l.readonly_paths().as_ref())
        .into_iter()
        .flatten()
    {
        paths::read_only(Path::new(p))?;
    }
    if spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false)
    {
        paths::read_only_root()?;
    }
    if let Some(prop) = linux.and_then(|l| l.rootfs_propagation().as_ref()) {
        let flags = options::parse_propagation(prop)
            .ok_or_else(|| RootfsError::Propagation(prop.clone()))?;
        mount::mount_raw(
            None,
            Path::new("/"),
            None,
            flags,
            None,
            "rootfs propagation",
        )?;
    }
    Ok(())
}
