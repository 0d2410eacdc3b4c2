//! Unpacking one layer tarball into an empty directory, safely.
//!
//! - Paths are cleaned first: absolute paths and `..` are refused.
//! - Every entry is created through descriptors resolved beneath the layer
//!   root (`beneath.rs`): a symlink in the archive can never make a later
//!   entry, or a hard link's target, land outside the layer.
//! - OCI whiteouts become overlayfs ones: `.wh.NAME` a character device
//!   0/0 named NAME, `.wh..wh..opq` the opaque xattr on its directory
//!   (`trusted.overlay.opaque`, and `user.overlay.opaque` for overlays
//!   mounted inside a user namespace with `userxattr`).
//! - Ownership goes through the [`IdMapping`]; modes, xattrs and mtimes are
//!   kept. Device nodes follow the [`DevicePolicy`].

mod beneath;
mod decompress;
mod entry;

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::{Algorithm, Digest, HashingReader};
use crate::mapping::{DevicePolicy, IdMapping};

pub use beneath::ImplicitDir;
pub(crate) use entry::shift_file_caps;

#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error("reading the layer archive: {0}")]
    Archive(#[source] std::io::Error),
    #[error("layer entry {path:?}: absolute paths are not allowed")]
    Absolute { path: String },
    #[error("layer entry {path:?}: `..` is not allowed")]
    Traversal { path: String },
    #[error("layer entry {path:?}: resolves through a symlink that leads outside the layer")]
    Escapes { path: String },
    #[error("layer entry {path:?}: a parent is not a directory")]
    NotDirectory { path: String },
    #[error("layer entry {path:?}: hard link target {target:?} is not in this layer")]
    MissingLinkTarget { path: String, target: String },
    #[error("layer entry {path:?}: device nodes are not allowed for unprivileged containers")]
    DeviceRefused { path: String },
    #[error("layer entry {path:?}: would replace a directory with a non-directory")]
    ReplacesDirectory { path: String },
    #[error("layer entry {path:?}: {action}: {source}")]
    Io {
        path: String,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("layer content does not match the image's diff id: expected {expected}, got {actual}")]
    DiffIdMismatch { expected: Digest, actual: Digest },
}

/// How much a layer holds: apparent bytes of its files and its inodes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerStats {
    pub bytes: u64,
    pub inodes: u64,
}

impl std::ops::AddAssign for LayerStats {
    fn add_assign(&mut self, o: LayerStats) {
        self.bytes += o.bytes;
        self.inodes += o.inodes;
    }
}

/// Unpacks a (possibly gzip- or zstd-compressed) layer tarball into the
/// empty directory `dest`. With `diff_id`, the uncompressed archive must
/// have that digest.
pub fn unpack(
    blob: impl Read,
    dest: &Path,
    mapping: IdMapping,
    devices: DevicePolicy,
    diff_id: Option<&Digest>,
) -> Result<LayerStats, ExtractError> {
    let algorithm = diff_id.map_or(Algorithm::Sha256, Digest::algorithm);
    let tar_stream = decompress::open(blob).map_err(ExtractError::Archive)?;
    let mut hashed = HashingReader::new(tar_stream, algorithm);
    let stats = unpack_tar(&mut hashed, dest, mapping, devices)?;
    let (actual, _) = hashed.finish().map_err(ExtractError::Archive)?;
    if let Some(expected) = diff_id {
        if *expected != actual {
            return Err(ExtractError::DiffIdMismatch {
                expected: expected.clone(),
                actual,
            });
        }
    }
    Ok(stats)
}

fn unpack_tar(
    reader: impl Read,
    dest: &Path,
    mapping: IdMapping,
    devices: DevicePolicy,
) -> Result<LayerStats, ExtractError> {
    let root = beneath::Root::open(dest).map_err(|source| ExtractError::Io {
        path: dest.display().to_string(),
        action: "opening the layer directory",
        source,
    })?;
    // The layer's root belongs to the image's root until an entry says
    // otherwise.
    let root_fd = root.open_dir(&[]).map_err(|_| ExtractError::Io {
        path: dest.display().to_string(),
        action: "opening the layer directory",
        source: std::io::ErrorKind::NotFound.into(),
    })?;
    beneath::set_owner_mode_fd(&root_fd, mapping.uid(0), mapping.gid(0), 0o755).map_err(
        |source| ExtractError::Io {
            path: dest.display().to_string(),
            action: "setting the layer root's owner",
            source,
        },
    )?;
    let mut unpacker = entry::Unpacker::new(root, mapping, devices);
    let mut archive = tar::Archive::new(reader);
    for e in archive.entries().map_err(ExtractError::Archive)? {
        let e = e.map_err(ExtractError::Archive)?;
        unpacker.entry(e)?;
    }
    unpacker.finish()
}

/// Cleans an archive path into components: `./` and empty components
/// dropped; absolute paths and `..` refused.
pub(crate) fn clean_path(raw: &[u8]) -> Result<Vec<&std::ffi::OsStr>, ExtractError> {
    use std::os::unix::ffi::OsStrExt;
    let shown = || String::from_utf8_lossy(raw).into_owned();
    if raw.starts_with(b"/") {
        return Err(ExtractError::Absolute { path: shown() });
    }
    let mut out = Vec::new();
    for c in raw.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err(ExtractError::Traversal { path: shown() }),
            c => out.push(std::ffi::OsStr::from_bytes(c)),
        }
    }
    Ok(out)
}

/// The apparent size and inode count of a directory tree (hard links
/// counted once), for a rootfs directory used as it is.
pub fn measure(dir: &Path) -> std::io::Result<LayerStats> {
    use std::collections::HashSet;
    use std::os::unix::fs::MetadataExt;
    let mut seen = HashSet::new();
    let mut stats = LayerStats::default();
    let mut stack: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let e = e?;
            let md = e.metadata()?;
            if md.nlink() > 1 && !md.is_dir() && !seen.insert((md.dev(), md.ino())) {
                continue;
            }
            stats.inodes += 1;
            if md.is_file() {
                stats.bytes += md.len();
            }
            if md.is_dir() {
                stack.push(e.path());
            }
        }
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_paths() {
        let c = |s: &str| {
            clean_path(s.as_bytes()).map(|v| {
                v.iter()
                    .map(|x| x.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(c("./a//b/./c").expect("ok"), ["a", "b", "c"]);
        assert!(c("./").expect("ok").is_empty());
        assert!(matches!(c("/etc/x"), Err(ExtractError::Absolute { .. })));
        assert!(matches!(
            c("a/../../x"),
            Err(ExtractError::Traversal { .. })
        ));
        assert!(matches!(c(".."), Err(ExtractError::Traversal { .. })));
    }
}
