//! The controller's TOML configuration. Every field has a documented default,
//! so an empty file (or none at all) gives a working single-node controller.
//!
//! ```toml
//! listen = "127.0.0.1:9022"                 # API, UAA, log-cache on one port
//! external_url = "http://127.0.0.1:9022"    # advertised in `/` (default: from listen)
//! data_dir = "/var/lib/controller-lite"     # database, blobs, generated keys
//! apps_domain = "apps.lite.internal"        # the default shared domain
//! default_org = "default"
//! default_space = "default"
//! default_stack = "cflinuxfs4"
//! # tls_cert = "/etc/controller-lite/tls.crt"   # PEM chain; with tls_key, serve https
//! # tls_key = "/etc/controller-lite/tls.key"    # PEM private key (PKCS#8, PKCS#1 or SEC1)
//!
//! [[stacks]]
//! name = "cflinuxfs4"
//! description = "Debian bookworm based, cflinuxfs4-compatible"
//!
//! [auth]
//! access_token_ttl_secs = 7200
//! refresh_token_ttl_secs = 2592000
//! # signing_key = "..."    # HS256 secret; generated and kept in data_dir when absent
//! argon2_memory_kib = 19456
//! argon2_iterations = 2
//! [[auth.users]]
//! name = "admin"
//! password = "secret"      # or password_hash = "$argon2id$..."
//! admin = true
//!
//! [staging]
//! timeout_secs = 900         # a build staging longer than this fails
//! sweep_interval_secs = 5
//! memory_mb = 1024
//! disk_mb = 4096
//! # lifecycle_dir = "/usr/local/bin"   # lifecycle-builder, lifecycle-docker-builder
//! #                                   # (default: beside the controller-lite binary)
//! # insecure_docker_registries = ["registry.local:5000"]   # plain http or unverified TLS
//! # What staging containers may reach (Cloud Foundry's staging security
//! # groups). Default: the public networks (every protocol) and DNS (tcp and
//! # udp 53 anywhere); private networks stay closed. Listing rules replaces
//! # the defaults; `egress_rules = []` allows nothing but replies.
//! # [[staging.egress_rules]]
//! # protocol = "all"                   # tcp, udp, icmp or all
//! # destinations = ["0.0.0.0-9.255.255.255", "11.0.0.0-169.253.255.255"]
//! # [[staging.egress_rules]]
//! # protocol = "tcp"
//! # destinations = ["10.0.5.0/24"]     # address, CIDR or a.b.c.d-e.f.g.h
//! # ports = [5000]                     # or port_range = { start = 5000, end = 5010 }
//! # log = true                         # garden logs new connections
//!
//! [apps]
//! # What app instances and run-task tasks may reach (the running security
//! # groups); same shape and defaults as staging.egress_rules.
//! # [[apps.egress_rules]]
//! # protocol = "icmp"
//! # destinations = ["10.0.0.0/8"]
//! # icmp_info = { type = 8, code = -1 } # -1: every type or code
//!
//! [tasks]
//! timeout_secs = 86400       # a run-task task still running after this fails
//!
//! [database]
//! read_connections = 4       # read-only connections beside the one writer
//!
//! [limits]
//! max_upload_bytes = 1073741824       # one package or buildpack upload
//! max_unzipped_bytes = 2147483648     # all files of a package together
//! max_zip_entries = 100000
//!
//! [log_cache]                # envelopes kept in the database, surviving restarts
//! max_envelopes_per_source = 5000
//! max_sources = 10000
//!
//! [internal]
//! # api_key = "..."   # shared bearer key for cells; generated and kept in data_dir when absent
//! # per-cell keys live in the cell_credentials table (`controller-lite cell-key`)
//!
//! [scheduler]
//! kind = "diego"                  # or "recording" (work kept in the database only)
//! convergence_interval_secs = 30  # periodic pass; lost cells are handled at once
//! presence_ttl_secs = 15          # a cell's presence lives this long without a refresh
//! auction_batch_window_ms = 50    # start requests gathered into one auction
//! cell_fetch_timeout_ms = 2000    # a cell's GET /state and POST /work
//! lock_ttl_secs = 15              # lease of the one active auctioneer per database
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use diego::models::{SecurityGroupError, SecurityGroupRule, SecurityProtocol};
use serde::Deserialize;

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading config {path}: {source}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("parsing config {path}: {source}")]
    Parse {
        /// The config file.
        path: PathBuf,
        /// What was wrong.
        source: Box<toml::de::Error>,
    },
    /// A value is out of range or inconsistent.
    #[error("invalid config: {0}")]
    Invalid(String),
    /// An egress rule fails Diego's validation.
    #[error("invalid config: {section}.egress_rules[{index}] ({rule}): {source}")]
    EgressRule {
        /// `staging` or `apps`.
        section: &'static str,
        /// Its position in the list.
        index: usize,
        /// The rule, summarised.
        rule: String,
        /// What is wrong with it.
        source: SecurityGroupError,
    },
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP server binds.
    pub listen: SocketAddr,
    /// Base URL advertised to clients; defaults to `http://<listen>`.
    pub external_url: Option<String>,
    /// Holds the database, the blobstore and generated keys.
    pub data_dir: PathBuf,
    /// PEM certificate chain; with [`Config::tls_key`] the API is served over https.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of [`Config::tls_cert`].
    pub tls_key: Option<PathBuf>,
    /// The default shared domain for routes.
    pub apps_domain: String,
    /// Organization created at first start.
    pub default_org: String,
    /// Space created in the default organization at first start.
    pub default_space: String,
    /// Stack used when an app names none.
    pub default_stack: String,
    /// Stacks registered at start (existing ones are kept).
    pub stacks: Vec<StackConfig>,
    /// Tokens and users.
    pub auth: AuthConfig,
    /// Staging defaults and timeout.
    pub staging: StagingConfig,
    /// App instance settings.
    pub apps: AppsConfig,
    /// App task (`run-task`) settings.
    pub tasks: TasksConfig,
    /// Database connections.
    pub database: DatabaseConfig,
    /// Upload limits.
    pub limits: LimitsConfig,
    /// Bounds of the (persisted) log cache.
    pub log_cache: LogCacheConfig,
    /// The cell-facing (internal) API.
    pub internal: InternalConfig,
    /// The scheduler: Diego's BBS and auctioneer, or the recording stub.
    pub scheduler: SchedulerConfig,
}

