//! Info, Metrics, current limits and the host's capacity.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use garden_api::types::{
    Capacity, ContainerCpuStat, ContainerDiskStat, ContainerInfo, ContainerMemoryStat,
    ContainerNetworkStat, ContainerPidStat, Limits, Metrics,
};
use garden_cgroups::Cgroup;

use super::container::Container;
use super::{Config, DaemonError, Garden};

/// Diego's default container count per cell.
const DEFAULT_MAX_CONTAINERS: u64 = 250;

pub fn host_capacity(config: &Config, disk: &garden_disk::Disk) -> Capacity {
    let memory = config.capacity.memory_bytes.unwrap_or_else(mem_total);
    let disk_bytes = config.capacity.disk_bytes.unwrap_or_else(|| {
        nix::sys::statvfs::statvfs(disk.root())
            .map(|s| s.blocks() * s.fragment_size())
            .unwrap_or(0)
    });
    Capacity {
        memory_in_bytes: memory,
        disk_in_bytes: disk_bytes,
        schedulable_disk_in_bytes: disk_bytes,
        max_containers: config
            .capacity
            .max_containers
            .unwrap_or(DEFAULT_MAX_CONTAINERS),
    }
}

fn mem_total() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

impl Garden {
    pub async fn container_info(&self, c: &Container) -> Result<ContainerInfo, DaemonError> {
        let record = c.record();
        let running = self.inner.runc.running(&c.handle).await;
        let mut events = Vec::new();
        if oom_kills(&c.cgroup_path) > 0 {
            events.push("oom".to_string());
        }
        let net = self.inner.network.attachment(&c.handle);
        let external_ip = self.inner.network.external_ip();
        Ok(ContainerInfo {
            host_ip: net
                .as_ref()
                .map(|a| a.gateway.to_string())
                .unwrap_or_default(),
            container_ip: net.as_ref().map(|a| a.ip.to_string()).unwrap_or_default(),
            external_ip: external_ip.map(|ip| ip.to_string()).unwrap_or_default(),
            mapped_ports: net.map(|a| a.mapped_ports).unwrap_or_default(),
            state: if running && !record.stopped {
                "active"
            } else {
                "stopped"
            }
            .to_string(),
            events,
            container_path: c.dir.display().to_string(),
            process_ids: self.process_ids(&c.handle),
            properties: record.properties,
        })
    }

    pub async fn container_metrics(&self, c: &Container) -> Result<Metrics, DaemonError> {
        let record = c.record();
        let cgroup_path = c.cgroup_path.clone();
        let stats =
            super::create::blocking(move || Cgroup::open(&cgroup_path).and_then(|cg| cg.stats()))
                .await?
                .unwrap_or_default();
        let disk = self.inner.disk.clone();
        let h = c.handle.clone();
        let usage = super::create::blocking(move || disk.usage(&h))
            .await?
            .unwrap_or_default();
        let mut memory = ContainerMemoryStat::default();
        if let Some(m) = &stats.memory {
            let cache = m.usage_bytes.saturating_sub(m.working_set_bytes);
            memory.total_usage_toward_limit = m.working_set_bytes;
            memory.total_rss = m.working_set_bytes;
            memory.rss = m.working_set_bytes;
            memory.cache = cache;
            memory.total_cache = cache;
            memory.hierarchical_memory_limit = m.limit_bytes.unwrap_or(u64::MAX);
        }
        let cpu = stats
            .cpu
            .as_ref()
            .map(|c| ContainerCpuStat {
                usage: c.usage_ns,
                user: c.user_ns.unwrap_or(0),
                system: c.system_ns.unwrap_or(0),
            })
            .unwrap_or_default();
        let pid = stats
            .pids
            .as_ref()
            .map(|p| ContainerPidStat {
                current: p.current,
                max: p.limit.unwrap_or(0),
            })
            .unwrap_or_default();
        let age = age(record.created_unix_ns);
        let network = match self.inner.network.stats(&c.handle).await {
            Ok(s) => ContainerNetworkStat {
                rx_bytes: s.rx_bytes,
                tx_bytes: s.tx_bytes,
            },
            Err(_) => ContainerNetworkStat::default(),
        };
        Ok(Metrics {
            network,
            memory,
            cpu,
            disk: ContainerDiskStat {
                total_bytes_used: usage.total_bytes,
                total_inodes_used: usage.total_inodes,
                exclusive_bytes_used: usage.exclusive_bytes,
                exclusive_inodes_used: usage.exclusive_inodes,
            },
            pid,
            age,
            cpu_entitlement: self.cpu_entitlement(&record.spec, age),
        })
    }

    /// CPU time the container is entitled to so far: its share of the
    /// host's cores (weight against the default 1024 per core's worth of
    /// memory share, as Garden does) over its age, in nanoseconds.
    fn cpu_entitlement(&self, spec: &garden_api::types::ContainerSpec, age: Duration) -> u64 {
        let weight = spec.limits.cpu.weight.max(spec.limits.cpu.limit_in_shares);
        if weight == 0 {
            return 0;
        }
        let cores = std::thread::available_parallelism()
            .map(|n| n.get() as u128)
            .unwrap_or(1);
        let total_weight = 1024u128 * cores;
        (age.as_nanos() * cores * weight as u128 / total_weight.max(1)) as u64
    }

    pub async fn container_limits(&self, c: &Container) -> Result<Limits, DaemonError> {
        let record = c.record();
        let mut limits = record.spec.limits.clone();
        let disk = self.inner.disk.clone();
        let h = c.handle.clone();
        if let Ok(Ok(d)) = super::create::blocking(move || disk.limits(&h)).await {
            limits.disk.byte_hard = d.byte_hard;
            limits.disk.inode_hard = d.inode_hard;
        }
        Ok(limits)
    }
}

fn oom_kills(cgroup_path: &str) -> u64 {
    Cgroup::open(cgroup_path)
        .and_then(|cg| cg.oom_kill_count())
        .unwrap_or(0)
}

fn age(created_unix_ns: u128) -> Duration {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    Duration::from_nanos(now.saturating_sub(created_unix_ns) as u64)
}
