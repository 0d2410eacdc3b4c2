//! A client for the Docker registry v2 / OCI distribution API: manifests
//! and blobs of one repository, with bearer-token or basic authentication,
//! and every blob verified against its digest.
//!
//! HTTPS with verified certificates unless the host is on the
//! insecure-registry list; then HTTPS without verification is tried first
//! and plain HTTP after it.

mod auth;
mod session;
mod tls;

use std::time::Duration;

use reqwest::header::WWW_AUTHENTICATE;
use reqwest::{StatusCode, Url};

pub use auth::{Challenge, Credentials};
use session::Auth;
pub use session::{Fetched, Session};
pub use tls::TlsError;

use crate::digest::DigestError;
use crate::reference::RegistryRef;

/// Manifest media types we ask for, most wanted first.
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json";
/// Manifests and configs are small; anything bigger is refused.
pub const MAX_DOCUMENT_BYTES: u64 = 8 << 20;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("building the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    #[error("{url}: {detail}")]
    Request {
        url: String,
        detail: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("registry {registry}: authentication failed: {detail}")]
    Unauthorized { registry: String, detail: String },
    #[error("registry {registry}: {what} not found")]
    NotFound { registry: String, what: String },
    #[error("{url}: unexpected status {status}: {message}")]
    Status {
        url: String,
        status: u16,
        message: String,
    },
    #[error("registry {registry}: unsupported authentication challenge {header:?}")]
    BadChallenge { registry: String, header: String },
    #[error("token realm {realm:?} must be https (or a host on the insecure-registry list)")]
    InsecureRealm { realm: String },
    #[error("token service {realm}: no token in the response")]
    NoToken { realm: String },
    #[error("{what}: {source}")]
    Digest {
        what: String,
        #[source]
        source: DigestError,
    },
    #[error("{url}: more than {limit} bytes")]
    TooLarge { url: String, limit: u64 },
    #[error("writing {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// HTTP clients for registries, shared by all pulls.
#[derive(Clone)]
pub struct RegistryClient {
    verifying: reqwest::Client,
    unverified: reqwest::Client,
    insecure: Vec<String>,
}

impl RegistryClient {
    /// Clients trusting Mozilla's roots and `ca_files`; hosts (`host[:port]`)
    /// in `insecure` may be reached over plain HTTP or unverified TLS.
    pub fn new(
        ca_files: &[std::path::PathBuf],
        insecure: Vec<String>,
    ) -> Result<RegistryClient, RegistryError> {
        let build = |tls: rustls::ClientConfig| {
            reqwest::Client::builder()
                .tls_backend_preconfigured(tls)
                .connect_timeout(Duration::from_secs(15))
                .read_timeout(Duration::from_secs(60))
                .user_agent(concat!("garden-image/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(RegistryError::Client)
        };
        Ok(RegistryClient {
            verifying: build(tls::verifying(ca_files)?)?,
            unverified: build(tls::unverified()?)?,
            insecure,
        })
    }

    fn is_insecure(&self, host: &str) -> bool {
        self.insecure.iter().any(|h| h == host)
    }

    /// Connects to `r`'s registry and authenticates for pulling from its
    /// repository.
    pub async fn session(
        &self,
        r: &RegistryRef,
        creds: Option<&Credentials>,
    ) -> Result<Session, RegistryError> {
        let host = r.api_host().to_string();
        let (http, base, ping) = self.ping(&host).await?;
        let session = Session {
            client: self.clone(),
            creds: creds.cloned(),
            http,
            base,
            registry: r.host.clone(),
            repository: r.repository.clone(),
            auth: std::sync::RwLock::new(Auth::Anonymous),
        };
        match ping.status() {
            s if s.is_success() => {}
            StatusCode::UNAUTHORIZED => {
                let header = challenge_of(&ping);
                let auth = self.authenticate(&session, &header, creds).await?;
                session.set_auth(auth);
            }
            other => {
                let url = ping.url().to_string();
                return Err(status_error(&url, other, ping).await);
            }
        }
        Ok(session)
    }

    /// `GET /v2/` over HTTPS, or for insecure hosts over HTTP when HTTPS
    /// does not connect.
    async fn ping(
        &self,
        host: &str,
    ) -> Result<(reqwest::Client, Url, reqwest::Response), RegistryError> {
        let insecure = self.is_insecure(host);
        let http = if insecure {
            &self.unverified
        } else {
            &self.verifying
        };
        let https = base_url("https", host)?;
        let ping_url = https.join("v2/").map_err(|_| bad_host(host))?;
        match http.get(ping_url.clone()).send().await {
            Ok(resp) => Ok((http.clone(), https, resp)),
            Err(e) if insecure && (e.is_connect() || e.is_request()) => {
                tracing::debug!(host, error = %e, "https failed; trying http for an insecure registry");
                let plain = base_url("http", host)?;
                let url = plain.join("v2/").map_err(|_| bad_host(host))?;
                let resp = http
                    .get(url.clone())
                    .send()
                    .await
                    .map_err(|e| request_error(url.as_str(), e))?;
                Ok((http.clone(), plain, resp))
            }
            Err(e) => {
                let mut err = request_error(ping_url.as_str(), e);
                if let RegistryError::Request { detail, .. } = &mut err {
                    detail.push_str(
                        " (a registry serving plain HTTP or an untrusted certificate must be \
                         on the insecure-registry list, or its CA configured)",
                    );
                }
                Err(err)
            }
        }
    }

    async fn authenticate(
        &self,
        s: &Session,
        header: &str,
        creds: Option<&Credentials>,
    ) -> Result<Auth, RegistryError> {
        match auth::parse_challenge(header) {
            Some(Challenge::Basic) => {
                let creds = creds.ok_or_else(|| RegistryError::Unauthorized {
                    registry: s.registry.clone(),
                    detail: "the registry requires credentials and none were given".into(),
                })?;
                let auth = Auth::Basic(creds.clone());
                let url = s.base.join("v2/").map_err(|_| bad_host(&s.registry))?;
                let resp = s
                    .authorize(s.http.get(url.clone()), &auth)
                    .send()
                    .await
                    .map_err(|e| request_error(url.as_str(), e))?;
                if resp.status() == StatusCode::UNAUTHORIZED {
                    return Err(RegistryError::Unauthorized {
                        registry: s.registry.clone(),
                        detail: "the registry rejected the username or password".into(),
                    });
                }
                Ok(auth)
            }
            Some(Challenge::Bearer { realm, service, .. }) => {
                let scope = format!("repository:{}:pull", s.repository);
                self.token(s, &realm, service.as_deref(), &scope, creds)
                    .await
                    .map(Auth::Bearer)
            }
            None => Err(RegistryError::BadChallenge {
                registry: s.registry.clone(),
                header: header.to_string(),
            }),
        }
    }

    /// Asks the token service at `realm` for a token with `scope`.
    async fn token(
        &self,
        s: &Session,
        realm: &str,
        service: Option<&str>,
        scope: &str,
        creds: Option<&Credentials>,
    ) -> Result<String, RegistryError> {
        let mut url = Url::parse(realm).map_err(|_| RegistryError::InsecureRealm {
            realm: realm.into(),
        })?;
        let realm_host = url.host_str().map(|h| match url.port() {
            Some(p) => format!("{h}:{p}"),
            None => h.to_string(),
        });
        let realm_insecure = realm_host.as_deref().is_some_and(|h| self.is_insecure(h));
        if url.scheme() != "https" && !(url.scheme() == "http" && realm_insecure) {
            return Err(RegistryError::InsecureRealm {
                realm: realm.into(),
            });
        }
        {
            let mut q = url.query_pairs_mut();
            if let Some(service) = service {
                q.append_pair("service", service);
            }
            q.append_pair("scope", scope);
        }
        let http = if realm_insecure {
            &self.unverified
        } else {
            &self.verifying
        };
        let mut req = http.get(url.clone());
        if let Some(c) = creds {
            req = req.basic_auth(&c.username, Some(&c.password));
        }
        let resp = req.send().await.map_err(|e| request_error(realm, e))?;
        match resp.status() {
            st if st.is_success() => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                let detail = match creds {
                    Some(c) => format!(
                        "the token service {realm} rejected the credentials of {:?}",
                        c.username
                    ),
                    None => format!(
                        "the token service {realm} requires credentials and none were given"
                    ),
                };
                return Err(RegistryError::Unauthorized {
                    registry: s.registry.clone(),
                    detail,
                });
            }
            other => return Err(status_error(realm, other, resp).await),
        }
        let body = read_limited(resp, realm, MAX_DOCUMENT_BYTES).await?;
        serde_json::from_slice::<auth::TokenResponse>(&body)
            .ok()
            .and_then(auth::TokenResponse::into_token)
            .ok_or_else(|| RegistryError::NoToken {
                realm: realm.into(),
            })
    }
}

fn challenge_of(resp: &reqwest::Response) -> String {
    resp.headers()
        .get(WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

fn base_url(scheme: &str, host: &str) -> Result<Url, RegistryError> {
    Url::parse(&format!("{scheme}://{host}/")).map_err(|_| bad_host(host))
}

fn bad_host(host: &str) -> RegistryError {
    RegistryError::NotFound {
        registry: host.to_string(),
        what: "a valid registry address".into(),
    }
}

async fn read_limited(
    mut resp: reqwest::Response,
    url: &str,
    limit: u64,
) -> Result<Vec<u8>, RegistryError> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| request_error(url, e))? {
        if (out.len() + chunk.len()) as u64 > limit {
            return Err(RegistryError::TooLarge {
                url: url.into(),
                limit,
            });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// The registry's error message (`{"errors":[{"message":...}]}`) or the
/// start of the body.
async fn status_error(url: &str, status: StatusCode, resp: reqwest::Response) -> RegistryError {
    let body = read_limited(resp, url, 64 << 10).await.unwrap_or_default();
    let message = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["errors"][0]["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned());
    RegistryError::Status {
        url: url.into(),
        status: status.as_u16(),
        message,
    }
}

/// A request error with its whole cause chain spelled out (reqwest's own
/// message hides the interesting part, e.g. "connection refused").
fn request_error(url: &str, source: reqwest::Error) -> RegistryError {
    let mut detail = String::new();
    let mut cause: Option<&dyn std::error::Error> = std::error::Error::source(&source);
    while let Some(c) = cause {
        if !detail.is_empty() {
            detail.push_str(": ");
        }
        detail.push_str(&c.to_string());
        cause = c.source();
    }
    if detail.is_empty() {
        detail = source.to_string();
    }
    RegistryError::Request {
        url: url.into(),
        detail,
        source,
    }
}
