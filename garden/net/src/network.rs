//! [`Network`]: the one object the daemon holds. Opening it (re)builds the
//! nft table from the state directory and re-checks the bridges; the
//! per-container operations live in [`crate::attach`].

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use garden_api::types::{BandwidthLimits, NetOutRule, PortMapping};
use ipnet::Ipv4Net;
use serde::Serialize;

use crate::alloc::{AllocError, IpAllocator, PortPool};
use crate::config::{ConfigError, NetConfig, MAX_MTU};
use crate::link::{self, LinkError, Links};
use crate::netns::NetnsError;
use crate::nft::{self, ContainerRules, NftError, TableSpec};
use crate::rules::{self, CheckedRule, RuleError};
use crate::state::{Record, StateDir, StateError};

/// Errors of the public operations.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The state directory could not be used.
    #[error("network state: {0}")]
    State(#[from] StateError),
    /// Setting up the host side at open failed.
    #[error("network setup: {0}")]
    Host(#[from] LinkError),
    /// Building garden's nft table at open failed.
    #[error("network setup: {0}")]
    Table(#[from] NftError),
    /// The handle has a network already.
    #[error("container {0}: already has a network")]
    AlreadyAttached(String),
    /// The handle has no network.
    #[error("container {0}: has no network")]
    NotAttached(String),
    /// A port number above 65535.
    #[error("container {handle}: port {port} is not a TCP port")]
    BadPort {
        /// The container.
        handle: String,
        /// The value given.
        port: u32,
    },
    /// An address or port could not be handed out.
    #[error("container {handle}: {source}")]
    Alloc {
        /// The container.
        handle: String,
        /// Why.
        source: AllocError,
    },
    /// The bandwidth limits are unusable.
    #[error("container {handle}: {source}")]
    Bandwidth {
        /// The container.
        handle: String,
        /// Why.
        source: crate::shaping::ShapingError,
    },
    /// A NetOut rule is invalid.
    #[error("container {handle}: net out {source}")]
    Rule {
        /// The container.
        handle: String,
        /// Why.
        source: RuleError,
    },
    /// The container's namespace could not be used.
    #[error("container {handle}: {source}")]
    Netns {
        /// The container.
        handle: String,
        /// Why.
        source: NetnsError,
    },
    /// A link, address or route operation failed.
    #[error("container {handle}: {source}")]
    Link {
        /// The container.
        handle: String,
        /// Why.
        source: LinkError,
    },
    /// An nft transaction failed.
    #[error("container {handle}: {source}")]
    Nft {
        /// The container.
        handle: String,
        /// Why.
        source: NftError,
    },
}

/// A container's network, as [`Network::attach`] made it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Attachment {
    /// The container handle.
    pub handle: String,
    /// The container's address (Info's `ContainerIP`).
    pub ip: Ipv4Addr,
    /// The bridge's address, the container's default gateway (Info's `HostIP`).
    pub gateway: Ipv4Addr,
    /// The container's subnet.
    pub subnet: Ipv4Net,
    /// The bridge the host side is attached to.
    pub bridge: String,
    /// The host side of the veth pair.
    pub host_iface: String,
    /// The container side (`eth0`).
    pub container_iface: String,
    /// MTU of both veth ends.
    pub mtu: u32,
    /// NetIn mappings (Info's `MappedPorts`).
    pub mapped_ports: Vec<PortMapping>,
    /// NetOut rules in force.
    pub net_out: Vec<NetOutRule>,
    /// Bandwidth limits in force (zero: none).
    pub bandwidth: BandwidthLimits,
}

/// A container's traffic, seen from inside the container.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct NetStats {
    /// Bytes the container received.
    pub rx_bytes: u64,
    /// Bytes the container sent.
    pub tx_bytes: u64,
}

/// What is held right now (the leak test and metrics read it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// Containers with a network.
    pub attachments: usize,
    /// Addresses handed out.
    pub addresses: usize,
    /// Host ports mapped.
    pub ports: usize,
    /// Records in the state directory.
    pub state_files: usize,
}

/// What [`Network::open`] found while restoring.
#[derive(Debug, Default)]
pub struct OpenReport {
    /// Containers restored from the state directory.
    pub restored: usize,
    /// Records that could not be used (unreadable, or clashing with another).
    pub skipped: Vec<String>,
    /// Restored containers whose host-side veth is gone (the container's
    /// namespace died while the daemon was down): `restore` or `detach` them.
    pub missing_links: Vec<String>,
}

