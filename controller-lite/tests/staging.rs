//! Staging orchestration driven through the scheduler hand-off directly:
//! completion to STAGED or FAILED, idempotence, the timeout (with an
//! injected clock), docker staging and two concurrent pushes of one app.

mod common;

use anyhow::{ensure, Context, Result};
use base64::Engine as _;
use common::{build, complete, push_bits, zip_of, Api, InProcess};
use controller_lite::staging::{Completion, TaskOutcome};
use serde_json::{json, Value};

fn stg_lines(logs: &Value) -> Vec<String> {
    logs["envelopes"]["batch"]
        .as_array()
        .map(|b| {
            b.iter()
                .filter(|e| e["tags"]["source_type"] == "STG")
                .filter_map(|e| {
                    base64::engine::general_purpose::STANDARD
                        .decode(e["log"]["payload"].as_str()?)
                        .ok()
                })
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completion_moves_builds_to_staged_or_failed_once() -> Result<()> {
    let c = InProcess::start("").await?;
    let api = Api::login(&c.base, "admin", "admin-pw").await?;
    let space = api.space_guid().await?;
    let staging = c.controller().staging();
    let (app, pkg) = push_bits(&api, &space, "stager").await?;

    // The staging task was handed to the scheduler with everything a cell needs.
    let pending = tokio::task::spawn_blocking({
        let s = c.controller().state.scheduler.clone();
        move || s.pending_tasks()
    })
    .await??;
    ensure!(pending.is_empty());
    let ok_build = build(&api, &pkg).await?;
    let pending = tokio::task::spawn_blocking({
        let s = c.controller().state.scheduler.clone();
        move || s.pending_tasks()
    })
    .await??;
    let task = pending
        .iter()
        .find(|t| t.task_guid == ok_build)
        .context("task submitted")?;
    ensure!(
        task.domain == "cf-app-staging"
            && task.stack.as_deref() == Some("cflinuxfs4")
            && task.env.contains_key("CF_STACK")
    );

    // Success without a droplet upload fails the build clearly.
    let no_droplet = complete(
        &staging,
        &ok_build,
        TaskOutcome::Succeeded {
            result: common::buildpack_result("x"),
        },
    )
    .await?;
    ensure!(
        matches!(&no_droplet, Completion::BuildFailed { error } if error.contains("without uploading a droplet")),
        "{no_droplet:?}"
    );
    ensure!(
        complete(
            &staging,
            &ok_build,
            TaskOutcome::Failed {
                reason: "late".into()
            }
        )
        .await?
            == Completion::AlreadyCompleted
    );

    // A real success: droplet uploaded, then completion.
    let b2 = build(&api, &pkg).await?;
    let droplet = c.dir.path().join("d.tgz");
    std::fs::write(&droplet, b"droplet")?;
    let (s, g, d) = (staging.clone(), b2.clone(), droplet.clone());
    tokio::task::spawn_blocking(move || s.store_droplet(&g, &d)).await??;
    let done = complete(
        &staging,
        &b2,
        TaskOutcome::Succeeded {
            result: common::buildpack_result("./start"),
        },
    )
    .await?;
    let Completion::BuildStaged { droplet_guid } = done else {
        anyhow::bail!("{done:?}")
    };
    let b = api.ok(&format!("/v3/builds/{b2}")).await?;
    ensure!(
        b["state"] == "STAGED" && b["droplet"]["guid"] == droplet_guid.as_str(),
        "{b}"
    );
    let d = api.ok(&format!("/v3/droplets/{droplet_guid}")).await?;
    ensure!(
        d["state"] == "STAGED"
            && d["checksum"]["value"].is_string()
            && d["process_types"]["web"] == "./start",
        "{d}"
    );
    let zipped = api
        .http
        .get(api.url(&format!("/v3/droplets/{droplet_guid}/download")))
        .bearer_auth(&api.token)
        .send()
        .await?;
    ensure!(zipped.status() == 200 && zipped.bytes().await?.as_ref() == b"droplet");
    // Late uploads and unknown tasks are refused.
    let (s, g, d) = (staging.clone(), b2.clone(), droplet.clone());
    ensure!(tokio::task::spawn_blocking(move || s.store_droplet(&g, &d))
        .await?
        .is_err());
    ensure!(complete(
        &staging,
        "no-such-task",
        TaskOutcome::Failed { reason: "x".into() }
    )
    .await
    .is_err());

    // The buildpack cache a build uploads is handed to the next staging task.
    let b_cache = build(&api, &pkg).await?;
    let cache = c.dir.path().join("cache.tgz");
    std::fs::write(&cache, b"cache-bytes")?;
    let (s, g) = (staging.clone(), b_cache.clone());
    let stored = tokio::task::spawn_blocking(move || s.store_buildpack_cache(&g, &cache)).await??;
    complete(
        &staging,
        &b_cache,
        TaskOutcome::Failed {
            reason: "done with it".into(),
        },
    )
    .await?;
    let next = build(&api, &pkg).await?;
    let scheduler = c.controller().state.scheduler.clone();
    let pending = tokio::task::spawn_blocking(move || scheduler.pending_tasks()).await??;
    let task = pending
        .iter()
        .find(|t| t.task_guid == next)
        .context("next task")?;
    let controller_lite::scheduler::TaskAction::BuildpackStaging {
        buildpack_cache, ..
    } = &task.action
    else {
        anyhow::bail!("not a buildpack staging task: {:?}", task.action)
    };
    ensure!(
        buildpack_cache.as_ref().map(|l| &l.sha256) == Some(&stored.sha256),
        "{buildpack_cache:?}"
    );
    let key = common::internal_key(&c.dir.path().join("data"));
    let url = &buildpack_cache.as_ref().context("cache")?.url;
    let got = common::http()
        .get(url)
        .bearer_auth(&key)
        .send()
        .await?
        .bytes()
        .await?;
    ensure!(got.as_ref() == b"cache-bytes");
    let denied = common::http().get(url).bearer_auth("wrong").send().await?;
    ensure!(denied.status() == 401, "internal API needs its key");
    complete(&staging, &next, TaskOutcome::Failed { reason: "x".into() }).await?;

    // Deleting an app cancels its queued staging.
    let (doomed_app, doomed_pkg) = push_bits(&api, &space, "doomed").await?;
    let doomed = build(&api, &doomed_pkg).await?;
    let resp = api
        .http
        .delete(api.url(&format!("/v3/apps/{doomed_app}")))
        .bearer_auth(&api.token)
        .send()
        .await?;
    ensure!(resp.status() == 202);
    let scheduler = c.controller().state.scheduler.clone();
    let pending = tokio::task::spawn_blocking(move || scheduler.pending_tasks()).await??;
    ensure!(
        pending.iter().all(|t| t.task_guid != doomed),
        "cancelled with its app"
    );

    // A failure.
    let b3 = build(&api, &pkg).await?;
    complete(
        &staging,
        &b3,
        TaskOutcome::Failed {
            reason: "exit status 222: no buildpack detected".into(),
        },
    )
    .await?;
    let b = api.ok(&format!("/v3/builds/{b3}")).await?;
    ensure!(
        b["state"] == "FAILED" && b["error"].as_str().is_some_and(|e| e.contains("222")),
        "{b}"
    );
    let lines = stg_lines(&api.ok(&format!("/api/v1/read/{app}")).await?);
    ensure!(
        lines.iter().any(|l| l.contains("Staging complete"))
            && lines.iter().any(|l| l.contains("Staging failed")),
        "{lines:?}"
    );
    c.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staging_past_the_timeout_fails_the_build() -> Result<()> {
    let c = InProcess::start("[staging]\ntimeout_secs = 900\nsweep_interval_secs = 3600\n").await?;
    let api = Api::login(&c.base, "admin", "admin-pw").await?;
    let space = api.space_guid().await?;
    let (app, pkg) = push_bits(&api, &space, "slow").await?;
    let b = build(&api, &pkg).await?;
    let staging = c.controller().staging();
    c.clock.advance(899);
    let s = staging.clone();
    ensure!(
        tokio::task::spawn_blocking(move || s.expire_overdue())
            .await??
            .is_empty(),
        "not yet"
    );
    c.clock.advance(1);
    let s = staging.clone();
    ensure!(tokio::task::spawn_blocking(move || s.expire_overdue()).await?? == vec![b.clone()]);
    let got = api.ok(&format!("/v3/builds/{b}")).await?;
    ensure!(
        got["state"] == "FAILED"
            && got["error"]
                .as_str()
                .is_some_and(|e| e.contains("StagingTimeout") && e.contains("900")),
        "{got}"
    );
    ensure!(stg_lines(&api.ok(&format!("/api/v1/read/{app}")).await?)
        .iter()
        .any(|l| l.contains("StagingTimeout")));
    // The cell finishing afterwards changes nothing.
    ensure!(
        complete(
            &staging,
            &b,
            TaskOutcome::Succeeded {
                result: "{}".into()
            }
        )
        .await?
            == Completion::AlreadyCompleted
    );
    ensure!(api.ok(&format!("/v3/builds/{b}")).await?["state"] == "FAILED");
    c.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_apps_stage_to_an_image_droplet() -> Result<()> {
    let c = InProcess::start("").await?;
    let api = Api::login(&c.base, "admin", "admin-pw").await?;
    let space = api.space_guid().await?;
    let (s, loc, body) = api
        .apply_manifest(
            &space,
            "applications:\n- name: dock\n  docker:\n    image: nginx:1.25\n  no-route: true\n",
        )
        .await?;
    ensure!(s == 202, "{body}");
    ensure!(api.wait_job(&loc.context("location")?).await?["state"] == "COMPLETE");
    let app = api
        .ok(&format!("/v3/apps?names=dock&space_guids={space}"))
        .await?["resources"][0]
        .clone();
    ensure!(app["lifecycle"]["type"] == "docker", "{app}");
    let app_guid = app["guid"].as_str().context("app")?;
    let (s, bits) = api
        .post(
            "/v3/packages",
            json!({"type": "bits", "relationships": {"app": {"data": {"guid": app_guid}}}}),
        )
        .await?;
    ensure!(s == 422, "a docker app takes no bits: {bits}");
    let (s, pkg) = api.post("/v3/packages", json!({"type": "docker", "relationships": {"app": {"data": {"guid": app_guid}}}, "data": {"image": "nginx:1.25"}})).await?;
    ensure!(
        s == 201 && pkg["state"] == "READY" && pkg["data"]["image"] == "nginx:1.25",
        "{pkg}"
    );
    let b = build(&api, pkg["guid"].as_str().context("pkg")?).await?;
    let result = json!({"lifecycle_type": "docker", "lifecycle_metadata": {"docker_image": "nginx:1.25"}, "process_types": {"web": ""}, "execution_metadata": "{\"cmd\":[\"nginx\"],\"ports\":[{\"Port\":80}]}"});
    let done = complete(
        &c.controller().staging(),
        &b,
        TaskOutcome::Succeeded {
            result: result.to_string(),
        },
    )
    .await?;
    let Completion::BuildStaged { droplet_guid } = done else {
        anyhow::bail!("{done:?}")
    };
    let d = api.ok(&format!("/v3/droplets/{droplet_guid}")).await?;
    ensure!(
        d["image"] == "nginx:1.25" && d["lifecycle"]["type"] == "docker" && d["checksum"].is_null(),
        "{d}"
    );
    ensure!(
        api.ok(&format!("/v3/routes?app_guids={app_guid}")).await?["pagination"]["total_results"]
            == 0,
        "no-route"
    );
    c.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_pushes_of_one_app() -> Result<()> {
    let c = InProcess::start("").await?;
    let api = Api::login(&c.base, "admin", "admin-pw").await?;
    let space = api.space_guid().await?;
    let push = |n: u8| {
        let (api, space) = (api.clone(), space.clone());
        async move {
            let manifest = format!("applications:\n- name: twin\n  instances: {n}\n");
            let (s, loc, body) = api.apply_manifest(&space, &manifest).await?;
            ensure!(s == 202, "{body}");
            let job = api.wait_job(&loc.context("location")?).await?;
            ensure!(job["state"] == "COMPLETE", "{job}");
            let app = api
                .ok(&format!("/v3/apps?names=twin&space_guids={space}"))
                .await?["resources"][0]["guid"]
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
            let content = format!("version {n}");
            let (s, body) = api
                .upload(
                    &format!("/v3/packages/{pkg}/upload"),
                    None,
                    Some(zip_of(&[("v.txt", content.as_bytes(), 0o644)])),
                )
                .await?;
            ensure!(s == 200 && body["state"] == "READY", "{body}");
            let b = build(&api, &pkg).await?;
            anyhow::Ok((app, b))
        }
    };
    let (a, b) = tokio::join!(push(1), push(2));
    let (a, b) = (a?, b?);
    ensure!(a.0 == b.0, "both pushes went to one app");
    ensure!(a.1 != b.1, "each push got its own build");
    let apps = api
        .ok(&format!("/v3/apps?names=twin&space_guids={space}"))
        .await?;
    ensure!(apps["pagination"]["total_results"] == 1);
    let packages = api.ok(&format!("/v3/apps/{}/packages", a.0)).await?;
    ensure!(
        packages["resources"]
            .as_array()
            .is_some_and(|p| p.len() == 2 && p.iter().all(|p| p["state"] == "READY")),
        "{packages}"
    );
    let routes = api.ok(&format!("/v3/routes?app_guids={}", a.0)).await?;
    ensure!(
        routes["pagination"]["total_results"] == 1,
        "one default route, not two: {routes}"
    );
    let web = api.ok(&format!("/v3/apps/{}/processes/web", a.0)).await?;
    ensure!(web["instances"] == 1 || web["instances"] == 2);
    c.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifests_set_processes_env_and_routes() -> Result<()> {
    let c = InProcess::start("").await?;
    let api = Api::login(&c.base, "admin", "admin-pw").await?;
    let space = api.space_guid().await?;
    let manifest = "applications:\n- name: My_App\n  random-route: true\n  memory: 64M\n  health-check-type: http\n  health-check-http-endpoint: /health\n  env:\n    DEBUG: true\n    N: 3\n  processes:\n  - type: worker\n    instances: 2\n    command: ./work\n";
    let (s, loc, body) = api.apply_manifest(&space, manifest).await?;
    ensure!(s == 202, "{body}");
    ensure!(api.wait_job(&loc.context("location")?).await?["state"] == "COMPLETE");
    let app = api
        .ok(&format!("/v3/apps?names=My_App&space_guids={space}"))
        .await?["resources"][0]["guid"]
        .as_str()
        .context("app")?
        .to_owned();
    let web = api.ok(&format!("/v3/apps/{app}/processes/web")).await?;
    ensure!(
        web["memory_in_mb"] == 64
            && web["health_check"]["type"] == "http"
            && web["health_check"]["data"]["endpoint"] == "/health",
        "{web}"
    );
    let worker = api.ok(&format!("/v3/apps/{app}/processes/worker")).await?;
    ensure!(
        worker["instances"] == 2 && worker["command"] == "./work",
        "{worker}"
    );
    let env = api
        .ok(&format!("/v3/apps/{app}/environment_variables"))
        .await?;
    ensure!(env["var"] == json!({"DEBUG": "true", "N": "3"}), "{env}");
    let routes = api.ok(&format!("/v3/routes?app_guids={app}")).await?;
    let host = routes["resources"][0]["host"].as_str().context("host")?;
    ensure!(
        host.starts_with("my-app-") && host.len() == "my-app-".len() + 8,
        "{host}"
    );
    // A failing app in a manifest fails the job with the reason.
    let (s, loc, _) = api
        .apply_manifest(&space, "applications:\n- name: other\n  stack: nope\n")
        .await?;
    ensure!(s == 202);
    let job = api.wait_job(&loc.context("location")?).await?;
    ensure!(
        job["state"] == "FAILED"
            && job["errors"][0]["detail"]
                .as_str()
                .is_some_and(|d| d.contains("nope")),
        "{job}"
    );
    ensure!(
        api.ok(&format!("/v3/apps?names=other&space_guids={space}"))
            .await?["pagination"]["total_results"]
            == 0,
        "rolled back"
    );
    c.stop().await;
    Ok(())
}
