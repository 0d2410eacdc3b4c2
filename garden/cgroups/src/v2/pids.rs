//! v2 pids controller.

use std::path::Path;

use oci_spec::runtime::LinuxPids;

use super::Leaf;
use crate::convert::pids_max;
use crate::error::CgroupError;
use crate::files;
use crate::stats::PidsStats;

pub(super) fn apply(leaf: &Leaf<'_>, p: &LinuxPids) -> Result<(), CgroupError> {
    files::write(leaf.require("pids")?, "pids.max", &pids_max(p.limit()))
}

pub(super) fn stats(dir: &Path) -> Result<PidsStats, CgroupError> {
    Ok(PidsStats {
        current: files::read_u64(dir, "pids.current")?,
        limit: files::read_u64_or_max(dir, "pids.max")?,
    })
}
