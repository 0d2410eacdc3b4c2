//! The filesystem blobstore: `<root>/<kind>/<aa>/<sha256>`, the resource
//! cache in `<root>/resources/<aa>/<sha1>`, temporary files in `<root>/tmp`
//! (emptied at start). Writes are temp file + fsync + rename + directory
//! fsync, so a crash leaves either the whole blob or none.

use std::fs::{self, File};
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::{digest, is_hex_digest, BlobError, BlobKind, Blobstore};
use crate::db::StoredBlob;

/// A blobstore in a local directory.
#[derive(Debug, Clone)]
pub struct FsBlobstore {
    root: PathBuf,
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> BlobError + 'a {
    move |source| BlobError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

impl FsBlobstore {
    /// Opens (creating) the store at `root` and removes leftover temporary files.
    pub fn open(root: &Path) -> Result<Self, BlobError> {
        let tmp = root.join("tmp");
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(io("clean", &tmp))?;
        }
        fs::create_dir_all(&tmp).map_err(io("create", &tmp))?;
        Ok(Self {
            root: root.to_owned(),
        })
    }

    fn blob_path(&self, kind: BlobKind, sha256: &str) -> Result<PathBuf, BlobError> {
        if !is_hex_digest(sha256, 64) {
            return Err(BlobError::InvalidKey(sha256.to_owned()));
        }
        Ok(self
            .root
            .join(kind.as_str())
            .join(&sha256[..2])
            .join(sha256))
    }

    fn resource_path(&self, sha1: &str) -> Result<PathBuf, BlobError> {
        if !is_hex_digest(sha1, 40) {
            return Err(BlobError::InvalidKey(sha1.to_owned()));
        }
        Ok(self.root.join("resources").join(&sha1[..2]).join(sha1))
    }

    /// Copies `src` into a temp file, fsyncs it and renames it to `dest`.
    fn install(&self, src: &Path, dest: &Path) -> Result<(), BlobError> {
        if dest.exists() {
            return Ok(());
        }
        let dir = dest.parent().unwrap_or(&self.root);
        fs::create_dir_all(dir).map_err(io("create", dir))?;
        let tmp = self.temp_file()?;
        fs::copy(src, tmp.path()).map_err(io("copy", src))?;
        tmp.as_file().sync_all().map_err(io("fsync", tmp.path()))?;
        tmp.persist(dest).map_err(|e| BlobError::Io {
            op: "rename",
            path: dest.to_owned(),
            source: e.error,
        })?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io("fsync", dir))?;
        Ok(())
    }
}

impl FsBlobstore {
    /// Fsyncs a temp file of this store and renames it to `dest` (kept if
    /// `dest` already exists: same content address, same bytes).
    fn persist(&self, tmp: tempfile::NamedTempFile, dest: &Path) -> Result<(), BlobError> {
        if dest.exists() {
            return Ok(());
        }
        let dir = dest.parent().unwrap_or(&self.root);
        fs::create_dir_all(dir).map_err(io("create", dir))?;
        tmp.as_file().sync_all().map_err(io("fsync", tmp.path()))?;
        tmp.persist(dest).map_err(|e| BlobError::Io {
            op: "rename",
            path: dest.to_owned(),
            source: e.error,
        })?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io("fsync", dir))
    }
}

impl Blobstore for FsBlobstore {
    fn temp_file(&self) -> Result<tempfile::NamedTempFile, BlobError> {
        let tmp = self.root.join("tmp");
        tempfile::NamedTempFile::new_in(&tmp).map_err(io("create temp in", &tmp))
    }

    fn put_file(&self, kind: BlobKind, src: &Path) -> Result<StoredBlob, BlobError> {
        let file = File::open(src).map_err(io("open", src))?;
        let (size, sha1, sha256) = digest(file).map_err(io("read", src))?;
        let dest = self.blob_path(kind, &sha256)?;
        self.install(src, &dest)?;
        Ok(StoredBlob { sha256, sha1, size })
    }

