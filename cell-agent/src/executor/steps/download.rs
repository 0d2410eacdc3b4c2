//! The Download step: fetch an archive over http(s) (at most N at once per
//! cell, from the cache when its key is known), check its digest, and
//! stream it into the container as tar.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Once};
use std::time::Duration;

use diego::models::action::DownloadAction;
use futures_util::StreamExt;
use garden_api::client::ClientError;
use garden_api::StreamInSpec;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use tokio_util::io::ReaderStream;
use tokio_util::sync::CancellationToken;

use super::archive::{self, ArchiveError};
use super::cache::{Cache, CacheError, EntryInfo};
use super::{StepContext, StepError, StepResult};
use crate::executor::config::ExecutorConfig;

/// Why a download failed.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The HTTP client could not be built.
    #[error("building the HTTP client: {0}")]
    Client(reqwest::Error),
    /// The request failed.
    #[error("downloading {url}: {source}")]
    Http {
        /// What was fetched.
        url: String,
        /// The cause.
        source: reqwest::Error,
    },
    /// The server refused.
    #[error("downloading {url}: server answered {status}")]
    Status {
        /// What was fetched.
        url: String,
        /// Its answer.
        status: u16,
    },
    /// The digest is not what the recipe says.
    #[error("checksum mismatch for {url}: expected {algorithm} {expected}, got {actual}")]
    Checksum {
        /// What was fetched.
        url: String,
        /// `sha1` or `sha256`.
        algorithm: String,
        /// The recipe's digest.
        expected: String,
        /// The digest of what arrived.
        actual: String,
    },
    /// An algorithm other than sha1 and sha256.
    #[error("unsupported checksum algorithm {0:?} (sha1 or sha256)")]
    Algorithm(String),
    /// Scratch files failed.
    #[error("download scratch file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The cache failed.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// The archive could not be unpacked.
    #[error("unpacking {url}: {source}")]
    Archive {
        /// What was fetched.
        url: String,
        /// The cause.
        source: ArchiveError,
    },
    /// Garden refused the archive.
    #[error("copying {url} into the container at {to}: {source}")]
    StreamIn {
        /// What was fetched.
        url: String,
        /// Where it went.
        to: String,
        /// The garden error.
        source: Box<ClientError>,
    },
}

/// Installs rustls's ring provider once per process (the workspace builds
/// reqwest without a default provider).
pub(crate) fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The cell's downloads: one HTTP client, a limit on concurrent fetches, a
/// cache.
pub(crate) struct Downloader {
    pub(crate) http: reqwest::Client,
    slots: Semaphore,
    cache: Cache,
    temp_dir: PathBuf,
    credentials: BTreeMap<String, String>,
}

/// An archive on local disk, and its size.
struct Fetched {
    file: File,
    size: u64,
}

