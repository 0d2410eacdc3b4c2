//! An LRP's health monitor: runs the `healthcheck` binary inside the
//! container (as a garden process) every startup interval until the checks
//! pass or the start timeout ends, then every liveness interval until one
//! fails. It is one branch of the LRP's Codependent, so its failure stops
//! the action and becomes the container's failure reason.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use diego::models::check::{Check, CheckDefinition};
use garden_api::types::ProcessSpec;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::config::HEALTHCHECK_PATH;
use super::log::LogStream;
use super::process::Output;
use super::steps::{StepContext, StepError, StepResult};

/// Most of a check's output kept for its message.
const MAX_OUTPUT: u64 = 4096;
/// Time garden gets, beyond the check's own timeout, to run the check.
const EXEC_SLACK: Duration = Duration::from_secs(10);

/// How often and how long to check.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    pub(crate) start_timeout: Duration,
    pub(crate) startup_interval: Duration,
    pub(crate) liveness_interval: Duration,
    /// Per attempt, for checks that name no timeout of their own.
    pub(crate) check_timeout: Duration,
    /// Straight to liveness checks (a container adopted after a restart).
    pub(crate) skip_startup: bool,
}

/// Garden process ids of health checks start with this, so that a
/// restarted executor tells them from the action's processes.
pub(crate) const CHECK_ID_PREFIX: &str = "healthcheck-";

fn check_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{CHECK_ID_PREFIX}{nanos:x}-{n}")
}

/// Watches the checks; `report(healthy, message)` hears every change.
pub(crate) async fn monitor(
    definition: &CheckDefinition,
    timing: Timing,
    ctx: &StepContext,
    cancel: &CancellationToken,
    report: &(dyn Fn(bool, &str) + Send + Sync),
) -> StepResult {
    let source = if definition.log_source.is_empty() {
        "HEALTH"
    } else {
        &definition.log_source
    };
    if definition.checks.is_empty() {
        // The `process` health check: healthy once the action's process runs.
        tokio::select! {
            () = ctx.process_started() => report(true, ""),
            () = cancel.cancelled() => return Err(StepError::Cancelled),
        }
        cancel.cancelled().await;
        return Err(StepError::Cancelled);
    }
    if !timing.skip_startup {
        startup(definition, timing, ctx, cancel, report, source).await?;
    }
    liveness(definition, timing, ctx, cancel, report, source).await
}

/// Checks every startup interval until healthy; fails at the start timeout.
async fn startup(
    definition: &CheckDefinition,
    timing: Timing,
    ctx: &StepContext,
    cancel: &CancellationToken,
    report: &(dyn Fn(bool, &str) + Send + Sync),
    source: &str,
) -> StepResult {
    let deadline = Instant::now() + timing.start_timeout;
    loop {
        let outcome = check_all(&definition.checks, timing, ctx).await;
        if cancel.is_cancelled() {
            return Err(StepError::Cancelled);
        }
        let last_error = match outcome {
            Ok(()) => break,
            Err(message) => message,
        };
        let now = Instant::now();
        if now >= deadline {
            let message = format!(
                "Instance never healthy after {:?}: {last_error}",
                timing.start_timeout
            );
            ctx.log.line(source, LogStream::Stderr, message.clone());
            report(false, &message);
            return Err(StepError::Unhealthy(message));
        }
        let pause = timing.startup_interval.min(deadline - now);
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = cancel.cancelled() => return Err(StepError::Cancelled),
        }
    }
    ctx.log
        .line(source, LogStream::Stdout, "Container became healthy".into());
    report(true, "");
    Ok(())
}

