//! btrfs subvolumes and qgroups through the ioctls of `<linux/btrfs.h>`.

use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd};

use nix::errno::Errno;

const BTRFS_IOCTL_MAGIC: u8 = 0x94;
const BTRFS_PATH_NAME_MAX: usize = 4087;
const BTRFS_INO_LOOKUP_PATH_MAX: usize = 4080;
/// The inode number of every subvolume's root directory.
const BTRFS_FIRST_FREE_OBJECTID: u64 = 256;
const BTRFS_QUOTA_TREE_OBJECTID: u64 = 8;
const BTRFS_QGROUP_INFO_KEY: u32 = 242;
const BTRFS_QUOTA_CTL_ENABLE: u64 = 1;
/// Limit the bytes the qgroup references.
const BTRFS_QGROUP_LIMIT_MAX_RFER: u64 = 1 << 0;

/// `struct btrfs_ioctl_vol_args`.
#[repr(C)]
struct VolArgs {
    fd: i64,
    name: [libc::c_char; BTRFS_PATH_NAME_MAX + 1],
}
const _: () = assert!(std::mem::size_of::<VolArgs>() == 4096);

/// `struct btrfs_ioctl_ino_lookup_args`.
#[repr(C)]
struct InoLookupArgs {
    treeid: u64,
    objectid: u64,
    name: [libc::c_char; BTRFS_INO_LOOKUP_PATH_MAX],
}
const _: () = assert!(std::mem::size_of::<InoLookupArgs>() == 4096);

/// `struct btrfs_ioctl_quota_ctl_args`.
#[repr(C)]
struct QuotaCtlArgs {
    cmd: u64,
    status: u64,
}

/// `struct btrfs_qgroup_limit`.
#[repr(C)]
struct QgroupLimit {
    flags: u64,
    max_rfer: u64,
    max_excl: u64,
    rsv_rfer: u64,
    rsv_excl: u64,
}

/// `struct btrfs_ioctl_qgroup_limit_args`.
#[repr(C)]
struct QgroupLimitArgs {
    qgroupid: u64,
    lim: QgroupLimit,
}

/// `struct btrfs_ioctl_qgroup_create_args`.
#[repr(C)]
struct QgroupCreateArgs {
    create: u64,
    qgroupid: u64,
}

/// `struct btrfs_ioctl_search_key`.
#[repr(C)]
#[derive(Default)]
struct SearchKey {
    tree_id: u64,
    min_objectid: u64,
    max_objectid: u64,
    min_offset: u64,
    max_offset: u64,
    min_transid: u64,
    max_transid: u64,
    min_type: u32,
    max_type: u32,
    nr_items: u32,
    unused: u32,
    unused1: u64,
    unused2: u64,
    unused3: u64,
    unused4: u64,
}
const SEARCH_BUF_SIZE: usize = 4096 - std::mem::size_of::<SearchKey>();

/// `struct btrfs_ioctl_search_args`.
#[repr(C)]
struct SearchArgs {
    key: SearchKey,
    buf: [u8; SEARCH_BUF_SIZE],
}
const _: () = assert!(std::mem::size_of::<SearchArgs>() == 4096);
/// `struct btrfs_ioctl_search_header`: transid, objectid, offset, type, len.
const SEARCH_HEADER_SIZE: usize = 32;

nix::ioctl_write_ptr!(subvol_create_ioctl, BTRFS_IOCTL_MAGIC, 14, VolArgs);
nix::ioctl_write_ptr!(snap_destroy_ioctl, BTRFS_IOCTL_MAGIC, 15, VolArgs);
nix::ioctl_readwrite!(tree_search_ioctl, BTRFS_IOCTL_MAGIC, 17, SearchArgs);
nix::ioctl_readwrite!(ino_lookup_ioctl, BTRFS_IOCTL_MAGIC, 18, InoLookupArgs);
nix::ioctl_readwrite!(quota_ctl_ioctl, BTRFS_IOCTL_MAGIC, 40, QuotaCtlArgs);
nix::ioctl_write_ptr!(qgroup_create_ioctl, BTRFS_IOCTL_MAGIC, 42, QgroupCreateArgs);
nix::ioctl_read!(qgroup_limit_ioctl, BTRFS_IOCTL_MAGIC, 43, QgroupLimitArgs);

fn vol_args(name: &OsStr) -> nix::Result<VolArgs> {
    let bytes = name.as_encoded_bytes();
    if bytes.len() > BTRFS_PATH_NAME_MAX || bytes.contains(&0) {
        return Err(Errno::ENAMETOOLONG);
    }
    let mut args = VolArgs {
        fd: 0,
        name: [0; BTRFS_PATH_NAME_MAX + 1],
    };
    super::fill_c_array(&mut args.name, bytes);
    Ok(args)
}

