//! The cell agent's configuration: a TOML file, every key optional.
//!
//! ```toml
//! cell_id = "cell-1"                      # default: the hostname
//! zone = "z1"                             # default: "default"
//! placement_tags = []
//! optional_placement_tags = []
//! docker = true                           # also offer the `docker` stack
//! memory_mb = 16384                       # default: MemTotal of the host
//! disk_mb = 100000                        # default: free space under state_dir
//! containers = 250
//! garden_socket = "/run/garden/garden.sock"
//! controller_url = "https://controller.internal:8443"
//! cell_key_file = "/etc/cell-agent/cell.key"
//! controller_ca_file = "/etc/cell-agent/controller-ca.pem"  # optional
//! listen = "0.0.0.0:1800"
//! advertise_url = "http://10.0.0.5:1800"  # default: http://<listen or hostname>:<port>
//! presence_ttl = "15s"
//! presence_refresh = "5s"
//! evacuation_timeout = "600s"
//! metrics_interval = "15s"
//! state_dir = "/var/lib/cell-agent"
//! owner = "executor"
//!
//! [executor]                              # these are the defaults
//! stop_grace = "10s"
//! start_timeout = "60s"
//! startup_interval = "2s"
//! liveness_interval = "30s"
//! check_timeout = "1s"
//! max_log_lines_per_second = 1000
//! cache_max_bytes = 10737418240
//!
//! [stacks]                                # stack name -> rootfs image URI
//! cflinuxfs4 = "/var/lib/rootfs/cflinuxfs4"
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::executor::{Capacity, ExecutorConfig};

/// Why the configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this configuration.
    #[error("parsing {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        source: Box<toml::de::Error>,
    },
    /// A value makes no sense.
    #[error("invalid {key}: {reason}")]
    Invalid {
        /// The key.
        key: &'static str,
        /// Why.
        reason: String,
    },
    /// The controller CA file could not be read.
    #[error("reading the controller CA {path}: {source}")]
    Ca {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The cell key file could not be read.
    #[error("reading the cell key {path}: {source}")]
    Key {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Durations as humantime strings (`"5s"`, `"250ms"`).
mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

/// The whole configuration; see the module documentation for the keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CellConfig {
    /// This cell's id (default: the hostname).
    pub cell_id: String,
    /// Availability zone.
    pub zone: String,
    /// Stack name → rootfs image URI (`preloaded:<stack>` maps here).
    pub stacks: BTreeMap<String, String>,
    /// Also offer the `docker` stack (images by URI).
    pub docker: bool,
    /// Tags work must desire to run here.
    pub placement_tags: Vec<String>,
    /// Tags work may desire to run here.
    pub optional_placement_tags: Vec<String>,
    /// Memory for containers in MB (default: the host's MemTotal).
    pub memory_mb: Option<u64>,
    /// Disk for containers in MB (default: free space under `state_dir`).
    pub disk_mb: Option<u64>,
    /// Container slots.
    pub containers: u32,
    /// gardend's unix socket.
    pub garden_socket: PathBuf,
    /// The controller's base URL.
    pub controller_url: String,
    /// File holding this cell's internal-API key (`controller-lite cell-key`).
    pub cell_key_file: PathBuf,
    /// PEM certificate(s) to trust for an https controller beside the
    /// system's roots (a self-signed controller certificate).
    pub controller_ca_file: Option<PathBuf>,
    /// Where the rep API listens.
    pub listen: SocketAddr,
    /// The rep URL the controller should use (default from `listen`, or
    /// the hostname when `listen` is a wildcard address).
    pub advertise_url: Option<String>,
    /// Presence time to live announced to the controller.
    #[serde(with = "duration")]
    pub presence_ttl: Duration,
    /// How often the presence is refreshed.
    #[serde(with = "duration")]
    pub presence_refresh: Duration,
    /// How long evacuation waits for replacements before stopping the rest.
    #[serde(with = "duration")]
    pub evacuation_timeout: Duration,
    /// How often container metrics go to the controller.
    #[serde(with = "duration")]
    pub metrics_interval: Duration,
    /// Download cache and scratch space live under it.
    pub state_dir: PathBuf,
    /// The `executor:owner` of this agent's garden containers.
    pub owner: String,
    /// Executor settings beyond the ones above.
    pub executor: ExecutorSettings,
}

/// The `[executor]` table: timings and limits of container work.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExecutorSettings {
    /// SIGTERM to SIGKILL.
    #[serde(with = "duration")]
    pub stop_grace: Duration,
    /// Start timeout when the LRP names none.
    #[serde(with = "duration")]
    pub start_timeout: Duration,
    /// Health checks while starting.
    #[serde(with = "duration")]
    pub startup_interval: Duration,
    /// Health checks once running.
    #[serde(with = "duration")]
    pub liveness_interval: Duration,
    /// One check's time.
    #[serde(with = "duration")]
    pub check_timeout: Duration,
    /// Log lines per second per container.
    pub max_log_lines_per_second: u32,
    /// Download cache size.
    pub cache_max_bytes: u64,
    /// The health-check binary (default: this executable).
    pub healthcheck_binary: Option<PathBuf>,
}

