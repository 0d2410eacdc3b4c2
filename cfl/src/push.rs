//! `cfl push`: apply the manifest, match resources, upload the rest with a
//! progress bar, stage while printing STG lines, set the droplet, restart
//! and wait for an instance to run.

use std::collections::{BTreeMap, HashSet};
use std::io::Cursor;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use reqwest::blocking::multipart::{Form, Part};
use serde_json::{json, Value};

use crate::bits::{self, AppFile, BitsError};
use crate::client::{Client, ClientError};
use crate::logs;
use crate::manifest::PushApp;

/// Errors of a push.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// An API call failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// Reading or zipping the app's files.
    #[error(transparent)]
    Bits(#[from] BitsError),
    /// The package could not be assembled.
    #[error("package upload failed: {0}")]
    PackageFailed(String),
    /// The build ended FAILED.
    #[error("staging failed: {0}")]
    StagingFailed(String),
    /// Every instance crashed.
    #[error("app {0} crashed: every instance is CRASHED")]
    Crashed(String),
    /// A rolling restart's new version crashed; the old one still serves.
    #[error("app {0}: the new version crashed ({1}); the previous version keeps running")]
    NewVersionCrashed(String, String),
    /// Waiting took too long.
    #[error("timed out after {secs}s waiting for {what}")]
    Timeout {
        /// What we waited for.
        what: &'static str,
        /// The limit.
        secs: u64,
    },
}

/// Timeouts and switches of a push.
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// Staging must finish within this.
    pub staging_timeout: Duration,
    /// An instance must be RUNNING within this after the restart.
    pub startup_timeout: Duration,
    /// `--no-start`: stop after uploading the package.
    pub no_start: bool,
}

/// Pushes every app in order.
pub fn push(client: &mut Client, apps: &[PushApp], opts: &PushOptions) -> Result<(), PushError> {
    for app in apps {
        push_one(client, app, opts)?;
    }
    Ok(())
}

fn push_one(client: &mut Client, app: &PushApp, opts: &PushOptions) -> Result<(), PushError> {
    let target = client.target()?.clone();
    println!(
        "Pushing app {} to org {} / space {}...",
        app.name, target.org, target.space
    );
    let app_guid = apply_manifest(client, &target.space_guid, app)?;
    let package = match &app.docker_image {
        Some(image) => docker_package(client, &app_guid, image)?,
        None => upload_bits(client, &app_guid, app)?,
    };
    if opts.no_start {
        println!("Package uploaded; not starting (--no-start).");
        return Ok(());
    }
    let droplet = stage(client, &app_guid, &package, opts.staging_timeout)?;
    client.patch(
        &format!("/v3/apps/{app_guid}/relationships/current_droplet"),
        &json!({"data": {"guid": droplet}}),
    )?;
    println!("Starting app {}...", app.name);
    client.post(&format!("/v3/apps/{app_guid}/actions/restart"), &json!({}))?;
    wait_running(client, &app_guid, &app.name, opts.startup_timeout)?;
    println!("App {} is running.", app.name);
    Ok(())
}

/// `apply_manifest` with the single-app manifest; returns the app guid.
fn apply_manifest(client: &mut Client, space: &str, app: &PushApp) -> Result<String, PushError> {
    let url = client.url(&format!("/v3/spaces/{space}/actions/apply_manifest"));
    let yaml = app.manifest_yaml();
    let resp = client.send(&url, |h| {
        h.post(&url)
            .header("Content-Type", "application/x-yaml")
            .body(yaml.clone())
    })?;
    let location = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Some(job) = location {
        client.wait_job(&job, Duration::from_secs(120))?;
    }
    let apps = client.list(&format!("/v3/apps?names={}&space_guids={space}", app.name))?;
    let guid = apps
        .first()
        .and_then(|a| a["guid"].as_str())
        .ok_or_else(|| ClientError::Api {
            status: 404,
            title: "CF-AppNotFound".into(),
            detail: format!("App '{}' not found after applying the manifest", app.name),
        })?;
    Ok(guid.to_owned())
}

