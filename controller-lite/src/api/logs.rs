//! log-cache's read API: `GET /api/v1/info` and `GET /api/v1/read/:source_id`.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::apps::load_app;
use super::{blocking, ApiError, ApiResult, Principal, Shared};
use crate::logcache::ReadQuery;

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/v1/info", get(info))
        .route("/api/v1/read/{source_id}", get(read))
}

async fn info() -> Json<Value> {
    Json(json!({"version": "2.11.4", "vm_uptime": "0"}))
}

fn int(q: &HashMap<String, String>, key: &str) -> ApiResult<Option<i64>> {
    q.get(key)
        .filter(|v| !v.is_empty())
        .map(|v| {
            v.parse::<i64>()
                .map_err(|_| ApiError::BadQuery(format!("{key} must be an integer")))
        })
        .transpose()
}

async fn read(
    State(s): State<Shared>,
    p: Principal,
    Path(source_id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let query = ReadQuery {
        start_time: int(&q, "start_time")?,
        end_time: int(&q, "end_time")?,
        limit: int(&q, "limit")?.map(|l| usize::try_from(l.max(1)).unwrap_or(1)),
        descending: q.get("descending").is_some_and(|d| d == "true"),
    };
    if let Some(types) = q.get("envelope_types") {
        if !types.split(',').any(|t| t == "LOG" || t == "ANY") {
            return Ok(Json(json!({"envelopes": {"batch": []}})));
        }
    }
    let s2 = s.clone();
    let sid = source_id.clone();
    blocking(move || load_app(&s2, &p, &sid).map(|_| ())).await?;
    let batch = s.logs.read(&source_id, &query);
    Ok(Json(json!({"envelopes": {"batch": batch}})))
}
