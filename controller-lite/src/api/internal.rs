//! The internal API that cells (and, later, the scheduler) call: blob
//! downloads, droplet and buildpack-cache uploads, task completion, log
//! lines and instance reports. Authenticated with the shared internal key
//! or a cell's own key (`crate::cells`).

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Multipart, Path, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::packages::{read_upload, stream_file};
use super::{blocking, parse_json, ApiError, ApiResult, Shared};
use crate::blobstore::BlobKind;
use crate::cells::{self, CellIdentity};
use crate::db::packages;
use crate::db::scheduler::ActualLrp;
use crate::lifecycles;
use crate::logcache::NewLine;
use crate::staging::{Completion, TaskOutcome};

pub(super) fn routes(upload_limit: usize) -> Router<Shared> {
    Router::new()
        .route("/internal/v1/blobs/{kind}/{sha256}", get(download))
        .route("/internal/v1/lifecycles/{name}", get(lifecycle))
        .route(
            "/internal/v1/staging/{build}/droplet",
            post(upload_droplet).layer(DefaultBodyLimit::max(upload_limit)),
        )
        .route(
            "/internal/v1/staging/{build}/buildpack_cache",
            post(upload_cache).layer(DefaultBodyLimit::max(upload_limit)),
        )
        .route("/internal/v1/tasks/pending", get(pending))
        .route("/internal/v1/tasks/{guid}/completed", post(completed))
        .route("/internal/v1/logs", post(logs))
        .route(
            "/internal/v1/actual_lrps/{process_guid}/{index}",
            put(report_actual),
        )
        .merge(crate::bbs::http::routes())
}

/// Proof that the caller holds the shared internal key or a cell's own key.
pub struct Internal {
    /// Who called.
    pub caller: CellIdentity,
}

impl FromRequestParts<Shared> for Internal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Shared,
    ) -> Result<Self, Self::Rejection> {
        let given = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .ok_or(ApiError::NotAuthenticated)?
            .trim()
            .to_owned();
        let s = state.clone();
        let caller = blocking(move || {
            cells::authenticate(&s.db, &s.internal_key, &given).map_err(|e| match e {
                cells::CellError::Db(e) => ApiError::from(e),
                other => ApiError::Internal(other.to_string()),
            })
        })
        .await?
        .ok_or(ApiError::InvalidAuthToken)?;
        tracing::debug!(%caller, "internal API call");
        Ok(Self { caller })
    }
}

fn kind(name: &str) -> ApiResult<BlobKind> {
    [
        BlobKind::Package,
        BlobKind::Droplet,
        BlobKind::Buildpack,
        BlobKind::BuildpackCache,
    ]
    .into_iter()
    .find(|k| k.as_str() == name)
    .ok_or(ApiError::NotFound("Blob kind"))
}

async fn download(
    State(s): State<Shared>,
    _i: Internal,
    Path((k, sha256)): Path<(String, String)>,
) -> ApiResult<Response> {
    let kind = kind(&k)?;
    let s2 = s.clone();
    let (file, size) = blocking(move || {
        let blob = s2
            .db
            .read_blocking(|c| packages::find_blob(c, &sha256))?
            .ok_or(ApiError::NotFound("Blob"))?;
        Ok((s2.blobs.fetch(kind, &blob)?, blob.size))
    })
    .await?;
    Ok(stream_file(file, "application/octet-stream", size))
}

/// A staging lifecycle bundle (`buildpack.tgz`, `docker.tgz`).
async fn lifecycle(
    State(s): State<Shared>,
    _i: Internal,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let kind = lifecycles::Kind::from_name(&name).ok_or(ApiError::NotFound("Lifecycle"))?;
    let bundle = match s.staging.lifecycles().get(kind) {
        Ok(b) => b.clone(),
        Err(why) => {
            tracing::warn!(
                lifecycle = kind.name(),
                why,
                "a cell asked for a missing lifecycle"
            );
            return Err(ApiError::NotFound("Lifecycle"));
        }
    };
    let file = std::fs::File::open(&bundle.path)
        .map_err(|e| ApiError::Internal(format!("lifecycle {}: {e}", bundle.path.display())))?;
    Ok(stream_file(file, "application/gzip", bundle.size))
}

async fn store(
    s: Shared,
    build: String,
    mut multipart: Multipart,
    droplet: bool,
) -> ApiResult<Json<Value>> {
    let upload = read_upload(&s, &mut multipart, s.config.limits.max_upload_bytes).await?;
    let bits = upload.bits.ok_or_else(|| {
        ApiError::Unprocessable("the upload needs a 'bits' or 'file' part".into())
    })?;
    let s2 = s.clone();
    let blob = blocking(move || {
        Ok(if droplet {
            s2.staging.store_droplet(&build, bits.path())?
        } else {
            s2.staging.store_buildpack_cache(&build, bits.path())?
        })
    })
    .await?;
    Ok(Json(
        json!({"sha256": blob.sha256, "sha1": blob.sha1, "size": blob.size}),
    ))
}

