//! One container's run, from garden create to its result: create (limits
//! from the reservation), map ports, setup, then a Task's action (and its
//! result file) or an LRP's action codependent with its health monitor.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures_util::FutureExt;
use futures_util::StreamExt;
use garden_api::StreamOutSpec;
use tokio_util::sync::CancellationToken;

use super::container::{HealthStatus, LogConfig, PortMapping, RunRequest, RunResult};
use super::garden_spec::container_spec;
use super::health::{self, Timing};
use super::log::ContainerLog;
use super::state::ContainerState;
use super::steps::{self, StepContext, StepError, StepResult};
use super::{lock, Event, Inner};

/// Most of a result file that is kept (Diego's limit).
pub const MAX_RESULT_BYTES: usize = 10 * 1024;
/// Most of StreamOut's tar read to find the result file's first bytes.
const MAX_RESULT_TAR: usize = 64 * 1024;

/// The result of a container that was stopped.
pub(crate) fn stopped(exit_status: Option<i32>) -> RunResult {
    RunResult {
        stopped: true,
        exit_status,
        ..RunResult::default()
    }
}

fn failed(reason: String, exit_status: Option<i32>) -> RunResult {
    RunResult {
        failed: true,
        failure_reason: reason,
        exit_status,
        ..RunResult::default()
    }
}

/// Runs the container to its end and completes it.
pub(crate) async fn run(
    inner: Arc<Inner>,
    guid: String,
    request: RunRequest,
    image: String,
    cancel: CancellationToken,
) {
    let result = drive(&inner, &guid, &request, &image, &cancel).await;
    inner.finish(&guid, result);
}

async fn drive(
    inner: &Arc<Inner>,
    guid: &str,
    request: &RunRequest,
    image: &str,
    cancel: &CancellationToken,
) -> RunResult {
    if let Err(reason) = create(inner, guid, request, image).await {
        return failed(reason, None);
    }
    if cancel.is_cancelled() {
        return stopped(None);
    }
    if let Err(error) = inner.transition(guid, ContainerState::Created) {
        return failed(error.to_string(), None);
    }
    if let Err(reason) = map_ports(inner, guid, request).await {
        return failed(reason, None);
    }
    let ctx = step_context(inner, guid, request.log.clone());
    if let Some(setup) = &request.setup {
        let outcome = steps::perform(setup, &ctx, cancel).await;
        if outcome.is_err() {
            return conclude(
                inner,
                guid,
                request.result_file.as_deref(),
                &ctx,
                cancel,
                outcome,
            )
            .await;
        }
    }
    // The `process` check waits for the action's process, not setup's.
    ctx.process_started.send_replace(false);
    let outcome = match &request.monitor {
        None => {
            if let Err(error) = inner.transition(guid, ContainerState::Running) {
                return failed(error.to_string(), None);
            }
            steps::perform(&request.action, &ctx, cancel).await
        }
        Some(definition) => {
            let timing = timing(inner, request.start_timeout, false);
            let group = cancel.child_token();
            let report = |healthy: bool, message: &str| inner.health(guid, healthy, message);
            let branches = vec![
                steps::perform(&request.action, &ctx, &group),
                health::monitor(definition, timing, &ctx, &group, &report).boxed(),
            ];
            steps::codependent(branches, &group).await
        }
    };
    conclude(
        inner,
        guid,
        request.result_file.as_deref(),
        &ctx,
        cancel,
        outcome,
    )
    .await
}

/// What the steps of container `guid` share.
pub(crate) fn step_context(inner: &Inner, guid: &str, log: LogConfig) -> StepContext {
    StepContext {
        garden: inner.garden.clone(),
        handle: guid.to_owned(),
        log: ContainerLog::new(
            inner.logs.clone(),
            log,
            inner.config.max_log_lines_per_second,
        ),
        downloads: inner.downloads.clone(),
        processes: inner.processes.clone(),
        stop_grace: inner.config.stop_grace,
        last_exit: Arc::new(Mutex::new(None)),
        process_started: Arc::new(tokio::sync::watch::Sender::new(false)),
    }
}

/// The health monitor's timing from the configuration.
pub(crate) fn timing(inner: &Inner, start_timeout: Option<Duration>, skip_startup: bool) -> Timing {
    Timing {
        start_timeout: inner.config.start_timeout(start_timeout),
        startup_interval: inner.config.startup_interval,
        liveness_interval: inner.config.liveness_interval,
        check_timeout: inner.config.check_timeout,
        skip_startup,
    }
}

async fn create(
    inner: &Inner,
    guid: &str,
    request: &RunRequest,
    image: &str,
) -> Result<(), String> {
    let container = lock(&inner.store)
        .get(guid)
        .map(|e| e.container.clone())
        .map_err(|e| e.to_string())?;
    let spec = container_spec(
        &inner.config,
        &container,
        request,
        image,
        &inner.healthcheck_binary,
    )
    .map_err(|e| format!("invalid container spec: {e}"))?;
    let started = std::time::Instant::now();
    inner
        .garden
        .create(&spec)
        .await
        .map_err(|e| format!("failed to create container: {e}"))?;
    tracing::info!(
        guid,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "garden container created"
    );
    Ok(())
}

