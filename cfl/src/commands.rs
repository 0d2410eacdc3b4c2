//! The everyday commands: lookups by name and their table or JSON output.

use std::time::Duration;

use serde_json::{json, Value};

use crate::client::{Client, ClientError};
use crate::config::Target;

/// Prints `rows` as aligned columns under `header`.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.len());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths.get(i).copied().unwrap_or(0)))
            .collect();
        println!("{}", parts.join("   ").trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// `cfl target -o ORG -s SPACE`: looks both up and saves them.
pub fn target(
    client: &mut Client,
    org: Option<&str>,
    space: Option<&str>,
) -> Result<Target, ClientError> {
    let current = client.config.target.clone().unwrap_or_default();
    let org_name = org.map(str::to_owned).unwrap_or(current.org.clone());
    if org_name.is_empty() {
        return Err(ClientError::NoTarget);
    }
    let orgs = client.list(&format!("/v3/organizations?names={org_name}"))?;
    let org_guid = orgs
        .first()
        .map(|o| s(&o["guid"]))
        .ok_or_else(|| not_found("Organization", &org_name))?;
    let space_name = match space {
        Some(sp) => sp.to_owned(),
        None if org.is_none() || org_name == current.org => current.space.clone(),
        None => String::new(),
    };
    let spaces = if space_name.is_empty() {
        client.list(&format!("/v3/spaces?organization_guids={org_guid}"))?
    } else {
        client.list(&format!(
            "/v3/spaces?names={space_name}&organization_guids={org_guid}"
        ))?
    };
    let Some(sp) = spaces
        .first()
        .filter(|_| !space_name.is_empty() || spaces.len() == 1)
    else {
        return Err(not_found(
            "Space",
            if space_name.is_empty() {
                "(name one with -s)"
            } else {
                &space_name
            },
        ));
    };
    let target = Target {
        org: org_name,
        org_guid,
        space: s(&sp["name"]),
        space_guid: s(&sp["guid"]),
    };
    client.config.target = Some(target.clone());
    client.save()?;
    Ok(target)
}

/// A CF-style not-found error.
pub fn not_found(kind: &str, name: &str) -> ClientError {
    ClientError::Api {
        status: 404,
        title: "CF-ResourceNotFound".into(),
        detail: format!("{kind} '{name}' not found"),
    }
}

/// The app named `name` in the targeted space.
pub fn find_app(client: &mut Client, name: &str) -> Result<Value, ClientError> {
    let space = client.target()?.space_guid.clone();
    let apps = client.list(&format!("/v3/apps?names={name}&space_guids={space}"))?;
    apps.into_iter()
        .next()
        .ok_or_else(|| not_found("App", name))
}

/// Route URLs per app guid in the targeted space.
fn app_urls(client: &mut Client, app_guid: &str) -> Result<Vec<String>, ClientError> {
    let routes = client.list(&format!("/v3/routes?app_guids={app_guid}"))?;
    Ok(routes.iter().map(|r| s(&r["url"])).collect())
}

/// Processes of an app with their running/total instance counts.
fn process_summaries(client: &mut Client, app_guid: &str) -> Result<Vec<Value>, ClientError> {
    let procs = client.list(&format!("/v3/apps/{app_guid}/processes"))?;
    let mut out = Vec::new();
    for p in procs {
        let stats = client.get(&format!("/v3/processes/{}/stats", s(&p["guid"])))?;
        let instances: Vec<Value> = stats["resources"].as_array().cloned().unwrap_or_default();
        let running = instances.iter().filter(|i| i["state"] == "RUNNING").count();
        out.push(json!({
            "type": p["type"], "guid": p["guid"], "instances": p["instances"], "running": running,
            "memory_in_mb": p["memory_in_mb"], "disk_in_mb": p["disk_in_mb"], "command": p["command"],
            "health_check": p["health_check"], "stats": instances,
        }));
    }
    Ok(out)
}

/// `cfl apps`.
pub fn apps(client: &mut Client, as_json: bool) -> Result<(), ClientError> {
    let space = client.target()?.space_guid.clone();
    let apps = client.list(&format!("/v3/apps?space_guids={space}&order_by=name"))?;
    let mut out = Vec::new();
    for a in &apps {
        let guid = s(&a["guid"]);
        let procs = process_summaries(client, &guid)?;
        let urls = app_urls(client, &guid)?;
        out.push(json!({"name": a["name"], "guid": guid, "state": a["state"], "processes": procs, "routes": urls}));
    }
    if as_json {
        println!("{}", Value::from(out));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = out
        .iter()
        .map(|a| {
            let procs = a["processes"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| {
                    format!(
                        "{}:{}/{}",
                        s(&p["type"]),
                        s(&p["running"]),
                        s(&p["instances"])
                    )
                })
                .collect::<Vec<_>>()
                .join(", ");
            let routes = a["routes"]
                .as_array()
                .into_iter()
                .flatten()
                .map(s)
                .collect::<Vec<_>>()
                .join(", ");
            vec![s(&a["name"]), s(&a["state"]).to_lowercase(), procs, routes]
        })
        .collect();
    table(&["name", "requested state", "processes", "routes"], &rows);
    Ok(())
}

/// `cfl app NAME`.
pub fn app(client: &mut Client, name: &str, as_json: bool) -> Result<(), ClientError> {
    let app = find_app(client, name)?;
    let guid = s(&app["guid"]);
    let procs = process_summaries(client, &guid)?;
    let urls = app_urls(client, &guid)?;
    let droplet = client
        .get(&format!("/v3/apps/{guid}/droplets/current"))
        .ok();
    if as_json {
        println!(
            "{}",
            json!({"app": app, "processes": procs, "routes": urls, "droplet": droplet})
        );
        return Ok(());
    }
    println!("name:              {}", s(&app["name"]));
    println!("requested state:   {}", s(&app["state"]).to_lowercase());
    println!("routes:            {}", urls.join(", "));
    println!(
        "stack:             {}",
        s(&app["lifecycle"]["data"]["stack"])
    );
    if let Some(d) = &droplet {
        let bps: Vec<String> = d["buildpacks"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|b| s(&b["name"]))
            .collect();
        println!("buildpacks:        {}", bps.join(", "));
    }
    for p in &procs {
        println!();
        println!("type:           {}", s(&p["type"]));
        println!(
            "instances:      {}/{}",
            s(&p["running"]),
            s(&p["instances"])
        );
        println!("memory usage:   {}M", s(&p["memory_in_mb"]));
        println!("disk:           {}M", s(&p["disk_in_mb"]));
        // No command of its own: the droplet's for this process type.
        let command = match &p["command"] {
            Value::Null => droplet
                .as_ref()
                .map(|d| s(&d["process_types"][s(&p["type"]).as_str()]))
                .unwrap_or_default(),
            c => s(c),
        };
        println!("start command:  {command}");
        let rows: Vec<Vec<String>> = p["stats"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|i| {
                vec![
                    format!("#{}", s(&i["index"])),
                    s(&i["state"]).to_lowercase(),
                    s(&i["uptime"]),
                    s(&i["usage"]["cpu"]),
                    s(&i["usage"]["mem"]),
                    s(&i["details"]),
                ]
            })
            .collect();
        table(&["", "state", "uptime", "cpu", "memory", "details"], &rows);
    }
    Ok(())
}

/// `cfl start|stop|restart NAME`.
pub fn action(client: &mut Client, name: &str, action: &str) -> Result<Value, ClientError> {
    let app = find_app(client, name)?;
    client.post(
        &format!("/v3/apps/{}/actions/{action}", s(&app["guid"])),
        &json!({}),
    )
}

/// `cfl delete NAME`.
pub fn delete(client: &mut Client, name: &str) -> Result<(), ClientError> {
    let app = find_app(client, name)?;
    if let Some(job) = client.delete(&format!("/v3/apps/{}", s(&app["guid"])))? {
        client.wait_job(&job, Duration::from_secs(120))?;
    }
    Ok(())
}

/// `cfl scale NAME [-i N] [-m M] [-k D] [--process TYPE]`.
pub fn scale(
    client: &mut Client,
    name: &str,
    process: &str,
    body: &Value,
) -> Result<Value, ClientError> {
    let app = find_app(client, name)?;
    client.post(
        &format!(
            "/v3/apps/{}/processes/{process}/actions/scale",
            s(&app["guid"])
        ),
        body,
    )
}

/// `cfl env NAME`: the app's environment as the API reports it.
pub fn env(client: &mut Client, name: &str) -> Result<Value, ClientError> {
    let app = find_app(client, name)?;
    client.get(&format!("/v3/apps/{}/env", s(&app["guid"])))
}

/// `cfl set-env NAME KEY VALUE`.
pub fn set_env(client: &mut Client, name: &str, key: &str, value: &str) -> Result<(), ClientError> {
    let app = find_app(client, name)?;
    client.patch(
        &format!("/v3/apps/{}/environment_variables", s(&app["guid"])),
        &json!({"var": {key: value}}),
    )?;
    Ok(())
}

/// `cfl run-task NAME COMMAND`.
pub fn run_task(
    client: &mut Client,
    name: &str,
    command: &str,
    task_name: Option<&str>,
) -> Result<Value, ClientError> {
    let app = find_app(client, name)?;
    let mut body = json!({"command": command});
    if let Some(n) = task_name {
        body["name"] = json!(n);
    }
    client.post(&format!("/v3/apps/{}/tasks", s(&app["guid"])), &body)
}

/// `cfl tasks NAME`.
pub fn tasks(client: &mut Client, name: &str, as_json: bool) -> Result<(), ClientError> {
    let app = find_app(client, name)?;
    let tasks = client.list(&format!("/v3/apps/{}/tasks", s(&app["guid"])))?;
    if as_json {
        println!("{}", Value::from(tasks));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = tasks
        .iter()
        .map(|t| {
            vec![
                s(&t["sequence_id"]),
                s(&t["name"]),
                s(&t["state"]),
                s(&t["created_at"]),
                s(&t["command"]),
            ]
        })
        .collect();
    table(&["id", "name", "state", "start time", "command"], &rows);
    Ok(())
}

/// `cfl routes`: routes of the targeted space with their apps.
pub fn routes(client: &mut Client, as_json: bool) -> Result<(), ClientError> {
    let space = client.target()?.space_guid.clone();
    let routes = client.list(&format!("/v3/routes?space_guids={space}"))?;
    if as_json {
        println!("{}", Value::from(routes));
        return Ok(());
    }
    let mut rows = Vec::new();
    for r in &routes {
        let mut apps = Vec::new();
        for d in r["destinations"].as_array().into_iter().flatten() {
            let guid = s(&d["app"]["guid"]);
            if let Ok(a) = client.get(&format!("/v3/apps/{guid}")) {
                apps.push(s(&a["name"]));
            }
        }
        rows.push(vec![
            s(&r["host"]),
            s(&r["url"]),
            s(&r["path"]),
            apps.join(", "),
        ]);
    }
    table(&["host", "url", "path", "apps"], &rows);
    Ok(())
}

/// `cfl map-route NAME DOMAIN [--hostname H] [--path P]`.
pub fn map_route(
    client: &mut Client,
    name: &str,
    domain: &str,
    host: &str,
    path: &str,
) -> Result<String, ClientError> {
    let app = find_app(client, name)?;
    let space = client.target()?.space_guid.clone();
    let domains = client.list(&format!("/v3/domains?names={domain}"))?;
    let domain_guid = domains
        .first()
        .map(|d| s(&d["guid"]))
        .ok_or_else(|| not_found("Domain", domain))?;
    let mut query = format!("/v3/routes?domain_guids={domain_guid}&hosts={host}");
    if !path.is_empty() {
        query.push_str(&format!("&paths={path}"));
    }
    let existing = client
        .list(&query)?
        .into_iter()
        .find(|r| s(&r["host"]) == host && s(&r["path"]) == path);
    let route = match existing {
        Some(r) => r,
        None => client.post(
            "/v3/routes",
            &json!({"host": host, "path": path, "relationships": {"space": {"data": {"guid": space}}, "domain": {"data": {"guid": domain_guid}}}}),
        )?,
    };
    client.post(
        &format!("/v3/routes/{}/destinations", s(&route["guid"])),
        &json!({"destinations": [{"app": {"guid": s(&app["guid"])}}]}),
    )?;
    Ok(s(&route["url"]))
}

/// `cfl buildpacks`.
pub fn buildpacks(client: &mut Client, as_json: bool) -> Result<(), ClientError> {
    let bps = client.list("/v3/buildpacks?order_by=position")?;
    if as_json {
        println!("{}", Value::from(bps));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = bps
        .iter()
        .map(|b| {
            vec![
                s(&b["position"]),
                s(&b["name"]),
                s(&b["stack"]),
                s(&b["enabled"]),
                s(&b["locked"]),
                s(&b["state"]),
                s(&b["filename"]),
            ]
        })
        .collect();
    table(
        &[
            "position", "name", "stack", "enabled", "locked", "state", "filename",
        ],
        &rows,
    );
    Ok(())
}

/// `cfl stacks`.
pub fn stacks(client: &mut Client, as_json: bool) -> Result<(), ClientError> {
    let stacks = client.list("/v3/stacks")?;
    if as_json {
        println!("{}", Value::from(stacks));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = stacks
        .iter()
        .map(|st| vec![s(&st["name"]), s(&st["description"])])
        .collect();
    table(&["name", "description"], &rows);
    Ok(())
}

/// `cfl create-buildpack NAME ZIP POSITION [--stack S]`: creates the
/// buildpack and uploads its zip (admin only).
pub fn create_buildpack(
    client: &mut Client,
    name: &str,
    zip: &std::path::Path,
    position: u32,
    stack: Option<&str>,
) -> Result<Value, ClientError> {
    let bytes = std::fs::read(zip).map_err(|e| ClientError::Unexpected {
        url: zip.display().to_string(),
        what: e.to_string(),
    })?;
    let mut body = json!({"name": name, "position": position});
    if let Some(st) = stack {
        body["stack"] = json!(st);
    }
    let bp = client.post("/v3/buildpacks", &body)?;
    let url = client.url(&format!("/v3/buildpacks/{}/upload", s(&bp["guid"])));
    let filename = zip
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| "buildpack.zip".into());
    let resp = client.send(&url, |h| {
        let part =
            reqwest::blocking::multipart::Part::bytes(bytes.clone()).file_name(filename.clone());
        h.post(&url)
            .multipart(reqwest::blocking::multipart::Form::new().part("bits", part))
    })?;
    resp.json()
        .map_err(|source| crate::client::http_error(&url, source))
}
