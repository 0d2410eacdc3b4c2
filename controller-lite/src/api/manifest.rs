//! `POST /v3/spaces/:guid/actions/apply_manifest` (a job) and `GET /v3/jobs/:guid`.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::apps::accepted_job;
use super::{blocking, href, ts, ApiError, ApiResult, Principal, Shared};
use crate::db::{jobs, orgs};
use crate::lrps;
use crate::manifest::{self, Defaults, ManifestError};

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route(
            "/v3/spaces/{guid}/actions/apply_manifest",
            post(apply_manifest),
        )
        .route("/v3/jobs/{guid}", get(get_job))
}

impl From<ManifestError> for ApiError {
    fn from(e: ManifestError) -> Self {
        match e {
            ManifestError::Db(e) => e.into(),
            other => ApiError::Unprocessable(other.to_string()),
        }
    }
}

async fn apply_manifest(
    State(s): State<Shared>,
    p: Principal,
    Path(space_guid): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let manifest = manifest::parse(&body)?;
    let s2 = s.clone();
    let sg = space_guid.clone();
    let job = blocking(move || {
        let space = s2.db.read_blocking(|c| orgs::get_space(c, &sg))?;
        if space.is_none() || !p.can_use_space(&s2.db, &sg)? {
            return Err(ApiError::NotFound("Space"));
        }
        Ok(s2
            .db
            .write_blocking(|tx| jobs::create(tx, "space.apply_manifest", Some(&sg)))?)
    })
    .await?;
    let s3 = s.clone();
    let job_guid = job.guid.clone();
    tokio::task::spawn_blocking(move || {
        let defaults = Defaults {
            stack: s3.config.default_stack.clone(),
            apps_domain: s3.config.apps_domain.clone(),
        };
        let mut errors = Vec::new();
        for app in &manifest.applications {
            let applied = s3
                .db
                .write_blocking_with(|tx| manifest::apply_app(tx, &space_guid, app, &defaults));
            match applied {
                Ok(app_guid) => {
                    if let Err(e) =
                        lrps::sync_app(&s3.db, s3.scheduler.as_ref(), &s3.staging, &app_guid)
                    {
                        errors.push(format!("For application '{}': {e}", app.name));
                    }
                }
                Err(e) => errors.push(format!("For application '{}': {e}", app.name)),
            }
        }
        if let Err(e) = s3
            .db
            .write_blocking(|tx| jobs::finish(tx, &job_guid, &errors))
        {
            tracing::error!(job_guid, error = %e, "could not finish job");
        }
    });
    Ok(accepted_job(&s, &job.guid))
}

fn job_json(b: &str, j: &jobs::Job) -> Value {
    let errors: Vec<Value> = j
        .errors
        .iter()
        .map(|e| json!({"code": 10008, "title": "CF-UnprocessableEntity", "detail": e}))
        .collect();
    let mut links = json!({"self": href(b, &format!("/v3/jobs/{}", j.guid))});
    if let Some(space) = &j.space_guid {
        links["space"] = href(b, &format!("/v3/spaces/{space}"));
    }
    json!({
        "guid": j.guid, "created_at": ts(j.created_at), "updated_at": ts(j.updated_at),
        "operation": j.operation, "state": j.state, "errors": errors, "warnings": [], "links": links,
    })
}

async fn get_job(
    State(s): State<Shared>,
    _p: Principal,
    Path(guid): Path<String>,
) -> ApiResult<Json<Value>> {
    let db = s.db.clone();
    let job = blocking(move || Ok(db.read_blocking(|c| jobs::get(c, &guid))?))
        .await?
        .ok_or(ApiError::NotFound("Job"))?;
    Ok(Json(job_json(&s.base_url, &job)))
}
