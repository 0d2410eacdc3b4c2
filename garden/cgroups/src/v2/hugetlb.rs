//! v2 hugetlb controller: `hugetlb.<size>.max`.

use oci_spec::runtime::LinuxHugepageLimit;

use super::Leaf;
use crate::convert::hugetlb_file;
use crate::error::CgroupError;
use crate::files;

pub(super) fn apply(leaf: &Leaf<'_>, limits: &[LinuxHugepageLimit]) -> Result<(), CgroupError> {
    if limits.is_empty() {
        return Ok(());
    }
    let dir = leaf.require("hugetlb")?;
    for l in limits {
        let file = hugetlb_file(l.page_size(), "max")?;
        files::require_file(dir, &file, "hugepage size")?;
        files::write(dir, &file, &files::num_or_max("hugepage limit", l.limit())?)?;
    }
    Ok(())
}
