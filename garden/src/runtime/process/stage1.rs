//! Stage 1: the first child. Joins existing namespaces, creates the user
//! namespace (the parent writes its maps), creates the rest, and forks the
//! container's init into the new pid namespace.

use garden_cgroups::{Cgroup, CgroupError};
use nix::unistd::{ForkResult, Gid, Uid};

use super::super::namespaces::{self, NamespaceError, Plan};
use super::super::sys;
use super::channel::{Channel, ChannelError, Message};

#[derive(Debug, thiserror::Error)]
pub enum Stage1Error {
    #[error(transparent)]
    Namespace(#[from] NamespaceError),
    #[error(transparent)]
    Channel(#[from] ChannelError),
    #[error("joining the container's cgroup: {0}")]
    Cgroup(#[from] CgroupError),
    #[error("{step}: {source}")]
    Sys {
        step: &'static str,
        #[source]
        source: nix::Error,
    },
}

/// What stage 1 hands on: `Some(())` in the process that must go on as the
/// container's process (init, or the exec'd program); `None` in a stage-1
/// process that has done its job and must exit.
///
/// Stage 1 places itself in `cgroup` while it is single-threaded and before
/// it enters a user or joined namespace: a thread moving itself is far
/// cheaper than the parent moving it (see [`Cgroup::join_self`]), and
/// everything it forks later (init, the program) starts inside.
pub fn enter(plan: &Plan, cgroup: &Cgroup, ch: &Channel) -> Result<Option<()>, Stage1Error> {
    let sys_err = |step| move |source| Stage1Error::Sys { step, source };
    // Nobody inside the container may read our memory or descriptors
    // through /proc/<pid>/ (we are still the runtime binary).
    nix::sys::prctl::set_dumpable(false).map_err(sys_err("prctl(PR_SET_DUMPABLE)"))?;
    if plan.cgroup_join_can_wait() {
        // Creating namespaces (the net namespace above all) overlaps the
        // parent creating the cgroup; Proceed says the cgroup is ready.
        namespaces::unshare(plan.create)?;
        expect_proceed(ch)?;
        cgroup.join_self()?;
    } else {
        cgroup.join_self()?;
        plan.join_existing()?;
        if plan.new_user {
            namespaces::unshare(nix::sched::CloneFlags::CLONE_NEWUSER)?;
            ch.send(&Message::UserNamespaceReady)?;
        }
        expect_proceed(ch)?;
        if plan.new_user || plan.joins_user() {
            // Become root of the new (or joined) namespace (when 0 is
            // mapped) so files we create are owned by the container's root:
            // an unmapped owner would fail with EOVERFLOW.
            let _ = nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0));
            let _ = nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0));
        }
        namespaces::unshare(plan.create)?;
    }
    if plan.new_cgroup {
        // After joining the container's cgroup: it becomes our cgroup
        // namespace's root.
        namespaces::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP)?;
    }
    if !plan.enters_pid_namespace {
        ch.send(&Message::InitPid(nix::unistd::getpid().as_raw()))?;
        return Ok(Some(()));
    }
    match sys::fork().map_err(sys_err("fork into the pid namespace"))? {
        ForkResult::Child => Ok(Some(())),
        ForkResult::Parent { child } => {
            ch.send(&Message::InitPid(child.as_raw()))?;
            Ok(None)
        }
    }
}

fn expect_proceed(ch: &Channel) -> Result<(), Stage1Error> {
    match ch.expect("the parent to proceed")? {
        Message::Proceed => Ok(()),
        got => Err(ChannelError::Unexpected {
            wanted: "proceed",
            got,
        }
        .into()),
    }
}
