//! Pure bookkeeping of subnets, container addresses and NetIn host ports.
//! No I/O: [`crate::Network`] rebuilds these from its state files at open.
//!
//! Like Garden, a subnet's gateway (the bridge's address) is its last usable
//! address and containers take the free addresses from the first one up, so
//! a dynamic /30 `10.254.0.0/30` gives the container `10.254.0.1` and the
//! gateway `10.254.0.2`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// Errors of this module.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AllocError {
    /// The spec's `network` is neither an IPv4 address nor an IPv4 CIDR.
    #[error("network {0:?}: not an IPv4 address or CIDR (e.g. 10.254.1.0/29 or 10.254.1.5/29)")]
    BadSpec(String),
    /// A requested subnet smaller than a /30 has no room for gateway and container.
    #[error("subnet {0}: must be a /30 or larger")]
    SubnetTooSmall(Ipv4Net),
    /// Requested subnets must lie inside the configured pool.
    #[error("subnet {subnet} is outside the network pool {pool}")]
    OutsidePool {
        /// What was asked for.
        subnet: Ipv4Net,
        /// The configured pool.
        pool: Ipv4Net,
    },
    /// The subnet overlaps one already in use with another size.
    #[error("subnet {subnet} overlaps subnet {existing} already in use")]
    Overlap {
        /// What was asked for.
        subnet: Ipv4Net,
        /// The subnet in use.
        existing: Ipv4Net,
    },
    /// The static address is the network, gateway or broadcast address.
    #[error(
        "address {ip} is reserved in subnet {subnet} (network, gateway {gateway} or broadcast)"
    )]
    ReservedAddress {
        /// The address.
        ip: Ipv4Addr,
        /// Its subnet.
        subnet: Ipv4Net,
        /// The subnet's gateway.
        gateway: Ipv4Addr,
    },
    /// The static address is taken.
    #[error("address {0} is already in use")]
    AddressInUse(Ipv4Addr),
    /// No free /30 left in the pool.
    #[error("network pool {0} is exhausted")]
    PoolExhausted(Ipv4Net),
    /// No free address left in a shared subnet.
    #[error("subnet {0} has no free address")]
    SubnetFull(Ipv4Net),
    /// The NetIn host port is mapped already.
    #[error("host port {0} is already mapped")]
    PortInUse(u16),
    /// Every port of the NetIn pool is mapped.
    #[error("port pool {start}..={end} is exhausted")]
    PortsExhausted {
        /// First port of the pool.
        start: u16,
        /// Last port of the pool.
        end: u16,
    },
}

/// What a container spec's `network` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetworkRequest {
    /// Empty: the next free /30 of the pool.
    Dynamic,
    /// `10.254.1.0/29`: the next free address of this (maybe shared) subnet.
    Subnet(Ipv4Net),
    /// `10.254.1.5/29` (or `10.254.1.5`, meaning its /30): exactly this address.
    Static {
        /// The subnet.
        subnet: Ipv4Net,
        /// The address.
        ip: Ipv4Addr,
    },
}

impl NetworkRequest {
    /// Parses Garden's spec `network` value.
    pub fn parse(spec: &str) -> Result<Self, AllocError> {
        let spec = spec.trim();
        if spec.is_empty() {
            return Ok(Self::Dynamic);
        }
        let bad = || AllocError::BadSpec(spec.to_owned());
        let with_len = if spec.contains('/') {
            spec.to_owned()
        } else {
            format!("{spec}/30")
        };
        let net: Ipv4Net = with_len.parse().map_err(|_| bad())?;
        let subnet = net.trunc();
        if subnet.prefix_len() > 30 {
            return Err(AllocError::SubnetTooSmall(subnet));
        }
        if net.addr() == subnet.network() {
            Ok(Self::Subnet(subnet))
        } else {
            Ok(Self::Static {
                subnet,
                ip: net.addr(),
            })
        }
    }
}

/// A subnet's gateway: its last usable address (Garden's choice).
pub fn gateway_of(subnet: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(subnet.broadcast()) - 1)
}

/// An address handed to one container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The container's subnet.
    pub subnet: Ipv4Net,
    /// The container's address.
    pub ip: Ipv4Addr,
    /// The bridge's address in the subnet.
    pub gateway: Ipv4Addr,
}

