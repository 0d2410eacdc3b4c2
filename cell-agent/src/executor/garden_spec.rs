//! What the executor asks garden for: the container spec of a run request
//! (image, limits from the reservation, bind mounts, NetOut rules from the
//! egress rules) and the properties that let a restarted agent tell its
//! containers apart.

use std::collections::BTreeMap;
use std::path::Path;

use diego::models::check::CheckDefinition;
use diego::models::{SecurityGroupError, SecurityGroupRule, SecurityProtocol};
use garden_api::types::{
    BindMount as GardenMount, BindMountMode, BindMountOrigin, ContainerSpec, DiskLimitScope,
    IcmpControl, IpRange, NetOutRule, PortRange, Properties, Protocol,
};

use super::config::{ExecutorConfig, HEALTHCHECK_PATH};
use super::container::{Container, ContainerKind, LogConfig, Resources, RunRequest};

/// Which executor created the container.
pub const OWNER: &str = "executor:owner";
/// The container's guid.
pub const GUID: &str = "executor:guid";
/// `lrp` or `task`.
pub const KIND: &str = "executor:kind";
/// Reserved memory in MB.
pub const MEMORY_MB: &str = "executor:memory-mb";
/// Reserved disk in MB.
pub const DISK_MB: &str = "executor:disk-mb";
/// Process limit.
pub const MAX_PIDS: &str = "executor:max-pids";
/// The LRP's health checks (JSON), to resume liveness after a restart.
pub const MONITOR: &str = "executor:monitor";
/// Where the container's output goes (JSON).
pub const LOG_CONFIG: &str = "executor:log-config";
/// A Task's result file.
pub const RESULT_FILE: &str = "executor:result-file";
/// Prefix of the caller's tags.
pub const TAG_PREFIX: &str = "tag:";

const MIB: u64 = 1024 * 1024;

/// Why a run request has no garden spec.
#[derive(Debug, thiserror::Error)]
pub enum GardenSpecError {
    /// An egress rule fails Diego's validation.
    #[error("egress rule {index} ({rule}): {source}")]
    EgressRule {
        /// Its position in the request's rules.
        index: usize,
        /// The rule, summarised.
        rule: String,
        /// What is wrong with it.
        source: SecurityGroupError,
    },
}

/// The garden spec of `container` run as `request` from `image`.
pub(crate) fn container_spec(
    config: &ExecutorConfig,
    container: &Container,
    request: &RunRequest,
    image: &str,
    healthcheck_binary: &Path,
) -> Result<ContainerSpec, GardenSpecError> {
    let r = container.resources;
    let mut spec = ContainerSpec {
        handle: container.guid.clone(),
        env: request.env.clone(),
        privileged: request.privileged,
        properties: properties(config, container, request),
        net_out: net_out_rules(&request.egress_rules)?,
        ..ContainerSpec::default()
    };
    spec.image.uri = image.to_owned();
    spec.limits.memory.limit_in_bytes = r.memory_mb * MIB;
    spec.limits.disk.byte_hard = r.disk_mb * MIB;
    spec.limits.disk.scope = DiskLimitScope::Exclusive;
    spec.limits.pid.max = if r.max_pids == 0 {
        config.default_max_pids
    } else {
        r.max_pids
    };
    spec.limits.cpu.weight = request.cpu_weight;
    if request
        .monitor
        .as_ref()
        .is_some_and(|m| !m.checks.is_empty())
    {
        spec.bind_mounts.push(GardenMount {
            src_path: healthcheck_binary.display().to_string(),
            dst_path: HEALTHCHECK_PATH.into(),
            mode: BindMountMode::Ro,
            origin: BindMountOrigin::Host,
        });
    }
    for m in &request.bind_mounts {
        spec.bind_mounts.push(GardenMount {
            src_path: m.host_path.clone(),
            dst_path: m.container_path.clone(),
            mode: if m.read_write {
                BindMountMode::Rw
            } else {
                BindMountMode::Ro
            },
            origin: BindMountOrigin::Host,
        });
    }
    Ok(spec)
}

/// Garden NetOut rules allowing what `rules` allow, one each, in order
/// (as Diego's executor converts them): destinations become address
/// ranges, `ports` one range each (or the `port_range`), ICMP type or code
/// -1 every type or code.
pub fn net_out_rules(rules: &[SecurityGroupRule]) -> Result<Vec<NetOutRule>, GardenSpecError> {
    rules
        .iter()
        .enumerate()
        .map(|(index, rule)| {
            net_out_rule(rule).map_err(|source| GardenSpecError::EgressRule {
                index,
                rule: rule.to_string(),
                source,
            })
        })
        .collect()
}

