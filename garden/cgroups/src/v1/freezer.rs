//! v1 freezer: `freezer.state` goes THAWED -> FREEZING -> FROZEN.

use std::path::Path;

use crate::error::CgroupError;
use crate::files;

const STATE: &str = "freezer.state";

/// Freezes and waits until every task is frozen. Writing FROZEN is repeated
/// while the state is FREEZING, as runc does, because a freeze can stall on a
/// task that forks meanwhile. On timeout the cgroup is thawed again.
pub(super) fn freeze(dir: &Path) -> Result<(), CgroupError> {
    let frozen = files::poll_until(|| {
        files::write(dir, STATE, "FROZEN")?;
        Ok(files::read(dir, STATE)?.trim() == "FROZEN")
    })?;
    if frozen {
        return Ok(());
    }
    if let Err(e) = thaw(dir) {
        tracing::warn!(error = %e, "thawing after a failed freeze failed");
    }
    Err(CgroupError::FreezeTimeout {
        path: dir.join(STATE),
        state: "FROZEN",
    })
}

pub(super) fn thaw(dir: &Path) -> Result<(), CgroupError> {
    files::write(dir, STATE, "THAWED")?;
    let thawed = files::poll_until(|| Ok(files::read(dir, STATE)?.trim() == "THAWED"))?;
    if thawed {
        Ok(())
    } else {
        Err(CgroupError::FreezeTimeout {
            path: dir.join(STATE),
            state: "THAWED",
        })
    }
}
