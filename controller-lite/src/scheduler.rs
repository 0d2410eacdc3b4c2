//! The hand-off to the scheduler (Diego's BBS + auctioneer, a later issue).
//!
//! The controller describes work as [`TaskDefinition`]s (staging and
//! `run-task`) and [`DesiredLrp`]s (app processes) and hands them to a
//! [`Scheduler`]. Whoever runs a task reports its end through
//! [`crate::staging::Staging::task_completed`] (in process, or over the
//! internal HTTP API); cells report instances through
//! [`Scheduler::report_actual`]. [`RecordingScheduler`] is today's
//! implementation: it records the work in the database for a scheduler to
//! pick up, and keeps what cells report.

use std::collections::BTreeMap;

use diego::models::SecurityGroupRule;
use serde::{Deserialize, Serialize};

use crate::db::scheduler::{self as rows, ActualLrp};
use crate::db::{to_json, Db, DbError};

/// Task domain of staging tasks.
pub const STAGING_DOMAIN: &str = "cf-app-staging";
/// Task domain of `run-task` tasks.
pub const TASKS_DOMAIN: &str = "cf-tasks";

/// Errors from the scheduler.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// Its storage failed.
    #[error("scheduler: {0}")]
    Db(#[from] DbError),
    /// No such task or LRP.
    #[error("scheduler has no {0}")]
    Unknown(String),
    /// The Diego scheduler (BBS) refused or failed.
    #[error("scheduler: {0}")]
    Bbs(#[from] Box<crate::bbs::BbsError>),
}

/// A blob a cell downloads, with the checksums to verify.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobLocation {
    /// Where to GET it (internal API, needs the internal key).
    pub url: String,
    /// SHA-256 hex.
    pub sha256: String,
    /// SHA-1 hex.
    pub sha1: String,
    /// Size in bytes.
    pub size: u64,
}

/// A buildpack given to a staging task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildpackSpec {
    /// Name (admin buildpack) or URL.
    pub name: String,
    /// Cache key (`/tmp/buildpacks/<hash of key>`).
    pub key: String,
    /// The zip, for admin buildpacks.
    pub blob: Option<BlobLocation>,
    /// Named by the user: skip detect.
    pub skip_detect: bool,
}

/// What a task runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TaskAction {
    /// Buildpack staging (REFERENCE §3).
    BuildpackStaging {
        /// App bits.
        package: BlobLocation,
        /// Buildpacks in order (empty never: detection gets every admin buildpack).
        buildpacks: Vec<BuildpackSpec>,
        /// Previous buildpack cache.
        buildpack_cache: Option<BlobLocation>,
        /// Where to POST the droplet tgz.
        droplet_upload_url: String,
        /// Where to POST the new buildpack cache tgz.
        buildpack_cache_upload_url: String,
        /// The buildpack lifecycle bundle (`builder`), extracted into
        /// `/tmp/lifecycle`.
        #[serde(default)]
        lifecycle: Option<BlobLocation>,
    },
    /// Docker staging (REFERENCE §4): fetch the image config.
    DockerStaging {
        /// Image reference.
        image: String,
        /// The docker lifecycle bundle (`docker-builder`).
        #[serde(default)]
        lifecycle: Option<BlobLocation>,
        /// Registries reached over plain HTTP or unverified TLS.
        #[serde(default)]
        insecure_registries: Vec<String>,
    },
    /// A one-off command in the app's droplet.
    Run {
        /// Droplet (buildpack apps).
        droplet: Option<BlobLocation>,
        /// Image (docker apps).
        docker_image: Option<String>,
        /// The command.
        command: String,
    },
}

/// A Task for the scheduler to place on a cell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskDefinition {
    /// Task guid (a build's or app task's guid).
    pub task_guid: String,
    /// [`STAGING_DOMAIN`] or [`TASKS_DOMAIN`].
    pub domain: String,
    /// App the task belongs to.
    pub app_guid: String,
    /// Stack (root filesystem); `None` for docker.
    pub stack: Option<String>,
    /// Memory limit.
    pub memory_mb: i64,
    /// Disk limit.
    pub disk_mb: i64,
    /// Environment.
    pub env: BTreeMap<String, String>,
    /// Log-cache source id of its output.
    pub log_source_id: String,
    /// Log source type (`STG`, `APP/TASK/<name>`).
    pub log_source_type: String,
    /// File whose first 10 KB become the result.
    pub result_file: Option<String>,
    /// What to run.
    pub action: TaskAction,
    /// Unix time after which the task fails if not complete.
    pub deadline: i64,
    /// Outbound flows the task's container may open (staging:
    /// `[staging] egress_rules`, run-task: `[apps] egress_rules`).
    #[serde(default)]
    pub egress_rules: Vec<SecurityGroupRule>,
}

/// Health check of an LRP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    /// `port`, `http` or `process`.
    pub kind: String,
    /// Endpoint of `http` checks.
    pub endpoint: Option<String>,
    /// Startup timeout in seconds.
    pub timeout_secs: Option<i64>,
    /// Per-check timeout in seconds.
    pub invocation_timeout_secs: Option<i64>,
}