/// Which scheduler places work, and its timings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulerConfig {
    /// `diego` (BBS, auctioneer, convergence) or `recording` (keeps the
    /// work in the database for someone else to place).
    pub kind: SchedulerKind,
    /// Seconds between periodic convergence passes.
    pub convergence_interval_secs: u64,
    /// Seconds a cell's presence lives without a refresh.
    pub presence_ttl_secs: u64,
    /// Milliseconds the auctioneer gathers start requests into one batch.
    pub auction_batch_window_ms: u64,
    /// Milliseconds allowed for a cell's `GET /state` and `POST /work`.
    pub cell_fetch_timeout_ms: u64,
    /// Seconds of the auctioneer's database lease (one active per database).
    pub lock_ttl_secs: u64,
}

/// See [`SchedulerConfig::kind`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SchedulerKind {
    /// Diego's BBS, auctioneer and convergence.
    #[default]
    Diego,
    /// Records work only.
    Recording,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            kind: SchedulerKind::Diego,
            convergence_interval_secs: 30,
            presence_ttl_secs: diego::rep::PRESENCE_TTL_SECS,
            auction_batch_window_ms: 50,
            cell_fetch_timeout_ms: 2000,
            lock_ttl_secs: 15,
        }
    }
}

/// One stack.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StackConfig {
    /// Stack name, e.g. `cflinuxfs4`.
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
}

/// Token signing and the users known at start.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Lifetime of access tokens.
    pub access_token_ttl_secs: u64,
    /// Lifetime of refresh tokens.
    pub refresh_token_ttl_secs: u64,
    /// HS256 secret; when absent one is generated at first start and kept in `data_dir`.
    pub signing_key: Option<String>,
    /// Argon2id memory cost in KiB.
    pub argon2_memory_kib: u32,
    /// Argon2id iterations.
    pub argon2_iterations: u32,
    /// Users created or updated at start. Without any, an `admin` user with a
    /// generated password (written to `data_dir/admin-password`) is created.
    pub users: Vec<UserConfig>,
}

