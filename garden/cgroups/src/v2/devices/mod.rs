//! v2 device access control: cgroup v2 has no devices files; instead an eBPF
//! program of type `BPF_PROG_TYPE_CGROUP_DEVICE` attached to the cgroup decides
//! every open/mknod of a device node (what runc, crun and youki do).
//!
//! Replacing the filter (on update) attaches the new program first, with
//! `BPF_F_ALLOW_MULTI`, and then detaches the old ones, so there is no moment
//! without a filter. While both are attached the kernel requires both to allow.

pub(crate) mod program;

use std::ffi::CStr;
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use oci_spec::runtime::LinuxDeviceCgroup;

use crate::device_rule;
use crate::error::CgroupError;
use crate::sys;

const LICENSE: &CStr = c"Apache-2.0";
/// Size of the verifier log captured when loading fails.
const LOG_SIZE: usize = 64 * 1024;

pub(super) fn apply(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<(), CgroupError> {
    let rules = device_rule::normalize(rules)?;
    let insns = program::build(&rules);
    let bpf_err = |op, source| CgroupError::Bpf {
        op,
        path: dir.to_owned(),
        source,
        log: String::new(),
    };

    let cgroup = File::open(dir).map_err(|source| CgroupError::Read {
        path: dir.to_owned(),
        source,
    })?;
    let prog = load(dir, &insns)?;
    let old = sys::prog_query_cgroup_device(cgroup.as_fd()).map_err(|e| bpf_err("query", e))?;
    sys::prog_attach_cgroup_device(cgroup.as_fd(), prog.as_fd(), sys::BPF_F_ALLOW_MULTI)
        .map_err(|e| bpf_err("attach", e))?;
    for id in old {
        let old_prog = match sys::prog_get_fd_by_id(id) {
            Ok(fd) => fd,
            // Detached and freed by someone else meanwhile.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => return Err(bpf_err("get fd by id", e)),
        };
        match sys::prog_detach_cgroup_device(cgroup.as_fd(), old_prog.as_fd()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(bpf_err("detach", e)),
        }
    }
    tracing::debug!(cgroup = %dir.display(), rules = rules.len(), insns = insns.len(), "device filter attached");
    // `prog` is dropped here; the attachment keeps the program alive.
    Ok(())
}

/// Loads the program; on failure loads it again with a verifier log, so the
/// error says why.
fn load(dir: &Path, insns: &[program::BpfInsn]) -> Result<OwnedFd, CgroupError> {
    match sys::prog_load_cgroup_device(insns, LICENSE, &mut []) {
        Ok(fd) => Ok(fd),
        Err(first) => {
            let mut log = vec![0u8; LOG_SIZE];
            let retry = sys::prog_load_cgroup_device(insns, LICENSE, &mut log);
            let text = String::from_utf8_lossy(&log);
            let text = text.trim_end_matches('\0').trim();
            match retry {
                Ok(fd) => Ok(fd),
                Err(_) => Err(CgroupError::Bpf {
                    op: "load",
                    path: dir.to_owned(),
                    source: first,
                    log: if text.is_empty() {
                        String::new()
                    } else {
                        format!("\nverifier log:\n{text}")
                    },
                }),
            }
        }
    }
}
