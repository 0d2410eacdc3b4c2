//! What the loopback-only admin routes (`/diag/...`) answer: the cell's
//! summary, its containers, one container in detail. The `diag` CLI reads
//! these; the shapes are also its `--json` output.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::events::{lrp_keys, task_guid};
use super::{lock, Rep};
use crate::executor::{Container, ContainerMetrics, HealthStatus, PortMapping, RunResult};

/// The presence as last refreshed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceStatus {
    /// The controller accepted a presence at least once.
    pub established: bool,
    /// The last accepted refresh.
    pub last_ok: Option<SystemTime>,
    /// The TTL the controller acknowledged.
    pub ttl_secs: u64,
    /// Failed refreshes since start.
    pub failures: u64,
    /// The last failure, when the last refresh failed.
    pub last_error: Option<String>,
    /// The presence says draining.
    pub evacuating: bool,
}

/// An instance that ended on its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrashRecord {
    /// The container.
    pub instance_guid: String,
    /// Its LRP.
    pub process_guid: String,
    /// Its index.
    pub index: u32,
    /// Why.
    pub reason: String,
    /// The ending process's status.
    pub exit_status: Option<i32>,
    /// When.
    pub at: SystemTime,
}

/// `GET /diag/summary`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// This cell.
    pub cell_id: String,
    /// Its zone.
    pub zone: String,
    /// The rep URL the controller uses.
    pub rep_url: String,
    /// The controller.
    pub controller_url: String,
    /// Stacks offered.
    pub stacks: Vec<String>,
    /// Everything it offers.
    pub total: diego::auction::Capacity,
    /// What is free.
    pub available: diego::auction::Capacity,
    /// Containers per state (`reserved`, `running`, ...).
    pub containers_by_state: std::collections::BTreeMap<String, u32>,
    /// LRP instances held.
    pub lrps: usize,
    /// Tasks held.
    pub tasks: usize,
    /// The presence.
    pub presence: PresenceStatus,
    /// Draining.
    pub evacuating: bool,
    /// Reports waiting for the controller.
    pub reports_pending: usize,
    /// Reports dropped because the queue was full.
    pub reports_dropped: usize,
    /// Crashes seen since start (the last 50 kept).
    pub recent_crashes: usize,
    /// Seconds since the agent started.
    pub uptime_secs: u64,
}

/// One row of `GET /diag/containers`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerSummary {
    /// The container (instance guid or task guid).
    pub guid: String,
    /// Its executor state.
    pub state: String,
    /// `lrp` or `task`.
    pub lifecycle: String,
    /// The LRP's process guid, or the task guid.
    pub owner: String,
    /// The LRP instance's index.
    pub index: Option<u32>,
    /// Reserved memory and disk.
    pub memory_mb: u64,
    /// Reserved disk.
    pub disk_mb: u64,
    /// The last metrics sample.
    pub metrics: Option<ContainerMetrics>,
    /// Since it was reserved.
    pub uptime_secs: u64,
    /// Mapped ports.
    pub ports: Vec<PortMapping>,
    /// The last health check result.
    pub health: Option<HealthStatus>,
    /// Adopted after a restart.
    pub adopted: bool,
}

/// `GET /diag/containers/{guid}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerDetail {
    /// The row.
    pub summary: ContainerSummary,
    /// Its tags.
    pub tags: std::collections::BTreeMap<String, String>,
    /// How it ended, when it did.
    pub result: Option<RunResult>,
    /// Its crashes seen by this agent (for an LRP: of its slot).
    pub crashes: Vec<CrashRecord>,
    /// Its last log lines.
    pub recent_logs: Vec<String>,
}

fn since(t: SystemTime) -> u64 {
    SystemTime::now()
        .duration_since(t)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

impl Rep {
    fn container_summary(
        &self,
        c: &Container,
        metrics: Option<ContainerMetrics>,
    ) -> ContainerSummary {
        let (lifecycle, owner, index) = match lrp_keys(c, "") {
            Some((key, _)) => ("lrp", key.process_guid, Some(key.index)),
            None => match task_guid(c) {
                Some(guid) => ("task", guid.to_owned(), None),
                None => ("", String::new(), None),
            },
        };
        ContainerSummary {
            guid: c.guid.clone(),
            state: c.state.to_string(),
            lifecycle: lifecycle.into(),
            owner,
            index,
            memory_mb: c.resources.memory_mb,
            disk_mb: c.resources.disk_mb,
            metrics,
            uptime_secs: since(c.allocated_at),
            ports: c.ports.clone(),
            health: c.health.clone(),
            adopted: c.adopted,
        }
    }

    /// The cell at a glance.
    pub fn summary(&self) -> Summary {
        let state = self.cell_state();
        let mut by_state = std::collections::BTreeMap::new();
        for c in self.executor.list() {
            *by_state.entry(c.state.to_string()).or_insert(0) += 1;
        }
        Summary {
            cell_id: state.cell_id,
            zone: state.zone,
            rep_url: self.config.rep_url(),
            controller_url: self.config.controller_url.clone(),
            stacks: state.stacks,
            total: state.total,
            available: state.available,
            containers_by_state: by_state,
            lrps: state.lrps.len(),
            tasks: state.tasks.len(),
            presence: lock(&self.presence).clone(),
            evacuating: self.is_evacuating(),
            reports_pending: self.outbox.pending(),
            reports_dropped: self.outbox.dropped(),
            recent_crashes: lock(&self.crashes).len(),
            uptime_secs: since(self.started_at),
        }
    }

    /// Every container.
    pub fn containers(&self) -> Vec<ContainerSummary> {
        let metrics = self.executor.metrics();
        self.executor
            .list()
            .iter()
            .map(|c| self.container_summary(c, metrics.get(&c.guid).cloned()))
            .collect()
    }

    /// One container; `None` when unknown.
    pub fn container_detail(&self, guid: &str) -> Option<ContainerDetail> {
        let c = self.executor.get(guid).ok()?;
        let metrics = self.executor.metrics().get(guid).cloned();
        let summary = self.container_summary(&c, metrics);
        let crashes = lock(&self.crashes)
            .iter()
            .filter(|k| {
                k.instance_guid == guid
                    || (summary.lifecycle == "lrp"
                        && k.process_guid == summary.owner
                        && Some(k.index) == summary.index)
            })
            .cloned()
            .collect();
        Some(ContainerDetail {
            tags: c.tags.clone(),
            result: c.result.clone(),
            crashes,
            recent_logs: self.recent_lines(guid),
            summary,
        })
    }

    /// Recent crashes, oldest first.
    pub fn crashes(&self) -> Vec<CrashRecord> {
        lock(&self.crashes).iter().cloned().collect()
    }
}
