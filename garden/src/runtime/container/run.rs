//! `run`: create, start, wait (forwarding signals), delete.

use nix::unistd::Pid;

use super::super::bundle::Bundle;
use super::super::process::create::{create_loaded, CreateError, CreateOptions};
use super::tty::{ConsoleListener, Proxy};
use super::wait::{catch_signals, wait_forwarding};
use super::{ContainerError, Runtime};

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub create: CreateOptions,
    /// Return once started; the container keeps running.
    pub detach: bool,
    /// Keep the container's record after it exits (runc `--keep`).
    pub keep: bool,
}

impl Runtime {
    /// Runs a container to completion; returns the shell status of its
    /// program (exit code, or 128 + signal).
    pub fn run(&self, opts: &RunOptions) -> Result<i32, ContainerError> {
        // Init is re-parented to us when stage 1 exits, so we can wait for it.
        nix::sys::prctl::set_child_subreaper(true).map_err(|source| ContainerError::Sys {
            step: "prctl(PR_SET_CHILD_SUBREAPER)",
            source,
        })?;
        let signals = if opts.detach {
            None
        } else {
            Some(catch_signals()?)
        };
        let t0 = std::time::Instant::now();
        let bundle = Bundle::load(&opts.create.bundle).map_err(CreateError::from)?;
        let terminal = bundle
            .spec
            .process()
            .as_ref()
            .and_then(|p| p.terminal())
            .unwrap_or(false);
        // A terminal without a console socket: we are the console (runc's
        // behaviour), unless detached, where nobody would be.
        let console = if terminal && !opts.detach && opts.create.console_socket.is_none() {
            std::fs::create_dir_all(self.root.path()).map_err(|source| {
                ContainerError::Console {
                    step: "creating the state root",
                    source,
                }
            })?;
            Some(ConsoleListener::bind(self.root.path(), &opts.create.id)?)
        } else {
            None
        };
        let mut create = opts.create.clone();
        if let Some(c) = &console {
            create.console_socket = Some(c.path().to_path_buf());
        }
        let record = create_loaded(&self.root, &create, bundle, t0)?;
        let proxy = console
            .as_ref()
            .map(|c| c.receive_master().and_then(Proxy::start))
            .transpose();
        let proxy = match proxy {
            Ok(p) => p,
            Err(e) => {
                let _ = self.delete(&record.id, true);
                return Err(e);
            }
        };
        drop(console);
        if let Err(e) = self.start(&record.id) {
            let _ = self.delete(&record.id, true);
            return Err(e);
        }
        let Some(signals) = signals else {
            return Ok(0);
        };
        let ended = wait_forwarding(Pid::from_raw(record.pid), &signals)?;
        if let Some(p) = proxy {
            p.finish();
        }
        let status = self
            .root
            .exit_record(&record.id)
            .filter(|r| r.exit_code.is_some() || r.signal.is_some())
            .map(|r| r.shell_status())
            .unwrap_or(ended.shell_status());
        if !opts.keep {
            self.delete(&record.id, true)?;
        }
        Ok(status)
    }

    pub fn create(
        &self,
        opts: &CreateOptions,
    ) -> Result<super::super::state::Record, ContainerError> {
        Ok(super::super::process::create::create(&self.root, opts)?)
    }
}
