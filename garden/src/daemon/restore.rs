//! Start-up: containers a previous daemon left are taken up again, those
//! that cannot be are destroyed (and logged), and leftovers that belong to
//! no container (runtime state, volumes) are removed.

use std::sync::Arc;

use super::container::Container;
use super::destroy::Steps;
use super::{lock, Garden};
use crate::runtime::state::Status;

impl Garden {
    pub(super) async fn restore(&self) {
        let handles = match self.inner.depot.handles() {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(error = %e, "cannot list the depot; nothing restored");
                return;
            }
        };
        let mut restored = 0;
        for handle in handles {
            match self.restore_one(&handle).await {
                Ok(c) => {
                    lock(&self.inner.containers).insert(handle.clone(), Arc::new(c));
                    self.restore_peas(&handle).await;
                    restored += 1;
                }
                Err(reason) => {
                    tracing::warn!(
                        handle,
                        reason,
                        "container cannot be restored; destroying it"
                    );
                    self.teardown(&handle, Steps::all()).await;
                }
            }
        }
        self.remove_orphans().await;
        let live = self.handles();
        let live: Vec<&str> = live.iter().map(String::as_str).collect();
        let dropped = self.inner.network.restore(&live).await;
        if !dropped.is_empty() {
            tracing::warn!(?dropped, "network records without a container removed");
        }
        tracing::info!(restored, "containers restored");
    }

    async fn restore_one(&self, handle: &str) -> Result<Container, String> {
        let record = self
            .inner
            .depot
            .load(handle)
            .map_err(|e| format!("its record is unusable: {e}"))?;
        let inspection = self
            .inner
            .runc
            .inspect(handle)
            .await
            .map_err(|e| format!("the runtime does not know it: {e}"))?;
        if inspection.status != Status::Running && !record.stopped {
            return Err(format!("its init is gone (status {})", inspection.status));
        }
        Ok(Container {
            handle: handle.to_string(),
            cgroup_path: inspection.record.cgroup_path.clone(),
            init_pid: inspection.record.pid,
            dir: self.inner.depot.dir(handle),
            record: std::sync::Mutex::new(record),
            gate: Arc::new(tokio::sync::RwLock::new(true)),
        })
    }

    /// Sidecars still running are watched again; those that ended while
    /// the daemon was away are removed.
    async fn restore_peas(&self, handle: &str) {
        for dir in super::pea::pea_dirs(&self.inner.depot.processes(handle)) {
            let running =
                super::process::keeper_alive(&dir) && crate::keeper::recorded_exit(&dir).is_none();
            if running {
                self.watch_pea(dir);
            } else {
                self.remove_pea(&dir).await;
            }
        }
    }

    /// Runtime containers and volumes without a depot directory (or, for a
    /// sidecar, a process directory) are what a crash in the middle of
    /// create or destroy left.
    async fn remove_orphans(&self) {
        let inner = &self.inner;
        let peas = self.pea_ids();
        let known = |h: &str| inner.depot.dir(h).exists() || peas.contains(h);
        if let Ok(ids) = inner.runc.library().root.list() {
            for id in ids.iter().filter(|id| !known(id)) {
                tracing::warn!(handle = id, "removing an orphaned runtime container");
                let log = inner.runc.root.join(format!(".{id}.delete.log"));
                let _ = inner.runc.delete(id, &log).await;
                let _ = std::fs::remove_file(log);
            }
        }
        let disk = inner.disk.clone();
        let volumes = super::create::blocking(move || disk.list())
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        for v in volumes.iter().filter(|v| !known(v)) {
            tracing::warn!(handle = v, "removing an orphaned volume");
            let disk = inner.disk.clone();
            let v = v.clone();
            let _ = super::create::blocking(move || disk.destroy(&v)).await;
        }
    }
}
