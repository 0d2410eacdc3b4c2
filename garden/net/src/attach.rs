//! The per-container operations: attach, NetIn, NetOut, detach.
//!
//! Each first changes the books and the state file (under the `Network`'s
//! lock, briefly), then the kernel (holding only the container's own lock,
//! and for bridges the subnet's), and undoes the books when the kernel
//! refuses. A record is written before any link exists, so a crash in the
//! middle leaves something `detach` or `restore` can clean up.

use std::sync::Arc;

use garden_api::types::{BandwidthLimits, NetIn, NetOutRule, PortMapping};

use crate::alloc::NetworkRequest;
use crate::netns::{self, Netns};
use crate::network::{lock, Attachment, Entry, Inner, NetError, Network};
use crate::nft;
use crate::rules::{self, CheckedRule};
use crate::state::Record;

/// What a container asks for at creation (the spec's `network`, `netin`
/// and `netout_rules`), applied with its network in one nft transaction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AttachRequest {
    /// Garden's spec `network`: empty, a subnet, or an address with prefix.
    pub network: String,
    /// Port mappings to make right away.
    pub net_in: Vec<NetIn>,
    /// NetOut rules to apply right away.
    pub net_out: Vec<NetOutRule>,
    /// Bandwidth limits for both directions (zero: none; see `shaping`).
    pub bandwidth: BandwidthLimits,
}

fn check_rules(handle: &str, given: &[NetOutRule]) -> Result<Vec<CheckedRule>, NetError> {
    given
        .iter()
        .enumerate()
        .map(|(i, r)| rules::check(i, r))
        .collect::<Result<_, _>>()
        .map_err(|source| NetError::Rule {
            handle: handle.to_owned(),
            source,
        })
}

fn port_number(handle: &str, port: u32) -> Result<u16, NetError> {
    u16::try_from(port).map_err(|_| NetError::BadPort {
        handle: handle.to_owned(),
        port,
    })
}

impl Network {
    /// Gives the container `handle`, whose network namespace is `netns`, its
    /// network: an address, the bridge of its subnet, a veth pair with `eth0`
    /// inside (address, default route, `lo` up), its nft chain, and the
    /// request's NetIn mappings and NetOut rules. On failure everything made
    /// so far is removed again.
    pub async fn attach(
        &self,
        handle: &str,
        netns: &Netns,
        request: &AttachRequest,
    ) -> Result<Attachment, NetError> {
        let err_handle = || handle.to_owned();
        let network =
            NetworkRequest::parse(&request.network).map_err(|source| NetError::Alloc {
                handle: err_handle(),
                source,
            })?;
        let rules = check_rules(handle, &request.net_out)?;
        crate::shaping::check(&request.bandwidth, self.mtu).map_err(|source| {
            NetError::Bandwidth {
                handle: err_handle(),
                source,
            }
        })?;
        let ns_file = netns.open().map_err(|source| NetError::Netns {
            handle: err_handle(),
            source,
        })?;
        let busy = Arc::new(tokio::sync::Mutex::new(()));
        let _busy = busy.clone().lock_owned().await;
        let record = self.book_attachment(handle, network, request, rules.clone(), busy)?;
        let made = self.make_attachment(&record, &rules, &ns_file, netns).await;
        if let Err(err) = made {
            tracing::warn!(%handle, %err, "attach failed, removing what was made");
            if let Err(cleanup) = self.undo_attachment(handle).await {
                tracing::warn!(%handle, %cleanup, "cleaning up a failed attach failed");
            }
            self.settle().await;
            return Err(err);
        }
        tracing::info!(%handle, ip = %record.ip, subnet = %record.subnet, "network attached");
        Ok(self.attachment_of(&record))
    }

