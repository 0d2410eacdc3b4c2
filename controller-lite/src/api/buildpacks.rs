//! Admin buildpacks: create (with position and stack), upload bits, update,
//! delete. Only admins change them.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Multipart, Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::apps::{accepted_job, check_stack};
use super::list::ListParams;
use super::packages::read_upload;
use super::{blocking, href, metadata, parse_json, ts, ApiError, ApiResult, Principal, Shared};
use crate::blobstore::BlobKind;
use crate::db::buildpacks::{self, Buildpack};
use crate::db::jobs;
use crate::packaging::{self, Limits};

pub(super) fn routes(upload_limit: usize) -> Router<Shared> {
    Router::new()
        .route("/v3/buildpacks", get(list).post(create))
        .route(
            "/v3/buildpacks/{guid}",
            get(get_one).patch(update).delete(remove),
        )
        .route(
            "/v3/buildpacks/{guid}/upload",
            post(upload).layer(DefaultBodyLimit::max(upload_limit)),
        )
}

fn buildpack_json(b: &str, bp: &Buildpack) -> Value {
    json!({
        "guid": bp.guid, "created_at": ts(bp.created_at), "updated_at": ts(bp.updated_at),
        "name": bp.name, "state": bp.state, "filename": bp.filename, "stack": bp.stack,
        "position": bp.position, "enabled": bp.enabled, "locked": bp.locked, "lifecycle": "buildpack",
        "metadata": metadata(),
        "links": {
            "self": href(b, &format!("/v3/buildpacks/{}", bp.guid)),
            "upload": {"href": format!("{b}/v3/buildpacks/{}/upload", bp.guid), "method": "POST"},
        },
    })
}

async fn list(
    State(s): State<Shared>,
    _p: Principal,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<Value>> {
    let params = ListParams::parse(q.as_deref(), &["names", "stacks", "guids", "lifecycle"])?;
    let filters = params.filters(&[("names", "name"), ("stacks", "stack"), ("guids", "guid")]);
    let mut page = params.page(&["name", "position"])?;
    if q.as_deref().is_none_or(|q| !q.contains("order_by")) {
        page.order_by = "position";
    }
    let db = s.db.clone();
    let listing =
        blocking(move || Ok(db.read_blocking(|c| buildpacks::list(c, &filters, &page))?)).await?;
    let items = listing
        .items
        .iter()
        .map(|bp| buildpack_json(&s.base_url, bp))
        .collect();
    Ok(Json(params.respond(
        &s.base_url,
        "/v3/buildpacks",
        listing.total,
        items,
    )))
}

#[derive(Deserialize)]
struct CreateBuildpack {
    name: String,
    stack: Option<String>,
    position: Option<i64>,
    enabled: Option<bool>,
    locked: Option<bool>,
}

async fn create(
    State(s): State<Shared>,
    p: Principal,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    p.require_admin()?;
    let body: CreateBuildpack = parse_json(&body)?;
    if body.name.trim().is_empty()
        || !body
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(ApiError::Unprocessable(
            "Name can only contain alphanumeric characters, underscores and dashes".into(),
        ));
    }
    if body.position.is_some_and(|p| p < 1) {
        return Err(ApiError::Unprocessable(
            "Position must be greater than or equal to 1".into(),
        ));
    }
    let s2 = s.clone();
    let bp = blocking(move || {
        if let Some(stack) = &body.stack {
            check_stack(&s2, stack)?;
        }
        Ok(s2.db.write_blocking(|tx| {
            buildpacks::create(
                tx,
                &body.name,
                body.stack.as_deref(),
                body.position,
                body.enabled.unwrap_or(true),
                body.locked.unwrap_or(false),
            )
        })?)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(buildpack_json(&s.base_url, &bp))))
}

fn load(s: &Shared, guid: &str) -> ApiResult<Buildpack> {
    s.db.read_blocking(|c| buildpacks::get(c, guid))?
        .ok_or(ApiError::NotFound("Buildpack"))
}

