//! Small read-only endpoints the cf CLI calls around a push and `cf app`:
//! app features, `ssh_enabled`, deployed revisions and sidecars (none), and
//! the manifest diff (we report no diff; the manifest is
//! validated the same way `apply_manifest` does).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::apps::load_app;
use super::{blocking, href, ApiError, ApiResult, Principal, Shared};
use crate::manifest;

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/v3/apps/{guid}/features", get(features))
        .route("/v3/apps/{guid}/features/{name}", get(feature))
        .route("/v3/apps/{guid}/ssh_enabled", get(ssh_enabled))
        .route("/v3/spaces/{guid}/manifest_diff", post(manifest_diff))
        .route("/v3/apps/{guid}/revisions/deployed", get(no_revisions))
        .route("/v3/processes/{guid}/sidecars", get(no_sidecars))
}

fn feature_json(name: &str) -> Value {
    let description = match name {
        "ssh" => "Enable SSHing into the app.",
        _ => "Enable revisions for the app",
    };
    json!({"name": name, "description": description, "enabled": false})
}

async fn features(
    State(s): State<Shared>,
    p: Principal,
    Path(guid): Path<String>,
) -> ApiResult<Json<Value>> {
    let s2 = s.clone();
    let g = guid.clone();
    blocking(move || load_app(&s2, &p, &g)).await?;
    let path = format!("/v3/apps/{guid}/features");
    Ok(Json(json!({
        "resources": [feature_json("ssh"), feature_json("revisions")],
        "pagination": {"total_results": 2, "total_pages": 1, "first": href(&s.base_url, &path), "last": href(&s.base_url, &path), "next": null, "previous": null},
    })))
}

async fn feature(
    State(s): State<Shared>,
    p: Principal,
    Path((guid, name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    if name != "ssh" && name != "revisions" {
        return Err(ApiError::NotFound("Feature"));
    }
    let s2 = s.clone();
    blocking(move || load_app(&s2, &p, &guid)).await?;
    Ok(Json(feature_json(&name)))
}

async fn ssh_enabled(
    State(s): State<Shared>,
    p: Principal,
    Path(guid): Path<String>,
) -> ApiResult<Json<Value>> {
    let s2 = s.clone();
    blocking(move || load_app(&s2, &p, &guid)).await?;
    Ok(Json(
        json!({"enabled": false, "reason": "SSH is not supported by controller-lite"}),
    ))
}

async fn manifest_diff(
    State(s): State<Shared>,
    p: Principal,
    Path(guid): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    manifest::parse(&body)?;
    let s2 = s.clone();
    blocking(move || {
        let space = s2
            .db
            .read_blocking(|c| crate::db::orgs::get_space(c, &guid))?;
        match space {
            Some(sp) if p.can_use_space(&s2.db, &sp.guid)? => Ok(()),
            _ => Err(ApiError::NotFound("Space")),
        }
    })
    .await?;
    Ok(Json(json!({"diff": []})))
}

fn empty_list(base: &str, path: &str) -> Value {
    json!({
        "pagination": {"total_results": 0, "total_pages": 1, "first": href(base, path), "last": href(base, path), "next": null, "previous": null},
        "resources": [],
    })
}

/// Revisions are not kept: `cf app` shows none.
async fn no_revisions(
    State(s): State<Shared>,
    p: Principal,
    Path(guid): Path<String>,
) -> ApiResult<Json<Value>> {
    let s2 = s.clone();
    let g = guid.clone();
    blocking(move || load_app(&s2, &p, &g)).await?;
    Ok(Json(empty_list(
        &s.base_url,
        &format!("/v3/apps/{guid}/revisions/deployed"),
    )))
}

/// Sidecars are not supported: every process has none.
async fn no_sidecars(
    State(s): State<Shared>,
    p: Principal,
    Path(guid): Path<String>,
) -> ApiResult<Json<Value>> {
    let s2 = s.clone();
    let g = guid.clone();
    blocking(move || {
        let process = s2
            .db
            .read_blocking(|c| crate::db::apps::get_process(c, &g))?
            .ok_or(ApiError::NotFound("Process"))?;
        load_app(&s2, &p, &process.app_guid).map(|_| ())
    })
    .await?;
    Ok(Json(empty_list(
        &s.base_url,
        &format!("/v3/processes/{guid}/sidecars"),
    )))
}
