//! Layer directories: `layers/<key>/rootfs` with `layers/<key>/layer.json`
//! beside it. A layer is made in `tmp/`, synced, and renamed into place,
//! so a crash never leaves a half-made layer visible; one key is made by one
//! task at a time while others wait for it. The mtime of `layer.json` is the
//! layer's last use.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::{io_err, ImageError, Metrics};
use crate::extract::LayerStats;
use crate::mapping::IdMapping;

pub const ROOTFS: &str = "rootfs";
const META: &str = "layer.json";

/// What the store knows about a layer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LayerMeta {
    /// What the layer was made from (a digest or a local path).
    pub source: String,
    pub mapping: IdMapping,
    pub stats: LayerStats,
}

/// A layer found on disk.
pub struct Listed {
    pub key: String,
    pub meta: LayerMeta,
    pub last_used: SystemTime,
}

pub struct Layers {
    dir: PathBuf,
    tmp: PathBuf,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    counter: AtomicU64,
}

impl Layers {
    pub fn new(root: &Path) -> Layers {
        Layers {
            dir: root.join("layers"),
            tmp: root.join("tmp"),
            locks: Mutex::new(HashMap::new()),
            counter: AtomicU64::new(0),
        }
    }

    pub fn rootfs(&self, key: &str) -> PathBuf {
        self.dir.join(key).join(ROOTFS)
    }

    /// The lock serialising work on one key.
    pub fn lock(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(key.to_string()).or_default().clone()
    }

