//! The `none` backend: a plain directory, no enforcement. Accepts only
//! volumes without limits, so a limit is never silently ignored. Usage is
//! measured by walking the tree.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use super::{Backend, BackendState, Baseline};
use crate::limits::{LimitsError, Quota};
use crate::store::{self, StoreError};
use crate::walk::{self, WalkError};
use crate::DiskError;

/// Errors of the none backend.
#[derive(Debug, thiserror::Error)]
pub enum PlainError {
    /// Creating or removing the directory failed.
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
    /// Measuring usage failed.
    #[error(transparent)]
    Walk(#[from] WalkError),
    /// The overlay directories could not be made.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Plain directories.
#[derive(Debug, Default)]
pub(crate) struct PlainBackend;

/// Removes `dir` and everything in it; fine when it is gone.
pub(crate) fn remove_tree(dir: &Path) -> Result<(), std::io::Error> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

impl Backend for PlainBackend {
    fn check(&self, quota: &Quota) -> Result<(), LimitsError> {
        if quota.is_unlimited() {
            return Ok(());
        }
        Err(LimitsError::Unsupported {
            backend: "none",
            what: format!("bytes {} inodes {}", quota.bytes, quota.inodes),
            reason: "it enforces no limits; configure the loop, btrfs or xfs backend",
        })
    }

    fn create(&self, _: &str, dir: &Path, _: &Quota) -> Result<BackendState, DiskError> {
        let made = std::fs::create_dir(dir)
            .map_err(|source| PlainError::Io {
                op: "create",
                path: dir.to_path_buf(),
                source,
            })
            .and_then(|()| Ok(store::make_layer_dirs(dir)?))
            .and_then(|()| Ok(walk::usage(dir)?));
        match made {
            Ok((bytes, inodes)) => Ok(BackendState::None {
                baseline: Baseline { bytes, inodes },
            }),
            Err(e) => {
                let _ = remove_tree(dir);
                Err(e.into())
            }
        }
    }

    fn usage(&self, dir: &Path, state: &BackendState) -> Result<(u64, u64), DiskError> {
        let (bytes, inodes) = walk::usage(dir).map_err(PlainError::from)?;
        let baseline = match state {
            BackendState::None { baseline } => *baseline,
            _ => Baseline::default(),
        };
        Ok(baseline.above(bytes, inodes))
    }

    fn destroy(&self, _: &str, dir: &Path, _: Option<&BackendState>) -> Result<(), DiskError> {
        remove_tree(dir).map_err(|source| PlainError::Io {
            op: "remove",
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(())
    }

    fn recover(&self, _: &str, _: &Path, _: &BackendState) -> Result<(), DiskError> {
        Ok(())
    }
}
