//! The error a backend returns and the server sends: Garden's error JSON
//! `{"Type","Message","Handle","ProcessID","Binary"}`.
//!
//! [`Error::status`] is the one place where a kind becomes an HTTP status.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What went wrong, as far as a client can act on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// No container with that handle (`ContainerNotFoundError`, 404).
    ContainerNotFound,
    /// No process with that id (`ProcessNotFoundError`, 404).
    ProcessNotFound,
    /// The program to run does not exist (`ExecutableNotFoundError`, 500).
    ExecutableNotFound,
    /// The server cannot serve now (`ServiceUnavailableError`, 503).
    ServiceUnavailable,
    /// The server is broken for good (`UnrecoverableError`, 500).
    Unrecoverable,
    /// The request is malformed: invalid JSON, a bad parameter (400).
    BadRequest,
    /// Anything else (500).
    Internal,
}

impl ErrorKind {
    /// Garden's `Type` string (empty for kinds Garden has no type for).
    pub fn garden_type(self) -> &'static str {
        match self {
            Self::ContainerNotFound => "ContainerNotFoundError",
            Self::ProcessNotFound => "ProcessNotFoundError",
            Self::ExecutableNotFound => "ExecutableNotFoundError",
            Self::ServiceUnavailable => "ServiceUnavailableError",
            Self::Unrecoverable => "UnrecoverableError",
            Self::BadRequest | Self::Internal => "",
        }
    }

    fn from_garden_type(name: &str) -> Self {
        match name {
            "ContainerNotFoundError" => Self::ContainerNotFound,
            "ProcessNotFoundError" => Self::ProcessNotFound,
            "ExecutableNotFoundError" => Self::ExecutableNotFound,
            "ServiceUnavailableError" => Self::ServiceUnavailable,
            "UnrecoverableError" => Self::Unrecoverable,
            _ => Self::Internal,
        }
    }
}

/// An error with its kind, message and the handle or process it concerns.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    /// What went wrong.
    pub kind: ErrorKind,
    /// A message for people.
    pub message: String,
    /// The container concerned, if any.
    pub handle: String,
    /// The process concerned, if any.
    pub process_id: String,
}

impl Error {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            handle: String::new(),
            process_id: String::new(),
        }
    }

    /// Garden's "unknown handle: X".
    pub fn container_not_found(handle: &str) -> Self {
        Self::new(
            ErrorKind::ContainerNotFound,
            format!("unknown handle: {handle}"),
        )
        .with_handle(handle)
    }

    /// Garden's "unknown process: X".
    pub fn process_not_found(process_id: &str) -> Self {
        Self::new(
            ErrorKind::ProcessNotFound,
            format!("unknown process: {process_id}"),
        )
        .with_process_id(process_id)
    }

    /// A malformed request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, message)
    }

    /// Anything else.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// The server cannot serve now.
    pub fn service_unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::ServiceUnavailable, message)
    }

    /// Names the container concerned.
    pub fn with_handle(mut self, handle: &str) -> Self {
        handle.clone_into(&mut self.handle);
        self
    }

    /// Names the process concerned.
    pub fn with_process_id(mut self, process_id: &str) -> Self {
        process_id.clone_into(&mut self.process_id);
        self
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> u16 {
        match self.kind {
            ErrorKind::ContainerNotFound | ErrorKind::ProcessNotFound => 404,
            ErrorKind::BadRequest => 400,
            ErrorKind::ServiceUnavailable => 503,
            ErrorKind::ExecutableNotFound | ErrorKind::Unrecoverable | ErrorKind::Internal => 500,
        }
    }

    /// Reads Garden's error JSON answered with HTTP `status`: a typeless
    /// error answered with 400 is a bad request.
    pub fn from_response(status: u16, body: &[u8]) -> Option<Self> {
        let mut error: Self = serde_json::from_slice(body).ok()?;
        if status == 400 && error.kind == ErrorKind::Internal {
            error.kind = ErrorKind::BadRequest;
        }
        Some(error)
    }
}

#[derive(Serialize, Deserialize, Default)]
#[serde(default, rename_all = "PascalCase")]
struct WireError {
    #[serde(rename = "Type")]
    error_type: String,
    message: String,
    handle: String,
    #[serde(rename = "ProcessID")]
    process_id: String,
    binary: String,
}

impl Serialize for Error {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        WireError {
            error_type: self.kind.garden_type().to_owned(),
            message: self.message.clone(),
            handle: self.handle.clone(),
            process_id: self.process_id.clone(),
            binary: String::new(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Error {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = WireError::deserialize(deserializer)?;
        Ok(Self {
            kind: ErrorKind::from_garden_type(&wire.error_type),
            message: wire.message,
            handle: wire.handle,
            process_id: wire.process_id,
        })
    }
}
