//! XFS project ids (FS_IOC_FSGETXATTR / FS_IOC_FSSETXATTR) and project
//! quotas through quotactl_fd(2) (Linux 5.14+), which needs any descriptor
//! on the filesystem instead of the path of its block device.

use std::os::fd::{AsFd, AsRawFd};

/// New files and directories inherit the directory's project id.
pub(crate) const FS_XFLAG_PROJINHERIT: u32 = 0x0000_0200;

/// `struct fsxattr` of `<linux/fs.h>`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FsXattr {
    pub(crate) xflags: u32,
    pub(crate) extsize: u32,
    pub(crate) nextents: u32,
    pub(crate) projid: u32,
    pub(crate) cowextsize: u32,
    pad: [u8; 8],
}
const _: () = assert!(std::mem::size_of::<FsXattr>() == 28);

nix::ioctl_read!(fs_get_xattr, b'X', 31, FsXattr);
nix::ioctl_write_ptr!(fs_set_xattr, b'X', 32, FsXattr);

/// The extended attributes (flags, project id) of an open file.
pub(crate) fn get_xattr(file: impl AsFd) -> nix::Result<FsXattr> {
    let mut attr = FsXattr::default();
    // SAFETY: the kernel writes one `struct fsxattr` into `attr`, which
    // lives across the call.
    unsafe { fs_get_xattr(file.as_fd().as_raw_fd(), &mut attr) }?;
    Ok(attr)
}

/// Sets the extended attributes of an open file.
pub(crate) fn set_xattr(file: impl AsFd, attr: &FsXattr) -> nix::Result<()> {
    // SAFETY: `attr` is an initialised `struct fsxattr` the kernel only reads.
    unsafe { fs_set_xattr(file.as_fd().as_raw_fd(), attr) }.map(drop)
}

const PRJQUOTA: libc::c_int = 2;
const fn xqm_cmd(n: libc::c_int) -> libc::c_int {
    ((b'X' as libc::c_int) << 8) + n
}
const Q_XGETQUOTA: libc::c_int = xqm_cmd(3);
const Q_XSETQLIM: libc::c_int = xqm_cmd(4);
const Q_XGETQSTAT: libc::c_int = xqm_cmd(5);

const FS_DQUOT_VERSION: i8 = 1;
const FS_PROJ_QUOTA: i8 = 2;
const FS_DQ_ISOFT: u16 = 1 << 0;
const FS_DQ_IHARD: u16 = 1 << 1;
const FS_DQ_BSOFT: u16 = 1 << 2;
const FS_DQ_BHARD: u16 = 1 << 3;
/// Project quota accounting is on.
pub(crate) const FS_QUOTA_PDQ_ACCT: u16 = 1 << 4;
/// Project quota limits are enforced.
pub(crate) const FS_QUOTA_PDQ_ENFD: u16 = 1 << 5;

/// `struct fs_disk_quota` of `<linux/dqblk_xfs.h>`. Block counts are in
/// 512-byte basic blocks.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FsDiskQuota {
    version: i8,
    flags: i8,
    fieldmask: u16,
    id: u32,
    pub(crate) blk_hardlimit: u64,
    pub(crate) blk_softlimit: u64,
    pub(crate) ino_hardlimit: u64,
    pub(crate) ino_softlimit: u64,
    pub(crate) bcount: u64,
    pub(crate) icount: u64,
    itimer: i32,
    btimer: i32,
    iwarns: u16,
    bwarns: u16,
    itimer_hi: i8,
    btimer_hi: i8,
    rtbtimer_hi: i8,
    padding2: i8,
    rtb_hardlimit: u64,
    rtb_softlimit: u64,
    rtbcount: u64,
    rtbtimer: i32,
    rtbwarns: u16,
    padding3: i16,
    padding4: [u8; 8],
}
const _: () = assert!(std::mem::size_of::<FsDiskQuota>() == 112);

/// `struct fs_qfilestat` of `<linux/dqblk_xfs.h>`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct FsQfilestat {
    ino: u64,
    nblks: u64,
    nextents: u32,
}

