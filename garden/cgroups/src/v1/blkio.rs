//! v1 blkio controller: proportional weight and throttling.
//!
//! `blkio.weight` only exists with the CFQ scheduler (removed in Linux 5.0); with
//! BFQ group scheduling the files are `blkio.bfq.weight*` (non-root cgroups of
//! the dev hosts have them; the weight only acts on devices whose scheduler is
//! bfq, and theirs default to `none`). With neither file, asking for a weight
//! fails with [`CgroupError::Unsupported`] naming `blkio.weight`, rather than
//! being silently dropped. Throttling works everywhere.

use std::path::Path;

use oci_spec::runtime::{LinuxBlockIo, LinuxThrottleDevice};

use super::V1Cgroup;
use crate::error::CgroupError;
use crate::files;
use crate::hierarchy::Controller;

pub(super) fn apply(cg: &V1Cgroup, b: &LinuxBlockIo) -> Result<(), CgroupError> {
    let throttles: [(&str, &Option<Vec<LinuxThrottleDevice>>); 4] = [
        (
            "blkio.throttle.read_bps_device",
            b.throttle_read_bps_device(),
        ),
        (
            "blkio.throttle.write_bps_device",
            b.throttle_write_bps_device(),
        ),
        (
            "blkio.throttle.read_iops_device",
            b.throttle_read_iops_device(),
        ),
        (
            "blkio.throttle.write_iops_device",
            b.throttle_write_iops_device(),
        ),
    ];
    let wants_any = b.weight().is_some()
        || b.leaf_weight().is_some()
        || b.weight_device().as_ref().is_some_and(|v| !v.is_empty())
        || throttles
            .iter()
            .any(|(_, t)| t.as_ref().is_some_and(|v| !v.is_empty()));
    if !wants_any {
        return Ok(());
    }
    let dir = cg.require(Controller::Blkio)?;

    if let Some(w) = b.weight() {
        let file = weight_file(dir, "blkio.weight", "blkio.bfq.weight", "blkio weight")?;
        files::write(dir, file, &w.to_string())?;
    }
    if let Some(w) = b.leaf_weight() {
        files::require_file(dir, "blkio.leaf_weight", "blkio leaf weight")?;
        files::write(dir, "blkio.leaf_weight", &w.to_string())?;
    }
    for wd in b.weight_device().iter().flatten() {
        let dev = format!("{}:{}", wd.major(), wd.minor());
        if let Some(w) = wd.weight() {
            let file = weight_file(
                dir,
                "blkio.weight_device",
                "blkio.bfq.weight_device",
                "blkio device weight",
            )?;
            files::write(dir, file, &format!("{dev} {w}"))?;
        }
        if let Some(w) = wd.leaf_weight() {
            files::require_file(dir, "blkio.leaf_weight_device", "blkio device leaf weight")?;
            files::write(dir, "blkio.leaf_weight_device", &format!("{dev} {w}"))?;
        }
    }
    for (file, list) in throttles {
        for t in list.iter().flatten() {
            let line = format!("{}:{} {}", t.major(), t.minor(), t.rate());
            files::write(dir, file, &line)?;
        }
    }
    Ok(())
}

/// The CFQ file if present, else the BFQ one, else an error naming the first.
fn weight_file(
    dir: &Path,
    cfq: &'static str,
    bfq: &'static str,
    resource: &'static str,
) -> Result<&'static str, CgroupError> {
    if dir.join(cfq).exists() {
        Ok(cfq)
    } else if dir.join(bfq).exists() {
        Ok(bfq)
    } else {
        Err(CgroupError::Unsupported {
            resource,
            path: dir.join(cfq),
        })
    }
}
