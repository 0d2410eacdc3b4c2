//! Port mappings and outbound rules (Garden's `NetIn`, `NetOutRule`).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_repr::{Deserialize_repr, Serialize_repr};

use super::serde_util::{is_zero, nullable, optional_ip};

/// A host port forwarded to a container port (in a `ContainerSpec`).
/// Go writes both fields even when zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetIn {
    /// The host port; 0: allocated by the server.
    pub host_port: u32,
    /// The container port; 0: the same as the host port.
    pub container_port: u32,
}

/// The body of `POST /containers/:handle/net/in`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetInRequest {
    /// The container's handle (Go's client sends it; the route decides).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub handle: String,
    /// The host port; 0: allocated by the server.
    #[serde(skip_serializing_if = "is_zero")]
    pub host_port: u32,
    /// The container port; 0: the same as the host port.
    #[serde(skip_serializing_if = "is_zero")]
    pub container_port: u32,
}

/// The answer of `POST /containers/:handle/net/in`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetInResponse {
    /// The host port mapped.
    #[serde(skip_serializing_if = "is_zero")]
    pub host_port: u32,
    /// The container port mapped.
    #[serde(skip_serializing_if = "is_zero")]
    pub container_port: u32,
}

/// An allowed outbound flow.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetOutRule {
    /// The protocol (default: all).
    #[serde(skip_serializing_if = "is_zero")]
    pub protocol: Protocol,
    /// Destination address ranges (default: all).
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<IpRange>,
    /// Destination port ranges (default: all; ignored for ICMP).
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortRange>,
    /// Which ICMP messages (ICMP only; default: all).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmps: Option<IcmpControl>,
    /// Log new connections (TCP and all only).
    #[serde(skip_serializing_if = "is_zero")]
    pub log: bool,
}

/// A network protocol of an outbound rule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize_repr, Deserialize_repr)]
#[repr(u8)]
pub enum Protocol {
    /// Every protocol.
    #[default]
    All = 0,
    /// TCP.
    Tcp = 1,
    /// UDP.
    Udp = 2,
    /// ICMP.
    Icmp = 3,
}

/// An inclusive range of IP addresses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct IpRange {
    /// First address.
    #[serde(with = "optional_ip", skip_serializing_if = "Option::is_none")]
    pub start: Option<IpAddr>,
    /// Last address.
    #[serde(with = "optional_ip", skip_serializing_if = "Option::is_none")]
    pub end: Option<IpAddr>,
}

/// An inclusive range of ports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PortRange {
    /// First port.
    #[serde(skip_serializing_if = "is_zero")]
    pub start: u16,
    /// Last port.
    #[serde(skip_serializing_if = "is_zero")]
    pub end: u16,
}

/// ICMP type and optional code.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct IcmpControl {
    /// The ICMP type.
    #[serde(rename = "type", skip_serializing_if = "is_zero")]
    pub icmp_type: u8,
    /// The ICMP code (`None`: every code).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<u8>,
}
