//! One repository's session: authenticated GETs of manifests and blobs,
//! each verified against its digest.

use std::path::Path;

use reqwest::header::{HeaderMap, ACCEPT, CONTENT_TYPE};
use reqwest::{StatusCode, Url};
use tokio::io::AsyncWriteExt;

use super::{
    bad_host, challenge_of, read_limited, request_error, status_error, Credentials, RegistryClient,
    RegistryError, MANIFEST_ACCEPT, MAX_DOCUMENT_BYTES,
};
use crate::digest::{Digest, Hasher};
use crate::reference::Reference;

/// A manifest as served: its bytes, media type and verified digest.
pub struct Fetched {
    pub bytes: Vec<u8>,
    pub media_type: Option<String>,
    pub digest: Digest,
}

#[derive(Clone)]
pub(super) enum Auth {
    Anonymous,
    Basic(Credentials),
    Bearer(String),
}

/// An authenticated connection to one repository.
pub struct Session {
    pub(super) client: RegistryClient,
    pub(super) creds: Option<Credentials>,
    pub(super) http: reqwest::Client,
    pub(super) base: Url,
    pub(super) registry: String,
    pub(super) repository: String,
    /// Replaced when the registry challenges again (an expired token).
    pub(super) auth: std::sync::RwLock<Auth>,
}

impl Session {
    pub(super) fn authorize(
        &self,
        req: reqwest::RequestBuilder,
        auth: &Auth,
    ) -> reqwest::RequestBuilder {
        match auth {
            Auth::Anonymous => req,
            Auth::Basic(c) => req.basic_auth(&c.username, Some(&c.password)),
            Auth::Bearer(t) => req.bearer_auth(t),
        }
    }

    fn url(&self, kind: &str, reference: &str) -> Result<Url, RegistryError> {
        self.base
            .join(&format!("v2/{}/{kind}/{reference}", self.repository))
            .map_err(|_| bad_host(&self.registry))
    }

    pub(super) fn set_auth(&self, auth: Auth) {
        *self.auth.write().unwrap_or_else(|p| p.into_inner()) = auth;
    }

    fn current_auth(&self) -> Auth {
        self.auth.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// GETs `url`; a 401 (say, an expired token) is answered once with a
    /// fresh authentication before giving up.
    async fn get(
        &self,
        url: &Url,
        headers: HeaderMap,
        what: impl FnOnce() -> String,
    ) -> Result<reqwest::Response, RegistryError> {
        let mut retried = false;
        let resp = loop {
            let req = self.http.get(url.clone()).headers(headers.clone());
            let resp = self
                .authorize(req, &self.current_auth())
                .send()
                .await
                .map_err(|e| request_error(url.as_str(), e))?;
            if resp.status() != StatusCode::UNAUTHORIZED || retried {
                break resp;
            }
            retried = true;
            let header = challenge_of(&resp);
            let auth = self
                .client
                .authenticate(self, &header, self.creds.as_ref())
                .await?;
            self.set_auth(auth);
        };
        match resp.status() {
            s if s.is_success() => Ok(resp),
            StatusCode::NOT_FOUND => Err(RegistryError::NotFound {
                registry: self.registry.clone(),
                what: what(),
            }),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(RegistryError::Unauthorized {
                registry: self.registry.clone(),
                detail: format!("not allowed to pull {}", what()),
            }),
            other => Err(status_error(url.as_str(), other, resp).await),
        }
    }

    /// Fetches a manifest (or index) by tag or digest, verifying its digest
    /// when the reference or the registry names one.
    pub async fn manifest(&self, reference: &Reference) -> Result<Fetched, RegistryError> {
        let url = self.url("manifests", &reference.to_string())?;
        let mut headers = HeaderMap::new();
        headers.insert(
            ACCEPT,
            reqwest::header::HeaderValue::from_static(MANIFEST_ACCEPT),
        );
        let what = || format!("manifest {}:{reference}", self.repository);
        let resp = self.get(&url, headers, what).await?;
        let media_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_string());
        let served: Option<Digest> = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let bytes = read_limited(resp, url.as_str(), MAX_DOCUMENT_BYTES).await?;
        let expected = match reference {
            Reference::Digest(d) => Some(d.clone()),
            Reference::Tag(_) => served,
        };
        let digest = match expected {
            Some(d) => {
                d.verify_bytes(&bytes)
                    .map_err(|source| RegistryError::Digest {
                        what: what(),
                        source,
                    })?;
                d
            }
            None => Digest::sha256(&bytes),
        };
        Ok(Fetched {
            bytes,
            media_type,
            digest,
        })
    }

    /// Fetches a small blob (an image config) into memory, verified.
    pub async fn blob_bytes(&self, digest: &Digest) -> Result<Vec<u8>, RegistryError> {
        let url = self.url("blobs", &digest.to_string())?;
        let resp = self
            .get(&url, HeaderMap::new(), || format!("blob {digest}"))
            .await?;
        let bytes = read_limited(resp, url.as_str(), MAX_DOCUMENT_BYTES).await?;
        digest
            .verify_bytes(&bytes)
            .map_err(|source| RegistryError::Digest {
                what: format!("blob {digest}"),
                source,
            })?;
        Ok(bytes)
    }

    /// Streams a blob into `path`, refusing more than `size` bytes (when
    /// known) and verifying its digest. Returns the byte count.
    pub async fn blob_to_file(
        &self,
        digest: &Digest,
        size: Option<u64>,
        path: &Path,
    ) -> Result<u64, RegistryError> {
        let url = self.url("blobs", &digest.to_string())?;
        let mut resp = self
            .get(&url, HeaderMap::new(), || format!("blob {digest}"))
            .await?;
        let io = |source| RegistryError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut file = tokio::fs::File::create(path).await.map_err(io)?;
        let mut hasher = Hasher::new(digest.algorithm());
        let mut count = 0u64;
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| request_error(url.as_str(), e))?
        {
            count += chunk.len() as u64;
            if size.is_some_and(|s| count > s) {
                return Err(RegistryError::TooLarge {
                    url: url.to_string(),
                    limit: size.unwrap_or(0),
                });
            }
            hasher.update(&chunk);
            file.write_all(&chunk).await.map_err(io)?;
        }
        file.flush().await.map_err(io)?;
        digest
            .verify(&hasher.finish())
            .map_err(|source| RegistryError::Digest {
                what: format!("blob {digest}"),
                source,
            })?;
        Ok(count)
    }
}
