//! StreamIn: a tar stream unpacked into a directory of the container.
//!
//! Like Garden's `nstar` (`mkdir -p` of the destination, then `tar -x
//! --no-same-owner` as the user): modes (setuid/setgid included) and mtimes
//! come from the archive, the owner is always the requesting user. Unlike a
//! plain `tar -x`, every entry is checked before anything of it is written
//! and resolved below the destination, so neither `..`, an absolute name, a
//! symlink nor a hard link reaches a file outside it.

use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, Gid, Mode, OFlags, Timespec, Timestamps, Uid, UTIME_OMIT};
use rustix::io::Errno;
use tar::EntryType;

use super::resolve::{self, Owner, BENEATH, IN_ROOT};
use super::{FilesError, IdMap, Rejection, User};

/// Unpacks the tar stream `tar` into `dest`, a directory inside the
/// container whose root is `root` (`/proc/<pid>/root`), creating `dest` and
/// its missing parents like `mkdir -p`.
///
/// Files, directories and symlinks it creates belong to `owner` (container
/// ids, mapped to host ids through `map`); existing files are replaced
/// (never written through, never followed if they are symlinks), existing
/// directories are merged and keep their owner. Returns once the whole
/// archive is written, or at the first entry that is refused or fails:
/// entries before it stay written, nothing lands outside `dest`.
pub fn stream_in(
    root: &Path,
    dest: &str,
    owner: &User,
    map: &IdMap,
    tar: impl Read,
) -> Result<(), FilesError> {
    let owner = Owner {
        uid: Uid::from_raw(map.to_host(owner.uid)),
        gid: Gid::from_raw(map.to_host(owner.gid)),
    };
    let root_fd = resolve::open_root(root)?;
    let comps = resolve::container_path(dest)?;
    let dest_fd =
        resolve::mkdir_p(root_fd.as_fd(), &comps, IN_ROOT, owner).map_err(|e| match e {
            Errno::NOTDIR | Errno::EXIST | Errno::LOOP => FilesError::NotADirectory {
                path: dest.to_string(),
            },
            e => FilesError::Io {
                op: "mkdir -p",
                path: dest.to_string(),
                source: e.into(),
            },
        })?;
    let mut unpacker = Unpacker {
        dest: dest_fd,
        owner,
        dirs: Vec::new(),
        entries: 0,
    };
    let result = unpacker.unpack(tar);
    tracing::debug!(
        dest,
        entries = unpacker.entries,
        ok = result.is_ok(),
        "stream in"
    );
    result
}

struct Unpacker {
    dest: OwnedFd,
    owner: Owner,
    /// Directories written, with their mtimes: set at the end, since every
    /// entry written into a directory changes its mtime.
    dirs: Vec<(PathBuf, i64)>,
    entries: usize,
}

/// One entry about to be written: its name for errors, its path below the
/// destination, and the header's mode and mtime.
struct Target<'a> {
    name: &'a str,
    comps: Vec<&'a OsStr>,
    mode: Mode,
    mtime: i64,
}

fn invalid_tar(source: io::Error) -> FilesError {
    FilesError::InvalidTar { source }
}

