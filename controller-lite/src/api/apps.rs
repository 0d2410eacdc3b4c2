//! Apps: CRUD, environment, start/stop/restart and the current droplet.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::list::ListParams;
use super::{
    and_extra, blocking, extra_ref, href, metadata, parse_json, ts, ApiError, ApiResult, Principal,
    Shared,
};
use crate::db::apps::{self, App};
use crate::db::{builds, jobs, orgs, routes};
use crate::lrps;

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/v3/apps", get(list_apps).post(create_app))
        .route(
            "/v3/apps/{guid}",
            get(get_app).patch(update_app).delete(delete_app),
        )
        .route("/v3/apps/{guid}/env", get(env))
        .route(
            "/v3/apps/{guid}/environment_variables",
            get(get_env_vars).patch(patch_env_vars),
        )
        .route("/v3/apps/{guid}/actions/start", post(start))
        .route("/v3/apps/{guid}/actions/stop", post(stop))
        .route("/v3/apps/{guid}/actions/restart", post(restart))
        .route(
            "/v3/apps/{guid}/relationships/current_droplet",
            get(get_current_droplet).patch(set_current_droplet),
        )
}

/// JSON of an app.
pub fn app_json(b: &str, a: &App) -> Value {
    let lifecycle = if a.lifecycle_type == "docker" {
        json!({"type": "docker", "data": {}})
    } else {
        json!({"type": "buildpack", "data": {"buildpacks": a.buildpacks, "stack": a.stack}})
    };
    let l = |suffix: &str| href(b, &format!("/v3/apps/{}{suffix}", a.guid));
    json!({
        "guid": a.guid, "name": a.name, "state": a.state,
        "created_at": ts(a.created_at), "updated_at": ts(a.updated_at),
        "lifecycle": lifecycle,
        "relationships": {"space": {"data": {"guid": a.space_guid}}},
        "metadata": metadata(),
        "links": {
            "self": l(""),
            "space": href(b, &format!("/v3/spaces/{}", a.space_guid)),
            "processes": l("/processes"),
            "packages": l("/packages"),
            "environment_variables": l("/environment_variables"),
            "current_droplet": l("/droplets/current"),
            "droplets": l("/droplets"),
            "tasks": l("/tasks"),
            "start": {"href": format!("{b}/v3/apps/{}/actions/start", a.guid), "method": "POST"},
            "stop": {"href": format!("{b}/v3/apps/{}/actions/stop", a.guid), "method": "POST"},
        },
    })
}

/// Loads an app the principal may see (404 otherwise). Blocking.
pub fn load_app(s: &Shared, p: &Principal, guid: &str) -> ApiResult<App> {
    let app =
        s.db.read_blocking(|c| apps::get_app(c, guid))?
            .ok_or(ApiError::NotFound("App"))?;
    if !p.can_use_space(&s.db, &app.space_guid)? {
        return Err(ApiError::NotFound("App"));
    }
    Ok(app)
}

