//! What the executor is asked for and what it tells: resources, the run
//! request (image, recipe, health checks), and a container's record.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use diego::models::action::Action;
use diego::models::check::CheckDefinition;
use diego::models::SecurityGroupRule;
use serde::{Deserialize, Serialize};

use super::state::ContainerState;

/// What one container takes from the cell (besides a container slot).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Resources {
    /// Memory limit in MB (0: no limit, and nothing reserved).
    pub memory_mb: u64,
    /// Disk limit in MB of the container's own writes (0: no limit).
    pub disk_mb: u64,
    /// Process limit (0: the executor's default).
    pub max_pids: u64,
}

/// Where a container's output goes: the app (or task) guid and the source
/// name the controller shows (`APP/PROC/WEB`, `STG`, `APP/TASK/migrate`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogConfig {
    /// The app or task guid the lines belong to.
    pub guid: String,
    /// Default source type of every line (a Run step may name its own).
    pub source_name: String,
    /// The instance index (or any instance name), shown with the source.
    pub source_instance: String,
}

/// A host path made visible in the container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindMount {
    /// Absolute path on the host.
    pub host_path: String,
    /// Absolute path in the container.
    pub container_path: String,
    /// Writable from the container.
    #[serde(default)]
    pub read_write: bool,
}

/// How to run a reserved container: its image, environment, recipe and
/// health checks. A request with a `monitor` is an LRP instance (the
/// action runs codependent with its health checks), without one a Task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRequest {
    /// The image: `preloaded:<stack>` (mapped through the executor's
    /// configured stacks), a rootfs path, a tarball or `docker://...`.
    pub rootfs: String,
    /// `NAME=value` pairs every process in the container gets.
    #[serde(default)]
    pub env: Vec<String>,
    /// Runs first (downloads, typically); its failure fails the container.
    #[serde(default)]
    pub setup: Option<Action>,
    /// The work itself.
    pub action: Action,
    /// Health checks (LRPs only); `Some` with no checks is the `process`
    /// health check: healthy as soon as the action starts.
    #[serde(default)]
    pub monitor: Option<CheckDefinition>,
    /// Time the health checks have to pass once (`None`: the executor's
    /// default, 60 s; capped at 180 s).
    #[serde(default)]
    pub start_timeout: Option<Duration>,
    /// A container without a user namespace (trusted work only).
    #[serde(default)]
    pub privileged: bool,
    /// Relative CPU weight (0: garden's default).
    #[serde(default)]
    pub cpu_weight: u64,
    /// Where the output goes.
    #[serde(default)]
    pub log: LogConfig,
    /// Extra host paths to mount.
    #[serde(default)]
    pub bind_mounts: Vec<BindMount>,
    /// Container ports to map to host ports (needs garden networking).
    #[serde(default)]
    pub ports: Vec<u16>,
    /// Tasks: a file in the container whose first 10 KB become the result.
    #[serde(default)]
    pub result_file: Option<String>,
    /// Outbound flows the container may open, given to garden as NetOut
    /// rules at create (empty: garden-net's default, replies only).
    #[serde(default)]
    pub egress_rules: Vec<SecurityGroupRule>,
}

impl RunRequest {
    /// A request running `action` in `rootfs`, with everything else default.
    pub fn new(rootfs: impl Into<String>, action: Action) -> Self {
        Self {
            rootfs: rootfs.into(),
            env: Vec::new(),
            setup: None,
            action,
            monitor: None,
            start_timeout: None,
            privileged: false,
            cpu_weight: 0,
            log: LogConfig::default(),
            bind_mounts: Vec::new(),
            ports: Vec::new(),
            result_file: None,
            egress_rules: Vec::new(),
        }
    }

    /// Which kind of work this request is.
    pub fn kind(&self) -> ContainerKind {
        if self.monitor.is_some() {
            ContainerKind::Lrp
        } else {
            ContainerKind::Task
        }
    }
}

/// Long-running instance or one-off task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContainerKind {
    /// A long-running process instance with health checks.
    Lrp,
    /// A one-off task with a result.
    Task,
}

impl ContainerKind {
    /// `lrp` or `task`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Lrp => "lrp",
            Self::Task => "task",
        }
    }
}

/// How a container ended.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunResult {
    /// The work failed (a step error, a crash, a failed health check).
    pub failed: bool,
    /// Why, for people: `Exited with status 3`, `Instance never healthy
    /// after 60s: ...`, `out of memory`.
    pub failure_reason: String,
    /// Tasks: the first 10 KB of the result file.
    pub result: String,
    /// Exit status of the action's process, when one exited.
    pub exit_status: Option<i32>,
    /// Ended by `stop` (or `delete`), not by itself.
    pub stopped: bool,
}

/// The last health check of an LRP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthStatus {
    /// It passed.
    pub healthy: bool,
    /// The check's complaint when it did not.
    pub message: String,
    /// When it ran.
    pub at: SystemTime,
}

/// A host port mapped to a container port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    /// Port on the cell.
    pub host_port: u32,
    /// Port in the container.
    pub container_port: u32,
}

/// The executor's record of one container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Container {
    /// The caller's id; also the garden handle.
    pub guid: String,
    /// Where it is in its life.
    pub state: ContainerState,
    /// What it takes from the cell.
    pub resources: Resources,
    /// The caller's labels (process guid, index, domain...), kept as garden
    /// properties `tag:<key>` so a restarted agent can tell what it was.
    pub tags: BTreeMap<String, String>,
    /// Known once `run` was called.
    pub kind: Option<ContainerKind>,
    /// Mapped ports (empty without garden networking).
    pub ports: Vec<PortMapping>,
    /// When it was reserved.
    pub allocated_at: SystemTime,
    /// When it last changed state.
    pub state_changed_at: SystemTime,
    /// The last health check (LRPs).
    pub health: Option<HealthStatus>,
    /// How it ended (`Completed` only).
    pub result: Option<RunResult>,
    /// Found in garden by `reconcile` rather than created by this process.
    pub adopted: bool,
}
