//! File operations confined to one directory tree: every path is resolved
//! by the kernel beneath the tree's root (`openat2` with `RESOLVE_BENEATH`),
//! so neither `..` nor a symlink can lead out of it, and the last component
//! of a path is never followed.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// Why a path could not be resolved beneath the root.
#[derive(Debug)]
pub enum ResolveError {
    /// A symlink (or `..` through one) leads outside the tree.
    Escapes,
    /// A component is not a directory.
    NotDirectory,
    /// A component does not exist.
    Missing,
    Io(io::Error),
}

impl From<Errno> for ResolveError {
    fn from(e: Errno) -> ResolveError {
        match e {
            Errno::XDEV | Errno::LOOP => ResolveError::Escapes,
            Errno::NOTDIR => ResolveError::NotDirectory,
            Errno::NOENT => ResolveError::Missing,
            other => ResolveError::Io(other.into()),
        }
    }
}

/// The root of a tree that files are created in.
pub struct Root {
    fd: OwnedFd,
}

/// Owner and mode of directories created on the way to an entry.
#[derive(Clone, Copy)]
pub struct ImplicitDir {
    pub uid: u32,
    pub gid: u32,
}

impl Root {
    pub fn open(path: &Path) -> io::Result<Root> {
        let fd = rfs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Root { fd })
    }

    /// Opens the directory at `components` (relative, already cleaned) for
    /// reading, resolving beneath the root.
    pub fn open_dir(&self, components: &[&OsStr]) -> Result<OwnedFd, ResolveError> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        Ok(rfs::openat2(
            &self.fd,
            join(components),
            flags,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
        )?)
    }

    /// Like [`Root::open_dir`], creating missing directories on the way.
    pub fn make_dirs(
        &self,
        components: &[&OsStr],
        implicit: ImplicitDir,
    ) -> Result<OwnedFd, ResolveError> {
        match self.open_dir(components) {
            Err(ResolveError::Missing) => {}
            other => return other,
        }
        let mut parent = self.open_dir(&[])?;
        for i in 0..components.len() {
            let prefix = &components[..=i];
            parent = match self.open_dir(prefix) {
                Ok(fd) => fd,
                Err(ResolveError::Missing) => {
                    create_dir(&parent, components[i], 0o755, implicit)?;
                    self.open_dir(prefix)?
                }
                Err(e) => return Err(e),
            };
        }
        Ok(parent)
    }
}

