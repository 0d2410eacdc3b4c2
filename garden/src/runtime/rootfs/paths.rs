//! Masked and read-only paths (after `pivot_root`).

use std::path::Path;

use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use nix::sys::statvfs::{statvfs, FsFlags};

use super::RootfsError;

/// Hides `path`: `/dev/null` over a file, an empty read-only tmpfs over a
/// directory. A path that does not exist needs no hiding.
pub fn mask(path: &Path) -> Result<(), RootfsError> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(_) => return Ok(()),
    };
    let res = if meta.is_dir() {
        mount(
            Some("tmpfs"),
            path,
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            Some("size=0,mode=0555"),
        )
    } else {
        mount(
            Some("/dev/null"),
            path,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
    };
    res.map_err(|source| RootfsError::Mask {
        path: path.to_path_buf(),
        source,
    })
}

/// Bind-mounts `path` onto itself read-only. Missing paths are skipped.
pub fn read_only(path: &Path) -> Result<(), RootfsError> {
    if std::fs::symlink_metadata(path).is_err() {
        return Ok(());
    }
    let err = |source| RootfsError::ReadOnly {
        path: path.to_path_buf(),
        source,
    };
    mount(
        Some(path),
        path,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(err)?;
    remount_read_only(path).map_err(err)
}

/// Makes the whole root read-only.
pub fn read_only_root() -> Result<(), RootfsError> {
    remount_read_only(Path::new("/")).map_err(|source| RootfsError::ReadOnly {
        path: "/".into(),
        source,
    })
}

/// Remounts a bind mount read-only, keeping the flags the kernel locked on it
/// (in a user namespace, dropping nosuid/nodev/noexec is refused).
pub fn remount_read_only(path: &Path) -> Result<(), Errno> {
    let locked = locked_flags(path);
    mount(
        None::<&str>,
        path,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | locked,
        None::<&str>,
    )
}

/// The per-mount flags currently set on the mount holding `path`.
pub fn locked_flags(path: &Path) -> MsFlags {
    let Ok(st) = statvfs(path) else {
        return MsFlags::empty();
    };
    let f = st.flags();
    let mut m = MsFlags::empty();
    for (fs, ms) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if f.contains(fs) {
            m |= ms;
        }
    }
    m
}