impl Unpacker {
    fn unpack(&mut self, tar: impl Read) -> Result<(), FilesError> {
        let mut archive = tar::Archive::new(tar);
        for entry in archive.entries().map_err(invalid_tar)? {
            let mut entry = entry.map_err(invalid_tar)?;
            self.entry(&mut entry)?;
            self.entries += 1;
        }
        self.finish_dirs()
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), FilesError> {
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            EntryType::XGlobalHeader
                | EntryType::XHeader
                | EntryType::GNULongName
                | EntryType::GNULongLink
        ) {
            return Ok(());
        }
        let path = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&path).into_owned();
        let reject = |reason| FilesError::Rejected {
            entry: name.clone(),
            reason,
        };
        let comps = entry_path(&path).map_err(reject)?;
        let header = entry.header();
        let mode = Mode::from_raw_mode(header.mode().map_err(invalid_tar)? & 0o7777);
        let mtime = i64::try_from(header.mtime().map_err(invalid_tar)?).unwrap_or(i64::MAX);
        let link = entry.link_name_bytes().map(|l| l.into_owned());
        let t = Target {
            name: &name,
            comps,
            mode,
            mtime,
        };
        match kind {
            EntryType::Directory => self.directory(&t),
            // Old tars mark directories by a trailing slash only.
            EntryType::Regular if path.ends_with(b"/") => self.directory(&t),
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.file(&t, entry)
            }
            EntryType::Symlink => {
                self.symlink(&t, &link.ok_or_else(|| reject(Rejection::MissingLinkName))?)
            }
            EntryType::Link => {
                self.hard_link(&t, &link.ok_or_else(|| reject(Rejection::MissingLinkName))?)
            }
            EntryType::Char | EntryType::Block => Err(reject(Rejection::DeviceNode)),
            EntryType::Fifo => Err(reject(Rejection::Fifo)),
            other => Err(reject(Rejection::UnsupportedType(other.as_byte()))),
        }
    }

    /// Opens the directory that will hold `t`, creating missing parents.
    fn parent(&self, t: &Target<'_>) -> Result<OwnedFd, FilesError> {
        let parents = &t.comps[..t.comps.len().saturating_sub(1)];
        resolve::mkdir_p(self.dest.as_fd(), parents, BENEATH, self.owner)
            .map_err(|e| resolve_error(t.name, "mkdir -p", e))
    }

    fn directory(&mut self, t: &Target<'_>) -> Result<(), FilesError> {
        let err = |op| move |e| write_error(t.name, op, e);
        let Some(last) = t.comps.last() else {
            // "./": the destination itself.
            rustix::fs::fchmod(&self.dest, t.mode).map_err(err("chmod"))?;
            self.dirs.push((PathBuf::new(), t.mtime));
            return Ok(());
        };
        let parent = self.parent(t)?;
        let created = match rustix::fs::mkdirat(&parent, *last, Mode::from_raw_mode(0o700)) {
            Ok(()) => true,
            Err(Errno::EXIST) if is_dir(parent.as_fd(), last) => false,
            Err(Errno::EXIST) => {
                remove_existing(parent.as_fd(), last, t.name)?;
                rustix::fs::mkdirat(&parent, *last, Mode::from_raw_mode(0o700))
                    .map_err(err("mkdir"))?;
                true
            }
            Err(e) => return Err(write_error(t.name, "mkdir", e)),
        };
        let dir = resolve::open_child_dir(parent.as_fd(), last).map_err(err("open"))?;
        if created {
            rustix::fs::fchown(&dir, Some(self.owner.uid), Some(self.owner.gid))
                .map_err(err("chown"))?;
        }
        rustix::fs::fchmod(&dir, t.mode).map_err(err("chmod"))?;
        self.dirs.push((resolve::join(&t.comps), t.mtime));
        Ok(())
    }

    fn file<R: Read>(&self, t: &Target<'_>, data: &mut R) -> Result<(), FilesError> {
        let err = |op| move |e| write_error(t.name, op, e);
        let Some(last) = t.comps.last() else {
            return Err(rejected(t.name, Rejection::ReplacesDestination));
        };
        let parent = self.parent(t)?;
        remove_existing(parent.as_fd(), last, t.name)?;
        // O_EXCL never opens an existing file, nor follows a symlink that
        // someone put there since.
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW;
        let fd = resolve::openat2(
            parent.as_fd(),
            Path::new(last),
            flags,
            Mode::from_raw_mode(0o600),
            BENEATH,
        )
        .map_err(err("create"))?;
        // chown before chmod: chown clears setuid and setgid.
        rustix::fs::fchown(&fd, Some(self.owner.uid), Some(self.owner.gid))
            .map_err(err("chown"))?;
        let mut file = std::fs::File::from(fd);
        copy(data, &mut file, t.name)?;
        rustix::fs::fchmod(&file, t.mode).map_err(err("chmod"))?;
        rustix::fs::futimens(&file, &times(t.mtime)).map_err(err("set mtime"))
    }

    fn symlink(&self, t: &Target<'_>, target: &[u8]) -> Result<(), FilesError> {
        let err = |op| move |e| write_error(t.name, op, e);
        let Some(last) = t.comps.last() else {
            return Err(rejected(t.name, Rejection::ReplacesDestination));
        };
        let parent = self.parent(t)?;
        remove_existing(parent.as_fd(), last, t.name)?;
        rustix::fs::symlinkat(OsStr::from_bytes(target), &parent, *last).map_err(err("symlink"))?;
        let nofollow = AtFlags::SYMLINK_NOFOLLOW;
        rustix::fs::chownat(
            &parent,
            *last,
            Some(self.owner.uid),
            Some(self.owner.gid),
            nofollow,
        )
        .map_err(err("chown"))?;
        rustix::fs::utimensat(&parent, *last, &times(t.mtime), nofollow).map_err(err("set mtime"))
    }

    /// A hard link to an entry already below the destination (tar names the
    /// target by its path in the archive).
    fn hard_link(&self, t: &Target<'_>, target: &[u8]) -> Result<(), FilesError> {
        let reject = |reason| rejected(t.name, reason);
        let Some(last) = t.comps.last() else {
            return Err(reject(Rejection::ReplacesDestination));
        };
        let target = entry_path(target).map_err(|r| {
            reject(match r {
                Rejection::Absolute => Rejection::LinkTargetAbsolute,
                _ => Rejection::LinkTargetParentDir,
            })
        })?;
        let Some((target_name, target_parents)) = target.split_last() else {
            return Err(reject(Rejection::LinkTargetDirectory));
        };
        if target == t.comps {
            return Err(reject(Rejection::LinkToItself));
        }
        let target_dir =
            resolve::open_dir(self.dest.as_fd(), &resolve::join(target_parents), BENEATH).map_err(
                |e| match e {
                    Errno::NOENT => reject(Rejection::LinkTargetMissing),
                    e => resolve_error(t.name, "open link target", e),
                },
            )?;
        let parent = self.parent(t)?;
        remove_existing(parent.as_fd(), last, t.name)?;
        // Flags 0: a symlink target is linked itself, never followed.
        rustix::fs::linkat(&target_dir, *target_name, &parent, *last, AtFlags::empty()).map_err(
            |e| match e {
                Errno::NOENT => reject(Rejection::LinkTargetMissing),
                Errno::PERM => reject(Rejection::LinkTargetDirectory),
                Errno::XDEV => reject(Rejection::LinkAcrossMounts),
                e => write_error(t.name, "link", e),
            },
        )
    }

    /// Sets the mtimes of the directories written, deepest last written
    /// first; a directory replaced by a later entry is skipped.
    fn finish_dirs(&mut self) -> Result<(), FilesError> {
        for (path, mtime) in self.dirs.iter().rev() {
            let dir = match resolve::openat2(
                self.dest.as_fd(),
                path,
                OFlags::DIRECTORY | OFlags::NOFOLLOW,
                Mode::empty(),
                BENEATH,
            ) {
                Ok(dir) => dir,
                Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP | Errno::XDEV) => continue,
                Err(e) => return Err(write_error(&path.to_string_lossy(), "open", e)),
            };
            rustix::fs::futimens(&dir, &times(*mtime))
                .map_err(|e| write_error(&path.to_string_lossy(), "set mtime", e))?;
        }
        Ok(())
    }
}