    fn put_temp(
        &self,
        kind: BlobKind,
        tmp: tempfile::NamedTempFile,
    ) -> Result<StoredBlob, BlobError> {
        let (size, sha1, sha256) = digest(File::open(tmp.path()).map_err(io("open", tmp.path()))?)
            .map_err(io("read", tmp.path()))?;
        let dest = self.blob_path(kind, &sha256)?;
        self.persist(tmp, &dest)?;
        Ok(StoredBlob { sha256, sha1, size })
    }

    fn put_resource_temp(&self, sha1: &str, tmp: tempfile::NamedTempFile) -> Result<(), BlobError> {
        let dest = self.resource_path(sha1)?;
        let (_, found, _) = digest(File::open(tmp.path()).map_err(io("open", tmp.path()))?)
            .map_err(io("read", tmp.path()))?;
        if found != sha1 {
            return Err(BlobError::ResourceMismatch {
                expected: sha1.to_owned(),
                found,
            });
        }
        self.persist(tmp, &dest)
    }

    fn fetch(&self, kind: BlobKind, blob: &StoredBlob) -> Result<File, BlobError> {
        let path = self.blob_path(kind, &blob.sha256)?;
        let mut file = File::open(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => BlobError::Missing {
                kind: kind.as_str(),
                key: blob.sha256.clone(),
            },
            _ => BlobError::Io {
                op: "open",
                path: path.clone(),
                source: e,
            },
        })?;
        let (size, sha1, sha256) = digest(&mut file).map_err(io("read", &path))?;
        let corrupt = |what, expected: String, found: String| BlobError::Corrupt {
            kind: kind.as_str(),
            key: blob.sha256.clone(),
            what,
            expected,
            found,
        };
        if size != blob.size {
            return Err(corrupt("size", blob.size.to_string(), size.to_string()));
        }
        if sha1 != blob.sha1 {
            return Err(corrupt("sha1", blob.sha1.clone(), sha1));
        }
        if sha256 != blob.sha256 {
            return Err(corrupt("sha256", blob.sha256.clone(), sha256));
        }
        file.seek(SeekFrom::Start(0)).map_err(io("seek", &path))?;
        Ok(file)
    }

    fn delete(&self, kind: BlobKind, sha256: &str) -> Result<(), BlobError> {
        let path = self.blob_path(kind, sha256)?;
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(BlobError::Io {
                op: "remove",
                path,
                source: e,
            }),
            _ => Ok(()),
        }
    }

    fn keys(&self, kind: BlobKind) -> Result<Vec<String>, BlobError> {
        let root = self.root.join(kind.as_str());
        let mut keys = Vec::new();
        let Ok(shards) = fs::read_dir(&root) else {
            return Ok(keys);
        };
        for shard in shards {
            let shard = shard.map_err(io("list", &root))?.path();
            for entry in fs::read_dir(&shard).map_err(io("list", &shard))? {
                let name = entry.map_err(io("list", &shard))?.file_name();
                if let Some(name) = name.to_str().filter(|n| is_hex_digest(n, 64)) {
                    keys.push(name.to_owned());
                }
            }
        }
        Ok(keys)
    }

    fn has_resource(&self, sha1: &str) -> bool {
        self.resource_path(sha1)
            .map(|p| p.is_file())
            .unwrap_or(false)
    }

    fn put_resource(&self, sha1: &str, src: &Path) -> Result<(), BlobError> {
        let dest = self.resource_path(sha1)?;
        let file = File::open(src).map_err(io("open", src))?;
        let (_, found, _) = digest(file).map_err(io("read", src))?;
        if found != sha1 {
            return Err(BlobError::ResourceMismatch {
                expected: sha1.to_owned(),
                found,
            });
        }
        self.install(src, &dest)
    }

    fn fetch_resource(&self, sha1: &str) -> Result<File, BlobError> {
        let path = self.resource_path(sha1)?;
        let mut file = File::open(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => BlobError::Missing {
                kind: "resource",
                key: sha1.to_owned(),
            },
            _ => BlobError::Io {
                op: "open",
                path: path.clone(),
                source: e,
            },
        })?;
        let (_, found, _) = digest(&mut file).map_err(io("read", &path))?;
        if found != sha1 {
            return Err(BlobError::Corrupt {
                kind: "resource",
                key: sha1.to_owned(),
                what: "sha1",
                expected: sha1.to_owned(),
                found,
            });
        }
        file.seek(SeekFrom::Start(0)).map_err(io("seek", &path))?;
        Ok(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn store() -> (tempfile::TempDir, FsBlobstore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FsBlobstore::open(dir.path()).expect("open");
        (dir, store)
    }

    #[test]
    fn put_then_fetch_round_trips_and_is_content_addressed() {
        let (_dir, store) = store();
        let mut src = store.temp_file().expect("temp");
        src.write_all(b"hello droplet").expect("write");
        let a = store.put_file(BlobKind::Droplet, src.path()).expect("put");
        let b = store
            .put_file(BlobKind::Droplet, src.path())
            .expect("put again");
        assert_eq!(a, b);
        let mut out = String::new();
        store
            .fetch(BlobKind::Droplet, &a)
            .expect("fetch")
            .read_to_string(&mut out)
            .expect("read");
        assert_eq!(out, "hello droplet");
    }

    #[test]
    fn temp_files_are_renamed_into_place() {
        let (dir, store) = store();
        let mut src = store.temp_file().expect("temp");
        src.write_all(b"renamed").expect("write");
        let blob = store.put_temp(BlobKind::Package, src).expect("put");
        assert!(dir
            .path()
            .join("packages")
            .join(&blob.sha256[..2])
            .join(&blob.sha256)
            .is_file());
        assert_eq!(
            fs::read_dir(dir.path().join("tmp")).expect("tmp").count(),
            0,
            "nothing left in tmp"
        );
        let mut bad = store.temp_file().expect("temp");
        bad.write_all(b"abc").expect("write");
        assert!(store.put_resource_temp(&"1".repeat(40), bad).is_err());
    }

    #[test]
    fn keys_lists_every_blob_of_a_kind() {
        let (_dir, store) = store();
        assert!(store.keys(BlobKind::Droplet).expect("empty").is_empty());
        let mut a = store.temp_file().expect("temp");
        a.write_all(b"a").expect("write");
        let blob = store.put_temp(BlobKind::Droplet, a).expect("put");
        assert_eq!(
            store.keys(BlobKind::Droplet).expect("keys"),
            vec![blob.sha256.clone()]
        );
        store
            .delete(BlobKind::Droplet, &blob.sha256)
            .expect("delete");
        assert!(store.keys(BlobKind::Droplet).expect("keys").is_empty());
    }

    #[test]
    fn a_damaged_blob_is_refused() {
        let (dir, store) = store();
        let mut src = store.temp_file().expect("temp");
        src.write_all(b"original").expect("write");
        let blob = store.put_file(BlobKind::Package, src.path()).expect("put");
        let path = dir
            .path()
            .join("packages")
            .join(&blob.sha256[..2])
            .join(&blob.sha256);
        fs::write(&path, b"origina!").expect("damage");
        let err = store
            .fetch(BlobKind::Package, &blob)
            .expect_err("must fail");
        assert!(
            matches!(err, BlobError::Corrupt { what: "sha1", .. }),
            "{err}"
        );
    }

    #[test]
    fn resources_are_checked_on_the_way_in_and_out() {
        let (dir, store) = store();
        let mut src = store.temp_file().expect("temp");
        src.write_all(b"abc").expect("write");
        let sha1 = "a9993e364706816aba3e25717850c26c9cd0d89d";
        assert!(matches!(
            store.put_resource(&"0".repeat(40), src.path()),
            Err(BlobError::ResourceMismatch { .. })
        ));
        store.put_resource(sha1, src.path()).expect("put");
        assert!(store.has_resource(sha1));
        fs::write(
            dir.path().join("resources").join(&sha1[..2]).join(sha1),
            b"abd",
        )
        .expect("damage");
        assert!(matches!(
            store.fetch_resource(sha1),
            Err(BlobError::Corrupt { .. })
        ));
        assert!(matches!(
            store.fetch_resource("../etc"),
            Err(BlobError::InvalidKey(_))
        ));
    }
}
