//! Pulling each kind of source into layers.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use futures_util::future::try_join_all;

use super::{io_err, Image, ImageError, Store};
use crate::digest::Digest;
use crate::extract::{self, LayerStats};
use crate::layout::Layout;
use crate::manifest::{self, Document, ImageConfig, LayerRef};
use crate::mapping::{DevicePolicy, IdMapping};
use crate::reference::{self, Reference, RegistryRef, Source};
use crate::registry::{Credentials, Session};

/// What a local source's version (path, inode, size, times) is known to be.
#[derive(Clone)]
pub enum LocalInfo {
    /// A directory used as it is: its measured size.
    Stats(LayerStats),
    /// A tarball: its digest.
    Digest(Digest),
}

impl Store {
    /// Pulls `uri` (see [`crate::reference`]) with layers owned as `mapping`
    /// says, unpacking only layers the store lacks.
    pub async fn pull(
        &self,
        uri: &str,
        creds: Option<Credentials>,
        mapping: &IdMapping,
    ) -> Result<Image, ImageError> {
        self.inner.metrics.pulls.fetch_add(1, Ordering::Relaxed);
        let source = reference::parse(uri)?;
        let image = match source {
            Source::Dir(path) => self.pull_dir(&path, *mapping).await,
            Source::Tarball(path) => self.pull_tarball(&path, *mapping).await,
            Source::Layout { path, tag } => self.pull_layout(&path, tag.as_deref(), *mapping).await,
            Source::Registry(r) => self.pull_registry(&r, creds.as_ref(), *mapping).await,
        }?;
        tracing::debug!(uri, image = %image.id, layers = image.layers.len(), "image pulled");
        Ok(image)
    }

    async fn pull_dir(&self, path: &Path, mapping: IdMapping) -> Result<Image, ImageError> {
        let version = version_of(path)?;
        let id = format!("dir:{}", path.display());
        if mapping == IdMapping::Identity {
            let stats = match self.local(&version) {
                Some(LocalInfo::Stats(s)) => s,
                _ => {
                    let p = path.to_path_buf();
                    let s = blocking(move || extract::measure(&p).map_err(io_err("measuring", &p)))
                        .await?;
                    self.remember(version, LocalInfo::Stats(s));
                    s
                }
            };
            return Ok(image(
                id,
                ImageConfig::default(),
                vec![(path.to_path_buf(), String::new(), stats)],
            ));
        }
        let key = format!(
            "dir-{}{}",
            &Digest::sha256(version.as_bytes()).hex()[..32],
            mapping.key_suffix()
        );
        let src = path.to_path_buf();
        let devices = self.devices(mapping);
        let (rootfs, stats) = self
            .inner
            .layers
            .ensure(
                &key,
                &path.display().to_string(),
                mapping,
                &self.inner.metrics,
                |dest| {
                    blocking(move || {
                        crate::shift::shifted_copy(&src, &dest, mapping, devices).map_err(
                            |source| ImageError::Shift {
                                path: src.clone(),
                                source,
                            },
                        )
                    })
                },
            )
            .await?;
        Ok(image(
            id,
            ImageConfig::default(),
            vec![(rootfs, key, stats)],
        ))
    }

    async fn pull_tarball(&self, path: &Path, mapping: IdMapping) -> Result<Image, ImageError> {
        let version = version_of(path)?;
        let digest = match self.local(&version) {
            Some(LocalInfo::Digest(d)) => d,
            _ => {
                let p = path.to_path_buf();
                let d = blocking(move || {
                    let f = std::fs::File::open(&p).map_err(io_err("opening", &p))?;
                    let (d, _) =
                        crate::digest::HashingReader::new(f, crate::digest::Algorithm::Sha256)
                            .finish()
                            .map_err(io_err("reading", &p))?;
                    Ok(d)
                })
                .await?;
                self.remember(version, LocalInfo::Digest(d.clone()));
                d
            }
        };
        let key = format!("{}{}", digest.file_name(), mapping.key_suffix());
        let src = path.to_path_buf();
        let devices = self.devices(mapping);
        let (rootfs, stats) = self
            .inner
            .layers
            .ensure(
                &key,
                &path.display().to_string(),
                mapping,
                &self.inner.metrics,
                |dest| {
                    blocking(move || {
                        let f = std::fs::File::open(&src).map_err(io_err("opening", &src))?;
                        extract::unpack(f, &dest, mapping, devices, None).map_err(|source| {
                            ImageError::Extract {
                                layer: src.display().to_string(),
                                source,
                            }
                        })
                    })
                },
            )
            .await?;
        Ok(image(
            digest.to_string(),
            ImageConfig::default(),
            vec![(rootfs, key, stats)],
        ))
    }