    /// Allocates address and ports, stores the record and the entry.
    fn book_attachment(
        &self,
        handle: &str,
        network: NetworkRequest,
        request: &AttachRequest,
        rules: Vec<CheckedRule>,
        busy: Arc<tokio::sync::Mutex<()>>,
    ) -> Result<Record, NetError> {
        let alloc_err = |source| NetError::Alloc {
            handle: handle.to_owned(),
            source,
        };
        let mut inner = self.lock();
        if inner.entries.contains_key(handle) {
            return Err(NetError::AlreadyAttached(handle.to_owned()));
        }
        let lease = inner.ips.allocate(network).map_err(alloc_err)?;
        inner.idle_bridges.remove(&self.bridge_name(lease.subnet));
        let mut record = Record {
            handle: handle.to_owned(),
            subnet: lease.subnet,
            ip: lease.ip,
            gateway: lease.gateway,
            mtu: self.mtu,
            net_in: Vec::new(),
            net_out: request.net_out.clone(),
            bandwidth: request.bandwidth,
        };
        for wanted in &request.net_in {
            let mapping = port_number(handle, wanted.host_port)
                .and_then(|host| port_number(handle, wanted.container_port).map(|c| (host, c)))
                .and_then(|(host, container)| {
                    let host = if host == 0 {
                        inner.ports.acquire()
                    } else {
                        inner.ports.claim(host).map(|()| host)
                    };
                    let host = host.map_err(alloc_err)?;
                    let container = if container == 0 { host } else { container };
                    Ok(PortMapping {
                        host_port: u32::from(host),
                        container_port: u32::from(container),
                    })
                });
            match mapping {
                Ok(mapping) => record.net_in.push(mapping),
                Err(err) => {
                    release_books(&mut inner, &record);
                    return Err(err);
                }
            }
        }
        if let Err(err) = self.state.save(&record) {
            release_books(&mut inner, &record);
            return Err(err.into());
        }
        let entry = Entry {
            record: record.clone(),
            rules,
            busy,
        };
        inner.entries.insert(handle.to_owned(), entry);
        Ok(record)
    }

    async fn make_attachment(
        &self,
        record: &Record,
        rules: &[CheckedRule],
        ns_file: &std::fs::File,
        netns: &Netns,
    ) -> Result<(), NetError> {
        let handle = record.handle.as_str();
        let link_err = |source| NetError::Link {
            handle: handle.to_owned(),
            source,
        };
        let started = std::time::Instant::now();
        let veth_made = {
            let subnet_lock = self.subnet_lock(record.subnet);
            let _subnet = subnet_lock.lock().await;
            let bridge = self
                .links
                .ensure_bridge(
                    &self.bridge_name(record.subnet),
                    record.gateway,
                    record.subnet.prefix_len(),
                )
                .await
                .map_err(link_err)?;
            self.links
                .add_veth(&self.veth_name(record.ip), bridge, record.mtu, ns_file)
                .await
                .map_err(link_err)?;
            std::time::Instant::now()
        };
        let inside = netns::connect_in(ns_file, &netns.path())
            .await
            .map_err(|source| NetError::Netns {
                handle: handle.to_owned(),
                source,
            })?;
        let inside = crate::link::Links::from_handle(inside);
        inside
            .configure_container(record.ip, record.subnet.prefix_len(), record.gateway)
            .await
            .map_err(link_err)?;
        if record.bandwidth != BandwidthLimits::default() {
            let host_side = self.veth_name(record.ip);
            self.links
                .set_tbf(&host_side, &record.bandwidth)
                .await
                .map_err(link_err)?;
            inside
                .set_tbf(crate::link::CONTAINER_IFACE, &record.bandwidth)
                .await
                .map_err(link_err)?;
        }
        self.sync_link_states(record).await;
        let inside_done = std::time::Instant::now();
        let prefix = rules::log_prefix(handle);
        let objects = self
            .table
            .container_objects(&self.rules_of(record, rules, &prefix));
        nft::apply("attach", objects)
            .await
            .map_err(|source| NetError::Nft {
                handle: handle.to_owned(),
                source,
            })?;
        let ms =
            |from: std::time::Instant, to: std::time::Instant| (to - from).as_secs_f64() * 1000.0;
        let now = std::time::Instant::now();
        tracing::debug!(
            %handle,
            links_ms = ms(started, veth_made),
            inside_ms = ms(veth_made, inside_done),
            nft_ms = ms(inside_done, now),
            "attach phases"
        );
        Ok(())
    }

    /// With eth0 up, the host veth gets its carrier, which enables its
    /// bridge port, which gives the bridge its carrier. The kernel hands
    /// these events out from rate-limited work, and a new bridge passes
    /// nothing until its event is handled (up to a second): handle the
    /// veth's, then the bridge's, now.
    async fn sync_link_states(&self, record: &Record) {
        let handle = &record.handle;
        let names = [self.veth_name(record.ip), self.bridge_name(record.subnet)];
        let synced = tokio::task::spawn_blocking(move || {
            names
                .iter()
                .try_for_each(|name| crate::sys::sync_link_state(name).map(drop))
        })
        .await;
        if let Ok(Err(err)) = synced {
            tracing::debug!(%handle, %err, "syncing link state");
        }
    }

