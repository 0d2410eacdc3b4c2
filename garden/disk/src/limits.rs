//! Garden's disk limits and the quota they leave for a container's writable
//! layer once the image is accounted for.

use serde::{Deserialize, Serialize};

/// What a limit counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskScope {
    /// The image's bytes and inodes count against the limit (Garden's 0).
    #[default]
    Total,
    /// Only what the container writes counts (Garden's 1).
    Exclusive,
}

/// Garden's `DiskLimits`. 0 means "no limit" for every field. The soft
/// limits are kept and reported but not enforced by any backend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DiskLimits {
    /// Not enforced.
    pub byte_soft: u64,
    /// Writes past this many bytes fail with ENOSPC or EDQUOT.
    pub byte_hard: u64,
    /// Not enforced.
    pub inode_soft: u64,
    /// Creating files past this many inodes fails with ENOSPC or EDQUOT.
    pub inode_hard: u64,
    /// Whether the image counts.
    pub scope: DiskScope,
}

/// What the container's image layers hold: subtracted from the limits in
/// [`DiskScope::Total`], added to the usage for [`Usage::total_bytes`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageUsage {
    /// Bytes of the image's files.
    pub bytes: u64,
    /// Inodes of the image.
    pub inodes: u64,
}

/// A volume's usage, for Garden's `Metrics` disk stats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// What the container wrote plus its image.
    pub total_bytes: u64,
    /// Inodes the container created plus its image's.
    pub total_inodes: u64,
    /// What the container wrote (its writable layer).
    pub exclusive_bytes: u64,
    /// Inodes the container created.
    pub exclusive_inodes: u64,
}

impl Usage {
    pub(crate) fn new(exclusive_bytes: u64, exclusive_inodes: u64, image: ImageUsage) -> Usage {
        Usage {
            total_bytes: exclusive_bytes.saturating_add(image.bytes),
            total_inodes: exclusive_inodes.saturating_add(image.inodes),
            exclusive_bytes,
            exclusive_inodes,
        }
    }
}

/// What the writable layer may hold: the limits minus the image in total
/// scope. 0 = unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quota {
    /// Bytes the container may write.
    pub bytes: u64,
    /// Inodes the container may create.
    pub inodes: u64,
}

impl Quota {
    /// Whether nothing is limited.
    pub fn is_unlimited(&self) -> bool {
        self.bytes == 0 && self.inodes == 0
    }
}

/// Limits that cannot be applied.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LimitsError {
    /// A total-scope limit leaves nothing for the container to write.
    #[error("{what} limit {limit} is not larger than the image's {image} (scope total)")]
    SmallerThanImage {
        /// "byte" or "inode".
        what: &'static str,
        /// The limit asked for.
        limit: u64,
        /// What the image holds.
        image: u64,
    },
    /// The backend cannot enforce this limit.
    #[error("the {backend} disk backend cannot enforce {what}: {reason}")]
    Unsupported {
        /// The backend's name.
        backend: &'static str,
        /// The limit, e.g. "inode_hard 100".
        what: String,
        /// Why, and what to do instead.
        reason: &'static str,
    },
}

impl DiskLimits {
    /// The quota left for the writable layer.
    pub fn quota(&self, image: ImageUsage) -> Result<Quota, LimitsError> {
        let left = |what, limit: u64, image: u64| match (limit, self.scope) {
            (0, _) => Ok(0),
            (_, DiskScope::Exclusive) => Ok(limit),
            (_, DiskScope::Total) if limit > image => Ok(limit - image),
            (_, DiskScope::Total) => Err(LimitsError::SmallerThanImage { what, limit, image }),
        };
        Ok(Quota {
            bytes: left("byte", self.byte_hard, image.bytes)?,
            inodes: left("inode", self.inode_hard, image.inodes)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IMAGE: ImageUsage = ImageUsage {
        bytes: 1000,
        inodes: 10,
    };

    #[test]
    fn total_scope_subtracts_the_image() {
        let limits = DiskLimits {
            byte_hard: 5000,
            inode_hard: 50,
            ..DiskLimits::default()
        };
        assert_eq!(
            limits.quota(IMAGE),
            Ok(Quota {
                bytes: 4000,
                inodes: 40
            })
        );
    }

    #[test]
    fn exclusive_scope_ignores_the_image() {
        let limits = DiskLimits {
            byte_hard: 500,
            scope: DiskScope::Exclusive,
            ..DiskLimits::default()
        };
        assert_eq!(
            limits.quota(IMAGE),
            Ok(Quota {
                bytes: 500,
                inodes: 0
            })
        );
    }

    #[test]
    fn a_limit_not_above_the_image_is_an_error() {
        let limits = DiskLimits {
            byte_hard: 1000,
            ..DiskLimits::default()
        };
        let err = limits.quota(IMAGE).expect_err("limit equal to the image");
        assert_eq!(
            err.to_string(),
            "byte limit 1000 is not larger than the image's 1000 (scope total)"
        );
    }

    #[test]
    fn zero_is_unlimited_in_both_scopes() {
        assert!(DiskLimits::default()
            .quota(IMAGE)
            .expect("no limits")
            .is_unlimited());
    }

    #[test]
    fn limits_read_from_json_with_lowercase_scope() {
        let limits: DiskLimits =
            serde_json::from_str(r#"{"byte_hard": 1048576, "scope": "exclusive"}"#)
                .expect("valid json");
        assert_eq!(limits.byte_hard, 1 << 20);
        assert_eq!(limits.scope, DiskScope::Exclusive);
    }
}
