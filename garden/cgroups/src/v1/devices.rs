//! v1 devices controller: deny everything, then replay the spec's rules in order.

use oci_spec::runtime::LinuxDeviceCgroup;

use super::V1Cgroup;
use crate::device_rule;
use crate::error::CgroupError;
use crate::files;
use crate::hierarchy::Controller;

/// Writes `a` to `devices.deny`, then each rule to `devices.allow` or
/// `devices.deny`. Later rules override earlier ones, as in the kernel.
///
/// On an update of a running container the processes briefly see "deny all"
/// between the first write and the allow rules (runc avoids that with a rule
/// emulator computing the minimal transition; not done here).
pub(super) fn apply(cg: &V1Cgroup, rules: &[LinuxDeviceCgroup]) -> Result<(), CgroupError> {
    let rules = device_rule::normalize(rules)?;
    let dir = cg.require(Controller::Devices)?;
    files::write(dir, "devices.deny", "a")?;
    for rule in &rules {
        let file = if rule.allow() {
            "devices.allow"
        } else {
            "devices.deny"
        };
        files::write(dir, file, &rule.v1_line())?;
    }
    Ok(())
}
