//! Staging orchestration: a build becomes a staging Task for the scheduler;
//! the cell uploads the droplet (and a new buildpack cache) and reports
//! completion through [`Staging::task_completed`], which moves the build to
//! STAGED (creating the droplet) or FAILED. A sweeper fails builds that
//! stage longer than the timeout. The same completion path finishes
//! `run-task` tasks, and the sweeper fails tasks past their deadline too
//! (`deadlines.rs`).
//!
//! Build states: `STAGING → STAGED | FAILED`, nothing else (checked in SQL:
//! only a STAGING build changes).

mod completion;
mod deadlines;

use completion::complete_build;

use std::path::Path;
use std::sync::Arc;

use diego::models::SecurityGroupRule;

use crate::blobstore::{BlobError, BlobKind, Blobstore};
use crate::db::builds::{self, Build};
use crate::db::{apps, buildpacks, packages, scheduler as rows, tasks, Db, DbError, StoredBlob};
use crate::lifecycles::{self, Lifecycles};
use crate::logcache::LogCache;
use crate::scheduler::{
    BlobLocation, BuildpackSpec, Scheduler, SchedulerError, TaskAction, TaskDefinition,
    STAGING_DOMAIN,
};
use crate::states::{BuildState, PackageState, TaskState};

/// Log source type of staging output.
pub const STAGING_LOG_SOURCE: &str = "STG";

/// Errors of staging orchestration.
#[derive(Debug, thiserror::Error)]
pub enum StagingError {
    /// Database failure.
    #[error(transparent)]
    Db(#[from] DbError),
    /// Blobstore failure.
    #[error(transparent)]
    Blob(#[from] BlobError),
    /// Scheduler failure.
    #[error(transparent)]
    Scheduler(#[from] SchedulerError),
    /// No build or task with this guid.
    #[error("no build or task {0}")]
    UnknownTask(String),
    /// The build is not STAGING any more.
    #[error("build {guid} is {state}, not STAGING")]
    NotStaging {
        /// Build guid.
        guid: String,
        /// Its state.
        state: String,
    },
    /// The request cannot be staged (unknown app, package not ready, ...).
    #[error("{0}")]
    Invalid(String),
}

/// Source of the current time, injected so the timeout is testable.
pub trait Clock: Send + Sync {
    /// Seconds since the Unix epoch.
    fn now(&self) -> i64;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        crate::db::now()
    }
}

/// How a task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskOutcome {
    /// Exit 0; `result` is the result file (staging: `result.json`).
    Succeeded {
        /// Result file contents.
        result: String,
    },
    /// Failed, with Diego's `failure_reason`.
    Failed {
        /// Why.
        reason: String,
    },
}

/// What completion did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    /// The build is STAGED with this droplet.
    BuildStaged {
        /// New droplet guid.
        droplet_guid: String,
    },
    /// The build FAILED.
    BuildFailed {
        /// The build's error.
        error: String,
    },
    /// An app task ended in this state.
    TaskFinished {
        /// `SUCCEEDED` or `FAILED`.
        state: String,
    },
    /// It had completed before; nothing changed.
    AlreadyCompleted,
}

/// Staging settings.
#[derive(Debug, Clone)]
pub struct StagingSettings {
    /// Staging timeout in seconds.
    pub timeout_secs: i64,
    /// App task (`run-task`) timeout in seconds.
    pub task_timeout_secs: i64,
    /// Staging task memory.
    pub memory_mb: i64,
    /// Staging task disk.
    pub disk_mb: i64,
    /// Base URL for blob download and upload links.
    pub base_url: String,
    /// The lifecycle bundles cells download for staging.
    pub lifecycles: Arc<Lifecycles>,
    /// Registries docker staging reaches without verified TLS.
    pub insecure_docker_registries: Vec<String>,
    /// What staging containers may reach (`[staging] egress_rules`).
    pub staging_egress_rules: Vec<SecurityGroupRule>,
    /// What app instances and run-task tasks may reach
    /// (`[apps] egress_rules`).
    pub app_egress_rules: Vec<SecurityGroupRule>,
}

/// Staging orchestration.
pub struct Staging {
    db: Db,
    blobs: Arc<dyn Blobstore>,
    logs: Arc<LogCache>,
    scheduler: Arc<dyn Scheduler>,
    clock: Arc<dyn Clock>,
    settings: StagingSettings,
}

