//! Garden's NetOut rules: checked up front, then turned into the
//! statements of one nft rule each (in the container's own chain).
//!
//! Like Garden: `protocol` all/tcp/udp/icmp; `networks` are inclusive
//! address ranges (none: anywhere); `ports` are inclusive ranges for TCP and
//! UDP only (none: every port); `icmps` type and optional code for ICMP
//! only; `log` logs each new connection the rule lets through with the
//! prefix `garden-<handle, at most 29 characters>: `.

use std::net::{IpAddr, Ipv4Addr};

use garden_api::types::{IcmpControl, IpRange, NetOutRule, PortRange, Protocol};
use nftables::expr::MetaKey;
use nftables::stmt::{Log, Statement};

use crate::nft::expr::{accept, addr, eq, meta, n, payload, range, s, set, Expr, Stmt};

/// Errors of this module.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RuleError {
    /// Garden refuses ports for anything but TCP and UDP.
    #[error("rule {index}: ports are only allowed with protocol tcp or udp")]
    PortsNeedTcpOrUdp {
        /// Which rule (from 0).
        index: usize,
    },
    /// ICMP type and code only make sense with protocol icmp.
    #[error("rule {index}: icmps are only allowed with protocol icmp")]
    IcmpsNeedIcmp {
        /// Which rule (from 0).
        index: usize,
    },
    /// Containers only have IPv4.
    #[error("rule {index}: network range {range}: only IPv4 is supported")]
    NotIpv4 {
        /// Which rule (from 0).
        index: usize,
        /// The range as given.
        range: String,
    },
    /// A network range without addresses, or with start after end.
    #[error("rule {index}: bad network range {range}")]
    BadNetwork {
        /// Which rule (from 0).
        index: usize,
        /// The range as given.
        range: String,
    },
    /// Port 0, or start after end.
    #[error("rule {index}: bad port range {start}-{end}")]
    BadPorts {
        /// Which rule (from 0).
        index: usize,
        /// First port.
        start: u16,
        /// Last port.
        end: u16,
    },
}

/// A rule checked and reduced to addresses and numbers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedRule {
    protocol: Protocol,
    networks: Vec<(Ipv4Addr, Ipv4Addr)>,
    ports: Vec<(u16, u16)>,
    icmp: Option<IcmpControl>,
    log: bool,
}

/// Checks rule number `index` of a request.
pub fn check(index: usize, rule: &NetOutRule) -> Result<CheckedRule, RuleError> {
    let tcp_or_udp = matches!(rule.protocol, Protocol::Tcp | Protocol::Udp);
    if !rule.ports.is_empty() && !tcp_or_udp {
        return Err(RuleError::PortsNeedTcpOrUdp { index });
    }
    if rule.icmps.is_some() && rule.protocol != Protocol::Icmp {
        return Err(RuleError::IcmpsNeedIcmp { index });
    }
    let networks = rule
        .networks
        .iter()
        .map(|r| network(index, r))
        .collect::<Result<_, _>>()?;
    let ports = rule
        .ports
        .iter()
        .map(|r| ports(index, r))
        .collect::<Result<_, _>>()?;
    Ok(CheckedRule {
        protocol: rule.protocol,
        networks,
        ports,
        icmp: rule.icmps,
        log: rule.log,
    })
}

fn network(index: usize, given: &IpRange) -> Result<(Ipv4Addr, Ipv4Addr), RuleError> {
    let shown = || format!("{:?}-{:?}", given.start, given.end);
    let v4 = |ip: IpAddr| match ip {
        IpAddr::V4(ip) => Ok(ip),
        IpAddr::V6(_) => Err(RuleError::NotIpv4 {
            index,
            range: shown(),
        }),
    };
    let (start, end) = match (given.start, given.end) {
        (Some(start), Some(end)) => (v4(start)?, v4(end)?),
        (Some(one), None) | (None, Some(one)) => (v4(one)?, v4(one)?),
        (None, None) => {
            return Err(RuleError::BadNetwork {
                index,
                range: shown(),
            })
        }
    };
    if start > end {
        return Err(RuleError::BadNetwork {
            index,
            range: shown(),
        });
    }
    Ok((start, end))
}

fn ports(index: usize, given: &PortRange) -> Result<(u16, u16), RuleError> {
    let end = if given.end == 0 {
        given.start
    } else {
        given.end
    };
    if given.start == 0 || given.start > end {
        return Err(RuleError::BadPorts {
            index,
            start: given.start,
            end: given.end,
        });
    }
    Ok((given.start, end))
}

/// The log prefix of a container's rules (nft and the kernel allow 127 bytes;
/// Garden keeps 29 characters of the handle). Only printable ASCII is kept.
pub fn log_prefix(handle: &str) -> String {
    let kept: String = handle
        .chars()
        .filter(|c| c.is_ascii_graphic() && *c != '"' && *c != '\\')
        .take(29)
        .collect();
    format!("garden-{kept}: ")
}

