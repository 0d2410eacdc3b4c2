//! The store image of the btrfs and xfs backends: a filesystem image
//! created (sparse) and loop-mounted at the store root by
//! [`crate::Disk::open`], left mounted across daemon restarts.

use std::path::{Path, PathBuf};

use nix::sys::statfs::FsType;

use crate::config::StoreImage;
use crate::loopmount::{self, LoopMountError, LoopMounter};
use crate::mkfs::{self, Fs, MkfsError};

/// Errors of preparing the store image.
#[derive(Debug, thiserror::Error)]
pub enum StoreImageError {
    /// The store root could not be created or inspected.
    #[error("store root {path}")]
    Root {
        /// The root.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Formatting the image failed.
    #[error("cannot create the store image")]
    Mkfs(#[from] MkfsError),
    /// Mounting or unmounting it failed.
    #[error("store image")]
    Mount(#[from] LoopMountError),
}

/// Whether `root` is a mount point of a filesystem of type `magic`.
pub(crate) fn is_mounted(root: &Path, magic: FsType) -> Result<bool, StoreImageError> {
    let on_fs = match nix::sys::statfs::statfs(root) {
        Ok(st) => st.filesystem_type() == magic,
        Err(nix::errno::Errno::ENOENT) => false,
        Err(e) => {
            return Err(StoreImageError::Root {
                path: root.to_path_buf(),
                source: e.into(),
            })
        }
    };
    Ok(on_fs && loopmount::is_mountpoint(root)?)
}

/// Mounts `image` at `root` unless a `magic` filesystem is mounted there
/// already (a restart), formatting it first when it does not exist.
pub(crate) fn prepare(
    image: &StoreImage,
    root: &Path,
    fs: Fs,
    magic: FsType,
    data: &str,
) -> Result<(), StoreImageError> {
    if is_mounted(root, magic)? {
        return Ok(());
    }
    std::fs::create_dir_all(root).map_err(|source| StoreImageError::Root {
        path: root.to_path_buf(),
        source,
    })?;
    if !image.path.exists() {
        tracing::info!(image = %image.path.display(), size = image.size, "formatting the store image");
        mkfs::mkfs_store_image(fs, &image.path, image.size)?;
    }
    let fstype = match fs {
        Fs::Ext4 => "ext4",
        Fs::Btrfs => "btrfs",
        Fs::Xfs => "xfs",
    };
    LoopMounter::open()?.mount(&image.path, root, fstype, data)?;
    tracing::info!(image = %image.path.display(), root = %root.display(), "store image mounted");
    Ok(())
}

/// Unmounts the store image (its loop device goes with it).
pub(crate) fn unmount(root: &Path) -> Result<(), StoreImageError> {
    loopmount::unmount(root)?;
    Ok(())
}