impl Default for ExecutorSettings {
    fn default() -> Self {
        let d = ExecutorConfig::default();
        Self {
            stop_grace: d.stop_grace,
            start_timeout: d.default_start_timeout,
            startup_interval: d.startup_interval,
            liveness_interval: d.liveness_interval,
            check_timeout: d.check_timeout,
            max_log_lines_per_second: d.max_log_lines_per_second,
            cache_max_bytes: d.cache_max_bytes,
            healthcheck_binary: None,
        }
    }
}

impl Default for CellConfig {
    fn default() -> Self {
        Self {
            cell_id: String::new(),
            zone: "default".into(),
            stacks: BTreeMap::new(),
            docker: true,
            placement_tags: Vec::new(),
            optional_placement_tags: Vec::new(),
            memory_mb: None,
            disk_mb: None,
            containers: 250,
            garden_socket: PathBuf::from("/run/garden/garden.sock"),
            controller_url: "http://127.0.0.1:8080".into(),
            cell_key_file: PathBuf::from("/etc/cell-agent/cell.key"),
            controller_ca_file: None,
            listen: SocketAddr::from(([0, 0, 0, 0], 1800)),
            advertise_url: None,
            presence_ttl: Duration::from_secs(diego::rep::PRESENCE_TTL_SECS),
            presence_refresh: Duration::from_secs(diego::rep::PRESENCE_REFRESH_SECS),
            evacuation_timeout: Duration::from_secs(600),
            metrics_interval: Duration::from_secs(15),
            state_dir: PathBuf::from("/var/lib/cell-agent"),
            owner: "executor".into(),
            executor: ExecutorSettings::default(),
        }
    }
}

/// The host's name (`/proc/sys/kernel/hostname`).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// MemTotal from a `/proc/meminfo` text, in MB.
pub fn meminfo_total_mb(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024)
}

/// Free space of the filesystem holding `path`, in MB (the nearest
/// existing ancestor when `path` does not exist yet).
pub fn free_disk_mb(path: &Path) -> Option<u64> {
    let existing = path.ancestors().find(|p| p.exists())?;
    let stat = nix::sys::statvfs::statvfs(existing).ok()?;
    Some(stat.blocks_available() * stat.fragment_size() / (1024 * 1024))
}