impl CheckedRule {
    /// The statements of this rule's nft rule, ending in `accept`.
    pub fn statements(&self, log_prefix: &str) -> Vec<Stmt> {
        let mut stmts = Vec::new();
        if !self.networks.is_empty() {
            let items = self
                .networks
                .iter()
                .map(|&(start, end)| {
                    if start == end {
                        addr(start)
                    } else {
                        range(addr(start), addr(end))
                    }
                })
                .collect();
            stmts.push(eq(payload("ip", "daddr"), set(items)));
        }
        match self.protocol {
            Protocol::All => {}
            Protocol::Tcp | Protocol::Udp => {
                let proto = if self.protocol == Protocol::Tcp {
                    "tcp"
                } else {
                    "udp"
                };
                if self.ports.is_empty() {
                    stmts.push(eq(meta(MetaKey::L4proto), s(proto)));
                } else {
                    let items = self.ports.iter().map(|&(a, b)| port_item(a, b)).collect();
                    stmts.push(eq(payload(proto, "dport"), set(items)));
                }
            }
            Protocol::Icmp => match self.icmp {
                None => stmts.push(eq(meta(MetaKey::L4proto), s("icmp"))),
                Some(icmp) => {
                    stmts.push(eq(payload("icmp", "type"), n(u32::from(icmp.icmp_type))));
                    if let Some(code) = icmp.code {
                        stmts.push(eq(payload("icmp", "code"), n(u32::from(code))));
                    }
                }
            },
        }
        if self.log {
            let mut log = Log::new(None);
            log.prefix = Some(log_prefix.to_owned().into());
            stmts.push(Statement::Log(Some(log)));
        }
        stmts.push(accept());
        stmts
    }
}

fn port_item(start: u16, end: u16) -> Expr {
    if start == end {
        n(u32::from(start))
    } else {
        range(n(u32::from(start)), n(u32::from(end)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(json: &str) -> NetOutRule {
        serde_json::from_str(json).expect("rule json")
    }

    #[test]
    fn garden_refusals_are_clear_errors() {
        assert_eq!(
            check(0, &rule(r#"{"ports":[{"start":80}]}"#)),
            Err(RuleError::PortsNeedTcpOrUdp { index: 0 })
        );
        assert_eq!(
            check(1, &rule(r#"{"protocol":1,"icmps":{"type":8}}"#)),
            Err(RuleError::IcmpsNeedIcmp { index: 1 })
        );
        assert!(matches!(
            check(0, &rule(r#"{"networks":[{"start":"::1","end":"::2"}]}"#)),
            Err(RuleError::NotIpv4 { .. })
        ));
        assert!(matches!(
            check(
                0,
                &rule(r#"{"networks":[{"start":"10.0.0.9","end":"10.0.0.1"}]}"#)
            ),
            Err(RuleError::BadNetwork { .. })
        ));
        assert!(matches!(
            check(0, &rule(r#"{"networks":[{}]}"#)),
            Err(RuleError::BadNetwork { .. })
        ));
        assert!(matches!(
            check(
                0,
                &rule(r#"{"protocol":1,"ports":[{"start":90,"end":80}]}"#)
            ),
            Err(RuleError::BadPorts { .. })
        ));
    }

    #[test]
    fn statements_read_like_nft() {
        let checked = check(
            0,
            &rule(
                r#"{"protocol":1,"networks":[{"start":"10.0.0.1","end":"10.0.0.9"},{"start":"10.1.0.1"}],
                   "ports":[{"start":80},{"start":8000,"end":8080}],"log":true}"#,
            ),
        )
        .expect("valid");
        let json = serde_json::to_string(&checked.statements("garden-x: ")).expect("json");
        assert_eq!(
            json,
            concat!(
                r#"[{"match":{"left":{"payload":{"protocol":"ip","field":"daddr"}},"right":{"set":["#,
                r#"{"range":["10.0.0.1","10.0.0.9"]},"10.1.0.1"]},"op":"=="}},"#,
                r#"{"match":{"left":{"payload":{"protocol":"tcp","field":"dport"}},"right":{"set":["#,
                r#"80,{"range":[8000,8080]}]},"op":"=="}},{"log":{"prefix":"garden-x: "}},{"accept":null}]"#
            )
        );
        let icmp = check(0, &rule(r#"{"protocol":3,"icmps":{"type":8,"code":0}}"#)).expect("icmp");
        assert_eq!(icmp.statements("p").len(), 3);
        let all = check(0, &rule("{}")).expect("all");
        assert_eq!(
            all.statements("p").len(),
            1,
            "protocol all to anywhere is a bare accept"
        );
    }

    #[test]
    fn log_prefixes_keep_29_printable_characters() {
        assert_eq!(log_prefix("a\"b\\c d"), "garden-abcd: ");
        assert_eq!(log_prefix(&"x".repeat(40)).len(), "garden-: ".len() + 29);
    }
}
