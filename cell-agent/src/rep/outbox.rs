//! Reports to the controller that must arrive in order and survive
//! controller outages: LRP events (consecutive ones batched into one
//! call), task starts and completions. A bounded queue (the oldest report
//! is dropped, with a warning, when full) drained by one task that retries
//! with back-off until the controller takes each report or refuses it for
//! good (a 4xx other than 401/408/429).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use diego::rep::{LrpEvent, LrpEvents, TaskCompleted, TaskStarted};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{lock, ControllerError, Rep};

/// Most LRP events in one call.
const MAX_EVENT_BATCH: usize = 100;
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// One report.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Report {
    Lrp(LrpEvent),
    TaskStarted(String),
    TaskCompleted(String, TaskCompleted),
}

pub(crate) struct Outbox {
    queue: Mutex<VecDeque<Report>>,
    capacity: usize,
    wake: Notify,
    /// Reports queued or being sent.
    pending: AtomicUsize,
    dropped: AtomicUsize,
}

impl Outbox {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            queue: Mutex::new(VecDeque::new()),
            capacity: capacity.max(1),
            wake: Notify::new(),
            pending: AtomicUsize::new(0),
            dropped: AtomicUsize::new(0),
        }
    }

    pub(crate) fn push(&self, report: Report) {
        let mut queue = lock(&self.queue);
        if queue.len() >= self.capacity {
            let lost = queue.pop_front();
            self.pending.fetch_sub(1, Ordering::SeqCst);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(?lost, "report queue full: dropped the oldest report");
        }
        queue.push_back(report);
        self.pending.fetch_add(1, Ordering::SeqCst);
        drop(queue);
        self.wake.notify_one();
    }

    pub(crate) fn pending(&self) -> usize {
        self.pending.load(Ordering::SeqCst)
    }

    pub(crate) fn dropped(&self) -> usize {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Waits until every report went out, or `limit`; true when empty.
    pub(crate) async fn flush(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while self.pending() > 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    /// The next call's reports (a batch of LRP events, or one task report),
    /// left in the queue until sent.
    fn peek(&self) -> Vec<Report> {
        let queue = lock(&self.queue);
        match queue.front() {
            Some(Report::Lrp(_)) => queue
                .iter()
                .take(MAX_EVENT_BATCH)
                .take_while(|r| matches!(r, Report::Lrp(_)))
                .cloned()
                .collect(),
            Some(other) => vec![other.clone()],
            None => Vec::new(),
        }
    }

    /// Removes the first `n` reports (they went out), unless the queue
    /// dropped some meanwhile (then only what is still the same).
    fn done(&self, sent: &[Report]) {
        let mut queue = lock(&self.queue);
        for report in sent {
            if queue.front() == Some(report) {
                queue.pop_front();
                self.pending.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }
}

async fn send(rep: &Rep, batch: &[Report]) -> Result<(), ControllerError> {
    let cell_id = rep.config.cell_id.clone();
    match batch.first() {
        Some(Report::Lrp(_)) => {
            let events = batch
                .iter()
                .filter_map(|r| match r {
                    Report::Lrp(e) => Some(e.clone()),
                    _ => None,
                })
                .collect();
            rep.controller
                .lrp_events(&LrpEvents { cell_id, events })
                .await
        }
        Some(Report::TaskStarted(guid)) => {
            rep.controller
                .task_started(guid, &TaskStarted { cell_id })
                .await
        }
        Some(Report::TaskCompleted(guid, completed)) => {
            rep.controller.task_completed(guid, completed).await
        }
        None => Ok(()),
    }
}

/// Sends the queued reports in order until `stop` (then what is queued
/// stays: `Outbox::flush` before `stop` to deliver it).
pub(crate) async fn deliver(rep: Arc<Rep>, stop: CancellationToken) {
    let mut backoff = Duration::from_millis(250);
    loop {
        let batch = rep.outbox.peek();
        if batch.is_empty() {
            tokio::select! {
                () = rep.outbox.wake.notified() => continue,
                () = stop.cancelled() => return,
            }
        }
        match send(&rep, &batch).await {
            Ok(()) => {
                rep.outbox.done(&batch);
                backoff = Duration::from_millis(250);
            }
            Err(error) if error.is_permanent() => {
                tracing::warn!(%error, reports = batch.len(), "controller refused reports; dropped");
                rep.outbox.done(&batch);
            }
            Err(error) => {
                tracing::warn!(%error, retry_in = ?backoff, "controller unreachable; will retry");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = stop.cancelled() => return,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use diego::models::{ActualLrpInstanceKey, ActualLrpKey};

    use super::*;

    fn claimed(index: u32) -> Report {
        Report::Lrp(LrpEvent::Claimed {
            key: ActualLrpKey::new("web", index, "cf-apps"),
            instance: ActualLrpInstanceKey::new(format!("i{index}"), "cell"),
        })
    }

    #[test]
    fn lrp_events_batch_until_another_report() {
        let outbox = Outbox::new(10);
        outbox.push(claimed(0));
        outbox.push(claimed(1));
        outbox.push(Report::TaskStarted("t".into()));
        outbox.push(claimed(2));
        let first = outbox.peek();
        assert_eq!(first, [claimed(0), claimed(1)]);
        outbox.done(&first);
        assert_eq!(outbox.peek(), [Report::TaskStarted("t".into())]);
        outbox.done(&outbox.peek());
        assert_eq!(outbox.peek(), [claimed(2)]);
        assert_eq!(outbox.pending(), 1);
    }

    #[test]
    fn a_full_queue_drops_the_oldest() {
        let outbox = Outbox::new(2);
        outbox.push(claimed(0));
        let in_flight = outbox.peek();
        outbox.push(claimed(1));
        outbox.push(claimed(2));
        assert_eq!(outbox.dropped(), 1);
        assert_eq!(outbox.pending(), 2);
        // The batch in flight lost its first report meanwhile: nothing
        // else is taken off.
        outbox.done(&in_flight);
        assert_eq!(outbox.peek(), [claimed(1), claimed(2)]);
    }

    #[tokio::test]
    async fn flush_waits_for_an_empty_queue() {
        let outbox = Outbox::new(2);
        assert!(outbox.flush(Duration::from_millis(10)).await);
        outbox.push(claimed(0));
        assert!(!outbox.flush(Duration::from_millis(50)).await);
    }
}