/// One configured user.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// Login name.
    pub name: String,
    /// Clear-text password (hashed at start).
    pub password: Option<String>,
    /// A PHC argon2 hash, used instead of `password`.
    pub password_hash: Option<String>,
    /// Admins manage buildpacks, stacks, organizations and cells.
    #[serde(default)]
    pub admin: bool,
}

/// Staging settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StagingConfig {
    /// A build still STAGING after this long fails.
    pub timeout_secs: u64,
    /// How often the timeout sweeper runs.
    pub sweep_interval_secs: u64,
    /// Memory of a staging task.
    pub memory_mb: u64,
    /// Disk of a staging task.
    pub disk_mb: u64,
    /// Directory of the lifecycle binaries cells get for staging
    /// (default: the directory of the running executable).
    pub lifecycle_dir: Option<PathBuf>,
    /// Registries docker staging may reach over plain HTTP or unverified TLS.
    pub insecure_docker_registries: Vec<String>,
    /// What staging containers may reach (default: [`default_egress_rules`]).
    pub egress_rules: Vec<SecurityGroupRule>,
}

/// App instance settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AppsConfig {
    /// What app instances and run-task tasks may reach (default:
    /// [`default_egress_rules`]).
    pub egress_rules: Vec<SecurityGroupRule>,
}

impl Default for AppsConfig {
    fn default() -> Self {
        Self {
            egress_rules: default_egress_rules(),
        }
    }
}

/// The public networks Cloud Foundry's default security group opens:
/// everything but 10/8, 169.254/16, 172.16/12 and 192.168/16.
pub const PUBLIC_NETWORKS: [&str; 5] = [
    "0.0.0.0-9.255.255.255",
    "11.0.0.0-169.253.255.255",
    "169.255.0.0-172.15.255.255",
    "172.32.0.0-192.167.255.255",
    "192.169.0.0-255.255.255.255",
];

/// Cloud Foundry's default security groups: every protocol to the
/// [`PUBLIC_NETWORKS`], and DNS (tcp and udp port 53) anywhere.
pub fn default_egress_rules() -> Vec<SecurityGroupRule> {
    let dns = |protocol| {
        let mut rule = SecurityGroupRule::new(protocol, &["0.0.0.0/0"]);
        rule.ports = vec![53];
        rule
    };
    vec![
        SecurityGroupRule::new(SecurityProtocol::All, &PUBLIC_NETWORKS),
        dns(SecurityProtocol::Tcp),
        dns(SecurityProtocol::Udp),
    ]
}

/// App task settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TasksConfig {
    /// A task not finished this long after it was created fails (`TaskTimeout`).
    pub timeout_secs: u64,
}

/// Database settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// Read-only connections in the pool beside the single writer.
    pub read_connections: u32,
}

/// Upload limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest accepted upload body (zip or droplet).
    pub max_upload_bytes: u64,
    /// Largest total size of the files in one package.
    pub max_unzipped_bytes: u64,
    /// Most entries in one zip.
    pub max_zip_entries: usize,
}

/// Log cache bounds (envelopes are kept in the database and survive restarts).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogCacheConfig {
    /// Newest envelopes kept per source id.
    pub max_envelopes_per_source: usize,
    /// Most source ids kept; the least recently written is dropped first.
    pub max_sources: usize,
}

/// The API that cells (and the scheduler) call.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InternalConfig {
    /// Bearer key; generated at first start and kept in `data_dir` when absent.
    pub api_key: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9022)),
            external_url: None,
            data_dir: PathBuf::from("/var/lib/controller-lite"),
            tls_cert: None,
            tls_key: None,
            apps_domain: "apps.lite.internal".into(),
            default_org: "default".into(),
            default_space: "default".into(),
            default_stack: "cflinuxfs4".into(),
            stacks: vec![StackConfig {
                name: "cflinuxfs4".into(),
                description: "Debian bookworm based, cflinuxfs4-compatible".into(),
            }],
            auth: AuthConfig::default(),
            staging: StagingConfig::default(),
            apps: AppsConfig::default(),
            tasks: TasksConfig::default(),
            database: DatabaseConfig::default(),
            limits: LimitsConfig::default(),
            log_cache: LogCacheConfig::default(),
            internal: InternalConfig::default(),
            scheduler: SchedulerConfig::default(),
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            access_token_ttl_secs: 7200,
            refresh_token_ttl_secs: 30 * 24 * 3600,
            signing_key: None,
            argon2_memory_kib: 19 * 1024,
            argon2_iterations: 2,
            users: Vec::new(),
        }
    }
}

