//! v1 cpu controller (shares, CFS quota and period, burst, idle, realtime) and
//! cpuacct statistics. cpu and cpuacct may be separate hierarchies (this host)
//! or co-mounted; either way they are looked up independently.

use std::path::Path;

use oci_spec::runtime::LinuxCpu;

use super::V1Cgroup;
use crate::error::CgroupError;
use crate::files;
use crate::hierarchy::Controller;
use crate::stats::CpuStats;

const PERIOD: &str = "cpu.cfs_period_us";
const QUOTA: &str = "cpu.cfs_quota_us";

pub(super) fn apply(cg: &V1Cgroup, c: &LinuxCpu) -> Result<(), CgroupError> {
    let shares = c.shares().filter(|&s| s != 0);
    let quota = c.quota().filter(|&q| q != 0);
    let period = c.period().filter(|&p| p != 0);
    let wants_any = shares.is_some()
        || quota.is_some()
        || period.is_some()
        || c.burst().is_some()
        || c.idle().is_some()
        || c.realtime_period().is_some()
        || c.realtime_runtime().is_some();
    if !wants_any {
        return Ok(());
    }
    let dir = cg.require(Controller::Cpu)?;

    if let Some(s) = shares {
        files::write(dir, "cpu.shares", &s.to_string())?;
    }
    set_bandwidth(dir, quota, period)?;
    if let Some(b) = c.burst() {
        files::require_file(dir, "cpu.cfs_burst_us", "cpu burst")?;
        files::write(dir, "cpu.cfs_burst_us", &b.to_string())?;
    }
    // Period before runtime: the runtime is validated against the period.
    if let Some(p) = c.realtime_period() {
        files::require_file(dir, "cpu.rt_period_us", "realtime cpu period")?;
        files::write(dir, "cpu.rt_period_us", &p.to_string())?;
    }
    if let Some(r) = c.realtime_runtime() {
        files::require_file(dir, "cpu.rt_runtime_us", "realtime cpu runtime")?;
        files::write(dir, "cpu.rt_runtime_us", &r.to_string())?;
    }
    if let Some(i) = c.idle() {
        files::require_file(dir, "cpu.idle", "cpu idle")?;
        files::write(dir, "cpu.idle", &i.to_string())?;
    }
    Ok(())
}

/// Period first; if the kernel refuses it with EINVAL (the old quota does not
/// fit the new period within the parent's bandwidth), write the quota first and
/// retry, as runc does.
fn set_bandwidth(dir: &Path, quota: Option<i64>, period: Option<u64>) -> Result<(), CgroupError> {
    match (quota, period) {
        (Some(q), Some(p)) => match files::write(dir, PERIOD, &p.to_string()) {
            Ok(()) => files::write(dir, QUOTA, &q.to_string()),
            Err(CgroupError::Write { source, .. })
                if source.raw_os_error() == Some(libc::EINVAL) =>
            {
                files::write(dir, QUOTA, &q.to_string())?;
                files::write(dir, PERIOD, &p.to_string())
            }
            Err(e) => Err(e),
        },
        (Some(q), None) => files::write(dir, QUOTA, &q.to_string()),
        (None, Some(p)) => files::write(dir, PERIOD, &p.to_string()),
        (None, None) => Ok(()),
    }
}

/// From the cpuacct hierarchy: `cpuacct.usage` and, when present,
/// `cpuacct.usage_user` / `cpuacct.usage_sys` (all nanoseconds).
pub(super) fn stats(dir: &Path) -> Result<CpuStats, CgroupError> {
    let optional = |file: &str| -> Result<Option<u64>, CgroupError> {
        if dir.join(file).exists() {
            files::read_u64(dir, file).map(Some)
        } else {
            Ok(None)
        }
    };
    Ok(CpuStats {
        usage_ns: files::read_u64(dir, "cpuacct.usage")?,
        user_ns: optional("cpuacct.usage_user")?,
        system_ns: optional("cpuacct.usage_sys")?,
    })
}
