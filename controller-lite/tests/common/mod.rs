//! Helpers shared by the integration tests: a controller in process or as a
//! subprocess (the real binary), a logged-in HTTP client, zips.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use controller_lite::config::Config;
use controller_lite::server::{self, Controller};
use controller_lite::staging::{Clock, Completion, Staging, TaskOutcome};
use serde_json::{json, Value};

/// Config text for tests: ephemeral port, cheap password hashing, two users.
pub fn config_toml(data_dir: &Path, extra: &str) -> String {
    format!(
        r#"listen = "127.0.0.1:0"
data_dir = "{}"
apps_domain = "apps.test.internal"
[auth]
argon2_memory_kib = 64
argon2_iterations = 1
[[auth.users]]
name = "admin"
password = "admin-pw"
admin = true
[[auth.users]]
name = "dev"
password = "dev-pw"
{extra}"#,
        data_dir.display()
    )
}

/// A clock tests move by hand.
#[derive(Default)]
pub struct FakeClock(pub AtomicI64);

impl FakeClock {
    pub fn at_now() -> Arc<Self> {
        Arc::new(Self(AtomicI64::new(controller_lite::db::now())))
    }
    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for FakeClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// A controller running inside the test process.
pub struct InProcess {
    pub ctl: Option<Controller>,
    pub dir: tempfile::TempDir,
    pub base: String,
    pub clock: Arc<FakeClock>,
}

impl InProcess {
    pub async fn start(extra: &str) -> Result<Self> {
        Self::start_with_top("", extra).await
    }

    /// With `top` (top-level keys) before the config and `extra` tables after.
    pub async fn start_with_top(top: &str, extra: &str) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let text = format!("{top}{}", config_toml(&dir.path().join("data"), extra));
        let config = Config::parse(&text)?;
        let clock = FakeClock::at_now();
        let ctl = server::start_with_clock(config, clock.clone()).await?;
        let base = ctl.state.base_url.clone();
        Ok(Self {
            ctl: Some(ctl),
            dir,
            base,
            clock,
        })
    }

    pub fn controller(&self) -> &Controller {
        self.ctl.as_ref().expect("running")
    }

    pub async fn stop(mut self) {
        if let Some(ctl) = self.ctl.take() {
            ctl.shutdown().await;
        }
    }
}

/// The real binary as a subprocess; killed (SIGKILL) and reaped on drop.
pub struct Subprocess {
    pub child: Child,
    pub base: String,
    pub data_dir: PathBuf,
}

impl Subprocess {
    pub fn start(data_dir: &Path, extra: &str) -> Result<Self> {
        let config = data_dir.with_extension("toml");
        std::fs::write(&config, config_toml(data_dir, extra))?;
        let mut child = Command::new(env!("CARGO_BIN_EXE_controller-lite"))
            .args(["serve", "--config"])
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("spawning controller-lite")?;
        let stdout = child.stdout.take().context("stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let Some(addr) = line.trim().strip_prefix("listening on ") else {
            let _ = child.kill();
            let _ = child.wait();
            bail!("controller did not start: {line:?}");
        };
        Ok(Self {
            base: format!("http://{addr}"),
            child,
            data_dir: data_dir.to_owned(),
        })
    }

    /// SIGKILL, like `kill -9`.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Subprocess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// An HTTP client with a token.
#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
    pub token: String,
}

pub async fn token(base: &str, user: &str, password: &str) -> Result<Value> {
    let resp = http()
        .post(format!("{base}/oauth/token"))
        .basic_auth("cf", Some(""))
        .form(&[
            ("grant_type", "password"),
            ("username", user),
            ("password", password),
        ])
        .send()
        .await?;
    let status = resp.status();
    let body: Value = resp.json().await?;
    if !status.is_success() {
        bail!("login failed: {status} {body}");
    }
    Ok(body)
}

