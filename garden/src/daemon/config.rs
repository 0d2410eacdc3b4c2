//! gardend's configuration: a TOML file, every key optional. The defaults
//! are documented in `docs/garden-daemon.md` and `gardend --print-config`
//! prints the effective configuration.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: Box<toml::de::Error>,
    },
    #[error("{0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub listen: ListenConfig,
    /// Where containers keep their bundles, records and process directories.
    pub depot: PathBuf,
    pub runtime: RuntimeConfig,
    pub images: ImagesConfig,
    pub disk: garden_disk::DiskConfig,
    pub capacity: CapacityConfig,
    pub containers: ContainersConfig,
    /// Container networking (`garden-net`, docs/networking.md).
    pub network: garden_net::NetConfig,
    /// Where networking keeps its allocations; default: `network` beside
    /// the depot (`/var/lib/garden/network`).
    pub network_state: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ListenConfig {
    /// The unix socket (mode 0600). Garden's own default is /tmp/garden.sock.
    pub socket: Option<PathBuf>,
    /// Optional TCP address; keep it on loopback unless a proxy guards it.
    pub tcp: Option<SocketAddr>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeConfig {
    /// garden-runc; default: beside gardend, then $PATH.
    pub binary: Option<PathBuf>,
    /// garden-runc's state root.
    pub state_root: PathBuf,
    /// The cgroup every container's cgroup is created under.
    pub cgroup_parent: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImagesConfig {
    /// The layer store.
    pub store: PathBuf,
    /// Unused layers are collected above this size.
    pub max_size_bytes: u64,
    /// Registries (`host[:port]`) allowed over plain HTTP or unverified TLS.
    pub insecure_registries: Vec<String>,
    /// The image of containers created without one (a path or docker:// URI).
    pub default_rootfs: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CapacityConfig {
    /// Default: the host's MemTotal.
    pub memory_bytes: Option<u64>,
    /// Default: the size of the filesystem holding the disk backend's root.
    pub disk_bytes: Option<u64>,
    /// Default: 250 (Diego's default per cell).
    pub max_containers: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ContainersConfig {
    /// Grace time of containers created without one; absent: never reaped.
    #[serde(with = "humantime_opt")]
    pub default_grace_time: Option<Duration>,
    /// How long Stop waits after TERM before KILL.
    #[serde(with = "humantime_serde_dur")]
    pub stop_timeout: Duration,
    /// The host uid/gid container root maps to in unprivileged containers
    /// (Garden's "maximus"); default: the highest id the host allows.
    pub maximus: Option<u32>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: ListenConfig::default(),
            depot: PathBuf::from("/var/lib/garden/depot"),
            runtime: RuntimeConfig::default(),
            images: ImagesConfig::default(),
            disk: garden_disk::DiskConfig::new(
                garden_disk::BackendKind::Loop,
                "/var/lib/garden/volumes",
            ),
            capacity: CapacityConfig::default(),
            containers: ContainersConfig::default(),
            network: garden_net::NetConfig::default(),
            network_state: None,
        }
    }
}

impl Default for ListenConfig {
    fn default() -> Self {
        Self {
            socket: Some(PathBuf::from("/run/garden/garden.sock")),
            tcp: None,
        }
    }
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            binary: None,
            state_root: PathBuf::from("/run/garden/runc"),
            cgroup_parent: "garden".to_string(),
        }
    }
}

impl Default for ImagesConfig {
    fn default() -> Self {
        Self {
            store: PathBuf::from("/var/lib/garden/images"),
            max_size_bytes: 20 << 30,
            insecure_registries: Vec::new(),
            default_rootfs: None,
        }
    }
}

impl Default for ContainersConfig {
    fn default() -> Self {
        Self {
            default_grace_time: None,
            stop_timeout: Duration::from_secs(10),
            maximus: None,
        }
    }
}

impl Config {
    /// Reads `path`; a missing file is an error (an operator named it).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|e| match e {
            ConfigError::Parse { source, .. } => ConfigError::Parse {
                path: path.to_path_buf(),
                source,
            },
            other => other,
        })
    }

    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::from("<config>"),
            source: Box::new(e),
        })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.listen.socket.is_none() && self.listen.tcp.is_none() {
            return Err(ConfigError::Invalid(
                "listen: neither a socket nor a tcp address".into(),
            ));
        }
        for (name, p) in [
            ("depot", &self.depot),
            ("runtime.state_root", &self.runtime.state_root),
            ("images.store", &self.images.store),
            ("disk.root", &self.disk.root),
        ] {
            if !p.is_absolute() {
                return Err(ConfigError::Invalid(format!(
                    "{name} must be an absolute path, not {}",
                    p.display()
                )));
            }
        }
        self.network
            .validate()
            .map_err(|e| ConfigError::Invalid(format!("network: {e}")))
    }

    /// Where networking keeps its allocations.
    pub fn network_state_dir(&self) -> PathBuf {
        self.network_state.clone().unwrap_or_else(|| {
            self.depot
                .parent()
                .unwrap_or(Path::new("/"))
                .join("network")
        })
    }

    /// The garden-runc binary: configured, beside our own binary, or $PATH.
    pub fn runtime_binary(&self) -> PathBuf {
        if let Some(b) = &self.runtime.binary {
            return b.clone();
        }
        std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|d| d.join("garden-runc")))
            .filter(|p| p.exists())
            .unwrap_or_else(|| PathBuf::from("garden-runc"))
    }
}

mod humantime_serde_dur {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

mod humantime_opt {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let s = Option::<String>::deserialize(d)?;
        s.map(|s| humantime::parse_duration(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_the_defaults() {
        let c = Config::parse("").expect("defaults");
        assert_eq!(c.depot, PathBuf::from("/var/lib/garden/depot"));
        assert_eq!(c.containers.stop_timeout, Duration::from_secs(10));
        assert_eq!(c.disk.kind, garden_disk::BackendKind::Loop);
    }

    #[test]
    fn values_and_errors() {
        let c = Config::parse(
            "depot = \"/srv/depot\"\n[listen]\ntcp = \"127.0.0.1:7777\"\n[containers]\ndefault_grace_time = \"5m\"\n",
        )
        .expect("valid");
        assert_eq!(
            c.containers.default_grace_time,
            Some(Duration::from_secs(300))
        );
        assert_eq!(c.listen.tcp.map(|a| a.port()), Some(7777));
        for bad in [
            "depot = \"relative\"",
            "unknown = 1",
            "[containers]\nstop_timeout = \"soon\"",
            "depot = [",
        ] {
            assert!(Config::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