    async fn pull_layout(
        &self,
        path: &Path,
        tag: Option<&str>,
        mapping: IdMapping,
    ) -> Result<Image, ImageError> {
        let root = path.to_path_buf();
        let tag = tag.map(str::to_string);
        let (config_id, config, refs) = blocking(move || {
            let layout = Layout::new(&root);
            let (digest, m) = layout.resolve(tag.as_deref())?;
            let what = format!("{}@{digest}", root.display());
            let plan = manifest::plan(&m, &what)?;
            let bytes = layout.read_blob(&plan.config)?;
            let (config, refs) = manifest::parse_config(&bytes, &plan, &what)?;
            Ok((plan.config, config, refs))
        })
        .await?;
        let layers = try_join_all(refs.iter().map(|l| {
            let blob = Layout::new(path).blob_path(&l.digest);
            let (digest, diff_id, root) = (l.digest.clone(), l.diff_id.clone(), path.to_path_buf());
            let devices = self.devices(mapping);
            self.layer(l, mapping, move |dest| {
                blocking(move || {
                    Layout::new(&root).verify_blob(&digest)?;
                    let f = std::fs::File::open(&blob).map_err(io_err("opening", &blob))?;
                    unpack_layer(f, &dest, (mapping, devices), &digest, &diff_id)
                })
            })
        }))
        .await?;
        Ok(image(config_id.to_string(), config, layers))
    }

    async fn pull_registry(
        &self,
        r: &RegistryRef,
        creds: Option<&Credentials>,
        mapping: IdMapping,
    ) -> Result<Image, ImageError> {
        let cache = &self.inner.registry_cache;
        let session = cache.session(&self.inner.registry, r, creds).await?;
        let pulled = self.pull_with(&session, r, mapping).await;
        if pulled.is_err() {
            cache.drop_session(r, creds);
        }
        pulled
    }

    async fn pull_with(
        &self,
        session: &Session,
        r: &RegistryRef,
        mapping: IdMapping,
    ) -> Result<Image, ImageError> {
        let what = r.to_string();
        let (bytes, media_type) = self.manifest(session, &r.reference).await?;
        let m = match manifest::parse(&bytes, media_type.as_deref(), &what)? {
            Document::Image(m) => m,
            Document::Index(i) => {
                let d = manifest::select_platform(&i, &what)?;
                let (bytes, media_type) = self.manifest(session, &Reference::Digest(d)).await?;
                match manifest::parse(&bytes, media_type.as_deref(), &what)? {
                    Document::Image(m) => m,
                    Document::Index(_) => {
                        return Err(manifest::ManifestError::NoPlatform {
                            what,
                            available: "an index inside an index".into(),
                        }
                        .into())
                    }
                }
            }
        };
        let plan = manifest::plan(&m, &what)?;
        let cache = &self.inner.registry_cache;
        let config_bytes = match cache.document(&plan.config) {
            Some(b) => b,
            None => cache.remember(plan.config.clone(), session.blob_bytes(&plan.config).await?),
        };
        let (config, refs) = manifest::parse_config(&config_bytes, &plan, &what)?;
        let layers = try_join_all(
            refs.iter()
                .map(|l| self.registry_layer(session, l, mapping)),
        )
        .await?;
        Ok(image(plan.config.to_string(), config, layers))
    }

    /// A manifest by tag (always asked: tags move) or by digest (from the
    /// cache when seen before).
    async fn manifest(
        &self,
        session: &Session,
        reference: &Reference,
    ) -> Result<(std::sync::Arc<Vec<u8>>, Option<String>), ImageError> {
        let cache = &self.inner.registry_cache;
        if let Reference::Digest(d) = reference {
            if let Some(bytes) = cache.document(d) {
                return Ok((bytes, None));
            }
        }
        let fetched = session.manifest(reference).await?;
        let bytes = cache.remember(fetched.digest, fetched.bytes);
        Ok((bytes, fetched.media_type))
    }

