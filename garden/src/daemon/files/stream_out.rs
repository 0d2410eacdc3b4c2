//! StreamOut: a file or directory of the container written as a tar stream.
//!
//! Garden's semantics: `tar -C dirname(source) -c basename(source)`, or,
//! for a source ending in `/`, the directory's contents as `./...` (`tar -C
//! source -c .`). Symlinks are archived as symlinks, files linked more than
//! once as hard links after the first, device nodes and FIFOs as headers;
//! sockets are skipped, as tar does. Owners are the container's ids.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io::{self, BufWriter, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;
use tar::{EntryType, Header};

use super::resolve::{self, IN_ROOT};
use super::{FilesError, IdMap};

/// Writes a tar stream of `source` (a path inside the container whose root
/// is `root`) to `out`, with owners mapped back to container ids through
/// `map`. A missing source is [`FilesError::NotFound`].
///
/// If an error ends the stream early, `out` gets no end-of-archive marker,
/// so a reader sees a truncated archive rather than a complete one.
pub fn stream_out(
    root: &Path,
    source: &str,
    map: &IdMap,
    out: impl Write,
) -> Result<(), FilesError> {
    let root_fd = resolve::open_root(root)?;
    let comps = resolve::container_path(source)?;
    let contents = source.ends_with('/') || source.ends_with("/.") || comps.is_empty();
    let (dir_comps, name) = match comps.split_last() {
        Some((name, parents)) if !contents => (parents, Some(*name)),
        _ => (&comps[..], None),
    };
    let not_found = |e| match e {
        Errno::NOENT => FilesError::NotFound {
            path: source.to_string(),
        },
        Errno::NOTDIR => FilesError::NotADirectory {
            path: source.to_string(),
        },
        e => FilesError::Io {
            op: "open",
            path: source.to_string(),
            source: e.into(),
        },
    };
    let dir = resolve::open_dir(root_fd.as_fd(), &resolve::join(dir_comps), IN_ROOT)
        .map_err(not_found)?;
    let mut packer = Packer {
        builder: tar::Builder::new(BufWriter::with_capacity(
            64 * 1024,
            Guarded {
                inner: out,
                failed: false,
            },
        )),
        map,
        links: HashMap::new(),
        entries: 0,
    };
    let result = match name {
        None => packer.directory_contents(dir),
        Some(name) => {
            let st =
                rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW).map_err(not_found)?;
            packer.entry(dir.as_fd(), name, name.as_bytes().to_vec(), &st)
        }
    };
    tracing::debug!(
        source,
        entries = packer.entries,
        ok = result.is_ok(),
        "stream out"
    );
    match result {
        Ok(()) => packer.finish(),
        Err(e) => {
            packer.poison();
            Err(e)
        }
    }
}

/// The output, which remembers whether a write failed (to tell output
/// errors from read errors) and refuses every write once poisoned.
struct Guarded<W> {
    inner: W,
    failed: bool,
}

impl<W: Write> Write for Guarded<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.failed {
            return Err(io::Error::other("tar stream abandoned"));
        }
        self.inner.write(buf).inspect_err(|_| self.failed = true)
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.failed {
            return Err(io::Error::other("tar stream abandoned"));
        }
        self.inner.flush().inspect_err(|_| self.failed = true)
    }
}

/// A directory being walked: its descriptor, its path in the archive (with
/// a trailing `/`) and the names still to archive.
struct Frame {
    dir: OwnedFd,
    prefix: Vec<u8>,
    names: std::vec::IntoIter<OsString>,
}

struct Packer<'a, W: Write> {
    builder: tar::Builder<BufWriter<Guarded<W>>>,
    map: &'a IdMap,
    /// Archive paths of files with several links, by (device, inode).
    links: HashMap<(u64, u64), Vec<u8>>,
    entries: usize,
}