pub(crate) struct Entry {
    pub(crate) record: Record,
    pub(crate) rules: Vec<CheckedRule>,
    /// Serialises operations on one container.
    pub(crate) busy: Arc<tokio::sync::Mutex<()>>,
}

pub(crate) struct Inner {
    pub(crate) ips: IpAllocator,
    pub(crate) ports: PortPool,
    pub(crate) entries: HashMap<String, Entry>,
    /// Bridges without containers, by name: since when, and their network
    /// address (see `NetConfig::idle_bridge_seconds`).
    pub(crate) idle_bridges: HashMap<String, (Instant, Ipv4Addr)>,
}

/// Container networking on this host: one nft table, a bridge per subnet,
/// a veth pair per container. Cheap to share (`Arc<Network>`); every
/// method takes `&self` and may run concurrently for different handles.
pub struct Network {
    pub(crate) config: NetConfig,
    pub(crate) table: TableSpec,
    pub(crate) links: Links,
    pub(crate) state: StateDir,
    pub(crate) mtu: u32,
    pub(crate) dns_servers: Vec<Ipv4Addr>,
    pub(crate) external_ip: Option<Ipv4Addr>,
    pub(crate) inner: Arc<Mutex<Inner>>,
    /// Link removals still running in the background (see `detach`).
    pub(crate) removals: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Serialises bridge creation and removal per subnet.
    pub(crate) subnet_locks: Mutex<HashMap<Ipv4Net, Arc<tokio::sync::Mutex<()>>>>,
}

impl Network {
    /// Validates `config`, builds garden's nft table in one transaction
    /// from the records in `state_dir` (replacing whatever the table held),
    /// and re-creates missing bridges of restored containers. Must be
    /// called on a tokio runtime.
    pub async fn open(config: NetConfig, state_dir: &Path) -> Result<(Self, OpenReport), NetError> {
        config.validate()?;
        let links = Links::connect()?;
        if config.ip_forward {
            link::enable_global_forwarding()?;
        }
        let (default_mtu, default_ip) = host_defaults(&links).await;
        let mtu = if config.mtu == 0 {
            default_mtu.unwrap_or(MAX_MTU).min(MAX_MTU)
        } else {
            config.mtu
        };
        let table = TableSpec {
            name: config.table.clone(),
            bridge_prefix: config.bridge_prefix.clone(),
            pool: config.pool.trunc(),
            allow_host_access: config.allow_host_access,
        };
        let state = StateDir::open(state_dir)?;
        let network = Self {
            dns_servers: config.effective_dns_servers(Path::new("/etc/resolv.conf")),
            external_ip: config.external_ip.or(default_ip),
            removals: Mutex::new(Vec::new()),
            inner: Arc::new(Mutex::new(Inner {
                ips: IpAllocator::new(config.pool),
                ports: PortPool::new(config.port_pool_start, config.port_pool_size),
                entries: HashMap::new(),
                idle_bridges: HashMap::new(),
            })),
            subnet_locks: Mutex::new(HashMap::new()),
            config,
            table,
            links,
            state,
            mtu,
        };
        let report = network.restore_state().await?;
        tracing::info!(
            table = %network.config.table,
            restored = report.restored,
            skipped = report.skipped.len(),
            missing_links = report.missing_links.len(),
            mtu = network.mtu,
            "network opened"
        );
        Ok((network, report))
    }

