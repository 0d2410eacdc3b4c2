//! Tasks: one-off work (staging, `cf run-task`) with Diego's lifecycle.
//!
//! ```text
//! PENDING ──start──► RUNNING ──complete──► COMPLETED ──resolve──► RESOLVING ──► deleted
//!    │  ▲               │                     ▲  ▲                  │
//!    │  └────reject─────┘                     │  └─────demote───────┘
//!    └──────────── fail / cancel ─────────────┘  (also from RUNNING)
//! ```
//!
//! A task rejected by cells [`DEFAULT_MAX_REJECTIONS`] times fails.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::action::{Action, EnvVar};
use super::record::{Outcome, Timestamp};
use super::resource::{PlacementConstraint, Resource};
use super::security_group::{validate_rules, SecurityGroupError, SecurityGroupRule};

/// The result kept from the result file, in bytes.
pub const MAX_RESULT_BYTES: usize = 10 * 1024;
/// Largest annotation accepted, in bytes.
pub const MAX_ANNOTATION_BYTES: usize = 10 * 1024;
/// Rejections by cells after which a task fails.
pub const DEFAULT_MAX_REJECTIONS: u32 = 3;
/// Failure reason of a cancelled task.
pub const CANCELLED: &str = "task was cancelled";
/// Failure reason of a task whose cell vanished.
pub const CELL_DISAPPEARED: &str = "cell disappeared before completion";
/// Failure reason of a task pending too long.
pub const NOT_STARTED_IN_TIME: &str = "not started within time limit";

/// A task change the lifecycle refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskError {
    /// Not an edge of the lifecycle.
    #[error("task {task_guid}: cannot go from {from} to {to}")]
    IllegalTransition {
        /// The task.
        task_guid: String,
        /// Current state.
        from: TaskState,
        /// Refused state.
        to: TaskState,
    },
    /// The task runs on another cell.
    #[error("task {task_guid}: runs on cell {cell_id:?}, not on {caller:?}")]
    CellMismatch {
        /// The task.
        task_guid: String,
        /// Its cell.
        cell_id: String,
        /// The cell that asked.
        caller: String,
    },
    /// Only a RESOLVING task may be deleted.
    #[error("task {task_guid}: only a RESOLVING task may be deleted, it is {state}")]
    NotDeletable {
        /// The task.
        task_guid: String,
        /// Its state.
        state: TaskState,
    },
    /// A required field is empty.
    #[error("task {task_guid:?}: {field} must not be empty")]
    Empty {
        /// The task.
        task_guid: String,
        /// The empty field.
        field: &'static str,
    },
    /// The annotation is above [`MAX_ANNOTATION_BYTES`].
    #[error("task {task_guid}: annotation of {bytes} bytes is above 10 KB")]
    Annotation {
        /// The task.
        task_guid: String,
        /// Its size.
        bytes: usize,
    },
    /// An egress rule is invalid.
    #[error("task {task_guid}: egress rule {index}: {source}")]
    EgressRule {
        /// The task.
        task_guid: String,
        /// The rule's position in `egress_rules`.
        index: usize,
        /// What is wrong with it.
        source: SecurityGroupError,
    },
}

/// Lifecycle states of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskState {
    /// Waiting for a cell.
    Pending,
    /// A cell runs it.
    Running,
    /// Done (`failed` says how); waits for the callback or a client.
    Completed,
    /// Its completion is being handled; deleted next.
    Resolving,
}

impl TaskState {
    /// The edges of the lifecycle.
    pub fn can_transition_to(self, to: TaskState) -> bool {
        use TaskState::*;
        matches!(
            (self, to),
            (Pending, Running | Completed)
                | (Running, Completed | Pending)
                | (Completed, Resolving)
                | (Resolving, Completed)
        )
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TaskState::Pending => "PENDING",
            TaskState::Running => "RUNNING",
            TaskState::Completed => "COMPLETED",
            TaskState::Resolving => "RESOLVING",
        })
    }
}

/// What a task runs and needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskDefinition {
    /// Root filesystem (`preloaded:cflinuxfs4`, `docker:///busybox`).
    pub rootfs: String,
    /// Memory limit in MB.
    #[serde(default)]
    pub memory_mb: u64,
    /// Disk limit in MB.
    #[serde(default)]
    pub disk_mb: u64,
    /// Process limit (0: the cell's default).
    #[serde(default)]
    pub max_pids: u32,
    /// Tags the placing cell must offer.
    #[serde(default)]
    pub placement_tags: Vec<String>,
    /// Environment of every process.
    #[serde(default)]
    pub env: Vec<EnvVar>,
    /// The recipe.
    pub action: Action,
    /// File in the container whose first 10 KB become the result.
    #[serde(default)]
    pub result_file: String,
    /// Where to POST the [`TaskCallback`] on completion.
    #[serde(default)]
    pub completion_callback_url: String,
    /// Opaque data for the client (at most 10 KB).
    #[serde(default)]
    pub annotation: String,
    /// Log stream (CF: the app guid).
    #[serde(default)]
    pub log_guid: String,
    /// Log source name (`STG`, `APP/TASK/migrate`).
    #[serde(default)]
    pub log_source: String,
    /// Metrics source id.
    #[serde(default)]
    pub metrics_guid: String,
    /// Outbound flows the container may open (Cloud Foundry's security
    /// groups); empty: none but replies.
    #[serde(default)]
    pub egress_rules: Vec<SecurityGroupRule>,
}

