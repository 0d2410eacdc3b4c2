//! `~/.cfl/config.json`: the API endpoint, tokens and the target, kept with
//! mode 0600 because it holds a refresh token.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Errors reading or writing the CLI configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Neither `CFL_HOME` nor `HOME` is set.
    #[error("cannot find the config directory: set HOME or CFL_HOME")]
    NoHome,
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not the JSON we wrote.
    #[error("{path} is not a valid cfl config: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
}

/// The org and space commands act on.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Target {
    /// Organization name.
    pub org: String,
    /// Organization guid.
    pub org_guid: String,
    /// Space name.
    pub space: String,
    /// Space guid.
    pub space_guid: String,
}

/// Everything `cfl` remembers between runs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Config {
    /// The controller's API URL (`-a`).
    pub api: String,
    /// UAA token endpoint base (`links.login` of the root document).
    pub login_url: String,
    /// log-cache base URL (`links.log_cache`).
    pub log_cache_url: String,
    /// Bearer access token.
    pub access_token: String,
    /// Refresh token for the `refresh_token` grant.
    pub refresh_token: String,
    /// The targeted org and space, if any.
    pub target: Option<Target>,
    /// Accept any TLS certificate from the API (`login --skip-ssl-validation`).
    #[serde(default)]
    pub skip_ssl_validation: bool,
    /// A PEM CA file trusted besides the system's roots (`login --ca-cert`).
    #[serde(default)]
    pub ca_cert: Option<PathBuf>,
}

impl Config {
    /// `$CFL_HOME/config.json`, else `$HOME/.cfl/config.json`.
    pub fn default_path() -> Result<PathBuf, ConfigError> {
        if let Some(dir) = std::env::var_os("CFL_HOME") {
            return Ok(PathBuf::from(dir).join("config.json"));
        }
        let home = std::env::var_os("HOME").ok_or(ConfigError::NoHome)?;
        Ok(PathBuf::from(home).join(".cfl").join("config.json"))
    }

    /// Loads the config; a missing file is an empty config.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = match fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => {
                return Err(ConfigError::Io {
                    path: path.to_owned(),
                    source,
                })
            }
        };
        serde_json::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })
    }

    /// Writes the config atomically with mode 0600 (directory 0700).
    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        let io = |source| ConfigError::Io {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(io)?;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io)?;
        }
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_vec_pretty(self).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })?;
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io)?;
        file.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(io)?;
        file.write_all(&text).map_err(io)?;
        file.sync_all().map_err(io)?;
        fs::rename(&tmp, path).map_err(io)
    }
}
