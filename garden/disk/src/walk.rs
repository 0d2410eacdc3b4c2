//! Usage by walking a directory tree (du): for backends whose filesystem
//! does not count per volume.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Errors of walking a tree.
#[derive(Debug, thiserror::Error)]
#[error("cannot walk {path}")]
pub struct WalkError {
    /// The tree.
    pub path: PathBuf,
    /// The cause.
    #[source]
    pub source: walkdir::Error,
}

/// Allocated bytes and inodes under `dir` (itself included), on its
/// filesystem only, hard links counted once.
pub(crate) fn usage(dir: &Path) -> Result<(u64, u64), WalkError> {
    let mut bytes = 0u64;
    let mut inodes = 0u64;
    let mut linked = HashSet::new();
    for entry in walkdir::WalkDir::new(dir).same_file_system(true) {
        let meta = entry
            .and_then(|e| e.metadata())
            .map_err(|source| WalkError {
                path: dir.to_path_buf(),
                source,
            })?;
        if meta.nlink() > 1 && !meta.is_dir() && !linked.insert((meta.dev(), meta.ino())) {
            continue;
        }
        bytes = bytes.saturating_add(meta.blocks().saturating_mul(512));
        inodes += 1;
    }
    Ok((bytes, inodes))
}
