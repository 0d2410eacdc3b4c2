//! The HTTP client: bearer tokens (refreshed when expired or refused), CF v3
//! error bodies turned into messages, paginated lists.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use reqwest::blocking::{Client as Http, RequestBuilder, Response};
use reqwest::Method;
use serde_json::Value;

use crate::config::{Config, ConfigError, Target};

/// Errors talking to the controller.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The controller answered with a CF error.
    #[error("{detail} ({title}, HTTP {status})")]
    Api {
        /// HTTP status.
        status: u16,
        /// CF error title, e.g. `CF-ResourceNotFound`.
        title: String,
        /// CF error detail.
        detail: String,
    },
    /// The token endpoint refused the credentials.
    #[error("authentication failed: {0}")]
    Auth(String),
    /// No `cfl login` yet, or the refresh token expired.
    #[error("not logged in: run `cfl login -a API -u USER -p PASSWORD`")]
    NotLoggedIn,
    /// ^C (SIGINT) ended a command that waits, like `cfl logs`.
    #[error("interrupted")]
    Interrupted,
    /// No `cfl target` yet.
    #[error("no org and space targeted: run `cfl target -o ORG -s SPACE`")]
    NoTarget,
    /// The server's TLS certificate is not trusted (or not valid for it).
    #[error("{url}: the server's TLS certificate is not trusted ({detail}); give its CA with --ca-cert FILE (or CFL_CA_CERT), or log in with --skip-ssl-validation")]
    UntrustedCertificate {
        /// The URL.
        url: String,
        /// rustls's reason.
        detail: String,
    },
    /// The CA file given with --ca-cert or CFL_CA_CERT is unusable.
    #[error("CA certificate file {path}: {detail}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
    /// Connection or protocol failure.
    #[error("{url}: {source}")]
    Http {
        /// The URL.
        url: String,
        /// The cause.
        source: reqwest::Error,
    },
    /// A response that is not the JSON we expected.
    #[error("{url}: unexpected response: {what}")]
    Unexpected {
        /// The URL.
        url: String,
        /// What was wrong.
        what: String,
    },
    /// The config file.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// A logged-in client over the saved config.
pub struct Client {
    http: Http,
    /// The config (tokens are updated on refresh and saved).
    pub config: Config,
    path: PathBuf,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The `exp` claim of a JWT, if readable.
fn token_expiry(token: &str) -> Option<u64> {
    let part = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice::<Value>(&bytes).ok()?["exp"].as_u64()
}

/// Turns a non-success response into a [`ClientError`].
fn error_from(url: &str, resp: Response) -> ClientError {
    let status = resp.status().as_u16();
    let text = resp.text().unwrap_or_default();
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if let Some(first) = body["errors"].get(0) {
        return ClientError::Api {
            status,
            title: first["title"].as_str().unwrap_or("CF-Error").to_owned(),
            detail: first["detail"].as_str().unwrap_or("").to_owned(),
        };
    }
    if let Some(desc) = body["error_description"].as_str() {
        return ClientError::Auth(desc.to_owned());
    }
    ClientError::Unexpected {
        url: url.to_owned(),
        what: format!(
            "HTTP {status}: {}",
            text.chars().take(300).collect::<String>()
        ),
    }
}

/// The rustls error somewhere in `err`'s source chain. hyper and
/// tokio-rustls wrap it in `io::Error`s, whose own `source` skips the
/// wrapped error, so look inside those too.
fn tls_failure(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    if let Some(tls) = err.downcast_ref::<rustls::Error>() {
        return Some(tls.to_string());
    }
    if let Some(inner) = err
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
    {
        if let Some(found) = tls_failure(inner) {
            return Some(found);
        }
    }
    err.source().and_then(tls_failure)
}

/// A transport error, told apart when it is an untrusted certificate.
pub fn http_error(url: &str, source: reqwest::Error) -> ClientError {
    match tls_failure(&source) {
        Some(detail) if source.is_connect() || source.is_request() => {
            ClientError::UntrustedCertificate {
                url: url.to_owned(),
                detail,
            }
        }
        _ => ClientError::Http {
            url: url.to_owned(),
            source,
        },
    }
}

fn read_json(url: &str, resp: Response) -> Result<Value, ClientError> {
    if !resp.status().is_success() {
        return Err(error_from(url, resp));
    }
    let text = resp.text().map_err(|source| http_error(url, source))?;
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&text).map_err(|e| ClientError::Unexpected {
        url: url.to_owned(),
        what: e.to_string(),
    })
}

