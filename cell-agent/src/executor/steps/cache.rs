//! The download cache: archives kept under their cache key, within a size
//! limit, least recently used evicted first. Each entry is a file named by
//! the SHA-256 of its key plus a small JSON record (key, size, digests), so
//! the cache survives a restart; use order restarts from file times.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Why the cache failed.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// A file of the cache could not be used.
    #[error("download cache {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CacheError + '_ {
    move |source| CacheError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What the cache knows of one archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct EntryInfo {
    pub(crate) key: String,
    pub(crate) size: u64,
    pub(crate) sha1: String,
    pub(crate) sha256: String,
}

struct Entry {
    info: EntryInfo,
    last_used: u64,
}

struct Index {
    entries: BTreeMap<String, Entry>,
    total: u64,
    clock: u64,
}

/// A size-limited, least-recently-used cache of downloaded archives.
pub(crate) struct Cache {
    dir: PathBuf,
    max_bytes: u64,
    index: Mutex<Index>,
}

impl Cache {
    /// Opens (or creates) the cache in `dir`, reading what an earlier
    /// process left there; entries without a readable record are removed.
    pub(crate) fn open(dir: &Path, max_bytes: u64) -> Result<Self, CacheError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let mut found = Vec::new();
        for item in std::fs::read_dir(dir).map_err(io(dir))? {
            let path = item.map_err(io(dir))?.path();
            if path.extension().is_some_and(|e| e == "json") {
                continue;
            }
            let record = path.with_extension("json");
            let info = std::fs::read(&record)
                .ok()
                .and_then(|bytes| serde_json::from_slice::<EntryInfo>(&bytes).ok());
            let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
            match (info, modified) {
                (Some(info), Some(modified)) => found.push((modified, info)),
                _ => {
                    let _ = std::fs::remove_file(&path);
                    let _ = std::fs::remove_file(&record);
                }
            }
        }
        found.sort_by_key(|(modified, _)| *modified);
        let mut index = Index {
            entries: BTreeMap::new(),
            total: 0,
            clock: 0,
        };
        for (_, info) in found {
            index.clock += 1;
            index.total += info.size;
            let last_used = index.clock;
            index
                .entries
                .insert(info.key.clone(), Entry { info, last_used });
        }
        let cache = Self {
            dir: dir.to_owned(),
            max_bytes,
            index: Mutex::new(index),
        };
        if let Ok(mut index) = cache.index.lock() {
            cache.evict(&mut index, 0);
        }
        Ok(cache)
    }

    /// Where new downloads are written before they enter the cache (the
    /// same filesystem, so entering is a rename).
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    fn file(&self, key: &str) -> PathBuf {
        self.dir.join(hex::encode(Sha256::digest(key.as_bytes())))
    }

    /// The archive under `key`, opened, and what is known of it.
    pub(crate) fn get(&self, key: &str) -> Option<(File, EntryInfo)> {
        let mut index = self.index.lock().ok()?;
        index.clock += 1;
        let clock = index.clock;
        let entry = index.entries.get_mut(key)?;
        entry.last_used = clock;
        let info = entry.info.clone();
        match File::open(self.file(key)) {
            Ok(file) => Some((file, info)),
            Err(_) => {
                Self::forget(&mut index, key);
                None
            }
        }
    }

    /// Takes `download` (a file in [`Self::dir`]) in under `info.key`,
    /// evicting older entries to make room; returns the opened archive.
    /// An archive larger than the whole cache is returned without caching.
    pub(crate) fn insert(&self, download: PathBuf, info: EntryInfo) -> Result<File, CacheError> {
        let file = File::open(&download).map_err(io(&download))?;
        let Ok(mut index) = self.index.lock() else {
            return Ok(file);
        };
        if info.size > self.max_bytes {
            let _ = std::fs::remove_file(&download);
            return Ok(file);
        }
        Self::forget(&mut index, &info.key);
        self.evict(&mut index, info.size);
        let target = self.file(&info.key);
        let record = target.with_extension("json");
        let json = serde_json::to_vec(&info).unwrap_or_default();
        std::fs::write(&record, json).map_err(io(&record))?;
        std::fs::rename(&download, &target).map_err(io(&target))?;
        index.clock += 1;
        index.total += info.size;
        let last_used = index.clock;
        index
            .entries
            .insert(info.key.clone(), Entry { info, last_used });
        Ok(file)
    }

    /// Bytes held.
    pub(crate) fn size(&self) -> u64 {
        self.index.lock().map(|i| i.total).unwrap_or(0)
    }

    /// Keys held, least recently used first.
    pub(crate) fn keys(&self) -> Vec<String> {
        let Ok(index) = self.index.lock() else {
            return Vec::new();
        };
        let mut keys: Vec<_> = index
            .entries
            .values()
            .map(|e| (e.last_used, e.info.key.clone()))
            .collect();
        keys.sort();
        keys.into_iter().map(|(_, key)| key).collect()
    }

    fn forget(index: &mut Index, key: &str) {
        if let Some(old) = index.entries.remove(key) {
            index.total -= old.info.size;
        }
    }

    /// Removes least recently used entries until `incoming` more bytes fit.
    fn evict(&self, index: &mut Index, incoming: u64) {
        while index.total + incoming > self.max_bytes {
            let Some(oldest) = index
                .entries
                .values()
                .min_by_key(|e| e.last_used)
                .map(|e| e.info.key.clone())
            else {
                break;
            };
            Self::forget(index, &oldest);
            let file = self.file(&oldest);
            let _ = std::fs::remove_file(file.with_extension("json"));
            let _ = std::fs::remove_file(&file);
            tracing::info!(key = %oldest, "download cache: evicted");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn put(cache: &Cache, key: &str, bytes: &[u8]) {
        let path = cache.dir().join(format!("incoming-{key}"));
        std::fs::write(&path, bytes).expect("write");
        let info = EntryInfo {
            key: key.into(),
            size: bytes.len() as u64,
            sha1: String::new(),
            sha256: String::new(),
        };
        cache.insert(path, info).expect("insert");
    }

    #[test]
    fn least_recently_used_goes_first_and_the_cache_survives_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = Cache::open(dir.path(), 10).expect("open");
        put(&cache, "a", b"aaaa");
        put(&cache, "b", b"bbbb");
        let (mut file, info) = cache.get("a").expect("hit");
        let mut text = String::new();
        file.read_to_string(&mut text).expect("read");
        assert_eq!((text.as_str(), info.size), ("aaaa", 4));
        put(&cache, "c", b"cccc");
        assert_eq!(cache.keys(), ["a", "c"], "b was least recently used");
        assert_eq!(cache.size(), 8);
        put(&cache, "huge", &[0u8; 11]);
        assert!(cache.get("huge").is_none());
        drop(cache);
        let again = Cache::open(dir.path(), 10).expect("reopen");
        assert_eq!(again.size(), 8);
        assert!(again.get("a").is_some() && again.get("c").is_some());
        let files = std::fs::read_dir(dir.path()).expect("ls").count();
        assert_eq!(files, 4, "two archives and their records");
    }
}
