//! Every raw syscall and ioctl of the crate: loop devices, btrfs, XFS
//! project attributes and quotas, reflink. Each function is a thin, typed
//! wrapper; the callers add context to the errors.

pub(crate) mod btrfs;
pub(crate) mod loopdev;
pub(crate) mod xfs;

use std::os::fd::{AsFd, AsRawFd};

nix::ioctl_write_int_bad!(ficlone_ioctl, libc::FICLONE);

/// Shares `src`'s extents with `dst` (FICLONE): a whole-file reflink copy.
/// Fails with EOPNOTSUPP, EXDEV or EINVAL where the filesystem cannot.
pub(crate) fn ficlone(dst: impl AsFd, src: impl AsFd) -> nix::Result<()> {
    // SAFETY: FICLONE takes the source descriptor as its integer argument;
    // both descriptors are open for the duration of the call.
    unsafe { ficlone_ioctl(dst.as_fd().as_raw_fd(), src.as_fd().as_raw_fd()) }.map(drop)
}

/// Copies a fixed-size byte string into a C `char` array, NUL-terminated
/// (truncating when it does not fit).
fn fill_c_array(dst: &mut [libc::c_char], src: &[u8]) {
    let n = src.len().min(dst.len().saturating_sub(1));
    for (d, s) in dst.iter_mut().zip(&src[..n]) {
        *d = *s as libc::c_char;
    }
    if let Some(end) = dst.get_mut(n) {
        *end = 0;
    }
}
