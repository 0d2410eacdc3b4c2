//! The device cgroup rules every container needs on top of its spec's: the
//! default devices must stay usable however the spec's list ends (runc
//! appends the same set), and so must the devices the spec asks us to create.

use oci_spec::runtime::{
    LinuxDevice, LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxResources,
};

/// (type, major, minor, access); `None` is the wildcard.
const DEFAULT_RULES: [(LinuxDeviceType, Option<i64>, Option<i64>, &str); 11] = [
    // mknod of anything; access is governed by the rules below.
    (LinuxDeviceType::C, None, None, "m"),
    (LinuxDeviceType::B, None, None, "m"),
    (LinuxDeviceType::C, Some(1), Some(3), "rwm"), // null
    (LinuxDeviceType::C, Some(1), Some(5), "rwm"), // zero
    (LinuxDeviceType::C, Some(1), Some(7), "rwm"), // full
    (LinuxDeviceType::C, Some(1), Some(8), "rwm"), // random
    (LinuxDeviceType::C, Some(1), Some(9), "rwm"), // urandom
    (LinuxDeviceType::C, Some(5), Some(0), "rwm"), // tty
    (LinuxDeviceType::C, Some(5), Some(1), "rwm"), // console
    (LinuxDeviceType::C, Some(5), Some(2), "rwm"), // ptmx
    (LinuxDeviceType::C, Some(136), None, "rwm"),  // pts
];

fn rule(
    typ: LinuxDeviceType,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> Option<LinuxDeviceCgroup> {
    let mut b = LinuxDeviceCgroupBuilder::default()
        .allow(true)
        .typ(typ)
        .access(access);
    if let Some(m) = major {
        b = b.major(m);
    }
    if let Some(m) = minor {
        b = b.minor(m);
    }
    b.build().ok()
}

/// The spec's resources with the default rules and the spec's devices
/// appended (only when the spec restricts devices at all).
pub fn with_defaults(
    resources: Option<&LinuxResources>,
    devices: &[LinuxDevice],
) -> Option<LinuxResources> {
    let mut res = resources?.clone();
    let mut rules = res.devices().clone()?;
    rules.extend(
        DEFAULT_RULES
            .iter()
            .filter_map(|(t, ma, mi, a)| rule(*t, *ma, *mi, a)),
    );
    rules.extend(
        devices
            .iter()
            .filter_map(|d| rule(d.typ(), Some(d.major()), Some(d.minor()), "rwm")),
    );
    res.set_devices(Some(rules));
    Some(res)
}