/// How the client checks the API's TLS certificate.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// Accept any certificate (`--skip-ssl-validation`).
    pub skip_validation: bool,
    /// Trust this PEM CA file besides the system's roots (`--ca-cert`).
    pub ca_cert: Option<PathBuf>,
}

impl TlsOptions {
    /// The options saved at login, with `CFL_CA_CERT` overriding the CA file.
    pub fn from_config(config: &Config) -> Self {
        Self {
            skip_validation: config.skip_ssl_validation,
            ca_cert: std::env::var_os("CFL_CA_CERT")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .or_else(|| config.ca_cert.clone()),
        }
    }
}

fn http_client(tls: &TlsOptions) -> Result<Http, ClientError> {
    // TLS through rustls with ring (no C toolchain); idempotent.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = Http::builder()
        .timeout(Duration::from_secs(600))
        .connect_timeout(Duration::from_secs(10));
    if let Some(path) = &tls.ca_cert {
        let ca_err = |detail: String| ClientError::CaFile {
            path: path.clone(),
            detail,
        };
        let pem = std::fs::read(path).map_err(|e| ca_err(e.to_string()))?;
        let certs =
            reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| ca_err(e.to_string()))?;
        if certs.is_empty() {
            return Err(ca_err("no CERTIFICATE block".into()));
        }
        builder = builder.tls_certs_merge(certs);
    }
    if tls.skip_validation {
        builder = builder.danger_accept_invalid_certs(true);
    }
    builder.build().map_err(|source| http_error("", source))
}

/// Asks the token endpoint for tokens (`password` or `refresh_token` grant).
fn token_grant(http: &Http, login_url: &str, form: &[(&str, &str)]) -> Result<Value, ClientError> {
    let url = format!("{}/oauth/token", login_url.trim_end_matches('/'));
    let resp = http
        .post(&url)
        .basic_auth("cf", Some(""))
        .header("Accept", "application/json")
        .form(form)
        .send()
        .map_err(|source| http_error(&url, source))?;
    if resp.status().as_u16() == 401 {
        return Err(match error_from(&url, resp) {
            ClientError::Auth(d) => ClientError::Auth(d),
            other => ClientError::Auth(other.to_string()),
        });
    }
    read_json(&url, resp)
}

fn tokens_into(config: &mut Config, body: &Value) -> Result<(), ClientError> {
    let missing = || ClientError::Unexpected {
        url: config.login_url.clone(),
        what: "no access_token in the token response".into(),
    };
    config.access_token = body["access_token"]
        .as_str()
        .ok_or_else(missing)?
        .to_owned();
    if let Some(r) = body["refresh_token"].as_str() {
        config.refresh_token = r.to_owned();
    }
    Ok(())
}

impl Client {
    /// `cfl login`: reads the root document for the login and log-cache
    /// URLs, gets tokens with the password grant and saves them.
    /// `tls` is saved with the tokens and used by every later command.
    pub fn login(
        api: &str,
        user: &str,
        password: &str,
        tls: &TlsOptions,
        path: PathBuf,
    ) -> Result<Self, ClientError> {
        let http = http_client(tls)?;
        let api = api.trim_end_matches('/').to_owned();
        let url = format!("{api}/");
        let resp = http
            .get(&url)
            .send()
            .map_err(|source| http_error(&url, source))?;
        let root = read_json(&url, resp)?;
        let link = |name: &str| root["links"][name]["href"].as_str().map(str::to_owned);
        let login_url = link("login").ok_or_else(|| ClientError::Unexpected {
            url: url.clone(),
            what: "root document has no links.login (is this a Cloud Foundry API?)".into(),
        })?;
        let mut config = Config {
            log_cache_url: link("log_cache").unwrap_or_else(|| api.clone()),
            api,
            login_url,
            skip_ssl_validation: tls.skip_validation,
            ca_cert: tls.ca_cert.clone(),
            ..Config::default()
        };
        let body = token_grant(
            &http,
            &config.login_url,
            &[
                ("grant_type", "password"),
                ("username", user),
                ("password", password),
            ],
        )?;
        tokens_into(&mut config, &body)?;
        config.save(&path)?;
        Ok(Self { http, config, path })
    }

    /// A client over the saved config; refreshes an expired access token.
    pub fn load(path: PathBuf) -> Result<Self, ClientError> {
        let config = Config::load(&path)?;
        if config.access_token.is_empty() {
            return Err(ClientError::NotLoggedIn);
        }
        let mut client = Self {
            http: http_client(&TlsOptions::from_config(&config))?,
            config,
            path,
        };
        let expiring =
            token_expiry(&client.config.access_token).is_some_and(|exp| exp <= unix_now() + 30);
        if expiring {
            client.refresh()?;
        }
        Ok(client)
    }

