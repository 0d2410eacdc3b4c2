//! The container's root filesystem: an overlay of the image's shared
//! read-only layers and the container's writable layer on its volume,
//! mounted by the daemon on the host (as real root, so overlayfs keeps its
//! `trusted.*` attributes), then bound into the container by the runtime.

use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

/// The kernel's limit on mount data is one page.
const MAX_MOUNT_DATA: usize = 4000;

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("the image has no layers")]
    NoLayers,
    #[error("overlay options for {layers} layers are {len} bytes, more than the kernel's {MAX_MOUNT_DATA}")]
    TooManyLayers { layers: usize, len: usize },
    #[error("mounting the overlay at {target}: {source}")]
    Mount {
        target: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("unmounting {target}: {source}")]
    Unmount {
        target: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("preparing {path}: {source}")]
    Prepare {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Mounts `layers` (top first) under `upper` at `target`. `owner` is the
/// host id of the container's root: the writable layer belongs to it.
pub fn mount_overlay(
    layers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
    owner: u32,
) -> Result<(), RootfsError> {
    if layers.is_empty() {
        return Err(RootfsError::NoLayers);
    }
    for d in [upper, work, target] {
        std::fs::create_dir_all(d).map_err(|source| RootfsError::Prepare {
            path: d.to_path_buf(),
            source,
        })?;
    }
    // The overlay's root directory is the upper directory: container root
    // must own it to write at `/`.
    std::os::unix::fs::chown(upper, Some(owner), Some(owner)).map_err(|source| {
        RootfsError::Prepare {
            path: upper.to_path_buf(),
            source,
        }
    })?;
    let lower: Vec<String> = layers.iter().map(|p| p.display().to_string()).collect();
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        upper.display(),
        work.display()
    );
    if data.len() > MAX_MOUNT_DATA {
        return Err(RootfsError::TooManyLayers {
            layers: layers.len(),
            len: data.len(),
        });
    }
    mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::empty(),
        Some(data.as_str()),
    )
    .map_err(|source| RootfsError::Mount {
        target: target.to_path_buf(),
        source,
    })
}

/// Unmounts the overlay (lazily: a process still holding a file in it
/// does not block destroy). Not mounted is fine.
pub fn unmount(target: &Path) -> Result<(), RootfsError> {
    match umount2(target, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(source) => Err(RootfsError::Unmount {
            target: target.to_path_buf(),
            source,
        }),
    }
}