/// Subnets in use and the container addresses in each.
#[derive(Debug)]
pub struct IpAllocator {
    pool: Ipv4Net,
    subnets: BTreeMap<Ipv4Net, BTreeSet<Ipv4Addr>>,
}

impl IpAllocator {
    /// An allocator with nothing in use.
    pub fn new(pool: Ipv4Net) -> Self {
        Self {
            pool: pool.trunc(),
            subnets: BTreeMap::new(),
        }
    }

    /// Hands out an address for `request`.
    pub fn allocate(&mut self, request: NetworkRequest) -> Result<Lease, AllocError> {
        match request {
            NetworkRequest::Dynamic => {
                let subnet = self
                    .free_slash30()
                    .ok_or(AllocError::PoolExhausted(self.pool))?;
                let ip = Ipv4Addr::from(u32::from(subnet.network()) + 1);
                self.subnets.entry(subnet).or_default().insert(ip);
                Ok(Lease {
                    subnet,
                    ip,
                    gateway: gateway_of(subnet),
                })
            }
            NetworkRequest::Subnet(subnet) => {
                self.check_subnet(subnet)?;
                let used = self.subnets.get(&subnet);
                let first = u32::from(subnet.network()) + 1;
                let gateway = gateway_of(subnet);
                let ip = (first..u32::from(gateway))
                    .map(Ipv4Addr::from)
                    .find(|ip| used.is_none_or(|used| !used.contains(ip)))
                    .ok_or(AllocError::SubnetFull(subnet))?;
                self.subnets.entry(subnet).or_default().insert(ip);
                Ok(Lease {
                    subnet,
                    ip,
                    gateway,
                })
            }
            NetworkRequest::Static { subnet, ip } => self.reserve(subnet, ip),
        }
    }

    /// Marks `ip` of `subnet` as used (a static request, or restoring state).
    pub fn reserve(&mut self, subnet: Ipv4Net, ip: Ipv4Addr) -> Result<Lease, AllocError> {
        let subnet = subnet.trunc();
        self.check_subnet(subnet)?;
        let gateway = gateway_of(subnet);
        if !subnet.contains(&ip)
            || ip == subnet.network()
            || ip == subnet.broadcast()
            || ip == gateway
        {
            return Err(AllocError::ReservedAddress {
                ip,
                subnet,
                gateway,
            });
        }
        let used = self.subnets.entry(subnet).or_default();
        if !used.insert(ip) {
            return Err(AllocError::AddressInUse(ip));
        }
        Ok(Lease {
            subnet,
            ip,
            gateway,
        })
    }

    /// Frees an address; true when its subnet has no container left (the
    /// bridge can go).
    pub fn release(&mut self, subnet: Ipv4Net, ip: Ipv4Addr) -> bool {
        let Some(used) = self.subnets.get_mut(&subnet) else {
            return true;
        };
        used.remove(&ip);
        if used.is_empty() {
            self.subnets.remove(&subnet);
            true
        } else {
            false
        }
    }

    /// Whether a subnet starting at `network` is in use.
    pub fn has_network(&self, network: Ipv4Addr) -> bool {
        self.subnets.keys().any(|s| s.network() == network)
    }

    /// How many addresses are handed out.
    pub fn addresses_in_use(&self) -> usize {
        self.subnets.values().map(BTreeSet::len).sum()
    }

    fn check_subnet(&self, subnet: Ipv4Net) -> Result<(), AllocError> {
        if subnet.prefix_len() > 30 {
            return Err(AllocError::SubnetTooSmall(subnet));
        }
        if !self.pool.contains(&subnet) {
            return Err(AllocError::OutsidePool {
                subnet,
                pool: self.pool,
            });
        }
        match self.overlapping(subnet) {
            Some(existing) if existing != subnet => Err(AllocError::Overlap { subnet, existing }),
            _ => Ok(()),
        }
    }

    /// A subnet in use that shares addresses with `subnet`, if any.
    fn overlapping(&self, subnet: Ipv4Net) -> Option<Ipv4Net> {
        let before = self
            .subnets
            .range(..=subnet.network().max_key())
            .next_back();
        if let Some((existing, _)) = before {
            if existing.contains(&subnet.network()) {
                return Some(*existing);
            }
        }
        let start = Ipv4Net::new(subnet.network(), 0).ok()?;
        self.subnets
            .range(start..)
            .map(|(existing, _)| *existing)
            .take_while(|existing| existing.network() <= subnet.broadcast())
            .find(|existing| subnet.contains(&existing.network()))
    }

