//! The one place where errors become HTTP responses, as Cloud Controller
//! does: `{"errors":[{"code","title","detail"}]}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::auth::AuthError;
use crate::blobstore::BlobError;
use crate::db::DbError;
use crate::lrps::LrpError;
use crate::packaging::PackageError;
use crate::scheduler::SchedulerError;
use crate::staging::StagingError;

/// An API error.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No token.
    #[error("Authentication error")]
    NotAuthenticated,
    /// Bad or expired token.
    #[error("Invalid Auth Token")]
    InvalidAuthToken,
    /// Authenticated but not allowed.
    #[error("You are not authorized to perform the requested action")]
    NotAuthorized,
    /// A resource that does not exist (or is not visible).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// No such endpoint.
    #[error("Unknown request")]
    UnknownRequest,
    /// Bad query parameters.
    #[error("{0}")]
    BadQuery(String),
    /// Unparseable body.
    #[error("Request invalid due to parse error: {0}")]
    MessageParse(String),
    /// A semantically invalid request.
    #[error("{0}")]
    Unprocessable(String),
    /// The body is too large.
    #[error("{0}")]
    TooLarge(String),
    /// Something failed inside; the detail is logged, not returned.
    #[error("An unknown error occurred.")]
    Internal(String),
}

impl ApiError {
    fn parts(&self) -> (StatusCode, u32, &'static str) {
        match self {
            Self::NotAuthenticated => (StatusCode::UNAUTHORIZED, 10002, "CF-NotAuthenticated"),
            Self::InvalidAuthToken => (StatusCode::UNAUTHORIZED, 1000, "CF-InvalidAuthToken"),
            Self::NotAuthorized => (StatusCode::FORBIDDEN, 10003, "CF-NotAuthorized"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, 10010, "CF-ResourceNotFound"),
            Self::UnknownRequest => (StatusCode::NOT_FOUND, 10000, "CF-NotFound"),
            Self::BadQuery(_) => (StatusCode::BAD_REQUEST, 10005, "CF-BadQueryParameter"),
            Self::MessageParse(_) => (StatusCode::BAD_REQUEST, 1001, "CF-MessageParseError"),
            Self::Unprocessable(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                10008,
                "CF-UnprocessableEntity",
            ),
            Self::TooLarge(_) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                10008,
                "CF-UnprocessableEntity",
            ),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, 10001, "UnknownError"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, title) = self.parts();
        if let Self::Internal(detail) = &self {
            tracing::error!(detail, "internal error");
        }
        let body = serde_json::json!({"errors": [{"code": code, "title": title, "detail": self.to_string()}]});
        (status, Json(body)).into_response()
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Conflict(what) => Self::Unprocessable(format!("{what} already exists")),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<BlobError> for ApiError {
    fn from(e: BlobError) -> Self {
        Self::Internal(e.to_string())
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::InvalidToken(_) => Self::InvalidAuthToken,
            AuthError::BadCredentials => Self::NotAuthenticated,
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<SchedulerError> for ApiError {
    fn from(e: SchedulerError) -> Self {
        match e {
            SchedulerError::Unknown(what) => Self::Unprocessable(format!("unknown {what}")),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<LrpError> for ApiError {
    fn from(e: LrpError) -> Self {
        match e {
            LrpError::Db(e) => e.into(),
            LrpError::Scheduler(e) => e.into(),
        }
    }
}

impl From<StagingError> for ApiError {
    fn from(e: StagingError) -> Self {
        match e {
            StagingError::Db(e) => e.into(),
            StagingError::Blob(e) => e.into(),
            StagingError::Scheduler(e) => e.into(),
            StagingError::UnknownTask(_) => Self::NotFound("Task"),
            e @ (StagingError::NotStaging { .. } | StagingError::Invalid(_)) => {
                Self::Unprocessable(e.to_string())
            }
        }
    }
}

impl From<PackageError> for ApiError {
    fn from(e: PackageError) -> Self {
        match e {
            PackageError::Blob(e) => e.into(),
            PackageError::Io(e) => Self::Internal(e.to_string()),
            PackageError::TooLarge(_) | PackageError::TooManyEntries(_) => {
                Self::TooLarge(e.to_string())
            }
            other => Self::Unprocessable(other.to_string()),
        }
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(e: axum::extract::rejection::JsonRejection) -> Self {
        Self::MessageParse(e.body_text())
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> Self {
        Self::Internal(e.to_string())
    }
}

/// Handler result.
pub type ApiResult<T> = Result<T, ApiError>;
