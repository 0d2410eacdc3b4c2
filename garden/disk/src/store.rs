//! The store directory and the record of each volume.
//!
//! ```text
//! <root>/.lock            flock: one Disk per store
//! <root>/volumes/<handle> the volume (mount point, subvolume or project dir)
//! <root>/records/<handle> its record (JSON): limits, image usage, backend state
//! <root>/images/<handle>  loop: the volume's filesystem image
//! <root>/templates/       loop: formatted images per (bytes, inodes)
//! <root>/tmp/             records being written
//! ```
//! A record is written (atomically) once the volume exists and removed
//! once it is gone, so after a crash a volume without a record is an orphan
//! that [`crate::Disk::open`] destroys.

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::backend::BackendState;
use crate::limits::{DiskLimits, ImageUsage, Quota};

/// The longest handle: handles name files.
pub const MAX_HANDLE_LEN: usize = 255;

/// Errors of the store directory.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A handle that cannot name a volume.
    #[error("invalid volume handle {handle:?}: {reason}")]
    InvalidHandle {
        /// The handle.
        handle: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Another process holds the store.
    #[error("store {0} is in use by another process")]
    Busy(PathBuf),
    /// A file operation failed.
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
    /// A record that does not parse.
    #[error("volume record {path} is corrupt")]
    Corrupt {
        /// The record.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// What the store remembers of a volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Record {
    pub(crate) handle: String,
    pub(crate) limits: DiskLimits,
    pub(crate) image: ImageUsage,
    pub(crate) quota: Quota,
    pub(crate) state: BackendState,
}

/// Checks that `handle` can name files.
pub(crate) fn validate_handle(handle: &str) -> Result<(), StoreError> {
    let reason = if handle.is_empty() {
        "empty"
    } else if handle.len() > MAX_HANDLE_LEN {
        "longer than 255 bytes"
    } else if handle.contains('/') || handle.contains('\0') {
        "contains '/' or NUL"
    } else if handle.starts_with('.') {
        "starts with '.'"
    } else {
        return Ok(());
    };
    Err(StoreError::InvalidHandle {
        handle: handle.to_string(),
        reason,
    })
}

/// The store directory, locked for this process.
#[derive(Debug)]
pub(crate) struct Store {
    root: PathBuf,
    _lock: Flock<File>,
}

impl Store {
    /// Creates the layout under `root` if needed and locks it.
    pub(crate) fn open(root: &Path) -> Result<Store, StoreError> {
        for sub in ["volumes", "records", "images", "templates", "tmp"] {
            let dir = root.join(sub);
            std::fs::create_dir_all(&dir).map_err(io("create", &dir))?;
        }
        let lock_path = root.join(".lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io("open", &lock_path))?;
        let lock = Flock::lock(file, FlockArg::LockExclusiveNonblock)
            .map_err(|_| StoreError::Busy(root.to_path_buf()))?;
        Ok(Store {
            root: root.to_path_buf(),
            _lock: lock,
        })
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn volumes_dir(&self) -> PathBuf {
        self.root.join("volumes")
    }

    pub(crate) fn volume_dir(&self, handle: &str) -> PathBuf {
        self.root.join("volumes").join(handle)
    }

    pub(crate) fn images_dir(&self) -> PathBuf {
        self.root.join("images")
    }

    pub(crate) fn templates_dir(&self) -> PathBuf {
        self.root.join("templates")
    }

    fn record_path(&self, handle: &str) -> PathBuf {
        self.root.join("records").join(handle)
    }

    /// Writes `record` atomically (temp file, rename). Not fsynced: the
    /// volumes do not outlive the host either, and a record lost with the
    /// page cache leaves an orphan that the next `open` destroys.
    pub(crate) fn write_record(&self, record: &Record) -> Result<(), StoreError> {
        let tmp = self.root.join("tmp").join(&record.handle);
        let bytes = serde_json::to_vec(record).map_err(|source| StoreError::Corrupt {
            path: tmp.clone(),
            source,
        })?;
        let mut file = File::create(&tmp).map_err(io("create", &tmp))?;
        std::io::Write::write_all(&mut file, &bytes).map_err(io("write", &tmp))?;
        let path = self.record_path(&record.handle);
        std::fs::rename(&tmp, &path).map_err(io("rename to", &path))
    }

    /// The record of `handle`, if any.
    pub(crate) fn read_record(&self, handle: &str) -> Result<Option<Record>, StoreError> {
        let path = self.record_path(handle);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io("read", &path)(e)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| StoreError::Corrupt { path, source })
    }

    /// Removes the record of `handle` (fine when there is none).
    pub(crate) fn remove_record(&self, handle: &str) -> Result<(), StoreError> {
        let path = self.record_path(handle);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(io("remove", &path)(e)),
            _ => Ok(()),
        }
    }

    /// Every record.
    pub(crate) fn records(&self) -> Result<Vec<Record>, StoreError> {
        let mut records = Vec::new();
        for name in names_in(&self.root.join("records"))? {
            if let Some(record) = self.read_record(&name)? {
                records.push(record);
            }
        }
        Ok(records)
    }

    /// Volume directories and loop images without a record.
    pub(crate) fn orphans(&self) -> Result<Vec<String>, StoreError> {
        let mut names = names_in(&self.volumes_dir())?;
        names.extend(names_in(&self.images_dir())?);
        names.sort();
        names.dedup();
        names.retain(|name| !self.record_path(name).exists());
        Ok(names)
    }
}

/// The names of the entries of `dir` that are valid handles.
fn names_in(dir: &Path) -> Result<Vec<String>, StoreError> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io("read", dir))? {
        let entry = entry.map_err(io("read", dir))?;
        if let Some(name) = entry.file_name().to_str() {
            if validate_handle(name).is_ok() {
                names.push(name.to_string());
            }
        }
    }
    Ok(names)
}

/// Creates the overlay directories of a volume: `upper/`, `work/` and the
/// `work/work` overlayfs makes on mount (so the baseline includes it).
pub(crate) fn make_layer_dirs(dir: &Path) -> Result<(), StoreError> {
    for sub in ["upper", "work", "work/work"] {
        let path = dir.join(sub);
        match std::fs::create_dir(&path) {
            Err(e) if e.kind() != ErrorKind::AlreadyExists => return Err(io("create", &path)(e)),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_must_name_a_file() {
        for bad in ["", ".", "..", ".hidden", "a/b", "a\0b", &"x".repeat(256)] {
            assert!(validate_handle(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["abc", "a.b", "c-1_2", &"x".repeat(255)] {
            assert!(validate_handle(good).is_ok(), "{good:?} refused");
        }
    }

    #[test]
    fn a_second_open_of_one_store_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let _first = Store::open(dir.path()).expect("first open");
        let err = Store::open(dir.path()).expect_err("second open");
        assert!(matches!(err, StoreError::Busy(_)), "{err}");
    }
}
