//! Where the cgroup hierarchies are: mode detection and mount-table parsing.
//!
//! A [`Hierarchy`] is the filesystem root(s) every other module works under. The
//! host's comes from [`Hierarchy::host`]; tests build one over a temp dir with
//! [`Hierarchy::unified`] or [`Hierarchy::legacy`].

use std::fs;
use std::path::{Path, PathBuf};

use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC};

use crate::error::CgroupError;

/// Which cgroup layout a host uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum CgroupMode {
    /// cgroup v1 or hybrid: the resource controllers live on v1 hierarchies.
    Legacy,
    /// Pure cgroup v2 at `/sys/fs/cgroup`.
    Unified,
}

/// The standard cgroup mount point.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Detects the host's mode from the filesystem type of `/sys/fs/cgroup`.
///
/// cgroup2 there means [`CgroupMode::Unified`]; anything else (the tmpfs of a v1
/// or hybrid host) means [`CgroupMode::Legacy`]. If `statfs` fails the host has no
/// usable cgroup2 root either, so that is reported as `Legacy` (with a warning).
pub fn detect_mode() -> CgroupMode {
    detect_mode_at(Path::new(CGROUP_ROOT))
}

/// [`detect_mode`] for a given mount point.
pub fn detect_mode_at(root: &Path) -> CgroupMode {
    match statfs(root) {
        Ok(st) if st.filesystem_type() == CGROUP2_SUPER_MAGIC => CgroupMode::Unified,
        Ok(_) => CgroupMode::Legacy,
        Err(errno) => {
            tracing::warn!(root = %root.display(), %errno, "statfs of the cgroup root failed; assuming legacy cgroups");
            CgroupMode::Legacy
        }
    }
}

/// A cgroup v1 controller this crate manages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Controller {
    Blkio,
    Memory,
    Pids,
    Cpuset,
    Cpuacct,
    Cpu,
    Devices,
    Freezer,
    Hugetlb,
}

impl Controller {
    /// In the order processes are attached: blkio before memory, as the kernel's
    /// writeback accounting wants (cgroups-rs does the same).
    pub const ALL: [Controller; 9] = [
        Controller::Blkio,
        Controller::Memory,
        Controller::Pids,
        Controller::Cpuset,
        Controller::Cpuacct,
        Controller::Cpu,
        Controller::Devices,
        Controller::Freezer,
        Controller::Hugetlb,
    ];

    /// The kernel's name for the controller (as in mount options).
    pub fn name(self) -> &'static str {
        match self {
            Controller::Blkio => "blkio",
            Controller::Memory => "memory",
            Controller::Pids => "pids",
            Controller::Cpuset => "cpuset",
            Controller::Cpuacct => "cpuacct",
            Controller::Cpu => "cpu",
            Controller::Devices => "devices",
            Controller::Freezer => "freezer",
            Controller::Hugetlb => "hugetlb",
        }
    }

    fn from_name(name: &str) -> Option<Controller> {
        Controller::ALL.into_iter().find(|c| c.name() == name)
    }
}

/// One mounted v1 hierarchy carrying one or more controllers we manage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Mount {
    /// The managed controllers on this hierarchy, in mount-option order
    /// (e.g. `[Cpu, Cpuacct]` for a co-mounted `cpu,cpuacct`).
    pub controllers: Vec<Controller>,
    /// Where it is mounted, e.g. `/sys/fs/cgroup/memory`.
    pub mount_point: PathBuf,
}

impl V1Mount {
    /// The hierarchy's name, e.g. `memory` or `cpu,cpuacct`.
    pub fn name(&self) -> String {
        let names: Vec<&str> = self.controllers.iter().map(|c| c.name()).collect();
        names.join(",")
    }
}

/// The cgroup hierarchies containers' cgroups are created in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hierarchy {
    /// v1 (or hybrid): one mount per controller group. Named hierarchies such as
    /// `name=systemd` and a hybrid host's cgroup2 mount are not listed: we never
    /// create cgroups there.
    Legacy(Vec<V1Mount>),
    /// Pure v2: the cgroup2 mount point.
    Unified(PathBuf),
}

impl Hierarchy {
    /// The host's hierarchies: [`detect_mode`], then `/proc/self/mountinfo`.
    pub fn host() -> Result<Hierarchy, CgroupError> {
        let mountinfo = Path::new("/proc/self/mountinfo");
        match detect_mode() {
            CgroupMode::Unified => Ok(Hierarchy::Unified(PathBuf::from(CGROUP_ROOT))),
            CgroupMode::Legacy => Hierarchy::legacy_from_mountinfo_file(mountinfo),
        }
    }

    /// A v2 hierarchy rooted at `root` (a cgroup2 mount, a cgroup below one, or a
    /// temp dir in tests).
    pub fn unified(root: impl Into<PathBuf>) -> Hierarchy {
        Hierarchy::Unified(root.into())
    }

