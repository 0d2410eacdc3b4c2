//! Persisted references: which owner (a container handle) holds which
//! image's layers. Kept in `refs.json`, rewritten atomically (temporary
//! file, fsync, rename) on every change, so it survives daemon restarts.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::layers::sync_dir;
use super::{io_err, ImageError};

/// One owner's reference.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    pub image: String,
    pub layers: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct RefsDoc {
    owners: BTreeMap<String, Held>,
}

pub struct Refs {
    path: PathBuf,
    doc: Mutex<RefsDoc>,
}

impl Refs {
    /// Loads `path` (absent means no references).
    pub fn load(path: &Path) -> Result<Refs, ImageError> {
        let doc = match std::fs::read(path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|source| ImageError::CorruptRefs {
                    path: path.to_path_buf(),
                    source,
                })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => RefsDoc::default(),
            Err(e) => return Err(io_err("reading", path)(e)),
        };
        Ok(Refs {
            path: path.to_path_buf(),
            doc: Mutex::new(doc),
        })
    }

    /// Applies `change` and persists the result; on failure nothing changes.
    pub fn update(
        &self,
        change: impl FnOnce(&mut BTreeMap<String, Held>),
    ) -> Result<(), ImageError> {
        let mut doc = self.doc.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = doc.clone();
        change(&mut next.owners);
        self.write(&next)?;
        *doc = next;
        Ok(())
    }

    /// Every layer key some owner holds.
    pub fn held_layers(&self) -> HashSet<String> {
        let doc = self.doc.lock().unwrap_or_else(|p| p.into_inner());
        doc.owners
            .values()
            .flat_map(|h| h.layers.iter().cloned())
            .collect()
    }

    pub fn get(&self, owner: &str) -> Option<Held> {
        let doc = self.doc.lock().unwrap_or_else(|p| p.into_inner());
        doc.owners.get(owner).cloned()
    }

    fn write(&self, doc: &RefsDoc) -> Result<(), ImageError> {
        let tmp = self.path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(doc).map_err(|source| ImageError::CorruptRefs {
            path: self.path.clone(),
            source,
        })?;
        let mut f = std::fs::File::create(&tmp).map_err(io_err("writing", &tmp))?;
        f.write_all(&bytes).map_err(io_err("writing", &tmp))?;
        f.sync_all().map_err(io_err("syncing", &tmp))?;
        std::fs::rename(&tmp, &self.path).map_err(io_err("replacing", &self.path))?;
        if let Some(dir) = self.path.parent() {
            sync_dir(dir);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_reload_and_rejects_corruption() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("refs.json");
        let refs = Refs::load(&path).expect("load");
        refs.update(|o| {
            o.insert(
                "c1".into(),
                Held {
                    image: "sha256:x".into(),
                    layers: vec!["a".into(), "b".into()],
                },
            );
        })
        .expect("update");
        let again = Refs::load(&path).expect("reload");
        assert_eq!(
            again.held_layers(),
            HashSet::from(["a".to_string(), "b".to_string()])
        );
        std::fs::write(&path, "{not json").expect("write");
        let err = Refs::load(&path).err().expect("corrupt").to_string();
        assert!(err.contains("refs.json"), "{err}");
    }
}
