//! Opening paths without leaving a directory: `openat2` with
//! `RESOLVE_IN_ROOT` (the container's root) or `RESOLVE_BENEATH` (StreamIn's
//! destination), and `mkdir -p` built on it.

use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{Gid, Mode, OFlags, ResolveFlags, Uid};
use rustix::io::Errno;

use super::FilesError;

/// Resolution inside the container's root: `/`, `..` and absolute symlinks
/// stop at the root, as they do for the container's processes.
pub(super) const IN_ROOT: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);

/// Resolution below a directory: anything leading out of it fails with EXDEV.
pub(super) const BENEATH: ResolveFlags = ResolveFlags::BENEATH.union(ResolveFlags::NO_MAGICLINKS);

/// A single name opened below its parent: no symlink at all.
const NAME_ONLY: ResolveFlags = BENEATH.union(ResolveFlags::NO_SYMLINKS);

const DIR: OFlags = OFlags::DIRECTORY.union(OFlags::CLOEXEC);

/// How often `openat2` is retried when the kernel cannot rule out a race
/// of `..` with a rename (EAGAIN).
const EAGAIN_RETRIES: u32 = 64;

/// Host ids that new files get.
#[derive(Debug, Clone, Copy)]
pub(super) struct Owner {
    pub uid: Uid,
    pub gid: Gid,
}

/// Opens the container's root directory (`/proc/<pid>/root`).
pub(super) fn open_root(root: &Path) -> Result<OwnedFd, FilesError> {
    rustix::fs::open(root, DIR, Mode::empty()).map_err(|e| FilesError::Root {
        path: root.to_path_buf(),
        source: e.into(),
    })
}

/// `openat2` with close-on-exec, retried on EAGAIN. An empty path is the
/// directory itself.
pub(super) fn openat2(
    dir: BorrowedFd<'_>,
    path: &Path,
    flags: OFlags,
    mode: Mode,
    resolve: ResolveFlags,
) -> Result<OwnedFd, Errno> {
    let path = if path.as_os_str().is_empty() {
        Path::new(".")
    } else {
        path
    };
    let mut tries = 0;
    loop {
        match rustix::fs::openat2(dir, path, flags | OFlags::CLOEXEC, mode, resolve) {
            Err(Errno::AGAIN) if tries < EAGAIN_RETRIES => tries += 1,
            r => return r,
        }
    }
}

/// Opens directory `path` below `dir` for reading.
pub(super) fn open_dir(
    dir: BorrowedFd<'_>,
    path: &Path,
    resolve: ResolveFlags,
) -> Result<OwnedFd, Errno> {
    openat2(dir, path, DIR, Mode::empty(), resolve)
}

/// Opens `name`, a single component, as a directory of `parent` without
/// following a symlink.
pub(super) fn open_child_dir(parent: BorrowedFd<'_>, name: &OsStr) -> Result<OwnedFd, Errno> {
    open_dir(parent, Path::new(name), NAME_ONLY)
}

/// The components of a destination or source path inside the container.
/// Relative paths start at the root; `..` is refused, since it would make
/// `mkdir -p` and "the parent of the source" ambiguous through symlinks.
pub(super) fn container_path(path: &str) -> Result<Vec<&OsStr>, FilesError> {
    let invalid = |reason| FilesError::InvalidPath {
        path: path.to_string(),
        reason,
    };
    if path.is_empty() {
        return Err(invalid("empty path"));
    }
    if path.as_bytes().contains(&0) {
        return Err(invalid("NUL byte in path"));
    }
    let mut comps = Vec::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(n) => comps.push(n),
            Component::ParentDir => return Err(invalid("`..` components are not allowed")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Ok(comps)
}

/// Joins components into a relative path.
pub(super) fn join(comps: &[&OsStr]) -> PathBuf {
    comps.iter().collect()
}

/// Opens directory `comps` below `base`, resolved with `resolve`, creating
/// the missing directories (mode 0755, owned by `owner`) like `mkdir -p`.
/// Each new directory is made relative to the descriptor of its parent.
pub(super) fn mkdir_p(
    base: BorrowedFd<'_>,
    comps: &[&OsStr],
    resolve: ResolveFlags,
    owner: Owner,
) -> Result<OwnedFd, Errno> {
    match open_dir(base, &join(comps), resolve) {
        Err(Errno::NOENT) => {}
        r => return r,
    }
    let mut cur = rustix::io::fcntl_dupfd_cloexec(base, 0)?;
    let mut prefix = PathBuf::new();
    for c in comps {
        prefix.push(c);
        cur = match open_dir(base, &prefix, resolve) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => make_dir(cur.as_fd(), c, owner)?,
            Err(e) => return Err(e),
        };
    }
    Ok(cur)
}

/// Creates directory `name` in `parent` with mode 0755 owned by `owner`
/// (an existing directory is kept as it is) and opens it.
fn make_dir(parent: BorrowedFd<'_>, name: &OsStr, owner: Owner) -> Result<OwnedFd, Errno> {
    let created = match rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o700)) {
        Ok(()) => true,
        Err(Errno::EXIST) => false,
        Err(e) => return Err(e),
    };
    let fd = open_child_dir(parent, name)?;
    if created {
        rustix::fs::fchown(&fd, Some(owner.uid), Some(owner.gid))?;
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o755))?;
    }
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_paths_are_split_and_checked() {
        let names = |p| {
            container_path(p)
                .expect("valid")
                .iter()
                .map(|c| c.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(names("/tmp//a/./b/"), ["tmp", "a", "b"]);
        assert_eq!(names("rel/x"), ["rel", "x"]);
        assert!(names("/").is_empty());
        for bad in ["", "/a/../b", "..", "a\0b"] {
            let err = container_path(bad).expect_err(bad);
            assert!(err.is_bad_input(), "{err}");
        }
    }
}