impl Default for StagingConfig {
    fn default() -> Self {
        Self {
            timeout_secs: 900,
            sweep_interval_secs: 5,
            memory_mb: 1024,
            disk_mb: 4096,
            lifecycle_dir: None,
            insecure_docker_registries: Vec::new(),
            egress_rules: default_egress_rules(),
        }
    }
}

impl Default for TasksConfig {
    fn default() -> Self {
        Self {
            timeout_secs: 24 * 3600,
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            read_connections: crate::db::DEFAULT_READERS,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_upload_bytes: 1 << 30,
            max_unzipped_bytes: 2 << 30,
            max_zip_entries: 100_000,
        }
    }
}

impl Default for LogCacheConfig {
    fn default() -> Self {
        Self {
            max_envelopes_per_source: 5000,
            max_sources: 10_000,
        }
    }
}

impl Config {
    /// Reads and validates a TOML file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|e| match e {
            ConfigError::Parse { source, .. } => ConfigError::Parse {
                path: path.to_owned(),
                source,
            },
            other => other,
        })
    }

    /// Parses and validates TOML text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::new(),
            source: Box::new(e),
        })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: &str| Err(ConfigError::Invalid(m.to_owned()));
        if self.staging.timeout_secs == 0 {
            return invalid("staging.timeout_secs must be positive");
        }
        if self.staging.sweep_interval_secs == 0 {
            return invalid("staging.sweep_interval_secs must be positive");
        }
        if !self.stacks.iter().any(|s| s.name == self.default_stack) {
            return invalid("default_stack must be one of [[stacks]]");
        }
        if self.auth.access_token_ttl_secs == 0 || self.auth.refresh_token_ttl_secs == 0 {
            return invalid("token lifetimes must be positive");
        }
        if self.tasks.timeout_secs == 0 {
            return invalid("tasks.timeout_secs must be positive");
        }
        if self.database.read_connections == 0 {
            return invalid("database.read_connections must be positive");
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return invalid("tls_cert and tls_key go together");
        }
        if self.log_cache.max_envelopes_per_source == 0 || self.log_cache.max_sources == 0 {
            return invalid("log_cache bounds must be positive");
        }
        let sch = &self.scheduler;
        if sch.convergence_interval_secs == 0
            || sch.presence_ttl_secs == 0
            || sch.cell_fetch_timeout_ms == 0
            || sch.lock_ttl_secs == 0
        {
            return invalid("scheduler intervals, TTLs and timeouts must be positive");
        }
        check_egress_rules("staging", &self.staging.egress_rules)?;
        check_egress_rules("apps", &self.apps.egress_rules)?;
        for user in &self.auth.users {
            if user.password.is_none() == user.password_hash.is_none() {
                return Err(ConfigError::Invalid(format!(
                    "user {:?} needs exactly one of password or password_hash",
                    user.name
                )));
            }
        }
        Ok(())
    }

    /// Whether the API is served over https.
    pub fn tls(&self) -> bool {
        self.tls_cert.is_some()
    }

    /// The URL clients use to reach this controller, without a trailing slash.
    pub fn base_url(&self) -> String {
        match &self.external_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => {
                let scheme = if self.tls() { "https" } else { "http" };
                format!("{scheme}://{}", self.listen)
            }
        }
    }
}

