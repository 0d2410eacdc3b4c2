//! One archive entry at a time: clean its path, resolve its parent beneath
//! the layer root, make room, create it, then set owner, mode, xattrs and
//! times.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;

use rustix::fs::FileType;
use tar::EntryType;
use xattr::FileExt;

use super::beneath::{self, ImplicitDir, ResolveError, Root};
use super::{clean_path, ExtractError, LayerStats};
use crate::mapping::{DevicePolicy, IdMapping};

const OPAQUE_MARKER: &[u8] = b".wh..opq";
const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// Set on opaque directories: the first for overlays mounted in the
/// initial user namespace, the second for `userxattr` overlays mounted
/// inside a container's user namespace.
const OPAQUE_XATTRS: [&str; 2] = ["trusted.overlay.opaque", "user.overlay.opaque"];
const CAPS_XATTR: &str = "security.capability";

/// The metadata of one entry, PAX extensions applied.
struct Meta {
    uid: u32,
    gid: u32,
    mode: u32,
    mtime: i64,
    xattrs: Vec<(OsString, Vec<u8>)>,
}

pub struct Unpacker {
    root: Root,
    mapping: IdMapping,
    devices: DevicePolicy,
    stats: LayerStats,
    /// Directory times are set last: creating children changes them.
    dir_times: Vec<(Vec<OsString>, i64)>,
}

impl Unpacker {
    pub fn new(root: Root, mapping: IdMapping, devices: DevicePolicy) -> Unpacker {
        Unpacker {
            root,
            mapping,
            devices,
            stats: LayerStats::default(),
            dir_times: Vec::new(),
        }
    }

    pub fn entry<R: Read>(&mut self, mut e: tar::Entry<'_, R>) -> Result<(), ExtractError> {
        let raw = e.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let comps = clean_path(&raw)?;
        let meta = self.meta(&mut e, &shown)?;
        let kind = e.header().entry_type();
        let Some((name, parent_comps)) = comps.split_last() else {
            return self.root_entry(kind, &meta, &shown);
        };
        if let Some(hidden) = name.as_bytes().strip_prefix(WHITEOUT_PREFIX) {
            return self.whiteout(parent_comps, hidden, &shown);
        }
        let parent = self.parent(parent_comps, &shown)?;
        let fresh = self.make_room(&parent, name, kind.is_dir(), &shown)?;
        match kind {
            EntryType::Directory => {
                beneath::create_dir(&parent, name, 0o700, self.implicit())
                    .map_err(|err| resolve_error(err, &shown))?;
                let fd = beneath::open_child_dir(&parent, name).map_err(fail(&shown, "opening"))?;
                self.finish_fd(fd, &meta, &shown)?;
                let owned = comps.iter().map(|c| c.to_os_string()).collect();
                self.dir_times.push((owned, meta.mtime));
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                let mut file =
                    beneath::create_file(&parent, name).map_err(fail(&shown, "creating"))?;
                std::io::copy(&mut e, &mut file).map_err(fail(&shown, "writing"))?;
                self.stats.bytes += e.size();
                self.finish_fd(file.into(), &meta, &shown)?;
                beneath::set_mtime(&parent, name, meta.mtime)
                    .map_err(fail(&shown, "setting times"))?;
            }
            EntryType::Symlink => {
                let target = e.link_name_bytes().unwrap_or_default().into_owned();
                beneath::symlink(&parent, name, OsStr::from_bytes(&target))
                    .map_err(fail(&shown, "creating symlink"))?;
                self.finish_path(&parent, name, &meta, None, &shown)?;
            }
            EntryType::Link => {
                let target = e.link_name_bytes().unwrap_or_default().into_owned();
                return self.hard_link(&parent, name, &target, &shown);
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let Some((file_type, major, minor)) = self.device(&e, kind, &shown)? else {
                    return Ok(());
                };
                beneath::make_node(&parent, name, file_type, meta.mode, major, minor)
                    .map_err(fail(&shown, "creating node"))?;
                self.finish_path(&parent, name, &meta, Some(meta.mode), &shown)?;
            }
            other => {
                tracing::debug!(entry = %shown, kind = ?other, "skipping layer entry of unsupported type");
                return Ok(());
            }
        }
        if fresh {
            self.stats.inodes += 1;
        }
        Ok(())
    }

