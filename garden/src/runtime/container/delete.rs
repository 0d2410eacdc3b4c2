//! `delete`: stop what still runs (with `force`), run poststop hooks, remove
//! the cgroup and the record.

use std::time::{Duration, Instant};

use garden_cgroups::Cgroup;

use super::super::hooks;
use super::super::oci_state;
use super::super::state::{self, Status};
use super::{ContainerError, Runtime};

const KILL_GRACE: Duration = Duration::from_secs(10);

impl Runtime {
    pub fn delete(&self, id: &str, force: bool) -> Result<(), ContainerError> {
        let c = self.inspect_status(id)?;
        if c.status == Status::Running && !force {
            return Err(ContainerError::WrongStatus {
                id: id.into(),
                status: c.status,
                wanted: "stop it first or use --force",
            });
        }
        let cg_err = |source| ContainerError::Cgroup {
            id: id.into(),
            source,
        };
        let cgroup = Cgroup::open(&c.record.cgroup_path).ok();
        if c.status != Status::Stopped {
            match &cgroup {
                Some(cg) => cg.kill_all().map_err(cg_err)?,
                None => {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(c.record.pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
            let deadline = Instant::now() + KILL_GRACE;
            while state::init_alive(&c.record) {
                if Instant::now() > deadline {
                    return Err(ContainerError::StuckProcesses {
                        id: id.into(),
                        secs: KILL_GRACE.as_secs(),
                    });
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        if let Some(cg) = &cgroup {
            // Processes that outlived init (no pid namespace) go too.
            if cg.populated().unwrap_or(true) {
                cg.kill_all().map_err(cg_err)?;
            }
            cg.destroy().map_err(cg_err)?;
        }
        let spec = if c.record.has_poststop {
            self.spec(id).ok()
        } else {
            None
        };
        if let Some(spec) = spec {
            if let Some(poststop) = spec.hooks().as_ref().and_then(|h| h.poststop().clone()) {
                let state = oci_state::render(&c.record, Status::Stopped);
                // Poststop failures are logged, never fatal (OCI).
                if let Err(e) = hooks::run_all("poststop", &poststop, &state) {
                    tracing::warn!(container = id, error = %e, "poststop hook failed");
                }
            }
        }
        self.root.remove(id)?;
        Ok(())
    }
}
