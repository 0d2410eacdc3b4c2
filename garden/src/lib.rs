//! garden: the container runtime of the platform.
//!
//! `runtime` is the OCI-level runtime (runc's job): namespaces, cgroups,
//! overlayfs, seccomp, capabilities. The `garden-runc` binary is its
//! runc-compatible command line. `keeper` holds one container process for
//! the daemon, so processes outlive it.

pub mod daemon;
pub mod keeper;
pub mod runtime;
