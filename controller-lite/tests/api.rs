//! Per-endpoint API tests against an in-process controller: auth, roles,
//! bad input, zip safety, limits, pagination and the everyday resources.

mod common;

use anyhow::{ensure, Context, Result};
use common::{sha1_hex, zip_of, zip_with_symlink, Api, InProcess};
use controller_lite::staging::{Requester, TaskOutcome};
use reqwest::Method;
use serde_json::{json, Value};

fn error_code(body: &Value) -> i64 {
    body["errors"][0]["code"].as_i64().unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_is_required_and_tokens_are_checked() -> Result<()> {
    let c = InProcess::start("").await?;
    let http = common::http();
    for open in ["/", "/v3/info", "/login"] {
        ensure!(
            http.get(format!("{}{open}", c.base)).send().await?.status() == 200,
            "{open} must be open"
        );
    }
    let resp = http.get(format!("{}/v3/apps", c.base)).send().await?;
    ensure!(resp.status() == 401);
    let body: Value = resp.json().await?;
    ensure!(
        error_code(&body) == 10002 && body["errors"][0]["title"] == "CF-NotAuthenticated",
        "{body}"
    );
    let resp = http
        .get(format!("{}/v3/apps", c.base))
        .bearer_auth("not.a.jwt")
        .send()
        .await?;
    ensure!(resp.status() == 401);
    ensure!(error_code(&resp.json().await?) == 1000);

    let bad = |user: &str, pw: &str, client: &str| {
        let http = http.clone();
        let (user, pw, client, base) = (
            user.to_owned(),
            pw.to_owned(),
            client.to_owned(),
            c.base.clone(),
        );
        async move {
            http.post(format!("{base}/oauth/token"))
                .basic_auth(client, Some(""))
                .form(&[
                    ("grant_type", "password"),
                    ("username", &user),
                    ("password", &pw),
                ])
                .send()
                .await
                .map(|r| r.status().as_u16())
        }
    };
    ensure!(bad("admin", "wrong", "cf").await? == 401);
    ensure!(bad("nobody", "x", "cf").await? == 401);
    ensure!(bad("admin", "admin-pw", "other").await? == 401);

    let tok = common::token(&c.base, "admin", "admin-pw").await?;
    let refresh = tok["refresh_token"].as_str().context("refresh")?;
    let resp = http
        .get(format!("{}/v3/apps", c.base))
        .bearer_auth(refresh)
        .send()
        .await?;
    ensure!(
        resp.status() == 401,
        "a refresh token is not an access token"
    );
    let renewed: Value = http
        .post(format!("{}/oauth/token", c.base))
        .basic_auth("cf", Some(""))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", refresh)])
        .send()
        .await?
        .json()
        .await?;
    let access = renewed["access_token"].as_str().context("renewed")?;
    ensure!(
        http.get(format!("{}/v3/apps", c.base))
            .bearer_auth(access)
            .send()
            .await?
            .status()
            == 200
    );
    c.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_space_developer_cannot_manage_buildpacks_stacks_or_orgs() -> Result<()> {
    let c = InProcess::start("").await?;
    let dev = Api::login(&c.base, "dev", "dev-pw").await?;
    let (s, body) = dev.post("/v3/buildpacks", json!({"name": "mine"})).await?;
    ensure!(s == 403 && error_code(&body) == 10003, "{s} {body}");
    ensure!(dev.post("/v3/stacks", json!({"name": "other"})).await?.0 == 403);
    ensure!(
        dev.post("/v3/organizations", json!({"name": "o2"}))
            .await?
            .0
            == 403
    );
    // ... but works in its own space.
    let space = dev.space_guid().await?;
    let (s, app) = dev
        .post(
            "/v3/apps",
            json!({"name": "mine", "relationships": {"space": {"data": {"guid": space}}}}),
        )
        .await?;
    ensure!(s == 201, "{app}");
    // An admin-created space is invisible to the developer.
    let admin = Api::login(&c.base, "admin", "admin-pw").await?;
    let org = admin.ok("/v3/organizations").await?["resources"][0]["guid"]
        .as_str()
        .context("org")?
        .to_owned();
    let (s, other) = admin
        .post(
            "/v3/spaces",
            json!({"name": "private", "relationships": {"organization": {"data": {"guid": org}}}}),
        )
        .await?;
    ensure!(s == 201, "{other}");
    let other_guid = other["guid"].as_str().context("space")?;
    ensure!(dev.get(&format!("/v3/spaces/{other_guid}")).await?.0 == 404);
    let (s, _) = dev
        .post(
            "/v3/apps",
            json!({"name": "x", "relationships": {"space": {"data": {"guid": other_guid}}}}),
        )
        .await?;
    ensure!(s == 422);
    ensure!(dev.ok("/v3/spaces").await?["pagination"]["total_results"] == 1);
    c.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_errors() -> Result<()> {
    let c = InProcess::start("").await?;
    let api = Api::login(&c.base, "admin", "admin-pw").await?;
    let space = api.space_guid().await?;
    // Malformed JSON.
    let resp = api
        .http
        .post(api.url("/v3/apps"))
        .bearer_auth(&api.token)
        .body("{not json")
        .send()
        .await?;
    ensure!(resp.status() == 400);
    let body: Value = resp.json().await?;
    ensure!(
        error_code(&body) == 1001
            && body["errors"][0]["detail"]
                .as_str()
                .is_some_and(|d| !d.is_empty()),
        "{body}"
    );
    // Malformed YAML and invalid values in manifests.
    let (s, _, body) = api
        .apply_manifest(&space, "applications: [ {name: x")
        .await?;
    ensure!(s == 422 && error_code(&body) == 10008, "{s} {body}");
    let (s, _, body) = api
        .apply_manifest(&space, "applications:\n- name: x\n  memory: 12Q\n")
        .await?;
    ensure!(
        s == 422
            && body["errors"][0]["detail"]
                .as_str()
                .unwrap_or("")
                .contains("memory"),
        "{body}"
    );
    // Unknown guids.
    for path in [
        "/v3/apps/nope",
        "/v3/packages/nope",
        "/v3/builds/nope",
        "/v3/droplets/nope",
        "/v3/processes/nope",
        "/v3/tasks/nope",
        "/v3/routes/nope",
        "/v3/buildpacks/nope",
        "/v3/jobs/nope",
        "/v3/spaces/nope",
        "/v3/stacks/nope",
    ] {
        let (s, body) = api.get(path).await?;
        ensure!(s == 404 && error_code(&body) == 10010, "{path}: {s} {body}");
    }
    let (s, body) = api.get("/v3/no-such-thing").await?;
    ensure!(s == 404 && error_code(&body) == 10000, "{body}");
    // Query parameters.
    ensure!(api.get("/v3/apps?per_page=0").await?.0 == 400);
    ensure!(api.get("/v3/apps?per_page=5001").await?.0 == 400);
    ensure!(api.get("/v3/apps?order_by=bogus").await?.0 == 400);
    ensure!(error_code(&api.get("/v3/apps?colour=red").await?.1) == 10005);
    // Semantic errors.
    let (s, _) = api
        .post(
            "/v3/apps",
            json!({"name": "", "relationships": {"space": {"data": {"guid": space}}}}),
        )
        .await?;
    ensure!(s == 422);
    let (s, _) = api
        .post("/v3/resource_matches", json!({"resources": []}))
        .await?;
    ensure!(s == 422);
    let (s, _) = api
        .post("/v3/builds", json!({"package": {"guid": "nope"}}))
        .await?;
    ensure!(s == 422);
    let (s, body) = api
        .post(
            "/v3/apps",
            json!({"name": "dup", "relationships": {"space": {"data": {"guid": space}}}}),
        )
        .await?;
    ensure!(s == 201, "{body}");
    let (s, body) = api
        .post(
            "/v3/apps",
            json!({"name": "dup", "relationships": {"space": {"data": {"guid": space}}}}),
        )
        .await?;
    ensure!(
        s == 422
            && body["errors"][0]["detail"]
                .as_str()
                .unwrap_or("")
                .contains("already exists"),
        "{body}"
    );
    let app = body_guid(&api, &space, "dup").await?;
    let (s, body) = api
        .post(&format!("/v3/apps/{app}/actions/start"), json!({}))
        .await?;
    ensure!(
        s == 422
            && body["errors"][0]["detail"]
                .as_str()
                .unwrap_or("")
                .contains("droplet"),
        "{body}"
    );
    let (s, _) = api
        .post(&format!("/v3/apps/{app}/tasks"), json!({"command": "echo"}))
        .await?;
    ensure!(s == 422, "a task needs a droplet");
    c.stop().await;
    Ok(())
}

async fn body_guid(api: &Api, space: &str, name: &str) -> Result<String> {
    let apps = api
        .ok(&format!("/v3/apps?names={name}&space_guids={space}"))
        .await?;
    Ok(apps["resources"][0]["guid"]
        .as_str()
        .context("app")?
        .to_owned())
}

async fn new_package(api: &Api, space: &str, name: &str) -> Result<(String, String)> {
    let (s, app) = api
        .post(
            "/v3/apps",
            json!({"name": name, "relationships": {"space": {"data": {"guid": space}}}}),
        )
        .await?;
    ensure!(s == 201, "{app}");
    let app = app["guid"].as_str().context("app")?.to_owned();
    let (s, pkg) = api
        .post(
            "/v3/packages",
            json!({"type": "bits", "relationships": {"app": {"data": {"guid": app}}}}),
        )
        .await?;
    ensure!(s == 201, "{pkg}");
    Ok((app, pkg["guid"].as_str().context("pkg")?.to_owned()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_zips_and_oversized_uploads_are_refused() -> Result<()> {
    let c = InProcess::start("[limits]\nmax_upload_bytes = 65536\nmax_unzipped_bytes = 100000\n")
        .await?;
    let api = Api::login(&c.base, "admin", "admin-pw").await?;
    let space = api.space_guid().await?;

    let (_, pkg) = new_package(&api, &space, "slip").await?;
    let (s, body) = api
        .upload(
            &format!("/v3/packages/{pkg}/upload"),
            None,
            Some(zip_of(&[("../evil.sh", b"x", 0o644)])),
        )
        .await?;
    ensure!(
        s == 422 && body.to_string().contains("outside the app directory"),
        "{s} {body}"
    );
    let failed = api.ok(&format!("/v3/packages/{pkg}")).await?;
    ensure!(
        failed["state"] == "FAILED"
            && failed["data"]["error"]
                .as_str()
                .is_some_and(|e| e.contains("evil")),
        "{failed}"
    );

    let (_, pkg) = new_package(&api, &space, "link").await?;
    let (s, body) = api
        .upload(
            &format!("/v3/packages/{pkg}/upload"),
            None,
            Some(zip_with_symlink("a/passwd", "../../etc/passwd")),
        )
        .await?;
    ensure!(
        s == 422 && body.to_string().contains("symlink"),
        "{s} {body}"
    );

    let (_, pkg) = new_package(&api, &space, "junk").await?;
    let (s, _) = api
        .upload(
            &format!("/v3/packages/{pkg}/upload"),
            None,
            Some(b"not a zip".to_vec()),
        )
        .await?;
    ensure!(s == 422);

    let (_, pkg) = new_package(&api, &space, "big").await?;
    // The server answers before reading the whole body and closes that
    // connection; a separate client keeps the pooled one out of the race.
    let once = Api {
        http: common::http(),
        ..api.clone()
    };
    let (s, body) = once
        .upload(
            &format!("/v3/packages/{pkg}/upload"),
            None,
            Some(vec![7u8; 200_000]),
        )
        .await?;
    ensure!(s == 413, "oversized upload: {s} {body}");

    // A zip bomb: small compressed, too large unzipped.
    let (_, pkg) = new_package(&api, &space, "bomb").await?;
    let bomb = zip_of(&[("zeros", &vec![0u8; 300_000], 0o644)]);
    ensure!(bomb.len() < 65536);
    let (s, body) = api
        .upload(&format!("/v3/packages/{pkg}/upload"), None, Some(bomb))
        .await?;
    ensure!(
        s == 413 && body.to_string().contains("uncompressed"),
        "{s} {body}"
    );
    ensure!(api.ok(&format!("/v3/packages/{pkg}")).await?["state"] == "FAILED");
    c.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_file_that_no_longer_matches_fails_the_package() -> Result<()> {
    let c = InProcess::start("").await?;
    let api = Api::login(&c.base, "admin", "admin-pw").await?;
    let space = api.space_guid().await?;
    let data = b"cache me please".as_slice();
    let sha1 = sha1_hex(data);
    let (_, pkg) = new_package(&api, &space, "cached").await?;
    let (s, body) = api
        .upload(
            &format!("/v3/packages/{pkg}/upload"),
            None,
            Some(zip_of(&[("f.txt", data, 0o644)])),
        )
        .await?;
    ensure!(s == 200 && body["state"] == "READY", "{body}");
    let cached = c
        .dir
        .path()
        .join("data/blobs/resources")
        .join(&sha1[..2])
        .join(&sha1);
    ensure!(cached.is_file(), "uploaded file entered the resource cache");
    std::fs::write(&cached, b"tampered")?;
    let resources = json!([{"checksum": {"value": sha1}, "size_in_bytes": data.len(), "path": "f.txt", "mode": "644"}]);
    let (app, pkg2) = new_package(&api, &space, "cached2").await?;
    let (s, body) = api
        .upload(
            &format!("/v3/packages/{pkg2}/upload"),
            Some(resources),
            None,
        )
        .await?;
    ensure!(
        s == 422 && body.to_string().contains("no longer matches its sha1"),
        "{s} {body}"
    );
    ensure!(api.ok(&format!("/v3/packages/{pkg2}")).await?["state"] == "FAILED");
    ensure!(
        api.ok(&format!("/v3/apps/{app}/packages")).await?["resources"]
            .as_array()
            .map(Vec::len)
            == Some(1)
    );
    c.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_paginate_with_next_links() -> Result<()> {
    let c = InProcess::start("").await?;
    let api = Api::login(&c.base, "admin", "admin-pw").await?;
    let space = api.space_guid().await?;
    for name in ["a1", "a2", "a3"] {
        api.post(
            "/v3/apps",
            json!({"name": name, "relationships": {"space": {"data": {"guid": space}}}}),
        )
        .await?;
    }
    let page1 = api.ok("/v3/apps?per_page=2&order_by=name").await?;
    ensure!(
        page1["pagination"]["total_results"] == 3 && page1["pagination"]["total_pages"] == 2,
        "{page1}"
    );
    ensure!(page1["resources"][0]["name"] == "a1");
    let next = page1["pagination"]["next"]["href"]
        .as_str()
        .context("next")?;
    let page2 = api.ok(next).await?;
    ensure!(
        page2["resources"][0]["name"] == "a3" && page2["pagination"]["next"].is_null(),
        "{page2}"
    );
    ensure!(page2["pagination"]["previous"]["href"].is_string());
    let desc = api.ok("/v3/apps?order_by=-name&names=a1,a3").await?;
    ensure!(
        desc["resources"][0]["name"] == "a3" && desc["pagination"]["total_results"] == 2,
        "{desc}"
    );
    c.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everyday_resources_env_scale_tasks_routes_buildpacks() -> Result<()> {
    let c = InProcess::start("").await?;
    let api = Api::login(&c.base, "admin", "admin-pw").await?;
    let space = api.space_guid().await?;
    let (app, pkg) = new_package(&api, &space, "every").await?;

    // Environment.
    let (s, vars) = api
        .patch(
            &format!("/v3/apps/{app}/environment_variables"),
            json!({"var": {"A": "1", "B": 2}}),
        )
        .await?;
    ensure!(s == 200 && vars["var"]["B"] == "2", "{vars}");
    api.patch(
        &format!("/v3/apps/{app}/environment_variables"),
        json!({"var": {"A": null}}),
    )
    .await?;
    let env = api.ok(&format!("/v3/apps/{app}/env")).await?;
    ensure!(
        env["environment_variables"] == json!({"B": "2"})
            && env["application_env_json"]["VCAP_APPLICATION"]["application_name"] == "every",
        "{env}"
    );

    // Stage through the scheduler interface, then run and finish a task.
    api.upload(
        &format!("/v3/packages/{pkg}/upload"),
        None,
        Some(zip_of(&[("run.sh", b"echo", 0o755)])),
    )
    .await?;
    let staging = c.controller().staging();
    let by = Requester {
        guid: "u".into(),
        name: "admin".into(),
    };
    let p2 = pkg.clone();
    let build = tokio::task::spawn_blocking({
        let staging = staging.clone();
        move || staging.create_build(&p2, &by)
    })
    .await??;
    let droplet = c.dir.path().join("droplet.tgz");
    std::fs::write(&droplet, b"tgz")?;
    let staged = tokio::task::spawn_blocking({
        let (staging, g) = (staging.clone(), build.guid.clone());
        move || -> anyhow::Result<_> {
            staging.store_droplet(&g, &droplet)?;
            Ok(staging.task_completed(
                &g,
                TaskOutcome::Succeeded {
                    result: common::buildpack_result("./run.sh"),
                },
            )?)
        }
    })
    .await??;
    let controller_lite::staging::Completion::BuildStaged { droplet_guid } = staged else {
        anyhow::bail!("not staged: {staged:?}")
    };
    let d = api.ok(&format!("/v3/droplets/{droplet_guid}")).await?;
    ensure!(
        d["process_types"]["web"] == "./run.sh" && d["buildpacks"][0]["buildpack_name"] == "binary",
        "{d}"
    );
    api.patch(
        &format!("/v3/apps/{app}/relationships/current_droplet"),
        json!({"data": {"guid": droplet_guid}}),
    )
    .await?;
    let current = api
        .ok(&format!("/v3/apps/{app}/droplets?current=true"))
        .await?;
    ensure!(
        current["resources"][0]["guid"] == droplet_guid.as_str()
            && current["pagination"]["total_results"] == 1,
        "{current}"
    );
    let (s, task) = api
        .post(
            &format!("/v3/apps/{app}/tasks"),
            json!({"command": "rake db:migrate", "name": "migrate"}),
        )
        .await?;
    ensure!(
        s == 202 && task["state"] == "PENDING" && task["sequence_id"] == 1,
        "{task}"
    );
    let tguid = task["guid"].as_str().context("task")?.to_owned();
    let t2 = tguid.clone();
    tokio::task::spawn_blocking(move || {
        staging.task_completed(
            &t2,
            TaskOutcome::Succeeded {
                result: String::new(),
            },
        )
    })
    .await??;
    ensure!(api.ok(&format!("/v3/tasks/{tguid}")).await?["state"] == "SUCCEEDED");
    ensure!(
        api.ok(&format!("/v3/apps/{app}/tasks")).await?["resources"]
            .as_array()
            .map(Vec::len)
            == Some(1)
    );

    // Scale; start; stop.
    let (s, web) = api
        .post(
            &format!("/v3/apps/{app}/processes/web/actions/scale"),
            json!({"instances": 3, "memory_in_mb": 128}),
        )
        .await?;
    ensure!(
        s == 200 && web["instances"] == 3 && web["memory_in_mb"] == 128,
        "{web}"
    );
    ensure!(
        api.post(
            &format!("/v3/apps/{app}/processes/web/actions/scale"),
            json!({"instances": -1})
        )
        .await?
        .0 == 422
    );
    let (s, started) = api
        .post(&format!("/v3/apps/{app}/actions/start"), json!({}))
        .await?;
    ensure!(s == 200 && started["state"] == "STARTED");
    let stats = api
        .ok(&format!("/v3/apps/{app}/processes/web/stats"))
        .await?;
    ensure!(
        stats["resources"].as_array().map(Vec::len) == Some(3)
            && stats["resources"][2]["state"] == "STARTING",
        "{stats}"
    );
    api.post(&format!("/v3/apps/{app}/actions/stop"), json!({}))
        .await?;
    ensure!(
        api.ok(&format!("/v3/apps/{app}/processes/web/stats"))
            .await?["resources"][0]["state"]
            == "DOWN"
    );

    // Routes.
    let domain = api.ok("/v3/domains").await?["resources"][0]["guid"]
        .as_str()
        .context("domain")?
        .to_owned();
    let (s, route) = api.post("/v3/routes", json!({"host": "every", "relationships": {"space": {"data": {"guid": space}}, "domain": {"data": {"guid": domain}}}})).await?;
    ensure!(
        s == 201 && route["url"] == "every.apps.test.internal",
        "{route}"
    );
    let rguid = route["guid"].as_str().context("route")?;
    // `cf map-route` looks a route up with an empty path filter.
    let found = api
        .ok(&format!(
            "/v3/routes?domain_guids={domain}&hosts=every&paths="
        ))
        .await?;
    ensure!(found["resources"][0]["guid"] == rguid, "{found}");
    let web_guid = api.ok(&format!("/v3/apps/{app}/processes/web")).await?["guid"]
        .as_str()
        .context("web")?
        .to_owned();
    ensure!(
        api.ok(&format!("/v3/processes/{web_guid}/sidecars"))
            .await?["resources"]
            == json!([])
    );
    ensure!(
        api.ok(&format!("/v3/apps/{app}/revisions/deployed"))
            .await?["resources"]
            == json!([])
    );
    let (s, dests) = api
        .post(
            &format!("/v3/routes/{rguid}/destinations"),
            json!({"destinations": [{"app": {"guid": app}}]}),
        )
        .await?;
    ensure!(
        s == 200 && dests["destinations"][0]["app"]["guid"] == app.as_str(),
        "{dests}"
    );
    ensure!(api.ok(&format!("/v3/apps/{app}/routes")).await?["pagination"]["total_results"] == 1);
    let (s, _) = api.post("/v3/routes", json!({"host": "every", "relationships": {"space": {"data": {"guid": space}}, "domain": {"data": {"guid": domain}}}})).await?;
    ensure!(s == 422, "duplicate route");

    // Buildpacks: positions and upload.
    let (s, b1) = api
        .post(
            "/v3/buildpacks",
            json!({"name": "go_buildpack", "stack": "cflinuxfs4"}),
        )
        .await?;
    ensure!(
        s == 201 && b1["position"] == 1 && b1["state"] == "AWAITING_UPLOAD",
        "{b1}"
    );
    let (_, b2) = api
        .post(
            "/v3/buildpacks",
            json!({"name": "binary_buildpack", "position": 1}),
        )
        .await?;
    ensure!(b2["position"] == 1);
    let list = api.ok("/v3/buildpacks").await?;
    ensure!(
        list["resources"][0]["name"] == "binary_buildpack" && list["resources"][1]["position"] == 2,
        "{list}"
    );
    let b1g = b1["guid"].as_str().context("bp")?;
    let (s, up) = api
        .upload(
            &format!("/v3/buildpacks/{b1g}/upload"),
            None,
            Some(zip_of(&[("bin/detect", b"#!/bin/sh", 0o755)])),
        )
        .await?;
    ensure!(
        s == 202 && up["state"] == "READY" && up["filename"] == "application.zip",
        "{up}"
    );
    ensure!(
        api.post("/v3/buildpacks", json!({"name": "bad", "stack": "nostack"}))
            .await?
            .0
            == 422
    );
    ensure!(api.ok("/v3/stacks?names=cflinuxfs4").await?["resources"][0]["default"] == true);

    // Delete the app: a job, and it is gone.
    let resp = api
        .http
        .delete(api.url(&format!("/v3/apps/{app}")))
        .bearer_auth(&api.token)
        .send()
        .await?;
    ensure!(resp.status() == 202 && resp.headers().contains_key("location"));
    ensure!(api.get(&format!("/v3/apps/{app}")).await?.0 == 404);
    let _ = Method::GET;
    c.stop().await;
    Ok(())
}
