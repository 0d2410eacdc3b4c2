//! cgroup management for garden containers, on cgroup v1 (including hybrid
//! hosts) and pure cgroup v2.
//!
//! # API
//!
//! [`Cgroup`] is one container's cgroup across all controllers. [`Cgroup::create`]
//! and [`Cgroup::open`] use the host's hierarchies ([`Hierarchy::host`]);
//! [`Cgroup::create_at`] and [`Cgroup::open_at`] take a [`Hierarchy`], so tests
//! run against a temp dir or a private cgroup2 subtree.
//!
//! Additions to the API the runtime asked for (nothing was renamed or removed):
//! - [`Hierarchy`], [`V1Mount`], [`Controller`], [`detect_mode_at`],
//!   [`parse_v1_mountinfo`]: injectable roots.
//! - [`Cgroup::create_at`], [`Cgroup::open_at`], [`Cgroup::path`].
//! - [`CgroupStats`] has one `Option` section per controller (`None` when the
//!   controller is not mounted / not enabled) instead of failing as a whole.
//!
//! # Notes for the runtime
//!
//! - Order: `create` (applies all resources, including cpuset and devices) →
//!   `add_pid` (or the child's own `join_self`, much cheaper) → exec. On v1 `create` copies `cpuset.cpus`/`cpuset.mems` from
//!   the parent into every new level, so `add_pid` never hits ENOSPC.
//! - Paths are relative to each hierarchy's mount (`garden/abc` =
//!   `/sys/fs/cgroup/memory/garden/abc` on v1, `/sys/fs/cgroup/garden/abc` on v2);
//!   a leading `/` is ignored; `..` is rejected.
//! - Spec values of 0 mean "unset" for memory limit/swap/reservation, cpu
//!   shares/quota/period (as in runc); -1 means unlimited.
//! - Swap: the OCI `swap` is memory+swap. v1 writes it to
//!   `memory.memsw.limit_in_bytes`; v2 writes `swap - limit` to `memory.swap.max`.
//!   With a memory limit and no `swap`, swap is turned off (v1 memsw = limit,
//!   v2 swap.max = 0). An explicit `swap` on a kernel without swap accounting is
//!   an error ([`CgroupError::Unsupported`]).
//! - Devices: `None` leaves device access alone (everything allowed); pass the
//!   full default list (null, zero, full, random, urandom, tty, ptmx, pts ...).
//!   v1 writes `devices.deny a` then each rule in order; v2 attaches an eBPF
//!   filter with the same "later rule wins" semantics, default deny. `Some(vec![])`
//!   denies every device. Processes that `mknod` device nodes after joining the
//!   cgroup need `m` rules (runc's defaults allow `c *:* m` and `b *:* m`).
//!   On v1, `update` with devices briefly denies everything to running
//!   processes between the `deny a` and the allow rules.
//! - `cgroupsPath` in systemd form (`slice:prefix:name`) is not supported; it
//!   would be taken as a plain directory name.
//! - `host_dirs` on v1 lists hierarchies in attach order (blkio first), named
//!   by their controllers (`cpu` and `cpuacct` are separate mounts on the
//!   hybrid dev hosts, `cpu,cpuacct` on many others).
//! - `kill_all` sends SIGKILL and returns; processes die asynchronously, and a
//!   parent must still reap its own children. `destroy` retries `EBUSY` for
//!   about a second, so `kill_all` then `destroy` is the normal teardown.
//!   `destroy` does not kill.
//! - Settings the kernel cannot express are logged with `tracing::warn!` and
//!   skipped: v2 swappiness, disable_oom_killer, realtime cpu, blkio leaf
//!   weights; kernel memory limits; network (net_cls/net_prio) and rdma.
//!   Settings whose control file is missing on the running kernel (e.g. a
//!   blkio weight with neither CFQ nor BFQ files, cpu burst before Linux 5.14)
//!   fail with [`CgroupError::Unsupported`].
//!
//! # Why not cgroups-rs
//!
//! cgroups-rs 0.5 was evaluated first, but for this crate it does not fit:
//! its v2 hierarchy is hard-wired to `/sys/fs/cgroup` and its v1 hierarchy reads
//! `/proc/self/mountinfo` itself (no injectable root for tests); its v1
//! hierarchy also creates the cgroup in `name=systemd`; its hierarchy code
//! unwraps; it maps swappiness onto v2 `memory.swap.max`; it has no
//! `cgroup.kill` and no v2 device filter; and its errors drop the errno and the
//! value. Control files are simple, so they are written directly (`files.rs`),
//! which also keeps zbus and its async stack out of the runtime. The dependency
//! was therefore removed from this crate's Cargo.toml.