    fn free_slash30(&self) -> Option<Ipv4Net> {
        self.pool
            .subnets(30)
            .ok()?
            .find(|candidate| self.overlapping(*candidate).is_none())
    }
}

/// The largest subnet starting at an address sorts last among those with
/// that address (`Ipv4Net` orders by address, then prefix length).
trait MaxKey {
    fn max_key(self) -> Ipv4Net;
}

impl MaxKey for Ipv4Addr {
    fn max_key(self) -> Ipv4Net {
        Ipv4Net::new(self, 32).expect("32 is a valid prefix length")
    }
}

/// NetIn host ports: those mapped (anywhere) and a round-robin cursor over
/// the pool, so a freed port is not reused at once (stale conntrack entries).
#[derive(Debug)]
pub struct PortPool {
    start: u16,
    end: u16,
    next: u16,
    mapped: BTreeSet<u16>,
}

impl PortPool {
    /// A pool of `size` ports from `start`.
    pub fn new(start: u16, size: u16) -> Self {
        let end = start.saturating_add(size.saturating_sub(1));
        Self {
            start,
            end,
            next: start,
            mapped: BTreeSet::new(),
        }
    }

    /// The next free pool port.
    pub fn acquire(&mut self) -> Result<u16, AllocError> {
        let span = u32::from(self.end - self.start) + 1;
        for step in 0..span {
            let offset = (u32::from(self.next - self.start) + step) % span;
            let port = self.start + u16::try_from(offset).expect("offset < span <= 65536");
            if self.mapped.insert(port) {
                self.next = if port == self.end {
                    self.start
                } else {
                    port + 1
                };
                return Ok(port);
            }
        }
        Err(AllocError::PortsExhausted {
            start: self.start,
            end: self.end,
        })
    }

    /// Takes a port asked for explicitly (in the pool or not).
    pub fn claim(&mut self, port: u16) -> Result<(), AllocError> {
        if self.mapped.insert(port) {
            Ok(())
        } else {
            Err(AllocError::PortInUse(port))
        }
    }

    /// Gives a port back.
    pub fn release(&mut self, port: u16) {
        self.mapped.remove(&port);
    }

    /// How many host ports are mapped.
    pub fn in_use(&self) -> usize {
        self.mapped.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().expect("cidr")
    }
    fn ip(s: &str) -> Ipv4Addr {
        s.parse().expect("ip")
    }

    #[test]
    fn spec_values_parse_like_garden() {
        assert_eq!(NetworkRequest::parse(""), Ok(NetworkRequest::Dynamic));
        assert_eq!(
            NetworkRequest::parse("10.254.1.0/29"),
            Ok(NetworkRequest::Subnet(net("10.254.1.0/29")))
        );
        assert_eq!(
            NetworkRequest::parse("10.254.1.5/29"),
            Ok(NetworkRequest::Static {
                subnet: net("10.254.1.0/29"),
                ip: ip("10.254.1.5")
            })
        );
        assert_eq!(
            NetworkRequest::parse("10.254.1.5"),
            Ok(NetworkRequest::Static {
                subnet: net("10.254.1.4/30"),
                ip: ip("10.254.1.5")
            })
        );
        assert!(matches!(
            NetworkRequest::parse("fe80::1/64"),
            Err(AllocError::BadSpec(_))
        ));
        assert!(matches!(
            NetworkRequest::parse("nonsense"),
            Err(AllocError::BadSpec(_))
        ));
        assert_eq!(
            NetworkRequest::parse("10.0.0.1/31"),
            Err(AllocError::SubnetTooSmall(net("10.0.0.0/31")))
        );
    }

    #[test]
    fn dynamic_leases_are_slash30s_with_gateway_last() {
        let mut alloc = IpAllocator::new(net("10.254.0.0/22"));
        let a = alloc.allocate(NetworkRequest::Dynamic).expect("a");
        assert_eq!(
            a,
            Lease {
                subnet: net("10.254.0.0/30"),
                ip: ip("10.254.0.1"),
                gateway: ip("10.254.0.2")
            }
        );
        let b = alloc.allocate(NetworkRequest::Dynamic).expect("b");
        assert_eq!(b.subnet, net("10.254.0.4/30"));
        assert!(alloc.release(a.subnet, a.ip));
        let c = alloc.allocate(NetworkRequest::Dynamic).expect("c");
        assert_eq!(c.subnet, net("10.254.0.0/30"), "freed subnets are reused");
    }

