//! What the server tells about a container (Garden's `ContainerInfo`,
//! `Metrics` and the bulk entries). Go has no json tags on these, so the
//! field names are Go's own (`State`, `MemoryStat`, ...).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::container::Properties;
use super::serde_util::{duration_ns, nullable};
use crate::error::Error;

/// A container's state and addresses.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ContainerInfo {
    /// `active` or `stopped`.
    pub state: String,
    /// Events such as `oom`.
    #[serde(deserialize_with = "nullable")]
    pub events: Vec<String>,
    /// The host side of the container's network.
    #[serde(rename = "HostIP")]
    pub host_ip: String,
    /// The container's address.
    #[serde(rename = "ContainerIP")]
    pub container_ip: String,
    /// The host's external address.
    #[serde(rename = "ExternalIP")]
    pub external_ip: String,
    /// Where the container's files are.
    pub container_path: String,
    /// Ids of the processes still running.
    #[serde(rename = "ProcessIDs", deserialize_with = "nullable")]
    pub process_ids: Vec<String>,
    /// The container's properties.
    #[serde(deserialize_with = "nullable")]
    pub properties: Properties,
    /// Inbound port mappings.
    #[serde(deserialize_with = "nullable")]
    pub mapped_ports: Vec<PortMapping>,
}

/// One mapped port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct PortMapping {
    /// The host port.
    pub host_port: u32,
    /// The container port.
    pub container_port: u32,
}

/// One container's info or error in a bulk answer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ContainerInfoEntry {
    /// The info (empty when `err` is set).
    pub info: ContainerInfo,
    /// Why the info could not be read.
    pub err: Option<Error>,
}

/// One container's metrics or error in a bulk answer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ContainerMetricsEntry {
    /// The metrics (empty when `err` is set).
    pub metrics: Metrics,
    /// Why the metrics could not be read.
    pub err: Option<Error>,
}

/// A container's resource usage.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Metrics {
    /// Memory.
    #[serde(rename = "MemoryStat")]
    pub memory: ContainerMemoryStat,
    /// CPU time.
    #[serde(rename = "CPUStat")]
    pub cpu: ContainerCpuStat,
    /// Disk usage.
    #[serde(rename = "DiskStat")]
    pub disk: ContainerDiskStat,
    /// Network traffic.
    #[serde(rename = "NetworkStat")]
    pub network: ContainerNetworkStat,
    /// Processes.
    #[serde(rename = "PidStat")]
    pub pid: ContainerPidStat,
    /// Time since the container was created (nanoseconds on the wire).
    #[serde(rename = "Age", with = "duration_ns")]
    pub age: Duration,
    /// CPU time the container is entitled to, in nanoseconds.
    #[serde(rename = "CPUEntitlement")]
    pub cpu_entitlement: u64,
}

/// Memory statistics (cgroup `memory.stat` names).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[allow(missing_docs)]
pub struct ContainerMemoryStat {
    pub active_anon: u64,
    pub active_file: u64,
    pub cache: u64,
    pub hierarchical_memory_limit: u64,
    pub inactive_anon: u64,
    pub inactive_file: u64,
    pub mapped_file: u64,
    pub pgfault: u64,
    pub pgmajfault: u64,
    pub pgpgin: u64,
    pub pgpgout: u64,
    pub rss: u64,
    pub total_active_anon: u64,
    pub total_active_file: u64,
    pub total_cache: u64,
    pub total_inactive_anon: u64,
    pub total_inactive_file: u64,
    pub total_mapped_file: u64,
    pub total_pgfault: u64,
    pub total_pgmajfault: u64,
    pub total_pgpgin: u64,
    pub total_pgpgout: u64,
    pub total_rss: u64,
    pub total_unevictable: u64,
    pub unevictable: u64,
    pub swap: u64,
    pub hierarchical_memsw_limit: u64,
    pub total_swap: u64,
    /// Usage counted the way the limit is enforced.
    #[serde(rename = "TotalUsageTowardLimit")]
    pub total_usage_toward_limit: u64,
}

/// CPU time in nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ContainerCpuStat {
    /// Total.
    pub usage: u64,
    /// In user mode.
    pub user: u64,
    /// In kernel mode.
    pub system: u64,
}

/// Disk usage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ContainerDiskStat {
    /// Bytes, image included.
    pub total_bytes_used: u64,
    /// Inodes, image included.
    pub total_inodes_used: u64,
    /// Bytes the container wrote.
    pub exclusive_bytes_used: u64,
    /// Inodes the container created.
    pub exclusive_inodes_used: u64,
}

/// Network traffic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ContainerNetworkStat {
    /// Bytes received.
    pub rx_bytes: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
}

/// Processes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ContainerPidStat {
    /// Processes and threads now.
    pub current: u64,
    /// The limit (0: none).
    pub max: u64,
}
