//! Builds (staging) and droplets.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::apps::load_app;
use super::list::{app_scope, list_visible, ListParams};
use super::packages::stream_file;
use super::{blocking, href, metadata, parse_json, ts, ApiError, ApiResult, Principal, Shared};
use crate::blobstore::BlobKind;
use crate::db::builds::{self, Build, Droplet};
use crate::db::packages;
use crate::staging::Requester;

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/v3/builds", get(list_builds).post(create_build))
        .route("/v3/builds/{guid}", get(get_build))
        .route("/v3/apps/{guid}/builds", get(app_builds))
        .route("/v3/droplets", get(list_droplets))
        .route("/v3/droplets/{guid}", get(get_droplet))
        .route("/v3/droplets/{guid}/download", get(download_droplet))
        .route("/v3/apps/{guid}/droplets", get(app_droplets))
        .route("/v3/apps/{guid}/droplets/current", get(current_droplet))
}

fn lifecycle(kind: &str, buildpacks: &[String], stack: &Option<String>) -> Value {
    if kind == "docker" {
        json!({"type": "docker", "data": {}})
    } else {
        json!({"type": "buildpack", "data": {"buildpacks": buildpacks, "stack": stack}})
    }
}

fn build_json(b: &str, x: &Build) -> Value {
    json!({
        "guid": x.guid, "created_at": ts(x.created_at), "updated_at": ts(x.updated_at),
        "state": x.state, "error": x.error,
        "staging_memory_in_mb": x.staging_memory_in_mb, "staging_disk_in_mb": x.staging_disk_in_mb,
        "staging_log_rate_limit_bytes_per_second": -1,
        "lifecycle": lifecycle(&x.lifecycle_type, &x.buildpacks, &x.stack),
        "package": {"guid": x.package_guid},
        "droplet": x.droplet_guid.as_ref().map(|g| json!({"guid": g})),
        "created_by": {"guid": x.created_by_guid, "name": x.created_by_name, "email": x.created_by_name},
        "relationships": {"app": {"data": {"guid": x.app_guid}}},
        "metadata": metadata(),
        "links": {
            "self": href(b, &format!("/v3/builds/{}", x.guid)),
            "app": href(b, &format!("/v3/apps/{}", x.app_guid)),
            "droplet": x.droplet_guid.as_ref().map(|g| href(b, &format!("/v3/droplets/{g}"))),
        },
    })
}

fn droplet_json(b: &str, d: &Droplet) -> Value {
    let stack = d.stack.clone();
    json!({
        "guid": d.guid, "created_at": ts(d.created_at), "updated_at": ts(d.updated_at),
        "state": d.state, "error": null,
        "lifecycle": lifecycle(&d.lifecycle_type, &[], &stack),
        "execution_metadata": d.execution_metadata,
        "process_types": d.process_types,
        "checksum": d.blob.as_ref().map(|x| json!({"type": "sha256", "value": x.sha256})),
        "buildpacks": d.buildpacks,
        "stack": d.stack,
        "image": d.docker_image,
        "relationships": {"app": {"data": {"guid": d.app_guid}}},
        "metadata": metadata(),
        "links": {
            "self": href(b, &format!("/v3/droplets/{}", d.guid)),
            "package": d.package_guid.as_ref().map(|g| href(b, &format!("/v3/packages/{g}"))),
            "app": href(b, &format!("/v3/apps/{}", d.app_guid)),
            "assign_current_droplet": {"href": format!("{b}/v3/apps/{}/relationships/current_droplet", d.app_guid), "method": "PATCH"},
            "download": d.blob.as_ref().map(|_| href(b, &format!("/v3/droplets/{}/download", d.guid))),
        },
    })
}

#[derive(Deserialize)]
struct CreateBuild {
    package: PackageRef,
}

#[derive(Deserialize)]
struct PackageRef {
    guid: String,
}

async fn create_build(
    State(s): State<Shared>,
    p: Principal,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let body: CreateBuild = parse_json(&body)?;
    let s2 = s.clone();
    let build = blocking(move || {
        let pkg = s2
            .db
            .read_blocking(|c| packages::get(c, &body.package.guid))?
            .ok_or_else(|| ApiError::Unprocessable("Unable to use package. Ensure that the package exists and you have access to it.".into()))?;
        load_app(&s2, &p, &pkg.app_guid)
            .map_err(|_| ApiError::Unprocessable("Unable to use package. Ensure that the package exists and you have access to it.".into()))?;
        let by = Requester { guid: p.user_guid.clone(), name: p.user_name.clone() };
        Ok(s2.staging.create_build(&pkg.guid, &by)?)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(build_json(&s.base_url, &build))))
}

async fn get_build(
    State(s): State<Shared>,
    p: Principal,
    Path(guid): Path<String>,
) -> ApiResult<Json<Value>> {
    let s2 = s.clone();
    let build = blocking(move || {
        let b = s2
            .db
            .read_blocking(|c| builds::get_build(c, &guid))?
            .ok_or(ApiError::NotFound("Build"))?;
        load_app(&s2, &p, &b.app_guid).map_err(|_| ApiError::NotFound("Build"))?;
        Ok(b)
    })
    .await?;
    Ok(Json(build_json(&s.base_url, &build)))
}

