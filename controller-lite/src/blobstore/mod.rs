//! Where packages, droplets, buildpacks, buildpack caches and the resource
//! cache live. [`Blobstore`] is the interface (an S3-compatible store can
//! implement it: `put_file` uploads, `fetch` downloads to a local file and
//! verifies it); [`FsBlobstore`] is the filesystem default.
//!
//! Blobs are content-addressed by SHA-256 (the resource cache by SHA-1, as
//! Cloud Foundry's resource matching asks for SHA-1). Every read verifies
//! size, SHA-1 and SHA-256, so a damaged blob is reported, never served.

mod fs;

use std::io::Read;
use std::path::{Path, PathBuf};

use sha1::Digest as _;

pub use fs::FsBlobstore;

use crate::db::StoredBlob;

/// Errors from the blobstore.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// A filesystem operation failed.
    #[error("blobstore {op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The blob is not in the store.
    #[error("{kind} blob {key} is missing from the blobstore")]
    Missing {
        /// Blob kind.
        kind: &'static str,
        /// Its key.
        key: String,
    },
    /// The stored bytes no longer match their checksums.
    #[error("{kind} blob {key} is corrupt: {what} mismatch (expected {expected}, found {found})")]
    Corrupt {
        /// Blob kind.
        kind: &'static str,
        /// Its key.
        key: String,
        /// `size`, `sha1` or `sha256`.
        what: &'static str,
        /// Recorded value.
        expected: String,
        /// Value of the stored bytes.
        found: String,
    },
    /// A resource offered for the cache did not match its SHA-1.
    #[error("resource {expected} does not match its sha1 (content has {found})")]
    ResourceMismatch {
        /// Claimed SHA-1.
        expected: String,
        /// Actual SHA-1.
        found: String,
    },
    /// A key that is not a hex digest.
    #[error("invalid blob key {0:?}")]
    InvalidKey(String),
}

/// What a blob is; each kind has its own namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobKind {
    /// App bits (zip).
    Package,
    /// Staged droplet (tgz).
    Droplet,
    /// Admin buildpack (zip).
    Buildpack,
    /// Buildpack cache of an app and stack (tgz).
    BuildpackCache,
}

impl BlobKind {
    /// Every kind.
    pub const ALL: [Self; 4] = [
        Self::Package,
        Self::Droplet,
        Self::Buildpack,
        Self::BuildpackCache,
    ];

    /// Directory (or bucket prefix) name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Package => "packages",
            Self::Droplet => "droplets",
            Self::Buildpack => "buildpacks",
            Self::BuildpackCache => "buildpack_cache",
        }
    }
}

/// The blobstore interface.
pub trait Blobstore: Send + Sync {
    /// A fresh temporary file inside the store, for building a blob before
    /// [`Blobstore::put_file`].
    fn temp_file(&self) -> Result<tempfile::NamedTempFile, BlobError>;

    /// Stores the contents of `src` atomically under its SHA-256 and returns
    /// its checksums. `src` is left in place.
    fn put_file(&self, kind: BlobKind, src: &Path) -> Result<StoredBlob, BlobError>;

    /// Like [`Blobstore::put_file`] for a temp file from
    /// [`Blobstore::temp_file`], which is consumed (a local store renames it
    /// instead of copying).
    fn put_temp(
        &self,
        kind: BlobKind,
        tmp: tempfile::NamedTempFile,
    ) -> Result<StoredBlob, BlobError> {
        self.put_file(kind, tmp.path())
    }

    /// A local, verified copy (size, SHA-1, SHA-256) positioned at the start.
    fn fetch(&self, kind: BlobKind, blob: &StoredBlob) -> Result<std::fs::File, BlobError>;

    /// Removes a blob (absent is fine).
    fn delete(&self, kind: BlobKind, sha256: &str) -> Result<(), BlobError>;

    /// The SHA-256 keys of every blob of a kind.
    fn keys(&self, kind: BlobKind) -> Result<Vec<String>, BlobError>;

    /// Whether the resource cache holds a file with this SHA-1.
    fn has_resource(&self, sha1: &str) -> bool;

    /// Adds a file to the resource cache after checking its SHA-1.
    fn put_resource(&self, sha1: &str, src: &Path) -> Result<(), BlobError>;

    /// Like [`Blobstore::put_resource`] for a temp file, which is consumed.
    fn put_resource_temp(&self, sha1: &str, tmp: tempfile::NamedTempFile) -> Result<(), BlobError> {
        self.put_resource(sha1, tmp.path())
    }

    /// A resource cache file whose SHA-1 was re-checked, positioned at the start.
    fn fetch_resource(&self, sha1: &str) -> Result<std::fs::File, BlobError>;
}

/// Size, SHA-1 and SHA-256 of everything `reader` yields.
pub fn digest(mut reader: impl Read) -> std::io::Result<(u64, String, String)> {
    let mut sha1 = sha1::Sha1::new();
    let mut sha256 = sha2::Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        sha1.update(&buf[..n]);
        sha256.update(&buf[..n]);
        size += n as u64;
    }
    Ok((
        size,
        hex::encode(sha1.finalize()),
        hex::encode(sha256.finalize()),
    ))
}

/// Whether `key` is a lowercase hex digest of `len` characters.
pub fn is_hex_digest(key: &str, len: usize) -> bool {
    key.len() == len
        && key
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}
