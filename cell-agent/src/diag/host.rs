//! Host checks for a cell: cgroup mode, overlayfs, user namespaces,
//! seccomp, and the garden socket. Each reads files under a `proc_root`
//! (normally `/proc`), so tests can feed their own.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// How cgroups are mounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CgroupMode {
    /// Only the unified hierarchy (`cgroup2` at `/sys/fs/cgroup`).
    V2,
    /// v1 controllers plus a cgroup2 hierarchy (systemd's `unified`).
    Hybrid,
    /// v1 controllers only.
    V1,
    /// No cgroup mount found.
    None,
}

/// What `diag host` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostReport {
    /// The kernel release.
    pub kernel: String,
    /// cgroup mode.
    pub cgroup_mode: CgroupMode,
    /// `overlay` in `/proc/filesystems`.
    pub overlayfs: bool,
    /// `user.max_user_namespaces` (0: user namespaces disabled).
    pub max_user_namespaces: u64,
    /// User namespaces can be made.
    pub user_namespaces: bool,
    /// The kernel has seccomp (a `Seccomp:` line in `/proc/self/status`).
    pub seccomp: bool,
    /// Seccomp filter actions the kernel offers.
    pub seccomp_actions: Vec<String>,
    /// The garden socket.
    pub garden_socket: String,
    /// It exists.
    pub garden_socket_exists: bool,
    /// gardend answered a ping on it.
    pub garden_reachable: bool,
    /// Why not.
    pub garden_error: Option<String>,
    /// Every check passed.
    pub ok: bool,
}

/// The cgroup mode from a `/proc/self/mounts` text.
pub fn cgroup_mode(mounts: &str) -> CgroupMode {
    let mut v1 = false;
    let mut v2_root = false;
    let mut v2_any = false;
    for line in mounts.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(point), Some(kind)) = (fields.get(1), fields.get(2)) else {
            continue;
        };
        match *kind {
            "cgroup2" => {
                v2_any = true;
                v2_root |= *point == "/sys/fs/cgroup";
            }
            "cgroup" => v1 = true,
            _ => {}
        }
    }
    match (v1, v2_root, v2_any) {
        (false, true, _) => CgroupMode::V2,
        (true, _, true) => CgroupMode::Hybrid,
        (true, _, false) => CgroupMode::V1,
        (false, false, true) => CgroupMode::V2,
        (false, false, false) => CgroupMode::None,
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Reads the checks under `proc_root`, and pings garden at `socket`.
pub async fn check(proc_root: &Path, socket: &Path) -> HostReport {
    let mounts = read(&proc_root.join("self/mounts"));
    let filesystems = read(&proc_root.join("filesystems"));
    let overlayfs = filesystems
        .lines()
        .any(|l| l.split_whitespace().last() == Some("overlay"));
    let max_user_namespaces = read(&proc_root.join("sys/user/max_user_namespaces"))
        .trim()
        .parse()
        .unwrap_or(0);
    let user_namespaces = max_user_namespaces > 0 && proc_root.join("self/ns/user").exists();
    let status = read(&proc_root.join("self/status"));
    let seccomp = status.lines().any(|l| l.starts_with("Seccomp:"));
    let seccomp_actions = read(&proc_root.join("sys/kernel/seccomp/actions_avail"))
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let kernel = read(&proc_root.join("sys/kernel/osrelease"))
        .trim()
        .to_owned();
    let garden_socket_exists = socket.exists();
    let client = garden_api::client::Client::unix(socket);
    let garden = tokio::time::timeout(std::time::Duration::from_secs(5), client.ping()).await;
    let (garden_reachable, garden_error) = match garden {
        Ok(Ok(())) => (true, None),
        Ok(Err(e)) => (false, Some(e.to_string())),
        Err(_) => (false, Some("no answer within 5s".into())),
    };
    let cgroup_mode = cgroup_mode(&mounts);
    let ok = cgroup_mode != CgroupMode::None
        && overlayfs
        && user_namespaces
        && seccomp
        && garden_reachable;
    HostReport {
        kernel,
        cgroup_mode,
        overlayfs,
        max_user_namespaces,
        user_namespaces,
        seccomp,
        seccomp_actions,
        garden_socket: socket.display().to_string(),
        garden_socket_exists,
        garden_reachable,
        garden_error,
        ok,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_modes_from_mounts() {
        let v2 = "cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid 0 0\n";
        assert_eq!(cgroup_mode(v2), CgroupMode::V2);
        let hybrid = "tmpfs /sys/fs/cgroup tmpfs ro 0 0\n\
                      cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n\
                      cgroup /sys/fs/cgroup/memory cgroup rw,memory 0 0\n";
        assert_eq!(cgroup_mode(hybrid), CgroupMode::Hybrid);
        let v1 = "cgroup /sys/fs/cgroup/memory cgroup rw,memory 0 0\n";
        assert_eq!(cgroup_mode(v1), CgroupMode::V1);
        assert_eq!(cgroup_mode("proc /proc proc rw 0 0\n"), CgroupMode::None);
    }

    #[tokio::test]
    async fn checks_read_a_fake_proc() {
        let root = tempfile::tempdir().expect("tempdir");
        let p = root.path();
        for dir in ["self/ns", "sys/user", "sys/kernel/seccomp"] {
            std::fs::create_dir_all(p.join(dir)).expect("mkdir");
        }
        std::fs::write(
            p.join("self/mounts"),
            "cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n",
        )
        .expect("write");
        std::fs::write(p.join("filesystems"), "nodev\tproc\nnodev\toverlay\n").expect("write");
        std::fs::write(p.join("sys/user/max_user_namespaces"), "63000\n").expect("write");
        std::fs::write(p.join("self/ns/user"), "").expect("write");
        std::fs::write(p.join("self/status"), "Name:\tx\nSeccomp:\t0\n").expect("write");
        std::fs::write(
            p.join("sys/kernel/seccomp/actions_avail"),
            "kill_process errno\n",
        )
        .expect("write");
        let report = check(p, &p.join("no-garden.sock")).await;
        assert_eq!(report.cgroup_mode, CgroupMode::V2);
        assert!(report.overlayfs && report.user_namespaces && report.seccomp);
        assert_eq!(report.seccomp_actions, ["kill_process", "errno"]);
        assert!(!report.garden_socket_exists && !report.garden_reachable);
        assert!(!report.ok, "garden is down");
    }
}
