//! seccomp profiles for garden containers: Garden's default allow-list and OCI profiles,
//! compiled with seccompiler and installed with seccomp(2).
//!
//! ```no_run
//! # fn main() -> Result<(), garden_seccomp::SeccompError> {
//! use garden_seccomp::Profile;
//! // In the runtime, before forking the container's init:
//! let profile = Profile::garden_default()?;
//! // In the init, as the last step before execve (see `Profile::install` for the order):
//! profile.install()?;
//! # Ok(())
//! # }
//! ```
//!
//! # API
//! As agreed with the runtime: [`Profile::garden_default`], [`Profile::from_oci`],
//! [`Profile::install`] and [`SeccompError`]. Additions: [`Profile::instruction_count`],
//! [`Profile::filters`] and [`Profile::skipped_syscalls`] for logs and metrics.
//!
//! Design change: a profile is compiled into one filter per action (seccompiler filters have
//! one match action) as planned, but [`Profile::install`] loads them **chained into a single
//! BPF program** with one seccomp(2) call rather than as separate stacked filters. Stacked
//! filters must each pass the ones loaded before them, so a profile that does not allow
//! `seccomp` could never finish installing, and a failure half-way would leave half a profile.
//! The chain is ordered so its answers equal the kernel's stacking rule; see `compile.rs`.
//!
//! # Garden's default compared with Garden and Docker
//! Docker's default allow-list for a container without CAP_SYS_ADMIN and friends, 64-bit names
//! only (297 syscalls on x86_64). Unlike Docker (and Garden) on kernels ≥ 4.8, `ptrace`,
//! `process_vm_readv/writev`, `kcmp` and `pidfd_getfd` are refused, and so is `syslog`, which
//! Garden allowed.
//!
//! # Architectures
//! x86_64 and aarch64: the filter checks the native ABI only and kills the process on any other
//! (i386 `int 0x80`, x32, arm32 compat). Other architectures get
//! [`SeccompError::UnsupportedArch`].

mod compile;
mod error;
mod garden;
mod oci;
mod sys;
mod syscalls;

use std::fmt;
use std::sync::OnceLock;

use seccompiler::BpfProgram;

pub use error::SeccompError;

/// A compiled seccomp profile, ready to install into a thread.
///
/// Compile it in the runtime before forking; [`Profile::install`] allocates nothing, so it is
/// safe in a child forked from a multi-threaded process.
#[derive(Clone)]
pub struct Profile {
    /// The filters chained into one program; empty if the profile allows everything.
    program: BpfProgram,
    /// `SECCOMP_FILTER_FLAG_*` bits.
    flags: libc::c_ulong,
    /// The filters in the chain, in order, e.g. `["x32 guard", "ERRNO(38)", "default ERRNO(1)"]`.
    filters: Vec<String>,
    skipped: Vec<String>,
}

impl Profile {
    /// Garden's default for unprivileged containers: ERRNO(EPERM) for everything not on
    /// Docker's default allow-list; `clone` only without namespace flags; `clone3` → ENOSYS;
    /// `personality` only for 0, 0x8, 0x20000, 0x20008 and 0xffffffff; `socket` except
    /// AF_VSOCK. keyctl, add_key, request_key, unshare, setns, mount, umount2, pivot_root,
    /// ptrace, bpf, perf_event_open, kexec_*, init_module, ... are refused.
    ///
    /// Compiled once per process and cloned afterwards.
    pub fn garden_default() -> Result<Profile, SeccompError> {
        static COMPILED: OnceLock<Profile> = OnceLock::new();
        if let Some(profile) = COMPILED.get() {
            return Ok(profile.clone());
        }
        let (rules, skipped) = garden::rules()?;
        let profile = Self::compile(&rules, 0, skipped)?;
        Ok(COMPILED.get_or_init(|| profile).clone())
    }

    /// Compiles an OCI profile (config.json `linux.seccomp`), with runc's semantics: see the
    /// `oci` module. Unknown syscall names are skipped with a warning
    /// ([`Profile::skipped_syscalls`]); `SCMP_ACT_NOTIFY` is an error.
    pub fn from_oci(spec: &oci_spec::runtime::LinuxSeccomp) -> Result<Profile, SeccompError> {
        let translated = oci::translate(spec)?;
        Self::compile(&translated.rules, translated.flags, translated.skipped)
    }

