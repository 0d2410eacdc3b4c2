//! v1 pids controller.

use std::path::Path;

use oci_spec::runtime::LinuxPids;

use super::V1Cgroup;
use crate::convert::pids_max;
use crate::error::CgroupError;
use crate::files;
use crate::hierarchy::Controller;
use crate::stats::PidsStats;

/// A limit of 0 or below (the spec's "unset" and -1) means `max`.
pub(super) fn apply(cg: &V1Cgroup, p: &LinuxPids) -> Result<(), CgroupError> {
    let dir = cg.require(Controller::Pids)?;
    files::write(dir, "pids.max", &pids_max(p.limit()))
}

pub(super) fn stats(dir: &Path) -> Result<PidsStats, CgroupError> {
    Ok(PidsStats {
        current: files::read_u64(dir, "pids.current")?,
        limit: files::read_u64_or_max(dir, "pids.max")?,
    })
}
