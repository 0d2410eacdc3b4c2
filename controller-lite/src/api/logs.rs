//! log-cache's read API: `GET /api/v1/info` and `GET /api/v1/read/:source_id`.

use axum::extract::{Path, RawQuery, State};
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

fn int(q: &[(String, String)], key: &str) -> ApiResult<Option<i64>> {
    q.iter()
        .rev()
        .find(|(k, v)| k == key && !v.is_empty())
        .map(|(_, v)| {
            v.parse::<i64>()
                .map_err(|_| ApiError::BadQuery(format!("{key} must be an integer")))
        })
        .transpose()
}

/// Whether the request asks for LOG envelopes: no `envelope_types`, or one
/// of them (repeated or comma-separated, as log-cache takes them) is `LOG`
/// or `ANY`. We keep nothing but logs.
fn wants_logs(q: &[(String, String)]) -> bool {
    let mut types = q
        .iter()
        .filter(|(k, _)| k == "envelope_types" || k == "envelope_type")
        .flat_map(|(_, v)| v.split(','))
        .peekable();
    types.peek().is_none()
        || types.any(|t| t.eq_ignore_ascii_case("LOG") || t.eq_ignore_ascii_case("ANY"))
}

/// log-cache's read: `start_time` (inclusive) and `end_time` (exclusive) in
/// ns, `limit` (default 100, at most 1000) and `descending=true` for the
/// newest first, which is how the cf CLI asks for `logs --recent`.
async fn read(
    State(s): State<Shared>,
    p: Principal,
    Path(source_id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    let q: Vec<(String, String)> = form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .into_owned()
        .collect();
    let limit = int(&q, "limit")?;
    if limit.is_some_and(|l| l < 1) {
        return Err(ApiError::BadQuery("limit must be at least 1".into()));
    }
    let query = ReadQuery {
        start_time: int(&q, "start_time")?,
        end_time: int(&q, "end_time")?,
        limit: limit.map(|l| usize::try_from(l).unwrap_or(1000)),
        descending: q.iter().any(|(k, v)| k == "descending" && v == "true"),
    };
    let s2 = s.clone();
    let sid = source_id.clone();
    blocking(move || load_app(&s2, &p, &sid).map(|_| ())).await?;
    if !wants_logs(&q) {
        return Ok(Json(json!({"envelopes": {"batch": []}})));
    }
    let s2 = s.clone();
    let batch = blocking(move || Ok(s2.logs.read(&source_id, &query)?)).await?;
    Ok(Json(json!({"envelopes": {"batch": batch}})))
}