    /// Sets the directories' times, now that all their entries exist.
    pub fn finish(self) -> Result<LayerStats, ExtractError> {
        for (comps, mtime) in &self.dir_times {
            let refs: Vec<&OsStr> = comps.iter().map(OsString::as_os_str).collect();
            if let Ok(fd) = self.root.open_dir(&refs) {
                beneath::set_mtime_fd(&fd, *mtime).map_err(|source| ExtractError::Io {
                    path: comps.join(OsStr::new("/")).to_string_lossy().into_owned(),
                    action: "setting directory times",
                    source,
                })?;
            }
        }
        Ok(self.stats)
    }

    fn implicit(&self) -> ImplicitDir {
        ImplicitDir {
            uid: self.mapping.uid(0),
            gid: self.mapping.gid(0),
        }
    }

    fn parent(&self, comps: &[&OsStr], shown: &str) -> Result<OwnedFd, ExtractError> {
        self.root
            .make_dirs(comps, self.implicit())
            .map_err(|e| resolve_error(e, shown))
    }

    fn meta<R: Read>(&self, e: &mut tar::Entry<'_, R>, shown: &str) -> Result<Meta, ExtractError> {
        let bad = |source| ExtractError::Io {
            path: shown.to_string(),
            action: "reading the header",
            source,
        };
        let h = e.header();
        let mut uid = h.uid().map_err(bad)?;
        let mut gid = h.gid().map_err(bad)?;
        let mode = h.mode().map_err(bad)? & 0o7777;
        let mtime = i64::try_from(h.mtime().map_err(bad)?).unwrap_or(0);
        let mut xattrs = Vec::new();
        if let Some(exts) = e.pax_extensions().map_err(bad)? {
            for ext in exts {
                let ext = ext.map_err(bad)?;
                let key = ext.key_bytes();
                if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                    xattrs.push((
                        OsStr::from_bytes(name).to_os_string(),
                        ext.value_bytes().to_vec(),
                    ));
                } else if key == b"uid" || key == b"gid" {
                    let v = ext.value().ok().and_then(|v| v.parse().ok());
                    let slot = if key == b"uid" { &mut uid } else { &mut gid };
                    *slot = v.unwrap_or(*slot);
                }
            }
        }
        let id = |v: u64, what| {
            u32::try_from(v).map_err(|_| ExtractError::Io {
                path: shown.to_string(),
                action: what,
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, "id out of range"),
            })
        };
        Ok(Meta {
            uid: self.mapping.uid(id(uid, "reading the uid")?),
            gid: self.mapping.gid(id(gid, "reading the gid")?),
            mode,
            mtime,
            xattrs,
        })
    }

    fn root_entry(
        &mut self,
        kind: EntryType,
        meta: &Meta,
        shown: &str,
    ) -> Result<(), ExtractError> {
        if kind.is_dir() {
            let fd = self
                .root
                .open_dir(&[])
                .map_err(|e| resolve_error(e, shown))?;
            self.finish_fd(fd, meta, shown)?;
            self.dir_times.push((Vec::new(), meta.mtime));
        }
        Ok(())
    }

    fn whiteout(
        &mut self,
        parent_comps: &[&OsStr],
        hidden: &[u8],
        shown: &str,
    ) -> Result<(), ExtractError> {
        let parent = self.parent(parent_comps, shown)?;
        if hidden == OPAQUE_MARKER {
            let dir = File::from(parent);
            for name in OPAQUE_XATTRS {
                dir.set_xattr(name, b"y")
                    .map_err(fail(shown, "marking the directory opaque"))?;
            }
            return Ok(());
        }
        if hidden.starts_with(WHITEOUT_PREFIX) {
            tracing::debug!(entry = %shown, "skipping aufs metadata");
            return Ok(());
        }
        if matches!(hidden, b"" | b"." | b"..") {
            return Err(ExtractError::Traversal {
                path: shown.to_string(),
            });
        }
        let name = OsStr::from_bytes(hidden);
        self.make_room(&parent, name, false, shown)?;
        beneath::make_node(&parent, name, FileType::CharacterDevice, 0, 0, 0)
            .map_err(fail(shown, "creating whiteout"))?;
        let root = self.implicit();
        beneath::set_owner_mode(&parent, name, root.uid, root.gid, None)
            .map_err(fail(shown, "chown"))
    }

    /// Removes what a new entry replaces; returns whether the name was free.
    fn make_room(
        &self,
        parent: &OwnedFd,
        name: &OsStr,
        is_dir: bool,
        shown: &str,
    ) -> Result<bool, ExtractError> {
        match beneath::kind_of(parent, name).map_err(fail(shown, "inspecting"))? {
            None => Ok(true),
            Some(FileType::Directory) if is_dir => Ok(false),
            Some(FileType::Directory) => Err(ExtractError::ReplacesDirectory {
                path: shown.to_string(),
            }),
            Some(_) => {
                beneath::unlink(parent, name).map_err(fail(shown, "replacing"))?;
                Ok(false)
            }
        }
    }

    fn hard_link(
        &mut self,
        parent: &OwnedFd,
        name: &OsStr,
        target: &[u8],
        shown: &str,
    ) -> Result<(), ExtractError> {
        let missing = || ExtractError::MissingLinkTarget {
            path: shown.to_string(),
            target: String::from_utf8_lossy(target).into_owned(),
        };
        let tcomps = clean_path(target).map_err(|e| match e {
            ExtractError::Absolute { .. } => ExtractError::Absolute {
                path: shown.to_string(),
            },
            _ => ExtractError::Traversal {
                path: shown.to_string(),
            },
        })?;
        let Some((tname, tparent_comps)) = tcomps.split_last() else {
            return Err(missing());
        };
        let tparent = match self.root.open_dir(tparent_comps) {
            Ok(fd) => fd,
            Err(ResolveError::Missing) => return Err(missing()),
            Err(e) => return Err(resolve_error(e, shown)),
        };
        match beneath::hard_link(&tparent, tname, parent, name) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(missing()),
            Err(source) => Err(ExtractError::Io {
                path: shown.to_string(),
                action: "creating hard link",
                source,
            }),
        }
    }

    fn device<R: Read>(
        &self,
        e: &tar::Entry<'_, R>,
        kind: EntryType,
        shown: &str,
    ) -> Result<Option<(FileType, u32, u32)>, ExtractError> {
        let h = e.header();
        let major = h.device_major().ok().flatten().unwrap_or(0);
        let minor = h.device_minor().ok().flatten().unwrap_or(0);
        let file_type = match kind {
            EntryType::Fifo => return Ok(Some((FileType::Fifo, 0, 0))),
            EntryType::Char => FileType::CharacterDevice,
            _ => FileType::BlockDevice,
        };
        let whiteout = file_type == FileType::CharacterDevice && major == 0 && minor == 0;
        match self.devices {
            _ if whiteout => Ok(Some((file_type, major, minor))),
            DevicePolicy::Create => Ok(Some((file_type, major, minor))),
            DevicePolicy::Refuse => Err(ExtractError::DeviceRefused {
                path: shown.to_string(),
            }),
            DevicePolicy::Skip => {
                tracing::warn!(entry = %shown, "skipping a device node in a layer for unprivileged containers");
                Ok(None)
            }
        }
    }

    /// Owner, mode and xattrs through an open file or directory.
    fn finish_fd(&self, fd: OwnedFd, meta: &Meta, shown: &str) -> Result<(), ExtractError> {
        beneath::set_owner_mode_fd(&fd, meta.uid, meta.gid, meta.mode).map_err(|source| {
            ExtractError::Io {
                path: shown.to_string(),
                action: "setting owner and mode",
                source,
            }
        })?;
        let file = File::from(fd);
        for (name, value) in &meta.xattrs {
            let Some(value) = self.xattr_value(name, value, shown) else {
                continue;
            };
            if let Err(err) = file.set_xattr(name, &value) {
                tracing::warn!(entry = %shown, xattr = ?name, error = %err, "xattr not kept");
            }
        }
        Ok(())
    }

    /// Owner, mode (not for symlinks) and times of a node without opening it.
    fn finish_path(
        &self,
        parent: &OwnedFd,
        name: &OsStr,
        meta: &Meta,
        mode: Option<u32>,
        shown: &str,
    ) -> Result<(), ExtractError> {
        beneath::set_owner_mode(parent, name, meta.uid, meta.gid, mode)
            .map_err(fail(shown, "setting owner and mode"))?;
        if !meta.xattrs.is_empty() {
            tracing::debug!(entry = %shown, "xattrs on symlinks and device nodes are not kept");
        }
        beneath::set_mtime(parent, name, meta.mtime).map_err(fail(shown, "setting times"))
    }

    /// The value to store for an archived xattr: overlay's own are refused
    /// (only whiteout markers may set them), file capabilities follow the
    /// mapping.
    fn xattr_value(&self, name: &OsStr, value: &[u8], shown: &str) -> Option<Vec<u8>> {
        let n = name.as_bytes();
        if n.starts_with(b"trusted.overlay.") || n.starts_with(b"user.overlay.") {
            tracing::warn!(entry = %shown, xattr = ?name, "ignoring an overlayfs xattr in a layer");
            return None;
        }
        if n == CAPS_XATTR.as_bytes() {
            return Some(shift_file_caps(value, &self.mapping));
        }
        Some(value.to_vec())
    }
}

