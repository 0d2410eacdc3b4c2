//! cgroup v1 (and hybrid hosts): one directory per mounted controller hierarchy.
//!
//! Control files are written directly rather than through cgroups-rs: its v1
//! hierarchy also creates the cgroup in `name=systemd`, reads the mount table
//! itself (so tests cannot inject a root) and hides the errno behind its own
//! error type. See the crate docs.

mod blkio;
mod cpu;
mod cpuset;
mod devices;
mod freezer;
mod hugetlb;
mod memory;
mod pids;

use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;

use crate::error::CgroupError;
use crate::files;
use crate::hierarchy::{Controller, V1Mount};
use crate::stats::CgroupStats;

/// The container's directory in one v1 hierarchy.
#[derive(Debug, Clone)]
struct V1Dir {
    mount: V1Mount,
    /// `mount_point/relative_path`.
    path: PathBuf,
}

/// A container's cgroup on v1: the same relative path in every managed hierarchy.
#[derive(Debug, Clone)]
pub(crate) struct V1Cgroup {
    rel: PathBuf,
    dirs: Vec<V1Dir>,
}

impl V1Cgroup {
    pub(crate) fn new(mounts: &[V1Mount], rel: &Path) -> V1Cgroup {
        // Attach order follows Controller::ALL (blkio before memory).
        let mut dirs: Vec<V1Dir> = mounts
            .iter()
            .map(|m| V1Dir {
                mount: m.clone(),
                path: m.mount_point.join(rel),
            })
            .collect();
        dirs.sort_by_key(|d| {
            d.mount
                .controllers
                .iter()
                .filter_map(|c| Controller::ALL.iter().position(|x| x == c))
                .min()
        });
        V1Cgroup {
            rel: rel.to_owned(),
            dirs,
        }
    }

    /// The directory of `controller`, if its hierarchy is mounted.
    pub(crate) fn dir(&self, controller: Controller) -> Option<&Path> {
        self.dirs
            .iter()
            .find(|d| d.mount.controllers.contains(&controller))
            .map(|d| d.path.as_path())
    }

    /// Like [`Self::dir`], but a missing hierarchy is an error naming the controller.
    pub(crate) fn require(&self, controller: Controller) -> Result<&Path, CgroupError> {
        self.dir(controller)
            .ok_or_else(|| CgroupError::ControllerUnavailable {
                controller: controller.name(),
                path: self.rel.clone(),
            })
    }

    pub(crate) fn exists(&self) -> bool {
        self.dirs.iter().any(|d| d.path.is_dir())
    }

    /// Creates the directory in every hierarchy and prepares cpuset. Returns the
    /// leaf directories that did not exist before (for rollback).
    pub(crate) fn create(&self) -> Result<Vec<PathBuf>, CgroupError> {
        let mut created = Vec::new();
        for dir in &self.dirs {
            match files::create_dir_all(&dir.path) {
                Ok(true) => created.push(dir.path.clone()),
                Ok(false) => {}
                Err(e) => {
                    files::remove_created(&created);
                    return Err(e);
                }
            }
        }
        if let Some(cpuset) = self
            .dirs
            .iter()
            .find(|d| d.mount.controllers.contains(&Controller::Cpuset))
        {
            if let Err(e) = cpuset::init_levels(&cpuset.mount.mount_point, &self.rel) {
                files::remove_created(&created);
                return Err(e);
            }
        }
        Ok(created)
    }

