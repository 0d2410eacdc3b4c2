//! The rep's HTTP API (axum). The controller's routes (`/state`, `/work`,
//! stop, cancel) need `Authorization: Bearer <rep_key>` (401 otherwise);
//! `/ping`, `/evacuate` and the `diag` routes (`/diag/...`) answer only
//! peers on a loopback address (403 otherwise), without a key.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use diego::rep::WorkRequest;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{CrashRecord, Rep};
use crate::executor::ExecutorError;
use crate::rep::admin::ContainerSummary;

/// Why a rep call was refused; the one place errors become statuses.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No or a wrong bearer key.
    #[error("a valid rep key is required")]
    Unauthenticated,
    /// An admin route from a non-loopback peer.
    #[error("this route answers only loopback peers")]
    NotLoopback,
    /// No such container (or it belongs to another instance or task).
    #[error("{0} not found")]
    NotFound(String),
    /// The executor failed.
    #[error("executor: {0}")]
    Executor(#[from] ExecutorError),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::NotLoopback => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Executor(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let mut response =
            (status, Json(serde_json::json!({"error": self.to_string()}))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// The largest `/work` body: full definitions of a big auction batch.
const WORK_BODY_LIMIT: usize = 32 * 1024 * 1024;

/// `GET /diag/containers`: the containers and the recent crashes (crashed
/// containers are deleted once reported, so only this list remembers them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerList {
    /// Every container.
    pub containers: Vec<ContainerSummary>,
    /// The last crashes, oldest first.
    pub recent_crashes: Vec<CrashRecord>,
}

/// Constant-time comparison of the presented key.
fn same_key(given: &str, expected: &str) -> bool {
    given.len() == expected.len()
        && given
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

async fn require_key(State(rep): State<Arc<Rep>>, request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(key) if same_key(key, &rep.rep_key) => next.run(request).await,
        _ => ApiError::Unauthenticated.into_response(),
    }
}

async fn require_loopback(
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    let ip = match peer.ip() {
        std::net::IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(std::net::IpAddr::V6(v6), Into::into),
        v4 => v4,
    };
    if ip.is_loopback() {
        next.run(request).await
    } else {
        tracing::warn!(%peer, path = %request.uri().path(), "admin route refused to a non-loopback peer");
        ApiError::NotLoopback.into_response()
    }
}

/// The rep's routes.
pub fn router(rep: Arc<Rep>) -> Router {
    let controller = Router::new()
        .route("/state", get(state))
        .route(
            "/work",
            post(work).layer(axum::extract::DefaultBodyLimit::max(WORK_BODY_LIMIT)),
        )
        .route(
            "/lrps/{process_guid}/{index}/{instance_guid}/stop",
            post(stop_lrp),
        )
        .route("/tasks/{guid}/cancel", post(cancel_task))
        .layer(middleware::from_fn_with_state(rep.clone(), require_key));
    let admin = Router::new()
        .route("/ping", get(ping))
        .route("/evacuate", post(evacuate))
        .route("/diag/summary", get(summary))
        .route("/diag/containers", get(containers))
        .route("/diag/containers/{guid}", get(container))
        .layer(middleware::from_fn(require_loopback));
    controller.merge(admin).with_state(rep)
}

async fn state(State(rep): State<Arc<Rep>>) -> Json<diego::auction::CellState> {
    Json(rep.cell_state())
}

async fn work(
    State(rep): State<Arc<Rep>>,
    Json(request): Json<WorkRequest>,
) -> Json<diego::rep::WorkResponse> {
    Json(rep.accept_work(request))
}

async fn stop_lrp(
    State(rep): State<Arc<Rep>>,
    Path((process_guid, index, instance_guid)): Path<(String, u32, String)>,
) -> Result<StatusCode, ApiError> {
    let not_found =
        || ApiError::NotFound(format!("instance {process_guid}/{index}/{instance_guid}"));
    let container = rep.executor.get(&instance_guid).map_err(|_| not_found())?;
    match super::events::lrp_keys(&container, "") {
        Some((key, _)) if key.process_guid == process_guid && key.index == index => {}
        _ => return Err(not_found()),
    }
    tracing::info!(%process_guid, index, %instance_guid, "stop requested");
    rep.executor.stop(&instance_guid).await?;
    Ok(StatusCode::ACCEPTED)
}

async fn cancel_task(
    State(rep): State<Arc<Rep>>,
    Path(guid): Path<String>,
) -> Result<StatusCode, ApiError> {
    let not_found = || ApiError::NotFound(format!("task {guid}"));
    let container = rep.executor.get(&guid).map_err(|_| not_found())?;
    if super::events::task_guid(&container) != Some(guid.as_str()) {
        return Err(not_found());
    }
    tracing::info!(task_guid = %guid, "cancel requested");
    rep.executor.stop(&guid).await?;
    Ok(StatusCode::ACCEPTED)
}

async fn ping() -> StatusCode {
    StatusCode::OK
}

async fn evacuate(State(rep): State<Arc<Rep>>) -> StatusCode {
    rep.request_evacuation();
    StatusCode::ACCEPTED
}

async fn summary(State(rep): State<Arc<Rep>>) -> Json<super::Summary> {
    Json(rep.summary())
}

async fn containers(State(rep): State<Arc<Rep>>) -> Json<ContainerList> {
    Json(ContainerList {
        containers: rep.containers(),
        recent_crashes: rep.crashes(),
    })
}

async fn container(
    State(rep): State<Arc<Rep>>,
    Path(guid): Path<String>,
) -> Result<Json<super::ContainerDetail>, ApiError> {
    rep.container_detail(&guid)
        .map(Json)
        .ok_or(ApiError::NotFound(format!("container {guid}")))
}

/// Serves `listener` until `stop`.
pub(crate) async fn serve(
    rep: Arc<Rep>,
    listener: tokio::net::TcpListener,
    stop: CancellationToken,
) {
    let app = router(rep).into_make_service_with_connect_info::<SocketAddr>();
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await;
    if let Err(error) = served {
        tracing::error!(%error, "the rep server failed");
    }
}
