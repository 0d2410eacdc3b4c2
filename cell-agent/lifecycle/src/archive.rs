//! Gzipped tarballs of directory trees, and files written atomically (a
//! temporary file in the same directory, renamed into place).
//!
//! Modes, owners and times are kept; symlinks are stored as symlinks and
//! never followed, so nothing outside the trees ends up in an archive.
//! Sockets, FIFOs and devices are skipped.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use tempfile::NamedTempFile;

/// Why an archive or output file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// Reading a tree that goes into the archive.
    #[error("reading {}: {source}", path.display())]
    Read {
        /// What was read.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Writing the output.
    #[error("writing {}: {source}", path.display())]
    Write {
        /// The output file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// A file being written next to its final path; [`Output::commit`] renames
/// it into place, dropping it without commit removes it.
struct Output {
    tmp: NamedTempFile,
    path: PathBuf,
}

impl Output {
    fn create(path: &Path) -> Result<Output, ArchiveError> {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let write = |source| ArchiveError::Write {
            path: path.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(write)?;
        let tmp = tempfile::Builder::new()
            .prefix(".lifecycle-")
            .tempfile_in(dir)
            .map_err(write)?;
        Ok(Output {
            tmp,
            path: path.to_path_buf(),
        })
    }

    fn commit(self) -> Result<(), ArchiveError> {
        let write = |source| ArchiveError::Write {
            path: self.path.clone(),
            source,
        };
        let file = self.tmp.as_file();
        file.set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(write)?;
        file.sync_all().map_err(write)?;
        self.tmp
            .persist(&self.path)
            .map_err(|e| ArchiveError::Write {
                path: self.path.clone(),
                source: e.error,
            })?;
        Ok(())
    }
}

/// Writes `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ArchiveError> {
    let mut out = Output::create(path)?;
    out.tmp
        .write_all(bytes)
        .map_err(|source| ArchiveError::Write {
            path: path.to_path_buf(),
            source,
        })?;
    out.commit()
}

/// A gzipped tarball being written; appear at its path on
/// [`Tgz::finish`].
pub struct Tgz {
    tar: tar::Builder<GzEncoder<File>>,
    out: Output,
    /// Our uid and gid, the owner of the entries we make up (a droplet's
    /// `tmp/` must belong to the app's user, not to root).
    owner: (u64, u64),
}

impl Tgz {
    /// Starts a tarball that will be at `path`.
    pub fn create(path: &Path) -> Result<Tgz, ArchiveError> {
        let out = Output::create(path)?;
        let file = out
            .tmp
            .as_file()
            .try_clone()
            .map_err(|source| ArchiveError::Write {
                path: path.to_path_buf(),
                source,
            })?;
        let meta = file.metadata().map_err(|source| ArchiveError::Write {
            path: path.to_path_buf(),
            source,
        })?;
        let owner = (u64::from(meta.uid()), u64::from(meta.gid()));
        let mut tar = tar::Builder::new(GzEncoder::new(file, flate2::Compression::default()));
        tar.mode(tar::HeaderMode::Complete);
        tar.follow_symlinks(false);
        Ok(Tgz { tar, out, owner })
    }

    fn write_err(&self, source: std::io::Error) -> ArchiveError {
        ArchiveError::Write {
            path: self.out.path.clone(),
            source,
        }
    }

    fn made_up(&self, kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(now());
        h.set_uid(self.owner.0);
        h.set_gid(self.owner.1);
        h
    }

    /// An empty directory entry `name` (mode 0755), owned by us.
    pub fn add_dir(&mut self, name: &str) -> Result<(), ArchiveError> {
        let mut h = self.made_up(tar::EntryType::Directory, 0o755, 0);
        self.tar
            .append_data(&mut h, name, std::io::empty())
            .map_err(|e| self.write_err(e))
    }

    /// A regular file `name` holding `bytes`, owned by us.
    pub fn add_bytes(&mut self, name: &str, bytes: &[u8], mode: u32) -> Result<(), ArchiveError> {
        let mut h = self.made_up(tar::EntryType::Regular, mode, bytes.len() as u64);
        self.tar
            .append_data(&mut h, name, bytes)
            .map_err(|e| self.write_err(e))
    }

    /// The tree at `dir` under the name `prefix` (`.` for the archive's
    /// root): `prefix/` itself, then everything below it in name order.
    pub fn add_tree(&mut self, prefix: &str, dir: &Path) -> Result<(), ArchiveError> {
        for entry in walkdir::WalkDir::new(dir)
            .follow_links(false)
            .sort_by_file_name()
        {
            let entry = entry.map_err(|e| {
                let path = e.path().unwrap_or(dir).to_path_buf();
                ArchiveError::Read {
                    path,
                    source: e.into(),
                }
            })?;
            let rel = entry.path().strip_prefix(dir).unwrap_or(entry.path());
            let name = Path::new(prefix).join(rel);
            self.add_entry(entry.path(), &name)?;
        }
        Ok(())
    }

    fn add_entry(&mut self, path: &Path, name: &Path) -> Result<(), ArchiveError> {
        let read = |source| ArchiveError::Read {
            path: path.to_path_buf(),
            source,
        };
        let meta = std::fs::symlink_metadata(path).map_err(read)?;
        let kind = meta.file_type();
        let mut h = tar::Header::new_gnu();
        h.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
        if kind.is_symlink() {
            let target = std::fs::read_link(path).map_err(read)?;
            h.set_size(0);
            self.tar
                .append_link(&mut h, name, target)
                .map_err(|e| self.write_err(e))
        } else if kind.is_dir() {
            h.set_size(0);
            self.tar
                .append_data(&mut h, name, std::io::empty())
                .map_err(|e| self.write_err(e))
        } else if kind.is_file() {
            let file = File::open(path).map_err(read)?;
            self.tar
                .append_data(&mut h, name, file)
                .map_err(|e| self.write_err(e))
        } else {
            tracing::warn!(path = %path.display(), "skipping a special file (socket, fifo or device)");
            Ok(())
        }
    }

    /// Completes the tarball and renames it into place.
    pub fn finish(self) -> Result<(), ArchiveError> {
        let path = self.out.path.clone();
        let write = |source| ArchiveError::Write {
            path: path.clone(),
            source,
        };
        let gz = self.tar.into_inner().map_err(write)?;
        gz.finish().map_err(write)?;
        self.out.commit()
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    #[test]
    fn tree_round_trips_with_modes_and_symlinks() {
        let tmp = tempfile::tempdir().expect("tmp");
        let src = tmp.path().join("src");
        std::fs::create_dir_all(src.join("sub")).expect("mkdir");
        std::fs::write(src.join("run.sh"), "#!/bin/sh\n").expect("write");
        std::fs::set_permissions(src.join("run.sh"), std::fs::Permissions::from_mode(0o750))
            .expect("chmod");
        std::fs::write(src.join("sub/data"), "data").expect("write");
        symlink("/etc/passwd", src.join("outside")).expect("symlink");
        symlink("sub/data", src.join("inside")).expect("symlink");

        let out = tmp.path().join("out/a.tgz");
        let mut tgz = Tgz::create(&out).expect("create");
        tgz.add_tree("app", &src).expect("tree");
        tgz.add_dir("tmp").expect("dir");
        tgz.add_bytes("info.json", b"{}", 0o644).expect("bytes");
        tgz.finish().expect("finish");

        let leftovers: Vec<_> = std::fs::read_dir(tmp.path().join("out"))
            .expect("ls")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(leftovers, ["a.tgz"], "no temporary file stays behind");

        let me = std::fs::metadata(tmp.path()).expect("meta").uid();
        let gz = flate2::read::GzDecoder::new(File::open(&out).expect("open"));
        let mut listing = tar::Archive::new(gz);
        for e in listing.entries().expect("entries") {
            let e = e.expect("entry");
            if e.path().expect("path").starts_with("tmp") {
                assert_eq!(e.header().uid().expect("uid"), u64::from(me));
            }
        }

        let dest = tmp.path().join("dest");
        let gz = flate2::read::GzDecoder::new(File::open(&out).expect("open"));
        tar::Archive::new(gz).unpack(&dest).expect("unpack");
        let mode = |p: &str| {
            std::fs::metadata(dest.join(p))
                .expect("meta")
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode("app/run.sh"), 0o750);
        assert_eq!(
            std::fs::read_link(dest.join("app/outside")).expect("link"),
            Path::new("/etc/passwd")
        );
        assert_eq!(
            std::fs::read_to_string(dest.join("app/inside")).expect("follow"),
            "data"
        );
        assert!(dest.join("tmp").is_dir());
        assert_eq!(std::fs::read(dest.join("info.json")).expect("read"), b"{}");
    }

    #[test]
    fn atomic_write_replaces_and_reports_bad_paths() {
        let tmp = tempfile::tempdir().expect("tmp");
        let path = tmp.path().join("result.json");
        write_atomic(&path, b"one").expect("write");
        write_atomic(&path, b"two").expect("rewrite");
        assert_eq!(std::fs::read(&path).expect("read"), b"two");
        std::fs::write(tmp.path().join("file"), "").expect("write");
        let err = write_atomic(&tmp.path().join("file/x"), b"").expect_err("not a dir");
        assert!(err.to_string().contains("file/x"), "{err}");
    }
}
