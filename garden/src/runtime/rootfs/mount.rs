//! The rootfs mount and the spec's mounts.

use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::MsFlags;
use oci_spec::runtime::Mount;

use super::options::MountOptions;
use super::paths::locked_flags;
use super::resolve::resolve_in_root;
use super::{CgroupView, RootfsError, Setup};
use crate::runtime::bundle::RootfsSource;

/// One mount(2) call with an error that names what was being mounted where.
pub fn mount_raw(
    source: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
    what: &str,
) -> Result<(), RootfsError> {
    nix::mount::mount(source, target, fstype, flags, data).map_err(|source| RootfsError::Mount {
        what: what.to_string(),
        target: target.to_path_buf(),
        source,
    })
}

/// Makes the container's root a mount point: a recursive bind of the bundle's
/// rootfs, or an overlay of the layers.
pub fn mount_rootfs(rootfs: &RootfsSource) -> Result<PathBuf, RootfsError> {
    match rootfs {
        RootfsSource::Dir(dir) => {
            mount_raw(
                Some(dir),
                dir,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None,
                "the rootfs",
            )?;
            Ok(dir.clone())
        }
        RootfsSource::Overlay {
            lower,
            upper,
            work,
            target,
        } => {
            for d in [upper, work] {
                std::fs::create_dir_all(d).map_err(|source| RootfsError::Io {
                    action: "creating overlay directory",
                    path: d.clone(),
                    source,
                })?;
            }
            let lowers: Vec<String> = lower.iter().map(|p| p.display().to_string()).collect();
            let data = format!(
                "lowerdir={},upperdir={},workdir={}",
                lowers.join(":"),
                upper.display(),
                work.display()
            );
            mount_raw(
                Some(Path::new("overlay")),
                target,
                Some("overlay"),
                MsFlags::empty(),
                Some(&data),
                "the overlay rootfs",
            )?;
            Ok(target.clone())
        }
    }
}

/// Mounts one entry of the spec's `mounts` under `root`.
pub fn mount_entry(setup: &Setup<'_>, root: &Path, m: &Mount) -> Result<(), RootfsError> {
    let dest = m.destination();
    if !dest.is_absolute() {
        return Err(RootfsError::RelativeDestination(dest.clone()));
    }
    let opts = MountOptions::parse(m.options().as_deref().unwrap_or(&[]));
    if let Some(bad) = opts
        .data
        .iter()
        .find(|o| matches!(o.as_str(), "idmap" | "ridmap"))
    {
        return Err(RootfsError::UnsupportedOption {
            dest: dest.clone(),
            option: bad.clone(),
        });
    }
    let target = resolve_in_root(root, dest)?;
    let fstype = m.typ().as_deref().unwrap_or("none");
    match fstype {
        "cgroup" | "cgroup2" => mount_cgroup(setup.cgroups, &target, &opts)?,
        _ if opts.bind || fstype == "bind" => bind(setup.bundle_dir, m, &target, &opts)?,
        _ => {
            ensure_dir(&target)?;
            let source = m.source().clone().unwrap_or_else(|| PathBuf::from(fstype));
            let data = opts.data_string();
            let what = format!("{fstype} for {}", dest.display());
            let res = mount_raw(
                Some(&source),
                &target,
                Some(fstype),
                opts.flags,
                data.as_deref(),
                &what,
            );
            match res {
                // In a user namespace without its own network namespace sysfs
                // cannot be mounted; the host's, read-only, is what runc gives.
                Err(RootfsError::Mount {
                    source: Errno::EPERM,
                    ..
                }) if fstype == "sysfs" && setup.in_user_namespace => fallback_bind(
                    Path::new("/sys"),
                    &target,
                    opts.flags | MsFlags::MS_RDONLY,
                    &what,
                )?,
                Err(RootfsError::Mount {
                    source: Errno::EPERM,
                    ..
                }) if fstype == "mqueue" && setup.in_user_namespace => {
                    fallback_bind(Path::new("/dev/mqueue"), &target, opts.flags, &what)?
                }
                other => other?,
            }
        }
    }
    if !opts.propagation.is_empty() {
        mount_raw(
            None,
            &target,
            None,
            opts.propagation,
            None,
            &format!("propagation of {}", dest.display()),
        )?;
    }
    Ok(())
}

