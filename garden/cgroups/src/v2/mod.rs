//! cgroup v2: one directory under the cgroup2 mount.
//!
//! Control files are written directly rather than through cgroups-rs: its v2
//! hierarchy is hard-wired to `/sys/fs/cgroup` (tests cannot inject a root), it
//! maps swappiness onto `memory.swap.max`, and it has no `cgroup.kill` and no
//! device filter. See the crate docs.

mod cpu;
mod cpuset;
mod devices;
mod freezer;
mod hugetlb;
mod io;
mod memory;
mod pids;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;

use crate::error::CgroupError;
use crate::files;
use crate::stats::CgroupStats;

pub(crate) use devices::program::BpfInsn;

/// Controllers enabled for the subtree on the way down to a container's cgroup.
/// Only these: enabling e.g. `rdma` or `misc` everywhere has costs and no user.
const MANAGED: [&str; 6] = ["cpuset", "cpu", "io", "memory", "hugetlb", "pids"];

/// A container's cgroup on v2.
#[derive(Debug, Clone)]
pub(crate) struct V2Cgroup {
    root: PathBuf,
    rel: PathBuf,
    dir: PathBuf,
}

/// The leaf directory and the controllers available in it, handed to the
/// per-controller modules.
pub(super) struct Leaf<'a> {
    dir: &'a Path,
    controllers: Vec<String>,
}

impl Leaf<'_> {
    /// The directory, if `controller` is enabled for this cgroup.
    pub(super) fn require(&self, controller: &'static str) -> Result<&Path, CgroupError> {
        if self.controllers.iter().any(|c| c == controller) {
            Ok(self.dir)
        } else {
            Err(CgroupError::ControllerUnavailable {
                controller,
                path: self.dir.to_owned(),
            })
        }
    }
}

impl V2Cgroup {
    pub(crate) fn new(root: &Path, rel: &Path) -> V2Cgroup {
        V2Cgroup {
            root: root.to_owned(),
            rel: rel.to_owned(),
            dir: root.join(rel),
        }
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn exists(&self) -> bool {
        self.dir.is_dir()
    }

    /// Creates the directory and enables the managed controllers in every
    /// ancestor's `cgroup.subtree_control`, from the root down to the leaf's
    /// parent (never in the leaf: a cgroup with processes cannot delegate).
    /// Returns the leaf if it is new (for rollback).
    pub(crate) fn create(&self) -> Result<Vec<PathBuf>, CgroupError> {
        let created = files::create_dir_all(&self.dir)?;
        let created = if created {
            vec![self.dir.clone()]
        } else {
            Vec::new()
        };
        let mut ancestor = self.root.clone();
        let mut components = self.rel.components().peekable();
        while let Some(component) = components.next() {
            if let Err(e) = enable_controllers(&ancestor) {
                files::remove_created(&created);
                return Err(e);
            }
            ancestor.push(component);
            if components.peek().is_none() {
                break;
            }
        }
        Ok(created)
    }

    fn leaf(&self) -> Result<Leaf<'_>, CgroupError> {
        let controllers = files::read(&self.dir, "cgroup.controllers")?
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        Ok(Leaf {
            dir: &self.dir,
            controllers,
        })
    }

    pub(crate) fn apply(&self, r: &LinuxResources) -> Result<(), CgroupError> {
        let leaf = self.leaf()?;
        if let Some(rules) = r.devices() {
            devices::apply(&self.dir, rules)?;
        }
        if let Some(m) = r.memory() {
            memory::apply(&leaf, m)?;
        }
        if let Some(c) = r.cpu() {
            cpu::apply(&leaf, c)?;
            cpuset::apply(&leaf, c)?;
        }
        if let Some(p) = r.pids() {
            pids::apply(&leaf, p)?;
        }
        if let Some(b) = r.block_io() {
            io::apply(&leaf, b)?;
        }
        if let Some(h) = r.hugepage_limits() {
            hugetlb::apply(&leaf, h)?;
        }
        if r.network().is_some() {
            tracing::warn!(cgroup = %self.dir.display(), "ignoring network resources: cgroup v2 has no net_cls/net_prio");
        }
        if r.rdma().as_ref().is_some_and(|m| !m.is_empty()) {
            tracing::warn!(cgroup = %self.dir.display(), "ignoring rdma resources: the rdma controller is not managed");
        }
        if let Some(unified) = r.unified() {
            apply_unified(&self.dir, unified)?;
        }
        Ok(())
    }

