//! The auction's side of the rep: the cell's state for bidding, and the
//! work it won (each LRP instance and Task reserved, then run, through the
//! executor; what could not be taken is answered with its reason).

use diego::auction::{CellState, LrpInstance};
use diego::rep::{LrpWork, TaskWork, WorkRequest, WorkResponse};

use super::events::{lrp_keys, task_guid};
use super::Rep;
use crate::executor::{lrp_tags, task_tags, ContainerState, ExecutorError, Resources, RunRequest};

const EVACUATING: &str = "the cell is evacuating";

/// A new instance guid: 16 random hex digits. Shorter than a UUID on
/// purpose: gardend names unix sockets after the handle and a process id
/// under its depot, and a 36-character handle pushes those paths past
/// the 108-byte `sun_path` limit on common depot paths.
fn instance_guid() -> String {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    hex::encode(&bytes[..8])
}

impl Rep {
    /// `GET /state`: capacity, what is free, and what runs here.
    pub fn cell_state(&self) -> CellState {
        let total = self.config.capacity();
        let remaining = self.executor.remaining_resources();
        let mut state = CellState {
            cell_id: self.config.cell_id.clone(),
            zone: self.config.zone.clone(),
            stacks: self.config.stack_names(),
            placement_tags: self.config.placement_tags.clone(),
            optional_placement_tags: self.config.optional_placement_tags.clone(),
            total,
            available: diego::auction::Capacity {
                memory_mb: remaining.memory_mb,
                disk_mb: remaining.disk_mb,
                containers: u32::try_from(remaining.containers).unwrap_or(u32::MAX),
            },
            evacuating: self.is_evacuating(),
            ..CellState::default()
        };
        for c in self.executor.list() {
            if matches!(
                c.state,
                ContainerState::Reserved | ContainerState::Initializing | ContainerState::Created
            ) {
                state.starting_containers += 1;
            }
            if let Some((key, _)) = lrp_keys(&c, "") {
                state.lrps.push(LrpInstance {
                    process_guid: key.process_guid,
                    index: key.index,
                });
            } else if let Some(guid) = task_guid(&c) {
                state.tasks.push(guid.to_owned());
            }
        }
        state
    }

    /// `POST /work`: starts what fits; answers the rest with reasons.
    pub fn accept_work(&self, work: WorkRequest) -> WorkResponse {
        let mut response = WorkResponse::default();
        for lrp in work.lrps {
            if self.is_evacuating() {
                response.failed_lrps.push((lrp.key, EVACUATING.into()));
                continue;
            }
            if let Err(error) = self.start_lrp(&lrp) {
                tracing::warn!(process_guid = %lrp.key.process_guid, index = lrp.key.index, %error, "LRP work refused");
                response.failed_lrps.push((lrp.key, error.to_string()));
            }
        }
        for task in work.tasks {
            if self.is_evacuating() {
                response
                    .failed_tasks
                    .push((task.task_guid, EVACUATING.into()));
                continue;
            }
            if let Err(error) = self.start_task(&task) {
                tracing::warn!(task_guid = %task.task_guid, %error, "task work refused");
                response
                    .failed_tasks
                    .push((task.task_guid, error.to_string()));
            }
        }
        response
    }

    /// Refuses a rootfs this cell cannot provide before reserving.
    fn check_rootfs(&self, guid: &str, rootfs: &str) -> Result<(), ExecutorError> {
        match self.executor.config().image_uri(rootfs) {
            Some(_) => Ok(()),
            None => Err(ExecutorError::UnknownStack {
                guid: guid.into(),
                rootfs: rootfs.into(),
            }),
        }
    }

    fn start_lrp(&self, work: &LrpWork) -> Result<(), ExecutorError> {
        let instance_guid = instance_guid();
        let (desired, index) = (&work.desired, work.key.index);
        self.check_rootfs(&instance_guid, &desired.rootfs)?;
        let mut tags = lrp_tags(desired, index, &instance_guid);
        // The slot's domain is the auction's word on it.
        tags.insert(
            crate::executor::tags::DOMAIN.into(),
            work.key.domain.clone(),
        );
        tags.insert(
            crate::executor::tags::PROCESS_GUID.into(),
            work.key.process_guid.clone(),
        );
        self.executor
            .reserve(&instance_guid, Resources::of_lrp(desired), tags)?;
        self.remember_log_key(&instance_guid, &desired.log_guid, &index.to_string());
        let request = RunRequest::for_lrp(desired, index, &instance_guid);
        self.run_or_release(&instance_guid, request)
    }

    fn start_task(&self, work: &TaskWork) -> Result<(), ExecutorError> {
        let guid = &work.task_guid;
        let def = &work.definition;
        self.check_rootfs(guid, &def.rootfs)?;
        self.executor
            .reserve(guid, Resources::of_task(def), task_tags(guid, &work.domain))?;
        self.remember_log_key(guid, &def.log_guid, "0");
        self.run_or_release(guid, RunRequest::for_task(def))
    }

    /// Runs a reserved container; on failure gives the reservation back.
    fn run_or_release(&self, guid: &str, request: RunRequest) -> Result<(), ExecutorError> {
        match self.executor.run(guid, request) {
            Ok(()) => Ok(()),
            Err(error) => {
                let executor = self.executor.clone();
                let guid = guid.to_owned();
                tokio::spawn(async move {
                    if let Err(e) = executor.delete(&guid).await {
                        tracing::warn!(%guid, error = %e, "releasing a refused reservation failed");
                    }
                });
                Err(error)
            }
        }
    }
}
