//! The commands that are one request each.

use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use garden_api::client::Client;
use garden_api::types::{
    BandwidthLimits, BindMount, BindMountMode, ContainerSpec, CpuLimits, DiskLimitScope,
    DiskLimits, ImageRef, Limits, MemoryLimits, NetIn, PidLimits, Properties,
};
use serde::Serialize;

use crate::output;

/// Parses `KEY=VALUE`.
pub fn key_value(text: &str) -> Result<(String, String), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("expected KEY=VALUE, got {text:?}"))?;
    if key.is_empty() {
        return Err(format!("empty key in {text:?}"));
    }
    Ok((key.to_owned(), value.to_owned()))
}

/// Parses a size: `1048576`, `512K`, `256M`, `2G` (powers of 1024).
pub fn size(text: &str) -> Result<u64, String> {
    let upper = text.trim().to_ascii_uppercase();
    let digits = upper
        .trim_end_matches(['B', 'I'])
        .trim_end_matches(['K', 'M', 'G', 'T']);
    let unit = &upper[digits.len()..];
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("invalid size {text:?}: expected e.g. 512M or 2G"))?;
    let shift = match unit.trim_end_matches(['B', 'I']) {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(format!("invalid size unit in {text:?}")),
    };
    number
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("size {text:?} is too large"))
}

fn bind_mount(text: &str) -> Result<BindMount, String> {
    let parts: Vec<&str> = text.split(':').collect();
    let (src, dst, mode) = match parts.as_slice() {
        [src, dst] => (src, dst, BindMountMode::Ro),
        [src, dst, "ro"] => (src, dst, BindMountMode::Ro),
        [src, dst, "rw"] => (src, dst, BindMountMode::Rw),
        _ => return Err(format!("expected SRC:DST[:ro|rw], got {text:?}")),
    };
    Ok(BindMount {
        src_path: (*src).to_owned(),
        dst_path: (*dst).to_owned(),
        mode,
        ..BindMount::default()
    })
}

fn port_mapping(text: &str) -> Result<NetIn, String> {
    let (host, container) = text.split_once(':').unwrap_or(("0", text));
    let port = |text: &str| {
        text.parse::<u32>()
            .map_err(|_| format!("invalid port {text:?}"))
    };
    Ok(NetIn {
        host_port: port(host)?,
        container_port: port(container)?,
    })
}

/// What `gardenctl create` takes.
#[derive(Args)]
pub struct CreateArgs {
    /// The handle (default: chosen by the server).
    #[arg(long)]
    handle: Option<String>,
    /// The image: a rootfs path or tarball, or docker://host/repo#tag.
    #[arg(long)]
    image: Option<String>,
    /// Registry user for the image.
    #[arg(long, requires = "image")]
    image_user: Option<String>,
    /// Registry password for the image (or GARDEN_IMAGE_PASSWORD).
    #[arg(
        long,
        env = "GARDEN_IMAGE_PASSWORD",
        hide_env_values = true,
        requires = "image"
    )]
    image_password: Option<String>,
    /// Memory limit, e.g. 512M.
    #[arg(short, long, value_parser = size)]
    memory: Option<u64>,
    /// CPU weight.
    #[arg(long)]
    cpu_weight: Option<u64>,
    /// Disk limit in bytes, e.g. 1G.
    #[arg(long, value_parser = size)]
    disk: Option<u64>,
    /// Inode limit.
    #[arg(long)]
    inodes: Option<u64>,
    /// Count only the container's own writes against the disk limit.
    #[arg(long)]
    disk_exclusive: bool,
    /// Process limit.
    #[arg(long)]
    pids: Option<u64>,
    /// Bandwidth limit in bytes per second (and its burst).
    #[arg(long, value_parser = size)]
    bandwidth: Option<u64>,
    /// Environment KEY=VALUE (repeatable).
    #[arg(short, long = "env")]
    env: Vec<String>,
    /// Without a user namespace: root inside is root outside.
    #[arg(long)]
    privileged: bool,
    /// A property KEY=VALUE (repeatable).
    #[arg(short = 'p', long = "property", value_parser = key_value)]
    properties: Vec<(String, String)>,
    /// A bind mount SRC:DST[:ro|rw] (repeatable).
    #[arg(short = 'b', long = "bind-mount", value_parser = bind_mount)]
    bind_mounts: Vec<BindMount>,
    /// Destroy the container after this long unreferenced, e.g. 5m.
    #[arg(long, value_parser = humantime::parse_duration)]
    grace_time: Option<Duration>,
    /// The network: a.b.c.d/n.
    #[arg(long)]
    network: Option<String>,
    /// A port mapping HOST:CONTAINER, or CONTAINER alone (repeatable).
    #[arg(long = "net-in", value_parser = port_mapping)]
    net_in: Vec<NetIn>,
}