#![deny(unsafe_code)]

mod convert;
mod device_rule;
mod error;
mod files;
mod hierarchy;
mod stats;
#[allow(unsafe_code)]
mod sys;
mod v1;
mod v2;

use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use oci_spec::runtime::LinuxResources;

pub use error::CgroupError;
pub use hierarchy::{
    detect_mode, detect_mode_at, parse_v1_mountinfo, CgroupMode, Controller, Hierarchy, V1Mount,
    CGROUP_ROOT,
};
pub use stats::{CgroupStats, CpuStats, MemoryStats, PidsStats};

/// One container's cgroup, in every hierarchy it uses.
#[derive(Debug, Clone)]
pub struct Cgroup {
    path: String,
    backend: Backend,
}

#[derive(Debug, Clone)]
enum Backend {
    V1(v1::V1Cgroup),
    V2(v2::V2Cgroup),
}

impl Cgroup {
    /// Creates (`mkdir -p` in every controller used) the cgroup at `path`
    /// (relative, e.g. `garden/abc`; a leading `/` means the same) on the host's
    /// hierarchies, and applies the OCI resources. An existing cgroup is reused
    /// and the resources are applied to it.
    pub fn create(path: &str, resources: Option<&LinuxResources>) -> Result<Cgroup, CgroupError> {
        Cgroup::create_at(&Hierarchy::host()?, path, resources)
    }

    /// [`Cgroup::create`] on the given hierarchies. If applying the resources
    /// fails, the directories this call created are removed again.
    pub fn create_at(
        hierarchy: &Hierarchy,
        path: &str,
        resources: Option<&LinuxResources>,
    ) -> Result<Cgroup, CgroupError> {
        let cgroup = Cgroup::at(hierarchy, path)?;
        cgroup.materialize(resources)?;
        Ok(cgroup)
    }

    /// The cgroup at `path` on the host's hierarchies, without creating or
    /// touching anything: where it will be ([`Cgroup::host_dirs`]) is known
    /// before [`Cgroup::materialize`] makes it.
    pub fn lookup(path: &str) -> Result<Cgroup, CgroupError> {
        Cgroup::at(&Hierarchy::host()?, path)
    }

    /// Creates the directories and applies the OCI resources (what
    /// [`Cgroup::create`] does after the lookup). If applying fails, the
    /// directories this call created are removed again.
    pub fn materialize(&self, resources: Option<&LinuxResources>) -> Result<(), CgroupError> {
        let created = match &self.backend {
            Backend::V1(c) => c.create()?,
            Backend::V2(c) => c.create()?,
        };
        if let Some(r) = resources {
            if let Err(e) = self.update(r) {
                files::remove_created(&created);
                return Err(e);
            }
        }
        tracing::info!(cgroup = %self.path, mode = ?self.mode(), "cgroup created");
        Ok(())
    }

    /// Opens an existing cgroup on the host's hierarchies.
    pub fn open(path: &str) -> Result<Cgroup, CgroupError> {
        Cgroup::open_at(&Hierarchy::host()?, path)
    }

    /// Opens an existing cgroup; [`CgroupError::NotFound`] if it exists in no
    /// hierarchy.
    pub fn open_at(hierarchy: &Hierarchy, path: &str) -> Result<Cgroup, CgroupError> {
        let cgroup = Cgroup::at(hierarchy, path)?;
        let exists = match &cgroup.backend {
            Backend::V1(c) => c.exists(),
            Backend::V2(c) => c.exists(),
        };
        if exists {
            Ok(cgroup)
        } else {
            let looked_in = match hierarchy {
                Hierarchy::Unified(root) => root.clone(),
                Hierarchy::Legacy(mounts) => mounts
                    .first()
                    .map(|m| m.mount_point.clone())
                    .unwrap_or_default(),
            };
            Err(CgroupError::NotFound {
                path: cgroup.path,
                looked_in,
            })
        }
    }