fn bind(
    bundle_dir: &Path,
    m: &Mount,
    target: &Path,
    opts: &MountOptions,
) -> Result<(), RootfsError> {
    let source = m.source().clone().unwrap_or_default();
    let source = if source.is_absolute() {
        source
    } else {
        bundle_dir.join(source)
    };
    let meta = std::fs::metadata(&source).map_err(|e| RootfsError::BindSource {
        path: source.clone(),
        source: e,
    })?;
    if meta.is_dir() {
        ensure_dir(target)?;
    } else {
        ensure_file(target)?;
    }
    let rec = if opts.recursive {
        MsFlags::MS_REC
    } else {
        MsFlags::empty()
    };
    let what = format!(
        "bind {} for {}",
        source.display(),
        m.destination().display()
    );
    mount_raw(
        Some(&source),
        target,
        None,
        MsFlags::MS_BIND | rec,
        None,
        &what,
    )?;
    remount_bind(target, opts.flags, &what)
}

/// Applies per-mount flags to a fresh bind mount (a bind ignores them).
fn remount_bind(target: &Path, flags: MsFlags, what: &str) -> Result<(), RootfsError> {
    let wanted = flags & !(MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_REC);
    if wanted.is_empty() {
        return Ok(());
    }
    let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | wanted | locked_flags(target);
    mount_raw(None, target, None, flags, None, what)
}

fn fallback_bind(
    source: &Path,
    target: &Path,
    flags: MsFlags,
    what: &str,
) -> Result<(), RootfsError> {
    mount_raw(
        Some(source),
        target,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
        what,
    )?;
    remount_bind(target, flags, what)
}

/// A `cgroup` mount: the container's own cgroup, never the host's tree.
fn mount_cgroup(view: &CgroupView, target: &Path, opts: &MountOptions) -> Result<(), RootfsError> {
    ensure_dir(target)?;
    let flags = opts.flags | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    if view.unified {
        let Some((_, host_dir)) = view.dirs.first() else {
            return Ok(());
        };
        if view.namespaced {
            return mount_raw(
                Some(Path::new("cgroup2")),
                target,
                Some("cgroup2"),
                flags,
                None,
                "cgroup2",
            );
        }
        return fallback_bind(host_dir, target, flags, "the container's cgroup");
    }
    // v1: a tmpfs with one directory per hierarchy, each the container's own
    // cgroup (through the cgroup namespace, or a bind of its host directory).
    mount_raw(
        Some(Path::new("tmpfs")),
        target,
        Some("tmpfs"),
        flags & !MsFlags::MS_RDONLY,
        Some("mode=755"),
        "tmpfs for cgroups",
    )?;
    for (name, host_dir) in &view.dirs {
        let dir = target.join(name);
        ensure_dir(&dir)?;
        let what = format!("cgroup {name}");
        let mounted = view.namespaced
            && nix::mount::mount(
                Some("cgroup"),
                &dir,
                Some("cgroup"),
                flags,
                Some(name.as_str()),
            )
            .is_ok();
        if !mounted {
            fallback_bind(host_dir, &dir, flags, &what)?;
        }
        // Co-mounted controllers ("cpu,cpuacct") are also reachable by name.
        if name.contains(',') {
            for single in name.split(',') {
                let link = target.join(single);
                if !link.exists() {
                    std::os::unix::fs::symlink(name, &link).map_err(|source| RootfsError::Io {
                        action: "linking cgroup controller",
                        path: link.clone(),
                        source,
                    })?;
                }
            }
        }
    }
    if opts.flags.contains(MsFlags::MS_RDONLY) {
        super::paths::remount_read_only(target).map_err(|source| RootfsError::ReadOnly {
            path: target.to_path_buf(),
            source,
        })?;
    }
    Ok(())
}

pub fn ensure_dir(path: &Path) -> Result<(), RootfsError> {
    std::fs::create_dir_all(path).map_err(|source| RootfsError::Io {
        action: "creating mount point",
        path: path.to_path_buf(),
        source,
    })
}

pub fn ensure_file(path: &Path) -> Result<(), RootfsError> {
    if let Some(parent) = path.parent() {
        ensure_dir(parent)?;
    }
    if std::fs::symlink_metadata(path).is_ok() {
        return Ok(());
    }
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map(drop)
        .map_err(|source| RootfsError::Io {
            action: "creating mount point",
            path: path.to_path_buf(),
            source,
        })
}
