//! Run the runtime from a binary the container cannot write
//! (CVE-2019-5736 class).
//!
//! Processes of ours that enter a container run the runtime's binary until
//! they exec the container's program, and init stays that binary for the
//! container's life. If a container process could open `/proc/<pid>/exe` of
//! one of them for writing (directly, or later through an `O_PATH` handle),
//! it would overwrite the runtime on the host.
//!
//! So those commands re-execute themselves from a copy no one can write:
//! - first choice: the binary's directory seen through a detached overlayfs
//!   with no upper layer. Such an overlay is read-only by construction (it
//!   cannot be remounted writable) and is attached nowhere, so nothing can
//!   reach it but through our own `/proc/<pid>/exe`. Costs a few mounts, not
//!   a copy of the binary.
//! - fallback (no overlayfs, or no new mount API): a write-sealed memfd copy.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};
use rustix::fs::{Mode, OFlags};
use rustix::mount::{FsMountFlags, FsOpenFlags, MountAttrFlags};

const NAME: &str = "garden-runc";
/// Set in the environment of the re-executed process, so it knows it need
/// not re-execute again (and then checks that this is true).
const MARKER: &str = "_GARDEN_SEALED_EXE";
const OVERLAYFS_SUPER_MAGIC: i64 = 0x794c_7630;

#[derive(Debug, thiserror::Error)]
pub enum SealedExeError {
    #[error("cloning the runtime binary into a sealed memfd: {step}: {source}")]
    Clone {
        step: &'static str,
        #[source]
        source: io::Error,
    },
}

/// Whether we already run from a read-only overlay or a sealed memfd
/// that we made ourselves.
pub fn is_sealed() -> bool {
    std::env::var_os(MARKER).is_some() && runs_read_only("self")
}

/// Whether process `pid` (or `self`) runs a binary nobody can write: a
/// write-sealed memfd, or a file on a read-only overlayfs.
pub fn runs_read_only(pid: &str) -> bool {
    let Ok(exe) = std::fs::File::open(format!("/proc/{pid}/exe")) else {
        return false;
    };
    if let Ok(seals) = fcntl(exe.as_fd(), FcntlArg::F_GET_SEALS) {
        let needed = SealFlag::F_SEAL_WRITE | SealFlag::F_SEAL_SEAL;
        return SealFlag::from_bits_truncate(seals).contains(needed);
    }
    let Ok(fs) = rustix::fs::fstatfs(&exe) else {
        return false;
    };
    let Ok(vfs) = rustix::fs::fstatvfs(&exe) else {
        return false;
    };
    #[allow(clippy::unnecessary_cast)]
    let magic = fs.f_type as i64;
    magic == OVERLAYFS_SUPER_MAGIC && vfs.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY)
}

/// A close-on-exec descriptor of a read-only copy of the running binary,
/// for a child to `fexecve` later (see `process::init`).
pub fn read_only_copy() -> Result<OwnedFd, SealedExeError> {
    match overlay_view() {
        Ok(fd) => Ok(fd),
        Err(e) => {
            tracing::debug!(error = %e, "read-only overlay of the runtime binary unavailable; copying it into a sealed memfd");
            memfd_copy()
        }
    }
}

/// Re-executes the current command from a read-only copy of the binary,
/// unless it already runs from one. Returns only on failure.
pub fn reexec_sealed() -> Result<(), SealedExeError> {
    if is_sealed() {
        return Ok(());
    }
    let exe = read_only_copy()?;
    let args: Vec<CString> = std::env::args_os()
        .filter_map(|a| CString::new(a.into_encoded_bytes()).ok())
        .collect();
    let marker = format!("{MARKER}=");
    let mut env = environment();
    env.retain(|kv| !kv.as_bytes().starts_with(marker.as_bytes()));
    env.extend(CString::new(format!("{MARKER}=1")));
    let e = nix::unistd::fexecve(exe.as_fd(), &args, &env).unwrap_err();
    Err(SealedExeError::Clone {
        step: "fexecve",
        source: e.into(),
    })
}

/// Our environment as `execve` takes it.
pub fn environment() -> Vec<CString> {
    std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut kv = k.into_encoded_bytes();
            kv.push(b'=');
            kv.extend(v.into_encoded_bytes());
            CString::new(kv).ok()
        })
        .collect()
}

/// The binary, opened through a detached overlay of its directory over an
/// empty detached tmpfs (an overlay without upper layer needs two lowers).
fn overlay_view() -> io::Result<OwnedFd> {
    let exe = std::fs::read_link("/proc/self/exe")?;
    let (Some(dir), Some(name)) = (exe.parent(), exe.file_name()) else {
        return Err(io::Error::other("the runtime binary has no directory"));
    };
    if exe.to_string_lossy().ends_with(" (deleted)") {
        return Err(io::Error::other("the runtime binary was deleted"));
    }
    let dir_fd = rustix::fs::open(
        dir,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let empty = detached_mount("tmpfs", &[("size", "4k"), ("mode", "0555")])?;
    let lower = format!(
        "{}:{}",
        fd_path(dir_fd.as_raw_fd()),
        fd_path(empty.as_raw_fd())
    );
    let overlay = detached_mount("overlay", &[("lowerdir", &lower)])?;
    let file = rustix::fs::openat(
        &overlay,
        Path::new(name),
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    // The same file as the one we run, or someone raced us on the directory.
    let (a, b) = (
        rustix::fs::fstat(&file)?,
        rustix::fs::stat("/proc/self/exe")?,
    );
    if a.st_size != b.st_size || a.st_mtime != b.st_mtime || a.st_mtime_nsec != b.st_mtime_nsec {
        return Err(io::Error::other(
            "the runtime binary changed while opening it",
        ));
    }
    Ok(file)
}

fn fd_path(fd: i32) -> String {
    format!("/proc/self/fd/{fd}")
}

/// A new filesystem of `fstype`, mounted nowhere, read-only.
fn detached_mount(fstype: &str, options: &[(&str, &str)]) -> io::Result<OwnedFd> {
    let fs = rustix::mount::fsopen(fstype, FsOpenFlags::FSOPEN_CLOEXEC)?;
    for (key, value) in options {
        rustix::mount::fsconfig_set_string(&fs, *key, *value)?;
    }
    rustix::mount::fsconfig_create(&fs)?;
    let mnt = rustix::mount::fsmount(
        &fs,
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::MOUNT_ATTR_RDONLY
            | MountAttrFlags::MOUNT_ATTR_NODEV
            | MountAttrFlags::MOUNT_ATTR_NOSUID,
    )?;
    Ok(mnt)
}

fn memfd_copy() -> Result<OwnedFd, SealedExeError> {
    let err = |step| move |source| SealedExeError::Clone { step, source };
    let mut exe = std::fs::File::open("/proc/self/exe").map_err(err("opening /proc/self/exe"))?;
    let fd = memfd_create(NAME, MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING)
        .map_err(|e| err("memfd_create")(e.into()))?;
    let mut copy = std::fs::File::from(fd);
    io::copy(&mut exe, &mut copy).map_err(err("copying the binary"))?;
    let seals = SealFlag::F_SEAL_SEAL
        | SealFlag::F_SEAL_SHRINK
        | SealFlag::F_SEAL_GROW
        | SealFlag::F_SEAL_WRITE;
    fcntl(copy.as_fd(), FcntlArg::F_ADD_SEALS(seals)).map_err(|e| err("sealing")(e.into()))?;
    Ok(copy.into())
}