    fn at(hierarchy: &Hierarchy, path: &str) -> Result<Cgroup, CgroupError> {
        let rel = relative_path(path)?;
        let backend = match hierarchy {
            Hierarchy::Legacy(mounts) => Backend::V1(v1::V1Cgroup::new(mounts, &rel)),
            Hierarchy::Unified(root) => Backend::V2(v2::V2Cgroup::new(root, &rel)),
        };
        Ok(Cgroup {
            path: rel.to_string_lossy().into_owned(),
            backend,
        })
    }

    /// The cgroup's path relative to the hierarchy roots, without leading `/`.
    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn mode(&self) -> CgroupMode {
        match self.backend {
            Backend::V1(_) => CgroupMode::Legacy,
            Backend::V2(_) => CgroupMode::Unified,
        }
    }

    /// Moves process `pid` (the whole thread group) into the cgroup, in every
    /// controller.
    pub fn add_pid(&self, pid: i32) -> Result<(), CgroupError> {
        match &self.backend {
            Backend::V1(c) => c.add_pid(pid),
            Backend::V2(c) => c.add_pid(pid),
        }
    }

    /// Moves the calling process into the cgroup, in every controller. Only
    /// for a single-threaded process (a freshly forked child) placing itself
    /// before it forks anything.
    ///
    /// Why: moving another process (`add_pid`) takes the kernel's global
    /// threadgroup lock for writing, which waits for an RCU grace period:
    /// 5-20 ms on an idle host. On v1 a thread that moves itself through
    /// `tasks` skips that lock, so this costs microseconds. On v2 it writes
    /// `cgroup.procs` and pays the same as `add_pid`.
    pub fn join_self(&self) -> Result<(), CgroupError> {
        match &self.backend {
            Backend::V1(c) => c.join_self(),
            Backend::V2(c) => c.join_self(),
        }
    }

    /// Whether any process is in the cgroup or below it: cheaper than
    /// [`Cgroup::pids`] (v2 reads `cgroup.events`; v1 one hierarchy).
    pub fn populated(&self) -> Result<bool, CgroupError> {
        match &self.backend {
            Backend::V1(c) => c.populated(),
            Backend::V2(c) => c.populated(),
        }
    }