async fn builds_list(
    s: Shared,
    p: Principal,
    q: Option<String>,
    app: Option<String>,
) -> ApiResult<Json<Value>> {
    let params = ListParams::parse(
        q.as_deref(),
        &["guids", "app_guids", "package_guids", "states"],
    )?;
    let mut filters = params.filters(&[
        ("guids", "guid"),
        ("app_guids", "app_guid"),
        ("package_guids", "package_guid"),
        ("states", "state"),
    ]);
    let path = app_scope(&mut filters, app.as_deref(), "builds");
    let page = params.page(&[])?;
    let params_current = params
        .get("current")
        .is_some_and(|v| v.first().is_some_and(|v| v == "true"));
    let app_scope: Vec<String> = match &app {
        Some(g) => vec![g.clone()],
        None => params
            .get("app_guids")
            .map(<[String]>::to_vec)
            .unwrap_or_default(),
    };
    let mut current = super::list::Extra::default();
    if params_current {
        // Only the current droplet of the app(s) asked about.
        current.push_in(
            "guid IN (SELECT droplet_guid FROM apps WHERE guid IN ({}))",
            &app_scope,
        );
    }
    let listing = list_visible(&s, p, app, current.build(), move |c, extra| {
        builds::list_builds(c, &filters, extra, &page)
    })
    .await?;
    let items = listing
        .items
        .iter()
        .map(|b| build_json(&s.base_url, b))
        .collect();
    Ok(Json(params.respond(
        &s.base_url,
        &path,
        listing.total,
        items,
    )))
}

async fn list_builds(
    State(s): State<Shared>,
    p: Principal,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<Value>> {
    builds_list(s, p, q, None).await
}

async fn app_builds(
    State(s): State<Shared>,
    p: Principal,
    Path(g): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<Value>> {
    builds_list(s, p, q, Some(g)).await
}

fn load_droplet(s: &Shared, p: &Principal, guid: &str) -> ApiResult<Droplet> {
    let d =
        s.db.read_blocking(|c| builds::get_droplet(c, guid))?
            .ok_or(ApiError::NotFound("Droplet"))?;
    load_app(s, p, &d.app_guid).map_err(|_| ApiError::NotFound("Droplet"))?;
    Ok(d)
}

async fn get_droplet(
    State(s): State<Shared>,
    p: Principal,
    Path(guid): Path<String>,
) -> ApiResult<Json<Value>> {
    let s2 = s.clone();
    let d = blocking(move || load_droplet(&s2, &p, &guid)).await?;
    Ok(Json(droplet_json(&s.base_url, &d)))
}

async fn current_droplet(
    State(s): State<Shared>,
    p: Principal,
    Path(guid): Path<String>,
) -> ApiResult<Json<Value>> {
    let s2 = s.clone();
    let d = blocking(move || {
        let app = load_app(&s2, &p, &guid)?;
        let g = app.droplet_guid.ok_or(ApiError::NotFound("Droplet"))?;
        load_droplet(&s2, &p, &g)
    })
    .await?;
    Ok(Json(droplet_json(&s.base_url, &d)))
}

async fn droplets_list(
    s: Shared,
    p: Principal,
    q: Option<String>,
    app: Option<String>,
) -> ApiResult<Json<Value>> {
    let params = ListParams::parse(q.as_deref(), &["guids", "app_guids", "states", "current"])?;
    let mut filters = params.filters(&[
        ("guids", "guid"),
        ("app_guids", "app_guid"),
        ("states", "state"),
    ]);
    let path = app_scope(&mut filters, app.as_deref(), "droplets");
    let page = params.page(&[])?;
    let listing = list_visible(&s, p, app, None, move |c, extra| {
        builds::list_droplets(c, &filters, extra, &page)
    })
    .await?;
    let items = listing
        .items
        .iter()
        .map(|d| droplet_json(&s.base_url, d))
        .collect();
    Ok(Json(params.respond(
        &s.base_url,
        &path,
        listing.total,
        items,
    )))
}

async fn list_droplets(
    State(s): State<Shared>,
    p: Principal,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<Value>> {
    droplets_list(s, p, q, None).await
}

async fn app_droplets(
    State(s): State<Shared>,
    p: Principal,
    Path(g): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<Value>> {
    droplets_list(s, p, q, Some(g)).await
}

/// Droplet download is for operators (admins).
async fn download_droplet(
    State(s): State<Shared>,
    p: Principal,
    Path(guid): Path<String>,
) -> ApiResult<Response> {
    p.require_admin()?;
    let s2 = s.clone();
    let (file, size) = blocking(move || {
        let d = load_droplet(&s2, &p, &guid)?;
        let blob = d
            .blob
            .ok_or_else(|| ApiError::Unprocessable("Docker droplets have no bits".into()))?;
        Ok((s2.blobs.fetch(BlobKind::Droplet, &blob)?, blob.size))
    })
    .await?;
    Ok(stream_file(file, "application/gzip", size))
}
