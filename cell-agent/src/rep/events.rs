//! Executor events become reports to the controller: an LRP container
//! reserved is `Claimed`, healthy is `Running` (with its net info), ended
//! on its own is `Crashed` (with the reason), stopped is `Removed`; a Task
//! running is `started`, ended is `completed` (result or failure reason).
//! Every ended container is then deleted (its resources freed). Container
//! metrics go to the controller every metrics interval.
//!
//! An end is reported once: after missed events the rep sweeps the
//! containers, and an end already handled (its `Completed` event may still
//! be queued behind the sweep) is not reported again ([`EndsReported`]).

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::SystemTime;

use diego::models::{ActualLrpInstanceKey, ActualLrpKey, NetInfo, PortMapping};
use diego::rep::{ContainerMetrics, ContainerMetricsBatch, LrpEvent, TaskCompleted};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::outbox::Report;
use super::{CrashRecord, Rep};
use crate::executor::{
    tags, Container, ContainerState, Event, ExecutorError, RunResult, StoreError,
};

/// The slot and instance of an LRP container, from its tags.
pub(crate) fn lrp_keys(
    container: &Container,
    cell_id: &str,
) -> Option<(ActualLrpKey, ActualLrpInstanceKey)> {
    let t = &container.tags;
    if t.get(tags::LIFECYCLE).map(String::as_str) != Some("lrp") {
        return None;
    }
    let key = ActualLrpKey::new(
        t.get(tags::PROCESS_GUID)?.clone(),
        t.get(tags::INDEX)?.parse().ok()?,
        t.get(tags::DOMAIN).cloned().unwrap_or_default(),
    );
    Some((key, ActualLrpInstanceKey::new(&container.guid, cell_id)))
}

/// The task guid of a Task container.
pub(crate) fn task_guid(container: &Container) -> Option<&str> {
    let t = &container.tags;
    if t.get(tags::LIFECYCLE).map(String::as_str) != Some("task") {
        return None;
    }
    t.get(tags::TASK_GUID).map(String::as_str)
}

/// Why an LRP's instance ended (an action exiting 0 is a crash too).
pub(crate) fn crash_reason(result: &RunResult) -> String {
    if !result.failure_reason.is_empty() {
        return result.failure_reason.clone();
    }
    match result.exit_status {
        Some(status) => format!("Exited with status {status}"),
        None => "the instance ended".into(),
    }
}

impl Rep {
    /// Where the controller reaches an instance: the cell's host, the
    /// container's own address (garden's info) and its mapped ports.
    pub(crate) async fn net_info(&self, container: &Container) -> NetInfo {
        let address = reqwest::Url::parse(&self.config.rep_url())
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_default();
        let instance_address = match self.executor.garden().info(&container.guid).await {
            Ok(info) => info.container_ip,
            Err(_) => String::new(),
        };
        let ports = container
            .ports
            .iter()
            .filter_map(|p| {
                Some(PortMapping {
                    container_port: u16::try_from(p.container_port).ok()?,
                    host_port: u16::try_from(p.host_port).ok()?,
                })
            })
            .collect();
        NetInfo {
            address,
            instance_address,
            ports,
        }
    }

    async fn on_event(self: &Arc<Self>, event: Event) {
        let cell_id = self.config.cell_id.as_str();
        match event {
            Event::Reserved(c) => {
                if let Some((key, instance)) = lrp_keys(&c, cell_id) {
                    self.outbox
                        .push(Report::Lrp(LrpEvent::Claimed { key, instance }));
                }
            }
            Event::Running(c) => {
                if let Some((key, instance)) = lrp_keys(&c, cell_id) {
                    let net_info = self.net_info(&c).await;
                    // Started while draining: it is evacuating at once.
                    let event = if self.is_evacuating() {
                        LrpEvent::Evacuating {
                            key,
                            instance,
                            net_info,
                        }
                    } else {
                        LrpEvent::Running {
                            key,
                            instance,
                            net_info,
                        }
                    };
                    self.outbox.push(Report::Lrp(event));
                } else if let Some(guid) = task_guid(&c) {
                    self.outbox.push(Report::TaskStarted(guid.into()));
                }
            }
            Event::Completed(c) => self.on_completed(c),
            // A container of that guid (a Task's is its task guid) may be
            // created again: its end is news again.
            Event::Deleted { guid } => super::lock(&self.ends_reported).forget(&guid),
            Event::Health { .. } => {}
        }
    }

    fn on_completed(self: &Arc<Self>, c: Container) {
        if !super::lock(&self.ends_reported).first_time(&c.guid) {
            tracing::debug!(guid = %c.guid, "container end already reported");
            return;
        }
        let cell_id = self.config.cell_id.as_str();
        let result = c.result.clone().unwrap_or_default();
        if let Some((key, instance)) = lrp_keys(&c, cell_id) {
            if result.stopped {
                self.outbox
                    .push(Report::Lrp(LrpEvent::Removed { key, instance }));
            } else {
                let reason = crash_reason(&result);
                tracing::info!(guid = %c.guid, process_guid = %key.process_guid, %reason, "instance crashed");
                self.record_crash(CrashRecord {
                    instance_guid: c.guid.clone(),
                    process_guid: key.process_guid.clone(),
                    index: key.index,
                    reason: reason.clone(),
                    exit_status: result.exit_status,
                    at: SystemTime::now(),
                });
                self.outbox.push(Report::Lrp(LrpEvent::Crashed {
                    key,
                    instance,
                    reason,
                }));
            }
        } else if let Some(guid) = task_guid(&c) {
            // A cancelled task: the controller already completed it.
            if !result.stopped {
                let report = Report::TaskCompleted(
                    guid.into(),
                    TaskCompleted {
                        cell_id: cell_id.into(),
                        failed: result.failed,
                        failure_reason: result.failure_reason.clone(),
                        result: result.result.clone(),
                    },
                );
                // Its output first: staging logs end before the build does.
                let rep = self.clone();
                tokio::spawn(async move {
                    rep.logs_flushed().await;
                    rep.outbox.push(report);
                });
            }
        }
        let rep = self.clone();
        tokio::spawn(async move {
            match rep.executor.delete(&c.guid).await {
                // Someone else (evacuation, a refused run) deleted it first.
                Ok(()) | Err(ExecutorError::Store(StoreError::NotFound { .. })) => {}
                Err(error) => {
                    tracing::warn!(guid = %c.guid, %error, "deleting an ended container failed");
                }
            }
        });
    }
}

