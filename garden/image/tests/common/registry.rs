//! A real registry for the tests: Debian's `docker-registry` on a free
//! loopback port with its own storage, a token service signing JWTs with a
//! key the test generates, and a client pushing images over the HTTP API.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use garden_image::digest::Digest;

pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";
pub const SERVICE: &str = "garden-test-registry";
pub const ISSUER: &str = "garden-test-issuer";
pub const USER: &str = "garden";
pub const PASSWORD: &str = "s3cret";

pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// A self-signed certificate for 127.0.0.1, used as the registry's TLS
/// certificate and as the token signer (its own root).
pub struct TestCert {
    pub cert_pem: PathBuf,
    pub key_pem: PathBuf,
    pub der: Vec<u8>,
    pub key_pkcs8_der: Vec<u8>,
}

impl TestCert {
    pub fn generate(dir: &Path) -> TestCert {
        let key = rcgen::KeyPair::generate().expect("key");
        let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("params");
        let cert = params.self_signed(&key).expect("cert");
        let cert_pem = dir.join("test.crt");
        let key_pem = dir.join("test.key");
        std::fs::write(&cert_pem, cert.pem()).expect("write cert");
        std::fs::write(&key_pem, key.serialize_pem()).expect("write key");
        TestCert {
            cert_pem,
            key_pem,
            der: cert.der().to_vec(),
            key_pkcs8_der: key.serialize_der(),
        }
    }
}

/// How the registry authenticates and serves.
pub enum Mode<'a> {
    Open,
    Token {
        realm: String,
        cert: &'a TestCert,
    },
    Tls {
        cert: &'a TestCert,
    },
    /// HTTP basic authentication (htpasswd) over TLS.
    Basic {
        cert: &'a TestCert,
        htpasswd: PathBuf,
    },
}

fn tls_yaml(cert: &TestCert) -> String {
    format!(
        "  tls:\n    certificate: {}\n    key: {}\n",
        cert.cert_pem.display(),
        cert.key_pem.display()
    )
}

/// An htpasswd file with one user (bcrypt, as the registry wants).
pub fn htpasswd(dir: &Path) -> PathBuf {
    let hash = bcrypt::hash(PASSWORD, 4).expect("bcrypt");
    let path = dir.join("htpasswd");
    std::fs::write(&path, format!("{USER}:{hash}\n")).expect("htpasswd");
    path
}

/// A running `docker-registry`; killed on drop.
pub struct Registry {
    child: Child,
    pub host: String,
    log: PathBuf,
}

