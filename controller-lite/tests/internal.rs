//! The internal (cell-facing) API: per-cell keys beside the shared key
//! (issued in process and with `controller-lite cell-key`), and log
//! envelopes that cells post surviving a `kill -9` of the controller,
//! bounded per app, read newest-first as `cf logs --recent` asks.

mod common;

use std::process::Command;

use anyhow::{ensure, Context, Result};
use base64::Engine as _;
use common::{internal, internal_key, Api, InProcess, Subprocess};
use reqwest::Method;
use serde_json::{json, Value};

async fn pending_status(base: &str, key: &str) -> Result<u16> {
    Ok(
        internal(base, key, Method::GET, "/internal/v1/tasks/pending", None)
            .await?
            .0,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_cell_keys_work_beside_the_shared_key() -> Result<()> {
    let c = InProcess::start("").await?;
    let shared = internal_key(&c.dir.path().join("data"));
    let db = c.controller().state.db.clone();
    let key = tokio::task::spawn_blocking(move || controller_lite::cells::issue_key(&db, "cell-a"))
        .await??;
    ensure!(
        pending_status(&c.base, &key).await? == 200,
        "cell key works"
    );
    ensure!(
        pending_status(&c.base, &shared).await? == 200,
        "shared key still works"
    );
    ensure!(pending_status(&c.base, "not-a-key").await? == 401);
    let no_auth = common::http()
        .get(format!("{}/internal/v1/tasks/pending", c.base))
        .send()
        .await?;
    ensure!(no_auth.status() == 401);
    let db = c.controller().state.db.clone();
    ensure!(
        tokio::task::spawn_blocking(move || controller_lite::cells::revoke_key(&db, "cell-a"))
            .await??
    );
    ensure!(pending_status(&c.base, &key).await? == 401, "revoked");
    ensure!(pending_status(&c.base, &shared).await? == 200);
    c.stop().await;
    Ok(())
}

fn lines(body: &Value) -> Vec<String> {
    body["envelopes"]["batch"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            base64::engine::general_purpose::STANDARD
                .decode(e["log"]["payload"].as_str()?)
                .ok()
        })
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .collect()
}

async fn post_lines(base: &str, key: &str, app: &str, from: usize, to: usize) -> Result<()> {
    let batch: Vec<Value> = (from..to)
        .map(|i| json!({"source_id": app, "source_type": "APP/PROC/WEB", "instance_id": "0", "line": format!("line {i}")}))
        .collect();
    let (s, body) = internal(
        base,
        key,
        Method::POST,
        "/internal/v1/logs",
        Some(json!(batch)),
    )
    .await?;
    ensure!(s == 204, "{s} {body}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_envelopes_survive_kill9_and_stay_bounded() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let extra = "[log_cache]\nmax_envelopes_per_source = 5\n";
    let mut ctl = Subprocess::start(&data, extra)?;
    let api = Api::login(&ctl.base, "admin", "admin-pw").await?;
    let space = api.space_guid().await?;
    let (s, app) = api
        .post(
            "/v3/apps",
            json!({"name": "talker", "relationships": {"space": {"data": {"guid": space}}}}),
        )
        .await?;
    ensure!(s == 201, "{app}");
    let app = app["guid"].as_str().context("app")?.to_owned();
    let key = internal_key(&data);
    post_lines(&ctl.base, &key, &app, 0, 8).await?;
    let newest = format!("/api/v1/read/{app}?envelope_types=LOG&descending=true&limit=3");
    let all = format!("/api/v1/read/{app}?start_time=0&limit=1000");
    ensure!(lines(&api.ok(&newest).await?) == ["line 7", "line 6", "line 5"]);
    let before = api.ok(&all).await?;
    ensure!(
        lines(&before) == ["line 3", "line 4", "line 5", "line 6", "line 7"],
        "5 kept per app: {:?}",
        lines(&before)
    );

    ctl.kill9();
    let ctl = Subprocess::start(&data, extra)?;
    let api = Api::login(&ctl.base, "admin", "admin-pw").await?;
    let after = api.ok(&all).await?;
    ensure!(
        after["envelopes"] == before["envelopes"],
        "the same envelopes after the restart: {after}"
    );
    post_lines(&ctl.base, &key, &app, 8, 10).await?;
    let got = api.ok(&all).await?;
    ensure!(
        lines(&got) == ["line 5", "line 6", "line 7", "line 8", "line 9"],
        "{:?}",
        lines(&got)
    );
    let ts = |v: &Value, i: usize| {
        v["envelopes"]["batch"][i]["timestamp"]
            .as_str()
            .and_then(|t| t.parse::<i64>().ok())
    };
    ensure!(
        ts(&got, 3) > ts(&got, 2),
        "timestamps keep increasing across restarts"
    );
    // Only LOG envelopes are kept; asking for others gives none.
    let gauges = api
        .ok(&format!("/api/v1/read/{app}?envelope_types=GAUGE"))
        .await?;
    ensure!(lines(&gauges).is_empty());
    let (s, _) = api.get(&format!("/api/v1/read/{app}?limit=zero")).await?;
    ensure!(s == 400, "a bad limit is refused");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cell_key_command_issues_and_revokes_while_serving() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let ctl = Subprocess::start(&data, "")?;
    let config = data.with_extension("toml");
    let run = |args: &[&str]| -> Result<std::process::Output> {
        Ok(Command::new(env!("CARGO_BIN_EXE_controller-lite"))
            .arg("cell-key")
            .arg("--config")
            .arg(&config)
            .args(args)
            .env("RUST_LOG", "warn")
            .output()?)
    };
    let out = run(&["cell-7"])?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = String::from_utf8(out.stdout)?.trim().to_owned();
    ensure!(key.len() == 64, "{key}");
    ensure!(pending_status(&ctl.base, &key).await? == 200);
    let out = run(&["cell-7", "--revoke"])?;
    ensure!(out.status.success());
    ensure!(pending_status(&ctl.base, &key).await? == 401);
    let out = run(&["bad/id"])?;
    ensure!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("invalid cell id"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}