/// Checks every liveness interval until a check fails.
async fn liveness(
    definition: &CheckDefinition,
    timing: Timing,
    ctx: &StepContext,
    cancel: &CancellationToken,
    report: &(dyn Fn(bool, &str) + Send + Sync),
    source: &str,
) -> StepResult {
    let mut reported = !timing.skip_startup;
    loop {
        tokio::select! {
            () = tokio::time::sleep(timing.liveness_interval) => {}
            () = cancel.cancelled() => return Err(StepError::Cancelled),
        }
        if let Err(error) = check_all(&definition.checks, timing, ctx).await {
            if cancel.is_cancelled() {
                return Err(StepError::Cancelled);
            }
            let message = format!("Instance became unhealthy: {error}");
            ctx.log.line(source, LogStream::Stderr, message.clone());
            report(false, &message);
            return Err(StepError::Unhealthy(message));
        }
        if !reported {
            // Adopted: the first liveness check is the first word on health.
            report(true, "");
            reported = true;
        }
    }
}

/// Runs every check at once; the first failure's message.
async fn check_all(checks: &[Check], timing: Timing, ctx: &StepContext) -> Result<(), String> {
    let results =
        futures_util::future::join_all(checks.iter().map(|c| check_once(c, timing, ctx))).await;
    results.into_iter().collect()
}

/// The `healthcheck` arguments for one check, and its timeout.
pub(crate) fn arguments(check: &Check, default_timeout: Duration) -> (Vec<String>, Duration) {
    let (port, path, timeout_ms) = match check {
        Check::Tcp {
            port,
            connect_timeout_ms,
        } => (*port, None, *connect_timeout_ms),
        Check::Http {
            port,
            path,
            request_timeout_ms,
        } => (*port, Some(path), *request_timeout_ms),
    };
    let timeout = if timeout_ms == 0 {
        default_timeout
    } else {
        Duration::from_millis(timeout_ms)
    };
    let mut args = vec![
        "healthcheck".to_owned(),
        "--port".to_owned(),
        port.to_string(),
        "--timeout".to_owned(),
        format!("{}ms", timeout.as_millis()),
    ];
    if let Some(path) = path {
        args.push("--http-path".into());
        args.push(path.clone());
    }
    (args, timeout)
}

async fn check_once(check: &Check, timing: Timing, ctx: &StepContext) -> Result<(), String> {
    let (args, timeout) = arguments(check, timing.check_timeout);
    let spec = ProcessSpec {
        id: check_id(),
        path: HEALTHCHECK_PATH.into(),
        args,
        ..ProcessSpec::default()
    };
    let attempt = async {
        let output = Output::Capture { max: MAX_OUTPUT };
        let mut process = ctx
            .processes
            .run(&ctx.garden, &ctx.handle, spec, output)
            .await
            .map_err(|e| format!("running the health check: {e}"))?;
        let finished = process.wait().await;
        match finished.status {
            Ok(0) => Ok(()),
            Ok(status) if finished.output.trim().is_empty() => {
                Err(format!("health check exited with status {status}"))
            }
            Ok(_) => Err(finished.output.trim().to_owned()),
            Err(e) => Err(format!("running the health check: {e}")),
        }
    };
    match tokio::time::timeout(timeout + EXEC_SLACK, attempt).await {
        Ok(result) => result,
        Err(_) => Err(format!("health check did not finish within {timeout:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_become_healthcheck_arguments() {
        let (args, timeout) = arguments(
            &Check::Http {
                port: 8080,
                path: "/ready".into(),
                request_timeout_ms: 0,
            },
            Duration::from_secs(1),
        );
        assert_eq!(
            args,
            [
                "healthcheck",
                "--port",
                "8080",
                "--timeout",
                "1000ms",
                "--http-path",
                "/ready"
            ]
        );
        assert_eq!(timeout, Duration::from_secs(1));
        let (args, timeout) = arguments(
            &Check::Tcp {
                port: 22,
                connect_timeout_ms: 250,
            },
            Duration::from_secs(1),
        );
        assert_eq!(args, ["healthcheck", "--port", "22", "--timeout", "250ms"]);
        assert_eq!(timeout, Duration::from_millis(250));
    }
}