    /// Maps `host_port` (0: the next pool port) to `container_port` (0: the
    /// same as the host port), from every host address and from the host
    /// itself (TCP, like Garden). A host port mapped already is an error.
    pub async fn net_in(
        &self,
        handle: &str,
        host_port: u32,
        container_port: u32,
    ) -> Result<PortMapping, NetError> {
        let host = port_number(handle, host_port)?;
        let container = port_number(handle, container_port)?;
        let busy = self.busy_lock(handle)?;
        let _busy = busy.lock().await;
        let alloc_err = |source| NetError::Alloc {
            handle: handle.to_owned(),
            source,
        };
        let (ip, mapping) = {
            let mut inner = self.lock();
            let inner = &mut *inner;
            let entry = inner
                .entries
                .get_mut(handle)
                .ok_or_else(|| NetError::NotAttached(handle.to_owned()))?;
            let host = if host == 0 {
                inner.ports.acquire()
            } else {
                inner.ports.claim(host).map(|()| host)
            };
            let host = host.map_err(alloc_err)?;
            let container = if container == 0 { host } else { container };
            let mapping = PortMapping {
                host_port: u32::from(host),
                container_port: u32::from(container),
            };
            entry.record.net_in.push(mapping);
            if let Err(err) = self.state.save(&entry.record) {
                entry.record.net_in.pop();
                inner.ports.release(host);
                return Err(err.into());
            }
            (entry.record.ip, mapping)
        };
        let applied = nft::apply("net in", self.table.net_in_objects(ip, &[mapping])).await;
        if let Err(source) = applied {
            self.forget_mapping(handle, mapping);
            return Err(NetError::Nft {
                handle: handle.to_owned(),
                source,
            });
        }
        tracing::info!(%handle, host_port = mapping.host_port, container_port = mapping.container_port, "net in");
        Ok(mapping)
    }

    fn forget_mapping(&self, handle: &str, mapping: PortMapping) {
        let mut inner = self.lock();
        let inner = &mut *inner;
        if let Some(entry) = inner.entries.get_mut(handle) {
            entry.record.net_in.retain(|m| *m != mapping);
            let _ = self.state.save(&entry.record);
        }
        inner
            .ports
            .release(u16::try_from(mapping.host_port).unwrap_or_default());
    }

    /// Adds Garden NetOut rules to the container, all in one transaction;
    /// an invalid rule refuses the whole request.
    pub async fn net_out(&self, handle: &str, given: &[NetOutRule]) -> Result<(), NetError> {
        let checked = check_rules(handle, given)?;
        let busy = self.busy_lock(handle)?;
        let _busy = busy.lock().await;
        let chain = {
            let mut inner = self.lock();
            let entry = inner
                .entries
                .get_mut(handle)
                .ok_or_else(|| NetError::NotAttached(handle.to_owned()))?;
            let before = entry.record.net_out.len();
            entry.record.net_out.extend_from_slice(given);
            if let Err(err) = self.state.save(&entry.record) {
                entry.record.net_out.truncate(before);
                return Err(err.into());
            }
            entry.rules.extend_from_slice(&checked);
            nft::chain_name(entry.record.ip)
        };
        let objects = self
            .table
            .net_out_objects(&chain, &checked, &rules::log_prefix(handle));
        if let Err(source) = nft::apply("net out", objects).await {
            let mut inner = self.lock();
            if let Some(entry) = inner.entries.get_mut(handle) {
                let keep = entry.record.net_out.len() - given.len();
                entry.record.net_out.truncate(keep);
                entry.rules.truncate(keep);
                let _ = self.state.save(&entry.record);
            }
            return Err(NetError::Nft {
                handle: handle.to_owned(),
                source,
            });
        }
        tracing::info!(%handle, rules = given.len(), "net out");
        Ok(())
    }