impl CreateArgs {
    fn spec(self) -> ContainerSpec {
        ContainerSpec {
            handle: self.handle.unwrap_or_default(),
            grace_time: self.grace_time,
            image: ImageRef {
                uri: self.image.unwrap_or_default(),
                username: self.image_user.unwrap_or_default(),
                password: self.image_password.unwrap_or_default(),
            },
            bind_mounts: self.bind_mounts,
            network: self.network.unwrap_or_default(),
            properties: self.properties.into_iter().collect(),
            env: self.env,
            privileged: self.privileged,
            limits: Limits {
                bandwidth: BandwidthLimits {
                    rate_in_bytes_per_second: self.bandwidth.unwrap_or(0),
                    burst_rate_in_bytes_per_second: self.bandwidth.unwrap_or(0),
                },
                cpu: CpuLimits {
                    weight: self.cpu_weight.unwrap_or(0),
                    limit_in_shares: 0,
                },
                disk: DiskLimits {
                    byte_hard: self.disk.unwrap_or(0),
                    inode_hard: self.inodes.unwrap_or(0),
                    scope: if self.disk_exclusive {
                        DiskLimitScope::Exclusive
                    } else {
                        DiskLimitScope::Total
                    },
                    ..DiskLimits::default()
                },
                memory: MemoryLimits {
                    limit_in_bytes: self.memory.unwrap_or(0),
                },
                pid: PidLimits {
                    max: self.pids.unwrap_or(0),
                },
            },
            net_in: self.net_in,
            ..ContainerSpec::default()
        }
    }
}

/// `gardenctl properties ...`.
#[derive(Subcommand)]
pub enum PropertiesCommand {
    /// Show all properties.
    List {
        /// Container handle.
        handle: String,
    },
    /// Print one property's value.
    Get {
        /// Container handle.
        handle: String,
        /// Property name.
        key: String,
    },
    /// Set a property.
    Set {
        /// Container handle.
        handle: String,
        /// Property name.
        key: String,
        /// Value.
        value: String,
    },
    /// Remove a property.
    Rm {
        /// Container handle.
        handle: String,
        /// Property name.
        key: String,
    },
}

pub async fn ping(client: &Client) -> anyhow::Result<()> {
    client.ping().await?;
    println!("ok");
    Ok(())
}

pub async fn capacity(client: &Client, json: bool) -> anyhow::Result<()> {
    let capacity = client.capacity().await?;
    if json {
        return output::json(&capacity);
    }
    output::pairs(&[
        ("memory", output::bytes(capacity.memory_in_bytes)),
        ("disk", output::bytes(capacity.disk_in_bytes)),
        (
            "schedulable disk",
            output::bytes(capacity.schedulable_disk_in_bytes),
        ),
        ("max containers", capacity.max_containers.to_string()),
    ]);
    Ok(())
}

pub async fn create(client: &Client, args: CreateArgs) -> anyhow::Result<()> {
    let handle = client
        .create(&args.spec())
        .await
        .context("creating the container")?;
    println!("{handle}");
    Ok(())
}

pub async fn list(
    client: &Client,
    properties: Vec<(String, String)>,
    json: bool,
) -> anyhow::Result<()> {
    let filter: Properties = properties.into_iter().collect();
    let handles = client.list(&filter).await?;
    if json {
        return output::json(&handles);
    }
    for handle in handles {
        println!("{handle}");
    }
    Ok(())
}

pub async fn info(client: &Client, handles: &[String], json: bool) -> anyhow::Result<()> {
    let mut infos = Vec::new();
    for handle in handles {
        infos.push((
            handle,
            client
                .info(handle)
                .await
                .with_context(|| format!("container {handle}"))?,
        ));
    }
    if json {
        let by_handle: std::collections::BTreeMap<_, _> = infos.into_iter().collect();
        return output::json(&by_handle);
    }
    for (index, (handle, info)) in infos.iter().enumerate() {
        if index > 0 {
            println!();
        }
        let ports: Vec<String> = info
            .mapped_ports
            .iter()
            .map(|port| format!("{}->{}", port.host_port, port.container_port))
            .collect();
        output::pairs(&[
            ("handle", (*handle).clone()),
            ("state", info.state.clone()),
            ("events", info.events.join(", ")),
            ("container ip", info.container_ip.clone()),
            ("host ip", info.host_ip.clone()),
            ("external ip", info.external_ip.clone()),
            ("path", info.container_path.clone()),
            ("processes", info.process_ids.join(", ")),
            ("ports", ports.join(", ")),
        ]);
        for (key, value) in &info.properties {
            println!("  {key}={value}");
        }
    }
    Ok(())
}