impl Downloader {
    pub(crate) fn new(config: &ExecutorConfig) -> Result<Self, DownloadError> {
        install_crypto_provider();
        let temp_dir = &config.temp_dir;
        let mut http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(120));
        if let Some(pem) = &config.http_ca_pem {
            for cert in reqwest::Certificate::from_pem_bundle(pem).map_err(DownloadError::Client)? {
                http = http.add_root_certificate(cert);
            }
        }
        let http = http.build().map_err(DownloadError::Client)?;
        std::fs::create_dir_all(temp_dir).map_err(|source| DownloadError::Io {
            path: temp_dir.to_owned(),
            source,
        })?;
        Ok(Self {
            http,
            slots: Semaphore::new(config.max_concurrent_downloads.max(1)),
            cache: Cache::open(&config.cache_dir, config.cache_max_bytes)?,
            temp_dir: temp_dir.to_owned(),
            credentials: config.http_credentials.clone(),
        })
    }

    /// Adds the bearer token configured for `url`'s origin, if any.
    pub(crate) fn authorize(
        &self,
        request: reqwest::RequestBuilder,
        url: &str,
    ) -> reqwest::RequestBuilder {
        let token = self.credentials.iter().find(|(origin, _)| {
            url.strip_prefix(origin.trim_end_matches('/'))
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        });
        match token {
            Some((_, token)) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Scratch space for archives in flight.
    pub(crate) fn temp_dir(&self) -> &Path {
        &self.temp_dir
    }

    /// The cache's keys, least recently used first.
    pub(crate) fn cached_keys(&self) -> Vec<String> {
        self.cache.keys()
    }

    /// Bytes the cache holds.
    pub(crate) fn cached_bytes(&self) -> u64 {
        self.cache.size()
    }

    async fn fetch(&self, action: &DownloadAction) -> Result<Fetched, DownloadError> {
        let algorithm = action.checksum_algorithm.to_ascii_lowercase();
        if !matches!(algorithm.as_str(), "" | "sha1" | "sha256") {
            return Err(DownloadError::Algorithm(action.checksum_algorithm.clone()));
        }
        if !action.cache_key.is_empty() {
            if let Some((file, info)) = self.cache.get(&action.cache_key) {
                if verify(action, &algorithm, &info).is_ok() {
                    tracing::debug!(key = %action.cache_key, "download cache hit");
                    return Ok(Fetched {
                        file,
                        size: info.size,
                    });
                }
            }
        }
        let _slot = self.slots.acquire().await;
        let dir = if action.cache_key.is_empty() {
            &self.temp_dir
        } else {
            self.cache.dir()
        };
        let (path, info) = self.get(action, dir).await?;
        verify(action, &algorithm, &info)?;
        let size = info.size;
        let file = if action.cache_key.is_empty() {
            let file = File::open(&path).map_err(|source| DownloadError::Io {
                path: path.clone(),
                source,
            })?;
            let _ = std::fs::remove_file(&path);
            file
        } else {
            self.cache.insert(path, info)?
        };
        Ok(Fetched { file, size })
    }

    /// GETs `action.from` into a new file in `dir`, hashing as it goes.
    async fn get(
        &self,
        action: &DownloadAction,
        dir: &Path,
    ) -> Result<(PathBuf, EntryInfo), DownloadError> {
        let url = &action.from;
        let http = |source| DownloadError::Http {
            url: url.clone(),
            source,
        };
        let response = self
            .authorize(self.http.get(url), url)
            .send()
            .await
            .map_err(http)?;
        if !response.status().is_success() {
            return Err(DownloadError::Status {
                url: url.clone(),
                status: response.status().as_u16(),
            });
        }
        let scratch = tempfile::Builder::new()
            .prefix("incoming-")
            .suffix(".part")
            .tempfile_in(dir)
            .map_err(|source| DownloadError::Io {
                path: dir.to_owned(),
                source,
            })?;
        let (mut file, path) = scratch.keep().map_err(|e| DownloadError::Io {
            path: dir.to_owned(),
            source: e.error,
        })?;
        let guard = RemoveOnDrop(Some(path.clone()));
        let (mut sha1, mut sha256, mut size) = (Sha1::new(), Sha256::new(), 0u64);
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(http)?;
            sha1.update(&chunk);
            sha256.update(&chunk);
            size += chunk.len() as u64;
            file.write_all(&chunk).map_err(|source| DownloadError::Io {
                path: path.clone(),
                source,
            })?;
        }
        guard.keep();
        let info = EntryInfo {
            key: action.cache_key.clone(),
            size,
            sha1: hex::encode(sha1.finalize()),
            sha256: hex::encode(sha256.finalize()),
        };
        Ok((path, info))
    }
}

/// Removes a scratch file unless kept (a failed or cancelled download).
struct RemoveOnDrop(Option<PathBuf>);