async fn map_ports(inner: &Inner, guid: &str, request: &RunRequest) -> Result<(), String> {
    let mut mapped = Vec::new();
    for &port in &request.ports {
        let (host_port, container_port) = inner
            .garden
            .net_in(guid, 0, u32::from(port))
            .await
            .map_err(|e| format!("failed to map port {port}: {e}"))?;
        mapped.push(PortMapping {
            host_port,
            container_port,
        });
    }
    if let Ok(entry) = lock(&inner.store).get_mut(guid) {
        entry.container.ports = mapped;
    }
    Ok(())
}

/// The container's result from its outcome: stopped wins, then failure
/// (with OOM named), then success (a Task's result file read).
pub(crate) async fn conclude(
    inner: &Inner,
    guid: &str,
    result_file: Option<&str>,
    ctx: &StepContext,
    cancel: &CancellationToken,
    outcome: StepResult,
) -> RunResult {
    let exit_status = outcome
        .as_ref()
        .err()
        .and_then(StepError::exit_status)
        .or_else(|| ctx.last_exit());
    if cancel.is_cancelled() {
        return stopped(exit_status);
    }
    match outcome {
        Err(error) => {
            let mut reason = error.to_string();
            if out_of_memory(inner, guid).await {
                reason.push_str(" (out of memory)");
            }
            failed(reason, exit_status)
        }
        Ok(()) => {
            let mut result = RunResult {
                exit_status,
                ..RunResult::default()
            };
            if let Some(path) = result_file {
                match read_result(inner, guid, path).await {
                    Ok(text) => result.result = text,
                    Err(reason) => return failed(reason, exit_status),
                }
            }
            result
        }
    }
}

async fn out_of_memory(inner: &Inner, guid: &str) -> bool {
    match inner.garden.info(guid).await {
        Ok(info) => info.events.iter().any(|e| e.contains("oom")),
        Err(_) => false,
    }
}

/// The first [`MAX_RESULT_BYTES`] of a file in the container.
async fn read_result(inner: &Inner, guid: &str, path: &str) -> Result<String, String> {
    let failure = |e: &dyn std::fmt::Display| format!("failed to read result file {path}: {e}");
    let spec = StreamOutSpec {
        path: path.to_owned(),
        user: String::new(),
    };
    let mut stream = inner
        .garden
        .stream_out(guid, &spec)
        .await
        .map_err(|e| failure(&e))?;
    let mut tar = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| failure(&e))?;
        tar.extend_from_slice(&chunk);
        if tar.len() >= MAX_RESULT_TAR {
            break;
        }
    }
    first_file_prefix(&tar).map_err(|e| failure(&e))
}

/// The first bytes of the first file of a (possibly cut off) tar archive.
fn first_file_prefix(tar: &[u8]) -> Result<String, std::io::Error> {
    let mut archive = tar::Archive::new(tar);
    for entry in archive.entries()? {
        let entry = entry?;
        if entry.header().entry_type().is_file() {
            let mut bytes = Vec::new();
            let limit = MAX_RESULT_BYTES.min(entry.size() as usize) as u64;
            std::io::Read::read_to_end(&mut std::io::Read::take(entry, limit), &mut bytes)?;
            return Ok(String::from_utf8_lossy(&bytes).into_owned());
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::NotFound,
        "not a file",
    ))
}

impl Inner {
    /// Records a health change; the first success makes an LRP `Running`.
    pub(crate) fn health(&self, guid: &str, healthy: bool, message: &str) {
        let became_running = {
            let mut store = lock(&self.store);
            let Ok(entry) = store.get_mut(guid) else {
                return;
            };
            entry.container.health = Some(HealthStatus {
                healthy,
                message: message.to_owned(),
                at: SystemTime::now(),
            });
            healthy && entry.container.state == ContainerState::Created
        };
        self.emit(Event::Health {
            guid: guid.to_owned(),
            healthy,
            message: message.to_owned(),
        });
        if became_running {
            if let Err(error) = self.transition(guid, ContainerState::Running) {
                tracing::debug!(guid, %error, "not running");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_is_the_first_10k_of_the_first_file() {
        let mut builder = tar::Builder::new(Vec::new());
        let body = vec![b'r'; MAX_RESULT_BYTES + 100];
        let mut header = tar::Header::new_gnu();
        header.set_size(body.len() as u64);
        header.set_mode(0o644);
        builder
            .append_data(&mut header, "result.json", body.as_slice())
            .expect("append");
        let tar = builder.into_inner().expect("tar");
        let text = first_file_prefix(&tar[..MAX_RESULT_TAR.min(tar.len())]).expect("read");
        assert_eq!(text.len(), MAX_RESULT_BYTES);
        assert!(first_file_prefix(b"").is_err());
    }
}