fn docker_package(client: &mut Client, app_guid: &str, image: &str) -> Result<String, PushError> {
    let pkg = client.post(
        "/v3/packages",
        &json!({"type": "docker", "data": {"image": image}, "relationships": {"app": {"data": {"guid": app_guid}}}}),
    )?;
    println!("Using docker image {image}");
    Ok(pkg["guid"].as_str().unwrap_or_default().to_owned())
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Resource matching: the `(path, sha1)` pairs the server already has.
fn match_resources(
    client: &mut Client,
    files: &[AppFile],
) -> Result<HashSet<(String, String)>, PushError> {
    let mut matched = HashSet::new();
    // The API takes at most 5000 resources per request.
    for chunk in files.chunks(5000) {
        let body = json!({"resources": chunk.iter().map(AppFile::resource).collect::<Vec<_>>()});
        let resp = client.post("/v3/resource_matches", &body)?;
        for r in resp["resources"].as_array().into_iter().flatten() {
            let path = r["path"].as_str().unwrap_or_default().to_owned();
            let sha = r["checksum"]["value"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            matched.insert((path, sha));
        }
    }
    Ok(matched)
}

fn upload_bits(client: &mut Client, app_guid: &str, app: &PushApp) -> Result<String, PushError> {
    let files = bits::collect(&app.dir)?;
    let total: u64 = files.iter().map(|f| f.size).sum();
    let matched = match_resources(client, &files)?;
    let matched_files: Vec<&AppFile> = files
        .iter()
        .filter(|f| matched.contains(&(f.rel.clone(), f.sha1.clone())))
        .collect();
    let saved: u64 = matched_files.iter().map(|f| f.size).sum();
    println!(
        "Resource matching: {} of {} files ({} of {}) already on the server, not uploaded",
        matched_files.len(),
        files.len(),
        human_bytes(saved),
        human_bytes(total)
    );
    let (zip, zipped) = bits::zip_unmatched(&files, &matched)?;
    let resources: Vec<Value> = matched_files.iter().map(|f| f.resource()).collect();
    let pkg = client.post(
        "/v3/packages",
        &json!({"type": "bits", "relationships": {"app": {"data": {"guid": app_guid}}}}),
    )?;
    let guid = pkg["guid"].as_str().unwrap_or_default().to_owned();
    println!(
        "Uploading {zipped} files ({} zipped)...",
        human_bytes(zip.len() as u64)
    );
    send_package(client, &guid, zip, &resources)?;
    wait_package(client, &guid)?;
    Ok(guid)
}

/// The multipart upload with a progress bar over the zip's bytes.
fn send_package(
    client: &mut Client,
    guid: &str,
    zip: Vec<u8>,
    resources: &[Value],
) -> Result<(), PushError> {
    let len = zip.len() as u64;
    let bar = ProgressBar::new(len);
    if let Ok(style) =
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec}")
    {
        bar.set_style(style);
    }
    let url = client.url(&format!("/v3/packages/{guid}/upload"));
    let resources = Value::from(resources.to_vec()).to_string();
    // The body is a one-shot reader: if the token is refused mid-upload,
    // `send` refreshes and rebuilds it from the same bytes.
    let resp = client.send(&url, |h| {
        let reader = bar.wrap_read(Cursor::new(zip.clone()));
        let bits = Part::reader_with_length(reader, len)
            .file_name("application.zip")
            .mime_str("application/zip")
            .unwrap_or_else(|_| Part::bytes(Vec::new()));
        let form = Form::new()
            .text("resources", resources.clone())
            .part("bits", bits);
        h.post(&url).multipart(form)
    });
    bar.finish_and_clear();
    resp?;
    Ok(())
}

fn wait_package(client: &mut Client, guid: &str) -> Result<(), PushError> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let pkg = client.get(&format!("/v3/packages/{guid}"))?;
        match pkg["state"].as_str() {
            Some("READY") => return Ok(()),
            Some("FAILED") => {
                let why = pkg["data"]["error"].as_str().unwrap_or("unknown error");
                return Err(PushError::PackageFailed(why.to_owned()));
            }
            _ if Instant::now() > deadline => {
                return Err(PushError::Timeout {
                    what: "the package to be processed",
                    secs: 600,
                })
            }
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// Creates the build and prints STG lines until it is STAGED; returns the
/// droplet guid.
fn stage(
    client: &mut Client,
    app_guid: &str,
    package: &str,
    timeout: Duration,
) -> Result<String, PushError> {
    let mut since = logs::next_start(client, app_guid)?;
    let build = client.post("/v3/builds", &json!({"package": {"guid": package}}))?;
    let guid = build["guid"].as_str().unwrap_or_default().to_owned();
    println!("Staging app and tracing logs...");
    let deadline = Instant::now() + timeout;
    loop {
        since = logs::poll_new(client, app_guid, since, |l| {
            if l.source_type == "STG" {
                println!("   {}", l.text);
            }
        })?;
        let build = client.get(&format!("/v3/builds/{guid}"))?;
        match build["state"].as_str() {
            Some("STAGED") => {
                let droplet = build["droplet"]["guid"].as_str().unwrap_or_default();
                return Ok(droplet.to_owned());
            }
            Some("FAILED") => {
                logs::poll_new(client, app_guid, since, |l| {
                    if l.source_type == "STG" {
                        println!("   {}", l.text);
                    }
                })?;
                let why = build["error"].as_str().unwrap_or("unknown error");
                return Err(PushError::StagingFailed(why.to_owned()));
            }
            _ if Instant::now() > deadline => {
                return Err(PushError::Timeout {
                    what: "staging",
                    secs: timeout.as_secs(),
                })
            }
            _ => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

/// Prints instance states as they change until one is RUNNING.
fn wait_running(
    client: &mut Client,
    app_guid: &str,
    name: &str,
    timeout: Duration,
) -> Result<(), PushError> {
    let deadline = Instant::now() + timeout;
    let procs = client.list(&format!("/v3/apps/{app_guid}/processes"))?;
    let web = procs
        .iter()
        .find(|p| p["type"] == "web")
        .or(procs.first())
        .and_then(|p| p["guid"].as_str())
        .unwrap_or_default()
        .to_owned();
    let mut last = String::new();
    loop {
        let stats = client.get(&format!("/v3/processes/{web}/stats"))?;
        let rows = stats["resources"].as_array().cloned().unwrap_or_default();
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for s in &rows {
            *counts
                .entry(s["state"].as_str().unwrap_or("UNKNOWN").to_owned())
                .or_default() += 1;
        }
        let summary = counts
            .iter()
            .map(|(k, v)| format!("{v} {}", k.to_lowercase()))
            .collect::<Vec<_>>()
            .join(", ");
        if summary != last {
            println!("   instances: {summary}");
            last = summary;
        }
        // A rolling restart is done when no new-version row waits beside
        // the serving ones; a crashing new version ends the wait.
        let rolling: Vec<&Value> = rows
            .iter()
            .filter(|r| {
                r["details"]
                    .as_str()
                    .is_some_and(|d| d.contains("rolling out"))
            })
            .collect();
        if let Some(crashed) = rolling.iter().find(|r| r["state"] == "CRASHED") {
            let what = crashed["details"]
                .as_str()
                .unwrap_or("new version")
                .to_owned();
            return Err(PushError::NewVersionCrashed(name.to_owned(), what));
        }
        let total: usize = counts.values().sum();
        if (counts.contains_key("RUNNING") && rolling.is_empty()) || total == 0 {
            return Ok(());
        }
        if counts.get("CRASHED") == Some(&total) {
            return Err(PushError::Crashed(name.to_owned()));
        }
        if Instant::now() > deadline {
            return Err(PushError::Timeout {
                what: "an instance to be RUNNING",
                secs: timeout.as_secs(),
            });
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}
