//! The `loop` backend: each volume is an ext4 image of its own
//! (`<root>/images/<handle>`), copied from a template of its size class
//! and loop-mounted at `<root>/volumes/<handle>`. The filesystem's size is
//! the byte limit and its inode count the inode limit: writes past them
//! fail with ENOSPC. Usage is the filesystem's own (statfs).

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::unistd::Whence;

use super::template::{self, TemplateError, Templates};
use super::{Backend, BackendState, Baseline};
use crate::limits::{LimitsError, Quota};
use crate::loopmount::{self, LoopMountError, LoopMounter};
use crate::store::Store;
use crate::DiskError;

/// Errors of the loop backend.
#[derive(Debug, thiserror::Error)]
pub enum LoopError {
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
    /// The template of the size class could not be built.
    #[error("loop template")]
    Template(#[from] TemplateError),
    /// Mounting or unmounting failed.
    #[error(transparent)]
    Mount(#[from] LoopMountError),
    /// A recorded volume is not mounted.
    #[error("volume {0} is not mounted")]
    NotMounted(PathBuf),
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> LoopError + 'a {
    move |source| LoopError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Per-volume ext4 images on loop devices.
#[derive(Debug)]
pub(crate) struct LoopBackend {
    mounter: LoopMounter,
    templates: Templates,
    images: PathBuf,
}

impl LoopBackend {
    pub(crate) fn open(store: &Store, unlimited_bytes: u64) -> Result<LoopBackend, LoopError> {
        Ok(LoopBackend {
            mounter: LoopMounter::open()?,
            templates: Templates::new(store.templates_dir(), unlimited_bytes),
            images: store.images_dir(),
        })
    }

    fn image(&self, handle: &str) -> PathBuf {
        self.images.join(handle)
    }

    fn create_inner(&self, image: &Path, dir: &Path, quota: &Quota) -> Result<Baseline, LoopError> {
        let template = self.templates.get(&self.mounter, quota)?;
        copy_sparse(&template.path, image)?;
        match std::fs::create_dir(dir) {
            Err(e) if e.kind() != ErrorKind::AlreadyExists => return Err(io("create", dir)(e)),
            _ => {}
        }
        self.mounter
            .mount(image, dir, "ext4", template::MOUNT_DATA)?;
        Ok(template.baseline)
    }
}

impl Backend for LoopBackend {
    fn check(&self, _: &Quota) -> Result<(), LimitsError> {
        Ok(())
    }

    fn create(&self, handle: &str, dir: &Path, quota: &Quota) -> Result<BackendState, DiskError> {
        let image = self.image(handle);
        match self.create_inner(&image, dir, quota) {
            Ok(baseline) => Ok(BackendState::Loop { baseline }),
            Err(e) => {
                if let Err(cleanup) = self.destroy(handle, dir, None) {
                    tracing::warn!(handle, error = %cleanup, "cleaning up a failed loop volume");
                }
                Err(e.into())
            }
        }
    }

    fn usage(&self, dir: &Path, state: &BackendState) -> Result<(u64, u64), DiskError> {
        if !loopmount::is_mountpoint(dir).map_err(LoopError::from)? {
            return Err(LoopError::NotMounted(dir.to_path_buf()).into());
        }
        let st = nix::sys::statfs::statfs(dir).map_err(|e| io("statfs", dir)(e.into()))?;
        let block = st.block_size() as u64;
        let bytes = (st.blocks() - st.blocks_available()) * block;
        let inodes = st.files() - st.files_free();
        let baseline = match state {
            BackendState::Loop { baseline } => *baseline,
            _ => Baseline::default(),
        };
        Ok(baseline.above(bytes, inodes))
    }

    fn destroy(&self, handle: &str, dir: &Path, _: Option<&BackendState>) -> Result<(), DiskError> {
        loopmount::unmount(dir).map_err(LoopError::from)?;
        match std::fs::remove_dir(dir) {
            Err(e) if e.kind() != ErrorKind::NotFound => return Err(io("remove", dir)(e).into()),
            _ => {}
        }
        let image = self.image(handle);
        match std::fs::remove_file(&image) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(io("remove", &image)(e).into()),
            _ => Ok(()),
        }
    }

    fn recover(&self, handle: &str, dir: &Path, _: &BackendState) -> Result<(), DiskError> {
        if loopmount::is_mountpoint(dir).map_err(LoopError::from)? {
            return Ok(());
        }
        tracing::info!(handle, "remounting loop volume");
        let image = self.image(handle);
        std::fs::create_dir_all(dir).map_err(io("create", dir))?;
        self.mounter
            .mount(&image, dir, "ext4", template::MOUNT_DATA)
            .map_err(LoopError::from)?;
        Ok(())
    }
}

/// Copies `src` to a new file `dst`, sharing extents (reflink) where the
/// filesystem can, else copying only the data ranges so holes stay holes.
fn copy_sparse(src: &Path, dst: &Path) -> Result<(), LoopError> {
    let from = File::open(src).map_err(io("open", src))?;
    let to = OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(dst)
        .map_err(io("create", dst))?;
    if crate::sys::ficlone(&to, &from).is_ok() {
        return Ok(());
    }
    let len = from.metadata().map_err(io("stat", src))?.len();
    to.set_len(len).map_err(io("resize", dst))?;
    let end = i64::try_from(len).map_err(|_| io("size of", src)(ErrorKind::InvalidData.into()))?;
    let mut offset: i64 = 0;
    while offset < end {
        let data = match nix::unistd::lseek(&from, offset, Whence::SeekData) {
            Ok(data) => data,
            Err(Errno::ENXIO) => break,
            Err(e) => return Err(io("seek", src)(e.into())),
        };
        let hole = nix::unistd::lseek(&from, data, Whence::SeekHole)
            .map_err(|e| io("seek", src)(e.into()))?;
        copy_range(&from, &to, data, hole).map_err(io("copy to", dst))?;
        offset = hole;
    }
    Ok(())
}

/// copy_file_range of `[start, end)` at the same offsets.
fn copy_range(from: &File, to: &File, start: i64, end: i64) -> std::io::Result<()> {
    let (mut off_in, mut off_out) = (start, start);
    while off_in < end {
        let want = usize::try_from(end - off_in).unwrap_or(usize::MAX);
        let n = nix::fcntl::copy_file_range(from, Some(&mut off_in), to, Some(&mut off_out), want)?;
        if n == 0 {
            return Err(ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(())
}
