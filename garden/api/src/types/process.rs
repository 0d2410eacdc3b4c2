//! What a process runs with (Garden's `ProcessSpec`, `TTYSpec`,
//! `ResourceLimits`, `Signal`).

use serde::{Deserialize, Serialize};
use serde_repr::{Deserialize_repr, Serialize_repr};

use super::container::{BindMount, CpuLimits, ImageRef, MemoryLimits};
use super::serde_util::{is_zero, nullable};

/// A process to run in a container.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProcessSpec {
    /// The process id; the server generates one when empty.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// The program.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// Its arguments (without the program).
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Environment (`KEY=value`), added to the container's.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// Working directory (default: the user's home).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub dir: String,
    /// A user name or `uid:gid`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub user: String,
    /// Resource limits (setrlimit).
    #[serde(rename = "rlimits")]
    pub rlimits: ResourceLimits,
    /// Per-process CPU and memory limits overriding the container's.
    #[serde(rename = "limits", skip_serializing_if = "Option::is_none")]
    pub override_container_limits: Option<ProcessLimits>,
    /// Run with a terminal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tty: Option<TtySpec>,
    /// A root filesystem of its own (a sidecar sharing the container's namespaces).
    pub image: ImageRef,
    /// Bind mounts for a process with its own image.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Vec::is_empty")]
    pub bind_mounts: Vec<BindMount>,
}

/// Terminal settings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TtySpec {
    /// The window size, if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window_size: Option<WindowSize>,
}

/// A terminal's size in characters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WindowSize {
    /// Columns.
    #[serde(skip_serializing_if = "is_zero")]
    pub columns: u32,
    /// Rows.
    #[serde(skip_serializing_if = "is_zero")]
    pub rows: u32,
}

/// Per-process limits (Go's `ProcessLimits`; always both parts).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProcessLimits {
    /// CPU weight.
    #[serde(rename = "cpu_limits")]
    pub cpu: CpuLimits,
    /// Memory limit.
    #[serde(rename = "memory_limits")]
    pub memory: MemoryLimits,
}

/// setrlimit values; `None` leaves a limit as inherited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[allow(missing_docs)]
pub struct ResourceLimits {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub r#as: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub core: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fsize: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locks: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memlock: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub msgqueue: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nice: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nofile: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nproc: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtprio: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sigpending: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stack: Option<u64>,
}

/// The two signals Garden forwards to a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize_repr, Deserialize_repr)]
#[repr(u8)]
pub enum Signal {
    /// SIGTERM.
    Terminate = 0,
    /// SIGKILL.
    Kill = 1,
}
