//! Resource matching and package assembly (REFERENCE §5): the CLI sends the
//! SHA-1, size and mode of every file; we answer which ones the resource
//! cache holds; the upload then carries a zip of the rest plus the list of
//! matched files, and we build the package zip from both, re-checking each
//! cached file's SHA-1. Zip entries that leave the app directory (`..`,
//! absolute paths, symlinks pointing out) are refused, and sizes and entry
//! counts are bounded.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha1::Digest as _;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipArchive, ZipWriter};

use crate::blobstore::{is_hex_digest, BlobError, Blobstore};

/// Files at least this large are never matched or cached.
pub const MAX_MATCHABLE_SIZE: u64 = 512 * 1024 * 1024;
/// Most entries in one resource-match request.
pub const MAX_MATCH_ENTRIES: usize = 5000;

/// Errors from matching and assembly.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    /// The uploaded file is not a readable zip.
    #[error("the uploaded bits are not a valid zip: {0}")]
    BadZip(String),
    /// A path leaves the app directory.
    #[error("zip entry {0:?} points outside the app directory")]
    UnsafePath(String),
    /// A symlink points outside the app directory.
    #[error("symlink {path:?} points outside the app directory ({target:?})")]
    UnsafeSymlink {
        /// The link.
        path: String,
        /// Where it points.
        target: String,
    },
    /// Too many entries.
    #[error("the package has more than {0} entries")]
    TooManyEntries(usize),
    /// The files together are too large.
    #[error("the package's files exceed {0} bytes uncompressed")]
    TooLarge(u64),
    /// A matched resource is not (or no longer correctly) in the cache.
    #[error("cached file {path:?} (sha1 {sha1}) is missing or no longer matches its sha1; push again to upload it")]
    CachedFileInvalid {
        /// Path in the app.
        path: String,
        /// Its SHA-1.
        sha1: String,
    },
    /// A resource entry is malformed.
    #[error("invalid resource {0}")]
    InvalidResource(String),
    /// The blobstore failed.
    #[error(transparent)]
    Blob(#[from] BlobError),
    /// Local I/O failed.
    #[error("assembling the package: {0}")]
    Io(#[from] io::Error),
}

impl From<zip::result::ZipError> for PackageError {
    fn from(e: zip::result::ZipError) -> Self {
        match e {
            zip::result::ZipError::Io(io) => Self::Io(io),
            other => Self::BadZip(other.to_string()),
        }
    }
}

/// A checksum as the CLI sends it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Checksum {
    /// SHA-1 hex.
    pub value: String,
}

/// One file in a resource match or upload. Both the v3 shape
/// (`checksum.value`, `size_in_bytes`, `path`) and the older v2 shape the
/// CLI can also send (`sha1`, `size`, `fn`) are accepted.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(from = "WireResource")]
pub struct Resource {
    /// SHA-1 of the content.
    pub checksum: Checksum,
    /// Size in bytes.
    pub size_in_bytes: u64,
    /// Path inside the app (absent in resource match requests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Octal permission bits as a string, e.g. `"644"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
}

#[derive(Deserialize)]
struct WireResource {
    checksum: Option<Checksum>,
    sha1: Option<String>,
    #[serde(alias = "size")]
    size_in_bytes: Option<u64>,
    #[serde(alias = "fn")]
    path: Option<String>,
    mode: Option<String>,
}

impl From<WireResource> for Resource {
    fn from(w: WireResource) -> Self {
        Self {
            checksum: w.checksum.unwrap_or(Checksum {
                value: w.sha1.unwrap_or_default(),
            }),
            size_in_bytes: w.size_in_bytes.unwrap_or(0),
            path: w.path,
            mode: w.mode,
        }
    }
}

/// Limits for one package.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Total uncompressed bytes.
    pub max_unzipped_bytes: u64,
    /// Entries (uploaded plus matched).
    pub max_entries: usize,
}

fn parse_mode(mode: Option<&str>) -> Option<u32> {
    mode.map_or(Some(0o644), |m| u32::from_str_radix(m, 8).ok())
}

/// Whether a file may be matched or cached: 0 < size < 512 MiB, owner rw.
pub fn is_matchable(size: u64, mode: u32) -> bool {
    size > 0 && size < MAX_MATCHABLE_SIZE && mode & 0o600 == 0o600
}

/// The subset of `resources` the cache holds.
pub fn match_resources(blobs: &dyn Blobstore, resources: &[Resource]) -> Vec<Resource> {
    resources
        .iter()
        .filter(|r| {
            let mode = parse_mode(r.mode.as_deref()).unwrap_or(0);
            is_matchable(r.size_in_bytes, mode)
                && is_hex_digest(&r.checksum.value, 40)
                && blobs.has_resource(&r.checksum.value)
        })
        .map(|r| Resource {
            // The CLI parses `mode` of every answer as octal.
            mode: Some(r.mode.clone().unwrap_or_else(|| "644".into())),
            ..r.clone()
        })
        .collect()
}

