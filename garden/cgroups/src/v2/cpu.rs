//! v2 cpu controller: `cpu.weight` (from shares), `cpu.max`, `cpu.max.burst`,
//! `cpu.idle`; usage from `cpu.stat`.

use std::path::Path;

use oci_spec::runtime::LinuxCpu;

use super::Leaf;
use crate::convert::shares_to_weight;
use crate::error::CgroupError;
use crate::files;
use crate::stats::CpuStats;

pub(super) fn apply(leaf: &Leaf<'_>, c: &LinuxCpu) -> Result<(), CgroupError> {
    let shares = c.shares().filter(|&s| s != 0);
    let quota = c.quota().filter(|&q| q != 0);
    let period = c.period().filter(|&p| p != 0);
    if c.realtime_period().is_some() || c.realtime_runtime().is_some() {
        tracing::warn!(
            "ignoring realtime cpu settings: cgroup v2 has no realtime bandwidth control"
        );
    }
    let wants_any = shares.is_some()
        || quota.is_some()
        || period.is_some()
        || c.burst().is_some()
        || c.idle().is_some();
    if !wants_any {
        return Ok(());
    }
    let dir = leaf.require("cpu")?;

    if let Some(s) = shares {
        files::write(dir, "cpu.weight", &shares_to_weight(s).to_string())?;
    }
    if let Some(max) = cpu_max(quota, period) {
        files::write(dir, "cpu.max", &max)?;
    }
    if let Some(b) = c.burst() {
        files::require_file(dir, "cpu.max.burst", "cpu burst")?;
        files::write(dir, "cpu.max.burst", &b.to_string())?;
    }
    if let Some(i) = c.idle() {
        files::require_file(dir, "cpu.idle", "cpu idle")?;
        files::write(dir, "cpu.idle", &i.to_string())?;
    }
    Ok(())
}

/// `cpu.max` is `$QUOTA $PERIOD`; the kernel keeps the old period when only the
/// quota is written. A negative quota is `max`.
pub(super) fn cpu_max(quota: Option<i64>, period: Option<u64>) -> Option<String> {
    if quota.is_none() && period.is_none() {
        return None;
    }
    let quota = match quota {
        Some(q) if q > 0 => q.to_string(),
        _ => "max".to_owned(),
    };
    Some(match period {
        Some(p) => format!("{quota} {p}"),
        None => quota,
    })
}

pub(super) fn stats(dir: &Path) -> Result<CpuStats, CgroupError> {
    let usec = |key| files::read_keyed_opt(dir, "cpu.stat", key);
    let to_ns = |us: u64| us.saturating_mul(1000);
    Ok(CpuStats {
        usage_ns: to_ns(files::read_keyed(dir, "cpu.stat", "usage_usec")?),
        user_ns: usec("user_usec")?.map(to_ns),
        system_ns: usec("system_usec")?.map(to_ns),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_max_forms() {
        assert_eq!(cpu_max(None, None), None);
        assert_eq!(
            cpu_max(Some(50_000), Some(100_000)).as_deref(),
            Some("50000 100000")
        );
        assert_eq!(cpu_max(Some(-1), None).as_deref(), Some("max"));
        assert_eq!(cpu_max(None, Some(20_000)).as_deref(), Some("max 20000"));
        assert_eq!(cpu_max(Some(25_000), None).as_deref(), Some("25000"));
    }
}
