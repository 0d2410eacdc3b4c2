//! Replays the cf CLI v8 `cf push` call sequence (REFERENCE §5) against the
//! real `controller-lite` binary and checks every response field the CLI
//! reads. The stock cf CLI cannot be installed on this machine (no package
//! in the registries we reach), so this is the conformance test; the cell's
//! side (staging task, droplet upload, completion, instance report) is
//! played through the internal API.

mod common;

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use base64::Engine as _;
use common::{internal, sha1_hex, upload_droplet, zip_names, zip_of, Api, Subprocess};
use reqwest::Method;
use serde_json::{json, Value};

async fn poll<F>(api: &Api, path: &str, done: F) -> Result<Value>
where
    F: Fn(&Value) -> bool,
{
    for _ in 0..200 {
        let v = api.ok(path).await?;
        if done(&v) {
            return Ok(v);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("{path} never reached the wanted state")
}

fn jwt_payload(token: &str) -> Result<Value> {
    let part = token.split('.').nth(1).context("jwt has no payload")?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part)?;
    Ok(serde_json::from_slice(&bytes)?)
}

/// `cf api` + `cf login` + `cf target`.
async fn login_and_target(base: &str) -> Result<(Api, String)> {
    let http = common::http();
    let root: Value = http.get(format!("{base}/")).send().await?.json().await?;
    for link in ["login", "uaa", "log_cache", "cloud_controller_v3"] {
        ensure!(
            root["links"][link]["href"].is_string(),
            "root lacks links.{link}: {root}"
        );
    }
    let version = root["links"]["cloud_controller_v3"]["meta"]["version"]
        .as_str()
        .context("version")?;
    let parts: Vec<u64> = version.split('.').map(|p| p.parse().unwrap_or(0)).collect();
    ensure!(
        parts.as_slice() >= [3, 99, 0].as_slice(),
        "v3 version {version} < 3.99.0"
    );
    let login = root["links"]["login"]["href"].as_str().context("login")?;
    let prompts: Value = http
        .get(format!("{login}/login"))
        .send()
        .await?
        .json()
        .await?;
    ensure!(prompts["prompts"]["username"].is_array() && prompts["prompts"]["password"].is_array());

    let tok = common::token(login, "admin", "admin-pw").await?;
    ensure!(tok["token_type"] == "bearer" && tok["refresh_token"].is_string());
    let access = tok["access_token"].as_str().context("access_token")?;
    let claims = jwt_payload(access)?;
    ensure!(
        claims["user_name"] == "admin" && claims["user_id"].is_string() && claims["exp"].is_u64(),
        "{claims}"
    );

    let api = Api::login(base, "admin", "admin-pw").await?;
    let orgs = api.ok("/v3/organizations?names=default").await?;
    let org = orgs["resources"][0]["guid"]
        .as_str()
        .context("org")?
        .to_owned();
    let spaces = api
        .ok(&format!(
            "/v3/spaces?names=default&organization_guids={org}"
        ))
        .await?;
    ensure!(spaces["pagination"]["next"].is_null(), "one page of spaces");
    let space = spaces["resources"][0]["guid"]
        .as_str()
        .context("space")?
        .to_owned();
    Ok((api, space))
}

/// The cell's part of staging: take the task, fetch the package, upload a
/// droplet, stream a log line, report completion.
async fn play_staging_cell(base: &str, key: &str, build: &str, app: &str) -> Result<()> {
    let (status, pending) =
        internal(base, key, Method::GET, "/internal/v1/tasks/pending", None).await?;
    ensure!(status == 200, "pending: {status} {pending}");
    let task = pending["tasks"]
        .as_array()
        .context("tasks")?
        .iter()
        .find(|t| t["task_guid"] == build)
        .context("staging task")?
        .clone();
    ensure!(task["domain"] == "cf-app-staging" && task["log_source_type"] == "STG");
    let action = &task["action"];
    ensure!(action["type"] == "buildpack_staging", "{action}");
    let url = action["package"]["url"].as_str().context("package url")?;
    let bytes = common::http()
        .get(url)
        .bearer_auth(key)
        .send()
        .await?
        .bytes()
        .await?;
    ensure!(
        sha1_hex(&bytes) == action["package"]["sha1"].as_str().unwrap_or(""),
        "package sha1 matches"
    );
    let names = zip_names(&bytes);
    ensure!(
        names.contains(&"app.sh".to_owned()) && names.contains(&"lib/data.txt".to_owned()),
        "{names:?}"
    );

    let lines = json!([{"source_id": app, "source_type": "STG", "instance_id": "0", "line": "-----> Binary buildpack compiling"}]);
    let (status, _) = internal(base, key, Method::POST, "/internal/v1/logs", Some(lines)).await?;
    ensure!(status == 204);
    let (status, body) = upload_droplet(base, key, build, b"droplet-tgz-bytes".to_vec()).await?;
    ensure!(status == 200, "droplet upload: {status} {body}");
    let done = json!({"task_guid": build, "failed": false, "failure_reason": "", "result": common::buildpack_result("./app.sh")});
    let (status, body) = internal(
        base,
        key,
        Method::POST,
        &format!("/internal/v1/tasks/{build}/completed"),
        Some(done),
    )
    .await?;
    ensure!(
        status == 200 && body["build_state"] == "STAGED",
        "completion: {status} {body}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cf_push_sequence_against_the_real_binary() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let ctl = Subprocess::start(&dir.path().join("data"), "")?;
    let base = ctl.base.clone();
    let key = common::internal_key(&ctl.data_dir);
    let (api, space) = login_and_target(&base).await?;

    // apply_manifest → job → app lookup.
    let manifest = "applications:\n- name: web-app\n  instances: 2\n  memory: 256M\n  disk_quota: 512M\n  buildpacks: []\n  env:\n    GREETING: hello\n";
    let diff = api
        .http
        .post(api.url(&format!("/v3/spaces/{space}/manifest_diff")))
        .bearer_auth(&api.token)
        .header("Content-Type", "application/x-yaml")
        .body(manifest)
        .send()
        .await?;
    ensure!(diff.status() == 200, "manifest_diff: {}", diff.status());
    ensure!(diff.json::<Value>().await?["diff"].is_array());
    let (status, location, body) = api.apply_manifest(&space, manifest).await?;
    ensure!(status == 202, "apply_manifest: {status} {body}");
    let job = api.wait_job(&location.context("Location header")?).await?;
    ensure!(job["state"] == "COMPLETE", "{job}");
    let apps = api
        .ok(&format!("/v3/apps?names=web-app&space_guids={space}"))
        .await?;
    let app = apps["resources"][0].clone();
    let app_guid = app["guid"].as_str().context("app guid")?.to_owned();
    ensure!(app["state"] == "STOPPED" && app["lifecycle"]["type"] == "buildpack");

    // resource match (nothing cached yet), package, upload, poll READY.
    let files: [(&str, &[u8], u32); 2] = [
        ("app.sh", b"#!/bin/sh\necho hi\n", 0o755),
        ("lib/data.txt", b"some data file\n", 0o644),
    ];
    let resources: Vec<Value> = files
        .iter()
        .map(|(p, d, m)| json!({"checksum": {"value": sha1_hex(d)}, "size_in_bytes": d.len(), "path": p, "mode": format!("{m:o}")}))
        .collect();
    let (status, matched) = api
        .post("/v3/resource_matches", json!({"resources": resources}))
        .await?;
    ensure!(
        status == 201 && matched["resources"].as_array().is_some_and(Vec::is_empty),
        "{status} {matched}"
    );
    let (status, pkg) = api
        .post(
            "/v3/packages",
            json!({"type": "bits", "relationships": {"app": {"data": {"guid": app_guid}}}}),
        )
        .await?;
    ensure!(
        status == 201
            && pkg["state"] == "AWAITING_UPLOAD"
            && pkg["links"]["upload"]["href"].is_string(),
        "{pkg}"
    );
    let pkg_guid = pkg["guid"].as_str().context("package guid")?.to_owned();
    let (status, body) = api
        .upload(
            &format!("/v3/packages/{pkg_guid}/upload"),
            Some(json!([])),
            Some(zip_of(&files)),
        )
        .await?;
    ensure!(status == 200, "upload: {status} {body}");
    poll(&api, &format!("/v3/packages/{pkg_guid}"), |p| {
        p["state"] == "READY"
    })
    .await?;

    // build → staging logs → cell → STAGED.
    let start_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos()
        .to_string();
    let (status, build) = api
        .post("/v3/builds", json!({"package": {"guid": pkg_guid}}))
        .await?;
    ensure!(
        status == 201 && build["state"] == "STAGING",
        "{status} {build}"
    );
    let build_guid = build["guid"].as_str().context("build guid")?.to_owned();
    let info = api.ok("/api/v1/info").await?;
    ensure!(info["version"].is_string());
    play_staging_cell(&base, &key, &build_guid, &app_guid).await?;
    let logs = api
        .ok(&format!(
            "/api/v1/read/{app_guid}?start_time={start_ns}&envelope_types=LOG"
        ))
        .await?;
    let lines: Vec<String> = logs["envelopes"]["batch"]
        .as_array()
        .context("batch")?
        .iter()
        .filter(|e| e["tags"]["source_type"] == "STG")
        .map(|e| {
            String::from_utf8(
                base64::engine::general_purpose::STANDARD
                    .decode(e["log"]["payload"].as_str().unwrap_or(""))
                    .unwrap_or_default(),
            )
            .unwrap_or_default()
        })
        .collect();
    ensure!(
        lines
            .iter()
            .any(|l| l.contains("Binary buildpack compiling")),
        "{lines:?}"
    );
    let staged = poll(&api, &format!("/v3/builds/{build_guid}"), |b| {
        b["state"] != "STAGING"
    })
    .await?;
    ensure!(
        staged["state"] == "STAGED" && staged["error"].is_null(),
        "{staged}"
    );
    let droplet_guid = staged["droplet"]["guid"]
        .as_str()
        .context("droplet guid")?
        .to_owned();

    // current droplet, restart, stats until RUNNING.
    let (status, rel) = api
        .patch(
            &format!("/v3/apps/{app_guid}/relationships/current_droplet"),
            json!({"data": {"guid": droplet_guid}}),
        )
        .await?;
    ensure!(
        status == 200 && rel["data"]["guid"] == droplet_guid.as_str(),
        "{rel}"
    );
    let (status, started) = api
        .post(&format!("/v3/apps/{app_guid}/actions/restart"), json!({}))
        .await?;
    ensure!(status == 200 && started["state"] == "STARTED", "{started}");
    let procs = api.ok(&format!("/v3/apps/{app_guid}/processes")).await?;
    let web = procs["resources"]
        .as_array()
        .context("processes")?
        .iter()
        .find(|p| p["type"] == "web")
        .context("web")?
        .clone();
    ensure!(
        web["instances"] == 2 && web["memory_in_mb"] == 256 && web["disk_in_mb"] == 512,
        "{web}"
    );
    let process_guid = web["guid"].as_str().context("process guid")?.to_owned();
    let stats = api
        .ok(&format!("/v3/processes/{process_guid}/stats"))
        .await?;
    ensure!(stats["resources"][0]["state"] == "STARTING", "{stats}");
    for index in 0..2 {
        let report = json!({"state": "RUNNING", "host": "127.0.0.1", "port": 61000 + index, "cpu": 0.01, "mem": 1 << 20, "disk": 1 << 20});
        let (status, body) = internal(
            &base,
            &key,
            Method::PUT,
            &format!("/internal/v1/actual_lrps/{process_guid}/{index}"),
            Some(report),
        )
        .await?;
        ensure!(status == 204, "report: {status} {body}");
    }
    let stats = poll(&api, &format!("/v3/processes/{process_guid}/stats"), |s| {
        s["resources"][0]["state"] == "RUNNING"
    })
    .await?;
    let first = &stats["resources"][0];
    ensure!(
        first["index"] == 0
            && first["usage"]["mem"].is_i64()
            && first["instance_ports"][0]["external"] == 61000,
        "{first}"
    );
    ensure!(first["mem_quota"] == 256 * 1024 * 1024, "{first}");

    let features = api.ok(&format!("/v3/apps/{app_guid}/features")).await?;
    ensure!(features["resources"].is_array());
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await?
        .text()
        .await?;
    ensure!(
        metrics.contains("route=\"/v3/apps/{guid}/actions/restart\",status=\"200\"} 1"),
        "{metrics}"
    );

    // The default route from the manifest.
    let routes = api.ok(&format!("/v3/routes?app_guids={app_guid}")).await?;
    ensure!(
        routes["resources"][0]["url"] == "web-app.apps.test.internal",
        "{routes}"
    );

    // Second push: everything is cached now; upload only the resource list.
    let (_, matched) = api
        .post("/v3/resource_matches", json!({"resources": resources}))
        .await?;
    ensure!(
        matched["resources"].as_array().map(Vec::len) == Some(2),
        "{matched}"
    );
    let (_, pkg2) = api
        .post(
            "/v3/packages",
            json!({"type": "bits", "relationships": {"app": {"data": {"guid": app_guid}}}}),
        )
        .await?;
    let pkg2_guid = pkg2["guid"].as_str().context("package 2")?.to_owned();
    let (status, body) = api
        .upload(
            &format!("/v3/packages/{pkg2_guid}/upload"),
            Some(json!(resources)),
            // An empty `bits` part, as the CLI may send when everything matched.
            Some(Vec::new()),
        )
        .await?;
    ensure!(status == 200 && body["state"] == "READY", "{status} {body}");
    let zip = api
        .http
        .get(api.url(&format!("/v3/packages/{pkg2_guid}/download")))
        .bearer_auth(&api.token)
        .send()
        .await?
        .bytes()
        .await?;
    let mut names = zip_names(&zip);
    names.sort();
    ensure!(names == ["app.sh", "lib/data.txt"], "{names:?}");
    Ok(())
}
