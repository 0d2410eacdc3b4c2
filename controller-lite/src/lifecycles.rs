//! The staging lifecycles cells download into staging containers, as
//! Diego's file server hands them out: `buildpack.tgz` holds `builder`,
//! `docker.tgz` holds `docker-builder` (the `lifecycle` crate's
//! `lifecycle-builder` and `lifecycle-docker-builder`, static binaries that
//! run in any rootfs).
//!
//! The bundles are built at start from the binaries in the configured
//! directory into `<data_dir>/lifecycles/`, byte-for-byte reproducible (no
//! timestamps), so their SHA-256, and with it the cells' download cache
//! key, changes only when a binary does. A bundle whose binary has not
//! changed (size and modification time, kept beside it) is reused, so a
//! restart does not compress the binaries again. A missing binary is a warning, not
//! a startup failure: its staging tasks fail on the cell with the
//! download's 404, and the controller says why at start.

use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;

use crate::blobstore;

/// Why a bundle could not be built.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    /// Reading a binary or writing a bundle failed.
    #[error("lifecycle {what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// The lifecycles a controller serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Buildpack staging.
    Buildpack,
    /// Docker image staging.
    Docker,
}

impl Kind {
    /// Both kinds.
    pub const ALL: [Self; 2] = [Self::Buildpack, Self::Docker];

    /// Bundle name in URLs (`<name>.tgz`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Buildpack => "buildpack",
            Self::Docker => "docker",
        }
    }

    /// The binary in the lifecycle directory.
    pub fn binary(self) -> &'static str {
        match self {
            Self::Buildpack => "lifecycle-builder",
            Self::Docker => "lifecycle-docker-builder",
        }
    }

    /// Its name inside the bundle (`/tmp/lifecycle/<entry>` when staging).
    pub fn entry(self) -> &'static str {
        match self {
            Self::Buildpack => "builder",
            Self::Docker => "docker-builder",
        }
    }

    /// The kind a URL names.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|k| name == k.name() || name.strip_suffix(".tgz") == Some(k.name()))
    }
}

/// One built bundle.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// The tgz on disk.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// SHA-1 hex.
    pub sha1: String,
    /// SHA-256 hex.
    pub sha256: String,
}

/// What [`prepare`] found: a bundle per kind, or why there is none.
#[derive(Debug, Clone)]
pub struct Lifecycles {
    bundles: Vec<(Kind, Result<Bundle, String>)>,
}

impl Lifecycles {
    /// The bundle of `kind`, or the reason it is missing.
    pub fn get(&self, kind: Kind) -> Result<&Bundle, &str> {
        self.bundles
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(Err("not configured"), |(_, b)| {
                b.as_ref().map_err(|e| e.as_str())
            })
    }

    /// No bundles at all (controllers that never stage).
    pub fn none() -> Self {
        Self {
            bundles: Vec::new(),
        }
    }
}

/// Where lifecycle binaries are looked for without configuration: beside
/// the running executable, where `cargo build` and the install script put
/// every binary of the workspace.
pub fn default_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("/usr/local/bin"))
}

/// Builds the bundle of every kind whose binary is in `dir` into `out`.
pub fn prepare(dir: &Path, out: &Path) -> Result<Lifecycles, LifecycleError> {
    std::fs::create_dir_all(out).map_err(|source| LifecycleError::Io {
        what: "create",
        path: out.to_path_buf(),
        source,
    })?;
    let mut bundles = Vec::new();
    for kind in Kind::ALL {
        let binary = dir.join(kind.binary());
        if !binary.is_file() {
            let why = format!("{} is not installed", binary.display());
            tracing::warn!(lifecycle = kind.name(), %why, "staging with this lifecycle will fail");
            bundles.push((kind, Err(why)));
            continue;
        }
        let bundle = build(kind, &binary, out)?;
        tracing::info!(lifecycle = kind.name(), sha256 = %bundle.sha256, size = bundle.size, "lifecycle ready");
        bundles.push((kind, Ok(bundle)));
    }
    Ok(Lifecycles { bundles })
}

/// What a bundle was built from, and its digests: `<name>.source`.
#[derive(Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Source {
    binary_size: u64,
    binary_mtime_ns: i128,
    size: u64,
    sha1: String,
    sha256: String,
}

fn source_of(binary: &Path) -> std::io::Result<(u64, i128)> {
    let meta = std::fs::metadata(binary)?;
    let mtime = meta
        .modified()?
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i128::try_from(d.as_nanos()).unwrap_or(i128::MAX));
    Ok((meta.len(), mtime))
}