/// Who asked for a build.
#[derive(Debug, Clone)]
pub struct Requester {
    /// User guid.
    pub guid: String,
    /// User name.
    pub name: String,
}

impl Staging {
    /// Staging on these components.
    pub fn new(
        db: Db,
        blobs: Arc<dyn Blobstore>,
        logs: Arc<LogCache>,
        scheduler: Arc<dyn Scheduler>,
        clock: Arc<dyn Clock>,
        settings: StagingSettings,
    ) -> Self {
        Self {
            db,
            blobs,
            logs,
            scheduler,
            clock,
            settings,
        }
    }

    /// The lifecycle bundles this controller serves.
    pub fn lifecycles(&self) -> &Lifecycles {
        &self.settings.lifecycles
    }

    /// What app instances and run-task tasks may reach (`[apps] egress_rules`).
    pub fn app_egress_rules(&self) -> &[SecurityGroupRule] {
        &self.settings.app_egress_rules
    }

    /// The download link and checksums of a blob.
    pub fn location(&self, kind: BlobKind, blob: &StoredBlob) -> BlobLocation {
        BlobLocation {
            url: format!(
                "{}/internal/v1/blobs/{}/{}",
                self.settings.base_url,
                kind.as_str(),
                blob.sha256
            ),
            sha256: blob.sha256.clone(),
            sha1: blob.sha1.clone(),
            size: blob.size,
        }
    }

    /// Where cells download the lifecycle of `kind`: with checksums when
    /// this controller has it; without, the staging log says why and the
    /// cell's download fails on the 404.
    fn lifecycle(&self, kind: lifecycles::Kind, app_guid: &str) -> BlobLocation {
        let url = format!(
            "{}/internal/v1/lifecycles/{}.tgz",
            self.settings.base_url,
            kind.name()
        );
        let (sha256, sha1, size) = match self.settings.lifecycles.get(kind) {
            Ok(b) => (b.sha256.clone(), b.sha1.clone(), b.size),
            Err(why) => {
                self.log(
                    app_guid,
                    &format!(
                        "The {} lifecycle is missing on the controller: {why}",
                        kind.name()
                    ),
                );
                (String::new(), String::new(), 0)
            }
        };
        BlobLocation {
            url,
            sha256,
            sha1,
            size,
        }
    }

    /// Writes an STG line; a failure to keep the line does not fail staging.
    fn log(&self, app_guid: &str, line: &str) {
        if let Err(e) = self
            .logs
            .emit(app_guid, STAGING_LOG_SOURCE, "0", line, false)
        {
            tracing::warn!(app_guid, error = %e, "could not keep a staging log line");
        }
    }

    fn buildpack_specs(
        &self,
        app: &apps::App,
        stack: &str,
    ) -> Result<Vec<BuildpackSpec>, StagingError> {
        let usable = self.db.read_blocking(|c| buildpacks::usable(c, stack))?;
        let spec = |bp: &buildpacks::Buildpack, skip_detect| BuildpackSpec {
            name: bp.name.clone(),
            key: bp.guid.clone(),
            blob: bp
                .blob
                .as_ref()
                .map(|b| self.location(BlobKind::Buildpack, b)),
            skip_detect,
        };
        if app.buildpacks.is_empty() {
            return Ok(usable.iter().map(|bp| spec(bp, false)).collect());
        }
        app.buildpacks
            .iter()
            .map(|name| {
                if let Some(bp) = usable.iter().find(|bp| &bp.name == name) {
                    Ok(spec(bp, true))
                } else if name.starts_with("http://") || name.starts_with("https://") {
                    Ok(BuildpackSpec {
                        name: name.clone(),
                        key: name.clone(),
                        blob: None,
                        skip_detect: true,
                    })
                } else {
                    Err(StagingError::Invalid(format!(
                        "buildpack {name:?} must be an existing admin buildpack or a valid git URI"
                    )))
                }
            })
            .collect()
    }