impl CellConfig {
    /// Reads `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        Self::parse(&text).map_err(|e| match e {
            ConfigError::Parse { source, .. } => ConfigError::Parse {
                path: path.into(),
                source,
            },
            other => other,
        })
    }

    /// Parses a TOML text and fills what the host decides (cell id,
    /// memory, disk).
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let mut config: Self = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: PathBuf::from("<text>"),
            source: Box::new(source),
        })?;
        config.resolve()?;
        Ok(config)
    }

    /// Fills the defaults that come from the host and checks the values.
    pub fn resolve(&mut self) -> Result<(), ConfigError> {
        if self.cell_id.is_empty() {
            self.cell_id = hostname();
        }
        if self.memory_mb.is_none() {
            let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
            self.memory_mb = meminfo_total_mb(&meminfo);
        }
        if self.disk_mb.is_none() {
            self.disk_mb = free_disk_mb(&self.state_dir);
        }
        if self.presence_refresh.is_zero() || self.presence_refresh >= self.presence_ttl {
            return Err(ConfigError::Invalid {
                key: "presence_refresh",
                reason: format!(
                    "{} must be above zero and below presence_ttl ({})",
                    humantime::format_duration(self.presence_refresh),
                    humantime::format_duration(self.presence_ttl)
                ),
            });
        }
        let valid_id = self
            .cell_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !valid_id {
            return Err(ConfigError::Invalid {
                key: "cell_id",
                reason: format!(
                    "{:?} may hold only letters, digits, '-', '_', '.'",
                    self.cell_id
                ),
            });
        }
        Ok(())
    }

    /// What the cell offers in all.
    pub fn capacity(&self) -> diego::auction::Capacity {
        diego::auction::Capacity {
            memory_mb: self.memory_mb.unwrap_or(0),
            disk_mb: self.disk_mb.unwrap_or(0),
            containers: self.containers,
        }
    }

    /// The stacks announced to the controller: the configured ones, and
    /// `docker` when enabled.
    pub fn stack_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.stacks.keys().cloned().collect();
        if self.docker && !self.stacks.contains_key("docker") {
            names.push("docker".into());
        }
        names
    }

    /// The rep URL the controller should use.
    pub fn rep_url(&self) -> String {
        if let Some(url) = &self.advertise_url {
            return url.trim_end_matches('/').to_owned();
        }
        let ip = self.listen.ip();
        let host = if ip.is_unspecified() {
            hostname()
        } else if ip.is_ipv6() {
            format!("[{ip}]")
        } else {
            ip.to_string()
        };
        format!("http://{host}:{}", self.listen.port())
    }

    /// The URL of the agent's own admin routes, from this host.
    pub fn admin_url(&self) -> String {
        let port = self.listen.port();
        match self.listen.ip() {
            ip if ip.is_unspecified() || ip.is_loopback() => format!("http://127.0.0.1:{port}"),
            std::net::IpAddr::V4(ip) => format!("http://{ip}:{port}"),
            std::net::IpAddr::V6(ip) => format!("http://[{ip}]:{port}"),
        }
    }

    /// The executor's settings. Downloads and uploads to the controller's
    /// own URLs (blobs, lifecycles, droplet uploads) carry the cell's key
    /// and trust the controller's CA; a key or CA file that cannot be read
    /// is left out here, as `rep::run` has already refused to start then.
    pub fn executor_config(&self) -> ExecutorConfig {
        let e = &self.executor;
        let mut config = ExecutorConfig {
            stop_grace: e.stop_grace,
            default_start_timeout: e.start_timeout,
            startup_interval: e.startup_interval,
            liveness_interval: e.liveness_interval,
            check_timeout: e.check_timeout,
            max_log_lines_per_second: e.max_log_lines_per_second,
            cache_max_bytes: e.cache_max_bytes,
            healthcheck_binary: e.healthcheck_binary.clone(),
            ..ExecutorConfig::default()
        };
        config.owner = self.owner.clone();
        config.capacity = Capacity {
            memory_mb: self.memory_mb.unwrap_or(0),
            disk_mb: self.disk_mb.unwrap_or(0),
            containers: u64::from(self.containers),
        };
        config.stacks = self.stacks.clone();
        config.cache_dir = self.state_dir.join("cache");
        config.temp_dir = self.state_dir.join("tmp");
        config.metrics_interval = self.metrics_interval;
        if let Ok(key) = self.read_cell_key() {
            config
                .http_credentials
                .insert(self.controller_url.clone(), key);
        }
        config.http_ca_pem = self.read_controller_ca().ok().flatten();
        config
    }

    /// The PEM text of `controller_ca_file`, when set.
    pub fn read_controller_ca(&self) -> Result<Option<Vec<u8>>, ConfigError> {
        let Some(path) = &self.controller_ca_file else {
            return Ok(None);
        };
        std::fs::read(path)
            .map(Some)
            .map_err(|source| ConfigError::Ca {
                path: path.clone(),
                source,
            })
    }

    /// The cell's key for the controller's internal API.
    pub fn read_cell_key(&self) -> Result<String, ConfigError> {
        let key =
            std::fs::read_to_string(&self.cell_key_file).map_err(|source| ConfigError::Key {
                path: self.cell_key_file.clone(),
                source,
            })?;
        Ok(key.trim().to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_host_values() {
        let c = CellConfig::parse("").expect("empty config");
        assert_eq!(c.cell_id, hostname());
        assert_eq!(c.containers, 250);
        assert_eq!(c.presence_ttl, Duration::from_secs(15));
        assert_eq!(c.presence_refresh, Duration::from_secs(5));
        assert_eq!(c.evacuation_timeout, Duration::from_secs(600));
        assert!(c.memory_mb.unwrap_or(0) > 0);
        assert_eq!(c.stack_names(), ["docker"]);
        assert_eq!(c.admin_url(), "http://127.0.0.1:1800");
    }

    #[test]
    fn values_are_read_and_checked() {
        let c = CellConfig::parse(
            "cell_id = \"c1\"\nmemory_mb = 1024\ndisk_mb = 2048\nlisten = \"127.0.0.1:9\"\n\
             presence_refresh = \"250ms\"\n[stacks]\ncflinuxfs4 = \"/srv/fs4\"\n",
        )
        .expect("config");
        assert_eq!(c.capacity().memory_mb, 1024);
        assert_eq!(c.stack_names(), ["cflinuxfs4", "docker"]);
        assert_eq!(c.rep_url(), "http://127.0.0.1:9");
        assert_eq!(c.executor_config().stacks["cflinuxfs4"], "/srv/fs4");
        let bad = CellConfig::parse("presence_refresh = \"20s\"").expect_err("refresh > ttl");
        assert!(bad.to_string().contains("presence_refresh"), "{bad}");
        let unknown = CellConfig::parse("zonee = \"x\"").expect_err("unknown key");
        assert!(unknown.to_string().contains("zonee"), "{unknown}");
        assert!(CellConfig::parse("cell_id = \"a/b\"").is_err());
    }

    #[test]
    fn downloads_from_the_controller_carry_the_cell_key() {
        let dir = tempfile::tempdir().expect("dir");
        let key = dir.path().join("cell.key");
        std::fs::write(&key, "k3y\n").expect("key");
        let c = CellConfig::parse(&format!(
            "controller_url = \"http://ctl:9022\"\ncell_key_file = \"{}\"\n",
            key.display()
        ))
        .expect("config");
        let e = c.executor_config();
        assert_eq!(e.http_credentials["http://ctl:9022"], "k3y");
        assert!(e.http_ca_pem.is_none());
    }

    #[test]
    fn meminfo_is_read_in_mb() {
        assert_eq!(
            meminfo_total_mb("MemTotal:        2048000 kB\nMemFree: 1 kB\n"),
            Some(2000)
        );
        assert_eq!(meminfo_total_mb("nothing"), None);
    }
}