    #[test]
    fn the_pool_runs_out_with_a_clear_error() {
        let mut alloc = IpAllocator::new(net("10.9.0.0/29"));
        alloc.allocate(NetworkRequest::Dynamic).expect("1");
        alloc.allocate(NetworkRequest::Dynamic).expect("2");
        assert_eq!(
            alloc.allocate(NetworkRequest::Dynamic),
            Err(AllocError::PoolExhausted(net("10.9.0.0/29")))
        );
    }

    #[test]
    fn shared_subnets_hand_out_addresses_and_block_dynamic_slots() {
        let mut alloc = IpAllocator::new(net("10.254.0.0/22"));
        let shared = net("10.254.0.0/29");
        let a = alloc.allocate(NetworkRequest::Subnet(shared)).expect("a");
        let b = alloc.allocate(NetworkRequest::Subnet(shared)).expect("b");
        assert_eq!(
            (a.ip, b.ip, a.gateway),
            (ip("10.254.0.1"), ip("10.254.0.2"), ip("10.254.0.6"))
        );
        let s = alloc.allocate(NetworkRequest::Static {
            subnet: shared,
            ip: ip("10.254.0.5"),
        });
        assert_eq!(s.map(|l| l.ip), Ok(ip("10.254.0.5")));
        assert_eq!(
            alloc.allocate(NetworkRequest::Static {
                subnet: shared,
                ip: ip("10.254.0.5")
            }),
            Err(AllocError::AddressInUse(ip("10.254.0.5")))
        );
        assert!(matches!(
            alloc.allocate(NetworkRequest::Static {
                subnet: shared,
                ip: ip("10.254.0.6")
            }),
            Err(AllocError::ReservedAddress { .. })
        ));
        alloc
            .allocate(NetworkRequest::Subnet(shared))
            .expect("last free .3 or .4");
        alloc
            .allocate(NetworkRequest::Subnet(shared))
            .expect("last free");
        assert_eq!(
            alloc.allocate(NetworkRequest::Subnet(shared)),
            Err(AllocError::SubnetFull(shared))
        );
        let d = alloc.allocate(NetworkRequest::Dynamic).expect("dynamic");
        assert_eq!(
            d.subnet,
            net("10.254.0.8/30"),
            "dynamic skips the shared /29"
        );
        assert_eq!(
            alloc.allocate(NetworkRequest::Subnet(net("10.254.0.0/28"))),
            Err(AllocError::Overlap {
                subnet: net("10.254.0.0/28"),
                existing: shared
            })
        );
        assert_eq!(
            alloc.allocate(NetworkRequest::Subnet(net("10.254.0.4/30"))),
            Err(AllocError::Overlap {
                subnet: net("10.254.0.4/30"),
                existing: shared
            })
        );
        assert!(matches!(
            alloc.allocate(NetworkRequest::Subnet(net("192.168.0.0/30"))),
            Err(AllocError::OutsidePool { .. })
        ));
        assert_eq!(alloc.addresses_in_use(), 6);
    }

    #[test]
    fn ports_go_round_robin_and_conflicts_are_errors() {
        let mut ports = PortPool::new(61001, 3);
        assert_eq!(ports.acquire(), Ok(61001));
        assert_eq!(ports.claim(61002), Ok(()));
        assert_eq!(ports.claim(61002), Err(AllocError::PortInUse(61002)));
        assert_eq!(ports.acquire(), Ok(61003));
        assert_eq!(
            ports.acquire(),
            Err(AllocError::PortsExhausted {
                start: 61001,
                end: 61003
            })
        );
        ports.release(61001);
        ports.release(61003);
        assert_eq!(ports.acquire(), Ok(61001), "wraps around");
        assert_eq!(ports.acquire(), Ok(61003));
        assert_eq!(
            ports.claim(8080),
            Ok(()),
            "ports outside the pool can be claimed"
        );
        assert_eq!(ports.in_use(), 4);
    }
}
