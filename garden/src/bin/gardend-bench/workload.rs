//! The gardend workload: concurrent clients, each creating a container
//! from the cached image with a disk limit, running `/bin/true` in it
//! (`OutputStreams::NONE`, then wait) and destroying it, timed per call as
//! the client sees it.

use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use garden_api::client::{Client, OutputStreams};
use garden_api::types::{ContainerSpec, DiskLimitScope, ProcessSpec};

use crate::interrupt::Interrupted;

/// What every container is created with.
#[derive(Clone)]
pub struct Plan {
    /// `image.uri`: the busybox rootfs directory.
    pub image: String,
    /// `disk_limits.byte_hard`, exclusive scope.
    pub disk_limit: u64,
    /// Prefix of every handle (unique per run).
    pub prefix: String,
}

/// Client-observed milliseconds of one cycle.
#[derive(Debug, Clone)]
pub struct Cycle {
    pub handle: String,
    pub create: f64,
    /// Run of `/bin/true` until its exit status arrived.
    pub run: f64,
    pub destroy: f64,
}

impl Cycle {
    pub fn total(&self) -> f64 {
        self.create + self.run + self.destroy
    }
}

impl Plan {
    fn spec(&self, handle: &str) -> ContainerSpec {
        let mut spec = ContainerSpec {
            handle: handle.to_string(),
            ..ContainerSpec::default()
        };
        spec.image.uri = self.image.clone();
        spec.limits.disk.byte_hard = self.disk_limit;
        spec.limits.disk.scope = DiskLimitScope::Exclusive;
        spec
    }

    /// One create, run `/bin/true`, destroy.
    pub async fn cycle(&self, client: &Client, handle: &str) -> Result<Cycle> {
        let t0 = Instant::now();
        client
            .create(&self.spec(handle))
            .await
            .with_context(|| format!("creating {handle}"))?;
        let t1 = Instant::now();
        let run = async {
            let process = client.run(handle, &bin_true(), OutputStreams::NONE).await?;
            process.wait().await
        };
        let status = run.await;
        let t2 = Instant::now();
        // Destroy even when the run failed, so nothing is left behind.
        let destroyed = client.destroy(handle).await;
        let t3 = Instant::now();
        let status = status.with_context(|| format!("running /bin/true in {handle}"))?;
        destroyed.with_context(|| format!("destroying {handle}"))?;
        if status != 0 {
            bail!("/bin/true in {handle} exited with status {status}");
        }
        Ok(Cycle {
            handle: handle.to_string(),
            create: ms(t1 - t0),
            run: ms(t2 - t1),
            destroy: ms(t3 - t2),
        })
    }

    /// `clients` concurrent clients, each doing `warmup` unrecorded cycles
    /// then `creates` measured ones; stops early (with an error) when
    /// interrupted.
    pub async fn run(
        &self,
        client: &Client,
        clients: u32,
        warmup: u32,
        creates: u32,
        interrupted: &Interrupted,
    ) -> Result<Vec<Cycle>> {
        // One task polls every client: a RemoteProcess is not Sync, so a
        // client's future cannot be spawned; the clients are I/O-bound.
        let clients = (0..clients).map(|c| async move {
            let mut cycles = Vec::with_capacity(creates as usize);
            for i in 0..warmup + creates {
                if interrupted.is_set() {
                    return Err(anyhow!("stopped (interrupted, or another client failed)"));
                }
                let measured = i >= warmup;
                let kind = if measured { "m" } else { "w" };
                let handle = format!("{}-{c}-{kind}{i}", self.prefix);
                let cycle = match self.cycle(client, &handle).await {
                    Ok(cycle) => cycle,
                    Err(e) => {
                        interrupted.set();
                        return Err(e);
                    }
                };
                if measured {
                    cycles.push(cycle);
                }
            }
            Ok(cycles)
        });
        let mut all = Vec::new();
        let mut errors = Vec::new();
        for result in futures_util::future::join_all(clients).await {
            match result {
                Ok(cycles) => all.extend(cycles),
                Err(e) => errors.push(e),
            }
        }
        // Report the failure that stopped the others, not their stopping.
        let stopped = |e: &anyhow::Error| e.to_string().starts_with("stopped");
        match errors.iter().position(|e| !stopped(e)) {
            Some(i) => Err(errors.swap_remove(i)),
            None => errors.pop().map_or(Ok(all), Err),
        }
    }
}

fn bin_true() -> ProcessSpec {
    ProcessSpec {
        path: "/bin/true".into(),
        ..ProcessSpec::default()
    }
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