    async fn restore_state(&self) -> Result<OpenReport, NetError> {
        let (records, broken) = self.state.load_all()?;
        let mut report = OpenReport {
            skipped: broken.iter().map(ToString::to_string).collect(),
            ..OpenReport::default()
        };
        let mut batch = self.table.base_objects();
        let mut restored = Vec::new();
        {
            let mut inner = self.lock();
            for record in records {
                match adopt(&mut inner, &record) {
                    Ok(rules) => {
                        let prefix = rules::log_prefix(&record.handle);
                        batch.extend(
                            self.table
                                .container_objects(&self.rules_of(&record, &rules, &prefix)),
                        );
                        restored.push(record.clone());
                        let busy = Arc::default();
                        inner.entries.insert(
                            record.handle.clone(),
                            Entry {
                                record,
                                rules,
                                busy,
                            },
                        );
                    }
                    Err(why) => {
                        tracing::warn!(handle = %record.handle, ip = %record.ip, %why, "network record skipped");
                        report
                            .skipped
                            .push(format!("{} ({}): {why}", record.handle, record.ip));
                    }
                }
            }
        }
        nft::apply("open", batch).await?;
        for record in &restored {
            let lease = (record.subnet, record.gateway);
            self.links
                .ensure_bridge(
                    &self.bridge_name(lease.0),
                    lease.1,
                    record.subnet.prefix_len(),
                )
                .await?;
            if self
                .links
                .index_of(&self.veth_name(record.ip))
                .await?
                .is_none()
            {
                tracing::warn!(handle = %record.handle, "restored network has no veth");
                report.missing_links.push(record.handle.clone());
            }
        }
        report.restored = restored.len();
        self.adopt_orphans(&restored).await?;
        Ok(report)
    }

    /// Drops the networks of every handle not in `live` (containers that
    /// vanished while the daemon was down), waiting until their links are
    /// gone. Returns the handles dropped.
    pub async fn restore(&self, live: &[&str]) -> Vec<String> {
        let gone: Vec<String> = self
            .lock()
            .entries
            .keys()
            .filter(|h| !live.contains(&h.as_str()))
            .cloned()
            .collect();
        for handle in &gone {
            if let Err(err) = self.detach(handle).await {
                tracing::warn!(%handle, %err, "dropping a vanished container's network failed");
            }
        }
        self.settle().await;
        gone
    }

    /// The attachment of `handle`, if it has one.
    pub fn attachment(&self, handle: &str) -> Option<Attachment> {
        self.lock()
            .entries
            .get(handle)
            .map(|e| self.attachment_of(&e.record))
    }

    /// Handles with a network.
    pub fn handles(&self) -> Vec<String> {
        self.lock().entries.keys().cloned().collect()
    }

    /// The container's traffic from the host-side veth's counters (swapped:
    /// what the host side sent, the container received).
    pub async fn stats(&self, handle: &str) -> Result<NetStats, NetError> {
        let ip = self.lock().entries.get(handle).map(|e| e.record.ip);
        let ip = ip.ok_or_else(|| NetError::NotAttached(handle.to_owned()))?;
        let (host_rx, host_tx) =
            self.links
                .byte_counts(&self.veth_name(ip))
                .await
                .map_err(|source| NetError::Link {
                    handle: handle.to_owned(),
                    source,
                })?;
        Ok(NetStats {
            rx_bytes: host_tx,
            tx_bytes: host_rx,
        })
    }

    /// What is held now.
    pub fn usage(&self) -> Usage {
        let inner = self.lock();
        Usage {
            attachments: inner.entries.len(),
            addresses: inner.ips.addresses_in_use(),
            ports: inner.ports.in_use(),
            state_files: self.state.count().unwrap_or(0),
        }
    }

    /// Host interfaces with garden's bridge or veth prefix (the leak test
    /// counts them).
    pub async fn host_links(&self) -> Result<Vec<String>, NetError> {
        let mut names = self
            .links
            .names_with_prefix(&self.config.bridge_prefix)
            .await?;
        names.extend(
            self.links
                .names_with_prefix(&self.config.veth_prefix)
                .await?,
        );
        Ok(names)
    }

    /// The contents of a container's `/etc/hosts` (`hostname` is usually the handle).
    pub fn hosts_file(&self, handle: &str, hostname: &str) -> Option<String> {
        let ip = self.lock().entries.get(handle).map(|e| e.record.ip)?;
        Some(crate::files::hosts_file(ip, hostname))
    }

    /// The contents of every container's `/etc/resolv.conf`.
    pub fn resolv_conf(&self) -> String {
        crate::files::resolv_conf(&self.dns_servers)
    }

    /// The address reported as Info's `ExternalIP`.
    pub fn external_ip(&self) -> Option<Ipv4Addr> {
        self.external_ip
    }

    /// The MTU given to container interfaces.
    pub fn mtu(&self) -> u32 {
        self.mtu
    }