    pub(crate) fn add_pid(&self, pid: i32) -> Result<(), CgroupError> {
        files::write(&self.dir, "cgroup.procs", &pid.to_string())
    }

    /// `populated` of `cgroup.events` covers the whole subtree.
    pub(crate) fn populated(&self) -> Result<bool, CgroupError> {
        match files::read_keyed(&self.dir, "cgroup.events", "populated") {
            Ok(n) => Ok(n > 0),
            Err(_) if !self.dir.exists() => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub(crate) fn join_self(&self) -> Result<(), CgroupError> {
        files::write(&self.dir, "cgroup.procs", "0")
    }

    pub(crate) fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        let mut pids = Vec::new();
        files::procs_recursive(&self.dir, &mut pids)?;
        pids.sort_unstable();
        pids.dedup();
        Ok(pids)
    }

    pub(crate) fn has_freezer(&self) -> bool {
        self.dir.join("cgroup.freeze").exists()
    }

    pub(crate) fn freeze(&self) -> Result<(), CgroupError> {
        freezer::freeze(&self.dir)
    }

    pub(crate) fn thaw(&self) -> Result<(), CgroupError> {
        freezer::thaw(&self.dir)
    }

    /// Writes `cgroup.kill` (Linux 5.14+), which kills the whole subtree
    /// atomically. Returns false when the file does not exist.
    pub(crate) fn kill_via_cgroup_kill(&self) -> Result<bool, CgroupError> {
        if !self.dir.join("cgroup.kill").exists() {
            return Ok(false);
        }
        files::write(&self.dir, "cgroup.kill", "1")?;
        Ok(true)
    }

    pub(crate) fn destroy(&self) -> Result<(), CgroupError> {
        files::remove_cgroup_dir(&self.dir)
    }

    /// `oom_kill` from `memory.events`, which counts this cgroup and its
    /// descendants.
    pub(crate) fn oom_kill_count(&self) -> Result<u64, CgroupError> {
        let leaf = self.leaf()?;
        files::read_keyed(leaf.require("memory")?, "memory.events", "oom_kill")
    }

    pub(crate) fn stats(&self) -> Result<CgroupStats, CgroupError> {
        let leaf = self.leaf()?;
        let has = |c: &str| leaf.controllers.iter().any(|x| x == c);
        Ok(CgroupStats {
            memory: has("memory")
                .then(|| memory::stats(&self.dir))
                .transpose()?,
            // cpu.stat's usage fields exist even without the cpu controller.
            cpu: Some(cpu::stats(&self.dir)?),
            pids: has("pids").then(|| pids::stats(&self.dir)).transpose()?,
        })
    }
}

/// Enables each managed controller that `dir` offers and has not yet enabled,
/// one write per controller, so that one refusal (logged) does not block the
/// others. A controller left disabled makes the resources that need it fail
/// later with [`CgroupError::ControllerUnavailable`].
fn enable_controllers(dir: &Path) -> Result<(), CgroupError> {
    let available = files::read(dir, "cgroup.controllers")?;
    let enabled = files::read(dir, "cgroup.subtree_control")?;
    for controller in MANAGED {
        let offered = available.split_whitespace().any(|c| c == controller);
        let on = enabled.split_whitespace().any(|c| c == controller);
        if offered && !on {
            if let Err(e) = files::write(dir, "cgroup.subtree_control", &format!("+{controller}")) {
                tracing::warn!(error = %e, controller, "could not enable a cgroup v2 controller");
            }
        }
    }
    Ok(())
}

/// The OCI `unified` map: raw v2 file name -> value. Names are plain file names
/// (no `/`), so they cannot reach outside the cgroup.
fn apply_unified(dir: &Path, unified: &HashMap<String, String>) -> Result<(), CgroupError> {
    let mut keys: Vec<&String> = unified.keys().collect();
    keys.sort();
    for key in keys {
        let valid = !key.is_empty() && !key.contains('/') && !key.starts_with('.');
        let Some(value) = unified.get(key).filter(|_| valid) else {
            return Err(CgroupError::InvalidResource {
                resource: "unified key",
                value: key.clone(),
                reason: "must be a cgroup file name such as memory.high",
            });
        };
        files::require_file(dir, key, "unified cgroup file")?;
        files::write(dir, key, value)?;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests;