async fn list_apps(
    State(s): State<Shared>,
    p: Principal,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<Value>> {
    let params = ListParams::parse(
        q.as_deref(),
        &[
            "names",
            "guids",
            "space_guids",
            "organization_guids",
            "stacks",
            "lifecycle_type",
        ],
    )?;
    let filters = params.filters(&[
        ("names", "name"),
        ("guids", "guid"),
        ("space_guids", "space_guid"),
        ("stacks", "stack"),
        ("lifecycle_type", "lifecycle_type"),
    ]);
    let mut org = super::list::Extra::default();
    if let Some(orgs) = params.get("organization_guids") {
        org.push_in(
            "space_guid IN (SELECT guid FROM spaces WHERE org_guid IN ({}))",
            orgs,
        );
    }
    let extra = and_extra(vec![org.build(), p.space_filter("space_guid")]);
    let page = params.page(&["name", "state"])?;
    let db = s.db.clone();
    let listing = blocking(move || {
        Ok(db.read_blocking(|c| apps::list_apps(c, &filters, extra_ref(&extra), &page))?)
    })
    .await?;
    let items = listing
        .items
        .iter()
        .map(|a| app_json(&s.base_url, a))
        .collect();
    Ok(Json(params.respond(
        &s.base_url,
        "/v3/apps",
        listing.total,
        items,
    )))
}

#[derive(Deserialize)]
struct LifecycleBody {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    data: LifecycleData,
}

#[derive(Deserialize, Default)]
struct LifecycleData {
    buildpacks: Option<Vec<String>>,
    stack: Option<String>,
}

#[derive(Deserialize)]
struct CreateApp {
    name: String,
    relationships: Value,
    lifecycle: Option<LifecycleBody>,
    #[serde(default)]
    environment_variables: BTreeMap<String, Value>,
}

/// Environment values as strings (CC stores JSON scalars as given; we keep strings).
pub fn env_strings(vars: BTreeMap<String, Value>) -> ApiResult<BTreeMap<String, String>> {
    vars.into_iter()
        .map(|(k, v)| {
            if k.is_empty() || k.starts_with("VCAP_") || k == "PORT" {
                return Err(ApiError::Unprocessable(format!(
                    "Environment variable name {k:?} is not allowed"
                )));
            }
            let v = match v {
                Value::String(s) => s,
                Value::Null => {
                    return Err(ApiError::Unprocessable(format!(
                        "Environment variable {k} has no value"
                    )))
                }
                other => other.to_string(),
            };
            Ok((k, v))
        })
        .collect()
}

/// Checks a stack name exists. Blocking.
pub fn check_stack(s: &Shared, stack: &str) -> ApiResult<()> {
    if s.db
        .read_blocking(|c| orgs::stack_by_name(c, stack))?
        .is_none()
    {
        return Err(ApiError::Unprocessable(format!(
            "Stack {stack:?} does not exist"
        )));
    }
    Ok(())
}

/// A new STOPPED app value (not yet stored).
pub fn new_app(
    name: &str,
    space_guid: &str,
    docker: bool,
    buildpacks: Vec<String>,
    stack: Option<String>,
) -> App {
    App {
        guid: String::new(),
        name: name.to_owned(),
        space_guid: space_guid.to_owned(),
        state: "STOPPED".into(),
        lifecycle_type: if docker { "docker" } else { "buildpack" }.into(),
        buildpacks,
        stack: if docker { None } else { stack },
        environment: BTreeMap::new(),
        droplet_guid: None,
        created_at: 0,
        updated_at: 0,
    }
}

/// Stores an app with its `web` process. Blocking.
pub fn insert_app(s: &Shared, app: App) -> ApiResult<App> {
    let (mem, disk) = (1024, 1024);
    Ok(s.db.write_blocking(|tx| {
        let app = apps::create_app(tx, app)?;
        apps::create_process(tx, apps::default_process(&app.guid, "web", mem, disk))?;
        Ok(app)
    })?)
}

async fn create_app(
    State(s): State<Shared>,
    p: Principal,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let body: CreateApp = parse_json(&body)?;
    if body.name.trim().is_empty() {
        return Err(ApiError::Unprocessable("Name can't be blank".into()));
    }
    let space_guid = body
        .relationships
        .pointer("/space/data/guid")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::Unprocessable("Relationships space is required".into()))?
        .to_owned();
    let env = env_strings(body.environment_variables)?;
    let s2 = s.clone();
    let app = blocking(move || {
        let space = s2.db.read_blocking(|c| orgs::get_space(c, &space_guid))?;
        if space.is_none() || !p.can_use_space(&s2.db, &space_guid)? {
            return Err(ApiError::Unprocessable(
                "Invalid space. Ensure that the space exists and you have access to it.".into(),
            ));
        }
        let docker = body.lifecycle.as_ref().is_some_and(|l| l.kind == "docker");
        let data = body.lifecycle.map(|l| l.data).unwrap_or_default();
        let stack = data
            .stack
            .unwrap_or_else(|| s2.config.default_stack.clone());
        if !docker {
            check_stack(&s2, &stack)?;
        }
        let mut app = new_app(
            &body.name,
            &space_guid,
            docker,
            data.buildpacks.unwrap_or_default(),
            Some(stack),
        );
        app.environment = env;
        insert_app(&s2, app)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(app_json(&s.base_url, &app))))
}

async fn get_app(
    State(s): State<Shared>,
    p: Principal,
    Path(guid): Path<String>,
) -> ApiResult<Json<Value>> {
    let s2 = s.clone();
    let app = blocking(move || load_app(&s2, &p, &guid)).await?;
    Ok(Json(app_json(&s.base_url, &app)))
}

#[derive(Deserialize)]
struct UpdateApp {
    name: Option<String>,
    lifecycle: Option<LifecycleBody>,
}

