//! The Upload step: one file out of the container (garden StreamOut gives
//! a tar archive), POSTed as the `file` part of a multipart form, as
//! controller-lite's internal upload routes take it.

use std::io::{Seek, SeekFrom};
use std::path::PathBuf;

use diego::models::action::UploadAction;
use futures_util::StreamExt;
use garden_api::client::ClientError;
use garden_api::StreamOutSpec;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::io::ReaderStream;
use tokio_util::sync::CancellationToken;

use super::download::human_size;
use super::{StepContext, StepError, StepResult};

/// Why an upload failed.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// Garden could not archive the path.
    #[error("copying {from} out of the container: {source}")]
    StreamOut {
        /// The path in the container.
        from: String,
        /// The garden error.
        source: Box<ClientError>,
    },
    /// The archive was cut off or unreadable.
    #[error("reading {from} out of the container: {source}")]
    Read {
        /// The path in the container.
        from: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The path is a directory (or nothing).
    #[error("{from} is not a file")]
    NotAFile {
        /// The path in the container.
        from: String,
    },
    /// The request failed.
    #[error("uploading to {url}: {source}")]
    Http {
        /// The destination.
        url: String,
        /// The cause.
        source: reqwest::Error,
    },
    /// The server refused.
    #[error("uploading to {url}: server answered {status}")]
    Status {
        /// The destination.
        url: String,
        /// Its answer.
        status: u16,
    },
}

pub(super) async fn step(
    action: &UploadAction,
    ctx: &StepContext,
    cancel: &CancellationToken,
) -> StepResult {
    tokio::select! {
        result = upload(action, ctx) => result,
        () = cancel.cancelled() => Err(StepError::Cancelled),
    }
}

async fn upload(action: &UploadAction, ctx: &StepContext) -> StepResult {
    let source = ctx.log.source(&action.log_source).to_owned();
    if !action.artifact.is_empty() {
        ctx.progress(&source, &format!("Uploading {}...", action.artifact));
    }
    let (file, size) = file_out_of_container(action, ctx).await?;
    let name = PathBuf::from(&action.from)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let body = reqwest::Body::wrap_stream(ReaderStream::new(file.take(size)));
    let part = reqwest::multipart::Part::stream_with_length(body, size).file_name(name);
    let form = reqwest::multipart::Form::new().part("file", part);
    let http = |source| UploadError::Http {
        url: action.to.clone(),
        source,
    };
    let response = ctx
        .downloads
        .authorize(ctx.downloads.http.post(&action.to), &action.to)
        .multipart(form)
        .send()
        .await
        .map_err(http)?;
    if !response.status().is_success() {
        return Err(UploadError::Status {
            url: action.to.clone(),
            status: response.status().as_u16(),
        }
        .into());
    }
    if !action.artifact.is_empty() {
        ctx.progress(
            &source,
            &format!("Uploaded {} ({})", action.artifact, human_size(size)),
        );
    }
    Ok(())
}

/// The file `action.from` as an open file positioned at its bytes, and its
/// size: StreamOut's tar lands in a scratch file, then the first entry's
/// data is read in place.
async fn file_out_of_container(
    action: &UploadAction,
    ctx: &StepContext,
) -> Result<(tokio::fs::File, u64), UploadError> {
    let from = action.from.clone();
    let read = |source| UploadError::Read {
        from: from.clone(),
        source,
    };
    let spec = StreamOutSpec {
        path: action.from.clone(),
        user: action.user.clone(),
    };
    let mut tar = ctx
        .garden
        .stream_out(&ctx.handle, &spec)
        .await
        .map_err(|source| UploadError::StreamOut {
            from: from.clone(),
            source: Box::new(source),
        })?;
    let scratch = tempfile::tempfile_in(ctx.downloads.temp_dir()).map_err(read)?;
    let mut scratch = tokio::fs::File::from_std(scratch);
    while let Some(chunk) = tar.next().await {
        scratch
            .write_all(&chunk.map_err(read)?)
            .await
            .map_err(read)?;
    }
    scratch.flush().await.map_err(read)?;
    let std_file = scratch.into_std().await;
    let located = tokio::task::spawn_blocking(move || first_file(std_file))
        .await
        .map_err(|e| read(std::io::Error::other(e)))?
        .map_err(read)?;
    let Some((mut file, offset, size)) = located else {
        return Err(UploadError::NotAFile { from });
    };
    file.seek(SeekFrom::Start(offset)).map_err(read)?;
    Ok((tokio::fs::File::from_std(file), size))
}

/// The offset and size of the first regular file in a tar archive.
fn first_file(mut file: std::fs::File) -> std::io::Result<Option<(std::fs::File, u64, u64)>> {
    file.seek(SeekFrom::Start(0))?;
    let found = {
        let mut archive = tar::Archive::new(&file);
        let mut found = None;
        for entry in archive.entries()? {
            let entry = entry?;
            if entry.header().entry_type().is_file() {
                found = Some((entry.raw_file_position(), entry.size()));
                break;
            }
        }
        found
    };
    Ok(found.map(|(offset, size)| (file, offset, size)))
}
