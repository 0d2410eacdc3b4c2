//! The OCI spec of a Garden container: Garden's security defaults (user
//! namespace with the maximus mapping, 14 capabilities, the seccomp
//! allow-list, masked paths), its limits as cgroup resources, and an idle
//! init (every process is run with `exec` through a keeper).

use std::path::Path;

use garden_api::types::{BindMountMode, BindMountOrigin, ContainerSpec};
use serde_json::{json, Value};

/// Garden's capabilities for unprivileged containers.
pub const GARDEN_CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Garden's masked paths.
const MASKED: [&str; 8] = [
    "/proc/kcore",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/keys",
    "/sys/firmware",
];

const READ_ONLY: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("bind mount {0:?}: src_path and dst_path must be absolute paths")]
    BindMountPath(String),
}

/// Everything the spec is made of besides the client's request.
pub struct SpecInputs<'a> {
    pub handle: &'a str,
    /// The container's root (the overlay the daemon mounted).
    pub rootfs: &'a Path,
    pub cgroup_path: String,
    /// Container root's host uid/gid; `None` for privileged containers.
    pub maximus: Option<u32>,
    /// The host has pure cgroup v2 (a cgroup2 mount works in a user namespace).
    pub cgroup_v2: bool,
}

pub fn container_spec(req: &ContainerSpec, inp: &SpecInputs<'_>) -> Result<Value, SpecError> {
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "network"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
        json!({"type": "cgroup"}),
    ];
    let caps = json!(GARDEN_CAPS);
    let mut linux = json!({
        "cgroupsPath": inp.cgroup_path,
        "resources": resources(req)?,
        "maskedPaths": MASKED,
        "readonlyPaths": READ_ONLY,
    });
    let mut annotations = json!({"garden.init": "idle"});
    if let Some(max) = inp.maximus {
        namespaces.push(json!({"type": "user"}));
        let maps = json!([
            {"containerID": 0, "hostID": max, "size": 1},
            {"containerID": 1, "hostID": 1, "size": max - 1}
        ]);
        linux["uidMappings"] = maps.clone();
        linux["gidMappings"] = maps;
        annotations["garden.seccomp"] = json!("default");
    }
    linux["namespaces"] = json!(namespaces);
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}),
    ];
    // A v1 hierarchy cannot be mounted from a user namespace; v2 can,
    // through the cgroup namespace, and so can privileged containers.
    if inp.maximus.is_none() || inp.cgroup_v2 {
        mounts.push(json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}));
    }
    for m in &req.bind_mounts {
        mounts.push(bind_mount(m, inp.rootfs)?);
    }
    let hostname: String = inp.handle.chars().take(63).collect();
    Ok(json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": ["garden-init"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        },
        "root": {"path": inp.rootfs, "readonly": false},
        "hostname": hostname,
        "annotations": annotations,
        "mounts": mounts,
        "linux": linux,
    }))
}

fn bind_mount(m: &garden_api::types::BindMount, rootfs: &Path) -> Result<Value, SpecError> {
    if !m.src_path.starts_with('/') || !m.dst_path.starts_with('/') {
        return Err(SpecError::BindMountPath(format!(
            "{} -> {}",
            m.src_path, m.dst_path
        )));
    }
    // A source in the container is taken from its own root filesystem.
    let source = match m.origin {
        BindMountOrigin::Host => m.src_path.clone(),
        BindMountOrigin::Container => rootfs
            .join(m.src_path.trim_start_matches('/'))
            .display()
            .to_string(),
    };
    let mode = match m.mode {
        BindMountMode::Ro => "ro",
        BindMountMode::Rw => "rw",
    };
    Ok(
        json!({"destination": m.dst_path, "type": "bind", "source": source, "options": ["rbind", mode]}),
    )
}

fn resources(req: &ContainerSpec) -> Result<Value, SpecError> {
    let l = &req.limits;
    let mut r = json!({});
    if l.memory.limit_in_bytes > 0 {
        r["memory"] = json!({"limit": l.memory.limit_in_bytes});
    }
    let shares = if l.cpu.weight > 0 {
        l.cpu.weight
    } else {
        l.cpu.limit_in_shares
    };
    if shares > 0 {
        r["cpu"] = json!({"shares": shares.clamp(2, 262_144)});
    }
    if l.pid.max > 0 {
        r["pids"] = json!({"limit": l.pid.max});
    }
    // Bandwidth is the network's (garden-net shapes the veth).
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use garden_api::types::{BindMount, Limits};

    fn inputs(maximus: Option<u32>) -> SpecInputs<'static> {
        SpecInputs {
            handle: "h",
            rootfs: Path::new("/depot/h/bundle/rootfs"),
            cgroup_path: "/garden/h".into(),
            maximus,
            cgroup_v2: false,
        }
    }

    #[test]
    fn unprivileged_gets_a_user_namespace_with_the_maximus_map() {
        let s = container_spec(&ContainerSpec::default(), &inputs(Some(4294967294))).expect("spec");
        let ns: Vec<&str> = s["linux"]["namespaces"]
            .as_array()
            .expect("ns")
            .iter()
            .filter_map(|n| n["type"].as_str())
            .collect();
        assert!(ns.contains(&"user"));
        assert_eq!(s["linux"]["uidMappings"][0]["hostID"], 4294967294u32);
        assert_eq!(s["linux"]["uidMappings"][1]["size"], 4294967293u32);
        assert_eq!(s["annotations"]["garden.seccomp"], "default");
        assert_eq!(
            s["process"]["capabilities"]["bounding"]
                .as_array()
                .map(Vec::len),
            Some(14)
        );
        let p = container_spec(&ContainerSpec::default(), &inputs(None)).expect("spec");
        assert!(p["linux"]["uidMappings"].is_null());
    }

    #[test]
    fn limits_and_bind_mounts() {
        let mut req = ContainerSpec {
            limits: Limits::default(),
            ..ContainerSpec::default()
        };
        req.limits.memory.limit_in_bytes = 64 << 20;
        req.limits.cpu.weight = 512;
        req.limits.pid.max = 100;
        req.bind_mounts.push(BindMount {
            src_path: "/data".into(),
            dst_path: "/mnt".into(),
            ..BindMount::default()
        });
        let s = container_spec(&req, &inputs(None)).expect("spec");
        assert_eq!(s["linux"]["resources"]["memory"]["limit"], 64 << 20);
        assert_eq!(s["linux"]["resources"]["cpu"]["shares"], 512);
        assert_eq!(s["linux"]["resources"]["pids"]["limit"], 100);
        let last = s["mounts"]
            .as_array()
            .and_then(|m| m.last())
            .expect("mount");
        assert_eq!(last["options"][1], "ro");
        req.bind_mounts[0].src_path = "relative".into();
        assert!(container_spec(&req, &inputs(None)).is_err());
    }
}