    /// A v1 hierarchy set from explicit mounts.
    pub fn legacy(mounts: Vec<V1Mount>) -> Hierarchy {
        Hierarchy::Legacy(mounts)
    }

    /// Reads a mount table file and keeps its v1 controller mounts.
    pub fn legacy_from_mountinfo_file(path: &Path) -> Result<Hierarchy, CgroupError> {
        let text = fs::read_to_string(path).map_err(|source| CgroupError::MountInfo {
            path: path.to_owned(),
            source,
        })?;
        let mounts = parse_v1_mountinfo(&text);
        if mounts.is_empty() {
            return Err(CgroupError::NoHierarchies {
                path: path.to_owned(),
            });
        }
        Ok(Hierarchy::Legacy(mounts))
    }

    pub fn mode(&self) -> CgroupMode {
        match self {
            Hierarchy::Legacy(_) => CgroupMode::Legacy,
            Hierarchy::Unified(_) => CgroupMode::Unified,
        }
    }
}

/// The v1 mounts in a `/proc/<pid>/mountinfo` text, one per hierarchy, keeping
/// only controllers we manage (the first mount of each wins).
pub fn parse_v1_mountinfo(text: &str) -> Vec<V1Mount> {
    let mut mounts: Vec<V1Mount> = Vec::new();
    for line in text.lines() {
        let Some((mount_point, fs_type, super_opts)) = split_mountinfo_line(line) else {
            continue;
        };
        if fs_type != "cgroup" {
            continue;
        }
        let controllers: Vec<Controller> = super_opts
            .split(',')
            .filter_map(Controller::from_name)
            .filter(|c| !mounts.iter().any(|m| m.controllers.contains(c)))
            .collect();
        if controllers.is_empty() {
            continue;
        }
        mounts.push(V1Mount {
            controllers,
            mount_point: PathBuf::from(unescape_octal(mount_point)),
        });
    }
    mounts
}

/// `(mount point, fs type, super options)` of a mountinfo line:
/// `id parent maj:min root mount_point opts [optional...] - fstype source superopts`.
fn split_mountinfo_line(line: &str) -> Option<(&str, &str, &str)> {
    let (left, right) = line.split_once(" - ")?;
    let mount_point = left.split(' ').nth(4)?;
    let mut right = right.split(' ');
    let fs_type = right.next()?;
    let _source = right.next()?;
    let super_opts = right.next()?;
    Some((mount_point, fs_type, super_opts))
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_octal(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() {
            let digits = &bytes[i + 1..i + 4];
            if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let v = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                if let Ok(b) = u8::try_from(v) {
                    out.push(b);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    // This host's table (hybrid, cpu and cpuacct separate), plus a co-mounted
    // cpu,cpuacct variant further down to check first-wins and naming.
    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime shared:7 - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn hybrid_table_keeps_only_managed_v1_controllers() {
        let mounts = parse_v1_mountinfo(HYBRID);
        let names: Vec<String> = mounts.iter().map(V1Mount::name).collect();
        assert_eq!(
            names,
            ["cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids"]
        );
        assert_eq!(mounts[3].mount_point, Path::new("/sys/fs/cgroup/memory"));
    }

    #[test]
    fn comounted_hierarchy_is_one_entry() {
        let text = "\
25 20 0:22 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
26 20 0:23 / /sys/fs/cgroup/net_cls,net_prio rw - cgroup cgroup rw,net_cls,net_prio
27 20 0:22 / /mnt/other\\040place rw - cgroup cgroup rw,cpu,cpuacct
28 20 0:24 / /mnt/mem\\040ory rw - cgroup cgroup rw,memory
";
        let mounts = parse_v1_mountinfo(text);
        assert_eq!(mounts.len(), 2);
        assert_eq!(
            mounts[0].controllers,
            [Controller::Cpu, Controller::Cpuacct]
        );
        assert_eq!(mounts[0].name(), "cpu,cpuacct");
        assert_eq!(mounts[1].mount_point, Path::new("/mnt/mem ory"));
    }

    #[test]
    fn garbage_lines_are_skipped() {
        assert!(parse_v1_mountinfo("nonsense\n1 2 3\n").is_empty());
    }

    #[test]
    fn detect_mode_agrees_with_mountinfo() {
        // A unit test may read the host: it only checks detection is consistent
        // with what the mount table says.
        let text = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        let root_is_cgroup2 = text.lines().any(|l| {
            split_mountinfo_line(l).is_some_and(|(mp, fs, _)| mp == CGROUP_ROOT && fs == "cgroup2")
        });
        let expected = if root_is_cgroup2 {
            CgroupMode::Unified
        } else {
            CgroupMode::Legacy
        };
        assert_eq!(detect_mode(), expected);
    }

    #[test]
    fn temp_dir_is_not_cgroup2() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(detect_mode_at(dir.path()), CgroupMode::Legacy);
    }
}