    /// Creates a STAGING build for a READY package and submits its staging
    /// task. Blocking (database and scheduler calls).
    pub fn create_build(&self, package_guid: &str, by: &Requester) -> Result<Build, StagingError> {
        let (package, app) = self.stageable(package_guid)?;
        let docker = package.kind == "docker";
        let stack = (!docker).then(|| app.stack.clone().unwrap_or_else(|| "cflinuxfs4".into()));
        let now = crate::db::now();
        let build = Build {
            guid: crate::db::new_guid(),
            app_guid: app.guid.clone(),
            package_guid: package.guid.clone(),
            state: BuildState::Staging.as_str().into(),
            error: None,
            lifecycle_type: if docker { "docker" } else { "buildpack" }.into(),
            buildpacks: if docker {
                Vec::new()
            } else {
                app.buildpacks.clone()
            },
            stack,
            droplet_guid: None,
            staging_memory_in_mb: self.settings.memory_mb,
            staging_disk_in_mb: self.settings.disk_mb,
            created_by_guid: by.guid.clone(),
            created_by_name: by.name.clone(),
            staging_deadline: self.clock.now() + self.settings.timeout_secs,
            created_at: now,
            updated_at: now,
        };
        let task = self.staging_task(&build, &package, &app)?;
        let b = build.clone();
        self.db
            .write_blocking(move |tx| builds::create_build(tx, &b))?;
        if let Err(e) = self.scheduler.submit_task(&task) {
            let msg = format!("StagingError - could not submit the staging task: {e}");
            self.db
                .write_blocking(|tx| builds::mark_failed(tx, &build.guid, &msg))?;
            return Err(e.into());
        }
        self.log(
            &app.guid,
            &format!("Staging app {} (build {})...", app.name, build.guid),
        );
        tracing::info!(build_guid = %build.guid, app_guid = %app.guid, "staging started");
        Ok(build)
    }

    /// A READY package and its app.
    fn stageable(
        &self,
        package_guid: &str,
    ) -> Result<(packages::Package, apps::App), StagingError> {
        let package = self
            .db
            .read_blocking(|c| packages::get(c, package_guid))?
            .ok_or_else(|| {
                StagingError::Invalid(format!(
                    "Unable to use package {package_guid}: it does not exist"
                ))
            })?;
        if package.state != PackageState::Ready.as_str() {
            return Err(StagingError::Invalid(format!(
                "Unable to stage package in state {}",
                package.state
            )));
        }
        let app = self
            .db
            .read_blocking(|c| apps::get_app(c, &package.app_guid))?
            .ok_or_else(|| StagingError::Invalid("the package's app no longer exists".into()))?;
        Ok((package, app))
    }

    /// The staging task of a build.
    fn staging_task(
        &self,
        build: &Build,
        package: &packages::Package,
        app: &apps::App,
    ) -> Result<TaskDefinition, StagingError> {
        let docker = build.lifecycle_type == "docker";
        let action = if docker {
            TaskAction::DockerStaging {
                image: package.docker_image.clone().unwrap_or_default(),
                lifecycle: Some(self.lifecycle(lifecycles::Kind::Docker, &app.guid)),
                insecure_registries: self.settings.insecure_docker_registries.clone(),
            }
        } else {
            let blob = package
                .blob
                .as_ref()
                .ok_or_else(|| StagingError::Invalid("package has no bits".into()))?;
            let stack = build.stack.clone().unwrap_or_default();
            let cache = self
                .db
                .read_blocking(|c| builds::buildpack_cache(c, &app.guid, &stack))?;
            let upload = |what: &str| {
                format!(
                    "{}/internal/v1/staging/{}/{what}",
                    self.settings.base_url, build.guid
                )
            };
            TaskAction::BuildpackStaging {
                package: self.location(BlobKind::Package, blob),
                buildpacks: self.buildpack_specs(app, &stack)?,
                buildpack_cache: cache.map(|c| self.location(BlobKind::BuildpackCache, &c)),
                droplet_upload_url: upload("droplet"),
                buildpack_cache_upload_url: upload("buildpack_cache"),
                lifecycle: Some(self.lifecycle(lifecycles::Kind::Buildpack, &app.guid)),
            }
        };
        let mut env = app.environment.clone();
        if let Some(s) = &build.stack {
            env.insert("CF_STACK".into(), s.clone());
        }
        env.insert(
            "MEMORY_LIMIT".into(),
            format!("{}m", self.settings.memory_mb),
        );
        Ok(TaskDefinition {
            task_guid: build.guid.clone(),
            domain: STAGING_DOMAIN.into(),
            app_guid: app.guid.clone(),
            stack: build.stack.clone(),
            memory_mb: self.settings.memory_mb,
            disk_mb: self.settings.disk_mb,
            env,
            log_source_id: app.guid.clone(),
            log_source_type: STAGING_LOG_SOURCE.into(),
            result_file: Some("/tmp/result.json".into()),
            action,
            deadline: build.staging_deadline,
            egress_rules: self.settings.staging_egress_rules.clone(),
        })
    }

