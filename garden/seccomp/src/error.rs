//! The crate's error type.

use std::io;

use oci_spec::runtime::LinuxSeccompAction;

/// Everything that can go wrong while compiling or installing a seccomp profile.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// There is no syscall table for the architecture this crate was built for.
    #[error(
        "seccomp profiles are not supported on architecture {arch} \
         (garden-seccomp supports x86_64 and aarch64)"
    )]
    UnsupportedArch {
        /// `std::env::consts::ARCH` of the build.
        arch: &'static str,
    },

    /// The profile uses an action garden cannot honour.
    #[error("seccomp action {action} (for {}) is not supported: {reason}", syscall_list(.syscalls))]
    UnsupportedAction {
        /// The OCI action, e.g. `SCMP_ACT_NOTIFY`.
        action: LinuxSeccompAction,
        /// The syscalls the rule names; empty for the profile's `defaultAction`.
        syscalls: Vec<String>,
        /// Why it is unsupported.
        reason: &'static str,
    },

    /// `errnoRet` does not fit in the 16 data bits of a seccomp return value.
    #[error("seccomp action {action} (for {}) has errnoRet {errno}, which does not fit in 16 bits", syscall_list(.syscalls))]
    InvalidErrnoRet {
        /// `SCMP_ACT_ERRNO` or `SCMP_ACT_TRACE`.
        action: LinuxSeccompAction,
        /// The errno (or trace message) value given.
        errno: u32,
        /// The syscalls the rule names; empty for the profile's `defaultAction`.
        syscalls: Vec<String>,
    },

    /// An argument condition names an argument index other than 0..=5.
    #[error("seccomp condition {op} on syscall {syscall} uses argument index {index}; syscalls have arguments 0 to 5")]
    InvalidArgIndex {
        /// The syscall the condition belongs to.
        syscall: String,
        /// The offending index.
        index: usize,
        /// The comparison, e.g. `ScmpCmpMaskedEq`.
        op: oci_spec::runtime::LinuxSeccompOperator,
    },

    /// seccompiler rejected one of the filters we built.
    #[error("compiling the {filter} seccomp filter: {source}")]
    Compile {
        /// Which filter: `default ERRNO(1)`, `ERRNO(38)`, ...
        filter: String,
        /// seccompiler's error.
        #[source]
        source: seccompiler::BackendError,
    },

    /// The chained program is longer than the kernel accepts for one filter.
    #[error(
        "the seccomp profile compiles to {instructions} BPF instructions; \
         the kernel accepts at most {max}"
    )]
    ProgramTooLarge {
        /// Length of the chained program.
        instructions: usize,
        /// The kernel's limit (BPF_MAXINSNS).
        max: usize,
    },

    /// seccomp(SECCOMP_SET_MODE_FILTER) failed; nothing was installed.
    #[error(
        "installing the seccomp filter ({instructions} BPF instructions): {source}{}",
        install_hint(.source)
    )]
    Install {
        /// Length of the program.
        instructions: usize,
        /// The errno from the kernel.
        #[source]
        source: io::Error,
    },
}

fn syscall_list(syscalls: &[String]) -> String {
    if syscalls.is_empty() {
        "the default action".to_owned()
    } else {
        format!("syscalls {}", syscalls.join(", "))
    }
}

fn install_hint(error: &io::Error) -> &'static str {
    match error.raw_os_error() {
        Some(libc::EACCES) => {
            " (the caller needs either PR_SET_NO_NEW_PRIVS or CAP_SYS_ADMIN in its user namespace)"
        }
        Some(libc::EINVAL) => " (the kernel rejected the program or a filter flag)",
        Some(libc::EPERM) => " (a seccomp filter installed earlier denies seccomp(2) itself)",
        _ => "",
    }
}