impl Api {
    pub async fn login(base: &str, user: &str, password: &str) -> Result<Self> {
        let body = token(base, user, password).await?;
        let token = body["access_token"]
            .as_str()
            .context("access_token")?
            .to_owned();
        install_tls();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?;
        Ok(Self {
            http,
            base: base.to_owned(),
            token,
        })
    }

    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        }
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value)> {
        let mut req = self
            .http
            .request(method, self.url(path))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).with_context(|| format!("not JSON: {text}"))?
        };
        Ok((status, json))
    }

    pub async fn get(&self, path: &str) -> Result<(u16, Value)> {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Result<(u16, Value)> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Result<(u16, Value)> {
        self.call(reqwest::Method::PATCH, path, Some(body)).await
    }

    /// GET that must answer 200.
    pub async fn ok(&self, path: &str) -> Result<Value> {
        let (status, body) = self.get(path).await?;
        if status != 200 {
            bail!("GET {path}: {status} {body}");
        }
        Ok(body)
    }

    pub async fn space_guid(&self) -> Result<String> {
        let spaces = self.ok("/v3/spaces?names=default").await?;
        Ok(spaces["resources"][0]["guid"]
            .as_str()
            .context("space")?
            .to_owned())
    }

    /// POST a YAML manifest; returns (status, Location header, body).
    pub async fn apply_manifest(
        &self,
        space: &str,
        yaml: &str,
    ) -> Result<(u16, Option<String>, Value)> {
        let resp = self
            .http
            .post(self.url(&format!("/v3/spaces/{space}/actions/apply_manifest")))
            .bearer_auth(&self.token)
            .header("Content-Type", "application/x-yaml")
            .body(yaml.to_owned())
            .send()
            .await?;
        let status = resp.status().as_u16();
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = resp.text().await?;
        Ok((
            status,
            location,
            serde_json::from_str(&text).unwrap_or(Value::Null),
        ))
    }

    /// Polls a job until it leaves PROCESSING.
    pub async fn wait_job(&self, location: &str) -> Result<Value> {
        for _ in 0..200 {
            let job = self.ok(location).await?;
            if job["state"] != "PROCESSING" {
                return Ok(job);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("job {location} never finished")
    }

    /// Multipart upload of `resources` JSON and optional `bits`.
    pub async fn upload(
        &self,
        path: &str,
        resources: Option<Value>,
        bits: Option<Vec<u8>>,
    ) -> Result<(u16, Value)> {
        let mut form = reqwest::multipart::Form::new();
        if let Some(r) = resources {
            form = form.text("resources", r.to_string());
        }
        if let Some(b) = bits {
            form = form.part(
                "bits",
                reqwest::multipart::Part::bytes(b)
                    .file_name("application.zip")
                    .mime_str("application/zip")?,
            );
        }
        let resp = self
            .http
            .post(self.url(path))
            .bearer_auth(&self.token)
            .multipart(form)
            .send()
            .await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }
}

/// Internal API calls (what a cell does).
pub async fn internal(
    base: &str,
    key: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Result<(u16, Value)> {
    let mut req = http()
        .request(method, format!("{base}{path}"))
        .bearer_auth(key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    let text = resp.text().await?;
    Ok((
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}

/// Uploads a droplet for a build through the internal API.
pub async fn upload_droplet(
    base: &str,
    key: &str,
    build: &str,
    bytes: Vec<u8>,
) -> Result<(u16, Value)> {
    let form = reqwest::multipart::Form::new().part(
        "bits",
        reqwest::multipart::Part::bytes(bytes).file_name("droplet.tgz"),
    );
    let resp = http()
        .post(format!("{base}/internal/v1/staging/{build}/droplet"))
        .bearer_auth(key)
        .multipart(form)
        .send()
        .await?;
    let status = resp.status().as_u16();
    let text = resp.text().await?;
    Ok((
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}

/// A zip of `(path, contents, unix mode)` entries.
pub fn zip_of(files: &[(&str, &[u8], u32)]) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    {
        let mut w = zip::ZipWriter::new(&mut out);
        for (path, data, mode) in files {
            let opts = zip::write::SimpleFileOptions::default().unix_permissions(*mode);
            w.start_file(*path, opts).expect("start");
            w.write_all(data).expect("write");
        }
        w.finish().expect("finish");
    }
    out.into_inner()
}

/// A zip with one symlink.
pub fn zip_with_symlink(link: &str, target: &str) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    {
        let mut w = zip::ZipWriter::new(&mut out);
        w.add_symlink(link, target, zip::write::SimpleFileOptions::default())
            .expect("symlink");
        w.finish().expect("finish");
    }
    out.into_inner()
}

/// Paths inside a zip.
pub fn zip_names(bytes: &[u8]) -> Vec<String> {
    let mut a = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("zip");
    (0..a.len())
        .map(|i| {
            a.by_index(i)
                .expect("entry")
                .name()
                .expect("name")
                .into_owned()
        })
        .collect()
}

pub fn sha1_hex(data: &[u8]) -> String {
    use sha1::Digest;
    hex::encode(sha1::Sha1::digest(data))
}

/// The internal key the controller generated in its data dir.
pub fn internal_key(data_dir: &Path) -> String {
    std::fs::read_to_string(data_dir.join("internal-api.key"))
        .expect("internal key")
        .trim()
        .to_owned()
}

/// A staging result.json for a buildpack build.
pub fn buildpack_result(command: &str) -> String {
    serde_json::json!({
        "lifecycle_type": "buildpack",
        "lifecycle_metadata": {"buildpack_key": "bp", "detected_buildpack": "binary", "buildpacks": [{"key": "binary_buildpack", "name": "binary", "version": "1.0"}]},
        "process_types": {"web": command},
        "execution_metadata": ""
    })
    .to_string()
}

/// In a workspace build reqwest has rustls without a provider (garden-image
/// selects it): install ring before any client is built.
pub fn install_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A plain HTTP client.
pub fn http() -> reqwest::Client {
    install_tls();
    reqwest::Client::new()
}

/// Applies a one-app manifest and uploads a READY package; (app, package).
pub async fn push_bits(api: &Api, space: &str, name: &str) -> Result<(String, String)> {
    let (s, location, body) = api
        .apply_manifest(space, &format!("applications:\n- name: {name}\n"))
        .await?;
    ensure!(s == 202, "{body}");
    // The manifest is applied by a job, as the cf CLI waits for it.
    let job = api.wait_job(&location.context("job location")?).await?;
    ensure!(job["state"] == "COMPLETE", "{job}");
    let apps = api
        .ok(&format!("/v3/apps?names={name}&space_guids={space}"))
        .await?;
    let app = apps["resources"][0]["guid"]
        .as_str()
        .context("app")?
        .to_owned();
    let (_, pkg) = api
        .post(
            "/v3/packages",
            json!({"type": "bits", "relationships": {"app": {"data": {"guid": app}}}}),
        )
        .await?;
    let pkg = pkg["guid"].as_str().context("pkg")?.to_owned();
    let (s, body) = api
        .upload(
            &format!("/v3/packages/{pkg}/upload"),
            None,
            Some(zip_of(&[("index.html", b"hi", 0o644)])),
        )
        .await?;
    ensure!(s == 200 && body["state"] == "READY", "{body}");
    Ok((app, pkg))
}

/// Creates a STAGING build of a package.
pub async fn build(api: &Api, pkg: &str) -> Result<String> {
    let (s, b) = api
        .post("/v3/builds", json!({"package": {"guid": pkg}}))
        .await?;
    ensure!(s == 201 && b["state"] == "STAGING", "{b}");
    Ok(b["guid"].as_str().context("build")?.to_owned())
}

/// Completes a task through the staging hand-off.
pub async fn complete(
    staging: &Arc<Staging>,
    guid: &str,
    outcome: TaskOutcome,
) -> Result<Completion> {
    let (s, g) = (staging.clone(), guid.to_owned());
    Ok(tokio::task::spawn_blocking(move || s.task_completed(&g, outcome)).await??)
}

/// An app with a staged droplet set as current (the cell's side played
/// through the staging hand-off); returns the app guid.
pub async fn app_with_droplet(c: &InProcess, api: &Api, name: &str) -> Result<String> {
    let space = api.space_guid().await?;
    let (app, pkg) = push_bits(api, &space, name).await?;
    let b = build(api, &pkg).await?;
    let staging = c.controller().staging();
    let droplet = c.dir.path().join(format!("{name}.tgz"));
    std::fs::write(&droplet, b"droplet")?;
    let (s, g) = (staging.clone(), b.clone());
    tokio::task::spawn_blocking(move || s.store_droplet(&g, &droplet)).await??;
    let done = complete(
        &staging,
        &b,
        TaskOutcome::Succeeded {
            result: buildpack_result("./start"),
        },
    )
    .await?;
    let Completion::BuildStaged { droplet_guid } = done else {
        bail!("staging did not succeed: {done:?}")
    };
    let (s, body) = api
        .patch(
            &format!("/v3/apps/{app}/relationships/current_droplet"),
            json!({"data": {"guid": droplet_guid}}),
        )
        .await?;
    ensure!(s == 200, "current droplet: {s} {body}");
    Ok(app)
}

/// A test CA and a server certificate it signed for `localhost` and
/// 127.0.0.1, as PEM files in `dir`: (ca.pem, server.pem, server.key).
pub fn test_pki(dir: &Path) -> Result<(PathBuf, PathBuf, PathBuf)> {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "controller-lite test CA");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate()?)?;
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "controller-lite");
    let key = rcgen::KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca)?;
    let paths = (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    );
    std::fs::write(&paths.0, ca.pem())?;
    std::fs::write(&paths.1, cert.pem())?;
    std::fs::write(&paths.2, key.serialize_pem())?;
    Ok(paths)
}
