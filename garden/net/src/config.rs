//! The `[network]` section of gardend's configuration and its defaults.
//!
//! Defaults follow Garden (guardian's `--network-pool`, `--port-pool-start`,
//! `--port-pool-size`, `--mtu`, `--allow-host-access`, `--dns-server`).

use std::net::Ipv4Addr;
use std::path::Path;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// Garden's default pool of container subnets.
pub const DEFAULT_POOL: &str = "10.254.0.0/22";
/// Garden's first NetIn host port.
pub const DEFAULT_PORT_POOL_START: u16 = 61001;
/// Garden's NetIn port pool size (61001..=65534).
pub const DEFAULT_PORT_POOL_SIZE: u16 = 4534;
/// Garden caps container MTUs at this value.
pub const MAX_MTU: u32 = 1500;
/// Longest interface prefix: 15 bytes (IFNAMSIZ - 1) minus 8 hex digits.
pub const MAX_PREFIX_LEN: usize = 7;

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// An interface or chain prefix that nft or the kernel would refuse.
    #[error("network.{field} = {value:?}: must be 1-{MAX_PREFIX_LEN} characters of a-z, 0-9, '-'")]
    BadPrefix {
        /// Which setting.
        field: &'static str,
        /// Its value.
        value: String,
    },
    /// The bridge and veth prefixes must differ and neither may start the other.
    #[error("network.bridge_prefix {bridge:?} and network.veth_prefix {veth:?} overlap")]
    PrefixesOverlap {
        /// The bridge prefix.
        bridge: String,
        /// The veth prefix.
        veth: String,
    },
    /// The nft table name.
    #[error("network.table = {0:?}: must be 1-32 characters of a-z, A-Z, 0-9, '_', '-'")]
    BadTable(String),
    /// The pool must hold at least one /30.
    #[error("network.pool = {0}: must be a /30 or larger")]
    PoolTooSmall(Ipv4Net),
    /// MTU out of range.
    #[error("network.mtu = {0}: must be 0 (detect) or 68-{MAX_MTU}")]
    BadMtu(u32),
    /// Port pool out of range.
    #[error("network.port_pool_start {start} + port_pool_size {size} exceeds 65535 or is empty")]
    BadPortPool {
        /// First port.
        start: u16,
        /// Number of ports.
        size: u16,
    },
}

/// Container networking settings (gardend's `[network]` TOML section).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetConfig {
    /// Subnets for containers: each container without a `network` in its
    /// spec gets the next free /30 of this range (default `10.254.0.0/22`,
    /// 256 containers). Spec subnets must lie inside it too.
    pub pool: Ipv4Net,
    /// Name servers written to containers' `/etc/resolv.conf`. Empty (the
    /// default): the host's `/etc/resolv.conf` name servers, leaving out
    /// 127.0.0.0/8 (a host-local resolver such as systemd-resolved's
    /// 127.0.0.53 is unreachable from a container).
    pub dns_servers: Vec<Ipv4Addr>,
    /// Name servers appended after `dns_servers` (or the host's).
    pub additional_dns_servers: Vec<Ipv4Addr>,
    /// MTU of container interfaces; 0 (default): the MTU of the host's
    /// default-route interface, at most 1500 (Garden's rule).
    pub mtu: u32,
    /// First host port handed out for NetIn with host port 0 (default 61001).
    pub port_pool_start: u16,
    /// How many ports the NetIn pool has (default 4534: 61001..=65534).
    pub port_pool_size: u16,
    /// Let containers reach the host's own addresses (default false).
    pub allow_host_access: bool,
    /// The host address reported as `ExternalIP`; unset: the source address
    /// of the host's default route.
    pub external_ip: Option<Ipv4Addr>,
    /// The nftables table (family `inet`) garden owns (default `garden`).
    pub table: String,
    /// Prefix of bridge names; a bridge is `<prefix><subnet in hex>` (default `gb-`).
    pub bridge_prefix: String,
    /// Prefix of host-side veth names; `<prefix><container IP in hex>` (default `gv-`).
    pub veth_prefix: String,
    /// Seconds an emptied bridge is kept for the next container of its
    /// subnet before it is deleted (default 30; 0: delete at once). Deleting
    /// a bridge costs the kernel 30-50 ms of RCU grace periods, and dynamic
    /// allocation hands the lowest free subnet out first, so under
    /// create/destroy churn the same few bridges are reused.
    pub idle_bridge_seconds: u64,
    /// Set the global `net.ipv4.ip_forward=1` at open (default true). When
    /// false only `net.ipv4.conf.<iface>.forwarding` of the bridges garden
    /// creates is set; IPv4 forwarding is decided by the input interface, so
    /// that is enough for container egress (tests use false: they must not
    /// change global sysctls).
    pub ip_forward: bool,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            pool: Ipv4Net::new(Ipv4Addr::new(10, 254, 0, 0), 22)
                .expect("22 is a valid prefix length"),
            dns_servers: Vec::new(),
            additional_dns_servers: Vec::new(),
            mtu: 0,
            port_pool_start: DEFAULT_PORT_POOL_START,
            port_pool_size: DEFAULT_PORT_POOL_SIZE,
            allow_host_access: false,
            external_ip: None,
            table: "garden".to_owned(),
            bridge_prefix: "gb-".to_owned(),
            veth_prefix: "gv-".to_owned(),
            idle_bridge_seconds: 30,
            ip_forward: true,
        }
    }
}

