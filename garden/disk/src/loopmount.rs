//! Mounting a filesystem image through a loop device, and unmounting it.
//! Devices are bound with autoclear: the kernel releases the device when
//! the mount goes away, so nothing is left to detach and a failed mount
//! leaks nothing.

use std::fs::OpenOptions;
use std::io::ErrorKind;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};

use crate::sys::loopdev::{self, LoopControl, LO_FLAGS_AUTOCLEAR};

/// How often we retry when other processes take the free device first.
const ATTACH_ATTEMPTS: usize = 64;

/// Errors of loop mounts.
#[derive(Debug, thiserror::Error)]
pub enum LoopMountError {
    /// `/dev/loop-control` is missing or unusable.
    #[error("cannot open /dev/loop-control (is the loop module loaded?)")]
    Control(#[source] std::io::Error),
    /// No loop device could be bound.
    #[error("cannot bind {image} to a loop device")]
    Attach {
        /// The image.
        image: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// mount(2) failed.
    #[error("cannot mount {image} ({fstype} on {device}) at {target}")]
    Mount {
        /// The image.
        image: PathBuf,
        /// The loop device.
        device: PathBuf,
        /// The filesystem type.
        fstype: String,
        /// The mount point.
        target: PathBuf,
        /// The cause.
        #[source]
        source: Errno,
    },
    /// umount(2) failed.
    #[error("cannot unmount {target}")]
    Unmount {
        /// The mount point.
        target: PathBuf,
        /// The cause.
        #[source]
        source: Errno,
    },
    /// stat failed while checking for a mount point.
    #[error("cannot stat {path}")]
    Stat {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Binds images to loop devices and mounts them.
#[derive(Debug)]
pub(crate) struct LoopMounter {
    control: LoopControl,
}

impl LoopMounter {
    pub(crate) fn open() -> Result<LoopMounter, LoopMountError> {
        let control = LoopControl::open().map_err(LoopMountError::Control)?;
        Ok(LoopMounter { control })
    }

    /// Mounts `image` (a `fstype` filesystem) at `target` with `data`
    /// options. Returns the loop device's number.
    pub(crate) fn mount(
        &self,
        image: &Path,
        target: &Path,
        fstype: &str,
        data: &str,
    ) -> Result<u32, LoopMountError> {
        let attach = |source| LoopMountError::Attach {
            image: image.to_path_buf(),
            source,
        };
        let backing = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(image)
            .map_err(attach)?;
        let (n, device) = self.bind(image, &backing).map_err(attach)?;
        let device_path = loopdev::device_path(n);
        let result = nix::mount::mount(
            Some(&device_path),
            target,
            Some(fstype),
            MsFlags::MS_NOATIME,
            Some(data),
        );
        // Closing our descriptor leaves the mount as the device's only
        // user: autoclear releases it with the mount (or now, on failure).
        drop(device);
        result.map_err(|source| LoopMountError::Mount {
            image: image.to_path_buf(),
            device: device_path,
            fstype: fstype.to_string(),
            target: target.to_path_buf(),
            source,
        })?;
        Ok(n)
    }

    /// Binds `backing` to a free loop device, retrying when another
    /// process takes the device between GET_FREE and CONFIGURE.
    fn bind(&self, image: &Path, backing: &std::fs::File) -> std::io::Result<(u32, std::fs::File)> {
        let mut last = Errno::EBUSY;
        for _ in 0..ATTACH_ATTEMPTS {
            let n = self.control.get_free()?;
            let device = match loopdev::open_device(n) {
                Ok(device) => device,
                // Removed or not yet created by another process: next one.
                Err(e) if matches!(e.kind(), ErrorKind::NotFound) => continue,
                Err(e) if e.raw_os_error() == Some(libc::ENXIO) => continue,
                Err(e) => return Err(e),
            };
            match loopdev::configure(&device, backing, image, LO_FLAGS_AUTOCLEAR) {
                Ok(()) => return Ok((n, device)),
                Err(Errno::EBUSY) => last = Errno::EBUSY,
                Err(e) => return Err(e.into()),
            }
        }
        Err(last.into())
    }
}

/// Unmounts `target`. Returns false when nothing was mounted there. A mount
/// still busy (a process inside it) is detached lazily: its loop device is
/// released when the last user goes.
pub(crate) fn unmount(target: &Path) -> Result<bool, LoopMountError> {
    if !is_mountpoint(target)? {
        return Ok(false);
    }
    let err = |source| LoopMountError::Unmount {
        target: target.to_path_buf(),
        source,
    };
    match nix::mount::umount2(target, MntFlags::empty()) {
        Ok(()) => Ok(true),
        Err(Errno::EBUSY) => {
            tracing::warn!(target = %target.display(), "mount busy, detaching lazily");
            nix::mount::umount2(target, MntFlags::MNT_DETACH).map_err(err)?;
            Ok(true)
        }
        Err(Errno::EINVAL | Errno::ENOENT) => Ok(false),
        Err(e) => Err(err(e)),
    }
}

/// Whether `path` is a mount point: its device differs from its parent's
/// (or it is the root). False when it does not exist.
pub(crate) fn is_mountpoint(path: &Path) -> Result<bool, LoopMountError> {
    let stat = |p: &Path| {
        std::fs::symlink_metadata(p).map_err(|source| LoopMountError::Stat {
            path: p.to_path_buf(),
            source,
        })
    };
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
        Err(source) => {
            return Err(LoopMountError::Stat {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let Some(parent) = path.parent() else {
        return Ok(true);
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    let parent_meta = stat(parent)?;
    Ok(meta.dev() != parent_meta.dev() || meta.ino() == parent_meta.ino())
}
