//! The one raw syscall this crate makes: seccomp(SECCOMP_SET_MODE_FILTER).
//!
//! seccompiler's own `apply_filter` first sets PR_SET_NO_NEW_PRIVS, which the OCI runtime
//! spec leaves to the container's `process.noNewPrivileges`. So we load the program ourselves
//! and let the caller decide about no_new_privs.

use std::io;
use std::mem::{align_of, size_of};

use seccompiler::sock_filter;

// seccompiler's `sock_filter` is its own `repr(C)` copy of the kernel struct; the pointer
// cast in `set_mode_filter` relies on it having libc's layout.
const _: () = assert!(size_of::<sock_filter>() == size_of::<libc::sock_filter>());
const _: () = assert!(align_of::<sock_filter>() == align_of::<libc::sock_filter>());

/// Longest program the kernel accepts in one filter (BPF_MAXINSNS).
pub(crate) const MAX_INSTRUCTIONS: usize = 4096;

/// Loads `program` as a new seccomp filter on the calling thread.
///
/// `flags` are `SECCOMP_FILTER_FLAG_*` bits. Without no_new_privs the calling thread needs
/// CAP_SYS_ADMIN in its user namespace (else `EACCES`).
pub(crate) fn set_mode_filter(program: &[sock_filter], flags: libc::c_ulong) -> io::Result<()> {
    let len = u16::try_from(program.len())
        .ok()
        .filter(|len| usize::from(*len) <= MAX_INSTRUCTIONS && *len > 0)
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
    let fprog = libc::sock_fprog {
        len,
        filter: program.as_ptr().cast::<libc::sock_filter>().cast_mut(),
    };
    // SAFETY: `fprog` points at `len` initialised instructions in `program`, which outlives
    // the call; the layout of seccompiler's `sock_filter` equals libc's (asserted above). The
    // kernel only reads (copies) the program during the call and keeps no pointer to it.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::c_ulong::from(libc::SECCOMP_SET_MODE_FILTER),
            flags,
            &fprog as *const libc::sock_fprog,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
