//! Egress rules: Cloud Foundry's security groups as Diego carries them on
//! every Task and DesiredLRP (`egress_rules`). A container may open only
//! the flows its rules allow (plus replies); the executor hands them to
//! garden as NetOut rules when it creates the container.
//!
//! ```json
//! {"protocol": "tcp", "destinations": ["10.0.0.0/8"], "ports": [443, 8443]}
//! {"protocol": "udp", "destinations": ["0.0.0.0-9.255.255.255"], "port_range": {"start": 53, "end": 53}}
//! {"protocol": "icmp", "destinations": ["192.168.1.1"], "icmp_info": {"type": 8, "code": -1}}
//! {"protocol": "all", "destinations": ["172.16.0.0/12"], "log": true}
//! ```
//!
//! A destination is an address, a CIDR or an inclusive range `a.b.c.d-e.f.g.h`
//! (IPv4 only: garden-net filters IPv4). ICMP type or code `-1` means every
//! type or code.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// Why an egress rule is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecurityGroupError {
    /// The rule names no destination.
    #[error("destinations must not be empty")]
    NoDestinations,
    /// A destination is not an address, CIDR or range.
    #[error("destination {destination:?}: {reason}")]
    Destination {
        /// The destination as given.
        destination: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// TCP and UDP rules need ports.
    #[error("protocol {protocol} needs ports or port_range")]
    NoPorts {
        /// The rule's protocol.
        protocol: SecurityProtocol,
    },
    /// Both `ports` and `port_range` are set.
    #[error("ports and port_range exclude each other")]
    PortsAndRange,
    /// A port outside 1-65535.
    #[error("port {port} is outside 1-65535")]
    Port {
        /// The port given.
        port: u32,
    },
    /// A port range that is empty or out of bounds.
    #[error("port_range {start}-{end} must lie in 1-65535 with start <= end")]
    PortRange {
        /// First port.
        start: u32,
        /// Last port.
        end: u32,
    },
    /// A field the protocol does not take.
    #[error("{field} is not allowed with protocol {protocol}")]
    NotAllowed {
        /// The field (`ports`, `port_range`, `icmp_info`).
        field: &'static str,
        /// The rule's protocol.
        protocol: SecurityProtocol,
    },
    /// An ICMP rule without `icmp_info`.
    #[error("protocol icmp needs icmp_info")]
    NoIcmpInfo,
    /// An ICMP type or code outside -1..=255.
    #[error("icmp_info {field} {value} is outside -1..=255")]
    Icmp {
        /// `type` or `code`.
        field: &'static str,
        /// The value given.
        value: i32,
    },
}

/// The protocol of an egress rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SecurityProtocol {
    /// TCP (needs ports).
    Tcp,
    /// UDP (needs ports).
    Udp,
    /// ICMP (needs `icmp_info`).
    Icmp,
    /// Every protocol, every port.
    All,
}

impl fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
            Self::Icmp => "icmp",
            Self::All => "all",
        })
    }
}

/// An inclusive range of ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRange {
    /// First port.
    pub start: u32,
    /// Last port.
    pub end: u32,
}

/// Which ICMP messages an ICMP rule allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IcmpInfo {
    /// ICMP type; -1: every type.
    #[serde(rename = "type")]
    pub icmp_type: i32,
    /// ICMP code; -1: every code of the type.
    #[serde(default)]
    pub code: i32,
}

/// One allowed outbound flow (Diego's `SecurityGroupRule`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityGroupRule {
    /// The protocol.
    pub protocol: SecurityProtocol,
    /// Addresses, CIDRs or `a.b.c.d-e.f.g.h` ranges.
    pub destinations: Vec<String>,
    /// Single ports (TCP, UDP).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<u32>,
    /// A range of ports (TCP, UDP), instead of `ports`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_range: Option<PortRange>,
    /// ICMP messages (ICMP only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp_info: Option<IcmpInfo>,
    /// Log new connections.
    #[serde(default)]
    pub log: bool,
    /// Free text for people (Cloud Foundry: the security group's name).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub annotations: Vec<String>,
}

/// An inclusive range of IPv4 addresses, one destination of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressRange {
    /// First address.
    pub start: Ipv4Addr,
    /// Last address.
    pub end: Ipv4Addr,
}

impl SecurityGroupRule {
    /// A rule allowing `protocol` to `destinations`, everything else unset.
    pub fn new(protocol: SecurityProtocol, destinations: &[&str]) -> Self {
        Self {
            protocol,
            destinations: destinations.iter().map(|d| (*d).to_owned()).collect(),
            ports: Vec::new(),
            port_range: None,
            icmp_info: None,
            log: false,
            annotations: Vec::new(),
        }
    }

    /// Checks what Diego checks: destinations parse, TCP and UDP have
    /// ports (a list or a range, not both), ICMP has `icmp_info` and no
    /// ports, `all` has neither.
    pub fn validate(&self) -> Result<(), SecurityGroupError> {
        self.check_fields()?;
        self.address_ranges().map(|_| ())
    }

