//! The depot: one directory per container with everything the daemon must
//! find again after a restart.
//!
//! ```text
//! <depot>/<handle>/container.json   the record (spec, properties, image, volume)
//! <depot>/<handle>/bundle/          config.json and the rootfs mount point
//! <depot>/<handle>/processes/<id>/  one keeper directory per process
//! ```
//! Records are replaced atomically (temp file, rename), so a daemon crash
//! leaves the old or the new record, never half of one. They are not
//! fsynced: after a host crash no container is left to restore (like the
//! runtime's own state), so a sync would only slow create down.

use std::io::Write;
use std::path::{Path, PathBuf};

use garden_api::types::{ContainerSpec, Properties};
use serde::{Deserialize, Serialize};

pub const RECORD: &str = "container.json";

#[derive(Debug, thiserror::Error)]
pub enum DepotError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("container record {path} is invalid: {source}")]
    Invalid {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// What the daemon remembers of a container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub handle: String,
    /// The spec as created (the image password is never stored).
    pub spec: ContainerSpec,
    /// Mutable: changed by the properties routes.
    pub properties: Properties,
    /// Unix time of creation, in nanoseconds.
    pub created_unix_ns: u128,
    /// The image's id in the store and its size (for the total disk scope).
    pub image_id: String,
    pub image_bytes: u64,
    pub image_inodes: u64,
    /// Default environment, working directory and user from the image.
    pub image_env: Vec<String>,
    pub image_dir: String,
    pub image_user: String,
    /// Container root's host uid/gid (0 when privileged).
    pub root_host_id: u32,
    /// Stop was called: no more processes.
    pub stopped: bool,
}

#[derive(Debug, Clone)]
pub struct Depot {
    root: PathBuf,
}

impl Depot {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn dir(&self, handle: &str) -> PathBuf {
        self.root.join(handle)
    }

    pub fn bundle(&self, handle: &str) -> PathBuf {
        self.dir(handle).join("bundle")
    }

    pub fn processes(&self, handle: &str) -> PathBuf {
        self.dir(handle).join("processes")
    }

    /// Creates the container's directory; fails if it exists.
    pub fn claim(&self, handle: &str) -> Result<PathBuf, DepotError> {
        std::fs::create_dir_all(&self.root).map_err(io("creating", &self.root))?;
        let dir = self.dir(handle);
        std::fs::create_dir(&dir).map_err(io("creating", &dir))?;
        for d in [self.bundle(handle).join("rootfs"), self.processes(handle)] {
            std::fs::create_dir_all(&d).map_err(io("creating", &d))?;
        }
        Ok(dir)
    }

    pub fn save(&self, record: &Record) -> Result<(), DepotError> {
        let dir = self.dir(&record.handle);
        let path = dir.join(RECORD);
        let tmp = dir.join(".container.json.tmp");
        let bytes = serde_json::to_vec_pretty(record).map_err(|source| DepotError::Invalid {
            path: path.clone(),
            source,
        })?;
        let mut f = std::fs::File::create(&tmp).map_err(io("creating", &tmp))?;
        f.write_all(&bytes).map_err(io("writing", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(io("renaming", &tmp))
    }

    pub fn load(&self, handle: &str) -> Result<Record, DepotError> {
        let path = self.dir(handle).join(RECORD);
        let bytes = std::fs::read(&path).map_err(io("reading", &path))?;
        serde_json::from_slice(&bytes).map_err(|source| DepotError::Invalid { path, source })
    }

    /// Handles with a directory in the depot (records may be missing for a
    /// create that crashed half-way).
    pub fn handles(&self) -> Result<Vec<String>, DepotError> {
        let entries = match std::fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(DepotError::Io {
                    action: "listing",
                    path: self.root.clone(),
                    source,
                })
            }
        };
        let mut out: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !n.starts_with('.'))
            .collect();
        out.sort();
        Ok(out)
    }

    pub fn remove(&self, handle: &str) -> Result<(), DepotError> {
        let dir = self.dir(handle);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(DepotError::Io {
                action: "removing",
                path: dir,
                source,
            }),
        }
    }
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> DepotError + 'a {
    move |source| DepotError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_claims_are_exclusive() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let depot = Depot::new(tmp.path().join("depot"));
        depot.claim("a").expect("claim");
        assert!(depot.claim("a").is_err());
        let r = Record {
            handle: "a".into(),
            spec: ContainerSpec::default(),
            properties: [("k".to_string(), "v".to_string())].into(),
            created_unix_ns: 1,
            image_id: "sha256:x".into(),
            image_bytes: 2,
            image_inodes: 3,
            image_env: vec!["A=1".into()],
            image_dir: "/".into(),
            image_user: String::new(),
            root_host_id: 4294967294,
            stopped: false,
        };
        depot.save(&r).expect("save");
        assert_eq!(depot.load("a").expect("load").properties, r.properties);
        assert_eq!(depot.handles().expect("handles"), vec!["a".to_string()]);
        depot.remove("a").expect("remove");
        depot.remove("a").expect("remove twice");
        assert!(depot.handles().expect("handles").is_empty());
    }
}
