//! [`Disk`]: the store of a daemon's volumes, whichever the backend.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use crate::backend::btrfs::{BtrfsBackend, BtrfsError};
use crate::backend::loopfs::{LoopBackend, LoopError};
use crate::backend::plain::{PlainBackend, PlainError};
use crate::backend::xfs::{XfsBackend, XfsError};
use crate::backend::Backend;
use crate::config::{BackendKind, DiskConfig};
use crate::limits::{DiskLimits, ImageUsage, LimitsError, Usage};
use crate::store::{self, Record, Store, StoreError};
use crate::store_image::{self, StoreImageError};

/// Errors of [`Disk`]. `NotFound` and `AlreadyExists` are the caller's
/// 404 and 409; `InvalidHandle` and `Limits` are bad requests; the rest
/// are the host's failures.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// No such volume.
    #[error("disk volume {0:?} not found")]
    NotFound(String),
    /// A volume with this handle exists.
    #[error("disk volume {0:?} already exists")]
    AlreadyExists(String),
    /// The limits cannot be applied.
    #[error(transparent)]
    Limits(#[from] LimitsError),
    /// The store directory (including invalid handles).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The store image could not be unmounted.
    #[error(transparent)]
    StoreImage(#[from] StoreImageError),
    /// The loop backend.
    #[error(transparent)]
    Loop(#[from] LoopError),
    /// The btrfs backend.
    #[error(transparent)]
    Btrfs(#[from] BtrfsError),
    /// The xfs backend.
    #[error(transparent)]
    Xfs(#[from] XfsError),
    /// The none backend.
    #[error(transparent)]
    Plain(#[from] PlainError),
}

impl DiskError {
    /// Whether the caller's input is at fault (a bad handle or limits).
    pub fn is_bad_request(&self) -> bool {
        matches!(
            self,
            DiskError::Limits(_) | DiskError::Store(StoreError::InvalidHandle { .. })
        )
    }
}

/// A container's volume: the writable layer lives in `upper` and overlayfs
/// works in `work`, both on the limited filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    /// The volume directory (`<root>/volumes/<handle>`).
    pub dir: PathBuf,
    /// `dir/upper`: overlayfs's upperdir.
    pub upper: PathBuf,
    /// `dir/work`: overlayfs's workdir.
    pub work: PathBuf,
}

impl Volume {
    fn at(dir: PathBuf) -> Volume {
        Volume {
            upper: dir.join("upper"),
            work: dir.join("work"),
            dir,
        }
    }
}

/// The volumes of one store, with the configured backend. Send + Sync;
/// calls block (run them on a blocking thread). Operations on one handle
/// are serialised; different handles proceed in parallel.
#[derive(Debug)]
pub struct Disk {
    config: DiskConfig,
    backend: Box<dyn Backend>,
    records: RwLock<HashMap<String, Record>>,
    handle_locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    // Last: the store's lock is released after everything else.
    store: Store,
}

impl Disk {
    /// Prepares the backend (mounts the store image if configured, turns
    /// quotas on), locks the store, remounts recorded volumes that a
    /// reboot unmounted and destroys orphans that a crash left. Idempotent.
    /// A volume that cannot be recovered is logged and stays listed.
    pub fn open(config: DiskConfig) -> Result<Disk, DiskError> {
        let root = &config.root;
        let image = config.store_image.as_ref();
        match config.kind {
            BackendKind::Btrfs => BtrfsBackend::prepare(root, image)?,
            BackendKind::Xfs => XfsBackend::prepare(root, image)?,
            BackendKind::Loop | BackendKind::None => {}
        }
        let store = Store::open(root)?;
        let backend: Box<dyn Backend> = match config.kind {
            BackendKind::Loop => Box::new(LoopBackend::open(&store, config.loop_unlimited_bytes)?),
            BackendKind::Btrfs => Box::new(BtrfsBackend::new(store.volumes_dir())),
            BackendKind::Xfs => Box::new(XfsBackend::new(root, config.xfs_project_ids)?),
            BackendKind::None => Box::new(PlainBackend),
        };
        let disk = Disk {
            backend,
            records: RwLock::new(HashMap::new()),
            handle_locks: Mutex::new(HashMap::new()),
            store,
            config,
        };
        disk.restore()?;
        Ok(disk)
    }

    fn restore(&self) -> Result<(), DiskError> {
        let mut records = self.records.write().unwrap_or_else(PoisonError::into_inner);
        // A volume that cannot be recovered stays listed (its usage fails,
        // destroy cleans it up): the daemon decides what to do with it.
        for record in self.store.records()? {
            let dir = self.store.volume_dir(&record.handle);
            if let Err(e) = self.backend.recover(&record.handle, &dir, &record.state) {
                tracing::error!(handle = record.handle, error = %e, "cannot recover disk volume");
            }
            records.insert(record.handle.clone(), record);
        }
        for handle in self.store.orphans()? {
            tracing::warn!(handle, "destroying an orphan disk volume");
            let dir = self.store.volume_dir(&handle);
            if let Err(e) = self.backend.destroy(&handle, &dir, None) {
                tracing::error!(handle, error = %e, "cannot destroy orphan disk volume");
            }
        }
        tracing::info!(
            backend = self.config.kind.name(),
            root = %self.store.root().display(),
            volumes = records.len(),
            "disk store open"
        );
        Ok(())
    }

    /// The configuration.
    pub fn config(&self) -> &DiskConfig {
        &self.config
    }

    /// Runs `f` holding `handle`'s lock.
    fn with_handle<T>(&self, handle: &str, f: impl FnOnce() -> T) -> T {
        let lock = {
            let mut locks = self
                .handle_locks
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            Arc::clone(locks.entry(handle.to_string()).or_default())
        };
        let result = {
            let _held = lock.lock().unwrap_or_else(PoisonError::into_inner);
            f()
        };
        let mut locks = self
            .handle_locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Ours and the map's: nobody else waits for it.
        if Arc::strong_count(&lock) == 2 {
            locks.remove(handle);
        }
        result
    }

    fn record(&self, handle: &str) -> Result<Record, DiskError> {
        self.records
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(handle)
            .cloned()
            .ok_or_else(|| DiskError::NotFound(handle.to_string()))
    }

    /// Creates the volume of `handle`, limited to `limits` for a container
    /// whose image holds `image` (subtracted in total scope).
    pub fn create(
        &self,
        handle: &str,
        limits: &DiskLimits,
        image: ImageUsage,
    ) -> Result<Volume, DiskError> {
        store::validate_handle(handle)?;
        let quota = limits.quota(image)?;
        self.backend.check(&quota)?;
        self.with_handle(handle, || {
            if self.record(handle).is_ok() {
                return Err(DiskError::AlreadyExists(handle.to_string()));
            }
            let dir = self.store.volume_dir(handle);
            let started = std::time::Instant::now();
            let state = self.backend.create(handle, &dir, &quota)?;
            let record = Record {
                handle: handle.to_string(),
                limits: *limits,
                image,
                quota,
                state,
            };
            if let Err(e) = self.store.write_record(&record) {
                let _ = self.backend.destroy(handle, &dir, Some(&record.state));
                return Err(e.into());
            }
            self.records
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(handle.to_string(), record);
            tracing::debug!(
                handle,
                bytes = quota.bytes,
                inodes = quota.inodes,
                elapsed_us = started.elapsed().as_micros() as u64,
                "disk volume created"
            );
            Ok(Volume::at(dir))
        })
    }

    /// The volume of `handle`.
    pub fn volume(&self, handle: &str) -> Result<Volume, DiskError> {
        self.record(handle)?;
        Ok(Volume::at(self.store.volume_dir(handle)))
    }

    /// Bytes and inodes used by `handle`'s volume, with and without its
    /// image.
    pub fn usage(&self, handle: &str) -> Result<Usage, DiskError> {
        let record = self.record(handle)?;
        let dir = self.store.volume_dir(handle);
        let (bytes, inodes) = self.backend.usage(&dir, &record.state)?;
        Ok(Usage::new(bytes, inodes, record.image))
    }

    /// The limits `handle` was created with.
    pub fn limits(&self, handle: &str) -> Result<DiskLimits, DiskError> {
        Ok(self.record(handle)?.limits)
    }

    /// Removes `handle`'s volume and everything it holds. Fine when there
    /// is no such volume (or only a part of one).
    pub fn destroy(&self, handle: &str) -> Result<(), DiskError> {
        store::validate_handle(handle)?;
        self.with_handle(handle, || {
            let record = self.record(handle).ok();
            let dir = self.store.volume_dir(handle);
            self.backend
                .destroy(handle, &dir, record.as_ref().map(|r| &r.state))?;
            self.store.remove_record(handle)?;
            self.records
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(handle);
            tracing::debug!(handle, "disk volume destroyed");
            Ok(())
        })
    }

    /// The handles of the volumes that exist.
    pub fn list(&self) -> Result<Vec<String>, DiskError> {
        let mut handles: Vec<String> = self
            .records
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect();
        handles.sort();
        Ok(handles)
    }

    /// The store root.
    pub fn root(&self) -> &Path {
        self.store.root()
    }

    /// Closes the store and unmounts the store image that `open` mounted
    /// (btrfs, xfs with `store_image`). Destroy the volumes first; for
    /// tests and decommissioning, never needed across daemon restarts.
    pub fn unmount_store(self) -> Result<(), DiskError> {
        let root = self.store.root().to_path_buf();
        let has_image = self.config.store_image.is_some();
        drop(self);
        if has_image {
            store_image::unmount(&root)?;
        }
        Ok(())
    }
}