    /// Applies the OCI resources, controller by controller.
    pub(crate) fn apply(&self, r: &LinuxResources) -> Result<(), CgroupError> {
        if let Some(devices) = r.devices() {
            devices::apply(self, devices)?;
        }
        if let Some(memory) = r.memory() {
            memory::apply(self, memory)?;
        }
        if let Some(cpu) = r.cpu() {
            cpu::apply(self, cpu)?;
            cpuset::apply(self, cpu)?;
        }
        if let Some(p) = r.pids() {
            pids::apply(self, p)?;
        }
        if let Some(blkio) = r.block_io() {
            blkio::apply(self, blkio)?;
        }
        if let Some(limits) = r.hugepage_limits() {
            hugetlb::apply(self, limits)?;
        }
        if r.network().is_some() {
            tracing::warn!(cgroup = %self.rel.display(), "ignoring network resources: net_cls/net_prio are not managed");
        }
        if r.rdma().as_ref().is_some_and(|m| !m.is_empty()) {
            tracing::warn!(cgroup = %self.rel.display(), "ignoring rdma resources: the rdma controller is not managed");
        }
        if let Some(unified) = r.unified().as_ref().filter(|m| !m.is_empty()) {
            let keys: Vec<&String> = unified.keys().collect();
            return Err(CgroupError::InvalidResource {
                resource: "unified",
                value: format!("{keys:?}"),
                reason: "cgroup v2 files cannot be set on a cgroup v1 host",
            });
        }
        Ok(())
    }

    /// Moves the process into the cgroup in every hierarchy.
    pub(crate) fn add_pid(&self, pid: i32) -> Result<(), CgroupError> {
        let value = pid.to_string();
        for dir in &self.dirs {
            files::write(&dir.path, "cgroup.procs", &value)?;
        }
        Ok(())
    }

    /// Moves the calling thread into every hierarchy through `tasks`.
    pub(crate) fn join_self(&self) -> Result<(), CgroupError> {
        for dir in &self.dirs {
            files::write(&dir.path, "tasks", "0")?;
        }
        Ok(())
    }

    /// Whether any process is in the cgroup. Every process of ours joins all
    /// hierarchies, so one (pids, else the first) answers for all.
    pub(crate) fn populated(&self) -> Result<bool, CgroupError> {
        match self
            .dir(Controller::Pids)
            .or(self.dirs.first().map(|d| d.path.as_path()))
        {
            Some(dir) => files::populated_recursive(dir),
            None => Ok(false),
        }
    }

    /// Every process in any hierarchy's directory or below, sorted.
    pub(crate) fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        let mut pids = Vec::new();
        for dir in &self.dirs {
            files::procs_recursive(&dir.path, &mut pids)?;
        }
        pids.sort_unstable();
        pids.dedup();
        Ok(pids)
    }

    pub(crate) fn has_freezer(&self) -> bool {
        self.dir(Controller::Freezer).is_some()
    }

    pub(crate) fn freeze(&self) -> Result<(), CgroupError> {
        freezer::freeze(self.require(Controller::Freezer)?)
    }

    pub(crate) fn thaw(&self) -> Result<(), CgroupError> {
        freezer::thaw(self.require(Controller::Freezer)?)
    }

    /// Removes the directory (and any child cgroups) in every hierarchy, trying
    /// all of them and reporting the first failure.
    pub(crate) fn destroy(&self) -> Result<(), CgroupError> {
        let mut first_err = None;
        for dir in &self.dirs {
            if let Err(e) = files::remove_cgroup_dir(&dir.path) {
                tracing::warn!(error = %e, "removing a v1 cgroup directory failed");
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    pub(crate) fn oom_kill_count(&self) -> Result<u64, CgroupError> {
        files::read_keyed(
            self.require(Controller::Memory)?,
            "memory.oom_control",
            "oom_kill",
        )
    }

    pub(crate) fn stats(&self) -> Result<CgroupStats, CgroupError> {
        Ok(CgroupStats {
            memory: self
                .dir(Controller::Memory)
                .map(memory::stats)
                .transpose()?,
            cpu: self.dir(Controller::Cpuacct).map(cpu::stats).transpose()?,
            pids: self.dir(Controller::Pids).map(pids::stats).transpose()?,
        })
    }

    pub(crate) fn host_dirs(&self) -> Vec<(String, PathBuf)> {
        self.dirs
            .iter()
            .map(|d| (d.mount.name(), d.path.clone()))
            .collect()
    }
}

#[cfg(test)]
pub(crate) mod tests;
