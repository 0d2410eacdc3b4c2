//! Container log lines to the controller (`POST /internal/v1/logs`, in
//! controller-lite's envelope): batched (up to 500 lines, or what came
//! within 200 ms), retried with back-off while the controller is away, in
//! a bounded buffer that drops the oldest lines when full. The last lines
//! of each container are also kept for `diag container`.
//!
//! A task's completion waits (briefly) for its lines to go out first, so a
//! developer following staging sees the builder's last words before the
//! controller says the build ended.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{lock, LogEnvelope, Rep, RECENT_LOG_LINES};
use crate::executor::{LogLine, LogStream};

const BATCH: usize = 500;
const BUFFER: usize = 10_000;
const LINGER: Duration = Duration::from_millis(200);
/// The longest a completion report waits for log lines before it.
const FLUSH_WAIT: Duration = Duration::from_secs(3);

fn envelope(line: LogLine) -> LogEnvelope {
    LogEnvelope {
        source_id: line.guid,
        source_type: line.source_type,
        instance_id: line.source_instance,
        line: line.message,
        stderr: line.stream == LogStream::Stderr,
    }
}

impl Rep {
    /// Waits until every line the executor emitted before this call has
    /// been sent to the controller (or dropped), for at most [`FLUSH_WAIT`]:
    /// a controller that refuses logs must not hold completions back.
    pub(crate) async fn logs_flushed(&self) {
        let target = self.log_sink.accepted();
        let mut done = self.logs_done.subscribe();
        if tokio::time::timeout(FLUSH_WAIT, done.wait_for(|n| *n >= target))
            .await
            .is_err()
        {
            tracing::debug!(target, "log lines still in flight; reporting anyway");
        }
    }

    /// `n` more lines of the sink are sent or dropped.
    fn lines_done(&self, n: usize) {
        self.logs_done
            .send_modify(|d| *d = d.saturating_add(u64::try_from(n).unwrap_or(u64::MAX)));
    }

    fn keep_recent(&self, line: &LogLine) {
        let key = format!("{}/{}", line.guid, line.source_instance);
        let mut recent = lock(&self.recent_logs);
        let lines = recent.entry(key).or_default();
        if lines.len() >= RECENT_LOG_LINES {
            lines.pop_front();
        }
        lines.push_back(line.message.clone());
    }
}

/// Takes lines from the executor's sink and sends them until `stop`.
pub(crate) async fn forward(
    rep: Arc<Rep>,
    mut lines: mpsc::Receiver<LogLine>,
    stop: CancellationToken,
) {
    let mut buffer: VecDeque<LogEnvelope> = VecDeque::new();
    let mut dropped = 0u64;
    let mut backoff = Duration::from_millis(250);
    loop {
        if buffer.is_empty() {
            tokio::select! {
                line = lines.recv() => match line {
                    Some(line) => {
                        rep.keep_recent(&line);
                        buffer.push_back(envelope(line));
                    }
                    None => return,
                },
                () = stop.cancelled() => return,
            }
        }
        // Let a burst gather into one call.
        let linger = tokio::time::sleep(LINGER);
        tokio::pin!(linger);
        while buffer.len() < BATCH {
            tokio::select! {
                line = lines.recv() => match line {
                    Some(line) => {
                        rep.keep_recent(&line);
                        buffer.push_back(envelope(line));
                    }
                    None => break,
                },
                () = &mut linger => break,
            }
        }
        let batch: Vec<LogEnvelope> = buffer.iter().take(BATCH).cloned().collect();
        match rep.controller.logs(&batch).await {
            Ok(()) => {
                buffer.drain(..batch.len());
                rep.lines_done(batch.len());
                backoff = Duration::from_millis(250);
            }
            Err(error) if error.is_permanent() => {
                tracing::warn!(%error, lines = batch.len(), "controller refused log lines; dropped");
                buffer.drain(..batch.len());
                rep.lines_done(batch.len());
            }
            Err(error) => {
                tracing::debug!(%error, "log lines not delivered; will retry");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = stop.cancelled() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
        // Keep taking lines while the controller is away, within bounds.
        while let Ok(line) = lines.try_recv() {
            rep.keep_recent(&line);
            buffer.push_back(envelope(line));
        }
        while buffer.len() > BUFFER {
            buffer.pop_front();
            rep.lines_done(1);
            dropped += 1;
            if dropped.is_power_of_two() {
                tracing::warn!(dropped, "log buffer full: oldest lines dropped");
            }
        }
    }
}