    /// Removes the container's network: nft chain and map elements, veth
    /// (and the bridge when its subnet is empty), address, ports, record.
    /// Unknown handles and half-made networks are fine.
    pub async fn detach(&self, handle: &str) -> Result<(), NetError> {
        let Ok(busy) = self.busy_lock(handle) else {
            return Ok(());
        };
        let _busy = busy.lock().await;
        self.undo_attachment(handle).await?;
        tracing::info!(%handle, "network detached");
        Ok(())
    }

    /// Detach without taking the container's lock (the caller holds it).
    /// The nft part is done before this returns: the container is cut off
    /// and its host ports are free. Deleting links waits for the kernel's
    /// RCU grace periods (20-50 ms per link here), so that runs in the
    /// background; the address stays booked until its links are gone, and
    /// the subnet's lock keeps a new container of that subnet waiting for
    /// it. [`Network::settle`] waits for these removals.
    pub(crate) async fn undo_attachment(&self, handle: &str) -> Result<(), NetError> {
        let found = self
            .lock()
            .entries
            .get(handle)
            .map(|e| (e.record.clone(), e.rules.clone()));
        let Some((record, rules)) = found else {
            return Ok(());
        };
        let prefix = rules::log_prefix(handle);
        let objects = self
            .table
            .remove_container_objects(&self.rules_of(&record, &rules, &prefix));
        nft::apply("detach", objects)
            .await
            .map_err(|source| NetError::Nft {
                handle: handle.to_owned(),
                source,
            })?;
        {
            let mut inner = self.lock();
            inner.entries.remove(handle);
            for mapping in &record.net_in {
                inner
                    .ports
                    .release(u16::try_from(mapping.host_port).unwrap_or_default());
            }
        }
        let removal = LinkRemoval {
            links: self.links.clone(),
            state: self.state.clone(),
            inner: self.inner.clone(),
            subnet_lock: self.subnet_lock(record.subnet),
            veth: self.veth_name(record.ip),
            bridge: self.bridge_name(record.subnet),
            keep_idle_bridge: self.config.idle_bridge_seconds > 0,
            record,
        };
        let task = tokio::spawn(removal.run());
        let mut removals = lock(&self.removals);
        removals.retain(|t| !t.is_finished());
        removals.push(task);
        Ok(())
    }

    fn busy_lock(&self, handle: &str) -> Result<Arc<tokio::sync::Mutex<()>>, NetError> {
        let inner = self.lock();
        let entry = inner
            .entries
            .get(handle)
            .ok_or_else(|| NetError::NotAttached(handle.to_owned()))?;
        Ok(entry.busy.clone())
    }
}

/// Deleting a detached container's links, then freeing its address.
struct LinkRemoval {
    links: crate::link::Links,
    state: crate::state::StateDir,
    inner: Arc<std::sync::Mutex<Inner>>,
    subnet_lock: Arc<tokio::sync::Mutex<()>>,
    veth: String,
    bridge: String,
    keep_idle_bridge: bool,
    record: Record,
}

impl LinkRemoval {
    async fn run(self) {
        let handle = &self.record.handle;
        let _subnet = self.subnet_lock.lock().await;
        if let Err(err) = self.links.delete(&self.veth).await {
            // The address stays booked: a new container must not get a
            // name that still exists.
            tracing::error!(%handle, %err, "deleting the veth failed; its address stays in use");
            return;
        }
        let keep_bridge = {
            let mut inner = lock(&self.inner);
            let subnet_empty = inner.ips.release(self.record.subnet, self.record.ip);
            if subnet_empty && self.keep_idle_bridge {
                let since = (std::time::Instant::now(), self.record.subnet.network());
                inner.idle_bridges.insert(self.bridge.clone(), since);
            }
            !subnet_empty || self.keep_idle_bridge
        };
        if !keep_bridge {
            if let Err(err) = self.links.delete(&self.bridge).await {
                tracing::error!(%handle, %err, bridge = %self.bridge, "deleting the bridge failed");
            }
        }
        if let Err(err) = self.state.remove(self.record.ip) {
            tracing::error!(%handle, %err, "removing the network record failed");
        }
    }
}

/// Gives back a record's address and ports; true when its subnet is empty.
fn release_books(inner: &mut Inner, record: &Record) -> bool {
    for mapping in &record.net_in {
        inner
            .ports
            .release(u16::try_from(mapping.host_port).unwrap_or_default());
    }
    inner.ips.release(record.subnet, record.ip)
}