/// A relative path that stays inside the app directory, normalised.
pub fn safe_path(name: &str) -> Option<String> {
    if name.starts_with('/') || name.contains('\0') || name.contains('\\') {
        return None;
    }
    let mut parts = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => return None,
            p => parts.push(p),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// Whether a symlink at `link` pointing to `target` stays inside the app.
fn symlink_stays_inside(link: &str, target: &str) -> bool {
    if target.starts_with('/') || target.is_empty() {
        return false;
    }
    let mut depth: i64 = link.split('/').count() as i64 - 1;
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            _ => depth += 1,
        }
    }
    true
}

struct Assembly<'a, W: Write + Seek> {
    out: ZipWriter<W>,
    seen: HashSet<String>,
    total: u64,
    limits: Limits,
    blobs: &'a dyn Blobstore,
}

impl<W: Write + Seek> Assembly<'_, W> {
    fn count(&mut self, path: &str) -> Result<bool, PackageError> {
        if !self.seen.insert(path.to_owned()) {
            return Ok(false);
        }
        if self.seen.len() > self.limits.max_entries {
            return Err(PackageError::TooManyEntries(self.limits.max_entries));
        }
        Ok(true)
    }

    /// Copies `reader` into the zip as `path`, bounding the total size;
    /// returns the SHA-1 and size of what was written.
    fn add_file(
        &mut self,
        path: &str,
        mode: u32,
        reader: &mut dyn Read,
    ) -> Result<(String, u64), PackageError> {
        let opts = SimpleFileOptions::default()
            .compression_method(CompressionMethod::Deflated)
            // Fastest deflate level: packages are read once by staging, and
            // app bits are often already compressed (jars, images).
            .compression_level(Some(1))
            .unix_permissions(mode & 0o777)
            .large_file(true);
        self.out.start_file(path, opts)?;
        let mut sha1 = sha1::Sha1::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut size = 0u64;
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                break;
            }
            size += n as u64;
            self.total += n as u64;
            if self.total > self.limits.max_unzipped_bytes {
                return Err(PackageError::TooLarge(self.limits.max_unzipped_bytes));
            }
            sha1.update(&buf[..n]);
            self.out.write_all(&buf[..n])?;
        }
        Ok((hex::encode(sha1.finalize()), size))
    }

    fn add_uploaded(&mut self, zip_path: &Path) -> Result<(), PackageError> {
        let mut archive = ZipArchive::new(File::open(zip_path)?)?;
        if archive.len() > self.limits.max_entries {
            return Err(PackageError::TooManyEntries(self.limits.max_entries));
        }
        for i in 0..archive.len() {
            let mut entry = archive.by_index(i)?;
            let raw = entry.name()?.into_owned();
            let path = safe_path(&raw).ok_or_else(|| PackageError::UnsafePath(raw.clone()))?;
            if !self.count(&path)? {
                continue;
            }
            if entry.is_dir() {
                self.out
                    .add_directory(&path, SimpleFileOptions::default())?;
            } else if entry.is_symlink() {
                let mut target = String::new();
                entry.by_ref().take(4096).read_to_string(&mut target)?;
                if !symlink_stays_inside(&path, &target) {
                    return Err(PackageError::UnsafeSymlink { path, target });
                }
                self.out
                    .add_symlink(&path, &target, SimpleFileOptions::default())?;
            } else {
                let mode = entry.unix_mode().unwrap_or(0o644);
                self.add_and_cache(&path, mode, &mut entry)?;
            }
        }
        Ok(())
    }

    /// Adds an uploaded file and offers it to the resource cache.
    fn add_and_cache(
        &mut self,
        path: &str,
        mode: u32,
        reader: &mut dyn Read,
    ) -> Result<(), PackageError> {
        let mut copy = self.blobs.temp_file()?;
        let mut tee = TeeReader {
            inner: reader,
            copy: copy.as_file_mut(),
        };
        let (sha1, size) = self.add_file(path, mode, &mut tee)?;
        if is_matchable(size, mode) && !self.blobs.has_resource(&sha1) {
            copy.as_file_mut().flush()?;
            self.blobs.put_resource_temp(&sha1, copy)?;
        }
        Ok(())
    }

    fn add_matched(&mut self, resources: &[Resource]) -> Result<(), PackageError> {
        for r in resources {
            let raw = r
                .path
                .as_deref()
                .ok_or_else(|| PackageError::InvalidResource("without a path".into()))?;
            let path = safe_path(raw).ok_or_else(|| PackageError::UnsafePath(raw.to_owned()))?;
            let mode = parse_mode(r.mode.as_deref()).ok_or_else(|| {
                PackageError::InvalidResource(format!("{raw:?}: mode {:?}", r.mode))
            })?;
            let sha1 = r.checksum.value.as_str();
            let invalid = || PackageError::CachedFileInvalid {
                path: path.clone(),
                sha1: sha1.to_owned(),
            };
            if !is_hex_digest(sha1, 40) {
                return Err(invalid());
            }
            if !self.count(&path)? {
                continue;
            }
            let mut file = match self.blobs.fetch_resource(sha1) {
                Ok(f) => f,
                Err(BlobError::Missing { .. } | BlobError::Corrupt { .. }) => return Err(invalid()),
                Err(e) => return Err(e.into()),
            };
            let (found, _) = self.add_file(&path, mode, &mut file)?;
            if found != sha1 {
                return Err(invalid());
            }
        }
        Ok(())
    }
}

