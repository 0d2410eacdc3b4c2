//! The image store: pulls images into content-addressed layer directories,
//! keeps persisted references per owner, and collects unused layers.
//!
//! ```text
//! <root>/lock          flock: one process per store
//! <root>/refs.json     owner → image id and layer keys
//! <root>/layers/<key>/ rootfs/ (the unpacked layer) + layer.json
//! <root>/tmp/          unpacks in progress; emptied at open
//! ```
//!
//! A layer's key is its blob digest (`sha256-<hex>`), with `-s<uid>-<gid>`
//! appended for a copy shifted for unprivileged containers.

mod cache;
mod gc;
mod layers;
mod pull;
mod refs;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use gc::GcReport;

use crate::extract::{ExtractError, LayerStats};
use crate::layout::LayoutError;
use crate::manifest::{ImageConfig, ManifestError};
use crate::reference::ReferenceError;
use crate::registry::{RegistryClient, RegistryError};
use crate::shift::ShiftError;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("unpacking layer {layer}: {source}")]
    Extract {
        layer: String,
        #[source]
        source: ExtractError,
    },
    #[error("copying {path} for an unprivileged container: {source}")]
    Shift {
        path: PathBuf,
        #[source]
        source: ShiftError,
    },
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("image store {root} is in use by another process")]
    Busy { root: PathBuf },
    #[error("reference file {path} is unreadable: {source}")]
    CorruptRefs {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("image {image}: layer {layer} is no longer in the store (collected since the pull?)")]
    LayerMissing { image: String, layer: String },
    #[error("an image task failed: {0}")]
    Task(#[source] tokio::task::JoinError),
}

pub(crate) fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> ImageError + 'a {
    move |source| ImageError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Where the store lives and how it behaves.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    pub root: PathBuf,
    /// [`Store::gc`] removes unreferenced layers until the store is no larger.
    pub max_size_bytes: u64,
    /// `host[:port]` of registries reachable over plain HTTP or TLS without
    /// certificate verification (token realms on them too).
    pub insecure_registries: Vec<String>,
    /// PEM files of extra CA certificates trusted for registries.
    pub ca_files: Vec<PathBuf>,
    /// Layers used more recently than this are never collected, which covers
    /// the time between a pull and the caller's `acquire`.
    pub gc_grace: Duration,
    /// Device nodes in images for unprivileged containers are refused (the
    /// default) or, when set, left out with a warning.
    pub skip_unprivileged_devices: bool,
}

impl StoreConfig {
    /// A store at `root` with no size cap, no insecure registries, a grace
    /// of one minute, and device nodes refused for unprivileged containers.
    pub fn new(root: impl Into<PathBuf>) -> StoreConfig {
        StoreConfig {
            root: root.into(),
            max_size_bytes: u64::MAX,
            insecure_registries: Vec::new(),
            ca_files: Vec::new(),
            gc_grace: Duration::from_secs(60),
            skip_unprivileged_devices: false,
        }
    }
}

/// A pulled image, ready to be a container's root filesystem.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// The config digest for registry and layout images, the file digest for
    /// a tarball, `dir:<path>` for a directory.
    pub id: String,
    /// Unpacked layer directories, top first (overlayfs `lowerdir` order).
    pub layers: Vec<PathBuf>,
    /// Container defaults from the image config.
    pub config: ImageConfig,
    /// Apparent bytes of all layers' files.
    pub size_bytes: u64,
    pub inodes: u64,
    /// The store's keys of `layers` (what [`Store::acquire`] holds); empty
    /// for a directory used as it is.
    pub layer_keys: Vec<String>,
}

/// Counters since the store was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreMetrics {
    pub pulls: u64,
    pub layers_unpacked: u64,
    pub layers_reused: u64,
    pub bytes_downloaded: u64,
    pub layers_collected: u64,
}

#[derive(Default)]
pub(crate) struct Metrics {
    pulls: AtomicU64,
    layers_unpacked: AtomicU64,
    layers_reused: AtomicU64,
    bytes_downloaded: AtomicU64,
    layers_collected: AtomicU64,
}

/// The image store. Cheap to clone; safe to use from many tasks at once.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    config: StoreConfig,
    layers: layers::Layers,
    refs: refs::Refs,
    registry: RegistryClient,
    registry_cache: cache::RegistryCache,
    metrics: Metrics,
    /// Digests and sizes of local sources, by what identifies their version.
    local: Mutex<HashMap<String, pull::LocalInfo>>,
    _lock: std::fs::File,
}

