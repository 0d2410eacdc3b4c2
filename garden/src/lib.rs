//! garden: the container runtime of the platform.
//!
//! `runtime` is the OCI-level runtime (runc's job): namespaces, cgroups,
//! overlayfs, seccomp, capabilities. The `garden-runc` binary is its
//! runc-compatible command line. The Garden API daemon comes next, on top.

pub mod runtime;