pub async fn metrics(client: &Client, handle: &str, json: bool) -> anyhow::Result<()> {
    let metrics = client.metrics(handle).await?;
    if json {
        return output::json(&metrics);
    }
    output::pairs(&[
        (
            "age",
            humantime::format_duration(Duration::from_secs(metrics.age.as_secs())).to_string(),
        ),
        (
            "memory",
            output::bytes(metrics.memory.total_usage_toward_limit),
        ),
        (
            "memory limit",
            output::limit(metrics.memory.hierarchical_memory_limit, output::bytes),
        ),
        ("cpu", format!("{:.3} s", metrics.cpu.usage as f64 / 1e9)),
        (
            "cpu entitlement",
            format!("{:.3} s", metrics.cpu_entitlement as f64 / 1e9),
        ),
        ("disk", output::bytes(metrics.disk.total_bytes_used)),
        (
            "disk exclusive",
            output::bytes(metrics.disk.exclusive_bytes_used),
        ),
        ("network rx", output::bytes(metrics.network.rx_bytes)),
        ("network tx", output::bytes(metrics.network.tx_bytes)),
        (
            "pids",
            format!(
                "{} / {}",
                metrics.pid.current,
                output::limit(metrics.pid.max, |max| max.to_string())
            ),
        ),
    ]);
    Ok(())
}

#[derive(Serialize)]
struct AllLimits {
    bandwidth: BandwidthLimits,
    cpu: CpuLimits,
    disk: DiskLimits,
    memory: MemoryLimits,
}

pub async fn limits(client: &Client, handle: &str, json: bool) -> anyhow::Result<()> {
    let limits = AllLimits {
        bandwidth: client.current_bandwidth_limits(handle).await?,
        cpu: client.current_cpu_limits(handle).await?,
        disk: client.current_disk_limits(handle).await?,
        memory: client.current_memory_limits(handle).await?,
    };
    if json {
        return output::json(&limits);
    }
    let count = |value: u64| value.to_string();
    output::pairs(&[
        (
            "memory",
            output::limit(limits.memory.limit_in_bytes, output::bytes),
        ),
        (
            "cpu weight",
            output::limit(limits.cpu.weight.max(limits.cpu.limit_in_shares), count),
        ),
        ("disk", output::limit(limits.disk.byte_hard, output::bytes)),
        ("inodes", output::limit(limits.disk.inode_hard, count)),
        (
            "disk scope",
            format!("{:?}", limits.disk.scope).to_lowercase(),
        ),
        (
            "bandwidth",
            output::limit(limits.bandwidth.rate_in_bytes_per_second, |rate| {
                format!("{}/s", output::bytes(rate))
            }),
        ),
    ]);
    Ok(())
}

pub async fn properties(
    client: &Client,
    command: PropertiesCommand,
    json: bool,
) -> anyhow::Result<()> {
    match command {
        PropertiesCommand::List { handle } => {
            let properties = client.properties(&handle).await?;
            if json {
                return output::json(&properties);
            }
            let rows: Vec<Vec<String>> = properties
                .into_iter()
                .map(|(key, value)| vec![key, value])
                .collect();
            output::table(&rows);
        }
        PropertiesCommand::Get { handle, key } => {
            println!("{}", client.property(&handle, &key).await?)
        }
        PropertiesCommand::Set { handle, key, value } => {
            client.set_property(&handle, &key, &value).await?
        }
        PropertiesCommand::Rm { handle, key } => client.remove_property(&handle, &key).await?,
    }
    Ok(())
}

pub async fn destroy(client: &Client, handles: &[String]) -> anyhow::Result<()> {
    let mut failed = 0;
    for handle in handles {
        if let Err(error) = client.destroy(handle).await {
            eprintln!("gardenctl: destroying {handle}: {error}");
            failed += 1;
        }
    }
    anyhow::ensure!(
        failed == 0,
        "{failed} of {} containers not destroyed",
        handles.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_mounts() {
        assert_eq!(size("512M"), Ok(512 << 20));
        assert_eq!(size("2g"), Ok(2 << 30));
        assert_eq!(size("1KiB"), Ok(1024));
        assert_eq!(size("100"), Ok(100));
        assert!(size("12X").is_err() && size("M").is_err());
        assert_eq!(
            bind_mount("/a:/b:rw").map(|mount| mount.mode),
            Ok(BindMountMode::Rw)
        );
        assert!(bind_mount("/a").is_err());
        assert_eq!(
            port_mapping("8080"),
            Ok(NetIn {
                host_port: 0,
                container_port: 8080
            })
        );
        assert_eq!(key_value("a=b=c"), Ok(("a".to_owned(), "b=c".to_owned())));
    }
}