/// The bundle built earlier from this very binary, if it is still there.
fn reuse(kind: Kind, binary: &Path, out: &Path) -> Option<Bundle> {
    let path = out.join(format!("{}.tgz", kind.name()));
    let text = std::fs::read_to_string(out.join(format!("{}.source", kind.name()))).ok()?;
    let kept: Source = serde_json::from_str(&text).ok()?;
    let (binary_size, binary_mtime_ns) = source_of(binary).ok()?;
    let size = std::fs::metadata(&path).ok()?.len();
    (kept.binary_size == binary_size
        && kept.binary_mtime_ns == binary_mtime_ns
        && kept.size == size)
        .then_some(Bundle {
            path,
            size,
            sha1: kept.sha1,
            sha256: kept.sha256,
        })
}

fn build(kind: Kind, binary: &Path, out: &Path) -> Result<Bundle, LifecycleError> {
    if let Some(bundle) = reuse(kind, binary, out) {
        return Ok(bundle);
    }
    let io = |what, path: &Path| {
        let path = path.to_path_buf();
        move |source| LifecycleError::Io { what, path, source }
    };
    let path = out.join(format!("{}.tgz", kind.name()));
    let tmp = tempfile::NamedTempFile::new_in(out).map_err(io("create temp in", out))?;
    let mut src = File::open(binary).map_err(io("open", binary))?;
    let len = src.metadata().map_err(io("stat", binary))?.len();
    let mut header = tar::Header::new_gnu();
    header.set_size(len);
    header.set_mode(0o755);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header.set_entry_type(tar::EntryType::Regular);
    // Reproducible bytes: no gzip timestamp or file name either.
    let gz = GzEncoder::new(BufWriter::new(tmp.as_file()), flate2::Compression::fast());
    let mut archive = tar::Builder::new(gz);
    archive
        .append_data(&mut header, kind.entry(), &mut src)
        .map_err(io("pack", binary))?;
    let mut buf = archive
        .into_inner()
        .and_then(GzEncoder::finish)
        .map_err(io("write", tmp.path()))?;
    buf.flush().map_err(io("write", tmp.path()))?;
    drop(buf);
    tmp.as_file().sync_all().map_err(io("sync", tmp.path()))?;
    tmp.persist(&path).map_err(|e| LifecycleError::Io {
        what: "rename into",
        path: path.clone(),
        source: e.error,
    })?;
    let file = File::open(&path).map_err(io("open", &path))?;
    let (size, sha1, sha256) = blobstore::digest(file).map_err(io("read", &path))?;
    // Best effort: without it the next start builds the bundle again.
    if let Ok((binary_size, binary_mtime_ns)) = source_of(binary) {
        let source = Source {
            binary_size,
            binary_mtime_ns,
            size,
            sha1: sha1.clone(),
            sha256: sha256.clone(),
        };
        if let Ok(text) = serde_json::to_string(&source) {
            let _ = std::fs::write(out.join(format!("{}.source", kind.name())), text);
        }
    }
    Ok(Bundle {
        path,
        size,
        sha1,
        sha256,
    })
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    #[test]
    fn bundles_are_reproducible_and_hold_the_entry() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("lifecycle-builder"), b"#!/bin/sh\n").expect("bin");
        let out = dir.path().join("out");
        let first = prepare(dir.path(), &out).expect("prepare");
        let a = first.get(Kind::Buildpack).expect("buildpack").clone();
        assert!(first
            .get(Kind::Docker)
            .expect_err("no docker")
            .contains("lifecycle-docker-builder"));
        let again = prepare(dir.path(), &out).expect("prepare again");
        assert_eq!(
            again.get(Kind::Buildpack).expect("buildpack").sha256,
            a.sha256
        );
        let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(
            File::open(&a.path).expect("open"),
        ));
        let mut entries = tar.entries().expect("entries");
        let mut e = entries.next().expect("one entry").expect("entry");
        assert_eq!(e.path().expect("path").to_str(), Some("builder"));
        assert_eq!(e.header().mode().expect("mode"), 0o755);
        let mut body = String::new();
        e.read_to_string(&mut body).expect("read");
        assert_eq!(body, "#!/bin/sh\n");
        assert!(entries.next().is_none());
        // A changed binary is packed again, not reused.
        std::fs::write(dir.path().join("lifecycle-builder"), b"#!/bin/sh\n#2\n").expect("bin");
        let changed = prepare(dir.path(), &out).expect("prepare changed");
        assert_ne!(
            changed.get(Kind::Buildpack).expect("buildpack").sha256,
            a.sha256
        );
    }

    #[test]
    fn names_parse() {
        assert_eq!(Kind::from_name("buildpack.tgz"), Some(Kind::Buildpack));
        assert_eq!(Kind::from_name("docker"), Some(Kind::Docker));
        assert_eq!(Kind::from_name("../x"), None);
        assert_eq!(
            Lifecycles::none().get(Kind::Docker).err(),
            Some("not configured")
        );
    }
}