/// File capabilities of a shifted layer must name the container's root
/// (v3 with `rootid`), or the kernel ignores them inside the container's
/// user namespace.
pub(crate) fn shift_file_caps(value: &[u8], mapping: &IdMapping) -> Vec<u8> {
    const V2_LEN: usize = 20;
    const V3_LEN: usize = 24;
    const REVISION_MASK: u32 = 0xff00_0000;
    const REVISION_3: u32 = 0x0300_0000;
    let IdMapping::Shifted { .. } = mapping else {
        return value.to_vec();
    };
    if value.len() != V2_LEN && value.len() != V3_LEN {
        return value.to_vec();
    }
    let mut head = [0u8; 4];
    head.copy_from_slice(&value[..4]);
    let magic = u32::from_le_bytes(head);
    let root = if value.len() == V3_LEN {
        let mut r = [0u8; 4];
        r.copy_from_slice(&value[20..24]);
        u32::from_le_bytes(r)
    } else {
        0
    };
    let mut out = Vec::with_capacity(V3_LEN);
    out.extend_from_slice(&((magic & !REVISION_MASK) | REVISION_3).to_le_bytes());
    out.extend_from_slice(&value[4..V2_LEN]);
    out.extend_from_slice(&mapping.uid(root).to_le_bytes());
    out
}

