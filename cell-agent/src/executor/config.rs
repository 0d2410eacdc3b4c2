//! The executor's settings, with Diego's defaults.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::store::Capacity;

/// Where the health-check binary appears inside every LRP container.
pub const HEALTHCHECK_PATH: &str = "/etc/cf-assets/healthcheck";

/// Start timeouts above this are cut down to it (Diego's maximum).
pub const MAX_START_TIMEOUT: Duration = Duration::from_secs(180);

/// Everything the executor needs to know about its cell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutorConfig {
    /// The `executor:owner` property of every garden container it creates;
    /// `reconcile` only looks at containers with this owner.
    pub owner: String,
    /// What the cell offers.
    pub capacity: Capacity,
    /// `preloaded:<stack>` images: stack name → rootfs path or URI.
    pub stacks: BTreeMap<String, String>,
    /// Process limit of a container that asks for none.
    pub default_max_pids: u64,
    /// The binary mounted at [`HEALTHCHECK_PATH`] (a statically linked
    /// `cell-agent`); `None`: this process's own executable.
    pub healthcheck_binary: Option<PathBuf>,
    /// How long a stopped process has between SIGTERM and SIGKILL.
    pub stop_grace: Duration,
    /// Start timeout of an LRP that names none.
    pub default_start_timeout: Duration,
    /// Time between startup health checks.
    pub startup_interval: Duration,
    /// Time between liveness checks once healthy.
    pub liveness_interval: Duration,
    /// Time one liveness check (or a startup check naming none) may take.
    pub check_timeout: Duration,
    /// Time between garden metrics samples.
    pub metrics_interval: Duration,
    /// Lines one container may log per second (0: unlimited).
    pub max_log_lines_per_second: u32,
    /// Download cache directory.
    pub cache_dir: PathBuf,
    /// Download cache size limit in bytes (least recently used go first).
    pub cache_max_bytes: u64,
    /// Scratch space for downloads and uploads in flight.
    pub temp_dir: PathBuf,
    /// Downloads at once on this cell.
    pub max_concurrent_downloads: usize,
    /// Bearer tokens for Download and Upload URLs, by origin
    /// (`http://controller:9022`): the controller's internal blob routes.
    pub http_credentials: BTreeMap<String, String>,
    /// Extra CA certificates (PEM bundle) trusted for downloads and uploads:
    /// the controller's, when it serves https with a private CA.
    pub http_ca_pem: Option<Vec<u8>>,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        Self {
            owner: "executor".into(),
            capacity: Capacity {
                memory_mb: 8192,
                disk_mb: 16384,
                containers: 250,
            },
            stacks: BTreeMap::new(),
            default_max_pids: 1024,
            healthcheck_binary: None,
            stop_grace: Duration::from_secs(10),
            default_start_timeout: Duration::from_secs(60),
            startup_interval: Duration::from_secs(2),
            liveness_interval: Duration::from_secs(30),
            check_timeout: Duration::from_secs(1),
            metrics_interval: Duration::from_secs(15),
            max_log_lines_per_second: 1000,
            cache_dir: PathBuf::from("/var/lib/cell-agent/cache"),
            cache_max_bytes: 10 * 1024 * 1024 * 1024,
            temp_dir: PathBuf::from("/var/lib/cell-agent/tmp"),
            max_concurrent_downloads: 5,
            http_credentials: BTreeMap::new(),
            http_ca_pem: None,
        }
    }
}

impl ExecutorConfig {
    /// The garden image URI of a run request's rootfs.
    pub fn image_uri(&self, rootfs: &str) -> Option<String> {
        match rootfs.strip_prefix("preloaded:") {
            Some(stack) => self.stacks.get(stack).cloned(),
            None => Some(rootfs.to_owned()),
        }
    }

    /// The start timeout of a request, defaulted and capped.
    pub fn start_timeout(&self, requested: Option<Duration>) -> Duration {
        requested
            .filter(|t| !t.is_zero())
            .unwrap_or(self.default_start_timeout)
            .min(MAX_START_TIMEOUT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preloaded_stacks_map_and_others_pass_through() {
        let mut c = ExecutorConfig::default();
        c.stacks
            .insert("cflinuxfs4".into(), "/srv/rootfs/cflinuxfs4".into());
        assert_eq!(
            c.image_uri("preloaded:cflinuxfs4").as_deref(),
            Some("/srv/rootfs/cflinuxfs4")
        );
        assert_eq!(c.image_uri("preloaded:other"), None);
        assert_eq!(
            c.image_uri("docker://registry/app#1").as_deref(),
            Some("docker://registry/app#1")
        );
    }

    #[test]
    fn start_timeouts_default_and_cap() {
        let c = ExecutorConfig::default();
        assert_eq!(c.start_timeout(None), Duration::from_secs(60));
        assert_eq!(
            c.start_timeout(Some(Duration::ZERO)),
            Duration::from_secs(60)
        );
        assert_eq!(
            c.start_timeout(Some(Duration::from_secs(600))),
            MAX_START_TIMEOUT
        );
        assert_eq!(
            c.start_timeout(Some(Duration::from_secs(5))),
            Duration::from_secs(5)
        );
    }
}
