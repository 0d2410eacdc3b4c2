//! What a piece of work needs from a cell: resources and placement
//! constraints (root filesystem and placement tags).

use serde::{Deserialize, Serialize};

/// Stack name a cell reports when it runs `docker://` images.
pub const DOCKER_STACK: &str = "docker";

/// Resources one LRP instance or Task takes on a cell (plus one container).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct Resource {
    /// Memory limit in MB.
    pub memory_mb: u64,
    /// Disk limit in MB.
    pub disk_mb: u64,
    /// Process limit (0: the cell's default).
    pub max_pids: u32,
}

/// Where work may run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct PlacementConstraint {
    /// Root filesystem: `preloaded:<stack>`, `docker:///<image>` (or
    /// `docker://registry/...`), or a bare stack name.
    pub rootfs: String,
    /// Tags a cell must offer (see [`tags_match`]).
    pub placement_tags: Vec<String>,
}

impl PlacementConstraint {
    /// The stack a cell must report to run [`Self::rootfs`].
    pub fn required_stack(&self) -> &str {
        required_stack(&self.rootfs)
    }
}

/// The stack a cell must report for `rootfs`: `cflinuxfs4` for
/// `preloaded:cflinuxfs4` (and `preloaded+layer:cflinuxfs4?...`),
/// [`DOCKER_STACK`] for `docker:...`, otherwise `rootfs` itself.
pub fn required_stack(rootfs: &str) -> &str {
    match rootfs.split_once(':') {
        Some(("preloaded" | "preloaded+layer", rest)) => rest.split('?').next().unwrap_or(rest),
        Some(("docker", _)) => DOCKER_STACK,
        _ => rootfs,
    }
}

/// Diego's placement tag rule: a cell with `required` and `optional` tags
/// takes work desiring `desired` when `required ⊆ desired ⊆ required ∪
/// optional`.
pub fn tags_match<S: AsRef<str>>(required: &[S], optional: &[S], desired: &[S]) -> bool {
    let has = |set: &[S], tag: &str| set.iter().any(|t| t.as_ref() == tag);
    required.iter().all(|r| has(desired, r.as_ref()))
        && desired
            .iter()
            .all(|d| has(required, d.as_ref()) || has(optional, d.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stacks_come_from_the_rootfs_scheme() {
        assert_eq!(required_stack("preloaded:cflinuxfs4"), "cflinuxfs4");
        assert_eq!(
            required_stack("preloaded+layer:cflinuxfs4?layer=http://x"),
            "cflinuxfs4"
        );
        assert_eq!(required_stack("docker:///busybox"), DOCKER_STACK);
        assert_eq!(required_stack("docker://registry:5000/a/b"), DOCKER_STACK);
        assert_eq!(required_stack("cflinuxfs4"), "cflinuxfs4");
    }

    #[test]
    fn placement_tags_follow_diegos_subset_rule() {
        let none: [&str; 0] = [];
        assert!(tags_match(&none, &none, &none));
        assert!(!tags_match(&none, &none, &["gpu"]));
        assert!(tags_match(&none, &["gpu"], &["gpu"]));
        assert!(tags_match(&none, &["gpu"], &none));
        assert!(!tags_match(&["isolated"], &none, &none));
        assert!(tags_match(&["isolated"], &["gpu"], &["isolated", "gpu"]));
        assert!(!tags_match(&["isolated"], &["gpu"], &["gpu"]));
        assert!(!tags_match(&["isolated"], &["gpu"], &["isolated", "ssd"]));
    }
}
