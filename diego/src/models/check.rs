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