async fn upload_droplet(
    State(s): State<Shared>,
    _i: Internal,
    Path(build): Path<String>,
    m: Multipart,
) -> ApiResult<Json<Value>> {
    store(s, build, m, true).await
}

async fn upload_cache(
    State(s): State<Shared>,
    _i: Internal,
    Path(build): Path<String>,
    m: Multipart,
) -> ApiResult<Json<Value>> {
    store(s, build, m, false).await
}

async fn pending(State(s): State<Shared>, _i: Internal) -> ApiResult<Json<Value>> {
    let s2 = s.clone();
    let tasks = blocking(move || Ok(s2.scheduler.pending_tasks()?)).await?;
    Ok(Json(json!({"tasks": tasks})))
}

/// Diego's task callback body.
#[derive(Deserialize)]
struct TaskCallback {
    #[serde(default)]
    failed: bool,
    #[serde(default)]
    failure_reason: String,
    #[serde(default)]
    result: String,
}

async fn completed(
    State(s): State<Shared>,
    i: Internal,
    Path(guid): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let cb: TaskCallback = parse_json(&body)?;
    tracing::info!(task_guid = %guid, caller = %i.caller, failed = cb.failed, "task completion reported");
    let (s3, g3, caller) = (s.clone(), guid.clone(), i.caller.clone());
    blocking(move || crate::bbs::http::completion_hook(&s3, &caller, &g3, &body)).await?;
    let outcome = if cb.failed {
        TaskOutcome::Failed {
            reason: cb.failure_reason,
        }
    } else {
        TaskOutcome::Succeeded {
            result: cb.result.chars().take(10 * 1024).collect(),
        }
    };
    let s2 = s.clone();
    let done = blocking(move || Ok(s2.staging.task_completed(&guid, outcome)?)).await?;
    Ok(Json(match done {
        Completion::BuildStaged { droplet_guid } => {
            json!({"build_state": "STAGED", "droplet_guid": droplet_guid})
        }
        Completion::BuildFailed { error } => json!({"build_state": "FAILED", "error": error}),
        Completion::TaskFinished { state } => json!({"task_state": state}),
        Completion::AlreadyCompleted => json!({"already_completed": true}),
    }))
}

#[derive(Deserialize)]
struct LogLine {
    source_id: String,
    source_type: String,
    #[serde(default)]
    instance_id: String,
    line: String,
    #[serde(default)]
    stderr: bool,
}

async fn logs(State(s): State<Shared>, _i: Internal, body: Bytes) -> ApiResult<StatusCode> {
    let lines: Vec<LogLine> = parse_json(&body)?;
    let lines = lines
        .into_iter()
        .map(|l| {
            // Diego caps a log line at 61,440 bytes.
            let mut line = l.line;
            if line.len() > 61_440 {
                let mut cut = 61_440;
                while !line.is_char_boundary(cut) {
                    cut -= 1;
                }
                line.truncate(cut);
            }
            NewLine {
                source_id: l.source_id,
                source_type: l.source_type,
                instance_id: l.instance_id,
                line,
                stderr: l.stderr,
            }
        })
        .collect();
    let s2 = s.clone();
    blocking(move || Ok(s2.logs.emit_all(lines)?)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct ActualBody {
    state: String,
    #[serde(default)]
    host: String,
    port: Option<i64>,
    since: Option<i64>,
    #[serde(default)]
    cpu: f64,
    #[serde(default)]
    mem: i64,
    #[serde(default)]
    disk: i64,
}

async fn report_actual(
    State(s): State<Shared>,
    i: Internal,
    Path((process_guid, index)): Path<(String, i64)>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let b: ActualBody = parse_json(&body)?;
    tracing::debug!(%process_guid, index, state = %b.state, caller = %i.caller, "instance reported");
    if !matches!(
        b.state.as_str(),
        "UNCLAIMED" | "CLAIMED" | "RUNNING" | "CRASHED"
    ) {
        return Err(ApiError::Unprocessable(format!(
            "unknown instance state {:?}",
            b.state
        )));
    }
    let actual = ActualLrp {
        process_guid,
        index,
        state: b.state,
        host: b.host,
        port: b.port,
        since: b.since.unwrap_or_else(crate::db::now),
        cpu: b.cpu,
        mem: b.mem,
        disk: b.disk,
    };
    let s2 = s.clone();
    blocking(move || Ok(s2.scheduler.report_actual(&actual)?)).await?;
    Ok(StatusCode::NO_CONTENT)
}
