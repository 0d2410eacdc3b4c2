//! Phase timings of container creation, for the benchmark and for operators
//! who want to know where the milliseconds go.

use serde::{Deserialize, Serialize};

/// Microseconds spent in each phase; zero when a phase did not run.
#[derive(Debug, Default, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Timings {
    /// Parent: reading and validating the bundle.
    pub spec_us: u64,
    /// Parent: creating the cgroup and applying limits.
    pub cgroups_us: u64,
    /// Parent: compiling the seccomp profile.
    pub seccomp_us: u64,
    /// Children: joining and creating namespaces (incl. the pid-1 fork).
    pub namespaces_us: u64,
    /// Init: mounts, devices, pivot_root, masked and read-only paths.
    pub mounts_us: u64,
    /// Whole create, as the parent saw it.
    pub create_us: u64,
}