    /// Stores a droplet a cell uploaded for a STAGING build.
    pub fn store_droplet(&self, build_guid: &str, src: &Path) -> Result<StoredBlob, StagingError> {
        let build = self.staging_build(build_guid)?;
        let blob = self.blobs.put_file(BlobKind::Droplet, src)?;
        let b = blob.clone();
        self.db
            .write_blocking(|tx| builds::put_staging_upload(tx, &build.guid, &b))?;
        self.log(
            &build.app_guid,
            &format!("Uploaded droplet ({} bytes)", blob.size),
        );
        Ok(blob)
    }

    /// Stores the new buildpack cache of a STAGING build's app and stack.
    pub fn store_buildpack_cache(
        &self,
        build_guid: &str,
        src: &Path,
    ) -> Result<StoredBlob, StagingError> {
        let build = self.staging_build(build_guid)?;
        let stack = build.stack.clone().unwrap_or_default();
        let blob = self.blobs.put_file(BlobKind::BuildpackCache, src)?;
        let b = blob.clone();
        self.db
            .write_blocking(|tx| builds::put_buildpack_cache(tx, &build.app_guid, &stack, &b))?;
        Ok(blob)
    }

    fn staging_build(&self, guid: &str) -> Result<Build, StagingError> {
        let build = self
            .db
            .read_blocking(|c| builds::get_build(c, guid))?
            .ok_or_else(|| StagingError::UnknownTask(guid.to_owned()))?;
        if build.state != "STAGING" {
            return Err(StagingError::NotStaging {
                guid: guid.to_owned(),
                state: build.state,
            });
        }
        Ok(build)
    }

    /// The completion path: a task (staging or `run-task`) ended.
    pub fn task_completed(
        &self,
        task_guid: &str,
        outcome: TaskOutcome,
    ) -> Result<Completion, StagingError> {
        let guid = task_guid.to_owned();
        let completion = self.db.write_blocking(|tx| {
            let (failed, reason, result) = match &outcome {
                TaskOutcome::Succeeded { result } => (false, None, Some(result.as_str())),
                TaskOutcome::Failed { reason } => (true, Some(reason.as_str()), None),
            };
            if !rows::complete_task(tx, &guid, failed, reason, result)? {
                return match rows::get_task(tx, &guid)? {
                    Some(_) => Ok(Some(Completion::AlreadyCompleted)),
                    None => Ok(None),
                };
            }
            if let Some(build) = builds::get_build(tx, &guid)? {
                return complete_build(tx, &build, &outcome).map(Some);
            }
            if tasks::get(tx, &guid)?.is_some() {
                let (state, reason) = match &outcome {
                    TaskOutcome::Succeeded { .. } => (TaskState::Succeeded, None),
                    TaskOutcome::Failed { reason } => (TaskState::Failed, Some(reason.as_str())),
                };
                tasks::transition(tx, &guid, state, reason)?;
                return Ok(Some(Completion::TaskFinished {
                    state: state.as_str().into(),
                }));
            }
            Ok(Some(Completion::AlreadyCompleted))
        })?;
        let completion =
            completion.ok_or_else(|| StagingError::UnknownTask(task_guid.to_owned()))?;
        self.log_completion(task_guid, &completion)?;
        Ok(completion)
    }

    fn log_completion(&self, guid: &str, completion: &Completion) -> Result<(), StagingError> {
        let app_guid = match self.db.read_blocking(|c| builds::get_build(c, guid))? {
            Some(b) => b.app_guid,
            None => return Ok(()),
        };
        match completion {
            Completion::BuildStaged { droplet_guid } => {
                self.log(
                    &app_guid,
                    &format!("Staging complete: droplet {droplet_guid}"),
                );
                tracing::info!(build_guid = guid, droplet_guid, "staged");
            }
            Completion::BuildFailed { error } => {
                self.log(&app_guid, &format!("Staging failed: {error}"));
                tracing::warn!(build_guid = guid, error, "staging failed");
            }
            _ => {}
        }
        Ok(())
    }
}