    async fn registry_layer(
        &self,
        session: &Session,
        l: &LayerRef,
        mapping: IdMapping,
    ) -> Result<(PathBuf, String, LayerStats), ImageError> {
        self.layer(l, mapping, |dest| async move {
            let blob = dest.with_file_name("blob");
            let n = session.blob_to_file(&l.digest, Some(l.size), &blob).await?;
            self.inner
                .metrics
                .bytes_downloaded
                .fetch_add(n, Ordering::Relaxed);
            let (digest, diff_id) = (l.digest.clone(), l.diff_id.clone());
            let devices = self.devices(mapping);
            blocking(move || {
                let f = std::fs::File::open(&blob).map_err(io_err("opening", &blob))?;
                let stats = unpack_layer(f, &dest, (mapping, devices), &digest, &diff_id);
                std::fs::remove_file(&blob).map_err(io_err("removing", &blob))?;
                stats
            })
            .await
        })
        .await
    }

    /// The layer `l` under `mapping`, made by `make` if missing.
    async fn layer<F, Fut>(
        &self,
        l: &LayerRef,
        mapping: IdMapping,
        make: F,
    ) -> Result<(PathBuf, String, LayerStats), ImageError>
    where
        F: FnOnce(PathBuf) -> Fut,
        Fut: std::future::Future<Output = Result<LayerStats, ImageError>>,
    {
        let key = format!("{}{}", l.digest.file_name(), mapping.key_suffix());
        let (rootfs, stats) = self
            .inner
            .layers
            .ensure(
                &key,
                &l.digest.to_string(),
                mapping,
                &self.inner.metrics,
                make,
            )
            .await?;
        Ok((rootfs, key, stats))
    }

    fn devices(&self, mapping: IdMapping) -> DevicePolicy {
        mapping.devices(self.inner.config.skip_unprivileged_devices)
    }

    fn local(&self, version: &str) -> Option<LocalInfo> {
        let local = self.inner.local.lock().unwrap_or_else(|p| p.into_inner());
        local.get(version).cloned()
    }

    fn remember(&self, version: String, info: LocalInfo) {
        let mut local = self.inner.local.lock().unwrap_or_else(|p| p.into_inner());
        local.insert(version, info);
    }
}

fn unpack_layer(
    f: std::fs::File,
    dest: &Path,
    (mapping, devices): (IdMapping, DevicePolicy),
    digest: &Digest,
    diff_id: &Digest,
) -> Result<LayerStats, ImageError> {
    extract::unpack(f, dest, mapping, devices, Some(diff_id)).map_err(|source| {
        ImageError::Extract {
            layer: digest.to_string(),
            source,
        }
    })
}

/// Layers are given bottom first; the image lists them top first.
fn image(id: String, config: ImageConfig, layers: Vec<(PathBuf, String, LayerStats)>) -> Image {
    let mut total = LayerStats::default();
    let mut dirs = Vec::new();
    let mut keys = Vec::new();
    for (dir, key, stats) in layers.into_iter().rev() {
        total += stats;
        dirs.push(dir);
        if !key.is_empty() {
            keys.push(key);
        }
    }
    Image {
        id,
        layers: dirs,
        config,
        size_bytes: total.bytes,
        inodes: total.inodes,
        layer_keys: keys,
    }
}

/// What identifies the version of a local source: path, device, inode,
/// size and change times. (A rootfs directory changed deep inside keeps its
/// version; point the image at a new directory instead.)
fn version_of(path: &Path) -> Result<String, ImageError> {
    let md = std::fs::metadata(path).map_err(io_err("reading", path))?;
    Ok(format!(
        "{}|{}|{}|{}|{}.{}|{}.{}",
        path.display(),
        md.dev(),
        md.ino(),
        md.size(),
        md.mtime(),
        md.mtime_nsec(),
        md.ctime(),
        md.ctime_nsec()
    ))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ImageError> + Send + 'static,
) -> Result<T, ImageError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(ImageError::Task)?
}
