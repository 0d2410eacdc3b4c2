//! OCI image layouts on disk: `index.json`, `oci-layout` and
//! `blobs/<algorithm>/<hex>`. Every blob read is checked against its digest.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use oci_spec::image::ImageIndex;

use crate::digest::{Digest, HashingReader};
use crate::manifest::{self, Document, ManifestError};

/// The annotation naming a manifest's tag in a layout's index.
const REF_NAME: &str = "org.opencontainers.image.ref.name";

#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("OCI layout {path}: reading {file}: {source}")]
    Read {
        path: PathBuf,
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("OCI layout {path}: index.json: {source}")]
    Index {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("OCI layout {path}: no manifest tagged {tag:?} (tags: {tags})")]
    NoSuchTag {
        path: PathBuf,
        tag: String,
        tags: String,
    },
    #[error(
        "OCI layout {path}: {count} manifests and no tag given; name one with oci://{path}#TAG"
    )]
    Ambiguous { path: PathBuf, count: usize },
    #[error("OCI layout {path}: blob {digest} does not match its digest (got {actual})")]
    Corrupt {
        path: PathBuf,
        digest: Digest,
        actual: Digest,
    },
    #[error("OCI layout {path}: blob {digest} is larger than {limit} bytes")]
    TooLarge {
        path: PathBuf,
        digest: Digest,
        limit: u64,
    },
    #[error(transparent)]
    Manifest(#[from] ManifestError),
}

/// An OCI image layout directory.
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    pub fn new(root: &Path) -> Layout {
        Layout {
            root: root.to_path_buf(),
        }
    }

    /// Where a blob lives.
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        let name = d.file_name();
        let (alg, hex) = name.split_once('-').unwrap_or((&name, ""));
        self.root.join("blobs").join(alg).join(hex)
    }

    fn read_err(&self, file: String) -> impl FnOnce(std::io::Error) -> LayoutError + '_ {
        move |source| LayoutError::Read {
            path: self.root.clone(),
            file,
            source,
        }
    }

    /// Reads a small blob (manifest, index, config) and verifies it.
    pub fn read_blob(&self, d: &Digest) -> Result<Vec<u8>, LayoutError> {
        let path = self.blob_path(d);
        let file = File::open(&path).map_err(self.read_err(format!("blob {d}")))?;
        let mut bytes = Vec::new();
        let limit = crate::registry::MAX_DOCUMENT_BYTES;
        file.take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(self.read_err(format!("blob {d}")))?;
        if bytes.len() as u64 > limit {
            return Err(LayoutError::TooLarge {
                path: self.root.clone(),
                digest: d.clone(),
                limit,
            });
        }
        let actual = {
            let mut h = crate::digest::Hasher::new(d.algorithm());
            h.update(&bytes);
            h.finish()
        };
        self.check(d, actual)?;
        Ok(bytes)
    }

    /// Verifies a (large) blob by reading it whole.
    pub fn verify_blob(&self, d: &Digest) -> Result<(), LayoutError> {
        let file = File::open(self.blob_path(d)).map_err(self.read_err(format!("blob {d}")))?;
        let (actual, _) = HashingReader::new(file, d.algorithm())
            .finish()
            .map_err(self.read_err(format!("blob {d}")))?;
        self.check(d, actual)
    }

    fn check(&self, d: &Digest, actual: Digest) -> Result<(), LayoutError> {
        if *d == actual {
            Ok(())
        } else {
            Err(LayoutError::Corrupt {
                path: self.root.clone(),
                digest: d.clone(),
                actual,
            })
        }
    }

    /// The image manifest for `tag` (or the only one), through nested
    /// indexes down to linux/amd64. Returns its digest and parsed form.
    pub fn resolve(
        &self,
        tag: Option<&str>,
    ) -> Result<(Digest, oci_spec::image::ImageManifest), LayoutError> {
        let index_bytes = std::fs::read(self.root.join("index.json"))
            .map_err(self.read_err("index.json".into()))?;
        let index: ImageIndex =
            serde_json::from_slice(&index_bytes).map_err(|source| LayoutError::Index {
                path: self.root.clone(),
                source,
            })?;
        let mut digest = self.pick(&index, tag)?;
        let what = format!("{}", self.root.display());
        // An index may point at an index (a multi-arch image); a few levels at most.
        for _ in 0..4 {
            let bytes = self.read_blob(&digest)?;
            match manifest::parse(&bytes, None, &what)? {
                Document::Image(m) => return Ok((digest, *m)),
                Document::Index(i) => digest = manifest::select_platform(&i, &what)?,
            }
        }
        Err(ManifestError::NoPlatform {
            what,
            available: "indexes nested too deeply".into(),
        }
        .into())
    }

    fn pick(&self, index: &ImageIndex, tag: Option<&str>) -> Result<Digest, LayoutError> {
        let name_of = |d: &oci_spec::image::Descriptor| {
            d.annotations()
                .as_ref()
                .and_then(|a| a.get(REF_NAME))
                .cloned()
        };
        let chosen = match tag {
            Some(tag) => index.manifests().iter().find(|d| {
                name_of(d)
                    .is_some_and(|n| n == tag || n.rsplit_once(':').is_some_and(|(_, t)| t == tag))
            }),
            None if index.manifests().len() == 1 => index.manifests().first(),
            None => {
                return Err(LayoutError::Ambiguous {
                    path: self.root.clone(),
                    count: index.manifests().len(),
                })
            }
        };
        let Some(d) = chosen else {
            let tags: Vec<String> = index.manifests().iter().filter_map(name_of).collect();
            return Err(LayoutError::NoSuchTag {
                path: self.root.clone(),
                tag: tag.unwrap_or_default().to_string(),
                tags: if tags.is_empty() {
                    "none".into()
                } else {
                    tags.join(", ")
                },
            });
        };
        let s = d.digest().to_string();
        s.parse().map_err(|_| {
            ManifestError::BadDigest {
                what: self.root.display().to_string(),
                field: "manifest digest",
                value: s,
            }
            .into()
        })
    }
}
