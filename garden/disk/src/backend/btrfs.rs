//! The `btrfs` backend: each volume is a subvolume of the store's btrfs
//! filesystem with a qgroup limit on the bytes it references; writes past
//! it fail with EDQUOT. btrfs has no inode quota, so inode limits are
//! refused. Byte usage is the qgroup's (as of the last transaction commit,
//! every 30 s by default); inodes are counted by walking the subvolume.

use std::fs::File;
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::statfs::BTRFS_SUPER_MAGIC;

use super::plain::remove_tree;
use super::{Backend, BackendState, Baseline};
use crate::config::StoreImage;
use crate::limits::{LimitsError, Quota};
use crate::mkfs::Fs;
use crate::store::{self, StoreError};
use crate::store_image::{self, StoreImageError};
use crate::sys::btrfs as sys;
use crate::walk::{self, WalkError};
use crate::DiskError;

/// The inode number of a subvolume's root directory.
const SUBVOLUME_ROOT_INO: u64 = 256;

/// Errors of the btrfs backend.
#[derive(Debug, thiserror::Error)]
pub enum BtrfsError {
    /// The store is not on btrfs and no store image is configured.
    #[error("store {0} is not on btrfs (configure store_image to create one)")]
    NotBtrfs(PathBuf),
    /// The store image could not be prepared.
    #[error(transparent)]
    StoreImage(#[from] StoreImageError),
    /// A btrfs ioctl failed.
    #[error("{op} {path}")]
    Ioctl {
        /// The operation.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// The cause.
        #[source]
        source: Errno,
    },
    /// A file operation failed.
    #[error("{op} {path}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Counting inodes failed.
    #[error(transparent)]
    Walk(#[from] WalkError),
    /// The overlay directories could not be made.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn ioctl<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(Errno) -> BtrfsError + 'a {
    move |source| BtrfsError::Ioctl {
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn open(path: &Path) -> Result<File, BtrfsError> {
    File::open(path).map_err(|source| BtrfsError::Io {
        op: "open",
        path: path.to_path_buf(),
        source,
    })
}

/// Subvolumes with qgroup limits.
#[derive(Debug)]
pub(crate) struct BtrfsBackend {
    volumes: PathBuf,
}

impl BtrfsBackend {
    /// Mounts the store image if configured, checks that `root` is on
    /// btrfs and turns quotas on. Run before the store is opened.
    pub(crate) fn prepare(root: &Path, image: Option<&StoreImage>) -> Result<(), BtrfsError> {
        if let Some(image) = image {
            store_image::prepare(image, root, Fs::Btrfs, BTRFS_SUPER_MAGIC, "")?;
        }
        let st = nix::sys::statfs::statfs(root).map_err(ioctl("statfs", root))?;
        if st.filesystem_type() != BTRFS_SUPER_MAGIC {
            return Err(BtrfsError::NotBtrfs(root.to_path_buf()));
        }
        sys::quota_enable(open(root)?).map_err(ioctl("enable quotas on", root))
    }

    pub(crate) fn new(volumes: PathBuf) -> BtrfsBackend {
        BtrfsBackend { volumes }
    }

    fn create_inner(
        &self,
        handle: &str,
        dir: &Path,
        quota: &Quota,
    ) -> Result<BackendState, BtrfsError> {
        let parent = open(&self.volumes)?;
        sys::subvol_create(&parent, handle.as_ref()).map_err(ioctl("create subvolume", dir))?;
        let subvol = open(dir)?;
        let id = sys::subvol_id(&subvol).map_err(ioctl("look up subvolume", dir))?;
        store::make_layer_dirs(dir)?;
        let (rfer, _) = sys::qgroup_usage(&subvol, id).map_err(ioctl("read qgroup of", dir))?;
        let (_, inodes) = walk::usage(dir)?;
        let baseline = Baseline {
            bytes: rfer,
            inodes,
        };
        if quota.bytes > 0 {
            sys::qgroup_limit(&subvol, id, quota.bytes + baseline.bytes)
                .map_err(ioctl("limit qgroup of", dir))?;
        }
        Ok(BackendState::Btrfs {
            subvolume: id,
            baseline,
        })
    }
}

impl Backend for BtrfsBackend {
    fn check(&self, quota: &Quota) -> Result<(), LimitsError> {
        if quota.inodes == 0 {
            return Ok(());
        }
        Err(LimitsError::Unsupported {
            backend: "btrfs",
            what: format!("inode_hard {}", quota.inodes),
            reason: "btrfs has no inode quota; use the loop or xfs backend for inode limits",
        })
    }

    fn create(&self, handle: &str, dir: &Path, quota: &Quota) -> Result<BackendState, DiskError> {
        self.create_inner(handle, dir, quota).map_err(|e| {
            if let Err(cleanup) = self.destroy(handle, dir, None) {
                tracing::warn!(handle, error = %cleanup, "cleaning up a failed btrfs volume");
            }
            e.into()
        })
    }

    fn usage(&self, dir: &Path, state: &BackendState) -> Result<(u64, u64), DiskError> {
        let BackendState::Btrfs {
            subvolume,
            baseline,
        } = state
        else {
            return Err(BtrfsError::NotBtrfs(dir.to_path_buf()).into());
        };
        let (rfer, _) =
            sys::qgroup_usage(open(dir)?, *subvolume).map_err(ioctl("read qgroup of", dir))?;
        let (_, inodes) = walk::usage(dir).map_err(BtrfsError::from)?;
        Ok(baseline.above(rfer, inodes))
    }

    fn destroy(&self, handle: &str, dir: &Path, _: Option<&BackendState>) -> Result<(), DiskError> {
        let meta = match std::fs::symlink_metadata(dir) {
            Ok(meta) => meta,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(source) => {
                return Err(BtrfsError::Io {
                    op: "stat",
                    path: dir.to_path_buf(),
                    source,
                }
                .into())
            }
        };
        if meta.ino() != SUBVOLUME_ROOT_INO {
            // A directory left by a failed create.
            return remove_tree(dir).map_err(|source| {
                BtrfsError::Io {
                    op: "remove",
                    path: dir.to_path_buf(),
                    source,
                }
                .into()
            });
        }
        let id = sys::subvol_id(open(dir)?).map_err(ioctl("look up subvolume", dir))?;
        let parent = open(&self.volumes)?;
        sys::subvol_destroy(&parent, handle.as_ref()).map_err(ioctl("delete subvolume", dir))?;
        // The qgroup goes once the cleaner has dropped the subvolume (newer
        // kernels remove it themselves then); until then EBUSY.
        if let Err(e) = sys::qgroup_remove(&parent, id) {
            tracing::debug!(handle, qgroup = id, error = %e, "qgroup left for the kernel to drop");
        }
        Ok(())
    }

    fn recover(&self, _: &str, _: &Path, _: &BackendState) -> Result<(), DiskError> {
        Ok(())
    }
}