    /// The configuration in force.
    pub fn config(&self) -> &NetConfig {
        &self.config
    }

    /// Removes every container network and garden's nft table (tests, and
    /// hosts that stop running containers). The state directory is emptied.
    pub async fn teardown(&self) -> Result<(), NetError> {
        for handle in self.handles() {
            self.detach(&handle).await?;
        }
        self.settle().await;
        self.reap_idle_bridges(Duration::ZERO);
        self.settle().await;
        nft::apply("teardown", self.table.drop_table_objects()).await?;
        Ok(())
    }

    /// Waits until the links of detached containers are gone and their
    /// addresses are free again.
    pub async fn settle(&self) {
        loop {
            let pending: Vec<_> = lock(&self.removals).drain(..).collect();
            if pending.is_empty() {
                return;
            }
            for task in pending {
                let _ = task.await;
            }
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }

    pub(crate) fn subnet_lock(&self, subnet: Ipv4Net) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.subnet_locks).entry(subnet).or_default().clone()
    }

    pub(crate) fn bridge_name(&self, subnet: Ipv4Net) -> String {
        format!(
            "{}{:08x}",
            self.config.bridge_prefix,
            u32::from(subnet.network())
        )
    }

    pub(crate) fn veth_name(&self, ip: Ipv4Addr) -> String {
        format!("{}{:08x}", self.config.veth_prefix, u32::from(ip))
    }

    pub(crate) fn attachment_of(&self, record: &Record) -> Attachment {
        Attachment {
            handle: record.handle.clone(),
            ip: record.ip,
            gateway: record.gateway,
            subnet: record.subnet,
            bridge: self.bridge_name(record.subnet),
            host_iface: self.veth_name(record.ip),
            container_iface: link::CONTAINER_IFACE.to_owned(),
            mtu: record.mtu,
            mapped_ports: record.net_in.clone(),
            net_out: record.net_out.clone(),
            bandwidth: record.bandwidth,
        }
    }

    /// The nft view of a container.
    pub(crate) fn rules_of<'a>(
        &self,
        record: &'a Record,
        rules: &'a [CheckedRule],
        log_prefix: &'a str,
    ) -> ContainerRules<'a> {
        ContainerRules {
            chain: nft::chain_name(record.ip),
            bridge: self.bridge_name(record.subnet),
            ip: record.ip,
            subnet: record.subnet,
            net_in: &record.net_in,
            net_out: rules,
            log_prefix,
        }
    }
}

/// Locks a mutex, ignoring poisoning (the books stay consistent: every
/// change under the lock is a single step).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Puts a restored record's address, ports and rules back in the books.
fn adopt(inner: &mut Inner, record: &Record) -> Result<Vec<CheckedRule>, String> {
    if inner.entries.contains_key(&record.handle) {
        return Err("a second record for this handle".into());
    }
    let rules = record
        .net_out
        .iter()
        .enumerate()
        .map(|(i, r)| rules::check(i, r))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let lease = inner
        .ips
        .reserve(record.subnet, record.ip)
        .map_err(|e| e.to_string())?;
    if lease.gateway != record.gateway {
        inner.ips.release(record.subnet, record.ip);
        return Err(format!(
            "gateway {} is not {}",
            record.gateway, lease.gateway
        ));
    }
    let mut claimed = Vec::new();
    for mapping in &record.net_in {
        let claim = u16::try_from(mapping.host_port)
            .map_err(|_| format!("host port {}", mapping.host_port))
            .and_then(|port| {
                inner
                    .ports
                    .claim(port)
                    .map(|()| port)
                    .map_err(|e| e.to_string())
            });
        match claim {
            Ok(port) => claimed.push(port),
            Err(why) => {
                claimed.into_iter().for_each(|p| inner.ports.release(p));
                inner.ips.release(record.subnet, record.ip);
                return Err(why);
            }
        }
    }
    Ok(rules)
}

/// The MTU and address of the host's default-route interface, if any.
async fn host_defaults(links: &Links) -> (Option<u32>, Option<Ipv4Addr>) {
    let Ok(Some((index, source))) = links.default_route().await else {
        return (None, None);
    };
    match links.mtu_and_address(index).await {
        Ok((mtu, addr)) => (mtu, source.or(addr)),
        Err(_) => (None, source),
    }
}