fn check_egress_rules(
    section: &'static str,
    rules: &[SecurityGroupRule],
) -> Result<(), ConfigError> {
    diego::models::security_group::validate_rules(rules).map_err(|(index, source)| {
        ConfigError::EgressRule {
            section,
            index,
            rule: rules[index].to_string(),
            source,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let c = Config::parse("").expect("parse");
        assert_eq!(c.staging.timeout_secs, 900);
        assert_eq!(c.default_stack, "cflinuxfs4");
        assert_eq!(c.base_url(), "http://127.0.0.1:9022");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        assert!(matches!(
            Config::parse("nope = 1"),
            Err(ConfigError::Parse { .. })
        ));
        assert!(matches!(
            Config::parse("[staging]\ntimeout_secs = 0"),
            Err(ConfigError::Invalid(_))
        ));
        assert!(matches!(
            Config::parse("tls_cert = '/x.pem'"),
            Err(ConfigError::Invalid(_))
        ));
        let tls = Config::parse("tls_cert = '/c'\ntls_key = '/k'").expect("tls");
        assert_eq!(tls.base_url(), "https://127.0.0.1:9022");
        let both = "[[auth.users]]\nname='a'\npassword='x'\npassword_hash='y'";
        assert!(matches!(Config::parse(both), Err(ConfigError::Invalid(_))));
    }

    #[test]
    fn egress_rules_default_to_cloud_foundrys_security_groups() {
        let c = Config::parse("").expect("parse");
        assert_eq!(c.staging.egress_rules, default_egress_rules());
        assert_eq!(c.apps.egress_rules, default_egress_rules());
        let rules = default_egress_rules();
        assert_eq!(rules[0].protocol, SecurityProtocol::All);
        assert_eq!(rules[0].destinations, PUBLIC_NETWORKS);
        assert_eq!(rules[1].to_string(), "tcp to 0.0.0.0/0 ports [53]");
        assert_eq!(rules[2].to_string(), "udp to 0.0.0.0/0 ports [53]");
        let private = rules[0].address_ranges().expect("ranges");
        for ip in ["10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254"] {
            let ip: std::net::Ipv4Addr = ip.parse().expect("ip");
            assert!(
                !private.iter().any(|r| r.start <= ip && ip <= r.end),
                "{ip} is private"
            );
        }
    }

    #[test]
    fn egress_rules_from_toml_replace_the_defaults() {
        let c = Config::parse(
            r#"
            [staging]
            egress_rules = []
            [[apps.egress_rules]]
            protocol = "tcp"
            destinations = ["10.0.5.0/24"]
            port_range = { start = 5000, end = 5010 }
            log = true
            [[apps.egress_rules]]
            protocol = "icmp"
            destinations = ["10.0.0.1-10.0.0.9"]
            icmp_info = { type = 8, code = -1 }
            "#,
        )
        .expect("parse");
        assert!(c.staging.egress_rules.is_empty());
        assert_eq!(c.apps.egress_rules.len(), 2);
        assert!(c.apps.egress_rules[0].log);
        assert_eq!(c.apps.egress_rules[0].port_ranges(), [(5000, 5010)]);
        assert_eq!(
            c.apps.egress_rules[1]
                .icmp_info
                .map(|i| (i.icmp_type, i.code)),
            Some((8, -1))
        );
    }

    #[test]
    fn a_bad_egress_rule_is_a_startup_error_naming_it() {
        let bad = r#"
            [[staging.egress_rules]]
            protocol = "all"
            destinations = ["0.0.0.0/0"]
            [[staging.egress_rules]]
            protocol = "tcp"
            destinations = ["10.0.0.0/33"]
            ports = [443]
            "#;
        let err = Config::parse(bad).expect_err("bad CIDR").to_string();
        assert_eq!(
            err,
            "invalid config: staging.egress_rules[1] (tcp to 10.0.0.0/33 ports [443]): \
             destination \"10.0.0.0/33\": not a valid CIDR (a.b.c.d/0-32)"
        );
        let no_ports = "[[apps.egress_rules]]\nprotocol = 'udp'\ndestinations = ['0.0.0.0/0']";
        let err = Config::parse(no_ports).expect_err("no ports").to_string();
        assert!(err.contains("apps.egress_rules[0]"), "{err}");
        assert!(err.contains("needs ports"), "{err}");
        let unknown = "[[apps.egress_rules]]\nprotocol = 'sctp'\ndestinations = ['0.0.0.0/0']";
        let err = Config::parse(unknown).expect_err("protocol").to_string();
        assert!(err.contains("sctp"), "{err}");
        let typo = "[[apps.egress_rules]]\nprotocol = 'all'\ndestination = ['0.0.0.0/0']";
        let err = Config::parse(typo).expect_err("typo").to_string();
        assert!(err.contains("destination"), "{err}");
    }
}
