//! Sidecar processes with their own image ("peas", as Garden calls them).
//! A pea is a runtime container of its own: its image on its own overlay
//! and volume, in its own mount namespace and cgroup, joining the
//! container's user, network, ipc, uts and pid namespaces. Its process is
//! the pea's init, started under a keeper like any other process; when it
//! has exited, the pea's container, overlay, volume and image reference go.

use std::path::{Path, PathBuf};
use std::time::Duration;

use garden_api::types::{ContainerSpec, ProcessSpec};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::container::Container;
use super::create::{blocking, credentials, id_mapping, random_hex};
use super::depot::Record;
use super::files::User;
use super::process::{process_json, Defaults};
use super::spec::{container_spec, SpecInputs};
use super::{DaemonError, Garden};
use crate::keeper::PEA_BUNDLE;

/// In a process directory: marks a pea and names its parts.
pub(super) const PEA: &str = "pea.json";

/// How often a pea's keeper is checked for the process's exit.
const WATCH_INTERVAL: Duration = Duration::from_millis(250);

/// What a pea is made of. The runtime id also names its volume and its
/// hold on the image.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct PeaRecord {
    pub runtime_id: String,
}

impl Garden {
    /// Image, volume, overlay and bundle for a pea in `dir` (its process
    /// directory). Whatever was made is removed again on failure.
    pub(super) async fn prepare_pea(
        &self,
        container: &Container,
        record: &Record,
        spec: &ProcessSpec,
        dir: &Path,
    ) -> Result<PeaRecord, DaemonError> {
        let pea = PeaRecord {
            runtime_id: format!("pea-{}", random_hex()),
        };
        write_record(dir, &pea)?;
        match self.build_pea(container, record, spec, dir, &pea).await {
            Ok(()) => Ok(pea),
            Err(e) => {
                self.remove_pea(dir).await;
                Err(e)
            }
        }
    }

    async fn build_pea(
        &self,
        container: &Container,
        record: &Record,
        spec: &ProcessSpec,
        dir: &Path,
        pea: &PeaRecord,
    ) -> Result<(), DaemonError> {
        let inner = &self.inner;
        let privileged = record.spec.privileged;
        let mapping = id_mapping(privileged, record.root_host_id);
        let creds = credentials(&spec.image);
        let image = inner.images.pull(&spec.image.uri, creds, &mapping).await?;
        inner.images.acquire(&image, &pea.runtime_id)?;
        let disk = inner.disk.clone();
        let id = pea.runtime_id.clone();
        let usage = garden_disk::ImageUsage {
            bytes: image.size_bytes,
            inodes: image.inodes,
        };
        // The pea's writes are not counted against the container's disk limit.
        let volume = blocking(move || disk.create(&id, &Default::default(), usage)).await??;
        let bundle = dir.join(PEA_BUNDLE);
        let rootfs = bundle.join("rootfs");
        let (layers, r, owner) = (image.layers.clone(), rootfs.clone(), record.root_host_id);
        blocking(move || {
            super::rootfs::mount_overlay(&layers, &volume.upper, &volume.work, &r, owner)
        })
        .await??;

        let user_spec = if spec.user.is_empty() {
            image.config.user.clone().unwrap_or_default()
        } else {
            spec.user.clone()
        };
        let root = rootfs.clone();
        let user: User = blocking(move || super::files::lookup_user(&root, &user_spec)).await??;
        let no_env = Vec::new();
        let defaults = Defaults {
            env: [&image.config.env, &no_env],
            dir: image.config.working_dir.as_deref().unwrap_or_default(),
        };
        let process = process_json(&defaults, spec, &user);
        // For Attach and for people: the same process as in the bundle.
        let path = dir.join(crate::keeper::PROCESS);
        std::fs::write(&path, process.to_string()).map_err(|source| DaemonError::Io {
            action: "writing",
            path,
            source,
        })?;
        let oci = pea_spec(
            container,
            record,
            spec,
            &SpecInputs {
                handle: &pea.runtime_id,
                rootfs: &rootfs,
                cgroup_path: format!("/{}/{}", inner.config.runtime.cgroup_parent, pea.runtime_id),
                maximus: (!privileged).then_some(record.root_host_id),
                cgroup_v2: inner.cgroup_v2,
            },
            process,
        )?;
        let config = bundle.join("config.json");
        std::fs::write(&config, oci.to_string()).map_err(|source| DaemonError::Io {
            action: "writing",
            path: config,
            source,
        })
    }

