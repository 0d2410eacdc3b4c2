//! Garden's wire types, field for field as Garden's Go json tags name them.

mod container;
mod info;
mod net;
mod process;
pub(crate) mod serde_util;
mod stream;
#[cfg(test)]
mod tests;

pub use container::{
    BandwidthLimits, BindMount, BindMountMode, BindMountOrigin, Capacity, ContainerSpec, CpuLimits,
    DiskLimitScope, DiskLimits, ImageRef, Limits, MemoryLimits, PidLimits, Properties,
};
pub use info::{
    ContainerCpuStat, ContainerDiskStat, ContainerInfo, ContainerInfoEntry, ContainerMemoryStat,
    ContainerMetricsEntry, ContainerNetworkStat, ContainerPidStat, Metrics, PortMapping,
};
pub use net::{
    IcmpControl, IpRange, NetIn, NetInRequest, NetInResponse, NetOutRule, PortRange, Protocol,
};
pub use process::{ProcessLimits, ProcessSpec, ResourceLimits, Signal, TtySpec, WindowSize};
pub use stream::{ProcessPayload, Source};
