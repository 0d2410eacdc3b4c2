//! What the parent decided before forking, shared (by fork's copy of memory)
//! with every set-up child: nothing is serialised on the way down.

use std::os::fd::OwnedFd;

use oci_spec::runtime::Hook;

use super::super::bundle::Bundle;
use super::super::namespaces::Plan;
use super::super::rootfs::CgroupView;
use super::super::sysctl::Private;
use super::user::ProcessPlan;

#[derive(Debug)]
pub struct InitContext {
    pub bundle: Bundle,
    pub namespaces: Plan,
    pub process: ProcessPlan,
    /// The container's cgroup, which stage 1 joins.
    pub cgroup: garden_cgroups::Cgroup,
    pub cgroups: CgroupView,
    pub private: Private,
    /// The container runs in a user namespace (new or joined).
    pub in_user_namespace: bool,
    /// The exec FIFO, opened for reading: `start` writes one byte into it.
    pub fifo: OwnedFd,
    /// Where init writes the exit record.
    pub exit_file: OwnedFd,
    /// The caller's console socket when `process.terminal` is set.
    pub console_socket: Option<OwnedFd>,
    /// Parent-run hooks exist, so init stops before pivot_root for them.
    pub pause_for_hooks: bool,
    pub create_container_hooks: Vec<Hook>,
    pub start_container_hooks: Vec<Hook>,
    /// A read-only copy of the runtime binary for init to re-execute from
    /// after set-up; `None` when we already run from one.
    pub sealed_exe: Option<OwnedFd>,
    /// CLOCK_MONOTONIC when the parent forked, for the namespace timing.
    pub forked_at_ns: u64,
}
