//! Usage figures read from a container's cgroup, the same shape on v1 and v2.

use serde::Serialize;

/// A snapshot of a cgroup's usage. A section is `None` when its controller is
/// not mounted (v1) or not enabled for the cgroup (v2).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CgroupStats {
    pub memory: Option<MemoryStats>,
    pub cpu: Option<CpuStats>,
    pub pids: Option<PidsStats>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MemoryStats {
    /// v1 `memory.usage_in_bytes`, v2 `memory.current` (page cache included).
    pub usage_bytes: u64,
    /// The hard limit; `None` when unlimited.
    pub limit_bytes: Option<u64>,
    /// v1 `memory.max_usage_in_bytes`, v2 `memory.peak` when the kernel has it.
    pub max_usage_bytes: Option<u64>,
    /// Usage minus inactive page cache (what kubelet and Garden report).
    pub working_set_bytes: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CpuStats {
    /// Total CPU time consumed, in nanoseconds.
    pub usage_ns: u64,
    /// User and system time in nanoseconds, when the kernel reports them.
    pub user_ns: Option<u64>,
    pub system_ns: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PidsStats {
    /// Tasks (threads included) in the cgroup and below.
    pub current: u64,
    /// `pids.max`; `None` when unlimited.
    pub limit: Option<u64>,
}
