//! Loop devices through `/dev/loop-control` and LOOP_CONFIGURE (Linux 5.8+):
//! one ioctl binds a backing file, sets the flags and the name, instead of
//! LOOP_SET_FD followed by LOOP_SET_STATUS64.

use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;

/// The device is released when its last user (the mount) goes away.
pub(crate) const LO_FLAGS_AUTOCLEAR: u32 = 4;
const LO_NAME_SIZE: usize = 64;
const LO_KEY_SIZE: usize = 32;

/// `struct loop_info64` of `<linux/loop.h>`.
#[repr(C)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [libc::c_char; LO_NAME_SIZE],
    lo_crypt_name: [libc::c_char; LO_NAME_SIZE],
    lo_encrypt_key: [u8; LO_KEY_SIZE],
    lo_init: [u64; 2],
}

/// `struct loop_config` of `<linux/loop.h>`.
#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

const _: () = assert!(std::mem::size_of::<LoopInfo64>() == 232);
const _: () = assert!(std::mem::size_of::<LoopConfig>() == 304);

nix::ioctl_none_bad!(loop_ctl_get_free, 0x4C82);
nix::ioctl_write_ptr_bad!(loop_configure_ioctl, 0x4C0A, LoopConfig);

/// `/dev/loop-control`, opened once.
#[derive(Debug)]
pub(crate) struct LoopControl {
    file: File,
}

impl LoopControl {
    pub(crate) fn open() -> std::io::Result<LoopControl> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open("/dev/loop-control")?;
        Ok(LoopControl { file })
    }

    /// The number of a free loop device, created by the kernel if needed.
    /// Another process may take it before we configure it (EBUSY then).
    pub(crate) fn get_free(&self) -> nix::Result<u32> {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns the
        // device number; the descriptor is open.
        let n = unsafe { loop_ctl_get_free(self.file.as_raw_fd()) }?;
        u32::try_from(n).map_err(|_| Errno::EINVAL)
    }
}

/// The path of loop device `n`.
pub(crate) fn device_path(n: u32) -> PathBuf {
    PathBuf::from(format!("/dev/loop{n}"))
}

/// Opens loop device `n` for configuration.
pub(crate) fn open_device(n: u32) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(device_path(n))
}

/// Binds `backing` to the (unbound) loop device `device` with `flags`,
/// naming it after `name` (shown by losetup). EBUSY: the device is taken.
pub(crate) fn configure(
    device: impl AsFd,
    backing: impl AsFd,
    name: &Path,
    flags: u32,
) -> nix::Result<()> {
    let fd = u32::try_from(backing.as_fd().as_raw_fd()).map_err(|_| Errno::EBADF)?;
    let mut info = LoopInfo64 {
        lo_device: 0,
        lo_inode: 0,
        lo_rdevice: 0,
        lo_offset: 0,
        lo_sizelimit: 0,
        lo_number: 0,
        lo_encrypt_type: 0,
        lo_encrypt_key_size: 0,
        lo_flags: flags,
        lo_file_name: [0; LO_NAME_SIZE],
        lo_crypt_name: [0; LO_NAME_SIZE],
        lo_encrypt_key: [0; LO_KEY_SIZE],
        lo_init: [0; 2],
    };
    super::fill_c_array(&mut info.lo_file_name, name.as_os_str().as_encoded_bytes());
    let config = LoopConfig {
        fd,
        block_size: 0,
        info,
        reserved: [0; 8],
    };
    // SAFETY: `config` is a fully initialised `struct loop_config` that
    // outlives the call; the kernel only reads it.
    unsafe { loop_configure_ioctl(device.as_fd().as_raw_fd(), &config) }.map(drop)
}
