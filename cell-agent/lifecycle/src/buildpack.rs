//! One buildpack on disk: where its key puts it, which scripts it has, its
//! name and version.

use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

/// Why a buildpack cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BuildpackError {
    /// The directory of a key is missing.
    #[error("buildpack {key}: {} does not exist (was it downloaded?)", path.display())]
    Missing {
        /// The buildpack key.
        key: String,
        /// Where it was expected.
        path: PathBuf,
    },
    /// The directory cannot be read.
    #[error("buildpack {key}: reading {}: {source}", path.display())]
    Read {
        /// The buildpack key.
        key: String,
        /// What was read.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The directory name of a buildpack key: the first 32 hex digits of
/// SHA-256 of the key (controller-lite's `recipes::buildpack_dir`).
pub fn dir_name(key: &str) -> String {
    let hash = hex::encode(Sha256::digest(key.as_bytes()));
    hash[..32].to_string()
}

/// A buildpack's lifecycle scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Script {
    /// `bin/detect <build>`.
    Detect,
    /// `bin/supply <build> <cache> <deps> <idx>`.
    Supply,
    /// `bin/finalize <build> <cache> <deps> <idx> <profile.d>`.
    Finalize,
    /// `bin/compile <build> <cache>` (legacy).
    Compile,
    /// `bin/release <build>`.
    Release,
}

impl Script {
    /// `bin/<name>`.
    pub fn rel_path(self) -> &'static str {
        match self {
            Script::Detect => "bin/detect",
            Script::Supply => "bin/supply",
            Script::Finalize => "bin/finalize",
            Script::Compile => "bin/compile",
            Script::Release => "bin/release",
        }
    }
}

/// A buildpack found in the buildpacks directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Buildpack {
    /// The key it was named by in `-buildpackOrder`.
    pub key: String,
    /// Its root (holding `bin/`).
    pub dir: PathBuf,
}

impl Buildpack {
    /// Finds the buildpack of `key` under `buildpacks_dir`. A zip holding
    /// one top-level directory is looked into: a directory with exactly
    /// one entry, itself a directory, and no `bin/` uses that entry.
    pub fn locate(buildpacks_dir: &Path, key: &str) -> Result<Buildpack, BuildpackError> {
        let dir = buildpacks_dir.join(dir_name(key));
        if !dir.is_dir() {
            return Err(BuildpackError::Missing {
                key: key.into(),
                path: dir,
            });
        }
        let read = |source| BuildpackError::Read {
            key: key.into(),
            path: dir.clone(),
            source,
        };
        let mut entries = Vec::new();
        for e in std::fs::read_dir(&dir).map_err(read)? {
            entries.push(e.map_err(read)?.path());
        }
        let root = match entries.as_slice() {
            [only] if only.is_dir() && !dir.join("bin").exists() => only.clone(),
            _ => dir,
        };
        Ok(Buildpack {
            key: key.into(),
            dir: root,
        })
    }

    /// The path of one of its scripts.
    pub fn script(&self, s: Script) -> PathBuf {
        self.dir.join(s.rel_path())
    }

    /// Whether it has the script.
    pub fn has(&self, s: Script) -> bool {
        self.script(s).is_file()
    }

    /// `name:` of its `config.yml`, else of its `manifest.yml`.
    pub fn configured_name(&self) -> Option<String> {
        ["config.yml", "manifest.yml"]
            .iter()
            .find_map(|f| yaml_field(&self.dir.join(f), "name"))
    }

    /// Its `VERSION` file, else `version:` of its `manifest.yml`, else "".
    pub fn version(&self) -> String {
        std::fs::read_to_string(self.dir.join("VERSION"))
            .ok()
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .or_else(|| yaml_field(&self.dir.join("manifest.yml"), "version"))
            .unwrap_or_default()
    }
}

/// A top-level scalar of a YAML file, if the file and field exist.
fn yaml_field(path: &Path, field: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).ok()?;
    let value = match doc.get(field)? {
        serde_yaml_ng::Value::String(s) => s.trim().to_string(),
        serde_yaml_ng::Value::Number(n) => n.to_string(),
        _ => return None,
    };
    (!value.is_empty()).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_name_is_the_truncated_sha256_of_the_key() {
        let expected = &hex::encode(Sha256::digest(b"ruby_buildpack"))[..32];
        assert_eq!(dir_name("ruby_buildpack"), expected);
        // sha256("abc"), a published test vector.
        assert_eq!(dir_name("abc"), "ba7816bf8f01cfea414140de5dae2223");
        assert_eq!(dir_name("abc").len(), 32);
    }

    #[test]
    fn locate_looks_into_a_single_top_level_directory() {
        let tmp = tempfile::tempdir().expect("tmp");
        let flat = tmp.path().join(dir_name("flat"));
        std::fs::create_dir_all(flat.join("bin")).expect("mkdir");
        let bp = Buildpack::locate(tmp.path(), "flat").expect("flat");
        assert_eq!(bp.dir, flat);

        let nested = tmp.path().join(dir_name("nested"));
        std::fs::create_dir_all(nested.join("go-buildpack-v1/bin")).expect("mkdir");
        let bp = Buildpack::locate(tmp.path(), "nested").expect("nested");
        assert_eq!(bp.dir, nested.join("go-buildpack-v1"));

        let err = Buildpack::locate(tmp.path(), "absent").expect_err("missing");
        assert!(err.to_string().contains("buildpack absent"), "{err}");
    }

    #[test]
    fn name_and_version_from_config_manifest_and_version_file() {
        let tmp = tempfile::tempdir().expect("tmp");
        let bp = Buildpack {
            key: "k".into(),
            dir: tmp.path().to_path_buf(),
        };
        assert_eq!(bp.configured_name(), None);
        assert_eq!(bp.version(), "");
        std::fs::write(
            tmp.path().join("manifest.yml"),
            "language: go\nname: go-from-manifest\nversion: 1.2.3\n",
        )
        .expect("write");
        assert_eq!(bp.configured_name().as_deref(), Some("go-from-manifest"));
        assert_eq!(bp.version(), "1.2.3");
        std::fs::write(tmp.path().join("config.yml"), "name: go\n").expect("write");
        std::fs::write(tmp.path().join("VERSION"), "1.10.2\n").expect("write");
        assert_eq!(bp.configured_name().as_deref(), Some("go"));
        assert_eq!(bp.version(), "1.10.2");
    }
}
