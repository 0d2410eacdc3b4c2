//! v2 io controller: weight (BFQ's `io.bfq.weight` when present, else
//! `io.weight` with the blkio-to-io conversion, as runc does) and `io.max`.

use std::path::Path;

use oci_spec::runtime::LinuxBlockIo;

use super::Leaf;
use crate::convert::blkio_weight_to_io_weight;
use crate::error::CgroupError;
use crate::files;

pub(super) fn apply(leaf: &Leaf<'_>, b: &LinuxBlockIo) -> Result<(), CgroupError> {
    let throttles = [
        ("rbps", b.throttle_read_bps_device()),
        ("wbps", b.throttle_write_bps_device()),
        ("riops", b.throttle_read_iops_device()),
        ("wiops", b.throttle_write_iops_device()),
    ];
    if b.leaf_weight().is_some()
        || b.weight_device()
            .iter()
            .flatten()
            .any(|d| d.leaf_weight().is_some())
    {
        tracing::warn!("ignoring blkio leaf weights: cgroup v2 has none");
    }
    let wants_any = b.weight().is_some()
        || b.weight_device()
            .iter()
            .flatten()
            .any(|d| d.weight().is_some())
        || throttles
            .iter()
            .any(|(_, t)| t.as_ref().is_some_and(|v| !v.is_empty()));
    if !wants_any {
        return Ok(());
    }
    let dir = leaf.require("io")?;

    if let Some(w) = b.weight() {
        let (file, value) = weight(dir, w)?;
        files::write(dir, file, &value)?;
    }
    for wd in b.weight_device().iter().flatten() {
        if let Some(w) = wd.weight() {
            let (file, value) = weight(dir, w)?;
            files::write(dir, file, &format!("{}:{} {value}", wd.major(), wd.minor()))?;
        }
    }
    for (key, list) in throttles {
        for t in list.iter().flatten() {
            let line = format!("{}:{} {key}={}", t.major(), t.minor(), t.rate());
            files::write(dir, "io.max", &line)?;
        }
    }
    Ok(())
}

/// The file and the value for a blkio-scale weight.
fn weight(dir: &Path, w: u16) -> Result<(&'static str, String), CgroupError> {
    if dir.join("io.bfq.weight").exists() {
        Ok(("io.bfq.weight", w.to_string()))
    } else if dir.join("io.weight").exists() {
        Ok(("io.weight", blkio_weight_to_io_weight(w).to_string()))
    } else {
        Err(CgroupError::Unsupported {
            resource: "io weight (needs the BFQ scheduler or io.weight)",
            path: dir.join("io.weight"),
        })
    }
}
