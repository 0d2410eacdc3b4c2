//! A shifted copy of a local rootfs directory: the same tree with files the
//! image's root owns given to the mapping's root, for unprivileged
//! containers. Made once per (directory, mapping) and cached by the store.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode};

use crate::extract::LayerStats;
use crate::mapping::{DevicePolicy, IdMapping};

#[derive(Debug, thiserror::Error)]
pub enum ShiftError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: device nodes are not allowed for unprivileged containers")]
    DeviceRefused { path: PathBuf },
}

struct Copier {
    mapping: IdMapping,
    devices: DevicePolicy,
    /// Source (dev, inode) of files with several links → their copy.
    links: HashMap<(u64, u64), PathBuf>,
    stats: LayerStats,
}

/// Copies the tree `src` into the empty directory `dest` with ownership
/// mapped, keeping modes, xattrs, hard links and times. Symlinks are copied,
/// never followed.
pub fn shifted_copy(
    src: &Path,
    dest: &Path,
    mapping: IdMapping,
    devices: DevicePolicy,
) -> Result<LayerStats, ShiftError> {
    let mut c = Copier {
        mapping,
        devices,
        links: HashMap::new(),
        stats: LayerStats::default(),
    };
    c.copy_dir_contents(src, dest)?;
    let md = fs::symlink_metadata(src).map_err(io("reading", src))?;
    c.finish(src, dest, &md)?;
    Ok(c.stats)
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> ShiftError + 'a {
    move |source| ShiftError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

impl Copier {
    fn copy_dir_contents(&mut self, src: &Path, dest: &Path) -> Result<(), ShiftError> {
        for e in fs::read_dir(src).map_err(io("listing", src))? {
            let e = e.map_err(io("listing", src))?;
            let from = e.path();
            let to = dest.join(e.file_name());
            let md = fs::symlink_metadata(&from).map_err(io("reading", &from))?;
            if self.copy_node(&from, &to, &md)? {
                self.finish(&from, &to, &md)?;
            }
        }
        Ok(())
    }

    /// Creates `to` like `from`; false when it became a hard link (which
    /// shares the metadata already set).
    fn copy_node(&mut self, from: &Path, to: &Path, md: &fs::Metadata) -> Result<bool, ShiftError> {
        let ft = md.file_type();
        if ft.is_dir() {
            fs::create_dir(to).map_err(io("creating", to))?;
            self.stats.inodes += 1;
            self.copy_dir_contents(from, to)?;
            return Ok(true);
        }
        if md.nlink() > 1 {
            if let Some(first) = self.links.get(&(md.dev(), md.ino())) {
                fs::hard_link(first, to).map_err(io("linking", to))?;
                return Ok(false);
            }
            self.links.insert((md.dev(), md.ino()), to.to_path_buf());
        }
        self.stats.inodes += 1;
        if ft.is_file() {
            fs::copy(from, to).map_err(io("copying", from))?;
            self.stats.bytes += md.len();
        } else if ft.is_symlink() {
            let target = fs::read_link(from).map_err(io("reading", from))?;
            std::os::unix::fs::symlink(&target, to).map_err(io("creating", to))?;
        } else if ft.is_fifo() || ft.is_char_device() || ft.is_block_device() {
            if !self.make_node(to, md)? {
                self.stats.inodes -= 1;
                return Ok(false);
            }
        } else {
            tracing::debug!(path = %from.display(), "skipping a socket");
            self.stats.inodes -= 1;
            return Ok(false);
        }
        Ok(true)
    }

    /// Creates a device node or FIFO; false when the policy skips it.
    fn make_node(&self, to: &Path, md: &fs::Metadata) -> Result<bool, ShiftError> {
        let ft = md.file_type();
        let whiteout = ft.is_char_device() && md.rdev() == 0;
        if !ft.is_fifo() && !whiteout {
            match self.devices {
                DevicePolicy::Create => {}
                DevicePolicy::Refuse => {
                    return Err(ShiftError::DeviceRefused {
                        path: to.to_path_buf(),
                    })
                }
                DevicePolicy::Skip => {
                    tracing::warn!(path = %to.display(), "skipping a device node for unprivileged containers");
                    return Ok(false);
                }
            }
        }
        let kind = FileType::from_raw_mode(md.mode());
        let mode = Mode::from_raw_mode(md.mode() & 0o7777);
        rfs::mknodat(rfs::CWD, to, kind, mode, md.rdev()).map_err(|e| ShiftError::Io {
            action: "creating",
            path: to.to_path_buf(),
            source: e.into(),
        })?;
        Ok(true)
    }

    /// Owner, mode, xattrs and times of a copy.
    fn finish(&self, from: &Path, to: &Path, md: &fs::Metadata) -> Result<(), ShiftError> {
        let uid = self.mapping.uid(md.uid());
        let gid = self.mapping.gid(md.gid());
        std::os::unix::fs::lchown(to, Some(uid), Some(gid)).map_err(io("chown", to))?;
        let symlink = md.file_type().is_symlink();
        if !symlink {
            let perms = fs::Permissions::from_mode(md.mode() & 0o7777);
            fs::set_permissions(to, perms).map_err(io("chmod", to))?;
            self.copy_xattrs(from, to);
        }
        let times = rfs::Timestamps {
            last_access: rfs::Timespec {
                tv_sec: md.atime(),
                tv_nsec: md.atime_nsec(),
            },
            last_modification: rfs::Timespec {
                tv_sec: md.mtime(),
                tv_nsec: md.mtime_nsec(),
            },
        };
        rfs::utimensat(rfs::CWD, to, &times, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| {
            ShiftError::Io {
                action: "setting times",
                path: to.to_path_buf(),
                source: e.into(),
            }
        })
    }

    fn copy_xattrs(&self, from: &Path, to: &Path) {
        let Ok(names) = xattr::list(from) else {
            return;
        };
        for name in names {
            let Ok(Some(value)) = xattr::get(from, &name) else {
                continue;
            };
            let value = if name.as_os_str() == OsStr::new("security.capability") {
                crate::extract::shift_file_caps(&value, &self.mapping)
            } else {
                value
            };
            if let Err(err) = xattr::set(to, &name, &value) {
                tracing::warn!(path = %to.display(), xattr = ?name, error = %err, "xattr not kept");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shifts_root_only_and_keeps_links() {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("src");
        fs::create_dir_all(src.join("etc")).expect("mkdir");
        fs::write(src.join("etc/passwd"), "root:x:0:0").expect("write");
        fs::hard_link(src.join("etc/passwd"), src.join("etc/link")).expect("link");
        std::os::unix::fs::symlink("/etc/passwd", src.join("abs")).expect("symlink");
        fs::write(src.join("user-file"), "x").expect("write");
        std::os::unix::fs::lchown(src.join("user-file"), Some(1000), Some(1000)).expect("chown");
        fs::set_permissions(src.join("etc/passwd"), fs::Permissions::from_mode(0o640))
            .expect("chmod");
        let dest = dir.path().join("dest");
        fs::create_dir(&dest).expect("mkdir");
        let m = IdMapping::Shifted {
            root_host_uid: 4000000000,
            root_host_gid: 4000000001,
        };
        let stats = shifted_copy(&src, &dest, m, DevicePolicy::Refuse).expect("copy");
        assert_eq!(stats.inodes, 4);
        let md = fs::symlink_metadata(dest.join("etc/passwd")).expect("stat");
        assert_eq!(
            (md.uid(), md.gid(), md.mode() & 0o7777),
            (4000000000, 4000000001, 0o640)
        );
        assert_eq!(md.nlink(), 2);
        let root = fs::symlink_metadata(&dest).expect("stat");
        assert_eq!(root.uid(), 4000000000);
        assert_eq!(
            fs::read_link(dest.join("abs")).expect("readlink"),
            Path::new("/etc/passwd")
        );
        assert_eq!(
            fs::symlink_metadata(dest.join("abs")).expect("stat").uid(),
            4000000000
        );
        assert_eq!(
            fs::symlink_metadata(dest.join("user-file"))
                .expect("stat")
                .uid(),
            1000
        );
    }
}
