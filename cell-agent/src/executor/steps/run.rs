//! The Run step: a garden process with its output in the container's log;
//! stopped with SIGTERM, then SIGKILL after the grace time.

use std::time::Duration;

use diego::models::action::RunAction;
use garden_api::client::ClientError;
use garden_api::types::{ProcessSpec, ResourceLimits, Signal};
use tokio_util::sync::CancellationToken;

use super::{StepContext, StepError, StepResult};
use crate::executor::process::{Output, Running};

/// How long a process may take to die after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(10);

pub(super) async fn run(
    action: &RunAction,
    ctx: &StepContext,
    cancel: &CancellationToken,
) -> StepResult {
    let spec = ProcessSpec {
        path: action.path.clone(),
        args: action.args.clone(),
        env: action
            .env
            .iter()
            .map(|v| format!("{}={}", v.name, v.value))
            .collect(),
        dir: action.dir.clone(),
        user: action.user.clone(),
        rlimits: ResourceLimits {
            nofile: action.resource_limits.nofile,
            nproc: action.resource_limits.nproc,
            ..ResourceLimits::default()
        },
        ..ProcessSpec::default()
    };
    let output = if action.suppress_log_output {
        Output::Discard
    } else {
        Output::Log {
            log: ctx.log.clone(),
            source: ctx.log.source(&action.log_source).to_owned(),
        }
    };
    let process_error = |source| StepError::Process {
        path: action.path.clone(),
        source: Box::new(source),
    };
    let started = ctx.processes.run(&ctx.garden, &ctx.handle, spec, output);
    let mut process = tokio::select! {
        started = started => started.map_err(process_error)?,
        () = cancel.cancelled() => return Err(StepError::Cancelled),
    };
    tracing::debug!(handle = %ctx.handle, process = process.id(), path = %action.path, "process started");
    ctx.process_started.send_replace(true);
    follow(&mut process, &action.path, ctx, cancel).await
}

/// Waits for a started process (stopping it when `cancel` fires): its exit
/// status as a step result. `what` names it in errors.
pub(crate) async fn follow(
    process: &mut Running,
    what: &str,
    ctx: &StepContext,
    cancel: &CancellationToken,
) -> StepResult {
    match wait_or_stop(process, ctx, cancel).await {
        Ended::Exited(status) => {
            if let Ok(mut last) = ctx.last_exit.lock() {
                *last = Some(status);
            }
            if status == 0 {
                Ok(())
            } else {
                Err(StepError::Exited { status })
            }
        }
        Ended::Stopped => Err(StepError::Cancelled),
        Ended::Lost(error) => Err(StepError::Process {
            path: what.to_owned(),
            source: Box::new(error),
        }),
    }
}

enum Ended {
    Exited(i32),
    /// Ended because we stopped it.
    Stopped,
    Lost(ClientError),
}

async fn wait_or_stop(
    process: &mut Running,
    ctx: &StepContext,
    cancel: &CancellationToken,
) -> Ended {
    tokio::select! {
        finished = process.wait() => return match finished.status {
            Ok(status) => Ended::Exited(status),
            Err(error) => Ended::Lost(error),
        },
        () = cancel.cancelled() => {}
    }
    tracing::debug!(handle = %ctx.handle, process = process.id(), "stopping process (TERM)");
    if let Err(error) = process.signal(Signal::Terminate).await {
        tracing::debug!(handle = %ctx.handle, %error, "SIGTERM not delivered");
    }
    if tokio::time::timeout(ctx.stop_grace, process.wait())
        .await
        .is_ok()
    {
        return Ended::Stopped;
    }
    tracing::info!(handle = %ctx.handle, process = process.id(), grace = ?ctx.stop_grace, "process outlived its grace time; KILL");
    if let Err(error) = process.signal(Signal::Kill).await {
        tracing::warn!(handle = %ctx.handle, %error, "SIGKILL not delivered");
    }
    let _ = tokio::time::timeout(KILL_WAIT, process.wait()).await;
    Ended::Stopped
}