fn resolve_error(e: ResolveError, shown: &str) -> ExtractError {
    let path = shown.to_string();
    match e {
        ResolveError::Escapes => ExtractError::Escapes { path },
        ResolveError::NotDirectory => ExtractError::NotDirectory { path },
        ResolveError::Missing => ExtractError::Io {
            path,
            action: "resolving the parent (dangling symlink?)",
            source: std::io::ErrorKind::NotFound.into(),
        },
        ResolveError::Io(source) => ExtractError::Io {
            path,
            action: "resolving the parent",
            source,
        },
    }
}

/// An I/O error on the entry `shown` while doing `action`.
fn fail<'a>(
    shown: &'a str,
    action: &'static str,
) -> impl FnOnce(std::io::Error) -> ExtractError + 'a {
    move |source| ExtractError::Io {
        path: shown.to_string(),
        action,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_caps_get_the_container_root() {
        let mut v2 = 0x0200_0001u32.to_le_bytes().to_vec();
        v2.extend_from_slice(&[0x00, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        let m = IdMapping::Shifted {
            root_host_uid: 4294967294,
            root_host_gid: 4294967294,
        };
        let v3 = shift_file_caps(&v2, &m);
        assert_eq!(v3.len(), 24);
        assert_eq!(&v3[..4], &0x0300_0001u32.to_le_bytes());
        assert_eq!(&v3[4..20], &v2[4..20]);
        assert_eq!(&v3[20..], &4294967294u32.to_le_bytes());
        assert_eq!(shift_file_caps(&v2, &IdMapping::Identity), v2);
    }
}
