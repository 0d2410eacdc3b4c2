//! v1 cpuset controller.
//!
//! A new v1 cpuset cgroup starts with empty `cpuset.cpus` and `cpuset.mems`, and
//! attaching a task to it fails with ENOSPC. So after creating the directories,
//! every level from the mount root down gets its parent's values when its own
//! are empty (what runc does); the spec's `cpus`/`mems` are applied afterwards.

use std::path::Path;

use oci_spec::runtime::LinuxCpu;

use super::V1Cgroup;
use crate::error::CgroupError;
use crate::files;
use crate::hierarchy::Controller;

const FILES: [&str; 2] = ["cpuset.cpus", "cpuset.mems"];

/// Fills empty `cpuset.cpus`/`cpuset.mems` along `mount_point/rel`, top down.
pub(super) fn init_levels(mount_point: &Path, rel: &Path) -> Result<(), CgroupError> {
    let mut parent = mount_point.to_path_buf();
    for component in rel.components() {
        let dir = parent.join(component);
        for file in FILES {
            if files::read(&dir, file)?.trim().is_empty() {
                let value = files::read(&parent, file)?;
                files::write(&dir, file, value.trim())?;
            }
        }
        parent = dir;
    }
    Ok(())
}

pub(super) fn apply(cg: &V1Cgroup, c: &LinuxCpu) -> Result<(), CgroupError> {
    let cpus = c.cpus().as_deref().filter(|s| !s.is_empty());
    let mems = c.mems().as_deref().filter(|s| !s.is_empty());
    if cpus.is_none() && mems.is_none() {
        return Ok(());
    }
    let dir = cg.require(Controller::Cpuset)?;
    if let Some(cpus) = cpus {
        files::write(dir, "cpuset.cpus", cpus)?;
    }
    if let Some(mems) = mems {
        files::write(dir, "cpuset.mems", mems)?;
    }
    Ok(())
}