impl TaskDefinition {
    /// A definition running `action` on `rootfs`, everything else default.
    pub fn new(rootfs: impl Into<String>, action: Action) -> Self {
        Self {
            rootfs: rootfs.into(),
            memory_mb: 0,
            disk_mb: 0,
            max_pids: 0,
            placement_tags: Vec::new(),
            env: Vec::new(),
            action,
            result_file: String::new(),
            completion_callback_url: String::new(),
            annotation: String::new(),
            log_guid: String::new(),
            log_source: String::new(),
            metrics_guid: String::new(),
            egress_rules: Vec::new(),
        }
    }

    /// What it takes on a cell.
    pub fn resource(&self) -> Resource {
        Resource {
            memory_mb: self.memory_mb,
            disk_mb: self.disk_mb,
            max_pids: self.max_pids,
        }
    }

    /// Where it may run.
    pub fn placement_constraint(&self) -> PlacementConstraint {
        PlacementConstraint {
            rootfs: self.rootfs.clone(),
            placement_tags: self.placement_tags.clone(),
        }
    }
}

/// A task and its progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    /// Unique id.
    pub task_guid: String,
    /// Owner (`cf-app-staging`, `cf-tasks`).
    pub domain: String,
    /// What it runs.
    pub definition: TaskDefinition,
    /// Lifecycle state.
    pub state: TaskState,
    /// The cell running it (RUNNING, and COMPLETED after running).
    #[serde(default)]
    pub cell_id: String,
    /// Whether it failed (COMPLETED and after).
    #[serde(default)]
    pub failed: bool,
    /// Why it failed.
    #[serde(default)]
    pub failure_reason: String,
    /// First 10 KB of the result file.
    #[serde(default)]
    pub result: String,
    /// Times cells refused it.
    #[serde(default)]
    pub rejection_count: u32,
    /// Why a cell last refused it.
    #[serde(default)]
    pub rejection_reason: String,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
    /// When it first reached COMPLETED.
    #[serde(default)]
    pub first_completed_at: Option<Timestamp>,
}

/// The body POSTed to a task's completion callback URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskCallback {
    /// The task.
    pub task_guid: String,
    /// Whether it failed.
    pub failed: bool,
    /// Why.
    pub failure_reason: String,
    /// Its result.
    pub result: String,
    /// Its annotation.
    pub annotation: String,
    /// Its creation time.
    pub created_at: Timestamp,
}

/// The first [`MAX_RESULT_BYTES`] of `result`, cut at a character boundary.
pub fn truncate_result(result: &str) -> &str {
    if result.len() <= MAX_RESULT_BYTES {
        return result;
    }
    let mut end = MAX_RESULT_BYTES;
    while !result.is_char_boundary(end) {
        end -= 1;
    }
    &result[..end]
}

impl Task {
    /// A new PENDING task.
    pub fn new(
        task_guid: impl Into<String>,
        domain: impl Into<String>,
        definition: TaskDefinition,
        now: Timestamp,
    ) -> Self {
        Self {
            task_guid: task_guid.into(),
            domain: domain.into(),
            definition,
            state: TaskState::Pending,
            cell_id: String::new(),
            failed: false,
            failure_reason: String::new(),
            result: String::new(),
            rejection_count: 0,
            rejection_reason: String::new(),
            created_at: now,
            updated_at: now,
            first_completed_at: None,
        }
    }

    /// Checks what Diego checks before accepting a task.
    pub fn validate(&self) -> Result<(), TaskError> {
        let empty = |field| TaskError::Empty {
            task_guid: self.task_guid.clone(),
            field,
        };
        if self.task_guid.is_empty() {
            return Err(empty("task_guid"));
        }
        if self.domain.is_empty() {
            return Err(empty("domain"));
        }
        if self.definition.rootfs.is_empty() {
            return Err(empty("rootfs"));
        }
        let bytes = self.definition.annotation.len();
        if bytes > MAX_ANNOTATION_BYTES {
            return Err(TaskError::Annotation {
                task_guid: self.task_guid.clone(),
                bytes,
            });
        }
        validate_rules(&self.definition.egress_rules).map_err(|(index, source)| {
            TaskError::EgressRule {
                task_guid: self.task_guid.clone(),
                index,
                source,
            }
        })
    }

    fn check_edge(&self, to: TaskState) -> Result<(), TaskError> {
        if self.state.can_transition_to(to) {
            Ok(())
        } else {
            Err(TaskError::IllegalTransition {
                task_guid: self.task_guid.clone(),
                from: self.state,
                to,
            })
        }
    }

