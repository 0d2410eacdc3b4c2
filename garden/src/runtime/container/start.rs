//! `start`: one byte into the exec FIFO releases the waiting init.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use super::super::hooks;
use super::super::oci_state;
use super::super::state::{Status, FIFO_FILE};
use super::{ContainerError, Runtime};

impl Runtime {
    pub fn start(&self, id: &str) -> Result<(), ContainerError> {
        let c = self.inspect_status(id)?;
        if c.status != Status::Created {
            return Err(ContainerError::WrongStatus {
                id: id.into(),
                status: c.status,
                wanted: "only a created container can be started",
            });
        }
        let fifo = self.root.dir(id).join(FIFO_FILE);
        let start_err = |source| ContainerError::Start {
            id: id.into(),
            source,
        };
        // Non-blocking: if init died there is no reader and this fails at
        // once (ENXIO) instead of hanging.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&fifo)
            .map_err(start_err)?;
        f.write_all(b"0").map_err(start_err)?;
        drop(f);
        // The FIFO's absence is what marks the container as started.
        std::fs::remove_file(&fifo).map_err(start_err)?;
        if !c.record.has_poststart {
            return Ok(());
        }
        let spec = self.spec(id)?;
        if let Some(poststart) = spec.hooks().as_ref().and_then(|h| h.poststart().clone()) {
            let state = oci_state::render(&c.record, Status::Running);
            hooks::run_all("poststart", &poststart, &state)?;
        }
        Ok(())
    }

    /// The spec the container was created with.
    pub fn spec(&self, id: &str) -> Result<oci_spec::runtime::Spec, ContainerError> {
        let path = self.root.dir(id).join(super::super::state::CONFIG_FILE);
        let bytes = std::fs::read(&path).map_err(|source| ContainerError::Config {
            path: path.clone(),
            source,
        })?;
        serde_json::from_slice(&bytes).map_err(|e| ContainerError::Config {
            path,
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })
    }
}
