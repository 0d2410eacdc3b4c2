//! One-off tasks (`cf run-task`, `cf tasks`).

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::apps::load_app;
use super::list::{app_scope, list_visible, ListParams};
use super::{blocking, href, metadata, parse_json, ts, ApiError, ApiResult, Principal, Shared};
use crate::blobstore::BlobKind;
use crate::db::builds;
use crate::db::tasks::{self, NewTask, Task};
use crate::scheduler::{TaskAction, TaskDefinition, TASKS_DOMAIN};
use crate::states::TaskState;

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/v3/tasks", get(list_tasks))
        .route("/v3/tasks/{guid}", get(get_task))
        .route("/v3/tasks/{guid}/actions/cancel", post(cancel))
        .route("/v3/apps/{guid}/tasks", get(app_tasks).post(create_task))
}

fn task_json(b: &str, t: &Task) -> Value {
    json!({
        "guid": t.guid, "sequence_id": t.sequence_id, "name": t.name, "command": t.command, "state": t.state,
        "memory_in_mb": t.memory_in_mb, "disk_in_mb": t.disk_in_mb, "log_rate_limit_in_bytes_per_second": -1,
        "result": {"failure_reason": t.failure_reason}, "droplet_guid": t.droplet_guid,
        "relationships": {"app": {"data": {"guid": t.app_guid}}},
        "metadata": metadata(), "created_at": ts(t.created_at), "updated_at": ts(t.updated_at),
        "links": {
            "self": href(b, &format!("/v3/tasks/{}", t.guid)),
            "app": href(b, &format!("/v3/apps/{}", t.app_guid)),
            "cancel": {"href": format!("{b}/v3/tasks/{}/actions/cancel", t.guid), "method": "POST"},
            "droplet": href(b, &format!("/v3/droplets/{}", t.droplet_guid)),
        },
    })
}

#[derive(Deserialize)]
struct CreateTask {
    command: Option<String>,
    name: Option<String>,
    memory_in_mb: Option<i64>,
    disk_in_mb: Option<i64>,
}

async fn create_task(
    State(s): State<Shared>,
    p: Principal,
    Path(guid): Path<String>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let body: CreateTask = parse_json(&body)?;
    let command = body
        .command
        .filter(|c| !c.trim().is_empty())
        .ok_or_else(|| ApiError::Unprocessable("Command can't be blank".into()))?;
    if body.memory_in_mb.is_some_and(|m| m < 1) || body.disk_in_mb.is_some_and(|d| d < 1) {
        return Err(ApiError::Unprocessable(
            "Memory and disk must be greater than 0MB".into(),
        ));
    }
    let s2 = s.clone();
    let task = blocking(move || {
        let app = load_app(&s2, &p, &guid)?;
        let droplet_guid = app.droplet_guid.clone().ok_or_else(|| {
            ApiError::Unprocessable(
                "Task must have a droplet. Assign current droplet to app.".into(),
            )
        })?;
        let droplet = s2
            .db
            .read_blocking(|c| builds::get_droplet(c, &droplet_guid))?
            .ok_or(ApiError::NotFound("Droplet"))?;
        let (mem, disk) = (
            body.memory_in_mb.unwrap_or(1024),
            body.disk_in_mb.unwrap_or(1024),
        );
        let deadline = s2.staging.task_deadline();
        let new = NewTask {
            app_guid: &app.guid,
            name: body.name.as_deref(),
            command: &command,
            memory_in_mb: mem,
            disk_in_mb: disk,
            droplet_guid: &droplet_guid,
            deadline,
        };
        let task = s2.db.write_blocking(|tx| tasks::create(tx, &new))?;
        let def = TaskDefinition {
            task_guid: task.guid.clone(),
            domain: TASKS_DOMAIN.into(),
            app_guid: app.guid.clone(),
            stack: droplet.stack.clone(),
            memory_mb: mem,
            disk_mb: disk,
            env: app.environment.clone(),
            log_source_id: app.guid.clone(),
            log_source_type: format!("APP/TASK/{}", task.name),
            result_file: None,
            action: TaskAction::Run {
                droplet: droplet
                    .blob
                    .as_ref()
                    .map(|b| s2.staging.location(BlobKind::Droplet, b)),
                docker_image: droplet.docker_image.clone(),
                command,
            },
            deadline,
            egress_rules: s2.staging.app_egress_rules().to_vec(),
        };
        s2.scheduler.submit_task(&def)?;
        Ok(task)
    })
    .await?;
    Ok((StatusCode::ACCEPTED, Json(task_json(&s.base_url, &task))))
}

fn load_task(s: &Shared, p: &Principal, guid: &str) -> ApiResult<Task> {
    let t =
        s.db.read_blocking(|c| tasks::get(c, guid))?
            .ok_or(ApiError::NotFound("Task"))?;
    load_app(s, p, &t.app_guid).map_err(|_| ApiError::NotFound("Task"))?;
    Ok(t)
}

async fn get_task(
    State(s): State<Shared>,
    p: Principal,
    Path(guid): Path<String>,
) -> ApiResult<Json<Value>> {
    let s2 = s.clone();
    let t = blocking(move || load_task(&s2, &p, &guid)).await?;
    Ok(Json(task_json(&s.base_url, &t)))
}

async fn cancel(
    State(s): State<Shared>,
    p: Principal,
    Path(guid): Path<String>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let s2 = s.clone();
    let t = blocking(move || {
        let t = load_task(&s2, &p, &guid)?;
        let moved = s2
            .db
            .write_blocking(|tx| tasks::transition(tx, &t.guid, TaskState::Canceling, None))?;
        if !moved {
            return Err(ApiError::Unprocessable(format!(
                "Task state is {} and therefore cannot be canceled",
                t.state
            )));
        }
        s2.scheduler.cancel_task(&t.guid)?;
        s2.db.write_blocking(|tx| {
            tasks::transition(tx, &t.guid, TaskState::Failed, Some("task was cancelled"))
        })?;
        load_task(&s2, &p, &t.guid)
    })
    .await?;
    Ok((StatusCode::ACCEPTED, Json(task_json(&s.base_url, &t))))
}

async fn list(
    s: Shared,
    p: Principal,
    q: Option<String>,
    app: Option<String>,
) -> ApiResult<Json<Value>> {
    let params = ListParams::parse(
        q.as_deref(),
        &["guids", "names", "states", "app_guids", "sequence_ids"],
    )?;
    let mut filters = params.filters(&[
        ("guids", "guid"),
        ("names", "name"),
        ("states", "state"),
        ("app_guids", "app_guid"),
        ("sequence_ids", "sequence_id"),
    ]);
    let path = app_scope(&mut filters, app.as_deref(), "tasks");
    let page = params.page(&["sequence_id", "name", "state"])?;
    let listing = list_visible(&s, p, app, None, move |c, extra| {
        tasks::list(c, &filters, extra, &page)
    })
    .await?;
    let items = listing
        .items
        .iter()
        .map(|t| task_json(&s.base_url, t))
        .collect();
    Ok(Json(params.respond(
        &s.base_url,
        &path,
        listing.total,
        items,
    )))
}

async fn list_tasks(
    State(s): State<Shared>,
    p: Principal,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<Value>> {
    list(s, p, q, None).await
}

async fn app_tasks(
    State(s): State<Shared>,
    p: Principal,
    Path(g): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<Value>> {
    list(s, p, q, Some(g)).await
}