struct TeeReader<'a> {
    inner: &'a mut dyn Read,
    copy: &'a mut File,
}

impl Read for TeeReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.copy.write_all(&buf[..n])?;
        Ok(n)
    }
}

/// Builds the package zip from the uploaded zip (if any) and the matched
/// cached files; returns the finished zip as a temp file in the blobstore.
pub fn assemble(
    blobs: &dyn Blobstore,
    uploaded: Option<&Path>,
    matched: &[Resource],
    limits: Limits,
) -> Result<tempfile::NamedTempFile, PackageError> {
    let out = blobs.temp_file()?;
    let mut asm = Assembly {
        out: ZipWriter::new(out.reopen()?),
        seen: HashSet::new(),
        total: 0,
        limits,
        blobs,
    };
    if let Some(zip) = uploaded {
        asm.add_uploaded(zip)?;
    }
    asm.add_matched(matched)?;
    let file = asm.out.finish()?;
    file.sync_all()?;
    Ok(out)
}

/// Checks that a buildpack zip is readable and every entry stays inside.
pub fn validate_zip(path: &Path, limits: Limits) -> Result<(), PackageError> {
    let mut archive = ZipArchive::new(File::open(path)?)?;
    if archive.len() > limits.max_entries {
        return Err(PackageError::TooManyEntries(limits.max_entries));
    }
    let mut total = 0u64;
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i)?;
        let raw = entry.name()?.into_owned();
        let path = safe_path(&raw).ok_or_else(|| PackageError::UnsafePath(raw.clone()))?;
        if entry.is_symlink() {
            let mut target = String::new();
            entry.by_ref().take(4096).read_to_string(&mut target)?;
            if !symlink_stays_inside(&path, &target) {
                return Err(PackageError::UnsafeSymlink { path, target });
            }
        }
        total = total.saturating_add(entry.size());
        if total > limits.max_unzipped_bytes {
            return Err(PackageError::TooLarge(limits.max_unzipped_bytes));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_leave_are_refused() {
        assert_eq!(safe_path("a/./b/"), Some("a/b".into()));
        assert_eq!(safe_path("../x"), None);
        assert_eq!(safe_path("a/../../x"), None);
        assert_eq!(safe_path("a/../b"), None, "any .. is refused");
        assert_eq!(safe_path("/etc/passwd"), None);
        assert_eq!(safe_path("a\\..\\b"), None);
    }

    #[test]
    fn symlinks_must_stay_inside() {
        assert!(symlink_stays_inside("a/link", "../b"));
        assert!(symlink_stays_inside("link", "b/c"));
        assert!(!symlink_stays_inside("link", "../b"));
        assert!(!symlink_stays_inside("a/link", "/etc/passwd"));
        assert!(!symlink_stays_inside("a/link", "x/../../../b"));
    }

    #[test]
    fn resources_parse_in_v3_and_v2_shapes() {
        let v3: Resource = serde_json::from_str(
            r#"{"checksum":{"value":"ab"},"size_in_bytes":3,"path":"a","mode":"755"}"#,
        )
        .expect("v3");
        let v2: Resource =
            serde_json::from_str(r#"{"sha1":"ab","size":3,"fn":"a","mode":"755"}"#).expect("v2");
        for r in [v3, v2] {
            assert_eq!(
                (
                    r.checksum.value.as_str(),
                    r.size_in_bytes,
                    r.path.as_deref()
                ),
                ("ab", 3, Some("a"))
            );
        }
    }

    #[test]
    fn matchability_follows_the_cli_rules() {
        assert!(is_matchable(1, 0o644));
        assert!(!is_matchable(0, 0o644));
        assert!(!is_matchable(MAX_MATCHABLE_SIZE, 0o644));
        assert!(!is_matchable(10, 0o444));
    }
}
