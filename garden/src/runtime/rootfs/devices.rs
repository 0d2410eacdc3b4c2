//! Device nodes and the standard `/dev` symlinks.

use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use nix::unistd::{chown, Gid, Uid};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};

use super::mount::{ensure_file, mount_raw};
use super::resolve::resolve_in_root;
use super::RootfsError;

/// The devices every container gets (OCI runtime spec, "Default Devices").
const DEFAULT_DEVICES: [(&str, u64, u64); 6] = [
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

const SYMLINKS: [(&str, &str); 5] = [
    ("/proc/self/fd", "/dev/fd"),
    ("/proc/self/fd/0", "/dev/stdin"),
    ("/proc/self/fd/1", "/dev/stdout"),
    ("/proc/self/fd/2", "/dev/stderr"),
    ("pts/ptmx", "/dev/ptmx"),
];

struct Node {
    path: PathBuf,
    kind: SFlag,
    major: u64,
    minor: u64,
    mode: u32,
    uid: u32,
    gid: u32,
}

pub fn create(
    root: &Path,
    extra: &[LinuxDevice],
    in_user_namespace: bool,
) -> Result<(), RootfsError> {
    if !root.join("dev").is_dir() {
        return Ok(());
    }
    let defaults = DEFAULT_DEVICES.iter().map(|(p, major, minor)| Node {
        path: PathBuf::from(p),
        kind: SFlag::S_IFCHR,
        major: *major,
        minor: *minor,
        mode: 0o666,
        uid: 0,
        gid: 0,
    });
    let spec = extra.iter().map(|d| Node {
        path: d.path().clone(),
        kind: match d.typ() {
            LinuxDeviceType::B => SFlag::S_IFBLK,
            LinuxDeviceType::P => SFlag::S_IFIFO,
            _ => SFlag::S_IFCHR,
        },
        major: d.major() as u64,
        minor: d.minor() as u64,
        mode: d.file_mode().unwrap_or(0o666),
        uid: d.uid().unwrap_or(0),
        gid: d.gid().unwrap_or(0),
    });
    for node in defaults.chain(spec) {
        let target = resolve_in_root(root, &node.path)?;
        if in_user_namespace {
            bind_host_device(&node.path, &target)?;
        } else {
            make_node(&node, &target)?;
        }
    }
    for (src, link) in SYMLINKS {
        let path = root.join(link.trim_start_matches('/'));
        if std::fs::symlink_metadata(&path).is_err() {
            std::os::unix::fs::symlink(src, &path).map_err(|source| RootfsError::Io {
                action: "creating symlink",
                path,
                source,
            })?;
        }
    }
    Ok(())
}

fn make_node(node: &Node, target: &Path) -> Result<(), RootfsError> {
    let err = |source| RootfsError::Device {
        path: target.to_path_buf(),
        source,
    };
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(|source| RootfsError::Io {
            action: "creating device directory",
            path: parent.to_path_buf(),
            source,
        })?;
    }
    // A node left from an earlier run of a non-tmpfs /dev is replaced.
    let _ = std::fs::remove_file(target);
    let old = nix::sys::stat::umask(Mode::empty());
    let res = mknod(
        target,
        node.kind,
        Mode::from_bits_truncate(node.mode & 0o7777),
        makedev(node.major, node.minor),
    );
    nix::sys::stat::umask(old);
    res.map_err(err)?;
    chown(
        target,
        Some(Uid::from_raw(node.uid)),
        Some(Gid::from_raw(node.gid)),
    )
    .map_err(err)
}

/// In a user namespace mknod is refused: bind the host's node instead.
fn bind_host_device(path: &Path, target: &Path) -> Result<(), RootfsError> {
    ensure_file(target)?;
    mount_raw(
        Some(path),
        target,
        None,
        MsFlags::MS_BIND,
        None,
        &format!("device {}", path.display()),
    )
}