async fn update_app(
    State(s): State<Shared>,
    p: Principal,
    Path(guid): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let body: UpdateApp = parse_json(&body)?;
    let s2 = s.clone();
    let app = blocking(move || {
        let mut app = load_app(&s2, &p, &guid)?;
        if let Some(name) = body.name {
            if name.trim().is_empty() {
                return Err(ApiError::Unprocessable("Name can't be blank".into()));
            }
            app.name = name;
        }
        if let Some(l) = body.lifecycle {
            if l.kind != app.lifecycle_type {
                return Err(ApiError::Unprocessable(
                    "Lifecycle type cannot be changed".into(),
                ));
            }
            if let Some(bps) = l.data.buildpacks {
                app.buildpacks = bps;
            }
            if let Some(stack) = l.data.stack {
                check_stack(&s2, &stack)?;
                app.stack = Some(stack);
            }
        }
        let a = app.clone();
        s2.db.write_blocking(|tx| apps::update_app(tx, &a))?;
        Ok(app)
    })
    .await?;
    Ok(Json(app_json(&s.base_url, &app)))
}

/// A finished job and the 202 + Location answer pointing at it.
pub fn accepted_job(s: &Shared, job_guid: &str) -> Response {
    let location = format!("{}/v3/jobs/{job_guid}", s.base_url);
    (StatusCode::ACCEPTED, [(header::LOCATION, location)]).into_response()
}

async fn delete_app(
    State(s): State<Shared>,
    p: Principal,
    Path(guid): Path<String>,
) -> ApiResult<Response> {
    let s2 = s.clone();
    let job = blocking(move || {
        let app = load_app(&s2, &p, &guid)?;
        let processes = s2.db.read_blocking(|c| apps::app_processes(c, &app.guid))?;
        lrps::remove_all(s2.scheduler.as_ref(), &processes)?;
        // Work still queued or running for the app is cancelled.
        for task in s2
            .db
            .read_blocking(|c| crate::db::scheduler::unfinished_tasks_of_app(c, &app.guid))?
        {
            s2.scheduler.cancel_task(&task)?;
        }
        Ok(s2.db.write_blocking(|tx| {
            let job = jobs::create(tx, "app.delete", Some(&app.space_guid))?;
            apps::delete_app(tx, &app.guid)?;
            jobs::finish(tx, &job.guid, &[])?;
            Ok(job)
        })?)
    })
    .await?;
    Ok(accepted_job(&s, &job.guid))
}

async fn env(
    State(s): State<Shared>,
    p: Principal,
    Path(guid): Path<String>,
) -> ApiResult<Json<Value>> {
    let s2 = s.clone();
    let (app, urls) = blocking(move || {
        let app = load_app(&s2, &p, &guid)?;
        let urls = s2.db.read_blocking(|c| routes::app_urls(c, &app.guid))?;
        Ok((app, urls))
    })
    .await?;
    Ok(Json(json!({
        "staging_env_json": {},
        "running_env_json": {},
        "environment_variables": app.environment,
        "system_env_json": {"VCAP_SERVICES": {}},
        "application_env_json": {"VCAP_APPLICATION": {
            "application_id": app.guid, "application_name": app.name,
            "application_uris": urls, "uris": urls, "space_id": app.space_guid,
            "cf_api": s.base_url, "limits": {"fds": 16384},
        }},
    })))
}

fn env_vars_json(b: &str, app: &App) -> Value {
    json!({
        "var": app.environment,
        "links": {"self": href(b, &format!("/v3/apps/{}/environment_variables", app.guid)), "app": href(b, &format!("/v3/apps/{}", app.guid))},
    })
}

async fn get_env_vars(
    State(s): State<Shared>,
    p: Principal,
    Path(guid): Path<String>,
) -> ApiResult<Json<Value>> {
    let s2 = s.clone();
    let app = blocking(move || load_app(&s2, &p, &guid)).await?;
    Ok(Json(env_vars_json(&s.base_url, &app)))
}

#[derive(Deserialize)]
struct EnvPatch {
    var: BTreeMap<String, Value>,
}

async fn patch_env_vars(
    State(s): State<Shared>,
    p: Principal,
    Path(guid): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let body: EnvPatch = parse_json(&body)?;
    let (removed, set): (Vec<_>, Vec<_>) = body.var.into_iter().partition(|(_, v)| v.is_null());
    let set = env_strings(set.into_iter().collect())?;
    let s2 = s.clone();
    let app = blocking(move || {
        let mut app = load_app(&s2, &p, &guid)?;
        for (k, _) in removed {
            app.environment.remove(&k);
        }
        app.environment.extend(set);
        let a = app.clone();
        s2.db.write_blocking(|tx| apps::update_app(tx, &a))?;
        Ok(app)
    })
    .await?;
    Ok(Json(env_vars_json(&s.base_url, &app)))
}

