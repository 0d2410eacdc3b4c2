//! The daemon's errors, and the one place they become Garden's error kinds.

use std::path::PathBuf;

use garden_api::{Error as ApiError, ErrorKind};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("unknown handle: {0}")]
    NotFound(String),
    #[error("unknown process: {0}")]
    ProcessNotFound(String),
    #[error("handle already in use: {0}")]
    HandleInUse(String),
    #[error("process id already in use: {0}")]
    ProcessIdInUse(String),
    #[error("invalid {what}: {message}")]
    BadRequest { what: &'static str, message: String },
    #[error("the maximum of {0} containers is reached")]
    Full(u64),
    #[error("container {0} is stopped")]
    Stopped(String),
    #[error("executable not found: {0}")]
    ExecutableNotFound(String),
    #[error(transparent)]
    Image(#[from] garden_image::ImageError),
    #[error(transparent)]
    Disk(#[from] garden_disk::DiskError),
    #[error(transparent)]
    Depot(#[from] super::depot::DepotError),
    #[error(transparent)]
    Runc(#[from] super::runc::RuncError),
    #[error(transparent)]
    Rootfs(#[from] super::rootfs::RootfsError),
    #[error(transparent)]
    Spec(#[from] super::spec::SpecError),
    #[error(transparent)]
    Files(#[from] super::files::FilesError),
    #[error(transparent)]
    Net(#[from] garden_net::NetError),
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("process keeper: {0}")]
    Keeper(String),
    #[error("a background task failed: {0}")]
    Task(#[source] tokio::task::JoinError),
}

impl From<DaemonError> for ApiError {
    fn from(e: DaemonError) -> ApiError {
        let message = e.to_string();
        match &e {
            DaemonError::NotFound(h) => ApiError::container_not_found(h),
            DaemonError::ProcessNotFound(p) => ApiError::process_not_found(p),
            DaemonError::ExecutableNotFound(_) => {
                ApiError::new(ErrorKind::ExecutableNotFound, message)
            }
            DaemonError::HandleInUse(_)
            | DaemonError::ProcessIdInUse(_)
            | DaemonError::BadRequest { .. }
            | DaemonError::Spec(_) => ApiError::bad_request(message),
            DaemonError::Full(_) => ApiError::service_unavailable(message),
            DaemonError::Image(ie) if image_bad_input(ie) => ApiError::bad_request(message),
            DaemonError::Disk(de) if de.is_bad_request() => ApiError::bad_request(message),
            DaemonError::Files(fe) if fe.is_bad_input() => ApiError::bad_request(message),
            DaemonError::Net(ne) if net_bad_input(ne) => ApiError::bad_request(message),
            _ => ApiError::internal(message),
        }
    }
}

/// Image errors the client caused: a malformed reference, a missing local
/// path, refused credentials, an unknown tag.
fn image_bad_input(e: &garden_image::ImageError) -> bool {
    matches!(
        e,
        garden_image::ImageError::Reference(_) | garden_image::ImageError::Registry(_)
    )
}

/// Network errors the client caused: a bad port, rule, bandwidth or spec
/// network, or an address or port that is taken.
fn net_bad_input(e: &garden_net::NetError) -> bool {
    use garden_net::NetError as N;
    matches!(
        e,
        N::BadPort { .. } | N::Rule { .. } | N::Bandwidth { .. } | N::Alloc { .. }
    )
}