fn net_out_rule(rule: &SecurityGroupRule) -> Result<NetOutRule, SecurityGroupError> {
    rule.validate()?;
    let networks = rule
        .address_ranges()?
        .into_iter()
        .map(|r| IpRange {
            start: Some(r.start.into()),
            end: Some(r.end.into()),
        })
        .collect();
    let icmps = rule
        .icmp_info
        .and_then(|i| {
            let icmp_type = u8::try_from(i.icmp_type).ok()?;
            let code = u8::try_from(i.code).ok();
            Some(IcmpControl { icmp_type, code })
        })
        .filter(|_| rule.protocol == SecurityProtocol::Icmp);
    Ok(NetOutRule {
        protocol: match rule.protocol {
            SecurityProtocol::Tcp => Protocol::Tcp,
            SecurityProtocol::Udp => Protocol::Udp,
            SecurityProtocol::Icmp => Protocol::Icmp,
            SecurityProtocol::All => Protocol::All,
        },
        networks,
        ports: rule
            .port_ranges()
            .into_iter()
            .map(|(start, end)| PortRange { start, end })
            .collect(),
        icmps,
        log: rule.log,
    })
}

fn properties(config: &ExecutorConfig, container: &Container, request: &RunRequest) -> Properties {
    let r = container.resources;
    let mut p = Properties::from([
        (OWNER.to_owned(), config.owner.clone()),
        (GUID.to_owned(), container.guid.clone()),
        (KIND.to_owned(), request.kind().as_str().to_owned()),
        (MEMORY_MB.to_owned(), r.memory_mb.to_string()),
        (DISK_MB.to_owned(), r.disk_mb.to_string()),
        (MAX_PIDS.to_owned(), r.max_pids.to_string()),
    ]);
    if let Some(monitor) = &request.monitor {
        if let Ok(json) = serde_json::to_string(monitor) {
            p.insert(MONITOR.to_owned(), json);
        }
    }
    if let Ok(json) = serde_json::to_string(&request.log) {
        p.insert(LOG_CONFIG.to_owned(), json);
    }
    if let Some(path) = &request.result_file {
        p.insert(RESULT_FILE.to_owned(), path.clone());
    }
    for (key, value) in &container.tags {
        p.insert(format!("{TAG_PREFIX}{key}"), value.clone());
    }
    p
}

/// What the properties of a garden container say about it: guid, kind,
/// resources, tags, and what resuming its watch needs.
pub(crate) struct Described {
    pub(crate) guid: String,
    pub(crate) kind: Option<ContainerKind>,
    pub(crate) resources: Resources,
    pub(crate) tags: BTreeMap<String, String>,
    pub(crate) monitor: Option<CheckDefinition>,
    pub(crate) log: LogConfig,
    pub(crate) result_file: Option<String>,
}