/// The components of an entry's path, refused if absolute or with `..`;
/// `.` components are dropped (an empty result is the destination itself).
fn entry_path(path: &[u8]) -> Result<Vec<&OsStr>, Rejection> {
    let mut comps = Vec::new();
    for c in Path::new(OsStr::from_bytes(path)).components() {
        match c {
            Component::Normal(n) => comps.push(n),
            Component::CurDir => {}
            Component::ParentDir => return Err(Rejection::ParentDir),
            Component::RootDir | Component::Prefix(_) => return Err(Rejection::Absolute),
        }
    }
    Ok(comps)
}

/// Removes what is at `name` (a file, a symlink, an empty directory) so a
/// new entry takes its place; a directory that is not empty stays and the
/// entry is refused.
fn remove_existing(parent: BorrowedFd<'_>, name: &OsStr, entry: &str) -> Result<(), FilesError> {
    let flags = if is_dir(parent, name) {
        AtFlags::REMOVEDIR
    } else {
        AtFlags::empty()
    };
    match rustix::fs::unlinkat(parent, name, flags) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(Errno::NOTEMPTY | Errno::EXIST) => Err(rejected(entry, Rejection::ReplacesDirectory)),
        Err(e) => Err(write_error(entry, "remove", e)),
    }
}

/// Whether `name` in `parent` is a directory (not a symlink to one).
fn is_dir(parent: BorrowedFd<'_>, name: &OsStr) -> bool {
    rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW)
        .map(|st| rustix::fs::FileType::from_raw_mode(st.st_mode).is_dir())
        .unwrap_or(false)
}

/// Copies an entry's data: read failures are the archive's, write failures
/// the container's.
fn copy(data: &mut impl Read, file: &mut std::fs::File, entry: &str) -> Result<(), FilesError> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match data.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(invalid_tar(e)),
        };
        file.write_all(&buf[..n])
            .map_err(|source| FilesError::Write {
                entry: entry.to_string(),
                op: "write",
                source,
            })?;
    }
}

/// Timestamps that set the mtime and leave the atime alone.
fn times(mtime: i64) -> Timestamps {
    Timestamps {
        last_access: Timespec {
            tv_sec: 0,
            tv_nsec: UTIME_OMIT,
        },
        last_modification: Timespec {
            tv_sec: mtime,
            tv_nsec: 0,
        },
    }
}

fn rejected(entry: &str, reason: Rejection) -> FilesError {
    FilesError::Rejected {
        entry: entry.to_string(),
        reason,
    }
}

fn write_error(entry: &str, op: &'static str, e: Errno) -> FilesError {
    FilesError::Write {
        entry: entry.to_string(),
        op,
        source: e.into(),
    }
}

/// Errors of resolving an entry's parent below the destination.
fn resolve_error(entry: &str, op: &'static str, e: Errno) -> FilesError {
    match e {
        Errno::XDEV => rejected(entry, Rejection::Escapes),
        Errno::LOOP => rejected(entry, Rejection::SymlinkLoop),
        Errno::NOTDIR | Errno::EXIST => rejected(entry, Rejection::ParentNotDirectory),
        e => write_error(entry, op, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_paths_are_relative_without_dotdot() {
        let ok = |p: &str| entry_path(p.as_bytes()).expect(p).len();
        assert_eq!(ok("a/b/c"), 3);
        assert_eq!(ok("./a//b/"), 2);
        assert_eq!(ok("./"), 0);
        assert_eq!(entry_path(b"/etc/passwd"), Err(Rejection::Absolute));
        assert_eq!(entry_path(b"../x"), Err(Rejection::ParentDir));
        assert_eq!(entry_path(b"a/../../x"), Err(Rejection::ParentDir));
        assert_eq!(entry_path(b"a/.."), Err(Rejection::ParentDir));
    }
}