/// A long-running process the scheduler keeps running.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredLrp {
    /// Process guid (stable across restarts of the app).
    pub process_guid: String,
    /// App.
    pub app_guid: String,
    /// Process type.
    pub process_type: String,
    /// Changes when running instances must be replaced.
    pub version: String,
    /// Desired instances.
    pub instances: i64,
    /// Memory per instance.
    pub memory_mb: i64,
    /// Disk per instance.
    pub disk_mb: i64,
    /// Stack; `None` for docker.
    pub stack: Option<String>,
    /// Droplet (buildpack apps).
    pub droplet: Option<BlobLocation>,
    /// Image (docker apps).
    pub docker_image: Option<String>,
    /// Start command.
    pub start_command: String,
    /// Environment (user variables and `VCAP_APPLICATION`).
    pub env: BTreeMap<String, String>,
    /// Container ports.
    pub ports: Vec<u16>,
    /// Health check.
    pub health_check: HealthCheck,
    /// Routes (`host.domain/path`).
    pub routes: Vec<String>,
    /// Log-cache source id.
    pub log_source_id: String,
    /// Outbound flows the instances may open (`[apps] egress_rules`).
    #[serde(default)]
    pub egress_rules: Vec<SecurityGroupRule>,
}

/// What the controller needs from a scheduler. Calls are synchronous and
/// idempotent; async callers run them on the blocking pool.
pub trait Scheduler: Send + Sync {
    /// Queues a task.
    fn submit_task(&self, task: &TaskDefinition) -> Result<(), SchedulerError>;
    /// Cancels a task (absent or finished is fine).
    fn cancel_task(&self, task_guid: &str) -> Result<(), SchedulerError>;
    /// Creates or replaces a desired LRP.
    fn desire_lrp(&self, lrp: &DesiredLrp) -> Result<(), SchedulerError>;
    /// Changes the instance count of a desired LRP.
    fn scale_lrp(&self, process_guid: &str, instances: i64) -> Result<(), SchedulerError>;
    /// Stops and forgets an LRP.
    fn remove_lrp(&self, process_guid: &str) -> Result<(), SchedulerError>;
    /// Instances of an LRP as last reported.
    fn actual_lrps(&self, process_guid: &str) -> Result<Vec<ActualLrp>, SchedulerError>;
    /// A cell's report about one instance.
    fn report_actual(&self, actual: &ActualLrp) -> Result<(), SchedulerError>;
    /// Tasks waiting for a cell, oldest first.
    fn pending_tasks(&self) -> Result<Vec<TaskDefinition>, SchedulerError>;
}

/// Records work in the controller's database (tables `scheduler_tasks`,
/// `desired_lrps`, `actual_lrps`) for a scheduler to place.
#[derive(Clone)]
pub struct RecordingScheduler {
    db: Db,
}

impl RecordingScheduler {
    /// A recording scheduler on `db`.
    pub fn new(db: Db) -> Self {
        Self { db }
    }
}

impl Scheduler for RecordingScheduler {
    fn submit_task(&self, task: &TaskDefinition) -> Result<(), SchedulerError> {
        let json = to_json(task);
        self.db
            .write_blocking(|tx| rows::insert_task(tx, &task.task_guid, &task.domain, &json))?;
        tracing::info!(task_guid = %task.task_guid, domain = %task.domain, "task submitted");
        Ok(())
    }

    fn cancel_task(&self, task_guid: &str) -> Result<(), SchedulerError> {
        self.db.write_blocking(|tx| {
            rows::complete_task(tx, task_guid, true, Some("task was cancelled"), None)
        })?;
        Ok(())
    }

    fn desire_lrp(&self, lrp: &DesiredLrp) -> Result<(), SchedulerError> {
        let json = to_json(lrp);
        self.db.write_blocking(|tx| {
            rows::upsert_desired(tx, &lrp.process_guid, &lrp.app_guid, lrp.instances, &json)
        })?;
        tracing::info!(process_guid = %lrp.process_guid, instances = lrp.instances, "lrp desired");
        Ok(())
    }

    fn scale_lrp(&self, process_guid: &str, instances: i64) -> Result<(), SchedulerError> {
        if !self
            .db
            .write_blocking(|tx| rows::scale_desired(tx, process_guid, instances))?
        {
            return Err(SchedulerError::Unknown(format!(
                "desired LRP {process_guid}"
            )));
        }
        Ok(())
    }

    fn remove_lrp(&self, process_guid: &str) -> Result<(), SchedulerError> {
        self.db
            .write_blocking(|tx| rows::remove_desired(tx, process_guid))?;
        Ok(())
    }

    fn actual_lrps(&self, process_guid: &str) -> Result<Vec<ActualLrp>, SchedulerError> {
        Ok(self.db.read_blocking(|c| rows::actuals(c, process_guid))?)
    }

    fn report_actual(&self, actual: &ActualLrp) -> Result<(), SchedulerError> {
        if !self.db.write_blocking(|tx| rows::put_actual(tx, actual))? {
            return Err(SchedulerError::Unknown(format!(
                "desired LRP {} with index {}",
                actual.process_guid, actual.index
            )));
        }
        Ok(())
    }

    fn pending_tasks(&self) -> Result<Vec<TaskDefinition>, SchedulerError> {
        let rows = self
            .db
            .read_blocking(|c| rows::tasks_in_state(c, "PENDING"))?;
        rows.iter()
            .map(|r| {
                crate::db::from_json("scheduler_tasks.definition", &r.definition)
                    .map_err(SchedulerError::from)
            })
            .collect()
    }
}