    fn check_cell(&self, caller: &str) -> Result<(), TaskError> {
        if self.cell_id == caller {
            Ok(())
        } else {
            Err(TaskError::CellMismatch {
                task_guid: self.task_guid.clone(),
                cell_id: self.cell_id.clone(),
                caller: caller.to_owned(),
            })
        }
    }

    fn enter(&mut self, state: TaskState, now: Timestamp) {
        self.state = state;
        self.updated_at = now;
    }

    /// A cell starts it: PENDING → RUNNING. Repeated by the same cell it is
    /// a no-op.
    pub fn start(&mut self, cell_id: &str, now: Timestamp) -> Result<Outcome, TaskError> {
        if self.state == TaskState::Running {
            self.check_cell(cell_id)?;
            return Ok(Outcome::Unchanged);
        }
        self.check_edge(TaskState::Running)?;
        self.cell_id = cell_id.to_owned();
        self.enter(TaskState::Running, now);
        Ok(Outcome::Changed)
    }

    fn finish(&mut self, failed: bool, reason: &str, result: &str, now: Timestamp) {
        self.failed = failed;
        self.failure_reason = if failed {
            reason.to_owned()
        } else {
            String::new()
        };
        self.result = truncate_result(result).to_owned();
        self.first_completed_at.get_or_insert(now);
        self.enter(TaskState::Completed, now);
    }

    /// Its cell reports the end: RUNNING → COMPLETED, keeping the first
    /// 10 KB of `result`.
    pub fn complete(
        &mut self,
        cell_id: &str,
        failed: bool,
        failure_reason: &str,
        result: &str,
        now: Timestamp,
    ) -> Result<Outcome, TaskError> {
        if self.state != TaskState::Running {
            return Err(TaskError::IllegalTransition {
                task_guid: self.task_guid.clone(),
                from: self.state,
                to: TaskState::Completed,
            });
        }
        self.check_cell(cell_id)?;
        self.finish(failed, failure_reason, result, now);
        Ok(Outcome::Changed)
    }

    /// It failed outside a cell (expired, cell lost, rejected too often):
    /// PENDING or RUNNING → COMPLETED with `failed`.
    pub fn fail(&mut self, reason: &str, now: Timestamp) -> Result<Outcome, TaskError> {
        self.check_edge(TaskState::Completed)?;
        self.finish(true, reason, "", now);
        Ok(Outcome::Changed)
    }

    /// A client cancels it: PENDING or RUNNING → COMPLETED, failed with
    /// [`CANCELLED`]. The caller tells the cell (if any) to stop it.
    pub fn cancel(&mut self, now: Timestamp) -> Result<Outcome, TaskError> {
        self.fail(CANCELLED, now)
    }

    /// A cell refused it: RUNNING (on that cell) or PENDING → PENDING with
    /// one more rejection; the `max_rejections`th fails it.
    pub fn reject(
        &mut self,
        cell_id: &str,
        reason: &str,
        max_rejections: u32,
        now: Timestamp,
    ) -> Result<Outcome, TaskError> {
        match self.state {
            TaskState::Pending => {}
            TaskState::Running => self.check_cell(cell_id)?,
            _ => self.check_edge(TaskState::Pending)?,
        }
        self.rejection_count = self.rejection_count.saturating_add(1);
        self.rejection_reason = reason.to_owned();
        self.cell_id.clear();
        if self.rejection_count >= max_rejections {
            let why = format!("task was rejected {} times: {reason}", self.rejection_count);
            self.finish(true, &why, "", now);
        } else {
            self.enter(TaskState::Pending, now);
        }
        Ok(Outcome::Changed)
    }

    /// Its completion is being handled (callback or client):
    /// COMPLETED → RESOLVING.
    pub fn resolve(&mut self, now: Timestamp) -> Result<Outcome, TaskError> {
        self.check_edge(TaskState::Resolving)?;
        self.enter(TaskState::Resolving, now);
        Ok(Outcome::Changed)
    }

    /// Its handler gave up or died: RESOLVING → COMPLETED, to be handled
    /// again.
    pub fn demote(&mut self, now: Timestamp) -> Result<Outcome, TaskError> {
        if self.state != TaskState::Resolving {
            return Err(TaskError::IllegalTransition {
                task_guid: self.task_guid.clone(),
                from: self.state,
                to: TaskState::Completed,
            });
        }
        self.enter(TaskState::Completed, now);
        Ok(Outcome::Changed)
    }

    /// Checks it may be deleted (RESOLVING); the caller deletes the record.
    pub fn delete(&self) -> Result<(), TaskError> {
        if self.state == TaskState::Resolving {
            Ok(())
        } else {
            Err(TaskError::NotDeletable {
                task_guid: self.task_guid.clone(),
                state: self.state,
            })
        }
    }

    /// The completion callback's body.
    pub fn callback(&self) -> TaskCallback {
        TaskCallback {
            task_guid: self.task_guid.clone(),
            failed: self.failed,
            failure_reason: self.failure_reason.clone(),
            result: self.result.clone(),
            annotation: self.definition.annotation.clone(),
            created_at: self.created_at,
        }
    }
}

#[cfg(test)]
#[path = "task_tests.rs"]
mod tests;
