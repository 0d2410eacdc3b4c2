//! `state`, `list` and `ps`.

use garden_cgroups::Cgroup;

use super::super::oci_state::{self, OciState};
use super::super::state::{self, ExitRecord, Record, Status, FIFO_FILE};
use super::{ContainerError, Runtime};

/// A container's record with its live status.
#[derive(Debug, Clone)]
pub struct Inspection {
    pub record: Record,
    pub status: Status,
    pub exit: Option<ExitRecord>,
    pub oom_killed: bool,
}

impl Inspection {
    pub fn oci(&self) -> OciState<'_> {
        oci_state::build(
            &self.record,
            self.status,
            self.exit.clone(),
            self.oom_killed,
        )
    }
}

impl Runtime {
    /// Loads a container and works out its status from the living system.
    pub fn inspect(&self, id: &str) -> Result<Inspection, ContainerError> {
        self.inspect_with(id, true)
    }

    /// [`Runtime::inspect`] without asking the cgroup about OOM kills
    /// (`oom_killed` stays false): for verbs that only need the status.
    pub(crate) fn inspect_status(&self, id: &str) -> Result<Inspection, ContainerError> {
        self.inspect_with(id, false)
    }

    fn inspect_with(&self, id: &str, oom: bool) -> Result<Inspection, ContainerError> {
        let record = self.root.load(id)?;
        let status = if state::init_alive(&record) {
            if self.root.dir(id).join(FIFO_FILE).exists() {
                Status::Created
            } else {
                Status::Running
            }
        } else {
            Status::Stopped
        };
        // Only the full inspection reports how the program ended.
        let exit = if oom { self.root.exit_record(id) } else { None };
        let oom_killed = oom
            && status == Status::Stopped
            && Cgroup::open(&record.cgroup_path)
                .and_then(|cg| cg.oom_kill_count())
                .is_ok_and(|n| n > 0);
        Ok(Inspection {
            record,
            status,
            exit,
            oom_killed,
        })
    }

    /// Every container, sorted by id. Records that cannot be read are
    /// skipped (a create in progress has no state.json yet).
    pub fn list(&self) -> Result<Vec<Inspection>, ContainerError> {
        Ok(self
            .root
            .list()?
            .iter()
            .filter_map(|id| self.inspect(id).ok())
            .collect())
    }

    /// Host pids of every process in the container.
    pub fn pids(&self, id: &str) -> Result<Vec<i32>, ContainerError> {
        let record = self.root.load(id)?;
        let cg = Cgroup::open(&record.cgroup_path).map_err(|source| ContainerError::Cgroup {
            id: id.into(),
            source,
        })?;
        // Sorted already.
        cg.pids().map_err(|source| ContainerError::Cgroup {
            id: id.into(),
            source,
        })
    }
}
