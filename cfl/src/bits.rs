//! The app's files: `.cfignore` and CF's default exclusions, SHA-1 per file
//! for resource matching, and the zip of the files the server lacks.

use std::collections::HashSet;
use std::fs;
use std::io::{Cursor, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use ignore::gitignore::{Gitignore, GitignoreBuilder};
use serde_json::{json, Value};
use sha1::Digest as _;

/// What the cf CLI always leaves out of a push (besides `.cfignore` rules).
pub const DEFAULT_IGNORES: &[&str] = &[
    ".cfignore",
    "/manifest.yml",
    ".gitignore",
    ".git",
    ".hg",
    ".svn",
    "_darcs",
    ".DS_Store",
];

/// Errors gathering or zipping app files.
#[derive(Debug, thiserror::Error)]
pub enum BitsError {
    /// The app path is not a directory.
    #[error("app path {0} is not a directory")]
    NotADirectory(PathBuf),
    /// A bad `.cfignore` pattern.
    #[error("{path}: {source}")]
    Ignore {
        /// The ignore file.
        path: PathBuf,
        /// The cause.
        source: ignore::Error,
    },
    /// Walking or reading a file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Walking the tree.
    #[error("walking the app directory: {0}")]
    Walk(#[from] walkdir::Error),
    /// Writing the zip.
    #[error("zipping {path}: {source}")]
    Zip {
        /// The entry.
        path: String,
        /// The cause.
        source: zip::result::ZipError,
    },
}

/// One file of the app.
#[derive(Debug, Clone)]
pub struct AppFile {
    /// Path inside the app, `/`-separated.
    pub rel: String,
    /// Path on disk.
    pub abs: PathBuf,
    /// Hex SHA-1 of the contents.
    pub sha1: String,
    /// Size in bytes.
    pub size: u64,
    /// Unix permission bits.
    pub mode: u32,
}

impl AppFile {
    /// The v3 resource JSON (`checksum.value`, `size_in_bytes`, `path`, `mode`).
    pub fn resource(&self) -> Value {
        json!({"checksum": {"value": self.sha1}, "size_in_bytes": self.size, "path": self.rel, "mode": format!("{:o}", self.mode & 0o777)})
    }
}

fn matcher(root: &Path) -> Result<Gitignore, BitsError> {
    let mut b = GitignoreBuilder::new(root);
    let ign = |source, path: &Path| BitsError::Ignore {
        path: path.to_owned(),
        source,
    };
    for line in DEFAULT_IGNORES {
        b.add_line(None, line).map_err(|e| ign(e, root))?;
    }
    let cfignore = root.join(".cfignore");
    if cfignore.is_file() {
        if let Some(e) = b.add(&cfignore) {
            return Err(ign(e, &cfignore));
        }
    }
    b.build().map_err(|e| ign(e, root))
}

/// The files of the app at `root` that `.cfignore` and the defaults keep,
/// sorted by path. Symlinks are followed into files; empty dirs are skipped.
pub fn collect(root: &Path) -> Result<Vec<AppFile>, BitsError> {
    if !root.is_dir() {
        return Err(BitsError::NotADirectory(root.to_owned()));
    }
    let ignore = matcher(root)?;
    let walker = walkdir::WalkDir::new(root)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| {
            e.depth() == 0
                || !ignore
                    .matched_path_or_any_parents(e.path(), e.file_type().is_dir())
                    .is_ignore()
        });
    let mut files = Vec::new();
    for entry in walker {
        let entry = entry?;
        if !entry.file_type().is_file() {
            continue;
        }
        let io = |source| BitsError::Io {
            path: entry.path().to_owned(),
            source,
        };
        let data = fs::read(entry.path()).map_err(io)?;
        let meta = entry.metadata()?;
        let rel = entry
            .path()
            .strip_prefix(root)
            .unwrap_or(entry.path())
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/");
        files.push(AppFile {
            rel,
            abs: entry.path().to_owned(),
            sha1: hex::encode(sha1::Sha1::digest(&data)),
            size: data.len() as u64,
            mode: meta.permissions().mode(),
        });
    }
    Ok(files)
}

/// The files whose `(path, sha1)` the server did not match, zipped with
/// their modes. Returns the zip and the number of files in it.
pub fn zip_unmatched(
    files: &[AppFile],
    matched: &HashSet<(String, String)>,
) -> Result<(Vec<u8>, usize), BitsError> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let mut count = 0;
    for f in files {
        if matched.contains(&(f.rel.clone(), f.sha1.clone())) {
            continue;
        }
        let zerr = |source| BitsError::Zip {
            path: f.rel.clone(),
            source,
        };
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(f.mode & 0o777)
            .large_file(f.size >= u32::MAX as u64);
        w.start_file(f.rel.as_str(), opts).map_err(zerr)?;
        let data = fs::read(&f.abs).map_err(|source| BitsError::Io {
            path: f.abs.clone(),
            source,
        })?;
        w.write_all(&data).map_err(|source| BitsError::Io {
            path: f.abs.clone(),
            source,
        })?;
        count += 1;
    }
    let out = w.finish().map_err(|source| BitsError::Zip {
        path: String::new(),
        source,
    })?;
    Ok((out.into_inner(), count))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cfignore_and_defaults_are_honoured() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let root = dir.path();
        fs::create_dir_all(root.join("logs"))?;
        fs::create_dir_all(root.join(".git"))?;
        fs::create_dir_all(root.join("lib"))?;
        fs::write(root.join(".cfignore"), "logs/\n*.tmp\n")?;
        fs::write(root.join("manifest.yml"), "applications: []\n")?;
        fs::write(root.join("lib/manifest.yml"), "kept\n")?;
        fs::write(root.join("logs/a.log"), "x")?;
        fs::write(root.join(".git/HEAD"), "x")?;
        fs::write(root.join("scratch.tmp"), "x")?;
        fs::write(root.join("app.sh"), "echo hi")?;
        let names: Vec<String> = collect(root)?.into_iter().map(|f| f.rel).collect();
        assert_eq!(names, ["app.sh", "lib/manifest.yml"]);
        Ok(())
    }
}
