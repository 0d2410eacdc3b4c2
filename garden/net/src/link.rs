//! Links, addresses and routes over rtnetlink: the bridge of a subnet, the
//! veth pair of a container (its peer created directly inside the
//! container's namespace as `eth0`), the container side's address and
//! default route, byte counters, and per-interface sysctls.

use std::fs::File;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;

use futures_util::TryStreamExt;
use rtnetlink::packet_route::link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkMessage};
use rtnetlink::{
    Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder,
};

/// The container side's name.
pub const CONTAINER_IFACE: &str = "eth0";

const ENODEV: i32 = 19;
const EEXIST: i32 = 17;
const ENOENT: i32 = 2;

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// A netlink request failed.
    #[error("{op} {name}: {source}")]
    Netlink {
        /// What was being done.
        op: &'static str,
        /// The interface.
        name: String,
        /// The kernel's answer.
        source: Box<rtnetlink::Error>,
    },
    /// The netlink socket could not be opened.
    #[error("cannot open a netlink socket: {0}")]
    Connect(io::Error),
    /// A link that should exist does not.
    #[error("{op}: no interface {name}")]
    Missing {
        /// What was being done.
        op: &'static str,
        /// The interface.
        name: String,
    },
    /// The bandwidth limit could not be applied.
    #[error(transparent)]
    Shaping(#[from] crate::shaping::ShapingError),
    /// Writing a sysctl failed.
    #[error("sysctl {path}: {source}")]
    Sysctl {
        /// The /proc/sys file.
        path: String,
        /// Why.
        source: io::Error,
    },
}

fn errno(err: &rtnetlink::Error) -> Option<i32> {
    match err {
        rtnetlink::Error::NetlinkError(msg) => Some(msg.raw_code().abs()),
        _ => None,
    }
}

fn netlink<'a>(op: &'static str, name: &'a str) -> impl FnOnce(rtnetlink::Error) -> LinkError + 'a {
    move |source| LinkError::Netlink {
        op,
        name: name.to_owned(),
        source: Box::new(source),
    }
}

/// A netlink route connection; the host's one lives as long as the `Network`.
#[derive(Clone, Debug)]
pub struct Links {
    handle: Handle,
}

impl Links {
    /// A connection in the caller's namespace (must run on a tokio runtime).
    pub fn connect() -> Result<Self, LinkError> {
        let (connection, handle, _) = rtnetlink::new_connection().map_err(LinkError::Connect)?;
        tokio::spawn(connection);
        Ok(Self { handle })
    }

    /// A connection from a handle opened elsewhere (inside a container).
    pub fn from_handle(handle: Handle) -> Self {
        Self { handle }
    }