impl Store {
    /// Opens (creating) the store at `config.root`: takes its lock, removes
    /// what an interrupted unpack or collection left, loads the references.
    pub fn open(config: StoreConfig) -> Result<Store, ImageError> {
        let root = &config.root;
        std::fs::create_dir_all(root).map_err(io_err("creating", root))?;
        layers::set_mode(root, 0o755)?;
        let lock_path = root.join("lock");
        let lock = std::fs::File::create(&lock_path).map_err(io_err("creating", &lock_path))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive)
            .map_err(|_| ImageError::Busy { root: root.clone() })?;
        let layers = layers::Layers::new(root);
        layers.recover()?;
        let refs = refs::Refs::load(&root.join("refs.json"))?;
        let registry = RegistryClient::new(&config.ca_files, config.insecure_registries.clone())?;
        Ok(Store {
            inner: Arc::new(Inner {
                config,
                layers,
                refs,
                registry,
                registry_cache: cache::RegistryCache::default(),
                metrics: Metrics::default(),
                local: Mutex::new(HashMap::new()),
                _lock: lock,
            }),
        })
    }

    pub fn config(&self) -> &StoreConfig {
        &self.inner.config
    }

    /// Records that `owner` (a container handle) uses `image`'s layers,
    /// replacing what it held before. Persisted before returning.
    /// Fails with [`ImageError::LayerMissing`] when a layer was collected
    /// since the pull (pull again).
    pub fn acquire(&self, image: &Image, owner: &str) -> Result<(), ImageError> {
        for key in &image.layer_keys {
            if self.inner.layers.read_meta(key).is_none() {
                return Err(ImageError::LayerMissing {
                    image: image.id.clone(),
                    layer: key.clone(),
                });
            }
            self.inner.layers.touch(key);
        }
        let held = refs::Held {
            image: image.id.clone(),
            layers: image.layer_keys.clone(),
        };
        self.inner.refs.update(|owners| {
            owners.insert(owner.to_string(), held);
        })?;
        tracing::debug!(owner, image = %image.id, "image acquired");
        Ok(())
    }

    /// Drops `owner`'s reference (nothing happens for an unknown owner).
    pub fn release(&self, owner: &str) -> Result<(), ImageError> {
        if let Some(held) = self.inner.refs.get(owner) {
            for key in &held.layers {
                self.inner.layers.touch(key);
            }
            self.inner.refs.update(|owners| {
                owners.remove(owner);
            })?;
            tracing::debug!(owner, image = %held.image, "image released");
        }
        Ok(())
    }

    /// The image id `owner` holds, if any.
    pub fn held_by(&self, owner: &str) -> Option<String> {
        self.inner.refs.get(owner).map(|h| h.image)
    }

    /// Removes unreferenced layers, least recently used first, until the
    /// store is within `max_size_bytes`.
    pub fn gc(&self) -> Result<GcReport, ImageError> {
        let report = gc::collect(
            &self.inner.layers,
            &self.inner.refs.held_layers(),
            self.inner.config.max_size_bytes,
            self.inner.config.gc_grace,
        )?;
        self.inner
            .metrics
            .layers_collected
            .fetch_add(report.removed.len() as u64, Ordering::Relaxed);
        Ok(report)
    }

    /// Total apparent size and inodes of every layer in the store.
    pub fn usage(&self) -> Result<LayerStats, ImageError> {
        let mut total = LayerStats::default();
        for l in self.inner.layers.list()? {
            total += l.meta.stats;
        }
        Ok(total)
    }

    pub fn metrics(&self) -> StoreMetrics {
        let m = &self.inner.metrics;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StoreMetrics {
            pulls: get(&m.pulls),
            layers_unpacked: get(&m.layers_unpacked),
            layers_reused: get(&m.layers_reused),
            bytes_downloaded: get(&m.bytes_downloaded),
            layers_collected: get(&m.layers_collected),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_is_shareable_across_tasks() {
        fn shareable<T: Clone + Send + Sync + 'static>() {}
        shareable::<Store>();
        fn sendable<T: Send>(_: &T) {}
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(StoreConfig::new(dir.path())).expect("open");
        let pull = store.pull("/nonexistent", None, &crate::IdMapping::Identity);
        sendable(&pull);
    }
}
