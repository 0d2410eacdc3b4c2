//! The real controller-lite binary as a subprocess, `cfl` as a subprocess
//! with its own HOME, and the cell's side of staging over the internal API.
#![allow(dead_code)]

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use serde_json::{json, Value};

/// `controller-lite` next to the `cfl` binary, built on first use.
fn controller_bin() -> Result<PathBuf> {
    let cfl = PathBuf::from(env!("CARGO_BIN_EXE_cfl"));
    let bin = cfl.with_file_name("controller-lite");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "controller-lite"])
            .status()
            .context("building controller-lite")?;
        if !status.success() || !bin.exists() {
            bail!("controller-lite was not built at {}", bin.display());
        }
    }
    Ok(bin)
}

/// A controller subprocess in a temp dir; killed and reaped on drop.
pub struct Controller {
    child: Child,
    pub base: String,
    pub data_dir: PathBuf,
    pub dir: tempfile::TempDir,
}

impl Controller {
    pub fn start() -> Result<Self> {
        Self::start_with("", "")
    }

    /// With `top` (top-level keys, e.g. TLS) and `auth` (keys of `[auth]`).
    pub fn start_with(top: &str, auth: &str) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let data = dir.path().join("data");
        let config = dir.path().join("controller.toml");
        std::fs::write(
            &config,
            format!(
                r#"listen = "127.0.0.1:0"
data_dir = "{}"
apps_domain = "apps.cfl.internal"
{top}
[auth]
argon2_memory_kib = 64
argon2_iterations = 1
{auth}
[[auth.users]]
name = "admin"
password = "admin-pw"
admin = true
"#,
                data.display()
            ),
        )?;
        let mut child = Command::new(controller_bin()?)
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
        let scheme = if top.contains("tls_cert") {
            "https"
        } else {
            "http"
        };
        Ok(Self {
            base: format!("{scheme}://{addr}"),
            child,
            data_dir: data,
            dir,
        })
    }

    pub fn internal_key(&self) -> Result<String> {
        Ok(
            std::fs::read_to_string(self.data_dir.join("internal-api.key"))?
                .trim()
                .to_owned(),
        )
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `cfl` with HOME = `home` in `cwd`, not started yet.
pub fn cfl_command(home: &Path, cwd: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cfl"));
    cmd.args(args)
        .env("HOME", home)
        .env_remove("CFL_HOME")
        .env_remove("CFL_CA_CERT")
        .current_dir(cwd)
        .stdin(Stdio::null());
    cmd
}

/// Runs `cfl` with HOME = `home` in `cwd`.
pub fn cfl(home: &Path, cwd: &Path, args: &[&str]) -> Result<Output> {
    cfl_command(home, cwd, args).output().context("running cfl")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `cfl` that must succeed; returns stdout.
pub fn ok(home: &Path, cwd: &Path, args: &[&str]) -> Result<String> {
    let o = cfl(home, cwd, args)?;
    if !o.status.success() {
        bail!("cfl {args:?} failed: {}\n{}", stdout(&o), stderr(&o));
    }
    Ok(stdout(&o))
}

/// What the fake cell saw and does.
#[derive(Default)]
pub struct CellLog {
    /// Zip entry names of each staged package.
    pub packages: Vec<Vec<String>>,
}

/// Plays a cell in a thread: stages every pending staging task (succeeds,
/// or fails when `fail` is set) and reports every instance of started
/// apps' web processes RUNNING. Stops on drop.
pub struct Cell {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
    pub log: Arc<Mutex<CellLog>>,
}

impl Cell {
    pub fn start(base: &str, key: &str, fail: bool) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(CellLog::default()));
        let _ = rustls::crypto::ring::default_provider().install_default();
        // The cell of the https tests does not check the test certificate.
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(30))
            .danger_accept_invalid_certs(base.starts_with("https://"))
            .build()?;
        admin_token(&http, base)?;
        let (b, k, s, l) = (base.to_owned(), key.to_owned(), stop.clone(), log.clone());
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                // Errors are retried on the next round; the test's
                // assertions say what went wrong. A token per round: some
                // tests make them short-lived.
                let _ = admin_token(&http, &b)
                    .and_then(|token| cell_round(&http, &b, &k, &token, fail, &l));
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Ok(Self {
            stop,
            handle: Some(handle),
            log,
        })
    }
}

