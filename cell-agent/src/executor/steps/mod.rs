//! The recipe interpreter: one step per [`Action`], run against a garden
//! container, stopped through a [`CancellationToken`].
//!
//! Composite steps follow Diego: `Serial` stops at the first error,
//! `Parallel` waits for all and returns the first error, `Codependent`
//! cancels the rest as soon as one ends (its result is the result),
//! `Timeout` cancels its step and fails "timed out after Xs", `Try` turns an
//! error into success (a stop still stops), `EmitProgress` writes its
//! messages to the container's log.

pub(crate) mod archive;
pub(crate) mod cache;
pub(crate) mod download;
pub(crate) mod run;
mod upload;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use diego::models::action::{Action, EmitProgressAction, TimeoutAction, TryAction};
use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::FutureExt;
use garden_api::client::{Client, ClientError};
use tokio_util::sync::CancellationToken;

use super::log::{ContainerLog, LogStream};
use super::process::Processes;
pub use download::DownloadError;
pub(crate) use download::Downloader;
pub use upload::UploadError;

/// Why a step failed. The message is what the container's failure reason
/// says.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// A process ended with a non-zero status.
    #[error("Exited with status {status}")]
    Exited {
        /// Its exit status.
        status: i32,
    },
    /// The step was stopped.
    #[error("cancelled")]
    Cancelled,
    /// A `Timeout` step ran out of time.
    #[error("timed out after {after:?}")]
    TimedOut {
        /// Its limit.
        after: Duration,
    },
    /// Garden could not start or follow a process.
    #[error("running {path}: {source}")]
    Process {
        /// The program.
        path: String,
        /// The garden error.
        source: Box<ClientError>,
    },
    /// A `Download` failed.
    #[error(transparent)]
    Download(#[from] DownloadError),
    /// An `Upload` failed.
    #[error(transparent)]
    Upload(#[from] UploadError),
    /// The health checks failed (startup or liveness).
    #[error("{0}")]
    Unhealthy(String),
    /// An adopted container cannot be followed.
    #[error("adopted container: {0}")]
    Adopted(String),
}

impl StepError {
    /// The exit status this error carries, if a process ended it.
    pub fn exit_status(&self) -> Option<i32> {
        match self {
            Self::Exited { status } => Some(*status),
            _ => None,
        }
    }
}

/// What a step's result is.
pub type StepResult = Result<(), StepError>;

/// What every step of one container shares.
#[derive(Clone)]
pub(crate) struct StepContext {
    pub(crate) garden: Client,
    pub(crate) handle: String,
    pub(crate) log: ContainerLog,
    pub(crate) downloads: Arc<Downloader>,
    pub(crate) processes: Processes,
    /// Time between SIGTERM and SIGKILL of a stopped process.
    pub(crate) stop_grace: Duration,
    /// The exit status of the last process a Run step saw end.
    pub(crate) last_exit: Arc<Mutex<Option<i32>>>,
    /// Set when a Run step's process started (the `process` health check
    /// waits for it).
    pub(crate) process_started: Arc<tokio::sync::watch::Sender<bool>>,
}

impl StepContext {
    /// Waits until a Run step started its process.
    pub(crate) async fn process_started(&self) {
        let mut started = self.process_started.subscribe();
        let _ = started.wait_for(|s| *s).await;
    }

    pub(crate) fn last_exit(&self) -> Option<i32> {
        self.last_exit.lock().ok().and_then(|s| *s)
    }

    fn progress(&self, source: &str, message: &str) {
        if !message.is_empty() {
            self.log.line(source, LogStream::Stdout, message.to_owned());
        }
    }
}

/// Runs one action (and what it contains) until it ends or `cancel` fires.
pub(crate) fn perform<'a>(
    action: &'a Action,
    ctx: &'a StepContext,
    cancel: &'a CancellationToken,
) -> BoxFuture<'a, StepResult> {
    async move {
        if cancel.is_cancelled() {
            return Err(StepError::Cancelled);
        }
        match action {
            Action::Run(run) => run::run(run, ctx, cancel).await,
            Action::Download(download) => download::step(download, ctx, cancel).await,
            Action::Upload(upload) => upload::step(upload, ctx, cancel).await,
            Action::Timeout(timeout) => timed(timeout, ctx, cancel).await,
            Action::EmitProgress(emit) => emit_progress(emit, ctx, cancel).await,
            Action::Try(attempt) => try_step(attempt, ctx, cancel).await,
            Action::Serial(steps) => {
                for step in &steps.actions {
                    perform(step, ctx, cancel).await?;
                }
                Ok(())
            }
            Action::Parallel(steps) => {
                let results = futures_util::future::join_all(
                    steps.actions.iter().map(|s| perform(s, ctx, cancel)),
                )
                .await;
                results.into_iter().collect()
            }
            Action::Codependent(steps) => {
                let group = cancel.child_token();
                let branches = steps
                    .actions
                    .iter()
                    .map(|s| {
                        let group = group.clone();
                        async move { perform(s, ctx, &group).await }.boxed()
                    })
                    .collect();
                codependent(branches, &group).await
            }
        }
    }
    .boxed()
}

/// Runs `branches` together; the first to end cancels `group` (which the
/// others watch) and its result is the result.
pub(crate) async fn codependent(
    branches: Vec<BoxFuture<'_, StepResult>>,
    group: &CancellationToken,
) -> StepResult {
    let mut running: FuturesUnordered<_> = branches.into_iter().collect();
    let Some(first) = running.next().await else {
        return Ok(());
    };
    group.cancel();
    while running.next().await.is_some() {}
    first
}

async fn timed(step: &TimeoutAction, ctx: &StepContext, cancel: &CancellationToken) -> StepResult {
    let after = Duration::from_millis(step.timeout_ms);
    let inner = cancel.child_token();
    let work = perform(&step.action, ctx, &inner);
    tokio::pin!(work);
    tokio::select! {
        result = &mut work => result,
        () = tokio::time::sleep(after) => {
            inner.cancel();
            let _ = work.await;
            Err(StepError::TimedOut { after })
        }
    }
}

async fn try_step(step: &TryAction, ctx: &StepContext, cancel: &CancellationToken) -> StepResult {
    match perform(&step.action, ctx, cancel).await {
        Err(StepError::Cancelled) => Err(StepError::Cancelled),
        Err(error) => {
            tracing::info!(handle = %ctx.handle, %error, "try step failed; carrying on");
            Ok(())
        }
        Ok(()) => Ok(()),
    }
}

async fn emit_progress(
    step: &EmitProgressAction,
    ctx: &StepContext,
    cancel: &CancellationToken,
) -> StepResult {
    ctx.progress(&step.log_source, &step.start_message);
    let result = perform(&step.action, ctx, cancel).await;
    match &result {
        Ok(()) => ctx.progress(&step.log_source, &step.success_message),
        Err(StepError::Cancelled) => {}
        Err(error) if !step.failure_message_prefix.is_empty() => ctx.progress(
            &step.log_source,
            &format!("{}: {error}", step.failure_message_prefix),
        ),
        Err(_) => {}
    }
    result
}