    fn compile(
        rules: &compile::Rules,
        flags: libc::c_ulong,
        skipped: Vec<String>,
    ) -> Result<Profile, SeccompError> {
        let arch = syscalls::target_arch().ok_or(SeccompError::UnsupportedArch {
            arch: std::env::consts::ARCH,
        })?;
        let compiled = compile::compile(rules, arch)?;
        tracing::debug!(
            filters = ?compiled.chain_labels,
            instructions = compiled.chained.len(),
            "compiled seccomp profile"
        );
        Ok(Profile {
            program: compiled.chained,
            flags,
            filters: compiled.chain_labels,
            skipped,
        })
    }

    /// Installs the profile into the calling thread with seccomp(SECCOMP_SET_MODE_FILTER).
    ///
    /// Does **not** set PR_SET_NO_NEW_PRIVS. Without it the thread needs CAP_SYS_ADMIN in its
    /// user namespace (else [`SeccompError::Install`] with EACCES). So, like runc: without
    /// `noNewPrivileges`, install before dropping capabilities and changing uid (the profile
    /// must then allow `capset`, `setuid`, `setgid`, `setgroups`, `prctl`, ...); with it, set
    /// no_new_privs and install as the very last step before `execve`. Either way `execve`
    /// (and whatever the init does after installing, e.g. `write`/`close`/`exit_group` to
    /// report errors) must be allowed by the profile. The filter binds the calling thread and
    /// survives execve; install it in the thread that will exec.
    pub fn install(&self) -> Result<(), SeccompError> {
        if self.program.is_empty() {
            return Ok(());
        }
        sys::set_mode_filter(&self.program, self.flags).map_err(|source| SeccompError::Install {
            instructions: self.program.len(),
            source,
        })
    }

    /// Length of the BPF program [`Profile::install`] loads.
    pub fn instruction_count(&self) -> usize {
        self.program.len()
    }

    /// The per-action filters chained in the program, in evaluation order.
    pub fn filters(&self) -> &[String] {
        &self.filters
    }

    /// Syscall names the profile used that do not exist on this architecture (skipped).
    pub fn skipped_syscalls(&self) -> &[String] {
        &self.skipped
    }
}

impl fmt::Debug for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Profile")
            .field("filters", &self.filters)
            .field("instructions", &self.program.len())
            .field("flags", &self.flags)
            .field("skipped", &self.skipped)
            .finish()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::time::{Duration, Instant};

    fn compile_garden_default() -> Profile {
        let (rules, skipped) = garden::rules().unwrap();
        Profile::compile(&rules, 0, skipped).unwrap()
    }

    #[test]
    fn garden_default_compiles_well_under_a_millisecond() {
        let mut samples: Vec<Duration> = (0..200)
            .map(|_| {
                let start = Instant::now();
                let profile = compile_garden_default();
                let elapsed = start.elapsed();
                assert!(profile.instruction_count() > 0);
                elapsed
            })
            .collect();
        samples.sort_unstable();
        let median = samples[samples.len() / 2];
        let _ = Profile::garden_default().unwrap(); // fills the per-process cache
        let start = Instant::now();
        for _ in 0..100 {
            let _ = Profile::garden_default().unwrap();
        }
        let cached = start.elapsed() / 100;

        let (rules, _) = garden::rules().unwrap();
        let allowed: BTreeSet<i64> = rules
            .rules
            .iter()
            .filter(|rule| rule.action == seccompiler::SeccompAction::Allow)
            .map(|rule| rule.nr)
            .collect();
        let profile = compile_garden_default();
        println!(
            "garden_default: {} syscalls allowed, {} BPF instructions; compile median {:?} \
             (min {:?}, max {:?}) over {} runs, cached call {:?} ({} build)",
            allowed.len(),
            profile.instruction_count(),
            median,
            samples[0],
            samples[samples.len() - 1],
            samples.len(),
            cached,
            if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            },
        );
        let budget = if cfg!(debug_assertions) {
            Duration::from_millis(20)
        } else {
            Duration::from_millis(1)
        };
        assert!(median < budget, "median {median:?} over budget {budget:?}");
    }
}
