//! How layer files are owned on the host: as in the image (privileged
//! containers) or shifted so the container's root owns what the image's
//! root owns (unprivileged containers under Garden's "maximus" mapping).

use std::path::Path;

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    #[error("reading {path}: {source}")]
    Read {
        path: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} maps no ids")]
    Empty { path: &'static str },
}

/// What unpacking does with a device node (not a whiteout).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DevicePolicy {
    Create,
    /// Fail, naming the entry.
    Refuse,
    /// Leave it out, with a warning.
    Skip,
}

/// The ownership layers get on the host.
///
/// Garden's maximus mapping gives container uid 0 the host's highest id
/// (4294967294 on a host whose own map is the full range) and container ids
/// 1..N the same host ids. Only ids 0 change, so a layer shifted for it
/// differs from the image only where the image's root owns a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum IdMapping {
    /// Host ids are the image's ids.
    Identity,
    /// Image uid/gid 0 become these host ids; every other id stays.
    Shifted {
        root_host_uid: u32,
        root_host_gid: u32,
    },
}

impl IdMapping {
    /// Garden's maximus mapping on this host: container root becomes the
    /// highest uid and gid of our own user namespace.
    pub fn maximus() -> Result<IdMapping, MappingError> {
        Ok(IdMapping::Shifted {
            root_host_uid: highest_id("/proc/self/uid_map")?,
            root_host_gid: highest_id("/proc/self/gid_map")?,
        })
    }

    pub fn uid(&self, uid: u32) -> u32 {
        match *self {
            IdMapping::Shifted { root_host_uid, .. } if uid == 0 => root_host_uid,
            _ => uid,
        }
    }

    pub fn gid(&self, gid: u32) -> u32 {
        match *self {
            IdMapping::Shifted { root_host_gid, .. } if gid == 0 => root_host_gid,
            _ => gid,
        }
    }

    /// What becomes of device nodes in layers for this mapping: created for
    /// privileged containers; for unprivileged ones refused, or skipped when
    /// `skip_unprivileged` (whiteouts, character devices 0/0, always stay).
    pub fn devices(&self, skip_unprivileged: bool) -> DevicePolicy {
        match self {
            IdMapping::Identity => DevicePolicy::Create,
            IdMapping::Shifted { .. } if skip_unprivileged => DevicePolicy::Skip,
            IdMapping::Shifted { .. } => DevicePolicy::Refuse,
        }
    }

    /// A suffix naming the mapping in layer directory names.
    pub(crate) fn key_suffix(&self) -> String {
        match *self {
            IdMapping::Identity => String::new(),
            IdMapping::Shifted {
                root_host_uid,
                root_host_gid,
            } => format!("-s{root_host_uid}-{root_host_gid}"),
        }
    }
}

/// The highest id an `/proc/<pid>/{uid,gid}_map` maps (`inside + count - 1`
/// of the highest range; the kernel's full map gives 4294967294).
fn highest_id(path: &'static str) -> Result<u32, MappingError> {
    let text = std::fs::read_to_string(Path::new(path))
        .map_err(|source| MappingError::Read { path, source })?;
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace().map(|x| x.parse::<u64>().ok());
            let inside = f.next()??;
            let _outside = f.next()??;
            let count = f.next()??;
            (count > 0).then(|| inside + count - 1)
        })
        .max()
        .map(|id| u32::try_from(id).unwrap_or(u32::MAX - 1))
        .ok_or(MappingError::Empty { path })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_root_moves() {
        let m = IdMapping::Shifted {
            root_host_uid: 4294967294,
            root_host_gid: 4294967293,
        };
        assert_eq!(m.uid(0), 4294967294);
        assert_eq!(m.gid(0), 4294967293);
        assert_eq!(m.uid(1000), 1000);
        assert_eq!(IdMapping::Identity.uid(0), 0);
        assert_eq!(m.key_suffix(), "-s4294967294-4294967293");
        assert_eq!(m.devices(false), DevicePolicy::Refuse);
        assert_eq!(m.devices(true), DevicePolicy::Skip);
        assert_eq!(IdMapping::Identity.devices(true), DevicePolicy::Create);
    }

    #[test]
    fn maximus_on_this_host() {
        // The tests run in the initial user namespace, whose map is "0 0 4294967295".
        let m = IdMapping::maximus().expect("maximus");
        assert!(matches!(m, IdMapping::Shifted { root_host_uid, .. } if root_host_uid > 65535));
    }
}