impl NetConfig {
    /// Checks every field; [`crate::Network::open`] calls it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_prefix("bridge_prefix", &self.bridge_prefix)?;
        check_prefix("veth_prefix", &self.veth_prefix)?;
        if self.bridge_prefix.starts_with(&self.veth_prefix)
            || self.veth_prefix.starts_with(&self.bridge_prefix)
        {
            return Err(ConfigError::PrefixesOverlap {
                bridge: self.bridge_prefix.clone(),
                veth: self.veth_prefix.clone(),
            });
        }
        let table_ok = !self.table.is_empty()
            && self.table.len() <= 32
            && self
                .table
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !table_ok {
            return Err(ConfigError::BadTable(self.table.clone()));
        }
        if self.pool.prefix_len() > 30 {
            return Err(ConfigError::PoolTooSmall(self.pool));
        }
        if self.mtu != 0 && !(68..=MAX_MTU).contains(&self.mtu) {
            return Err(ConfigError::BadMtu(self.mtu));
        }
        let end = u32::from(self.port_pool_start) + u32::from(self.port_pool_size);
        if self.port_pool_size == 0 || self.port_pool_start == 0 || end > 65536 {
            return Err(ConfigError::BadPortPool {
                start: self.port_pool_start,
                size: self.port_pool_size,
            });
        }
        Ok(())
    }

    /// The name servers for containers: `dns_servers`, or the host's from
    /// `resolv_conf` (normally `/etc/resolv.conf`) without 127.0.0.0/8,
    /// then `additional_dns_servers`. An unreadable file gives none.
    pub fn effective_dns_servers(&self, resolv_conf: &Path) -> Vec<Ipv4Addr> {
        let mut servers = if self.dns_servers.is_empty() {
            let text = std::fs::read_to_string(resolv_conf).unwrap_or_default();
            host_name_servers(&text)
        } else {
            self.dns_servers.clone()
        };
        for extra in &self.additional_dns_servers {
            if !servers.contains(extra) {
                servers.push(*extra);
            }
        }
        servers
    }
}

/// IPv4 `nameserver` lines of a resolv.conf, leaving out loopback addresses.
pub fn host_name_servers(resolv_conf: &str) -> Vec<Ipv4Addr> {
    let mut servers = Vec::new();
    for line in resolv_conf.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            continue;
        }
        let Some(Ok(addr)) = words.next().map(str::parse::<Ipv4Addr>) else {
            continue;
        };
        if !addr.is_loopback() && !servers.contains(&addr) {
            servers.push(addr);
        }
    }
    servers
}

fn check_prefix(field: &'static str, value: &str) -> Result<(), ConfigError> {
    let ok = !value.is_empty()
        && value.len() <= MAX_PREFIX_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::BadPrefix {
            field,
            value: value.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_gardens_and_valid() {
        let config = NetConfig::default();
        assert_eq!(config.pool.to_string(), DEFAULT_POOL);
        assert_eq!(config.port_pool_start, 61001);
        assert_eq!(config.port_pool_size, 4534);
        assert!(!config.allow_host_access);
        config.validate().expect("defaults are valid");
    }

    #[test]
    fn bad_values_are_refused_with_the_field_named() {
        let bad = |f: fn(&mut NetConfig)| {
            let mut config = NetConfig::default();
            f(&mut config);
            config.validate().expect_err("must be refused").to_string()
        };
        assert!(bad(|c| c.bridge_prefix = "GB*".into()).contains("bridge_prefix"));
        assert!(bad(|c| c.veth_prefix = "toolongx".into()).contains("veth_prefix"));
        assert!(bad(|c| c.veth_prefix = "gb-".into()).contains("overlap"));
        assert!(bad(|c| c.table = "a b".into()).contains("table"));
        assert!(bad(|c| c.pool = "10.0.0.0/31".parse().expect("cidr")).contains("/30"));
        assert!(bad(|c| c.mtu = 9000).contains("mtu"));
        assert!(bad(|c| c.port_pool_start = 65000).contains("port_pool"));
    }

    #[test]
    fn resolv_conf_loopback_servers_are_left_out() {
        let text = "# x\nnameserver 127.0.0.53\nnameserver 10.1.2.3\nnameserver ::1\n\
                    search example\nnameserver 10.1.2.3\nnameserver 8.8.8.8 # c\n";
        assert_eq!(
            host_name_servers(text),
            vec![Ipv4Addr::new(10, 1, 2, 3), Ipv4Addr::new(8, 8, 8, 8)]
        );
    }

    #[test]
    fn configured_servers_win_and_additional_ones_follow() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("resolv.conf");
        std::fs::write(&path, "nameserver 10.9.9.9\n").expect("write");
        let mut config = NetConfig {
            additional_dns_servers: vec![Ipv4Addr::new(1, 1, 1, 1)],
            ..NetConfig::default()
        };
        assert_eq!(
            config.effective_dns_servers(&path),
            vec![Ipv4Addr::new(10, 9, 9, 9), Ipv4Addr::new(1, 1, 1, 1)]
        );
        config.dns_servers = vec![Ipv4Addr::new(10, 0, 0, 2)];
        assert_eq!(
            config.effective_dns_servers(&path),
            vec![Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(1, 1, 1, 1)]
        );
    }

    #[test]
    fn toml_section_parses_with_defaults_for_missing_keys() {
        let config: NetConfig =
            toml::from_str("pool = \"10.10.0.0/24\"\nallow_host_access = true\n").expect("toml");
        assert_eq!(config.pool.to_string(), "10.10.0.0/24");
        assert!(config.allow_host_access);
        assert_eq!(config.table, "garden");
        assert!(toml::from_str::<NetConfig>("pool = \"10.10.0.0/24\"\nbogus = 1\n").is_err());
    }
}