async fn get_one(
    State(s): State<Shared>,
    _p: Principal,
    Path(guid): Path<String>,
) -> ApiResult<Json<Value>> {
    let s2 = s.clone();
    let bp = blocking(move || load(&s2, &guid)).await?;
    Ok(Json(buildpack_json(&s.base_url, &bp)))
}

#[derive(Deserialize)]
struct UpdateBuildpack {
    position: Option<i64>,
    enabled: Option<bool>,
    locked: Option<bool>,
}

async fn update(
    State(s): State<Shared>,
    p: Principal,
    Path(guid): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    p.require_admin()?;
    let body: UpdateBuildpack = parse_json(&body)?;
    if body.position.is_some_and(|p| p < 1) {
        return Err(ApiError::Unprocessable(
            "Position must be greater than or equal to 1".into(),
        ));
    }
    let s2 = s.clone();
    let bp = blocking(move || {
        let mut bp = load(&s2, &guid)?;
        bp.enabled = body.enabled.unwrap_or(bp.enabled);
        bp.locked = body.locked.unwrap_or(bp.locked);
        let b2 = bp.clone();
        s2.db
            .write_blocking(|tx| buildpacks::update(tx, &b2, body.position))?;
        load(&s2, &guid)
    })
    .await?;
    Ok(Json(buildpack_json(&s.base_url, &bp)))
}

async fn remove(
    State(s): State<Shared>,
    p: Principal,
    Path(guid): Path<String>,
) -> ApiResult<Response> {
    p.require_admin()?;
    let s2 = s.clone();
    let job = blocking(move || {
        load(&s2, &guid)?;
        Ok(s2.db.write_blocking(|tx| {
            let job = jobs::create(tx, "buildpack.delete", None)?;
            buildpacks::delete(tx, &guid)?;
            jobs::finish(tx, &job.guid, &[])?;
            Ok(job)
        })?)
    })
    .await?;
    Ok(accepted_job(&s, &job.guid))
}

async fn upload(
    State(s): State<Shared>,
    p: Principal,
    Path(guid): Path<String>,
    mut multipart: Multipart,
) -> ApiResult<Response> {
    p.require_admin()?;
    let s2 = s.clone();
    let g = guid.clone();
    let bp = blocking(move || load(&s2, &g)).await?;
    if bp.locked {
        return Err(ApiError::Unprocessable("The buildpack is locked".into()));
    }
    let upload = read_upload(&s, &mut multipart, s.config.limits.max_upload_bytes).await?;
    let bits = upload.bits.ok_or_else(|| {
        ApiError::Unprocessable("A buildpack zip must be uploaded as 'bits'".into())
    })?;
    let filename = upload
        .filename
        .unwrap_or_else(|| format!("{}.zip", bp.name));
    let s2 = s.clone();
    let bp = blocking(move || {
        let limits = Limits {
            max_unzipped_bytes: s2.config.limits.max_unzipped_bytes,
            max_entries: s2.config.limits.max_zip_entries,
        };
        packaging::validate_zip(bits.path(), limits)?;
        let blob = s2.blobs.put_file(BlobKind::Buildpack, bits.path())?;
        let job = s2.db.write_blocking(|tx| {
            buildpacks::set_bits(tx, &guid, &filename, &blob)?;
            let job = jobs::create(tx, "buildpack.upload", None)?;
            jobs::finish(tx, &job.guid, &[])?;
            Ok(job)
        })?;
        Ok((load(&s2, &guid)?, job))
    })
    .await?;
    // Cloud Controller answers 202 with a job; older CLIs read the body.
    let (bp, job) = bp;
    let location = format!("{}/v3/jobs/{}", s.base_url, job.guid);
    Ok((
        StatusCode::ACCEPTED,
        [(axum::http::header::LOCATION, location)],
        Json(buildpack_json(&s.base_url, &bp)),
    )
        .into_response())
}
