//! Health checks of an LRP (Diego's check definition): `port` is a TCP
//! connect, `http` wants a 200; a `process` health check has no checks.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CheckDefinition {
    /// Startup checks run every 2 s until the start timeout, then liveness
    /// checks every 30 s.
    pub checks: Vec<Check>,
    pub log_source: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    Tcp {
        port: u16,
        /// Per attempt; 0 means the default (1 s).
        #[serde(default)]
        connect_timeout_ms: u64,
    },
    Http {
        port: u16,
        #[serde(default = "root_path")]
        path: String,
        #[serde(default)]
        request_timeout_ms: u64,
    },
}

fn root_path() -> String {
    "/".into()
}

/// The three health check types of Cloud Foundry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthCheckKind {
    /// No checks: the process running is enough.
    Process,
    /// TCP connect to a port.
    Port,
    /// HTTP GET answered with 200.
    Http,
}

impl CheckDefinition {
    /// A `port` health check on `port`.
    pub fn port(port: u16) -> Self {
        Self {
            checks: vec![Check::Tcp {
                port,
                connect_timeout_ms: 0,
            }],
            log_source: String::new(),
        }
    }

    /// An `http` health check of `path` on `port`.
    pub fn http(port: u16, path: impl Into<String>) -> Self {
        Self {
            checks: vec![Check::Http {
                port,
                path: path.into(),
                request_timeout_ms: 0,
            }],
            log_source: String::new(),
        }
    }

    /// The kind of its first check (`Process` when there are none).
    pub fn kind(&self) -> HealthCheckKind {
        match self.checks.first() {
            None => HealthCheckKind::Process,
            Some(Check::Tcp { .. }) => HealthCheckKind::Port,
            Some(Check::Http { .. }) => HealthCheckKind::Http,
        }
    }
}
