//! v2 memory controller: `memory.max`, `memory.swap.max`, `memory.low`, stats.
//!
//! The spec's `swap` is memory+swap (the v1 meaning); v2's `memory.swap.max` is
//! swap alone, so it gets `swap - limit` (runc's conversion). With a memory limit
//! but no swap in the spec, swap is turned off (`memory.swap.max = 0`), matching
//! the v1 behaviour of memory+swap = memory. 0 means "unset", -1 unlimited.

use std::path::Path;

use oci_spec::runtime::LinuxMemory;

use super::Leaf;
use crate::error::CgroupError;
use crate::files;
use crate::stats::MemoryStats;

const SWAP_MAX: &str = "memory.swap.max";

pub(super) fn apply(leaf: &Leaf<'_>, m: &LinuxMemory) -> Result<(), CgroupError> {
    let limit = m.limit().filter(|&v| v != 0);
    let swap = m.swap().filter(|&v| v != 0);
    let reservation = m.reservation().filter(|&v| v != 0);

    if m.swappiness().is_some() {
        tracing::warn!("ignoring memory swappiness: cgroup v2 has no per-cgroup swappiness");
    }
    if m.disable_oom_killer() == Some(true) {
        tracing::warn!("ignoring disable_oom_killer: cgroup v2 cannot disable the OOM killer");
    }
    if m.kernel().is_some() || m.kernel_tcp().is_some() {
        tracing::warn!(
            "ignoring kernel memory limits: cgroup v2 accounts kernel memory in memory.max"
        );
    }
    if limit.is_none() && swap.is_none() && reservation.is_none() {
        return Ok(());
    }
    let dir = leaf.require("memory")?;

    if let Some(l) = limit {
        files::write(dir, "memory.max", &files::num_or_max("memory limit", l)?)?;
    }
    if let Some(value) = swap_max(limit, swap)? {
        if dir.join(SWAP_MAX).exists() {
            files::write(dir, SWAP_MAX, &value)?;
        } else if swap.is_some() {
            files::require_file(dir, SWAP_MAX, "memory swap limit (swap accounting)")?;
        } else {
            tracing::debug!(dir = %dir.display(), "no memory.swap.max (swap accounting off); swap is not limited");
        }
    }
    if let Some(r) = reservation {
        files::write(
            dir,
            "memory.low",
            &files::num_or_max("memory reservation", r)?,
        )?;
    }
    Ok(())
}

/// The value for `memory.swap.max`, if any is to be written.
pub(super) fn swap_max(
    limit: Option<i64>,
    swap: Option<i64>,
) -> Result<Option<String>, CgroupError> {
    let invalid = |s: i64, reason| CgroupError::InvalidResource {
        resource: "memory swap",
        value: s.to_string(),
        reason,
    };
    match (limit, swap) {
        (None, None) => Ok(None),
        (Some(-1), None) | (_, Some(-1)) => Ok(Some("max".to_owned())),
        (Some(_), None) => Ok(Some("0".to_owned())),
        (None | Some(-1), Some(s)) => Err(invalid(s, "a memory+swap limit needs a memory limit")),
        (Some(l), Some(s)) if s < l => Err(invalid(
            s,
            "memory+swap limit must be at least the memory limit",
        )),
        (Some(l), Some(s)) => Ok(Some((s - l).to_string())),
    }
}

pub(super) fn stats(dir: &Path) -> Result<MemoryStats, CgroupError> {
    let usage = files::read_u64(dir, "memory.current")?;
    let peak = if dir.join("memory.peak").exists() {
        Some(files::read_u64(dir, "memory.peak")?)
    } else {
        None
    };
    let inactive_file = files::read_keyed_opt(dir, "memory.stat", "inactive_file")?;
    Ok(MemoryStats {
        usage_bytes: usage,
        limit_bytes: files::read_u64_or_max(dir, "memory.max")?,
        max_usage_bytes: peak,
        working_set_bytes: usage.saturating_sub(inactive_file.unwrap_or(0)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swap_conversion() {
        assert_eq!(swap_max(None, None).expect("ok"), None);
        assert_eq!(swap_max(Some(100), None).expect("ok").as_deref(), Some("0"));
        assert_eq!(
            swap_max(Some(-1), None).expect("ok").as_deref(),
            Some("max")
        );
        assert_eq!(
            swap_max(Some(100), Some(-1)).expect("ok").as_deref(),
            Some("max")
        );
        assert_eq!(
            swap_max(Some(100), Some(300)).expect("ok").as_deref(),
            Some("200")
        );
        assert!(swap_max(Some(300), Some(100)).is_err());
        assert!(swap_max(None, Some(100)).is_err());
    }
}
