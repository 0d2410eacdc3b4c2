//! The cell-facing routes of the BBS (`diego::rep`), registered with the
//! internal API: presence, LRP events, task start, metrics, and the
//! routing table (`GET /internal/v1/routes`) for a router. Task completion
//! shares the internal API's route and calls [`completion_hook`] first.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use diego::rep::{CellPresence, ContainerMetricsBatch, LrpEvents, PresenceAck, TaskStarted};
use serde::Deserialize;

use super::{Bbs, BbsError};
use crate::api::internal::Internal;
use crate::api::{blocking, parse_json, ApiError, ApiResult, Shared};
use crate::cells::CellIdentity;

/// The routes (answer 404 when the scheduler is not diego).
pub fn routes() -> Router<Shared> {
    Router::new()
        .route(
            "/internal/v1/cells/{cell_id}/presence",
            put(put_presence).delete(delete_presence),
        )
        .route("/internal/v1/actual_lrps/events", post(lrp_events))
        .route("/internal/v1/tasks/{guid}/started", post(task_started))
        .route("/internal/v1/cells/{cell_id}/metrics", post(metrics))
        .route("/internal/v1/routes", get(routing_table))
}

impl From<BbsError> for ApiError {
    fn from(e: BbsError) -> Self {
        match e {
            BbsError::WrongCell { .. } => {
                tracing::warn!(error = %e, "internal call refused");
                ApiError::NotAuthorized
            }
            BbsError::UnknownTask(_) => ApiError::NotFound("Task"),
            BbsError::UnknownInstance(_) => ApiError::NotFound("Instance"),
            BbsError::Lrp(e) => ApiError::Unprocessable(e.to_string()),
            BbsError::Task(e) => ApiError::Unprocessable(e.to_string()),
            BbsError::Db(e) => e.into(),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

fn bbs(s: &Shared) -> ApiResult<std::sync::Arc<Bbs>> {
    s.bbs.clone().ok_or(ApiError::UnknownRequest)
}

async fn put_presence(
    State(s): State<Shared>,
    i: Internal,
    Path(cell_id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<PresenceAck>> {
    let presence: CellPresence = parse_json(&body)?;
    let bbs = bbs(&s)?;
    let ack = blocking(move || Ok(bbs.put_presence(&i.caller, &cell_id, &presence)?)).await?;
    Ok(Json(ack))
}

async fn delete_presence(
    State(s): State<Shared>,
    i: Internal,
    Path(cell_id): Path<String>,
) -> ApiResult<StatusCode> {
    let bbs = bbs(&s)?;
    blocking(move || Ok(bbs.remove_presence(&i.caller, &cell_id)?)).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn lrp_events(State(s): State<Shared>, i: Internal, body: Bytes) -> ApiResult<StatusCode> {
    let events: LrpEvents = parse_json(&body)?;
    let bbs = bbs(&s)?;
    blocking(move || Ok(bbs.apply_lrp_events(&i.caller, &events)?)).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn task_started(
    State(s): State<Shared>,
    i: Internal,
    Path(guid): Path<String>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let started: TaskStarted = parse_json(&body)?;
    let bbs = bbs(&s)?;
    blocking(move || Ok(bbs.task_started(&i.caller, &guid, &started.cell_id)?)).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn metrics(
    State(s): State<Shared>,
    i: Internal,
    Path(cell_id): Path<String>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let batch: ContainerMetricsBatch = parse_json(&body)?;
    let bbs = bbs(&s)?;
    bbs.put_metrics(&i.caller, &cell_id, batch)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn routing_table(
    State(s): State<Shared>,
    _i: Internal,
) -> ApiResult<Json<Vec<super::RouteEndpoint>>> {
    let bbs = bbs(&s)?;
    Ok(Json(blocking(move || Ok(bbs.routing_table()?)).await?))
}

#[derive(Deserialize)]
struct Completed {
    #[serde(default)]
    cell_id: Option<String>,
    #[serde(default)]
    failed: bool,
    #[serde(default)]
    failure_reason: String,
    #[serde(default)]
    result: String,
}

/// The BBS's part of `POST /internal/v1/tasks/{guid}/completed` (checked
/// against the reporting cell), run before the controller's completion
/// path. Nothing to do with the recording scheduler. Blocking.
pub fn completion_hook(
    s: &Shared,
    caller: &CellIdentity,
    guid: &str,
    body: &[u8],
) -> ApiResult<()> {
    let Some(bbs) = &s.bbs else {
        return Ok(());
    };
    let c: Completed = parse_json(body)?;
    bbs.task_completed(
        caller,
        guid,
        c.cell_id.as_deref(),
        c.failed,
        &c.failure_reason,
        &c.result,
    )?;
    Ok(())
}
