//! v1 hugetlb controller (optional: only if a v1 hugetlb hierarchy is mounted).

use oci_spec::runtime::LinuxHugepageLimit;

use super::V1Cgroup;
use crate::convert::hugetlb_file;
use crate::error::CgroupError;
use crate::files;
use crate::hierarchy::Controller;

pub(super) fn apply(cg: &V1Cgroup, limits: &[LinuxHugepageLimit]) -> Result<(), CgroupError> {
    if limits.is_empty() {
        return Ok(());
    }
    let dir = cg.require(Controller::Hugetlb)?;
    for l in limits {
        let file = hugetlb_file(l.page_size(), "limit_in_bytes")?;
        files::require_file(dir, &file, "hugepage size")?;
        files::write(dir, &file, &l.limit().to_string())?;
    }
    Ok(())
}