pub(crate) fn describe(handle: &str, p: &Properties) -> Described {
    let number = |key: &str| p.get(key).and_then(|v| v.parse().ok()).unwrap_or(0);
    Described {
        guid: p.get(GUID).cloned().unwrap_or_else(|| handle.to_owned()),
        kind: match p.get(KIND).map(String::as_str) {
            Some("lrp") => Some(ContainerKind::Lrp),
            Some("task") => Some(ContainerKind::Task),
            _ => None,
        },
        resources: Resources {
            memory_mb: number(MEMORY_MB),
            disk_mb: number(DISK_MB),
            max_pids: number(MAX_PIDS),
        },
        tags: p
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix(TAG_PREFIX)
                    .map(|k| (k.to_owned(), v.clone()))
            })
            .collect(),
        monitor: p.get(MONITOR).and_then(|j| serde_json::from_str(j).ok()),
        log: p
            .get(LOG_CONFIG)
            .and_then(|j| serde_json::from_str(j).ok())
            .unwrap_or_default(),
        result_file: p.get(RESULT_FILE).cloned(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use diego::models::action::{Action, RunAction};
    use diego::models::check::{Check, CheckDefinition};
    use diego::models::IcmpInfo;

    use super::*;
    use crate::executor::state::ContainerState;

    #[test]
    fn spec_carries_limits_mounts_and_properties_that_read_back() {
        let config = ExecutorConfig::default();
        let container = Container {
            guid: "g1".into(),
            state: ContainerState::Initializing,
            resources: Resources {
                memory_mb: 128,
                disk_mb: 256,
                max_pids: 0,
            },
            tags: BTreeMap::from([("process-guid".to_string(), "web".to_string())]),
            kind: None,
            ports: Vec::new(),
            allocated_at: SystemTime::now(),
            state_changed_at: SystemTime::now(),
            health: None,
            result: None,
            adopted: false,
        };
        let mut request = RunRequest::new("/rootfs", Action::Run(RunAction::default()));
        request.cpu_weight = 50;
        request.monitor = Some(CheckDefinition {
            checks: vec![Check::Tcp {
                port: 8080,
                connect_timeout_ms: 0,
            }],
            log_source: String::new(),
        });
        let spec = container_spec(
            &config,
            &container,
            &request,
            "/rootfs",
            Path::new("/usr/bin/cell-agent"),
        )
        .expect("spec");
        assert!(spec.net_out.is_empty(), "no egress rules: nothing allowed");
        assert_eq!(spec.limits.memory.limit_in_bytes, 128 * MIB);
        assert_eq!(spec.limits.disk.byte_hard, 256 * MIB);
        assert_eq!(spec.limits.disk.scope, DiskLimitScope::Exclusive);
        assert_eq!(spec.limits.pid.max, config.default_max_pids);
        assert_eq!(spec.limits.cpu.weight, 50);
        assert_eq!(spec.bind_mounts[0].dst_path, HEALTHCHECK_PATH);
        assert_eq!(spec.properties[OWNER], "executor");
        let d = describe("g1", &spec.properties);
        assert_eq!(d.guid, "g1");
        assert_eq!(d.kind, Some(ContainerKind::Lrp));
        assert_eq!(d.resources, container.resources);
        assert_eq!(d.tags, container.tags);
        assert_eq!(d.monitor, request.monitor);
        assert_eq!(d.result_file, None);
    }

    fn rule(protocol: SecurityProtocol, destinations: &[&str]) -> SecurityGroupRule {
        SecurityGroupRule::new(protocol, destinations)
    }

    fn v4(a: [u8; 4], b: [u8; 4]) -> IpRange {
        IpRange {
            start: Some(std::net::Ipv4Addr::from(a).into()),
            end: Some(std::net::Ipv4Addr::from(b).into()),
        }
    }

    #[test]
    fn egress_rules_become_net_out_rules_in_order() {
        let public = rule(
            SecurityProtocol::All,
            &["0.0.0.0-9.255.255.255", "11.0.0.0-169.253.255.255"],
        );
        let mut dns = rule(SecurityProtocol::Udp, &["0.0.0.0/0"]);
        dns.ports = vec![53, 5353];
        let mut web = rule(SecurityProtocol::Tcp, &["10.1.2.3"]);
        web.port_range = Some(diego::models::PortRange {
            start: 8000,
            end: 8099,
        });
        web.log = true;
        let mut ping = rule(SecurityProtocol::Icmp, &["192.168.0.0/16"]);
        ping.icmp_info = Some(IcmpInfo {
            icmp_type: 8,
            code: -1,
        });
        let mut any_icmp = ping.clone();
        any_icmp.icmp_info = Some(IcmpInfo {
            icmp_type: -1,
            code: -1,
        });
        let out = net_out_rules(&[public, dns, web, ping, any_icmp]).expect("rules");
        assert_eq!(out.len(), 5);
        assert_eq!(out[0].protocol, Protocol::All);
        assert_eq!(
            out[0].networks,
            [
                v4([0, 0, 0, 0], [9, 255, 255, 255]),
                v4([11, 0, 0, 0], [169, 253, 255, 255])
            ]
        );
        assert!(out[0].ports.is_empty() && out[0].icmps.is_none());
        assert_eq!(out[1].protocol, Protocol::Udp);
        assert_eq!(out[1].networks, [v4([0, 0, 0, 0], [255, 255, 255, 255])]);
        assert_eq!(
            out[1].ports,
            [
                PortRange { start: 53, end: 53 },
                PortRange {
                    start: 5353,
                    end: 5353
                }
            ]
        );
        assert_eq!(out[2].protocol, Protocol::Tcp);
        assert_eq!(out[2].networks, [v4([10, 1, 2, 3], [10, 1, 2, 3])]);
        assert_eq!(
            out[2].ports,
            [PortRange {
                start: 8000,
                end: 8099
            }]
        );
        assert!(out[2].log);
        assert_eq!(out[3].protocol, Protocol::Icmp);
        assert_eq!(
            out[3].icmps,
            Some(IcmpControl {
                icmp_type: 8,
                code: None
            })
        );
        assert_eq!(out[4].icmps, None, "type -1: every ICMP message");
    }

    #[test]
    fn a_bad_egress_rule_is_an_error_naming_it() {
        let good = rule(SecurityProtocol::All, &["10.0.0.0/8"]);
        let bad = rule(SecurityProtocol::Tcp, &["10.0.0.0/8"]);
        let err = net_out_rules(&[good, bad]).expect_err("no ports");
        assert_eq!(
            err.to_string(),
            "egress rule 1 (tcp to 10.0.0.0/8): protocol tcp needs ports or port_range"
        );
        let bad = rule(SecurityProtocol::All, &["10.0.0.0/40"]);
        assert!(net_out_rules(&[bad]).is_err());
    }
}
