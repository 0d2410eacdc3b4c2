//! v2 freezer: `cgroup.freeze` (Linux 5.2+), with the state in `cgroup.events`.

use std::path::Path;

use crate::error::CgroupError;
use crate::files;

pub(super) fn freeze(dir: &Path) -> Result<(), CgroupError> {
    set(dir, "1", "frozen")
}

pub(super) fn thaw(dir: &Path) -> Result<(), CgroupError> {
    set(dir, "0", "thawed")
}

/// Writes `cgroup.freeze` and waits for `cgroup.events` to report it. A freeze
/// that does not settle is undone.
fn set(dir: &Path, value: &'static str, state: &'static str) -> Result<(), CgroupError> {
    files::require_file(dir, "cgroup.freeze", "the cgroup v2 freezer (Linux 5.2+)")?;
    files::write(dir, "cgroup.freeze", value)?;
    let want = u64::from(value == "1");
    let reached =
        files::poll_until(|| Ok(files::read_keyed(dir, "cgroup.events", "frozen")? == want))?;
    if reached {
        return Ok(());
    }
    if value == "1" {
        if let Err(e) = files::write(dir, "cgroup.freeze", "0") {
            tracing::warn!(error = %e, "thawing after a failed freeze failed");
        }
    }
    Err(CgroupError::FreezeTimeout {
        path: dir.join("cgroup.events"),
        state,
    })
}
