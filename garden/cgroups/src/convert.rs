//! Conversions from OCI values to control-file values, shared by v1 and v2.

use crate::error::CgroupError;

/// `pids.max`: a limit of 0 or below (the spec's "unset" and -1) means `max`.
pub(crate) fn pids_max(limit: i64) -> String {
    if limit > 0 {
        limit.to_string()
    } else {
        "max".to_owned()
    }
}

/// v1 `cpu.shares` (2..=262144) to v2 `cpu.weight` (1..=10000), the conversion
/// runc, crun and systemd use: `1 + ((shares - 2) * 9999) / 262142`.
/// Out-of-range shares are clamped first, as the kernel clamps them on v1.
pub(crate) fn shares_to_weight(shares: u64) -> u64 {
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

/// v1 `blkio.weight` (10..=1000) to v2 `io.weight` (1..=10000), as runc does:
/// `1 + (weight - 10) * 9999 / 990`.
pub(crate) fn blkio_weight_to_io_weight(weight: u16) -> u64 {
    let w = u64::from(weight.clamp(10, 1000));
    1 + (w - 10) * 9999 / 990
}

/// The hugetlb control file for `page_size` (e.g. `2MB`) and `suffix`
/// (`limit_in_bytes` on v1, `max` on v2). The size must be alphanumeric, so it
/// cannot name a path outside the cgroup.
pub(crate) fn hugetlb_file(page_size: &str, suffix: &str) -> Result<String, CgroupError> {
    if page_size.is_empty() || !page_size.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(CgroupError::InvalidResource {
            resource: "hugepage size",
            value: page_size.to_owned(),
            reason: "must look like 2MB or 1GB",
        });
    }
    Ok(format!("hugetlb.{page_size}.{suffix}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_to_weight_matches_runc() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(0), 1);
        assert_eq!(shares_to_weight(u64::MAX), 10_000);
    }

    #[test]
    fn blkio_weight_conversion() {
        assert_eq!(blkio_weight_to_io_weight(10), 1);
        assert_eq!(blkio_weight_to_io_weight(500), 4950);
        assert_eq!(blkio_weight_to_io_weight(1000), 10_000);
    }

    #[test]
    fn pids_max_values() {
        assert_eq!(pids_max(100), "100");
        assert_eq!(pids_max(0), "max");
        assert_eq!(pids_max(-1), "max");
    }

    #[test]
    fn hugetlb_file_rejects_paths() {
        assert_eq!(hugetlb_file("2MB", "max").expect("ok"), "hugetlb.2MB.max");
        assert!(hugetlb_file("../x", "max").is_err());
        assert!(hugetlb_file("", "max").is_err());
    }
}