    fn check_fields(&self) -> Result<(), SecurityGroupError> {
        let protocol = self.protocol;
        let not_allowed = |field| Err(SecurityGroupError::NotAllowed { field, protocol });
        let has_ports = !self.ports.is_empty();
        match protocol {
            SecurityProtocol::Tcp | SecurityProtocol::Udp => {
                if self.icmp_info.is_some() {
                    return not_allowed("icmp_info");
                }
                self.check_ports()
            }
            SecurityProtocol::Icmp if has_ports => not_allowed("ports"),
            SecurityProtocol::Icmp if self.port_range.is_some() => not_allowed("port_range"),
            SecurityProtocol::Icmp => match self.icmp_info {
                None => Err(SecurityGroupError::NoIcmpInfo),
                Some(info) => check_icmp(info),
            },
            SecurityProtocol::All if has_ports => not_allowed("ports"),
            SecurityProtocol::All if self.port_range.is_some() => not_allowed("port_range"),
            SecurityProtocol::All if self.icmp_info.is_some() => not_allowed("icmp_info"),
            SecurityProtocol::All => Ok(()),
        }
    }

    fn check_ports(&self) -> Result<(), SecurityGroupError> {
        let in_bounds = |p: u32| (1..=u32::from(u16::MAX)).contains(&p);
        match (&self.ports[..], self.port_range) {
            ([], None) => Err(SecurityGroupError::NoPorts {
                protocol: self.protocol,
            }),
            ([_, ..], Some(_)) => Err(SecurityGroupError::PortsAndRange),
            (ports, None) => match ports.iter().find(|&&p| !in_bounds(p)) {
                Some(&port) => Err(SecurityGroupError::Port { port }),
                None => Ok(()),
            },
            ([], Some(PortRange { start, end })) => {
                if in_bounds(start) && in_bounds(end) && start <= end {
                    Ok(())
                } else {
                    Err(SecurityGroupError::PortRange { start, end })
                }
            }
        }
    }

    /// The destinations as address ranges, in order.
    pub fn address_ranges(&self) -> Result<Vec<AddressRange>, SecurityGroupError> {
        if self.destinations.is_empty() {
            return Err(SecurityGroupError::NoDestinations);
        }
        self.destinations
            .iter()
            .map(|d| parse_destination(d))
            .collect()
    }

    /// The allowed ports as inclusive ranges (empty: every port).
    pub fn port_ranges(&self) -> Vec<(u16, u16)> {
        let port = |p: u32| u16::try_from(p).unwrap_or(u16::MAX);
        match self.port_range {
            Some(r) => vec![(port(r.start), port(r.end))],
            None => self.ports.iter().map(|&p| (port(p), port(p))).collect(),
        }
    }
}

impl fmt::Display for SecurityGroupRule {
    /// A one-line summary for errors and logs: `tcp to 10.0.0.0/8 ports [443]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} to {}", self.protocol, self.destinations.join(","))?;
        if !self.ports.is_empty() {
            write!(f, " ports {:?}", self.ports)?;
        }
        if let Some(r) = self.port_range {
            write!(f, " ports {}-{}", r.start, r.end)?;
        }
        if let Some(i) = self.icmp_info {
            write!(f, " icmp type {} code {}", i.icmp_type, i.code)?;
        }
        Ok(())
    }
}

fn check_icmp(info: IcmpInfo) -> Result<(), SecurityGroupError> {
    for (field, value) in [("type", info.icmp_type), ("code", info.code)] {
        if !(-1..=255).contains(&value) {
            return Err(SecurityGroupError::Icmp { field, value });
        }
    }
    Ok(())
}

fn parse_destination(given: &str) -> Result<AddressRange, SecurityGroupError> {
    let bad = |reason| SecurityGroupError::Destination {
        destination: given.to_owned(),
        reason,
    };
    let address = |s: &str| match s.trim().parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => Ok(ip),
        Ok(IpAddr::V6(_)) => Err(bad("IPv6 is not supported (garden-net filters IPv4)")),
        Err(_) => Err(bad("not an address, a CIDR or an a.b.c.d-e.f.g.h range")),
    };
    if given.contains('/') {
        if given.contains(':') {
            return Err(bad("IPv6 is not supported (garden-net filters IPv4)"));
        }
        let net: Ipv4Net = given
            .trim()
            .parse()
            .map_err(|_| bad("not a valid CIDR (a.b.c.d/0-32)"))?;
        return Ok(AddressRange {
            start: net.network(),
            end: net.broadcast(),
        });
    }
    let (start, end) = match given.split_once('-') {
        Some((start, end)) => (address(start)?, address(end)?),
        None => {
            let one = address(given)?;
            (one, one)
        }
    };
    if start > end {
        return Err(bad("range starts after it ends"));
    }
    Ok(AddressRange { start, end })
}

/// Checks every rule of a list; the error names the rule's position.
pub fn validate_rules(rules: &[SecurityGroupRule]) -> Result<(), (usize, SecurityGroupError)> {
    for (index, rule) in rules.iter().enumerate() {
        rule.validate().map_err(|e| (index, e))?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "security_group_tests.rs"]
mod tests;
