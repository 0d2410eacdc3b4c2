//! What a container is created from, its limits and the server's capacity
//! (Garden's `ContainerSpec`, `Limits`, `BindMount`, `Capacity`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_repr::{Deserialize_repr, Serialize_repr};

use super::net::{NetIn, NetOutRule};
use super::serde_util::{is_zero, nullable, optional_duration_ns};

/// A container's properties: string keys and values (Go `map[string]string`).
pub type Properties = BTreeMap<String, String>;

/// Everything a container is created from. Every field is optional.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ContainerSpec {
    /// The container's handle; the server picks one when empty.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub handle: String,
    /// How long the container may go unreferenced before it is destroyed
    /// (`None`: the server's default). Nanoseconds on the wire.
    #[serde(with = "optional_duration_ns", skip_serializing_if = "Option::is_none")]
    pub grace_time: Option<Duration>,
    /// Deprecated in Garden in favour of `image`: a root filesystem path.
    #[serde(rename = "rootfs", skip_serializing_if = "String::is_empty")]
    pub rootfs_path: String,
    /// The image: a path, or `docker://host/repo#tag`.
    pub image: ImageRef,
    /// Bind mounts into the container's filesystem.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Vec::is_empty")]
    pub bind_mounts: Vec<BindMount>,
    /// A subnet or IP (`a.b.c.d/n`); empty: allocated from the pool.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub network: String,
    /// Initial properties.
    #[serde(
        deserialize_with = "nullable",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub properties: Properties,
    /// Environment (`KEY=value`) for every process in the container.
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// No user namespace: root in the container is root on the host.
    #[serde(skip_serializing_if = "is_zero")]
    pub privileged: bool,
    /// Resource limits.
    pub limits: Limits,
    /// Allowed outbound traffic.
    #[serde(
        rename = "netout_rules",
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub net_out: Vec<NetOutRule>,
    /// Inbound port mappings.
    #[serde(
        rename = "netin",
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub net_in: Vec<NetIn>,
}

/// An image reference with optional registry credentials.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageRef {
    /// A path, or `docker://host/repo#tag`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub uri: String,
    /// Registry user name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub username: String,
    /// Registry password.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub password: String,
}

impl std::fmt::Debug for ImageRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageRef")
            .field("uri", &self.uri)
            .field("username", &self.username)
            .field(
                "password",
                &if self.password.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .finish()
    }
}

/// One bind mount.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BindMount {
    /// The source path (on the host, or in the container for `Container` origin).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub src_path: String,
    /// The mount point in the container.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub dst_path: String,
    /// Read-only (0) or read-write (1).
    #[serde(skip_serializing_if = "is_zero")]
    pub mode: BindMountMode,
    /// Where `src_path` lives: host (0) or container (1).
    #[serde(skip_serializing_if = "is_zero")]
    pub origin: BindMountOrigin,
}

/// A bind mount's access mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize_repr, Deserialize_repr)]
#[repr(u8)]
pub enum BindMountMode {
    /// Read-only.
    #[default]
    Ro = 0,
    /// Read-write.
    Rw = 1,
}

/// Where a bind mount's source lives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize_repr, Deserialize_repr)]
#[repr(u8)]
pub enum BindMountOrigin {
    /// A host path.
    #[default]
    Host = 0,
    /// A path inside the container.
    Container = 1,
}

/// All of a container's limits (Go always writes every part).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Network bandwidth.
    #[serde(rename = "bandwidth_limits")]
    pub bandwidth: BandwidthLimits,
    /// CPU weight.
    #[serde(rename = "cpu_limits")]
    pub cpu: CpuLimits,
    /// Disk quota.
    #[serde(rename = "disk_limits")]
    pub disk: DiskLimits,
    /// Memory limit.
    #[serde(rename = "memory_limits")]
    pub memory: MemoryLimits,
    /// Number of processes and threads.
    #[serde(rename = "pid_limits")]
    pub pid: PidLimits,
}

/// Bandwidth limits in bytes per second.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BandwidthLimits {
    /// Sustained rate.
    #[serde(rename = "rate", skip_serializing_if = "is_zero")]
    pub rate_in_bytes_per_second: u64,
    /// Burst rate.
    #[serde(rename = "burst", skip_serializing_if = "is_zero")]
    pub burst_rate_in_bytes_per_second: u64,
}

/// CPU limits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CpuLimits {
    /// Relative CPU weight (shares).
    #[serde(skip_serializing_if = "is_zero")]
    pub weight: u64,
    /// Deprecated in Garden in favour of `weight`.
    #[serde(skip_serializing_if = "is_zero")]
    pub limit_in_shares: u64,
}

/// Disk limits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DiskLimits {
    /// Soft inode limit.
    #[serde(skip_serializing_if = "is_zero")]
    pub inode_soft: u64,
    /// Hard inode limit.
    #[serde(skip_serializing_if = "is_zero")]
    pub inode_hard: u64,
    /// Soft byte limit.
    #[serde(skip_serializing_if = "is_zero")]
    pub byte_soft: u64,
    /// Hard byte limit.
    #[serde(skip_serializing_if = "is_zero")]
    pub byte_hard: u64,
    /// Whether the image's layers count against the limit.
    #[serde(skip_serializing_if = "is_zero")]
    pub scope: DiskLimitScope,
}

/// What a disk limit counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize_repr, Deserialize_repr)]
#[repr(u8)]
pub enum DiskLimitScope {
    /// The image and the container's own writes.
    #[default]
    Total = 0,
    /// Only the container's own writes.
    Exclusive = 1,
}

/// Memory limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MemoryLimits {
    /// Limit in bytes.
    #[serde(skip_serializing_if = "is_zero")]
    pub limit_in_bytes: u64,
}

/// Process count limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PidLimits {
    /// Maximum number of processes and threads.
    #[serde(skip_serializing_if = "is_zero")]
    pub max: u64,
}

/// The server's capacity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Capacity {
    /// Memory available to containers.
    #[serde(skip_serializing_if = "is_zero")]
    pub memory_in_bytes: u64,
    /// Size of the image store volume.
    #[serde(skip_serializing_if = "is_zero")]
    pub disk_in_bytes: u64,
    /// Scratch space containers may use (what schedulers should use).
    #[serde(skip_serializing_if = "is_zero")]
    pub schedulable_disk_in_bytes: u64,
    /// How many containers the server accepts.
    #[serde(skip_serializing_if = "is_zero")]
    pub max_containers: u64,
}
