//! The peer: plain runc doing create, start, wait, delete of `/bin/true`
//! on a busybox bundle (`runc spec`'s defaults, no disk limit), with the
//! same concurrency as the gardend workload, driven as a containerd shim
//! drives it. We are the child subreaper, so each container's init is
//! re-parented to us and its worker waits for exactly that pid.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

use crate::bundle::{self, Workdir};
use crate::driver::{reap_strays, Runtime};
use crate::interrupt::Interrupted;

/// Milliseconds of one runc cycle, per step.
#[derive(Debug, Clone)]
pub struct Cycle {
    pub create: f64,
    pub start: f64,
    /// From `start` returning to the init's exit status.
    pub wait: f64,
    pub delete: f64,
}

impl Cycle {
    pub fn total(&self) -> f64 {
        self.create + self.start + self.wait + self.delete
    }
}

/// runc with its state root on tmpfs and a bundle, driven by garden-bench's
/// driver; dropping it deletes any container left and removes both
/// directories.
pub struct Peer {
    runtime: Runtime,
    bundle: PathBuf,
    prefix: String,
    _work: Workdir,
    _state: Workdir,
}

impl Peer {
    pub fn new(runc: PathBuf, rootfs: &Path, prefix: &str) -> Result<Peer> {
        let work = Workdir::create()?;
        let state = Workdir::create_on_tmpfs()?;
        let bundle = work.path().join("bundle");
        bundle::make(&runc, rootfs, &bundle)?;
        Ok(Peer {
            runtime: Runtime::new("runc", runc, state.path())?,
            bundle,
            prefix: prefix.to_string(),
            _work: work,
            _state: state,
        })
    }

    /// `workers` threads, each doing `warmup` unrecorded and `cycles`
    /// measured cycles.
    pub fn run(
        &self,
        workers: u32,
        warmup: u32,
        cycles: u32,
        interrupted: &Interrupted,
    ) -> Result<Vec<Cycle>> {
        nix::sys::prctl::set_child_subreaper(true).context("becoming a child subreaper")?;
        let results: Vec<Result<Vec<Cycle>>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..workers)
                .map(|w| s.spawn(move || self.worker(w, warmup, cycles, interrupted)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow!("a runc worker panicked")))
                })
                .collect()
        });
        // Only now: a worker reaping strays could take another's init.
        reap_strays();
        let mut all = Vec::new();
        for r in results {
            all.extend(r?);
        }
        Ok(all)
    }

    fn worker(&self, w: u32, warmup: u32, cycles: u32, stop: &Interrupted) -> Result<Vec<Cycle>> {
        let mut out = Vec::with_capacity(cycles as usize);
        for i in 0..warmup + cycles {
            if stop.is_set() {
                bail!("stopped (interrupted, or another worker failed)");
            }
            let id = format!("{}-r{w}-{i}", self.prefix);
            match self.runtime.cycle(&self.bundle, &id, false) {
                Ok(c) if i >= warmup => {
                    let [create, start, wait, delete] = c.steps.map(ms);
                    out.push(Cycle {
                        create,
                        start,
                        wait,
                        delete,
                    });
                }
                Ok(_) => {}
                Err(e) => {
                    stop.set();
                    return Err(e);
                }
            }
        }
        Ok(out)
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.runtime.delete_leftovers();
    }
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
