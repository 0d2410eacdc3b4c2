//! The HTTP API: Cloud Foundry v3 resources, UAA's token endpoint,
//! log-cache's read API and the internal (cell-facing) API, on one port.

mod apps;
mod buildpacks;
mod builds;
pub mod error;
mod features;
pub(crate) mod internal;
mod list;
mod logs;
mod manifest;
pub mod metrics;
mod orgs;
mod packages;
mod processes;
mod root;
mod routes;
mod tasks;
mod uaa;

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::Router;
use rusqlite::types::Value;
use serde_json::{json, Value as Json};

use crate::auth::TokenIssuer;
use crate::blobstore::Blobstore;
use crate::config::Config;
use crate::db::{orgs as orgs_db, users, Db};
use crate::logcache::LogCache;
use crate::scheduler::Scheduler;
use crate::staging::Staging;
pub use error::{ApiError, ApiResult};

/// Everything handlers need.
pub struct AppState {
    /// Configuration.
    pub config: Config,
    /// Base URL without trailing slash.
    pub base_url: String,
    /// Database.
    pub db: Db,
    /// Blobstore.
    pub blobs: Arc<dyn Blobstore>,
    /// Log cache.
    pub logs: Arc<LogCache>,
    /// Scheduler hand-off.
    pub scheduler: Arc<dyn Scheduler>,
    /// Staging orchestration.
    pub staging: Arc<Staging>,
    /// Token signing.
    pub tokens: TokenIssuer,
    /// Bearer key of the internal API.
    pub internal_key: String,
    /// Argon2 cost for new hashes.
    pub hash_cost: crate::auth::HashCost,
    /// Request counters for `/metrics`.
    pub metrics: metrics::Metrics,
    /// The BBS when the scheduler is diego's.
    pub bbs: Option<Arc<crate::bbs::Bbs>>,
}

/// Shared handler state.
#[derive(Clone)]
pub struct Shared(pub Arc<AppState>);

impl std::ops::Deref for Shared {
    type Target = AppState;
    fn deref(&self) -> &AppState {
        &self.0
    }
}

/// The whole router.
pub fn router(state: Arc<AppState>) -> Router {
    let upload_limit = usize::try_from(state.config.limits.max_upload_bytes)
        .unwrap_or(usize::MAX)
        .saturating_add(1 << 20);
    Router::new()
        .merge(root::routes())
        .merge(uaa::routes())
        .merge(logs::routes())
        .merge(orgs::routes())
        .merge(apps::routes())
        .merge(manifest::routes())
        .merge(features::routes())
        .merge(packages::routes(upload_limit))
        .merge(builds::routes())
        .merge(processes::routes())
        .merge(tasks::routes())
        .merge(routes::routes())
        .merge(buildpacks::routes(upload_limit))
        .merge(internal::routes(upload_limit))
        .route("/metrics", axum::routing::get(metrics::serve))
        .fallback(|| async { ApiError::UnknownRequest })
        .route_layer(axum::middleware::from_fn_with_state(
            Shared(state.clone()),
            metrics::track,
        ))
        .with_state(Shared(state))
}

/// Runs blocking work (database, blobstore, scheduler) off the async threads.
pub async fn blocking<T, F>(f: F) -> ApiResult<T>
where
    T: Send + 'static,
    F: FnOnce() -> ApiResult<T> + Send + 'static,
{
    tokio::task::spawn_blocking(f).await?
}

/// RFC 3339 timestamp of Unix seconds.
pub fn ts(secs: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap_or(0));
    humantime::format_rfc3339_seconds(t).to_string()
}

/// `{"href": base + path}`.
pub fn href(base: &str, path: &str) -> Json {
    json!({"href": format!("{base}{path}")})
}

/// Empty labels and annotations.
pub fn metadata() -> Json {
    json!({"labels": {}, "annotations": {}})
}

/// The authenticated user of a request.
#[derive(Debug, Clone)]
pub struct Principal {
    /// User guid.
    pub user_guid: String,
    /// Login name.
    pub user_name: String,
    /// Platform admin.
    pub admin: bool,
}

impl Principal {
    /// Refuses non-admins.
    pub fn require_admin(&self) -> ApiResult<()> {
        if self.admin {
            Ok(())
        } else {
            Err(ApiError::NotAuthorized)
        }
    }

    /// A visibility condition on a space column for non-admins.
    pub fn space_filter(&self, column: &str) -> Option<(String, Vec<Value>)> {
        (!self.admin).then(|| orgs_db::visible_spaces_sql(column, &self.user_guid))
    }

    /// Visibility via an app column.
    pub fn app_filter(&self, column: &str) -> Option<(String, Vec<Value>)> {
        (!self.admin).then(|| {
            (
                format!(
                    "{column} IN (SELECT guid FROM apps WHERE space_guid IN (SELECT space_guid FROM space_roles WHERE user_guid = ?))"
                ),
                vec![Value::Text(self.user_guid.clone())],
            )
        })
    }

    /// Whether the user may see and change things in a space (admins and
    /// anyone with a role there). Blocking.
    pub fn can_use_space(&self, db: &Db, space_guid: &str) -> ApiResult<bool> {
        if self.admin {
            return Ok(true);
        }
        Ok(db.read_blocking(|c| users::has_space_role(c, space_guid, &self.user_guid))?)
    }
}

impl<S> FromRequestParts<S> for Principal
where
    S: Send + Sync,
    Shared: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = Shared::from_ref(state);
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or(ApiError::NotAuthenticated)?;
        let token = header
            .strip_prefix("bearer ")
            .or_else(|| header.strip_prefix("Bearer "))
            .ok_or(ApiError::InvalidAuthToken)?;
        let claims = state.tokens.verify_access(token.trim())?;
        Ok(Self {
            admin: claims.is_admin(),
            user_guid: claims.user_id,
            user_name: claims.user_name,
        })
    }
}

/// Combines optional SQL conditions with AND.
pub fn and_extra(parts: Vec<Option<(String, Vec<Value>)>>) -> Option<(String, Vec<Value>)> {
    let mut extra = list::Extra::default();
    for (sql, params) in parts.into_iter().flatten() {
        extra.push(sql, params);
    }
    extra.build()
}

/// Borrows an owned extra condition for the db layer.
pub fn extra_ref(e: &Option<(String, Vec<Value>)>) -> Option<(&str, Vec<Value>)> {
    e.as_ref().map(|(s, p)| (s.as_str(), p.clone()))
}

/// Parses a JSON body, mapping errors to CF's MessageParseError.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    serde_json::from_slice(body).map_err(|e| ApiError::MessageParse(e.to_string()))
}