    /// The link called `name`, if any.
    pub async fn get(&self, name: &str) -> Result<Option<LinkMessage>, LinkError> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_owned())
            .execute();
        match links.try_next().await {
            Ok(link) => Ok(link),
            Err(err) if errno(&err) == Some(ENODEV) => Ok(None),
            Err(source) => Err(netlink("get link", name)(source)),
        }
    }

    /// The index of the link called `name`, if any.
    pub async fn index_of(&self, name: &str) -> Result<Option<u32>, LinkError> {
        Ok(self.get(name).await?.map(|link| link.header.index))
    }

    /// Creates the bridge `name` with `gateway/prefix_len`, up, forwarding
    /// and `route_localnet` on (NetIn from the host's 127.0.0.1); adopts it
    /// when it exists. Returns its index.
    pub async fn ensure_bridge(
        &self,
        name: &str,
        gateway: Ipv4Addr,
        prefix_len: u8,
    ) -> Result<u32, LinkError> {
        let index = match self.index_of(name).await? {
            Some(index) => index,
            None => {
                // A fixed address: otherwise the bridge takes its lowest
                // port's, and it changes when that container leaves,
                // leaving stale ARP entries in its neighbours.
                let [a, b, c, d] = gateway.octets();
                let mac = vec![0x0a, 0x58, a, b, c, d];
                let created = self
                    .handle
                    .link()
                    .add(LinkBridge::new(name).address(mac).up().build())
                    .execute()
                    .await;
                match created {
                    Err(err) if errno(&err) != Some(EEXIST) => {
                        return Err(netlink("create bridge", name)(err));
                    }
                    _ => {}
                }
                self.index_of(name)
                    .await?
                    .ok_or_else(|| LinkError::Missing {
                        op: "create bridge",
                        name: name.to_owned(),
                    })?
            }
        };
        let added = self
            .handle
            .address()
            .add(index, gateway.into(), prefix_len)
            .execute()
            .await;
        match added {
            Err(err) if errno(&err) != Some(EEXIST) => {
                return Err(netlink("address bridge", name)(err))
            }
            _ => {}
        }
        let up = LinkUnspec::new_with_index(index).up().build();
        self.handle
            .link()
            .set(up)
            .execute()
            .await
            .map_err(netlink("set up", name))?;
        set_iface_sysctl(name, "forwarding", "1")?;
        set_iface_sysctl(name, "route_localnet", "1")?;
        Ok(index)
    }

    /// Creates the veth pair `host_name` (on the bridge, up) and `eth0`
    /// inside the namespace `ns`.
    pub async fn add_veth(
        &self,
        host_name: &str,
        bridge: u32,
        mtu: u32,
        ns: &File,
    ) -> Result<(), LinkError> {
        let peer = LinkMessageBuilder::<LinkUnspec>::new()
            .name(CONTAINER_IFACE)
            .mtu(mtu)
            .setns_by_fd(ns.as_raw_fd())
            .build();
        let message = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
            .name(host_name)
            .mtu(mtu)
            .controller(bridge)
            .up()
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
            .build();
        self.handle
            .link()
            .add(message)
            .execute()
            .await
            .map_err(netlink("create veth", host_name))
    }

    /// Deletes the link `name`; false when there was none.
    pub async fn delete(&self, name: &str) -> Result<bool, LinkError> {
        let Some(index) = self.index_of(name).await? else {
            return Ok(false);
        };
        match self.handle.link().del(index).execute().await {
            Ok(()) => Ok(true),
            Err(err) if errno(&err) == Some(ENODEV) => Ok(false),
            Err(source) => Err(LinkError::Netlink {
                op: "delete link",
                name: name.to_owned(),
                source: Box::new(source),
            }),
        }
    }

    /// Gives the link `name` a tbf root queue discipline (see `shaping`).
    pub async fn set_tbf(
        &self,
        name: &str,
        limits: &garden_api::types::BandwidthLimits,
    ) -> Result<(), LinkError> {
        let index = self
            .index_of(name)
            .await?
            .ok_or_else(|| LinkError::Missing {
                op: "limit bandwidth",
                name: name.to_owned(),
            })?;
        crate::shaping::set_tbf(&self.handle, index, limits)
            .await
            .map_err(LinkError::Shaping)
    }

    /// Received and sent bytes of the link `name`.
    pub async fn byte_counts(&self, name: &str) -> Result<(u64, u64), LinkError> {
        let link = self.get(name).await?.ok_or_else(|| LinkError::Missing {
            op: "read counters",
            name: name.to_owned(),
        })?;
        let counts = link.attributes.iter().find_map(|attr| match attr {
            LinkAttribute::Stats64(stats) => Some((stats.rx_bytes, stats.tx_bytes)),
            _ => None,
        });
        Ok(counts.unwrap_or_default())
    }

    /// Names of every link starting with `prefix`.
    pub async fn names_with_prefix(&self, prefix: &str) -> Result<Vec<String>, LinkError> {
        let mut links = self.handle.link().get().execute();
        let mut names = Vec::new();
        while let Some(link) = links
            .try_next()
            .await
            .map_err(netlink("list links", prefix))?
        {
            let name = link.attributes.iter().find_map(|attr| match attr {
                LinkAttribute::IfName(name) => Some(name.clone()),
                _ => None,
            });
            if let Some(name) = name.filter(|n| n.starts_with(prefix)) {
                names.push(name);
            }
        }
        Ok(names)
    }

    /// Inside a container: `eth0` gets `ip/prefix_len` and goes up, `lo`
    /// goes up, and the default route points at `gateway`.
    pub async fn configure_container(
        &self,
        ip: Ipv4Addr,
        prefix_len: u8,
        gateway: Ipv4Addr,
    ) -> Result<(), LinkError> {
        let eth0 = self
            .index_of(CONTAINER_IFACE)
            .await?
            .ok_or_else(|| LinkError::Missing {
                op: "configure container",
                name: CONTAINER_IFACE.into(),
            })?;
        let lo = self
            .index_of("lo")
            .await?
            .ok_or_else(|| LinkError::Missing {
                op: "configure container",
                name: "lo".into(),
            })?;
        let added = self
            .handle
            .address()
            .add(eth0, ip.into(), prefix_len)
            .execute()
            .await;
        match added {
            Err(err) if errno(&err) != Some(EEXIST) => {
                return Err(netlink("address", CONTAINER_IFACE)(err));
            }
            _ => {}
        }
        for (index, name) in [(eth0, CONTAINER_IFACE), (lo, "lo")] {
            let up = LinkUnspec::new_with_index(index).up().build();
            self.handle
                .link()
                .set(up)
                .execute()
                .await
                .map_err(netlink("set up", name))?;
        }
        let route = RouteMessageBuilder::<Ipv4Addr>::new()
            .gateway(gateway)
            .output_interface(eth0)
            .build();
        match self.handle.route().add(route).execute().await {
            Err(err) if errno(&err) != Some(EEXIST) => {
                Err(netlink("default route", CONTAINER_IFACE)(err))
            }
            _ => Ok(()),
        }
    }

    /// The first IPv4 default route's interface index and preferred source.
    pub async fn default_route(&self) -> Result<Option<(u32, Option<Ipv4Addr>)>, LinkError> {
        use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute};
        let request = RouteMessageBuilder::<Ipv4Addr>::new().build();
        let mut routes = self.handle.route().get(request).execute();
        while let Some(route) = routes
            .try_next()
            .await
            .map_err(netlink("list routes", "default"))?
        {
            if route.header.destination_prefix_length != 0 {
                continue;
            }
            let mut oif = None;
            let mut source = None;
            for attr in &route.attributes {
                match attr {
                    RouteAttribute::Oif(index) => oif = Some(*index),
                    RouteAttribute::PrefSource(RouteAddress::Inet(addr)) => source = Some(*addr),
                    _ => {}
                }
            }
            if let Some(oif) = oif {
                return Ok(Some((oif, source)));
            }
        }
        Ok(None)
    }

    /// The MTU and first IPv4 address of the link with `index`.
    pub async fn mtu_and_address(
        &self,
        index: u32,
    ) -> Result<(Option<u32>, Option<Ipv4Addr>), LinkError> {
        use rtnetlink::packet_route::address::AddressAttribute;
        let mut links = self.handle.link().get().match_index(index).execute();
        let link = links
            .try_next()
            .await
            .map_err(netlink("get link", "default route"))?;
        let mtu = link.and_then(|l| {
            l.attributes.iter().find_map(|a| match a {
                LinkAttribute::Mtu(mtu) => Some(*mtu),
                _ => None,
            })
        });
        let mut addresses = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        while let Some(msg) = addresses
            .try_next()
            .await
            .map_err(netlink("list addresses", "default route"))?
        {
            for attr in &msg.attributes {
                if let AddressAttribute::Address(std::net::IpAddr::V4(addr)) = attr {
                    return Ok((mtu, Some(*addr)));
                }
            }
        }
        Ok((mtu, None))
    }
}

/// Writes `net.ipv4.conf.<iface>.<key>`; a vanished interface is not an error.
pub fn set_iface_sysctl(iface: &str, key: &str, value: &str) -> Result<(), LinkError> {
    let path = format!("/proc/sys/net/ipv4/conf/{iface}/{key}");
    match std::fs::write(&path, value) {
        Err(err) if err.raw_os_error() != Some(ENOENT) => {
            Err(LinkError::Sysctl { path, source: err })
        }
        _ => Ok(()),
    }
}

/// Writes `net.ipv4.ip_forward=1` (production only; tests must not).
pub fn enable_global_forwarding() -> Result<(), LinkError> {
    let path = "/proc/sys/net/ipv4/ip_forward".to_owned();
    std::fs::write(&path, "1").map_err(|source| LinkError::Sysctl { path, source })
}
