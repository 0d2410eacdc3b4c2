//! v1 memory controller: limits, memory+swap, soft limit, OOM killer, stats.
//!
//! As in runc, a value of 0 in the spec means "not set" for limit, swap and
//! reservation; -1 means unlimited.

use std::path::Path;

use oci_spec::runtime::LinuxMemory;

use super::V1Cgroup;
use crate::error::CgroupError;
use crate::files;
use crate::hierarchy::Controller;
use crate::stats::MemoryStats;

const LIMIT: &str = "memory.limit_in_bytes";
const MEMSW: &str = "memory.memsw.limit_in_bytes";

/// Limits at or above this are the kernel's "unlimited" (PAGE_COUNTER_MAX pages).
const UNLIMITED_THRESHOLD: u64 = 1 << 62;

pub(super) fn apply(cg: &V1Cgroup, m: &LinuxMemory) -> Result<(), CgroupError> {
    let limit = checked("memory limit", m.limit())?;
    let swap = checked("memory swap", m.swap())?;
    let reservation = checked("memory reservation", m.reservation())?;
    let wants_any = limit.is_some()
        || swap.is_some()
        || reservation.is_some()
        || m.kernel_tcp().is_some()
        || m.swappiness().is_some()
        || m.disable_oom_killer().is_some();
    if !wants_any {
        return Ok(());
    }
    let dir = cg.require(Controller::Memory)?;

    let memsw = memsw_limit(dir, limit, swap)?;
    set_limits(dir, limit, memsw)?;

    if let Some(r) = reservation {
        files::write(dir, "memory.soft_limit_in_bytes", &r.to_string())?;
    }
    if m.kernel().is_some() {
        tracing::warn!("ignoring memory.kernel: kernel memory limits are deprecated and unsupported by current kernels");
    }
    if let Some(tcp) = m.kernel_tcp() {
        files::require_file(
            dir,
            "memory.kmem.tcp.limit_in_bytes",
            "memory kernel TCP limit",
        )?;
        files::write(dir, "memory.kmem.tcp.limit_in_bytes", &tcp.to_string())?;
    }
    if let Some(s) = m.swappiness() {
        if s > 100 {
            return Err(CgroupError::InvalidResource {
                resource: "memory swappiness",
                value: s.to_string(),
                reason: "must be between 0 and 100",
            });
        }
        files::write(dir, "memory.swappiness", &s.to_string())?;
    }
    if let Some(disable) = m.disable_oom_killer() {
        files::write(dir, "memory.oom_control", if disable { "1" } else { "0" })?;
    }
    Ok(())
}

/// 0 is "unset"; below -1 is invalid.
fn checked(resource: &'static str, v: Option<i64>) -> Result<Option<i64>, CgroupError> {
    match v {
        None | Some(0) => Ok(None),
        Some(v) if v >= -1 => Ok(Some(v)),
        Some(v) => Err(CgroupError::InvalidResource {
            resource,
            value: v.to_string(),
            reason: "must be -1 (unlimited) or positive",
        }),
    }
}

/// The memory+swap limit to write. The spec's `swap` is memory+swap on v1. With
/// no swap in the spec but a memory limit, swap is turned off by making
/// memory+swap equal to the limit (when swap accounting exists at all).
fn memsw_limit(
    dir: &Path,
    limit: Option<i64>,
    swap: Option<i64>,
) -> Result<Option<i64>, CgroupError> {
    let has_memsw = dir.join(MEMSW).exists();
    match (swap, limit) {
        (Some(s), l) => {
            files::require_file(dir, MEMSW, "memory swap limit (swap accounting)")?;
            if s != -1 && l.is_some_and(|l| l == -1 || s < l) {
                return Err(CgroupError::InvalidResource {
                    resource: "memory swap",
                    value: s.to_string(),
                    reason: "memory+swap limit must be at least the memory limit",
                });
            }
            Ok(Some(s))
        }
        (None, Some(l)) if has_memsw => Ok(Some(l)),
        (None, Some(_)) => {
            tracing::debug!(dir = %dir.display(), "no memory.memsw files (swap accounting off); swap is not limited");
            Ok(None)
        }
        (None, None) => Ok(None),
    }
}

/// Writes limit and memory+swap in an order the kernel accepts: it requires
/// `limit <= memsw` after every single write.
fn set_limits(dir: &Path, limit: Option<i64>, memsw: Option<i64>) -> Result<(), CgroupError> {
    match (limit, memsw) {
        (Some(l), Some(s)) => {
            let current = files::read_u64(dir, LIMIT)?;
            let raising = s == -1 || u64::try_from(s).is_ok_and(|s| s >= current);
            if raising {
                files::write(dir, MEMSW, &s.to_string())?;
                files::write(dir, LIMIT, &l.to_string())
            } else {
                files::write(dir, LIMIT, &l.to_string())?;
                files::write(dir, MEMSW, &s.to_string())
            }
        }
        (Some(l), None) => files::write(dir, LIMIT, &l.to_string()),
        (None, Some(s)) => files::write(dir, MEMSW, &s.to_string()),
        (None, None) => Ok(()),
    }
}

pub(super) fn stats(dir: &Path) -> Result<MemoryStats, CgroupError> {
    let usage = files::read_u64(dir, "memory.usage_in_bytes")?;
    let limit = files::read_u64(dir, LIMIT)?;
    let inactive_file = files::read_keyed_opt(dir, "memory.stat", "total_inactive_file")?;
    Ok(MemoryStats {
        usage_bytes: usage,
        limit_bytes: (limit < UNLIMITED_THRESHOLD).then_some(limit),
        max_usage_bytes: Some(files::read_u64(dir, "memory.max_usage_in_bytes")?),
        working_set_bytes: usage.saturating_sub(inactive_file.unwrap_or(0)),
    })
}
