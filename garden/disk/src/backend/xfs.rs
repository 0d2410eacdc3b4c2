//! The `xfs` backend, for production: the store is an XFS filesystem
//! mounted with `prjquota`; each volume directory gets a project id of its
//! own (inherited by everything created below it) and hard block and inode
//! limits on that project. Writes past them fail with EDQUOT. Usage is the
//! project's quota accounting.
//!
//! Project ids are allocated from [`ProjectIds`]; the allocation is
//! persisted in the volumes' records (and in the directories themselves,
//! for orphans).

use std::collections::BTreeSet;
use std::fs::File;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, PoisonError};

use nix::errno::Errno;
use nix::sys::statfs::XFS_SUPER_MAGIC;

use super::plain::remove_tree;
use super::{Backend, BackendState, Baseline};
use crate::config::{ProjectIds, StoreImage};
use crate::limits::{LimitsError, Quota};
use crate::mkfs::Fs;
use crate::store::{self, StoreError};
use crate::store_image::{self, StoreImageError};
use crate::sys::xfs as sys;
use crate::DiskError;

/// XFS quota block counts are 512-byte basic blocks.
const BASIC_BLOCK: u64 = 512;

/// Errors of the xfs backend.
#[derive(Debug, thiserror::Error)]
pub enum XfsError {
    /// The store is not on XFS.
    #[error("store {0} is not on XFS (configure store_image to create one)")]
    NotXfs(PathBuf),
    /// Project quotas are not on.
    #[error("XFS store {0} is not mounted with project quotas enforced (mount option prjquota)")]
    NoProjectQuota(PathBuf),
    /// The kernel has no XFS quota support.
    #[error("cannot read the quota state of {path} (a kernel without XFS quota support?)")]
    QuotaState {
        /// The store root.
        path: PathBuf,
        /// The cause.
        #[source]
        source: Errno,
    },
    /// Every project id of the range is taken.
    #[error("all {0} project ids of the store are in use")]
    NoProjectId(u32),
    /// The store image could not be prepared.
    #[error(transparent)]
    StoreImage(#[from] StoreImageError),
    /// An ioctl or quotactl failed.
    #[error("{op} {path}")]
    Sys {
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
    /// The overlay directories could not be made.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn sys_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(Errno) -> XfsError + 'a {
    move |source| XfsError::Sys {
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn open(path: &Path) -> Result<File, XfsError> {
    File::open(path).map_err(|source| XfsError::Io {
        op: "open",
        path: path.to_path_buf(),
        source,
    })
}

/// Project quotas on an XFS store.
#[derive(Debug)]
pub(crate) struct XfsBackend {
    /// Any descriptor on the filesystem, for quotactl_fd.
    fs: File,
    ids: ProjectIds,
    taken: Mutex<BTreeSet<u32>>,
    /// Where the next allocation starts looking.
    cursor: AtomicU32,
}

impl XfsBackend {
    /// Mounts the store image if configured, then checks that `root` is on
    /// XFS with project quotas enforced. Run before the store is opened.
    pub(crate) fn prepare(root: &Path, image: Option<&StoreImage>) -> Result<(), XfsError> {
        if let Some(image) = image {
            store_image::prepare(image, root, Fs::Xfs, XFS_SUPER_MAGIC, "prjquota")?;
        }
        let st = nix::sys::statfs::statfs(root).map_err(sys_err("statfs", root))?;
        if st.filesystem_type() != XFS_SUPER_MAGIC {
            return Err(XfsError::NotXfs(root.to_path_buf()));
        }
        let flags =
            sys::project_quota_flags(open(root)?).map_err(|source| XfsError::QuotaState {
                path: root.to_path_buf(),
                source,
            })?;
        let on = sys::FS_QUOTA_PDQ_ACCT | sys::FS_QUOTA_PDQ_ENFD;
        if flags & on != on {
            return Err(XfsError::NoProjectQuota(root.to_path_buf()));
        }
        Ok(())
    }

    pub(crate) fn new(root: &Path, ids: ProjectIds) -> Result<XfsBackend, XfsError> {
        Ok(XfsBackend {
            fs: open(root)?,
            ids,
            taken: Mutex::new(BTreeSet::new()),
            cursor: AtomicU32::new(ids.first),
        })
    }

    /// A free project id: the first after the last one handed out (so a
    /// just-freed id is not reused at once), and one whose quota shows no
    /// usage. XFS frees the inodes of deleted files in the background, so
    /// the usage of a destroyed volume can linger; XFS_IOC_FREE_EOFBLOCKS
    /// waits for that, and
    /// an id still in use (by something outside the store) is skipped.
    fn allocate(&self) -> Result<u32, XfsError> {
        loop {
            let id = self.reserve()?;
            if self.project_is_empty(id)? {
                return Ok(id);
            }
            tracing::warn!(project = id, "project id in use outside the store, skipped");
        }
    }

    fn reserve(&self) -> Result<u32, XfsError> {
        let mut taken = self.taken.lock().unwrap_or_else(PoisonError::into_inner);
        let end = self.ids.first.saturating_add(self.ids.count);
        let cursor = self
            .cursor
            .load(Ordering::Relaxed)
            .clamp(self.ids.first, end);
        let id = (cursor..end)
            .chain(self.ids.first..cursor)
            .find(|id| !taken.contains(id))
            .ok_or(XfsError::NoProjectId(self.ids.count))?;
        taken.insert(id);
        self.cursor.store(id.saturating_add(1), Ordering::Relaxed);
        Ok(id)
    }

    fn project_is_empty(&self, id: u32) -> Result<bool, XfsError> {
        let used = |fs: &File| match sys::project_quota(fs, id) {
            Ok(q) => Ok(q.bcount != 0 || q.icount != 0),
            // No dquot yet: never used.
            Err(Errno::ENOENT) => Ok(false),
            Err(e) => Err(XfsError::Sys {
                op: "read project quota",
                path: PathBuf::from(format!("project {id}")),
                source: e,
            }),
        };
        if !used(&self.fs)? {
            return Ok(true);
        }
        sys::free_eofblocks(&self.fs, None).map_err(|e| XfsError::Sys {
            op: "flush inode inactivation for",
            path: PathBuf::from(format!("project {id}")),
            source: e,
        })?;
        Ok(!used(&self.fs)?)
    }

    fn is_taken(&self, id: u32) -> bool {
        self.taken
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&id)
    }

    fn release(&self, id: u32) {
        self.taken
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
    }

    fn create_inner(&self, id: u32, dir: &Path, quota: &Quota) -> Result<Baseline, XfsError> {
        std::fs::create_dir(dir).map_err(|source| XfsError::Io {
            op: "create",
            path: dir.to_path_buf(),
            source,
        })?;
        let file = open(dir)?;
        let mut attr = sys::get_xattr(&file).map_err(sys_err("read attributes of", dir))?;
        attr.projid = id;
        attr.xflags |= sys::FS_XFLAG_PROJINHERIT;
        sys::set_xattr(&file, &attr).map_err(sys_err("set project id of", dir))?;
        store::make_layer_dirs(dir)?;
        let now =
            sys::project_quota(&self.fs, id).map_err(sys_err("read project quota of", dir))?;
        let baseline = Baseline {
            bytes: now.bcount * BASIC_BLOCK,
            inodes: now.icount,
        };
        let blocks = match quota.bytes {
            0 => 0,
            bytes => (bytes + baseline.bytes).div_ceil(BASIC_BLOCK),
        };
        let inodes = match quota.inodes {
            0 => 0,
            inodes => inodes + baseline.inodes,
        };
        sys::set_project_limits(&self.fs, id, blocks, inodes)
            .map_err(sys_err("set project quota of", dir))?;
        Ok(baseline)
    }

    /// The project id of an existing volume directory, if any.
    fn project_of(dir: &Path) -> Result<Option<u32>, XfsError> {
        let file = match File::open(dir) {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(XfsError::Io {
                    op: "open",
                    path: dir.to_path_buf(),
                    source,
                })
            }
        };
        let attr = sys::get_xattr(&file).map_err(sys_err("read attributes of", dir))?;
        Ok((attr.projid != 0).then_some(attr.projid))
    }
}

impl Backend for XfsBackend {
    fn check(&self, _: &Quota) -> Result<(), LimitsError> {
        Ok(())
    }

    fn create(&self, handle: &str, dir: &Path, quota: &Quota) -> Result<BackendState, DiskError> {
        let project = self.allocate()?;
        match self.create_inner(project, dir, quota) {
            Ok(baseline) => Ok(BackendState::Xfs { project, baseline }),
            Err(e) => {
                let state = BackendState::Xfs {
                    project,
                    baseline: Baseline::default(),
                };
                if let Err(cleanup) = self.destroy(handle, dir, Some(&state)) {
                    tracing::warn!(handle, error = %cleanup, "cleaning up a failed xfs volume");
                    self.release(project);
                }
                Err(e.into())
            }
        }
    }

    fn usage(&self, dir: &Path, state: &BackendState) -> Result<(u64, u64), DiskError> {
        let BackendState::Xfs { project, baseline } = state else {
            return Err(XfsError::NotXfs(dir.to_path_buf()).into());
        };
        // Current numbers: without speculative preallocation (which XFS
        // charges until the file is closed) and with deleted files freed.
        sys::free_eofblocks(&self.fs, Some(*project))
            .map_err(sys_err("trim preallocation of", dir))?;
        let quota = sys::project_quota(&self.fs, *project)
            .map_err(sys_err("read project quota of", dir))?;
        Ok(baseline.above(quota.bcount * BASIC_BLOCK, quota.icount))
    }

    fn destroy(&self, _: &str, dir: &Path, state: Option<&BackendState>) -> Result<(), DiskError> {
        // An orphan's project id (read from its directory) is ours to
        // clear only if no recorded volume holds it.
        let project = match state {
            Some(BackendState::Xfs { project, .. }) => Some(*project),
            _ => Self::project_of(dir)?.filter(|id| !self.is_taken(*id)),
        };
        remove_tree(dir).map_err(|source| XfsError::Io {
            op: "remove",
            path: dir.to_path_buf(),
            source,
        })?;
        if let Some(id) = project {
            sys::set_project_limits(&self.fs, id, 0, 0)
                .map_err(sys_err("clear project quota of", dir))?;
            self.release(id);
        }
        Ok(())
    }

    fn recover(&self, _: &str, _: &Path, state: &BackendState) -> Result<(), DiskError> {
        if let BackendState::Xfs { project, .. } = state {
            self.taken
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(*project);
        }
        Ok(())
    }
}
