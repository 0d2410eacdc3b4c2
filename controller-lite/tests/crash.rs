//! `kill -9` of the real binary during an upload and during staging: after a
//! restart nothing half-written is visible and the state is consistent.

mod common;

use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use common::{internal, upload_droplet, zip_of, Api, Subprocess};
use reqwest::Method;
use serde_json::json;
use tokio::io::AsyncWriteExt;

fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p.display().to_string());
            }
        }
    }
    out
}

fn integrity_ok(data: &Path) -> Result<()> {
    let conn = rusqlite::Connection::open(data.join("controller.db"))?;
    let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    ensure!(check == "ok", "integrity_check: {check}");
    let fk: i64 = conn.query_row("SELECT COUNT(*) FROM pragma_foreign_key_check", [], |r| {
        r.get(0)
    })?;
    ensure!(fk == 0, "{fk} foreign key violations");
    Ok(())
}

async fn app_and_package(api: &Api, name: &str) -> Result<(String, String)> {
    let space = api.space_guid().await?;
    let (s, app) = api
        .post(
            "/v3/apps",
            json!({"name": name, "relationships": {"space": {"data": {"guid": space}}}}),
        )
        .await?;
    ensure!(s == 201, "{app}");
    let app = app["guid"].as_str().context("app")?.to_owned();
    let (_, pkg) = api
        .post(
            "/v3/packages",
            json!({"type": "bits", "relationships": {"app": {"data": {"guid": app}}}}),
        )
        .await?;
    Ok((app, pkg["guid"].as_str().context("pkg")?.to_owned()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_during_an_upload_leaves_no_half_written_package() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let mut ctl = Subprocess::start(&data, "")?;
    let api = Api::login(&ctl.base, "admin", "admin-pw").await?;
    let (_, pkg) = app_and_package(&api, "crashy").await?;

    // Send the request head and part of a 4 MB body, then stop sending.
    let addr = ctl.base.trim_start_matches("http://").to_owned();
    let boundary = "crash-test-boundary";
    let part = format!("--{boundary}\r\nContent-Disposition: form-data; name=\"bits\"; filename=\"app.zip\"\r\nContent-Type: application/zip\r\n\r\n");
    let total = part.len() + 4 * 1024 * 1024 + boundary.len() + 8;
    let head = format!(
        "POST /v3/packages/{pkg}/upload HTTP/1.1\r\nHost: {addr}\r\nAuthorization: bearer {}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {total}\r\n\r\n{part}",
        api.token
    );
    let mut stream = tokio::net::TcpStream::connect(&addr).await?;
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(&vec![b'z'; 1024 * 1024]).await?;
    stream.flush().await?;
    let mut seen = false;
    for _ in 0..100 {
        if api.ok(&format!("/v3/packages/{pkg}")).await?["state"] == "PROCESSING_UPLOAD" {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ensure!(seen, "the upload was in progress");
    ctl.kill9();
    drop(stream);
    integrity_ok(&data)?;

    let ctl = Subprocess::start(&data, "")?;
    let api = Api::login(&ctl.base, "admin", "admin-pw").await?;
    let p = api.ok(&format!("/v3/packages/{pkg}")).await?;
    ensure!(
        p["state"] == "FAILED"
            && p["data"]["error"]
                .as_str()
                .is_some_and(|e| e.contains("interrupted")),
        "{p}"
    );
    ensure!(p["data"]["checksum"]["value"].is_null());
    let blobs = data.join("blobs");
    ensure!(
        files_under(&blobs.join("packages")).is_empty(),
        "no package blob"
    );
    ensure!(
        files_under(&blobs.join("resources")).is_empty(),
        "no partial resource"
    );
    ensure!(
        files_under(&blobs.join("tmp")).is_empty(),
        "temp files cleaned at start"
    );
    // The same package takes a fresh upload afterwards.
    let (s, body) = api
        .upload(
            &format!("/v3/packages/{pkg}/upload"),
            None,
            Some(zip_of(&[("ok.txt", b"ok", 0o644)])),
        )
        .await?;
    ensure!(s == 200 && body["state"] == "READY", "{s} {body}");
    ensure!(files_under(&blobs.join("packages")).len() == 1);
    // Deleting the app leaves its package blob until the next start collects it.
    let app = body["relationships"]["app"]["data"]["guid"]
        .as_str()
        .context("app")?
        .to_owned();
    let resp = api
        .http
        .delete(api.url(&format!("/v3/apps/{app}")))
        .bearer_auth(&api.token)
        .send()
        .await?;
    ensure!(resp.status() == 202);
    drop(ctl);
    integrity_ok(&data)?;
    let _ctl = Subprocess::start(&data, "")?;
    ensure!(
        files_under(&blobs.join("packages")).is_empty(),
        "unreferenced package blob collected at start"
    );
    ensure!(
        !files_under(&blobs.join("resources")).is_empty(),
        "the resource cache is kept"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_during_staging_keeps_builds_consistent() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let config = "[staging]\ntimeout_secs = 6\nsweep_interval_secs = 1\n";
    let mut ctl = Subprocess::start(&data, config)?;
    let key = common::internal_key(&data);
    let api = Api::login(&ctl.base, "admin", "admin-pw").await?;
    let (app, pkg) = app_and_package(&api, "staged").await?;
    api.upload(
        &format!("/v3/packages/{pkg}/upload"),
        None,
        Some(zip_of(&[("a", b"a", 0o644)])),
    )
    .await?;
    let mut builds = Vec::new();
    for _ in 0..2 {
        let (s, b) = api
            .post("/v3/builds", json!({"package": {"guid": pkg}}))
            .await?;
        ensure!(s == 201, "{b}");
        builds.push(b["guid"].as_str().context("build")?.to_owned());
    }
    // The cell uploaded build 0's droplet; then the controller dies.
    let (s, body) = upload_droplet(&ctl.base, &key, &builds[0], b"droplet-0".to_vec()).await?;
    ensure!(s == 200, "{body}");
    ctl.kill9();
    integrity_ok(&data)?;

    let ctl = Subprocess::start(&data, config)?;
    let api = Api::login(&ctl.base, "admin", "admin-pw").await?;
    for b in &builds {
        let got = api.ok(&format!("/v3/builds/{b}")).await?;
        ensure!(
            got["state"] == "STAGING" && got["droplet"].is_null(),
            "{got}"
        );
    }
    ensure!(
        api.ok(&format!("/v3/apps/{app}/droplets")).await?["pagination"]["total_results"] == 0,
        "no droplet before completion"
    );
    // Completion after the restart uses the droplet uploaded before it.
    let done = json!({"failed": false, "result": common::buildpack_result("./a")});
    let (s, body) = internal(
        &ctl.base,
        &key,
        Method::POST,
        &format!("/internal/v1/tasks/{}/completed", builds[0]),
        Some(done),
    )
    .await?;
    ensure!(s == 200 && body["build_state"] == "STAGED", "{s} {body}");
    // The other build never completes: the sweeper fails it at its deadline.
    let mut state = String::new();
    for _ in 0..100 {
        state = api.ok(&format!("/v3/builds/{}", builds[1])).await?["state"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        if state != "STAGING" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ensure!(state == "FAILED", "timed out build: {state}");
    ensure!(api.ok(&format!("/v3/builds/{}", builds[0])).await?["state"] == "STAGED");
    let droplets = api.ok(&format!("/v3/apps/{app}/droplets")).await?;
    ensure!(droplets["pagination"]["total_results"] == 1, "{droplets}");
    drop(ctl);
    integrity_ok(&data)
}