    /// A fresh, unique directory under `tmp/`.
    pub fn scratch(&self, what: &str) -> Result<PathBuf, ImageError> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let path = self.tmp.join(format!("{what}.{}.{n}", std::process::id()));
        std::fs::create_dir(&path).map_err(io_err("creating", &path))?;
        // Becomes layers/<key>: an overlay mounted in a user namespace must
        // be able to walk through it, whatever the daemon's umask.
        set_mode(&path, 0o755)?;
        Ok(path)
    }

    /// The layer `key`, made by `make` (given an empty directory to fill)
    /// unless it exists. Concurrent callers for one key wait for one `make`.
    pub async fn ensure<F, Fut>(
        &self,
        key: &str,
        source: &str,
        mapping: IdMapping,
        metrics: &Metrics,
        make: F,
    ) -> Result<(PathBuf, LayerStats), ImageError>
    where
        F: FnOnce(PathBuf) -> Fut,
        Fut: Future<Output = Result<LayerStats, ImageError>>,
    {
        let lock = self.lock(key);
        let _guard = lock.lock().await;
        if let Some(meta) = self.read_meta(key) {
            self.touch(key);
            metrics.layers_reused.fetch_add(1, Ordering::Relaxed);
            return Ok((self.rootfs(key), meta.stats));
        }
        let scratch = self.scratch(key)?;
        let rootfs = scratch.join(ROOTFS);
        let made = async {
            std::fs::create_dir(&rootfs).map_err(io_err("creating", &rootfs))?;
            let stats = make(rootfs.clone()).await?;
            let meta = LayerMeta {
                source: source.to_string(),
                mapping,
                stats,
            };
            self.install(key, &scratch, &meta).await?;
            Ok(stats)
        }
        .await;
        match made {
            Ok(stats) => {
                metrics.layers_unpacked.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    layer = key,
                    source,
                    bytes = stats.bytes,
                    inodes = stats.inodes,
                    "layer unpacked"
                );
                Ok((self.rootfs(key), stats))
            }
            Err(e) => {
                remove_tree(scratch).await;
                Err(e)
            }
        }
    }

    /// Writes the metadata, syncs, and renames the scratch dir into place.
    async fn install(&self, key: &str, scratch: &Path, meta: &LayerMeta) -> Result<(), ImageError> {
        let meta_path = scratch.join(META);
        let json = serde_json::to_vec_pretty(meta).map_err(|e| ImageError::Io {
            action: "encoding",
            path: meta_path.clone(),
            source: e.into(),
        })?;
        std::fs::write(&meta_path, json).map_err(io_err("writing", &meta_path))?;
        let (scratch, dest, dir) = (scratch.to_path_buf(), self.dir.join(key), self.dir.clone());
        tokio::task::spawn_blocking(move || {
            let f = std::fs::File::open(&scratch).map_err(io_err("opening", &scratch))?;
            rustix::fs::syncfs(&f).map_err(|e| ImageError::Io {
                action: "syncing",
                path: scratch.clone(),
                source: e.into(),
            })?;
            std::fs::rename(&scratch, &dest).map_err(io_err("installing", &dest))?;
            sync_dir(&dir);
            Ok(())
        })
        .await
        .map_err(ImageError::Task)?
    }

    pub fn read_meta(&self, key: &str) -> Option<LayerMeta> {
        let bytes = std::fs::read(self.dir.join(key).join(META)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Marks `key` as used now.
    pub fn touch(&self, key: &str) {
        let path = self.dir.join(key).join(META);
        let touched = std::fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(SystemTime::now()));
        if let Err(e) = touched {
            tracing::warn!(layer = key, error = %e, "could not record the layer's use");
        }
    }

    /// Every complete layer on disk.
    pub fn list(&self) -> Result<Vec<Listed>, ImageError> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(&self.dir).map_err(io_err("listing", &self.dir))? {
            let e = e.map_err(io_err("listing", &self.dir))?;
            let key = e.file_name().to_string_lossy().into_owned();
            let Some(meta) = self.read_meta(&key) else {
                continue;
            };
            let last_used = std::fs::metadata(e.path().join(META))
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH);
            out.push(Listed {
                key,
                meta,
                last_used,
            });
        }
        Ok(out)
    }

    /// Takes `key` out of `layers/` (one rename) and deletes it.
    pub fn remove(&self, key: &str) -> Result<(), ImageError> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let doomed = self
            .tmp
            .join(format!("gc-{key}.{}.{n}", std::process::id()));
        let from = self.dir.join(key);
        std::fs::rename(&from, &doomed).map_err(io_err("removing", &from))?;
        std::fs::remove_dir_all(&doomed).map_err(io_err("removing", &doomed))
    }

    /// Crash recovery at open: scratch dirs and layers without metadata go.
    pub fn recover(&self) -> Result<(), ImageError> {
        for d in [&self.dir, &self.tmp] {
            std::fs::create_dir_all(d).map_err(io_err("creating", d))?;
        }
        set_mode(&self.dir, 0o755)?;
        set_mode(&self.tmp, 0o700)?;
        for e in std::fs::read_dir(&self.tmp).map_err(io_err("listing", &self.tmp))? {
            let p = e.map_err(io_err("listing", &self.tmp))?.path();
            tracing::info!(path = %p.display(), "removing a leftover of an interrupted unpack");
            remove_path(&p)?;
        }
        for e in std::fs::read_dir(&self.dir).map_err(io_err("listing", &self.dir))? {
            let e = e.map_err(io_err("listing", &self.dir))?;
            let key = e.file_name().to_string_lossy().into_owned();
            if self.read_meta(&key).is_none() {
                tracing::warn!(layer = %key, "removing a layer without valid metadata");
                remove_path(&e.path())?;
            }
        }
        Ok(())
    }
}

fn remove_path(p: &Path) -> Result<(), ImageError> {
    let r = if p.is_dir() && !p.is_symlink() {
        std::fs::remove_dir_all(p)
    } else {
        std::fs::remove_file(p)
    };
    r.map_err(io_err("removing", p))
}

async fn remove_tree(p: PathBuf) {
    let shown = p.display().to_string();
    let done = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&p)).await;
    if !matches!(done, Ok(Ok(()))) {
        tracing::warn!(
            path = shown,
            "could not remove a failed unpack; it goes at the next open"
        );
    }
}

pub fn set_mode(p: &Path, mode: u32) -> Result<(), ImageError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).map_err(io_err("chmod", p))
}

/// Makes a rename or new entry in `dir` durable (best effort).
pub fn sync_dir(dir: &Path) {
    if let Err(e) = std::fs::File::open(dir).and_then(|f| f.sync_all()) {
        tracing::warn!(path = %dir.display(), error = %e, "could not sync a directory");
    }
}
