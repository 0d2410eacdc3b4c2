//! The backends: one module each, with the same shape (`open`, then the
//! [`Backend`] operations on one volume directory).

pub(crate) mod btrfs;
pub(crate) mod loopfs;
pub(crate) mod plain;
pub(crate) mod template;
pub(crate) mod xfs;

use std::fmt::Debug;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::limits::{LimitsError, Quota};
use crate::DiskError;

/// What a volume held when it was created (its overlay directories, the
/// filesystem's own files): subtracted from the usage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Baseline {
    pub(crate) bytes: u64,
    pub(crate) inodes: u64,
}

impl Baseline {
    /// Usage above the baseline.
    pub(crate) fn above(&self, bytes: u64, inodes: u64) -> (u64, u64) {
        (
            bytes.saturating_sub(self.bytes),
            inodes.saturating_sub(self.inodes),
        )
    }
}

/// The backend's part of a volume's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "backend", rename_all = "lowercase")]
pub(crate) enum BackendState {
    Loop { baseline: Baseline },
    Btrfs { subvolume: u64, baseline: Baseline },
    Xfs { project: u32, baseline: Baseline },
    None { baseline: Baseline },
}

/// One way of enforcing disk limits on volume directories.
pub(crate) trait Backend: Send + Sync + Debug {
    /// Refuses quotas the backend cannot enforce.
    fn check(&self, quota: &Quota) -> Result<(), LimitsError>;

    /// Creates the volume at `dir` (with `upper/`, `work/` inside),
    /// limited to `quota`. Leaves nothing behind on failure.
    fn create(&self, handle: &str, dir: &Path, quota: &Quota) -> Result<BackendState, DiskError>;

    /// Exclusive bytes and inodes used.
    fn usage(&self, dir: &Path, state: &BackendState) -> Result<(u64, u64), DiskError>;

    /// Removes the volume and everything it holds (mounts, loop devices,
    /// subvolumes, project ids). `state` is `None` for an orphan. Fine when
    /// parts are already gone.
    fn destroy(
        &self,
        handle: &str,
        dir: &Path,
        state: Option<&BackendState>,
    ) -> Result<(), DiskError>;

    /// Makes a recorded volume usable again after a restart (remounts what
    /// a reboot unmounted, takes its ids).
    fn recover(&self, handle: &str, dir: &Path, state: &BackendState) -> Result<(), DiskError>;
}