    /// Removes everything a pea in `dir` holds, whatever state it is in;
    /// the process directory itself stays (it keeps the exit status).
    pub(super) async fn remove_pea(&self, dir: &Path) {
        // Claimed by renaming: of a watcher and a destroy, one removes.
        // What a crash leaves half-removed is an orphan at the next start.
        let claim = dir.join(".pea.removing");
        if std::fs::rename(dir.join(PEA), &claim).is_err() {
            return;
        }
        let pea = std::fs::read(&claim)
            .ok()
            .and_then(|b| serde_json::from_slice::<PeaRecord>(&b).ok());
        let Some(pea) = pea else {
            let _ = std::fs::remove_file(&claim);
            return;
        };
        let inner = &self.inner;
        let id = pea.runtime_id;
        if let Err(e) = inner.runc.delete(&id, &dir.join("pea-delete.log")).await {
            tracing::warn!(pea = id, error = %e, "deleting the sidecar's container");
        }
        let rootfs = dir.join(PEA_BUNDLE).join("rootfs");
        let r = blocking(move || super::rootfs::unmount(&rootfs)).await;
        warn_failed(
            &id,
            "unmounting the sidecar's rootfs",
            r.and_then(|r| Ok(r?)),
        );
        let disk = inner.disk.clone();
        let v = id.clone();
        let r = blocking(move || disk.destroy(&v)).await;
        warn_failed(
            &id,
            "destroying the sidecar's volume",
            r.and_then(|r| Ok(r?)),
        );
        if let Err(e) = inner.images.release(&id) {
            tracing::warn!(pea = id, error = %e, "releasing the sidecar's image");
        }
        let _ = std::fs::remove_file(&claim);
        tracing::info!(pea = id, "sidecar removed");
    }

    /// Removes the pea in `dir` once its process has exited (or its keeper
    /// is gone).
    pub(super) fn watch_pea(&self, dir: PathBuf) {
        let garden = self.clone();
        tokio::spawn(async move {
            loop {
                if !dir.join(PEA).exists() {
                    return;
                }
                let exited = crate::keeper::recorded_exit(&dir).is_some()
                    || !super::process::keeper_alive(&dir);
                if exited {
                    garden.remove_pea(&dir).await;
                    return;
                }
                tokio::time::sleep(WATCH_INTERVAL).await;
            }
        });
    }

    /// Runtime ids of every pea in the depot (they are no orphans).
    pub(super) fn pea_ids(&self) -> std::collections::HashSet<String> {
        let mut ids = std::collections::HashSet::new();
        for handle in self.inner.depot.handles().unwrap_or_default() {
            for dir in pea_dirs(&self.inner.depot.processes(&handle)) {
                if let Some(p) = read_record(&dir) {
                    ids.insert(p.runtime_id);
                }
            }
        }
        ids
    }
}

/// Removal goes on past a failing step; the failure is logged.
fn warn_failed(pea: &str, step: &str, result: Result<(), DaemonError>) {
    if let Err(e) = result {
        tracing::warn!(pea, error = %e, "{step}");
    }
}

/// Process directories under `processes` that hold a pea.
pub(super) fn pea_dirs(processes: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(processes) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join(PEA).exists())
        .collect()
}

pub(super) fn read_record(dir: &Path) -> Option<PeaRecord> {
    let text = std::fs::read(dir.join(PEA)).ok()?;
    serde_json::from_slice(&text).ok()
}

fn write_record(dir: &Path, pea: &PeaRecord) -> Result<(), DaemonError> {
    let path = dir.join(PEA);
    let tmp = dir.join(".pea.json.tmp");
    let body = serde_json::to_vec(pea).unwrap_or_default();
    std::fs::write(&tmp, body)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|source| DaemonError::Io {
            action: "writing",
            path,
            source,
        })
}

/// The container's spec made over for a pea: its own mount namespace and
/// cgroup (with the container's limits unless the process overrides them),
/// the container's other namespaces joined, the process as init.
fn pea_spec(
    container: &Container,
    record: &Record,
    spec: &ProcessSpec,
    inputs: &SpecInputs<'_>,
    process: serde_json::Value,
) -> Result<serde_json::Value, DaemonError> {
    let mut req: ContainerSpec = record.spec.clone();
    req.bind_mounts = spec.bind_mounts.clone();
    if let Some(o) = spec.override_container_limits {
        if o.memory.limit_in_bytes > 0 {
            req.limits.memory = o.memory;
        }
        if o.cpu.weight > 0 || o.cpu.limit_in_shares > 0 {
            req.limits.cpu = o.cpu;
        }
    }
    let mut oci = container_spec(&req, inputs)?;
    let ns = |kind: &str| format!("/proc/{}/ns/{kind}", container.init_pid);
    let mut namespaces = vec![
        json!({"type": "mount"}),
        json!({"type": "cgroup"}),
        json!({"type": "network", "path": ns("net")}),
        json!({"type": "ipc", "path": ns("ipc")}),
        json!({"type": "uts", "path": ns("uts")}),
        json!({"type": "pid", "path": ns("pid")}),
    ];
    if inputs.maximus.is_some() {
        namespaces.push(json!({"type": "user", "path": ns("user")}));
    }
    oci["linux"]["namespaces"] = json!(namespaces);
    oci["process"] = process;
    // The container's uts namespace already has its hostname.
    if let Some(o) = oci.as_object_mut() {
        o.remove("hostname");
    }
    if let Some(a) = oci["annotations"].as_object_mut() {
        a.remove("garden.init");
    }
    Ok(oci)
}