/// `struct fs_quota_stat` of `<linux/dqblk_xfs.h>`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct FsQuotaStat {
    version: i8,
    flags: u16,
    pad: i8,
    uquota: FsQfilestat,
    gquota: FsQfilestat,
    incoredqs: u32,
    btimelimit: i32,
    itimelimit: i32,
    rtbtimelimit: i32,
    bwarnlimit: u16,
    iwarnlimit: u16,
}
const _: () = assert!(std::mem::size_of::<FsQuotaStat>() == 80);

fn quotactl_fd(
    fs: impl AsFd,
    cmd: libc::c_int,
    id: u32,
    addr: *mut libc::c_void,
) -> nix::Result<()> {
    let cmd = libc::QCMD(cmd, PRJQUOTA);
    // SAFETY: quotactl_fd(fd, cmd, id, addr); every caller passes an `addr`
    // pointing at the structure its `cmd` reads or writes, alive across
    // the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_quotactl_fd,
            fs.as_fd().as_raw_fd(),
            cmd as libc::c_uint,
            id,
            addr,
        )
    };
    nix::errno::Errno::result(rc).map(drop)
}

/// The filesystem's project quota state flags (`FS_QUOTA_PDQ_*`).
pub(crate) fn project_quota_flags(fs: impl AsFd) -> nix::Result<u16> {
    let mut stat = FsQuotaStat {
        version: 1,
        ..FsQuotaStat::default()
    };
    quotactl_fd(fs, Q_XGETQSTAT, 0, (&raw mut stat).cast())?;
    Ok(stat.flags)
}

/// Sets the hard and soft limits of project `id` (0 = no limit). Blocks
/// are 512-byte basic blocks.
pub(crate) fn set_project_limits(
    fs: impl AsFd,
    id: u32,
    blk_hard: u64,
    ino_hard: u64,
) -> nix::Result<()> {
    let mut quota = FsDiskQuota {
        version: FS_DQUOT_VERSION,
        flags: FS_PROJ_QUOTA,
        fieldmask: FS_DQ_BHARD | FS_DQ_BSOFT | FS_DQ_IHARD | FS_DQ_ISOFT,
        id,
        blk_hardlimit: blk_hard,
        ino_hardlimit: ino_hard,
        ..FsDiskQuota::default()
    };
    quotactl_fd(fs, Q_XSETQLIM, id, (&raw mut quota).cast())
}

/// Usage and limits of project `id`.
pub(crate) fn project_quota(fs: impl AsFd, id: u32) -> nix::Result<FsDiskQuota> {
    let mut quota = FsDiskQuota::default();
    quotactl_fd(fs, Q_XGETQUOTA, id, (&raw mut quota).cast())?;
    Ok(quota)
}

/// Only the inodes of project `eof_prid`.
const XFS_EOF_FLAGS_PRID: u32 = 1 << 3;

/// `struct xfs_fs_eofblocks` of `<xfs/xfs_fs.h>`.
#[repr(C)]
struct XfsEofblocks {
    version: u32,
    flags: u32,
    uid: u32,
    gid: u32,
    prid: u32,
    pad32: u32,
    min_file_size: u64,
    pad64: [u64; 12],
}
const _: () = assert!(std::mem::size_of::<XfsEofblocks>() == 128);

nix::ioctl_read!(xfs_free_eofblocks, b'X', 58, XfsEofblocks);

/// XFS_IOC_FREE_EOFBLOCKS: trims speculative preallocation (of project
/// `project`'s files, or all) and waits for the background inactivation
/// of deleted files, so quota usage is current.
pub(crate) fn free_eofblocks(fs: impl AsFd, project: Option<u32>) -> nix::Result<()> {
    let mut args = XfsEofblocks {
        version: 1,
        flags: if project.is_some() {
            XFS_EOF_FLAGS_PRID
        } else {
            0
        },
        uid: 0,
        gid: 0,
        prid: project.unwrap_or(0),
        pad32: 0,
        min_file_size: 0,
        pad64: [0; 12],
    };
    // SAFETY: `args` is an initialised `struct xfs_fs_eofblocks` the kernel
    // reads; it lives across the call.
    unsafe { xfs_free_eofblocks(fs.as_fd().as_raw_fd(), &mut args) }.map(drop)
}