    /// Every process in the cgroup or below it, sorted. Processes outside the
    /// caller's pid namespace (listed as 0 by the kernel) are left out.
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        match &self.backend {
            Backend::V1(c) => c.pids(),
            Backend::V2(c) => c.pids(),
        }
    }

    /// Applies OCI resources to the existing cgroup (also used by `create`).
    pub fn update(&self, resources: &LinuxResources) -> Result<(), CgroupError> {
        match &self.backend {
            Backend::V1(c) => c.apply(resources),
            Backend::V2(c) => c.apply(resources),
        }
    }

    /// How many processes the kernel's OOM killer has killed in this cgroup
    /// (v2 `memory.events` `oom_kill`, v1 `memory.oom_control` `oom_kill`).
    pub fn oom_kill_count(&self) -> Result<u64, CgroupError> {
        match &self.backend {
            Backend::V1(c) => c.oom_kill_count(),
            Backend::V2(c) => c.oom_kill_count(),
        }
    }

    pub fn stats(&self) -> Result<CgroupStats, CgroupError> {
        match &self.backend {
            Backend::V1(c) => c.stats(),
            Backend::V2(c) => c.stats(),
        }
    }

    /// Freezes every process and waits (about 2 s at most) until they are.
    pub fn freeze(&self) -> Result<(), CgroupError> {
        match &self.backend {
            Backend::V1(c) => c.freeze(),
            Backend::V2(c) => c.freeze(),
        }
    }

    pub fn thaw(&self) -> Result<(), CgroupError> {
        match &self.backend {
            Backend::V1(c) => c.thaw(),
            Backend::V2(c) => c.thaw(),
        }
    }

    /// Sends SIGKILL to every process in the cgroup and below: v2 `cgroup.kill`
    /// when the kernel has it; otherwise freeze, kill each pid, thaw (so nothing
    /// forks away meanwhile); without any freezer, kill in rounds until empty.
    /// Returns once the signals are sent; see the crate docs.
    pub fn kill_all(&self) -> Result<(), CgroupError> {
        let has_freezer = match &self.backend {
            Backend::V1(c) => c.has_freezer(),
            Backend::V2(c) => {
                if c.kill_via_cgroup_kill()? {
                    return Ok(());
                }
                c.has_freezer()
            }
        };
        if has_freezer {
            if let Err(e) = self.freeze() {
                tracing::warn!(cgroup = %self.path, error = %e, "freeze before kill failed; killing anyway");
            }
            let killed = self.signal_all();
            let thawed = self.thaw();
            killed?;
            return thawed;
        }
        for _ in 0..10 {
            if self.signal_all()? == 0 {
                break;
            }
        }
        Ok(())
    }

    /// SIGKILLs every listed pid once; returns how many there were.
    fn signal_all(&self) -> Result<usize, CgroupError> {
        let pids = self.pids()?;
        let own = i32::try_from(std::process::id()).unwrap_or(0);
        for &pid in &pids {
            if pid == own {
                tracing::warn!(cgroup = %self.path, pid, "not killing the calling process, which is in the cgroup");
                continue;
            }
            match kill(Pid::from_raw(pid), Signal::SIGKILL) {
                Ok(()) | Err(Errno::ESRCH) => {}
                Err(source) => return Err(CgroupError::Kill { pid, source }),
            }
        }
        Ok(pids.len())
    }

    /// Removes the cgroup (and any cgroups below it) in every controller,
    /// retrying briefly on `EBUSY`. Missing directories are fine, so this is
    /// idempotent. Processes must be gone first (see [`Cgroup::kill_all`]).
    pub fn destroy(&self) -> Result<(), CgroupError> {
        let result = match &self.backend {
            Backend::V1(c) => c.destroy(),
            Backend::V2(c) => c.destroy(),
        };
        if result.is_ok() {
            tracing::info!(cgroup = %self.path, "cgroup destroyed");
        }
        result
    }

    /// Where the cgroup lives on the host, per hierarchy, for bind-mounting into
    /// the container: on v1 one entry per hierarchy named like `memory` or
    /// `cpu,cpuacct`; on v2 a single entry named `""`.
    pub fn host_dirs(&self) -> Vec<(String, PathBuf)> {
        match &self.backend {
            Backend::V1(c) => c.host_dirs(),
            Backend::V2(c) => vec![(String::new(), c.dir().to_owned())],
        }
    }
}

/// `path` as a relative path of plain components.
fn relative_path(path: &str) -> Result<PathBuf, CgroupError> {
    let invalid = |reason| CgroupError::InvalidPath {
        path: path.to_owned(),
        reason,
    };
    let mut rel = PathBuf::new();
    for component in Path::new(path).components() {
        match component {
            Component::RootDir => {}
            Component::Normal(c) => rel.push(c),
            Component::CurDir | Component::ParentDir | Component::Prefix(_) => {
                return Err(invalid("must not contain . or .. components"))
            }
        }
    }
    if rel.as_os_str().is_empty() {
        return Err(invalid("must name a cgroup below the root"));
    }
    Ok(rel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalised() {
        assert_eq!(
            relative_path("/garden/abc").expect("ok"),
            Path::new("garden/abc")
        );
        assert_eq!(
            relative_path("garden//abc/").expect("ok"),
            Path::new("garden/abc")
        );
        assert!(relative_path("").is_err());
        assert!(relative_path("/").is_err());
        assert!(relative_path("garden/../../etc").is_err());
        assert!(relative_path("./x").is_err());
    }

    #[test]
    fn open_missing_is_not_found() {
        let dir = tempfile::tempdir().expect("tempdir");
        let h = Hierarchy::unified(dir.path());
        assert!(matches!(
            Cgroup::open_at(&h, "nope"),
            Err(CgroupError::NotFound { .. })
        ));
    }
}