/// The guids of the containers whose end was reported and that are not
/// deleted yet (the last [`EndsReported::CAPACITY`], in case a `Deleted`
/// event was missed).
#[derive(Debug, Default)]
pub(crate) struct EndsReported {
    order: VecDeque<String>,
    guids: HashSet<String>,
}

impl EndsReported {
    /// More than the executor's event buffer holds, so an end whose
    /// `Completed` event is still queued is always remembered.
    pub(crate) const CAPACITY: usize = 4096;

    /// Remembers `guid`; false when it was already reported.
    pub(crate) fn first_time(&mut self, guid: &str) -> bool {
        if !self.guids.insert(guid.to_owned()) {
            return false;
        }
        self.order.push_back(guid.to_owned());
        while self.order.len() > Self::CAPACITY {
            if let Some(old) = self.order.pop_front() {
                self.guids.remove(&old);
            }
        }
        true
    }

    /// The container is gone: a new one of that guid ends anew.
    pub(crate) fn forget(&mut self, guid: &str) {
        if self.guids.remove(guid) {
            self.order.retain(|g| g != guid);
        }
    }
}

impl Rep {
    /// After missed events: every ended container is handled as if its
    /// `Completed` arrived (reported once, deleted), every running LRP is
    /// reported `Running` again (the controller takes repeats).
    async fn sweep(self: &Arc<Self>) {
        for c in self.executor.list() {
            match c.state {
                ContainerState::Completed => self.on_completed(c),
                ContainerState::Running => self.on_event(Event::Running(c)).await,
                _ => {}
            }
        }
    }
}

/// Turns executor events into reports until `stop`.
pub(crate) async fn forward(
    rep: Arc<Rep>,
    mut events: broadcast::Receiver<Event>,
    stop: CancellationToken,
) {
    loop {
        let event = tokio::select! {
            event = events.recv() => event,
            () = stop.cancelled() => return,
        };
        match event {
            Ok(event) => rep.on_event(event).await,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(
                    missed = n,
                    "executor events missed; sweeping the containers"
                );
                rep.sweep().await;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// The executor's last samples as the wire's metrics.
pub(crate) fn metrics_batch(rep: &Rep) -> ContainerMetricsBatch {
    let samples = rep.executor.metrics();
    let containers = rep
        .executor
        .list()
        .into_iter()
        .filter_map(|c| {
            let m = samples.get(&c.guid)?;
            let (process_guid, index) = match lrp_keys(&c, "") {
                Some((key, _)) => (Some(key.process_guid), Some(key.index)),
                None => (task_guid(&c).map(str::to_owned), None),
            };
            Some(ContainerMetrics {
                process_guid,
                index,
                instance_guid: c.guid.clone(),
                cpu_fraction: m.cpu_fraction,
                memory_bytes: m.memory_bytes,
                memory_limit_bytes: m.memory_limit_bytes,
                disk_bytes: m.disk_bytes,
                disk_limit_bytes: m.disk_limit_bytes,
                uptime_secs: m.age.as_secs(),
            })
        })
        .collect();
    ContainerMetricsBatch { containers }
}

/// Posts container metrics every metrics interval until `stop` (a
/// failed post is logged; the next one carries fresh numbers).
pub(crate) async fn send_metrics(rep: Arc<Rep>, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(rep.config.metrics_interval) => {}
            () = stop.cancelled() => return,
        }
        let batch = metrics_batch(&rep);
        if batch.containers.is_empty() {
            continue;
        }
        if let Err(error) = rep.controller.metrics(&rep.config.cell_id, &batch).await {
            tracing::warn!(%error, "container metrics not delivered");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::EndsReported;

    #[test]
    fn an_end_is_reported_once_until_its_container_is_deleted() {
        let mut ends = EndsReported::default();
        assert!(ends.first_time("a"));
        assert!(!ends.first_time("a"), "the sweep's repeat is skipped");
        assert!(ends.first_time("b"));
        ends.forget("a");
        assert!(ends.first_time("a"), "a new container of the same guid");
        ends.forget("unknown");
        assert!(!ends.first_time("b"));
    }

    #[test]
    fn the_memory_is_bounded() {
        let mut ends = EndsReported::default();
        for i in 0..=EndsReported::CAPACITY {
            assert!(ends.first_time(&i.to_string()));
        }
        assert_eq!(ends.guids.len(), EndsReported::CAPACITY);
        assert!(ends.first_time("0"), "the oldest was let go");
        assert!(!ends.first_time(&EndsReported::CAPACITY.to_string()));
    }
}