impl Drop for Cell {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn admin_token(http: &reqwest::blocking::Client, base: &str) -> Result<String> {
    let body: Value = http
        .post(format!("{base}/oauth/token"))
        .basic_auth("cf", Some(""))
        .form(&[
            ("grant_type", "password"),
            ("username", "admin"),
            ("password", "admin-pw"),
        ])
        .send()?
        .json()?;
    Ok(body["access_token"].as_str().context("token")?.to_owned())
}

fn zip_names(bytes: &[u8]) -> Result<Vec<String>> {
    let mut a = zip::ZipArchive::new(std::io::Cursor::new(bytes))?;
    let mut names = Vec::new();
    for i in 0..a.len() {
        names.push(a.by_index(i)?.name()?.into_owned());
    }
    names.sort();
    Ok(names)
}

fn stage(
    http: &reqwest::blocking::Client,
    base: &str,
    key: &str,
    task: &Value,
    fail: bool,
    log: &Mutex<CellLog>,
) -> Result<()> {
    let build = task["task_guid"].as_str().context("task guid")?;
    let app = task["log_source_id"]
        .as_str()
        .or(task["log_guid"].as_str())
        .unwrap_or_default()
        .to_owned();
    let url = task["action"]["package"]["url"]
        .as_str()
        .context("package url")?;
    let bytes = http.get(url).bearer_auth(key).send()?.bytes()?;
    log.lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .packages
        .push(zip_names(&bytes)?);
    let line = if fail {
        "-----> No buildpack detected"
    } else {
        "-----> Fake buildpack compiling"
    };
    http.post(format!("{base}/internal/v1/logs"))
        .bearer_auth(key)
        .json(&json!([{"source_id": app, "source_type": "STG", "instance_id": "0", "line": line}]))
        .send()?;
    let done = if fail {
        json!({"task_guid": build, "failed": true, "failure_reason": "NoAppDetectedError: no buildpack detected the app", "result": ""})
    } else {
        let form = reqwest::blocking::multipart::Form::new().part(
            "bits",
            reqwest::blocking::multipart::Part::bytes(b"droplet".to_vec()).file_name("droplet.tgz"),
        );
        http.post(format!("{base}/internal/v1/staging/{build}/droplet"))
            .bearer_auth(key)
            .multipart(form)
            .send()?;
        let result = json!({"lifecycle_type": "buildpack", "lifecycle_metadata": {"buildpack_key": "bp", "detected_buildpack": "fake", "buildpacks": [{"key": "fake", "name": "fake", "version": "1"}]}, "process_types": {"web": "./app.sh"}, "execution_metadata": ""});
        json!({"task_guid": build, "failed": false, "failure_reason": "", "result": result.to_string()})
    };
    http.post(format!("{base}/internal/v1/tasks/{build}/completed"))
        .bearer_auth(key)
        .json(&done)
        .send()?;
    Ok(())
}

fn cell_round(
    http: &reqwest::blocking::Client,
    base: &str,
    key: &str,
    token: &str,
    fail: bool,
    log: &Mutex<CellLog>,
) -> Result<()> {
    let pending: Value = http
        .get(format!("{base}/internal/v1/tasks/pending"))
        .bearer_auth(key)
        .send()?
        .json()?;
    for task in pending["tasks"].as_array().into_iter().flatten() {
        if task["domain"] == "cf-app-staging" {
            stage(http, base, key, task, fail, log)?;
        }
    }
    let procs: Value = http
        .get(format!("{base}/v3/processes?types=web&per_page=5000"))
        .bearer_auth(token)
        .send()?
        .json()?;
    for p in procs["resources"].as_array().into_iter().flatten() {
        let guid = p["guid"].as_str().unwrap_or_default();
        let app_guid = p["relationships"]["app"]["data"]["guid"]
            .as_str()
            .unwrap_or_default();
        let app: Value = http
            .get(format!("{base}/v3/apps/{app_guid}"))
            .bearer_auth(token)
            .send()?
            .json()?;
        if app["state"] != "STARTED" {
            continue;
        }
        for index in 0..p["instances"].as_i64().unwrap_or(0) {
            let report = json!({"state": "RUNNING", "host": "127.0.0.1", "port": 61000 + index, "cpu": 0.01, "mem": 1 << 20, "disk": 1 << 20});
            http.put(format!("{base}/internal/v1/actual_lrps/{guid}/{index}"))
                .bearer_auth(key)
                .json(&report)
                .send()?;
        }
    }
    Ok(())
}

/// Posts log lines for an app as a cell does.
pub fn post_logs(base: &str, key: &str, app_guid: &str, lines: &[String]) -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::blocking::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()?;
    let batch: Vec<Value> = lines
        .iter()
        .map(|l| json!({"source_id": app_guid, "source_type": "APP/PROC/WEB", "instance_id": "0", "line": l}))
        .collect();
    let resp = http
        .post(format!("{base}/internal/v1/logs"))
        .bearer_auth(key)
        .json(&batch)
        .send()?;
    if !resp.status().is_success() {
        bail!("posting logs: {}", resp.status());
    }
    Ok(())
}

/// A test CA and a server certificate it signed for 127.0.0.1 and
/// `localhost`, as PEM files in `dir`: (ca.pem, server.pem, server.key).
pub fn test_pki(dir: &Path) -> Result<(PathBuf, PathBuf, PathBuf)> {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "cfl test CA");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate()?)?;
    let params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])?;
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
