//! Destroy and Stop. Teardown undoes create step by step, in reverse, and
//! goes on past a failing step so nothing else leaks; create uses it to
//! undo a half-made container.

use std::time::{Duration, Instant};

use super::create::blocking;
use super::{lock, DaemonError, Garden};

/// Which create steps were taken (all of them for a finished container).
#[derive(Debug, Default, Clone, Copy)]
pub struct Steps {
    pub depot: bool,
    pub image: bool,
    pub volume: bool,
    pub mount: bool,
    pub runtime: bool,
    pub network: bool,
}

impl Steps {
    pub fn all() -> Steps {
        Steps {
            depot: true,
            image: true,
            volume: true,
            mount: true,
            runtime: true,
            network: true,
        }
    }
}

impl Garden {
    pub async fn destroy_container(&self, handle: &str) -> Result<(), DaemonError> {
        let container = self.container(handle)?;
        {
            // Wait for operations in flight; refuse new ones.
            let mut alive = container.gate.write().await;
            if !*alive {
                return Err(DaemonError::NotFound(handle.to_string()));
            }
            *alive = false;
        }
        lock(&self.inner.containers).remove(handle);
        let errors = self.teardown(handle, Steps::all()).await;
        match errors.into_iter().next() {
            None => {
                tracing::info!(handle, "container destroyed");
                Ok(())
            }
            Some(e) => Err(e),
        }
    }

    /// Undoes `steps` for `handle`; returns the errors met (already logged).
    pub(super) async fn teardown(&self, handle: &str, steps: Steps) -> Vec<DaemonError> {
        let inner = &self.inner;
        let mut errors = Vec::new();
        let dir = inner.depot.dir(handle);
        if steps.runtime {
            for pea in super::pea::pea_dirs(&inner.depot.processes(handle)) {
                self.remove_pea(&pea).await;
            }
            if let Err(e) = inner.runc.delete(handle, &dir.join("runc.log")).await {
                errors.push(e.into());
            }
        }
        if steps.network {
            if let Err(e) = inner.network.detach(handle).await {
                errors.push(e.into());
            }
        }
        // The processes are gone with the container; their keepers would
        // wait for a client forever.
        kill_keepers(&inner.depot.processes(handle));
        if steps.mount {
            let rootfs = inner.depot.bundle(handle).join("rootfs");
            match blocking(move || super::rootfs::unmount(&rootfs)).await {
                Ok(Err(e)) => errors.push(e.into()),
                Err(e) => errors.push(e),
                Ok(Ok(())) => {}
            }
        }
        if steps.volume {
            let disk = inner.disk.clone();
            let h = handle.to_string();
            match blocking(move || disk.destroy(&h)).await {
                Ok(Err(e)) => errors.push(e.into()),
                Err(e) => errors.push(e),
                Ok(Ok(())) => {}
            }
        }
        if steps.image {
            if let Err(e) = inner.images.release(handle) {
                errors.push(e.into());
            }
        }
        if steps.depot {
            if let Err(e) = inner.depot.remove(handle) {
                errors.push(e.into());
            }
        }
        for e in &errors {
            tracing::error!(handle, error = %e, "teardown step failed");
        }
        errors
    }

    /// Stop: TERM to every process, KILL after the stop timeout (at once
    /// with `kill`). The container stays, stopped.
    pub async fn stop_container(&self, handle: &str, kill: bool) -> Result<(), DaemonError> {
        let container = self.container(handle)?;
        let alive = container.gate.read().await;
        if !*alive {
            return Err(DaemonError::NotFound(handle.to_string()));
        }
        {
            let mut r = lock(&container.record);
            r.stopped = true;
            self.inner.depot.save(&r)?;
        }
        let runc = &self.inner.runc;
        if !kill {
            let _ = runc.kill_all(handle, libc::SIGTERM).await;
            let deadline = Instant::now() + self.inner.config.containers.stop_timeout;
            // Idle init ignores TERM; wait for everything else.
            while Instant::now() < deadline {
                match runc.pids(handle).await {
                    Ok(p) if p.iter().all(|&pid| pid == container.init_pid) => break,
                    Err(_) => break,
                    Ok(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        }
        match runc.kill_all(handle, libc::SIGKILL).await {
            Ok(()) => Ok(()),
            // Already stopped is what was asked for.
            Err(_) if !runc.running(handle).await => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// SIGKILLs the keeper of every process directory under `dir`, checking
/// the pid still belongs to a keeper of that directory.
pub(super) fn kill_keepers(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let pdir = e.path();
        let Some(pid) = crate::keeper::keeper_pid(&pdir) else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let ours = String::from_utf8_lossy(&cmdline).contains(&*pdir.to_string_lossy());
        if ours {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}
