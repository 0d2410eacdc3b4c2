//! OCI device cgroup rules, validated once and shared by the v1 writer and the
//! v2 eBPF program generator.

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use crate::error::CgroupError;

/// Block or character device (the only kinds the device cgroup controls).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DevType {
    Block,
    Char,
}

impl DevType {
    fn letter(self) -> char {
        match self {
            DevType::Block => 'b',
            DevType::Char => 'c',
        }
    }
}

/// Access bits, numbered as the kernel's `BPF_DEVCG_ACC_*`.
pub(crate) const ACC_MKNOD: u32 = 1;
pub(crate) const ACC_READ: u32 = 2;
pub(crate) const ACC_WRITE: u32 = 4;
pub(crate) const ACC_ALL: u32 = ACC_MKNOD | ACC_READ | ACC_WRITE;

/// One validated rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DeviceRule {
    /// Type `a`: every device, every access (the kernel's v1 semantics for `a`,
    /// which ignore the numbers and the access string).
    All { allow: bool },
    Specific {
        allow: bool,
        typ: DevType,
        /// `None` is the wildcard `*`.
        major: Option<u32>,
        minor: Option<u32>,
        /// `ACC_*` bits, never 0.
        access: u32,
    },
}

impl DeviceRule {
    pub(crate) fn allow(&self) -> bool {
        match self {
            DeviceRule::All { allow } | DeviceRule::Specific { allow, .. } => *allow,
        }
    }

    /// The line for v1 `devices.allow` / `devices.deny`, e.g. `c 1:3 rwm`.
    pub(crate) fn v1_line(&self) -> String {
        match self {
            DeviceRule::All { .. } => "a".to_owned(),
            DeviceRule::Specific {
                typ,
                major,
                minor,
                access,
                ..
            } => {
                let num = |n: &Option<u32>| n.map_or_else(|| "*".to_owned(), |v| v.to_string());
                let mut acc = String::new();
                for (bit, c) in [(ACC_READ, 'r'), (ACC_WRITE, 'w'), (ACC_MKNOD, 'm')] {
                    if access & bit != 0 {
                        acc.push(c);
                    }
                }
                format!("{} {}:{} {}", typ.letter(), num(major), num(minor), acc)
            }
        }
    }
}

/// Validates the spec's rules in order. FIFO (`p`) rules are dropped with a
/// warning: the device cgroup does not govern FIFOs. `u` is a character device.
pub(crate) fn normalize(rules: &[LinuxDeviceCgroup]) -> Result<Vec<DeviceRule>, CgroupError> {
    let mut out = Vec::with_capacity(rules.len());
    for rule in rules {
        let allow = rule.allow();
        let typ = match rule.typ().unwrap_or(LinuxDeviceType::A) {
            LinuxDeviceType::A => {
                out.push(DeviceRule::All { allow });
                continue;
            }
            LinuxDeviceType::B => DevType::Block,
            LinuxDeviceType::C | LinuxDeviceType::U => DevType::Char,
            LinuxDeviceType::P => {
                tracing::warn!(
                    ?rule,
                    "ignoring a FIFO device rule: the device cgroup does not control FIFOs"
                );
                continue;
            }
        };
        out.push(DeviceRule::Specific {
            allow,
            typ,
            major: device_number(rule.major(), "device major")?,
            minor: device_number(rule.minor(), "device minor")?,
            access: parse_access(rule.access().as_deref())?,
        });
    }
    Ok(out)
}

/// `None` and `-1` are the wildcard; anything else must fit the BPF immediate.
fn device_number(n: Option<i64>, resource: &'static str) -> Result<Option<u32>, CgroupError> {
    match n {
        None | Some(-1) => Ok(None),
        Some(v) => match u32::try_from(v) {
            Ok(v) if v <= i32::MAX as u32 => Ok(Some(v)),
            _ => Err(CgroupError::InvalidResource {
                resource,
                value: v.to_string(),
                reason: "must be -1 (any) or between 0 and 2^31-1",
            }),
        },
    }
}

fn parse_access(access: Option<&str>) -> Result<u32, CgroupError> {
    let Some(s) = access else {
        return Ok(ACC_ALL);
    };
    let invalid = |reason| CgroupError::InvalidResource {
        resource: "device access",
        value: s.to_owned(),
        reason,
    };
    if s.is_empty() {
        return Err(invalid("must name at least one of r, w, m"));
    }
    let mut bits = 0;
    for c in s.chars() {
        bits |= match c {
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            'm' => ACC_MKNOD,
            _ => return Err(invalid("may only contain r, w and m")),
        };
    }
    Ok(bits)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use oci_spec::runtime::LinuxDeviceCgroupBuilder;

    pub(crate) fn rule(
        allow: bool,
        typ: LinuxDeviceType,
        major: Option<i64>,
        minor: Option<i64>,
        access: &str,
    ) -> LinuxDeviceCgroup {
        let mut b = LinuxDeviceCgroupBuilder::default()
            .allow(allow)
            .typ(typ)
            .access(access);
        if let Some(m) = major {
            b = b.major(m);
        }
        if let Some(m) = minor {
            b = b.minor(m);
        }
        b.build().expect("device rule")
    }

    #[test]
    fn v1_lines() {
        let rules = [
            rule(false, LinuxDeviceType::A, None, None, "rwm"),
            rule(true, LinuxDeviceType::C, Some(1), Some(3), "rwm"),
            rule(true, LinuxDeviceType::U, Some(136), None, "wr"),
            rule(true, LinuxDeviceType::B, Some(-1), Some(-1), "m"),
            rule(true, LinuxDeviceType::P, None, None, "rwm"),
        ];
        let lines: Vec<String> = normalize(&rules)
            .expect("valid")
            .iter()
            .map(DeviceRule::v1_line)
            .collect();
        assert_eq!(lines, ["a", "c 1:3 rwm", "c 136:* rw", "b *:* m"]);
    }

    #[test]
    fn bad_access_and_numbers_are_rejected() {
        let bad = rule(true, LinuxDeviceType::C, Some(1), Some(3), "rx");
        assert!(matches!(
            normalize(&[bad]),
            Err(CgroupError::InvalidResource {
                resource: "device access",
                ..
            })
        ));
        let bad = rule(true, LinuxDeviceType::C, Some(-7), Some(3), "r");
        assert!(matches!(
            normalize(&[bad]),
            Err(CgroupError::InvalidResource {
                resource: "device major",
                ..
            })
        ));
        let bad = rule(true, LinuxDeviceType::C, Some(1), Some(1 << 40), "r");
        assert!(normalize(&[bad]).is_err());
    }
}