impl Registry {
    /// Starts the registry over `storage` and waits until it answers.
    pub fn start(storage: &Path, mode: Mode<'_>) -> Registry {
        assert!(
            Path::new(REGISTRY_BIN).exists(),
            "{REGISTRY_BIN} is missing: install Debian's docker-registry (scripts/deps.sh)"
        );
        let port = free_port();
        let host = format!("127.0.0.1:{port}");
        let mut yaml = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
             http:\n  addr: {host}\n",
            storage.display()
        );
        match &mode {
            Mode::Open => {}
            Mode::Token { realm, cert } => yaml.push_str(&format!(
                "auth:\n  token:\n    realm: {realm}\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
                cert.cert_pem.display()
            )),
            Mode::Tls { cert } => yaml.push_str(&tls_yaml(cert)),
            Mode::Basic { cert, htpasswd } => {
                yaml.push_str(&tls_yaml(cert));
                yaml.push_str(&format!(
                    "auth:\n  htpasswd:\n    realm: garden-test\n    path: {}\n",
                    htpasswd.display()
                ));
            }
        }
        let cfg = storage.with_extension(format!("{port}.yml"));
        std::fs::write(&cfg, yaml).expect("config");
        let log = storage.with_extension(format!("{port}.log"));
        let out = std::fs::File::create(&log).expect("log");
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup"))
            .stderr(out)
            .spawn()
            .expect("start docker-registry");
        let mut r = Registry { child, host, log };
        r.wait_ready();
        r
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(&self.host).is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("docker-registry exited ({status}): {}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "docker-registry did not listen within 20 s: {}",
            self.log_text()
        );
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A token service on loopback: HTTP basic credentials in, a JWT signed
/// with the test key (its certificate in `x5c`) out. Stopped on drop.
pub struct TokenServer {
    server: Arc<tiny_http::Server>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub realm: String,
    pub host: String,
}

impl TokenServer {
    pub fn start(cert: &TestCert) -> TokenServer {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("token server"));
        let port = server.server_addr().to_ip().expect("ip").port();
        let host = format!("127.0.0.1:{port}");
        let key = jsonwebtoken::EncodingKey::from_ec_der(&cert.key_pkcs8_der);
        let x5c = base64::engine::general_purpose::STANDARD.encode(&cert.der);
        let s = server.clone();
        let thread = std::thread::spawn(move || {
            for req in s.incoming_requests() {
                let (status, body) = answer(&req, &key, &x5c);
                let resp = tiny_http::Response::from_string(body)
                    .with_status_code(status)
                    .with_header(
                        "Content-Type: application/json"
                            .parse::<tiny_http::Header>()
                            .expect("header"),
                    );
                let _ = req.respond(resp);
            }
        });
        TokenServer {
            server,
            thread: Some(thread),
            realm: format!("http://{host}/token"),
            host,
        }
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn answer(req: &tiny_http::Request, key: &jsonwebtoken::EncodingKey, x5c: &str) -> (u16, String) {
    let expected = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    let authorized = req
        .headers()
        .iter()
        .any(|h| h.field.equiv("Authorization") && h.value.as_str() == format!("Basic {expected}"));
    if !authorized {
        return (401, r#"{"details":"bad credentials"}"#.into());
    }
    let url = reqwest::Url::parse(&format!("http://x{}", req.url())).expect("url");
    let scope = url
        .query_pairs()
        .find(|(k, _)| k == "scope")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let mut parts = scope.splitn(3, ':');
    let (kind, name, actions) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("time")
        .as_secs();
    let claims = serde_json::json!({
        "iss": ISSUER, "sub": USER, "aud": SERVICE,
        "exp": now + 300, "nbf": now - 10, "iat": now, "jti": format!("{now}-{name}"),
        "access": [{"type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}]
    });
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.x5c = Some(vec![x5c.to_string()]);
    let token = jsonwebtoken::encode(&header, &claims, key).expect("sign");
    (
        200,
        serde_json::json!({"token": token, "expires_in": 300}).to_string(),
    )
}

/// Pushes blobs and manifests to an open (no auth, plain HTTP) registry.
pub struct Pusher {
    http: reqwest::Client,
    base: String,
}

impl Pusher {
    pub fn new(host: &str) -> Pusher {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("tls")
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        Pusher {
            http: reqwest::Client::builder()
                .tls_backend_preconfigured(tls)
                .no_proxy()
                .build()
                .expect("client"),
            base: format!("http://{host}"),
        }
    }

    pub async fn blob(&self, repo: &str, data: &[u8]) -> Digest {
        let digest = Digest::sha256(data);
        let resp = self
            .http
            .post(format!("{}/v2/{repo}/blobs/uploads/", self.base))
            .send()
            .await
            .expect("start upload");
        assert_eq!(resp.status(), 202, "start upload");
        let location = resp.headers()["location"]
            .to_str()
            .expect("location")
            .to_string();
        let mut url = reqwest::Url::parse(&self.base)
            .expect("base")
            .join(&location)
            .expect("location url");
        url.query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        let resp = self
            .http
            .put(url)
            .header("Content-Type", "application/octet-stream")
            .body(data.to_vec())
            .send()
            .await
            .expect("upload");
        assert_eq!(resp.status(), 201, "upload blob");
        digest
    }

    pub async fn manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> Digest {
        let resp = self
            .http
            .put(format!("{}/v2/{repo}/manifests/{reference}", self.base))
            .header("Content-Type", media_type)
            .body(body.to_vec())
            .send()
            .await
            .expect("put manifest");
        let status = resp.status();
        assert_eq!(
            status,
            201,
            "put manifest: {}",
            resp.text().await.unwrap_or_default()
        );
        Digest::sha256(body)
    }
}