/// Sets the app's state (and, for restarts, new process versions), then
/// syncs its LRPs. Blocking.
pub fn set_state(s: &Shared, mut app: App, state: &str, new_versions: bool) -> ApiResult<App> {
    if state == "STARTED" && app.droplet_guid.is_none() {
        return Err(ApiError::Unprocessable(
            "Assign a droplet before starting this app.".into(),
        ));
    }
    app.state = state.to_owned();
    let a = app.clone();
    s.db.write_blocking(|tx| {
        apps::update_app(tx, &a)?;
        if new_versions {
            for mut p in apps::app_processes(tx, &a.guid)? {
                p.version = crate::db::new_guid();
                apps::update_process(tx, &p)?;
            }
        }
        Ok(())
    })?;
    lrps::sync_app(&s.db, s.scheduler.as_ref(), &s.staging, &app.guid)?;
    tracing::info!(app_guid = %app.guid, state, "app state changed");
    Ok(app)
}

async fn change_state(
    s: Shared,
    p: Principal,
    guid: String,
    state: &'static str,
    restart: bool,
) -> ApiResult<Json<Value>> {
    let s2 = s.clone();
    let app = blocking(move || {
        let app = load_app(&s2, &p, &guid)?;
        // A restart gives every process a new version without stopping
        // first: the scheduler rolls the instances over, at least N-1 of N
        // serving throughout (and all of them while the new version fails).
        set_state(&s2, app, state, restart || state == "STARTED")
    })
    .await?;
    Ok(Json(app_json(&s.base_url, &app)))
}

async fn start(
    State(s): State<Shared>,
    p: Principal,
    Path(guid): Path<String>,
) -> ApiResult<Json<Value>> {
    change_state(s, p, guid, "STARTED", false).await
}

async fn stop(
    State(s): State<Shared>,
    p: Principal,
    Path(guid): Path<String>,
) -> ApiResult<Json<Value>> {
    change_state(s, p, guid, "STOPPED", false).await
}

async fn restart(
    State(s): State<Shared>,
    p: Principal,
    Path(guid): Path<String>,
) -> ApiResult<Json<Value>> {
    change_state(s, p, guid, "STARTED", true).await
}

fn current_droplet_json(b: &str, app: &App) -> Value {
    json!({
        "data": app.droplet_guid.as_ref().map(|g| json!({"guid": g})),
        "links": {
            "self": href(b, &format!("/v3/apps/{}/relationships/current_droplet", app.guid)),
            "related": href(b, &format!("/v3/apps/{}/droplets/current", app.guid)),
        },
    })
}

async fn get_current_droplet(
    State(s): State<Shared>,
    p: Principal,
    Path(guid): Path<String>,
) -> ApiResult<Json<Value>> {
    let s2 = s.clone();
    let app = blocking(move || load_app(&s2, &p, &guid)).await?;
    Ok(Json(current_droplet_json(&s.base_url, &app)))
}

#[derive(Deserialize)]
struct Relationship {
    data: Option<RelData>,
}

#[derive(Deserialize)]
struct RelData {
    guid: String,
}

async fn set_current_droplet(
    State(s): State<Shared>,
    p: Principal,
    Path(guid): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let body: Relationship = parse_json(&body)?;
    let droplet_guid = body.data.map(|d| d.guid).ok_or_else(|| {
        ApiError::Unprocessable(
            "Current droplet cannot be removed. Replace it with a preferable droplet.".into(),
        )
    })?;
    let s2 = s.clone();
    let app = blocking(move || {
        let mut app = load_app(&s2, &p, &guid)?;
        let droplet = s2.db.read_blocking(|c| builds::get_droplet(c, &droplet_guid))?;
        match droplet {
            Some(d) if d.app_guid == app.guid && d.state == "STAGED" => {}
            _ => return Err(ApiError::Unprocessable("Unable to assign current droplet. Ensure the droplet exists and belongs to this app.".into())),
        }
        app.droplet_guid = Some(droplet_guid);
        let a = app.clone();
        s2.db.write_blocking(|tx| apps::update_app(tx, &a))?;
        Ok(app)
    })
    .await?;
    Ok(Json(current_droplet_json(&s.base_url, &app)))
}