impl RemoveOnDrop {
    fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn verify(action: &DownloadAction, algorithm: &str, info: &EntryInfo) -> Result<(), DownloadError> {
    let actual = match algorithm {
        "sha1" => &info.sha1,
        "sha256" => &info.sha256,
        _ => return Ok(()),
    };
    if actual.eq_ignore_ascii_case(action.checksum_value.trim()) {
        Ok(())
    } else {
        Err(DownloadError::Checksum {
            url: action.from.clone(),
            algorithm: algorithm.to_owned(),
            expected: action.checksum_value.clone(),
            actual: actual.clone(),
        })
    }
}

/// The Download step.
pub(super) async fn step(
    action: &DownloadAction,
    ctx: &StepContext,
    cancel: &CancellationToken,
) -> StepResult {
    let work = download_into(action, ctx);
    tokio::select! {
        result = work => result,
        () = cancel.cancelled() => Err(StepError::Cancelled),
    }
}

async fn download_into(action: &DownloadAction, ctx: &StepContext) -> StepResult {
    let source = ctx.log.source(&action.log_source).to_owned();
    if !action.artifact.is_empty() {
        ctx.progress(&source, &format!("Downloading {}...", action.artifact));
    }
    let downloads: &Arc<Downloader> = &ctx.downloads;
    let fetched = downloads.fetch(action).await?;
    let url = action.from.clone();
    let temp_dir = downloads.temp_dir().to_owned();
    let tar = tokio::task::spawn_blocking(move || -> Result<File, DownloadError> {
        let mut out = tempfile::tempfile_in(&temp_dir).map_err(|source| DownloadError::Io {
            path: temp_dir.clone(),
            source,
        })?;
        archive::to_tar(fetched.file, &mut out)
            .map_err(|source| DownloadError::Archive { url, source })?;
        Ok(out)
    })
    .await
    .map_err(|e| DownloadError::Io {
        path: ctx.downloads.temp_dir().to_owned(),
        source: std::io::Error::other(e),
    })??;
    let stream = ReaderStream::new(tokio::fs::File::from_std(tar));
    let spec = StreamInSpec {
        path: action.to.clone(),
        user: action.user.clone(),
    };
    ctx.garden
        .stream_in(&ctx.handle, &spec, Box::pin(stream))
        .await
        .map_err(|source| DownloadError::StreamIn {
            url: action.from.clone(),
            to: action.to.clone(),
            source: Box::new(source),
        })?;
    if !action.artifact.is_empty() {
        ctx.progress(
            &source,
            &format!(
                "Downloaded {} ({})",
                action.artifact,
                human_size(fetched.size)
            ),
        );
    }
    Ok(())
}

/// `12.3M`, `4K`, `17B`.
pub(crate) fn human_size(bytes: u64) -> String {
    const UNITS: [(&str, u64); 3] = [("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)];
    for (unit, size) in UNITS {
        if bytes >= size {
            let value = bytes as f64 / size as f64;
            return if value >= 10.0 {
                format!("{value:.0}{unit}")
            } else {
                format!("{value:.1}{unit}")
            };
        }
    }
    format!("{bytes}B")
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A server answering every GET after 200 ms; the most requests it saw
    /// at once.
    async fn slow_server() -> (String, Arc<AtomicUsize>) {
        let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let seen = most.clone();
        let app = axum::Router::new().route(
            "/{name}",
            axum::routing::get(move || {
                let (now, most) = (now.clone(), most.clone());
                async move {
                    let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(n, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    now.fetch_sub(1, Ordering::SeqCst);
                    "body"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}"), seen)
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn at_most_n_downloads_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = ExecutorConfig {
            cache_dir: dir.path().join("cache"),
            temp_dir: dir.path().join("tmp"),
            max_concurrent_downloads: 2,
            ..ExecutorConfig::default()
        };
        let downloader = Arc::new(Downloader::new(&config).expect("downloader"));
        let (base, most) = slow_server().await;
        let fetches = (0..6).map(|i| {
            let downloader = downloader.clone();
            let action = DownloadAction {
                from: format!("{base}/{i}"),
                cache_key: format!("key-{i}"),
                ..DownloadAction::default()
            };
            tokio::spawn(async move { downloader.fetch(&action).await.map(|f| f.size) })
        });
        for fetch in futures_util::future::join_all(fetches).await {
            assert_eq!(fetch.expect("join").expect("fetch"), 4);
        }
        assert_eq!(most.load(Ordering::SeqCst), 2);
        assert_eq!(downloader.cached_keys().len(), 6);
        let bad = DownloadAction {
            from: format!("{base}/x"),
            checksum_algorithm: "md5".into(),
            ..DownloadAction::default()
        };
        let err = downloader.fetch(&bad).await.err().expect("md5 refused");
        assert_eq!(
            err.to_string(),
            "unsupported checksum algorithm \"md5\" (sha1 or sha256)"
        );
    }

    #[test]
    fn sizes_read_like_diegos() {
        assert_eq!(human_size(17), "17B");
        assert_eq!(human_size(4096), "4.0K");
        assert_eq!(human_size(12 << 20), "12M");
        assert_eq!(human_size(3 << 30), "3.0G");
    }
}
