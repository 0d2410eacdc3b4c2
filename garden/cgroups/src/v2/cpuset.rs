//! v2 cpuset controller. Unlike v1, an empty `cpuset.cpus`/`cpuset.mems`
//! inherits the parent's effective set, so nothing needs copying at creation.

use oci_spec::runtime::LinuxCpu;

use super::Leaf;
use crate::error::CgroupError;
use crate::files;

pub(super) fn apply(leaf: &Leaf<'_>, c: &LinuxCpu) -> Result<(), CgroupError> {
    let cpus = c.cpus().as_deref().filter(|s| !s.is_empty());
    let mems = c.mems().as_deref().filter(|s| !s.is_empty());
    if cpus.is_none() && mems.is_none() {
        return Ok(());
    }
    let dir = leaf.require("cpuset")?;
    if let Some(cpus) = cpus {
        files::write(dir, "cpuset.cpus", cpus)?;
    }
    if let Some(mems) = mems {
        files::write(dir, "cpuset.mems", mems)?;
    }
    Ok(())
}