impl<W: Write> Packer<'_, W> {
    /// The contents of `dir` as `./` and `./...`.
    fn directory_contents(&mut self, dir: OwnedFd) -> Result<(), FilesError> {
        let st = rustix::fs::fstat(&dir).map_err(|e| read_error(b"./", "stat", e))?;
        self.header_only(&st, EntryType::Directory, b"./", None)?;
        self.walk(dir, b"./".to_vec())
    }

    /// `name` in `parent`, archived as `path`, and below it if a directory.
    fn entry(
        &mut self,
        parent: BorrowedFd<'_>,
        name: &OsStr,
        path: Vec<u8>,
        st: &Stat,
    ) -> Result<(), FilesError> {
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => {
                let mut prefix = path;
                prefix.push(b'/');
                self.header_only(st, EntryType::Directory, &prefix, None)?;
                let dir = resolve::open_child_dir(parent, name)
                    .map_err(|e| read_error(&prefix, "open", e))?;
                self.walk(dir, prefix)
            }
            FileType::RegularFile => self.file(parent, name, path, st),
            FileType::Symlink => {
                let target = rustix::fs::readlinkat(parent, name, Vec::new())
                    .map_err(|e| read_error(&path, "readlink", e))?;
                self.header_only(st, EntryType::Symlink, &path, Some(target.as_bytes()))
            }
            FileType::CharacterDevice => self.header_only(st, EntryType::Char, &path, None),
            FileType::BlockDevice => self.header_only(st, EntryType::Block, &path, None),
            FileType::Fifo => self.header_only(st, EntryType::Fifo, &path, None),
            FileType::Socket | FileType::Unknown => {
                tracing::debug!(path = %String::from_utf8_lossy(&path), "stream out skips a socket");
                Ok(())
            }
        }
    }

    /// Everything below `dir` (archived as `prefix`), depth first in name
    /// order, with one open descriptor per level.
    fn walk(&mut self, dir: OwnedFd, prefix: Vec<u8>) -> Result<(), FilesError> {
        let mut stack = vec![frame(dir, prefix)?];
        while let Some(top) = stack.last_mut() {
            let Some(name) = top.names.next() else {
                stack.pop();
                continue;
            };
            let mut path = top.prefix.clone();
            path.extend_from_slice(name.as_bytes());
            let st = match rustix::fs::statat(&top.dir, &name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                // Removed since the directory was read: as if never there.
                Err(Errno::NOENT) => continue,
                Err(e) => return Err(read_error(&path, "stat", e)),
            };
            if FileType::from_raw_mode(st.st_mode).is_dir() {
                path.push(b'/');
                self.header_only(&st, EntryType::Directory, &path, None)?;
                let child = resolve::open_child_dir(top.dir.as_fd(), &name)
                    .map_err(|e| read_error(&path, "open", e))?;
                stack.push(frame(child, path)?);
            } else {
                let dir = top.dir.as_fd();
                self.entry(dir, &name, path, &st)?;
            }
        }
        Ok(())
    }

    /// A regular file, or a hard link to the first path of its inode.
    fn file(
        &mut self,
        parent: BorrowedFd<'_>,
        name: &OsStr,
        path: Vec<u8>,
        st: &Stat,
    ) -> Result<(), FilesError> {
        if st.st_nlink > 1 {
            let key = (st.st_dev, st.st_ino);
            if let Some(first) = self.links.get(&key).cloned() {
                return self.header_only(st, EntryType::Link, &path, Some(&first));
            }
            self.links.insert(key, path.clone());
        }
        // O_NONBLOCK: a FIFO swapped in after the stat must not block.
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY;
        let fd = rustix::fs::openat(parent, name, flags | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| read_error(&path, "open", e))?;
        let st = rustix::fs::fstat(&fd).map_err(|e| read_error(&path, "stat", e))?;
        if !FileType::from_raw_mode(st.st_mode).is_file() {
            return Err(read_error(&path, "open", Errno::NOENT));
        }
        let size = u64::try_from(st.st_size).unwrap_or(0);
        let mut header = self.header(&st, EntryType::Regular, size);
        // A file that shrinks while read is padded with zeros, one that
        // grows is cut: the header's size stays true.
        let data = std::fs::File::from(fd)
            .take(size)
            .chain(io::repeat(0))
            .take(size);
        self.append(&mut header, &path, None, data)
    }

    /// An entry without data.
    fn header_only(
        &mut self,
        st: &Stat,
        kind: EntryType,
        path: &[u8],
        link: Option<&[u8]>,
    ) -> Result<(), FilesError> {
        let mut header = self.header(st, kind, 0);
        if matches!(kind, EntryType::Char | EntryType::Block) {
            let dev = st.st_rdev;
            let set = header
                .set_device_major(rustix::fs::major(dev))
                .and_then(|()| header.set_device_minor(rustix::fs::minor(dev)));
            set.map_err(|source| FilesError::Io {
                op: "record device numbers of",
                path: String::from_utf8_lossy(path).into_owned(),
                source,
            })?;
        }
        self.append(&mut header, path, link, io::empty())
    }

    fn header(&self, st: &Stat, kind: EntryType, size: u64) -> Header {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(st.st_mode & 0o7777);
        h.set_uid(self.map.to_container(st.st_uid).into());
        h.set_gid(self.map.to_container(st.st_gid).into());
        h.set_mtime(u64::try_from(st.st_mtime).unwrap_or(0));
        h.set_size(size);
        h
    }

    /// Appends an entry with its path and link name exactly as given (the
    /// tar crate's own setters would drop a leading `./`), using GNU long
    /// name records past 100 bytes.
    fn append(
        &mut self,
        header: &mut Header,
        path: &[u8],
        link: Option<&[u8]>,
        data: impl Read,
    ) -> Result<(), FilesError> {
        if let Some(link) = link {
            self.long_name(EntryType::GNULongLink, link, path)?;
            set_field(&mut header.as_old_mut().linkname, link);
        }
        self.long_name(EntryType::GNULongName, path, path)?;
        set_field(&mut header.as_old_mut().name, path);
        header.set_cksum();
        self.builder
            .append(header, data)
            .map_err(|e| self.classify(path, e))?;
        self.entries += 1;
        Ok(())
    }

    /// A GNU `././@LongLink` record carrying `value` if it does not fit a
    /// header field.
    fn long_name(&mut self, kind: EntryType, value: &[u8], path: &[u8]) -> Result<(), FilesError> {
        if value.len() <= NAME_FIELD {
            return Ok(());
        }
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(0o644);
        h.set_size(value.len() as u64 + 1);
        set_field(&mut h.as_old_mut().name, b"././@LongLink");
        h.set_cksum();
        let data = value.chain(&[0u8][..]);
        self.builder
            .append(&h, data)
            .map_err(|e| self.classify(path, e))
    }

    /// Whether an append failed writing the output or reading the file.
    fn classify(&self, path: &[u8], e: io::Error) -> FilesError {
        if self.builder.get_ref().get_ref().failed {
            FilesError::Output { source: e }
        } else {
            FilesError::Io {
                op: "read",
                path: String::from_utf8_lossy(path).into_owned(),
                source: e,
            }
        }
    }

    /// Writes the end of the archive and flushes.
    fn finish(self) -> Result<(), FilesError> {
        let out = self
            .builder
            .into_inner()
            .map_err(|source| FilesError::Output { source })?;
        let mut out = out.into_inner().map_err(|e| FilesError::Output {
            source: e.into_error(),
        })?;
        out.flush().map_err(|source| FilesError::Output { source })
    }

    /// Abandons the stream: nothing more reaches the output, not even the
    /// end-of-archive marker the builder writes when dropped.
    fn poison(&mut self) {
        self.builder.get_mut().get_mut().failed = true;
    }
}

/// Bytes in a tar header's name and link name fields.
const NAME_FIELD: usize = 100;

/// Fills a NUL-padded header field with as much of `value` as fits.
fn set_field(field: &mut [u8; NAME_FIELD], value: &[u8]) {
    let n = value.len().min(NAME_FIELD);
    field.fill(0);
    field[..n].copy_from_slice(&value[..n]);
}

/// Reads the names of `dir`, sorted so archives are reproducible.
fn frame(dir: OwnedFd, prefix: Vec<u8>) -> Result<Frame, FilesError> {
    let mut names = Vec::new();
    let mut it = rustix::fs::Dir::read_from(&dir).map_err(|e| read_error(&prefix, "read", e))?;
    while let Some(ent) = it.read() {
        let ent = ent.map_err(|e| read_error(&prefix, "read", e))?;
        let name = ent.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(OsStr::from_bytes(name).to_os_string());
        }
    }
    names.sort();
    Ok(Frame {
        dir,
        prefix,
        names: names.into_iter(),
    })
}

fn read_error(path: &[u8], op: &'static str, e: Errno) -> FilesError {
    FilesError::Io {
        op,
        path: String::from_utf8_lossy(path).into_owned(),
        source: e.into(),
    }
}
