//! How a [`crate::Disk`] is set up: the backend and its options (serde, so
//! the daemon's config file can carry it).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Which mechanism enforces the limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// A filesystem image per container on a loop device (ext4).
    Loop,
    /// A btrfs subvolume per container with a qgroup byte limit.
    Btrfs,
    /// An XFS project per container directory with block and inode limits.
    Xfs,
    /// A plain directory; only accepted with no limits.
    None,
}

impl BackendKind {
    /// The name used in configs and messages.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Loop => "loop",
            BackendKind::Btrfs => "btrfs",
            BackendKind::Xfs => "xfs",
            BackendKind::None => "none",
        }
    }
}

/// A filesystem image that [`crate::Disk::open`] creates (sparse, when
/// missing) and mounts at the store root, for the btrfs and xfs backends on
/// hosts whose root is not on such a filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreImage {
    /// The image file (outside the store root).
    pub path: PathBuf,
    /// Its size in bytes when created (btrfs needs about 120 MiB at least,
    /// mkfs.xfs 300 MiB).
    pub size: u64,
}

/// The range of XFS project ids the store allocates from. Project ids are
/// per filesystem: two stores on one filesystem need disjoint ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectIds {
    /// The first id.
    pub first: u32,
    /// How many ids (the most volumes the store holds).
    pub count: u32,
}

impl Default for ProjectIds {
    fn default() -> ProjectIds {
        ProjectIds {
            first: 1 << 20,
            count: 1 << 20,
        }
    }
}

/// The default size of a loop volume without a byte limit (sparse).
pub const DEFAULT_LOOP_UNLIMITED_BYTES: u64 = 16 << 30;

fn default_loop_unlimited_bytes() -> u64 {
    DEFAULT_LOOP_UNLIMITED_BYTES
}

/// The disk configuration of the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskConfig {
    /// The backend.
    pub kind: BackendKind,
    /// The store directory: volumes, their records, loop images.
    pub root: PathBuf,
    /// btrfs, xfs: an image to create and mount at `root` (when `root` is
    /// not already a btrfs filesystem / an XFS one mounted with prjquota).
    #[serde(default)]
    pub store_image: Option<StoreImage>,
    /// loop: the size of volumes without a byte limit.
    #[serde(default = "default_loop_unlimited_bytes")]
    pub loop_unlimited_bytes: u64,
    /// xfs: the project ids to allocate from.
    #[serde(default)]
    pub xfs_project_ids: ProjectIds,
}

impl DiskConfig {
    /// A config with the defaults for everything but the backend and root.
    pub fn new(kind: BackendKind, root: impl Into<PathBuf>) -> DiskConfig {
        DiskConfig {
            kind,
            root: root.into(),
            store_image: None,
            loop_unlimited_bytes: DEFAULT_LOOP_UNLIMITED_BYTES,
            xfs_project_ids: ProjectIds::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_minimal_config_with_lowercase_kind() {
        let config: DiskConfig = serde_json::from_str(
            r#"{"kind": "btrfs", "root": "/var/lib/garden/disk",
                "store_image": {"path": "/var/lib/garden/disk.img", "size": 1073741824}}"#,
        )
        .expect("valid config");
        assert_eq!(config.kind, BackendKind::Btrfs);
        assert_eq!(config.loop_unlimited_bytes, DEFAULT_LOOP_UNLIMITED_BYTES);
        assert_eq!(config.store_image.map(|i| i.size), Some(1 << 30));
    }

    #[test]
    fn rejects_unknown_kinds_and_fields() {
        assert!(serde_json::from_str::<DiskConfig>(r#"{"kind": "zfs", "root": "/x"}"#).is_err());
        assert!(
            serde_json::from_str::<DiskConfig>(r#"{"kind": "loop", "root": "/x", "sise": 1}"#)
                .is_err()
        );
    }
}