    /// Uses the refresh token for a new access token and saves it.
    pub fn refresh(&mut self) -> Result<(), ClientError> {
        if self.config.refresh_token.is_empty() {
            return Err(ClientError::NotLoggedIn);
        }
        let refresh = self.config.refresh_token.clone();
        let body = token_grant(
            &self.http,
            &self.config.login_url,
            &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
        )
        .map_err(|e| match e {
            ClientError::Auth(_) => ClientError::NotLoggedIn,
            other => other,
        })?;
        tokens_into(&mut self.config, &body)?;
        self.config.save(&self.path)?;
        Ok(())
    }

    /// Saves the config (after `target`).
    pub fn save(&self) -> Result<(), ClientError> {
        Ok(self.config.save(&self.path)?)
    }

    /// The targeted org and space.
    pub fn target(&self) -> Result<&Target, ClientError> {
        self.config.target.as_ref().ok_or(ClientError::NoTarget)
    }

    /// An absolute URL for an API path (absolute URLs pass through).
    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_owned()
        } else {
            format!("{}{path}", self.config.api)
        }
    }

    /// Sends a request built by `build`, refreshing the token and retrying
    /// once on 401. Returns the raw response on success.
    pub fn send<F>(&mut self, url: &str, build: F) -> Result<Response, ClientError>
    where
        F: Fn(&Http) -> RequestBuilder,
    {
        let mut refreshed = false;
        loop {
            let resp = build(&self.http)
                .bearer_auth(&self.config.access_token)
                .send()
                .map_err(|source| http_error(url, source))?;
            if resp.status().as_u16() == 401 && !refreshed {
                self.refresh()?;
                refreshed = true;
                continue;
            }
            if !resp.status().is_success() {
                return Err(error_from(url, resp));
            }
            return Ok(resp);
        }
    }

    /// A JSON request; returns the body (Null when empty).
    pub fn call(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let url = self.url(path);
        let resp = self.send(&url, |h| {
            let req = h.request(method.clone(), &url);
            match body {
                Some(b) => req.json(b),
                None => req,
            }
        })?;
        read_json(&url, resp)
    }

    /// GET a JSON document.
    pub fn get(&mut self, path: &str) -> Result<Value, ClientError> {
        self.call(Method::GET, path, None)
    }

    /// POST JSON.
    pub fn post(&mut self, path: &str, body: &Value) -> Result<Value, ClientError> {
        self.call(Method::POST, path, Some(body))
    }

    /// PATCH JSON.
    pub fn patch(&mut self, path: &str, body: &Value) -> Result<Value, ClientError> {
        self.call(Method::PATCH, path, Some(body))
    }

    /// DELETE; returns the `Location` header (a job) if any.
    pub fn delete(&mut self, path: &str) -> Result<Option<String>, ClientError> {
        let url = self.url(path);
        let resp = self.send(&url, |h| h.delete(&url))?;
        Ok(resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned))
    }

    /// Every resource of a paginated list, following `pagination.next`.
    pub fn list(&mut self, path: &str) -> Result<Vec<Value>, ClientError> {
        let mut out = Vec::new();
        let mut next = Some(path.to_owned());
        while let Some(page) = next {
            let body = self.get(&page)?;
            match body["resources"].as_array() {
                Some(items) => out.extend(items.iter().cloned()),
                None => {
                    return Err(ClientError::Unexpected {
                        url: self.url(&page),
                        what: "no resources array".into(),
                    })
                }
            }
            next = body["pagination"]["next"]["href"]
                .as_str()
                .map(str::to_owned);
        }
        Ok(out)
    }

    /// Polls a job (`Location` of a 202) until it finishes; a FAILED job
    /// becomes an error with its first error's detail.
    pub fn wait_job(&mut self, location: &str, timeout: Duration) -> Result<Value, ClientError> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let job = self.get(location)?;
            match job["state"].as_str() {
                Some("COMPLETE") => return Ok(job),
                Some("FAILED") => {
                    let first = &job["errors"][0];
                    return Err(ClientError::Api {
                        status: 422,
                        title: first["title"].as_str().unwrap_or("CF-JobFailed").to_owned(),
                        detail: first["detail"].as_str().unwrap_or("job failed").to_owned(),
                    });
                }
                _ if std::time::Instant::now() > deadline => {
                    return Err(ClientError::Unexpected {
                        url: self.url(location),
                        what: "job did not finish in time".into(),
                    })
                }
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }
}