/// Creates subvolume `name` in the directory `parent`.
pub(crate) fn subvol_create(parent: impl AsFd, name: &OsStr) -> nix::Result<()> {
    let args = vol_args(name)?;
    // SAFETY: `args` is an initialised `struct btrfs_ioctl_vol_args` the
    // kernel only reads.
    unsafe { subvol_create_ioctl(parent.as_fd().as_raw_fd(), &args) }.map(drop)
}

/// Deletes subvolume `name` of the directory `parent`, with its contents.
pub(crate) fn subvol_destroy(parent: impl AsFd, name: &OsStr) -> nix::Result<()> {
    let args = vol_args(name)?;
    // SAFETY: as in `subvol_create`.
    unsafe { snap_destroy_ioctl(parent.as_fd().as_raw_fd(), &args) }.map(drop)
}

/// The id of the subvolume that `file` (any file in it) belongs to.
pub(crate) fn subvol_id(file: impl AsFd) -> nix::Result<u64> {
    let mut args = InoLookupArgs {
        treeid: 0,
        objectid: BTRFS_FIRST_FREE_OBJECTID,
        name: [0; BTRFS_INO_LOOKUP_PATH_MAX],
    };
    // SAFETY: the kernel reads and writes one `struct
    // btrfs_ioctl_ino_lookup_args` in `args`, alive across the call.
    unsafe { ino_lookup_ioctl(file.as_fd().as_raw_fd(), &mut args) }?;
    Ok(args.treeid)
}

/// Turns quota groups on (a no-op when they are on).
pub(crate) fn quota_enable(fs: impl AsFd) -> nix::Result<()> {
    let mut args = QuotaCtlArgs {
        cmd: BTRFS_QUOTA_CTL_ENABLE,
        status: 0,
    };
    // SAFETY: `args` is an initialised `struct btrfs_ioctl_quota_ctl_args`.
    unsafe { quota_ctl_ioctl(fs.as_fd().as_raw_fd(), &mut args) }.map(drop)
}

/// Limits the bytes referenced by qgroup 0/`subvol` (0 = no limit).
pub(crate) fn qgroup_limit(fs: impl AsFd, subvol: u64, max_rfer: u64) -> nix::Result<()> {
    let mut args = QgroupLimitArgs {
        qgroupid: subvol,
        lim: QgroupLimit {
            flags: BTRFS_QGROUP_LIMIT_MAX_RFER,
            max_rfer,
            max_excl: 0,
            rsv_rfer: 0,
            rsv_excl: 0,
        },
    };
    // SAFETY: `args` is an initialised `struct
    // btrfs_ioctl_qgroup_limit_args` the kernel reads.
    unsafe { qgroup_limit_ioctl(fs.as_fd().as_raw_fd(), &mut args) }.map(drop)
}

/// Removes qgroup 0/`subvol`. EBUSY while its subvolume still exists.
pub(crate) fn qgroup_remove(fs: impl AsFd, subvol: u64) -> nix::Result<()> {
    let args = QgroupCreateArgs {
        create: 0,
        qgroupid: subvol,
    };
    // SAFETY: `args` is an initialised `struct
    // btrfs_ioctl_qgroup_create_args` the kernel only reads.
    unsafe { qgroup_create_ioctl(fs.as_fd().as_raw_fd(), &args) }.map(drop)
}

/// Bytes referenced and exclusive to qgroup 0/`subvol`, as of the last
/// committed transaction. ENOENT when there is no such qgroup.
pub(crate) fn qgroup_usage(fs: impl AsFd, subvol: u64) -> nix::Result<(u64, u64)> {
    let mut args = SearchArgs {
        key: SearchKey {
            tree_id: BTRFS_QUOTA_TREE_OBJECTID,
            min_offset: subvol,
            max_offset: subvol,
            max_transid: u64::MAX,
            min_type: BTRFS_QGROUP_INFO_KEY,
            max_type: BTRFS_QGROUP_INFO_KEY,
            nr_items: 1,
            ..SearchKey::default()
        },
        buf: [0; SEARCH_BUF_SIZE],
    };
    // SAFETY: the kernel reads the key and writes the results into one
    // `struct btrfs_ioctl_search_args`, alive across the call.
    unsafe { tree_search_ioctl(fs.as_fd().as_raw_fd(), &mut args) }?;
    if args.key.nr_items == 0 {
        return Err(Errno::ENOENT);
    }
    // btrfs_qgroup_info_item: generation, rfer, rfer_cmpr, excl, excl_cmpr
    // (little-endian u64s) after the search header.
    let item = &args.buf[SEARCH_HEADER_SIZE..SEARCH_HEADER_SIZE + 40];
    let le = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&item[i * 8..i * 8 + 8]);
        u64::from_le_bytes(b)
    };
    Ok((le(1), le(3)))
}
