//! The OCI runtime: bundle in, isolated process out.
//!
//! Layout by kernel concept and lifecycle stage: `namespaces`, `rootfs/`,
//! `capabilities`, `sysctl`, `hooks`; `process/` for the set-up processes;
//! `container/` for the verbs; `state` for records on disk. All raw system
//! calls are in `sys`.

pub mod bundle;
pub mod capabilities;
pub mod container;
mod device_rules;
pub mod hooks;
pub mod namespaces;
pub mod oci_state;
pub mod process;
pub mod rootfs;
pub mod sealed_exe;
pub mod state;
pub(crate) mod sys;
pub mod sysctl;

pub use container::{ContainerError, Inspection, RunOptions, Runtime};
pub use process::create::CreateOptions;
