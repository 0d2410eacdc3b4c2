//! Run the runtime from a sealed in-memory copy of its binary
//! (CVE-2019-5736 class).
//!
//! Processes of ours that enter a container run the runtime's binary until
//! they exec the container's program. If that program is a script whose
//! interpreter is `/proc/self/exe`, the kernel starts *our* binary inside the
//! container, where its root can open `/proc/<pid>/exe` and later write to
//! it. Running from a sealed memfd makes that path lead to a write-sealed
//! copy, never to the file on the host.

use std::ffi::CString;
use std::io;
use std::os::fd::AsFd;

use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};

const NAME: &str = "garden-runc";

#[derive(Debug, thiserror::Error)]
pub enum SealedExeError {
    #[error("cloning the runtime binary into a sealed memfd: {step}: {source}")]
    Clone {
        step: &'static str,
        #[source]
        source: io::Error,
    },
}

/// Whether we already run from the sealed copy.
pub fn is_sealed() -> bool {
    std::fs::read_link("/proc/self/exe")
        .map(|p| p.to_string_lossy().starts_with("/memfd:"))
        .unwrap_or(false)
}

/// Re-executes the current command from a sealed memfd copy of the binary,
/// unless it already runs from one. Returns only on failure.
pub fn reexec_sealed() -> Result<(), SealedExeError> {
    if is_sealed() {
        return Ok(());
    }
    let err = |step| move |source| SealedExeError::Clone { step, source };
    let mut exe = std::fs::File::open("/proc/self/exe").map_err(err("opening /proc/self/exe"))?;
    let fd = memfd_create(NAME, MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING)
        .map_err(|e| err("memfd_create")(e.into()))?;
    let mut copy = std::fs::File::from(fd);
    io::copy(&mut exe, &mut copy).map_err(err("copying the binary"))?;
    let seals = SealFlag::F_SEAL_SEAL
        | SealFlag::F_SEAL_SHRINK
        | SealFlag::F_SEAL_GROW
        | SealFlag::F_SEAL_WRITE;
    fcntl(copy.as_fd(), FcntlArg::F_ADD_SEALS(seals)).map_err(|e| err("sealing")(e.into()))?;
    let args: Vec<CString> = std::env::args_os()
        .filter_map(|a| CString::new(a.into_encoded_bytes()).ok())
        .collect();
    let env: Vec<CString> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut kv = k.into_encoded_bytes();
            kv.push(b'=');
            kv.extend(v.into_encoded_bytes());
            CString::new(kv).ok()
        })
        .collect();
    let e = nix::unistd::fexecve(copy.as_fd(), &args, &env).unwrap_err();
    Err(err("fexecve")(e.into()))
}