/// Creates directory `name` in `parent` owned by `owner` (an existing one
/// is kept).
pub fn create_dir(
    parent: &OwnedFd,
    name: &OsStr,
    mode: u32,
    owner: ImplicitDir,
) -> Result<(), ResolveError> {
    match rfs::mkdirat(parent, name, Mode::from_raw_mode(mode)) {
        Ok(()) => {
            // The mode given to mkdir is cut by the umask: set it as meant.
            rfs::chmodat(parent, name, Mode::from_raw_mode(mode), AtFlags::empty())?;
            rfs::chownat(
                parent,
                name,
                Some(rustix::fs::Uid::from_raw(owner.uid)),
                Some(rustix::fs::Gid::from_raw(owner.gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )?;
            Ok(())
        }
        Err(Errno::EXIST) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// What is at `name` in `parent`, without following a symlink.
pub fn kind_of(parent: &OwnedFd, name: &OsStr) -> io::Result<Option<rfs::FileType>> {
    match rfs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(rfs::FileType::from_raw_mode(st.st_mode))),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Removes the non-directory `name` in `parent`.
pub fn unlink(parent: &OwnedFd, name: &OsStr) -> io::Result<()> {
    Ok(rfs::unlinkat(parent, name, AtFlags::empty())?)
}

/// Creates a new regular file `name` in `parent` (never through a symlink).
pub fn create_file(parent: &OwnedFd, name: &OsStr) -> io::Result<File> {
    let fd = rfs::openat(
        parent,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )?;
    Ok(File::from(fd))
}

/// Opens directory `name` in `parent` for metadata changes.
pub fn open_child_dir(parent: &OwnedFd, name: &OsStr) -> io::Result<OwnedFd> {
    Ok(rfs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Sets owner (without following a symlink) and, unless it is a symlink,
/// mode of `name` in `parent`.
pub fn set_owner_mode(
    parent: &OwnedFd,
    name: &OsStr,
    uid: u32,
    gid: u32,
    mode: Option<u32>,
) -> io::Result<()> {
    rfs::chownat(
        parent,
        name,
        Some(rfs::Uid::from_raw(uid)),
        Some(rfs::Gid::from_raw(gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    )?;
    if let Some(mode) = mode {
        // The entry is no symlink (the caller checked), so following is moot.
        rfs::chmodat(parent, name, Mode::from_raw_mode(mode), AtFlags::empty())?;
    }
    Ok(())
}

/// Sets owner and mode through an open descriptor (chown first: it clears
/// the set-id bits that the mode then restores).
pub fn set_owner_mode_fd(fd: impl AsFd, uid: u32, gid: u32, mode: u32) -> io::Result<()> {
    rfs::fchown(
        &fd,
        Some(rfs::Uid::from_raw(uid)),
        Some(rfs::Gid::from_raw(gid)),
    )?;
    rfs::fchmod(&fd, Mode::from_raw_mode(mode))?;
    Ok(())
}

/// Sets `name`'s access and modification times to `mtime` (seconds).
pub fn set_mtime(parent: &OwnedFd, name: &OsStr, mtime: i64) -> io::Result<()> {
    let t = rfs::Timespec {
        tv_sec: mtime,
        tv_nsec: 0,
    };
    let times = rfs::Timestamps {
        last_access: t,
        last_modification: t,
    };
    Ok(rfs::utimensat(
        parent,
        name,
        &times,
        AtFlags::SYMLINK_NOFOLLOW,
    )?)
}

/// Sets the times of an open directory.
pub fn set_mtime_fd(fd: &OwnedFd, mtime: i64) -> io::Result<()> {
    let t = rfs::Timespec {
        tv_sec: mtime,
        tv_nsec: 0,
    };
    Ok(rfs::futimens(
        fd,
        &rfs::Timestamps {
            last_access: t,
            last_modification: t,
        },
    )?)
}

pub fn symlink(parent: &OwnedFd, name: &OsStr, target: &OsStr) -> io::Result<()> {
    Ok(rfs::symlinkat(target, parent, name)?)
}

/// Hard-links `name` in `parent` to `target_name` in `target_parent` (a
/// symlink is linked itself, never followed).
pub fn hard_link(
    target_parent: &OwnedFd,
    target_name: &OsStr,
    parent: &OwnedFd,
    name: &OsStr,
) -> io::Result<()> {
    Ok(rfs::linkat(
        target_parent,
        target_name,
        parent,
        name,
        AtFlags::empty(),
    )?)
}

/// Creates a device node or FIFO.
pub fn make_node(
    parent: &OwnedFd,
    name: &OsStr,
    kind: rfs::FileType,
    mode: u32,
    major: u32,
    minor: u32,
) -> io::Result<()> {
    Ok(rfs::mknodat(
        parent,
        name,
        kind,
        Mode::from_raw_mode(mode & 0o7777),
        rfs::makedev(major, minor),
    )?)
}

fn join(components: &[&OsStr]) -> PathBuf {
    if components.is_empty() {
        return PathBuf::from(".");
    }
    let mut bytes = Vec::new();
    for (i, c) in components.iter().enumerate() {
        if i > 0 {
            bytes.push(b'/');
        }
        bytes.extend_from_slice(c.as_bytes());
    }
    PathBuf::from(OsStr::from_bytes(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_leaves_the_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root_path = dir.path().join("root");
        std::fs::create_dir_all(root_path.join("real")).expect("mkdir");
        std::os::unix::fs::symlink("/etc", root_path.join("abs")).expect("symlink");
        std::os::unix::fs::symlink("../..", root_path.join("real/up")).expect("symlink");
        std::os::unix::fs::symlink("real", root_path.join("rel")).expect("symlink");
        let root = Root::open(&root_path).expect("open");
        let c = |s: &'static str| -> Vec<&'static OsStr> { s.split('/').map(OsStr::new).collect() };
        assert!(root.open_dir(&c("rel")).is_ok());
        assert!(matches!(
            root.open_dir(&c("abs")),
            Err(ResolveError::Escapes)
        ));
        assert!(matches!(
            root.open_dir(&c("real/up")),
            Err(ResolveError::Escapes)
        ));
        let owner = ImplicitDir { uid: 0, gid: 0 };
        assert!(root.make_dirs(&c("a/b/c"), owner).is_ok());
        assert!(root_path.join("a/b/c").is_dir());
        assert!(matches!(
            root.make_dirs(&c("abs/x"), owner),
            Err(ResolveError::Escapes)
        ));
        assert!(!Path::new("/etc/x").exists());
    }
}
