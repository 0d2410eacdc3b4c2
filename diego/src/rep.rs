//! The wire contract between the controller and the cell agents (Diego's
//! rep API and the cell-facing side of the BBS). Both directions are
//! authenticated with bearer keys:
//!
//! - cell → controller: the cell's own key (`controller-lite cell-key`, or
//!   the shared internal key), `Authorization: Bearer <key>`;
//! - controller → cell: the `rep_key` the cell announced in its presence
//!   (random per agent start, only ever sent to the controller over the
//!   authenticated channel); a cell refuses calls without it.
//!
//! Cell → controller (`/internal/v1/...` on the controller):
//!
//! | route | body | answer |
//! |---|---|---|
//! | `PUT /internal/v1/cells/{cell_id}/presence` | [`CellPresence`] | [`PresenceAck`] |
//! | `DELETE /internal/v1/cells/{cell_id}/presence` | | 204 |
//! | `POST /internal/v1/actual_lrps/events` | [`LrpEvents`] | 204 |
//! | `POST /internal/v1/tasks/{guid}/started` | [`TaskStarted`] | 204 |
//! | `POST /internal/v1/tasks/{guid}/completed` | [`TaskCompleted`] | 204 |
//! | `POST /internal/v1/logs` | log envelopes (controller-lite's format) | 204 |
//! | `POST /internal/v1/cells/{cell_id}/metrics` | [`ContainerMetricsBatch`] | 204 |
//!
//! Controller → cell (the rep, at [`CellPresence::rep_url`]):
//!
//! | route | body | answer |
//! |---|---|---|
//! | `GET /state` | | [`crate::auction::CellState`] |
//! | `POST /work` | [`WorkRequest`] | [`WorkResponse`]: what it could not take |
//! | `POST /lrps/{process_guid}/{index}/{instance_guid}/stop` | | 202 |
//! | `POST /tasks/{guid}/cancel` | | 202 |
//! | `GET /ping`, `POST /evacuate` | localhost only, no key | 200 / 202 |

use serde::{Deserialize, Serialize};

use crate::auction::Capacity;
use crate::models::{ActualLrpInstanceKey, ActualLrpKey, DesiredLrp, NetInfo, TaskDefinition};

/// Presence time to live, and how often a cell refreshes it.
pub const PRESENCE_TTL_SECS: u64 = 15;
/// See [`PRESENCE_TTL_SECS`].
pub const PRESENCE_REFRESH_SECS: u64 = 5;

/// A cell announcing itself (and refreshing its presence).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CellPresence {
    pub cell_id: String,
    /// Base URL of its rep API, e.g. `http://10.0.0.5:1800`.
    pub rep_url: String,
    /// Bearer key the controller must present to the rep.
    pub rep_key: String,
    pub zone: String,
    pub stacks: Vec<String>,
    pub placement_tags: Vec<String>,
    #[serde(default)]
    pub optional_placement_tags: Vec<String>,
    pub capacity: Capacity,
    /// Draining: takes no new work.
    #[serde(default)]
    pub evacuating: bool,
}

/// The controller's answer to a presence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceAck {
    pub ttl_secs: u64,
}

/// One instance to start on the cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LrpWork {
    pub key: ActualLrpKey,
    pub desired: DesiredLrp,
}

/// One task to run on the cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskWork {
    pub task_guid: String,
    pub domain: String,
    pub definition: TaskDefinition,
}

/// `POST /work`: what the auction gave this cell.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkRequest {
    pub lrps: Vec<LrpWork>,
    pub tasks: Vec<TaskWork>,
}

/// What the cell could not take (it had no room after all, or the work
/// was malformed), with its reason.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkResponse {
    pub failed_lrps: Vec<(ActualLrpKey, String)>,
    pub failed_tasks: Vec<(String, String)>,
}

/// What happened to an instance on a cell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LrpEvent {
    /// The container is reserved and being set up.
    Claimed {
        key: ActualLrpKey,
        instance: ActualLrpInstanceKey,
    },
    /// Healthy (startup checks passed).
    Running {
        key: ActualLrpKey,
        instance: ActualLrpInstanceKey,
        net_info: NetInfo,
    },
    /// The instance ended on its own: exited, OOM, health check failed.
    Crashed {
        key: ActualLrpKey,
        instance: ActualLrpInstanceKey,
        reason: String,
    },
    /// The instance was stopped or is gone (the cell removed it).
    Removed {
        key: ActualLrpKey,
        instance: ActualLrpInstanceKey,
    },
    /// The cell is draining; the instance keeps running until replaced.
    Evacuating {
        key: ActualLrpKey,
        instance: ActualLrpInstanceKey,
        net_info: NetInfo,
    },
}

/// `POST /internal/v1/actual_lrps/events`, in the order they happened.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LrpEvents {
    pub cell_id: String,
    pub events: Vec<LrpEvent>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskStarted {
    pub cell_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskCompleted {
    pub cell_id: String,
    pub failed: bool,
    #[serde(default)]
    pub failure_reason: String,
    /// First 10 KB of the result file.
    #[serde(default)]
    pub result: String,
}

/// Usage of one container, every 15 s.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerMetrics {
    /// LRP instance or task.
    pub process_guid: Option<String>,
    pub index: Option<u32>,
    pub instance_guid: String,
    pub cpu_fraction: f64,
    pub memory_bytes: u64,
    pub memory_limit_bytes: u64,
    pub disk_bytes: u64,
    pub disk_limit_bytes: u64,
    pub uptime_secs: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerMetricsBatch {
    pub containers: Vec<ContainerMetrics>,
}
